//! A real Synapse homeserver on loopback, per test: SQLite, server name `localhost`, a registration shared secret, no
//! key servers and raised rate limits. `scripts/synapse` installs it; `scripts/test` passes its python in
//! `KUBECHAT_SYNAPSE_PYTHON`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::KillOnDrop;

pub struct Synapse {
    pub url: String,
    python: PathBuf,
    dir: tempfile::TempDir,
    process: Option<KillOnDrop>,
}

fn python() -> PathBuf {
    match std::env::var_os("KUBECHAT_SYNAPSE_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => panic!(
            "KUBECHAT_SYNAPSE_PYTHON is not set: the Matrix tests need a real Synapse. Run ./scripts/test, or \
             export KUBECHAT_SYNAPSE_PYTHON=$(./scripts/synapse) (it installs matrix-synapse from PyPI into \
             .cache/synapse, about 25 s)"
        ),
    }
}

const LIMIT: &str = "{per_second: 1000, burst_count: 1000}";

impl Synapse {
    pub async fn start() -> Synapse {
        Synapse::start_with(LIMIT).await
    }

    /// With `rc_message` (the limit on sending messages, per user) set to `message_limit`.
    pub async fn start_with(message_limit: &str) -> Synapse {
        let python = python();
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = dir.path().display();
        let config = format!(
            r#"server_name: localhost
pid_file: {d}/homeserver.pid
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {d}/homeserver.db
media_store_path: {d}/media
signing_key_path: {d}/localhost.signing.key
registration_shared_secret: kubechat-tests
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
enable_registration: false
default_room_version: "11"
rc_message: {message_limit}
rc_registration: {LIMIT}
rc_login:
  address: {LIMIT}
  account: {LIMIT}
  failed_attempts: {LIMIT}
rc_joins:
  local: {LIMIT}
  remote: {LIMIT}
rc_joins_per_room: {LIMIT}
rc_invites:
  per_room: {LIMIT}
  per_user: {LIMIT}
  per_issuer: {LIMIT}
rc_key_requests: {LIMIT}
"#
        );
        std::fs::write(dir.path().join("homeserver.yaml"), config).unwrap();
        let keys = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(dir.path().join("homeserver.yaml"))
            .arg("--generate-keys")
            .output()
            .expect("Synapse's python runs");
        assert!(keys.status.success(), "Synapse cannot generate its keys: {}", String::from_utf8_lossy(&keys.stderr));
        let mut synapse = Synapse { url: format!("http://127.0.0.1:{port}"), python, dir, process: None };
        synapse.spawn().await;
        synapse
    }

    async fn spawn(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("synapse.log")).unwrap();
        let child = Command::new(&self.python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(self.dir.path().join("homeserver.yaml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("Synapse starts");
        self.process = Some(KillOnDrop(child));
        let http = crate::common::http_client();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = http.get(format!("{}/_matrix/client/versions", self.url)).send().await
                && response.status().is_success()
            {
                return;
            }
            if let Some(process) = &mut self.process
                && let Ok(Some(status)) = process.0.try_wait()
            {
                panic!("Synapse exited ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "Synapse did not answer within 60 s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the homeserver for `down`, then starts it again on the same port and database.
    pub async fn restart(&mut self, down: Duration) {
        self.process = None;
        tokio::time::sleep(down).await;
        self.spawn().await;
    }

    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("synapse.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Registers `user` with `password` through the shared secret; returns the full user id.
    pub fn register(&self, user: &str, password: &str) -> String {
        let script = self.python.with_file_name("register_new_matrix_user");
        let out = Command::new(script)
            .args(["-u", user, "-p", password, "--no-admin", "-c"])
            .arg(self.dir.path().join("homeserver.yaml"))
            .arg(&self.url)
            .stdin(Stdio::null())
            .output()
            .expect("register_new_matrix_user runs");
        assert!(out.status.success(), "cannot register {user}: {}", String::from_utf8_lossy(&out.stderr));
        format!("@{user}:localhost")
    }
}
