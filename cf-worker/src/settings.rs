//! The Worker's own settings: what the core's configuration (one JSON document shared with the
//! Envoy filter, `CAPI_CONFIG`) does not cover because only an edge Worker has it: where the
//! origin is, the collect endpoint, browser origins, cookies. Each is a plain `[vars]` entry in
//! wrangler.toml; secrets (`CAPI_COLLECT_SECRET`, `CAPI_ADMIN_TOKEN`, the bearer token that
//! `auth.bearer_token_env` names) come from `wrangler secret put`, never from wrangler.toml.

use capi_core::config::parse_url;

/// Names of the Worker's environment entries.
pub mod names {
    /// The core configuration (JSON string, or a TOML table that wrangler passes as an object).
    pub const CONFIG: &str = "CAPI_CONFIG";
    pub const ORIGIN: &str = "CAPI_ORIGIN";
    pub const COLLECT_PATH: &str = "CAPI_COLLECT_PATH";
    pub const ALLOWED_ORIGINS: &str = "CAPI_ALLOWED_ORIGINS";
    pub const GUID_COOKIE: &str = "CAPI_GUID_COOKIE";
    pub const COOKIE_DOMAIN: &str = "CAPI_COOKIE_DOMAIN";
    pub const CLICK_ID_DAYS: &str = "CAPI_CLICK_ID_DAYS";
    pub const SIGNATURE_MAX_SKEW_S: &str = "CAPI_SIGNATURE_MAX_SKEW_S";
    pub const DLQ_NAME: &str = "CAPI_DLQ_NAME";
    /// Secret: HMAC-SHA256 key for signed collect requests.
    pub const COLLECT_SECRET: &str = "CAPI_COLLECT_SECRET";
    /// Secret: bearer token for `GET /_capi/stats`.
    pub const ADMIN_TOKEN: &str = "CAPI_ADMIN_TOKEN";
    /// Bindings.
    pub const DEDUP_KV: &str = "CAPI_DEDUP";
    pub const RETRY_QUEUE: &str = "CAPI_RETRY_QUEUE";
    pub const DLQ: &str = "CAPI_DLQ";
    pub const ANALYTICS: &str = "CAPI_ANALYTICS";
}

/// Cookie lifetimes.
pub const GUID_MAX_AGE_S: u32 = 365 * 24 * 3600;

/// Parsed Worker settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The collect endpoint's path; None disables collect mode.
    pub collect_path: Option<String>,
    /// `scheme://authority` of the origin that proxy mode forwards to; None forwards the
    /// request unchanged (a Worker on a zone route reaches the zone's origin that way).
    pub origin: Option<String>,
    /// Exact browser origins (`https://shop.example`) allowed to call collect, with CORS.
    pub allowed_origins: Vec<String>,
    pub guid_cookie: String,
    pub cookie_domain: Option<String>,
    pub click_id_max_age_s: u32,
    pub signature_max_skew_s: i64,
    /// The dead-letter queue's name: a batch from it is logged and acknowledged.
    pub dlq_name: String,
}

/// A settings error: the variable's name and what is wrong (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    pub name: &'static str,
    pub reason: String,
}

impl core::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.name, self.reason)
    }
}

fn serr(name: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        name,
        reason: reason.into(),
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Normalizes a browser origin: `scheme://host[:port]`, lower case, no path.
pub fn normalize_origin(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('/');
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !(scheme == "https" || scheme == "http")
        || rest.is_empty()
        || rest.contains(['/', '?', '#', '@', ' '])
    {
        return None;
    }
    Some(format!("{scheme}://{}", rest.to_ascii_lowercase()))
}

impl Settings {
    /// Reads the settings through `get` (the Worker's env). Unset or empty means the default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let collect_path = match get(names::COLLECT_PATH) {
            None => Some("/collect".to_owned()),
            Some(p) if p.eq_ignore_ascii_case("off") => None,
            Some(p) if p.starts_with('/') && !p.contains(['?', '#', ' ']) => Some(p),
            Some(_) => {
                return Err(serr(
                    names::COLLECT_PATH,
                    "expected a path starting with / (or \"off\")",
                ));
            }
        };

        let origin = match get(names::ORIGIN) {
            None => None,
            Some(o) => {
                // http is allowed to any host here: this is the site's own origin, not the CAPI
                // destination (which the core keeps on https). Validated as https, then kept.
                let bad = || {
                    serr(
                        names::ORIGIN,
                        "expected http(s)://host[:port] without a path",
                    )
                };
                let (scheme, rest) = o.split_once("://").ok_or_else(bad)?;
                let scheme = scheme.to_ascii_lowercase();
                if scheme != "http" && scheme != "https" {
                    return Err(bad());
                }
                let url = parse_url(&format!("https://{rest}"), false).map_err(|_| bad())?;
                if url.path != "/" {
                    return Err(bad());
                }
                Some(format!("{scheme}://{}", url.authority))
            }
        };

        let mut allowed_origins = Vec::new();
        if let Some(list) = get(names::ALLOWED_ORIGINS) {
            for item in list
                .split([',', ' ', '\n'])
                .filter(|s| !s.trim().is_empty())
            {
                match normalize_origin(item) {
                    Some(o) => allowed_origins.push(o),
                    None => {
                        return Err(serr(
                            names::ALLOWED_ORIGINS,
                            "expected a comma-separated list of https://host[:port] origins",
                        ));
                    }
                }
            }
        }

        let guid_cookie = get(names::GUID_COOKIE).unwrap_or_else(|| "capi_guid".to_owned());
        if !is_token(&guid_cookie) || guid_cookie.len() > 64 {
            return Err(serr(
                names::GUID_COOKIE,
                "expected a cookie name of [A-Za-z0-9_.-]",
            ));
        }
        let cookie_domain = match get(names::COOKIE_DOMAIN) {
            None => None,
            Some(d) if is_token(d.trim_start_matches('.')) && d.contains('.') => {
                Some(d.to_ascii_lowercase())
            }
            Some(_) => {
                return Err(serr(
                    names::COOKIE_DOMAIN,
                    "expected a domain such as example.com",
                ));
            }
        };
        let click_id_days: u32 = match get(names::CLICK_ID_DAYS) {
            None => 90,
            Some(d) => d
                .parse()
                .ok()
                .filter(|d| (1..=400).contains(d))
                .ok_or_else(|| serr(names::CLICK_ID_DAYS, "expected whole days from 1 to 400"))?,
        };
        let signature_max_skew_s: i64 = match get(names::SIGNATURE_MAX_SKEW_S) {
            None => 300,
            Some(d) => d
                .parse()
                .ok()
                .filter(|d| (1..=3600).contains(d))
                .ok_or_else(|| {
                    serr(
                        names::SIGNATURE_MAX_SKEW_S,
                        "expected seconds from 1 to 3600",
                    )
                })?,
        };
        let dlq_name = get(names::DLQ_NAME).unwrap_or_else(|| "capi-dlq".to_owned());
        Ok(Self {
            collect_path,
            origin,
            allowed_origins,
            guid_cookie,
            cookie_domain,
            click_id_max_age_s: click_id_days * 86_400,
            signature_max_skew_s,
            dlq_name,
        })
    }

    /// Whether a browser origin may call collect.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        normalize_origin(origin).is_some_and(|o| self.allowed_origins.contains(&o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.collect_path.as_deref(), Some("/collect"));
        assert_eq!(s.origin, None);
        assert_eq!(s.guid_cookie, "capi_guid");
        assert_eq!(s.click_id_max_age_s, 90 * 86_400);
        assert_eq!(s.signature_max_skew_s, 300);
        assert!(s.allowed_origins.is_empty());
    }

    #[test]
    fn origins_and_paths() {
        let s = settings(&[
            ("CAPI_ORIGIN", "http://127.0.0.1:8081/"),
            (
                "CAPI_ALLOWED_ORIGINS",
                "https://Shop.Example, http://localhost:3000",
            ),
            ("CAPI_COLLECT_PATH", "/capi/collect"),
        ])
        .unwrap();
        assert_eq!(s.origin.as_deref(), Some("http://127.0.0.1:8081"));
        assert_eq!(s.collect_path.as_deref(), Some("/capi/collect"));
        assert!(s.origin_allowed("https://shop.example"));
        assert!(s.origin_allowed("http://localhost:3000"));
        assert!(!s.origin_allowed("https://evil.example"));
        assert!(!s.origin_allowed("null"));
        let s = settings(&[("CAPI_ORIGIN", "http://origin.internal:8080")]).unwrap();
        assert_eq!(s.origin.as_deref(), Some("http://origin.internal:8080"));
        assert!(settings(&[("CAPI_ORIGIN", "https://x.example/path")]).is_err());
        assert!(settings(&[("CAPI_ORIGIN", "ftp://x.example")]).is_err());
        assert_eq!(
            settings(&[("CAPI_COLLECT_PATH", "off")])
                .unwrap()
                .collect_path,
            None
        );
        let e = settings(&[("CAPI_COLLECT_PATH", "collect")]).unwrap_err();
        assert_eq!(e.name, "CAPI_COLLECT_PATH");
        assert!(settings(&[("CAPI_ALLOWED_ORIGINS", "shop.example")]).is_err());
        assert!(settings(&[("CAPI_GUID_COOKIE", "bad name")]).is_err());
        assert!(settings(&[("CAPI_CLICK_ID_DAYS", "0")]).is_err());
    }
}
