//! The error a setting's check gives. A leaf module, so the configuration and each front-end that validates its own
//! section ([`crate::slack::config`], [`crate::matrix::config`], [`crate::alerts`]) share it without importing each
//! other.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot parse the configuration file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("setting {setting}: {problem}")]
    Invalid { setting: String, problem: String },
}

pub fn invalid(setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting: setting.to_string(), problem: problem.into() }
}

/// Checks that `value`, the setting `setting`, is an `http://` or `https://` URL; `scheme` is the problem told when it
/// is a URL of another scheme.
pub fn check_http_url(setting: &str, value: &str, scheme: impl Into<String>) -> Result<(), ConfigError> {
    let url = reqwest::Url::parse(value).map_err(|e| invalid(setting, format!("{value:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(setting, scheme));
    }
    Ok(())
}
