//! A credential: read like any other setting and never printed; and URLs without their credentials.

use std::borrow::Cow;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

static USERINFO: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#@]*@").expect("compiles"));

/// The text with the credentials of every URL in it taken out (`http://user:pw@host` becomes `http://host`), for
/// whatever quotes a configured URL: errors, answers, the audit log, the logs, `/models`.
pub fn without_credentials(text: &str) -> Cow<'_, str> {
    USERINFO.replace_all(text, "$1")
}

/// A credential. It is read like any other setting (best from the environment, filled from a Kubernetes Secret) and
/// never printed: its `Debug` says only whether it is set.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "Secret(unset)" } else { "Secret(set)" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            without_credentials(
                "cannot connect to http://kubechat:pa55@llm:8080/v1 (error sending request for url (http://kubechat:pa55@llm:8080/v1/chat))"
            ),
            "cannot connect to http://llm:8080/v1 (error sending request for url (http://llm:8080/v1/chat))"
        );
        assert_eq!(without_credentials("https://TOKEN123@host/x"), "https://host/x");
        assert_eq!(without_credentials("https://host/a@b"), "https://host/a@b");
        assert!(matches!(without_credentials("http://llm:8080"), Cow::Borrowed(_)));
    }
}
