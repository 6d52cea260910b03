//! Matrix's settings: the raw `matrix` section of the configuration and its validation. Compiled with or without
//! the `matrix` feature, so a configuration that enables Matrix is refused clearly by a build without it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::secret::Secret;
use crate::settings::{ConfigError, check_http_url, invalid};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMatrix {
    pub enabled: bool,
    pub homeserver_url: String,
    pub user_id: String,
    pub password: Secret,
    pub access_token: Secret,
    pub store_path: PathBuf,
    pub store_passphrase: Secret,
    pub device_name: String,
    pub allowed_rooms: Vec<String>,
    pub allowed_servers: Vec<String>,
    pub max_per_room: usize,
}

impl Default for RawMatrix {
    fn default() -> RawMatrix {
        RawMatrix {
            enabled: false,
            homeserver_url: String::new(),
            user_id: String::new(),
            password: Secret::default(),
            access_token: Secret::default(),
            store_path: "/var/lib/kubechat/matrix".into(),
            store_passphrase: Secret::default(),
            device_name: "kubechat".into(),
            allowed_rooms: Vec::new(),
            allowed_servers: Vec::new(),
            max_per_room: 3,
        }
    }
}

/// Matrix settings, validated (see `docs/configuration.md`).
#[derive(Debug, Clone)]
pub struct MatrixConfig {
    pub homeserver_url: String,
    /// `@kubechat:example.org`.
    pub user_id: String,
    pub password: Secret,
    pub access_token: Secret,
    /// The sqlite state and crypto store, and the saved session: a persistent volume.
    pub store_path: PathBuf,
    pub store_passphrase: Secret,
    pub device_name: String,
    /// Room ids (`!…`) or aliases (`#…`) whose invites are accepted.
    pub allowed_rooms: Vec<String>,
    /// Homeservers whose users' invites are accepted; the bot's own when none are set.
    pub allowed_servers: Vec<String>,
    /// Questions answered or waiting per room.
    pub max_per_room: usize,
}

impl RawMatrix {
    pub fn validate(self) -> Result<MatrixConfig, ConfigError> {
        check_http_url(
            "matrix.homeserver_url",
            &self.homeserver_url,
            "must start with https:// (or http:// on loopback)",
        )?;
        let Some((local, server)) = self.user_id.strip_prefix('@').and_then(|u| u.split_once(':')) else {
            return Err(invalid(
                "matrix.user_id",
                format!("{:?} must be a full Matrix ID like @kubechat:example.org", self.user_id),
            ));
        };
        if local.is_empty() || server.is_empty() {
            return Err(invalid(
                "matrix.user_id",
                format!("{:?} must be a full Matrix ID like @kubechat:example.org", self.user_id),
            ));
        }
        if self.password.is_empty() && self.access_token.is_empty() {
            return Err(invalid(
                "matrix.password",
                "set the bot's password (KUBECHAT_MATRIX_PASSWORD) or an access token (KUBECHAT_MATRIX_ACCESS_TOKEN), from a Kubernetes Secret",
            ));
        }
        if self.store_path.as_os_str().is_empty() {
            return Err(invalid("matrix.store_path", "is empty: the device and its keys must survive restarts"));
        }
        for room in &self.allowed_rooms {
            let valid = room.starts_with('!') || (room.starts_with('#') && room.contains(':'));
            if !valid {
                return Err(invalid(
                    "matrix.allowed_rooms",
                    format!("{room:?} is not a room id (!…) or alias (#name:server)"),
                ));
            }
        }
        if self.max_per_room == 0 {
            return Err(invalid("matrix.max_per_room", "must be more than 0"));
        }
        let allowed_servers =
            if self.allowed_servers.is_empty() { vec![server.to_string()] } else { self.allowed_servers.clone() };
        Ok(MatrixConfig {
            homeserver_url: self.homeserver_url,
            user_id: self.user_id,
            password: self.password,
            access_token: self.access_token,
            store_path: self.store_path,
            store_passphrase: self.store_passphrase,
            device_name: self.device_name,
            allowed_rooms: self.allowed_rooms,
            allowed_servers,
            max_per_room: self.max_per_room,
        })
    }
}
