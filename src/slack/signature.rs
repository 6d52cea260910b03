//! Slack's v0 request signature: `v0=` + hex HMAC-SHA256 of `v0:{X-Slack-Request-Timestamp}:{raw body}` under the
//! signing secret, compared in constant time; requests older or newer than five minutes are refused.

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// How far a request's timestamp may be from now, in seconds.
pub const WINDOW_SECONDS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request carries no X-Slack-Request-Timestamp or X-Slack-Signature")]
    Missing,
    #[error("the request's signature headers are malformed")]
    Malformed,
    #[error("the request's timestamp is {0} s away from now, more than Slack allows")]
    OutsideWindow(u64),
    #[error("the request's signature does not match the signing secret")]
    Mismatch,
}

/// Checks a request's signature; `now` is the current Unix time in seconds.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else { return Err(SignatureError::Missing) };
    let sent: i64 = timestamp.trim().parse().map_err(|_| SignatureError::Malformed)?;
    // Any i64 may arrive: the distance is taken without overflowing.
    let skew = now.abs_diff(sent);
    if skew > WINDOW_SECONDS {
        return Err(SignatureError::OutsideWindow(skew));
    }
    let expected = signature.strip_prefix("v0=").and_then(hex).ok_or(SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Malformed)?;
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

/// The signature Slack would send, for tests and for the fake Slack.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!("v0={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Slack's published example (api.slack.com/authentication/verifying-requests-from-slack).
    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slacks_published_vector_passes() {
        assert_eq!(sign(SECRET, TIMESTAMP, BODY.as_bytes()), SIGNATURE);
        assert_eq!(verify(SECRET, Some(TIMESTAMP), Some(SIGNATURE), BODY.as_bytes(), 1531420618 + 10), Ok(()));
    }

    #[test]
    fn forged_stale_future_and_tampered_requests_are_refused() {
        let now = 1531420618;
        let body = BODY.as_bytes();
        assert_eq!(
            verify(b"another secret", Some(TIMESTAMP), Some(SIGNATURE), body, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, Some(TIMESTAMP), Some(SIGNATURE), body, now + 301),
            Err(SignatureError::OutsideWindow(301))
        );
        assert_eq!(
            verify(SECRET, Some(TIMESTAMP), Some(SIGNATURE), body, now - 301),
            Err(SignatureError::OutsideWindow(301))
        );
        let tampered = BODY.replace("text=", "text=delete");
        assert_eq!(
            verify(SECRET, Some(TIMESTAMP), Some(SIGNATURE), tampered.as_bytes(), now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(SECRET, None, Some(SIGNATURE), body, now), Err(SignatureError::Missing));
        assert_eq!(verify(SECRET, Some(TIMESTAMP), Some("v1=abcd"), body, now), Err(SignatureError::Malformed));
        assert_eq!(verify(SECRET, Some("yesterday"), Some(SIGNATURE), body, now), Err(SignatureError::Malformed));
        let mut flipped = SIGNATURE.to_string();
        flipped.replace_range(SIGNATURE.len() - 1.., "4");
        assert_eq!(verify(SECRET, Some(TIMESTAMP), Some(&flipped), body, now), Err(SignatureError::Mismatch));
    }
}
