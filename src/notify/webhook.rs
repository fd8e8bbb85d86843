//! Standard Webhooks signing (<https://www.standardwebhooks.com>, spec v1): every request carries
//! `webhook-id` (the notification's idempotency key: the same on every retry, so receivers can
//! drop duplicates), `webhook-timestamp` (unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
//!
//! The secret is the file/env value: `whsec_<base64 key>` (the Standard Webhooks form; the key is
//! the decoded bytes) or any other string (its UTF-8 bytes are the key).
//!
//! Receivers verify with [`verify`] (Rust) or the equivalent in README.md (Python): recompute the
//! HMAC over the raw body, compare in constant time with any `v1,` signature in the header, and
//! reject timestamps more than `tolerance` away from their clock (replay protection).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Default clock tolerance for [`verify`] (the Standard Webhooks reference libraries use 5 min).
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

fn key(secret: &str) -> Vec<u8> {
    match secret.strip_prefix("whsec_").map(|k| B64.decode(k)) {
        Some(Ok(k)) => k,
        _ => secret.as_bytes().to_vec(),
    }
}

fn mac(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(&key(secret)).expect("HMAC takes any key length");
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `webhook-signature` header value for this message.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", B64.encode(mac(secret, id, timestamp, body).finalize().into_bytes()))
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("webhook-timestamp is not a number")]
    BadTimestamp,
    #[error("webhook-timestamp is {0} s away from now (tolerance exceeded)")]
    Stale(i64),
    #[error("no v1 signature matches")]
    NoMatch,
}

/// Checks a received webhook: `id`, `timestamp`, `signatures` are the three header values, `body`
/// the raw request body, `now` the receiver's unix time in seconds.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    if (now - ts).abs() > tolerance_secs {
        return Err(VerifyError::Stale(now - ts));
    }
    for sig in signatures.split(' ') {
        let Some(b64) = sig.strip_prefix("v1,") else { continue };
        let Ok(bytes) = B64.decode(b64) else { continue };
        // verify_slice compares in constant time.
        if mac(secret, id, ts, body).verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (spec/standard-webhooks.md, "Signature
    /// scheme"): secret `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`, id `msg_p5jXN8AQM9LWM0D4loKWxJek`,
    /// timestamp 1614265330, body `{"test": 2432232314}` →
    /// `v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=`.
    #[test]
    fn standard_webhooks_reference_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let (id, ts, body) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        let sig = sign(secret, id, ts, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(verify(secret, id, "1614265330", &sig, body, ts + 10, 300), Ok(()));
    }

    #[test]
    fn verify_rejects_tampering_and_stale_messages() {
        let s = "plain secret";
        let sig = sign(s, "k", 1000, b"{}");
        assert_eq!(verify(s, "k", "1000", &sig, b"{ }", 1000, 300), Err(VerifyError::NoMatch));
        assert_eq!(verify(s, "k2", "1000", &sig, b"{}", 1000, 300), Err(VerifyError::NoMatch));
        assert_eq!(verify("other", "k", "1000", &sig, b"{}", 1000, 300), Err(VerifyError::NoMatch));
        assert_eq!(verify(s, "k", "1000", &sig, b"{}", 1400, 300), Err(VerifyError::Stale(400)));
        assert_eq!(verify(s, "k", "x", &sig, b"{}", 1000, 300), Err(VerifyError::BadTimestamp));
        // Several signatures (key rotation): any match passes.
        let both = format!("v1,AAAA {sig}");
        assert_eq!(verify(s, "k", "1000", &both, b"{}", 1000, 300), Ok(()));
    }
}
