//! The HTTP request that carries events to the destination: method, URL, headers, body.

use alloc::borrow::{Cow, ToOwned};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{PluginConfig, Secret};
use crate::encode::encoder_for;
use crate::event::ConversionEvent;
use crate::normalize::hex;
use crate::time::UnixMillis;

/// A request ready for any HTTP client: the adapter only performs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapiRequest {
    pub method: &'static str,
    pub scheme: String,
    pub authority: String,
    /// Path and query.
    pub path: String,
    /// Lower-case names. The fixed names and values are borrowed, not allocated per request.
    pub headers: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    pub body: Vec<u8>,
}

impl CapiRequest {
    pub fn url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.path)
    }

    /// Headers with secret values replaced, for printing and logs.
    pub fn masked_headers(&self, config: &PluginConfig) -> Vec<(String, String)> {
        let sig = config
            .auth
            .hmac
            .as_ref()
            .map(|h| h.signature_header.as_str());
        self.headers
            .iter()
            .map(|(k, v)| {
                let masked = if k == "authorization" {
                    "Bearer ***".to_owned()
                } else if Some(&**k) == sig {
                    "***".to_owned()
                } else {
                    String::from(&**v)
                };
                (String::from(&**k), masked)
            })
            .collect()
    }
}

/// Why a request could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// A secret is still named by an environment variable: the adapter must resolve it first.
    UnresolvedSecret(&'static str),
    NoEvents,
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::UnresolvedSecret(p) => write!(f, "{p}: secret not resolved"),
            Self::NoEvents => f.write_str("no events to send"),
        }
    }
}

/// HMAC-SHA256 over `"{unix seconds}.{body}"`, lower-case hex: what a receiver recomputes
/// with the shared secret from the timestamp header and the raw body.
pub fn sign(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    // new_from_slice only fails for fixed-size keys; HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(format!("{unix_seconds}.").as_bytes());
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// Checks a signature in constant time.
pub fn verify(secret: &[u8], unix_seconds: i64, body: &[u8], signature_hex: &str) -> bool {
    let want = sign(secret, unix_seconds, body);
    want.len() == signature_hex.len()
        && want
            .bytes()
            .zip(signature_hex.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
            == 0
}

fn inline<'a>(secret: &'a Secret, path: &'static str) -> Result<&'a str, BuildError> {
    match secret {
        Secret::Inline(s) => Ok(s),
        Secret::Env(_) => Err(BuildError::UnresolvedSecret(path)),
    }
}

/// Builds the destination request for one event or a batch, signed at `now`.
pub fn build_request(
    config: &PluginConfig,
    events: &[ConversionEvent],
    now: UnixMillis,
) -> Result<CapiRequest, BuildError> {
    if events.is_empty() {
        return Err(BuildError::NoEvents);
    }
    let dest = &config.destination;
    let encoder = encoder_for(dest.format);
    // A typical event is 700-900 bytes: one allocation for most bodies.
    let mut body = Vec::with_capacity(1024 * events.len());
    encoder.encode(events, &mut body);
    let mut headers = Vec::with_capacity(4);
    headers.push((
        Cow::Borrowed("content-type"),
        Cow::Borrowed(encoder.content_type()),
    ));
    if let Some(token) = &config.auth.bearer_token {
        let token = inline(token, "auth.bearer_token")?;
        let mut value = String::with_capacity(7 + token.len());
        value.push_str("Bearer ");
        value.push_str(token);
        headers.push((Cow::Borrowed("authorization"), Cow::Owned(value)));
    }
    if let Some(h) = &config.auth.hmac {
        let secret = inline(&h.secret, "auth.hmac.secret")?;
        let ts = now.div_euclid(1000);
        headers.push((
            Cow::Owned(h.timestamp_header.clone()),
            Cow::Owned(format!("{ts}")),
        ));
        headers.push((
            Cow::Owned(h.signature_header.clone()),
            Cow::Owned(sign(secret.as_bytes(), ts, &body)),
        ));
    }
    Ok(CapiRequest {
        method: "POST",
        scheme: dest.url.scheme.clone(),
        authority: dest.url.authority.clone(),
        path: dest.url.path.clone(),
        headers,
        body,
    })
}
