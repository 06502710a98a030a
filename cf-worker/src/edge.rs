//! What only an edge sees, without any Worker API: first-party cookies, click ids, CORS and
//! the checks a collect request goes through before the core reads it. Everything here is a
//! pure function so the host runs its tests.

use capi_core::extract::{cookie, header};
use capi_core::normalize;
use serde_json::json;

use crate::settings::{GUID_MAX_AGE_S, Settings};

/// A `Set-Cookie` value: HttpOnly, Secure, SameSite=Lax, Path=/, with a Max-Age.
pub fn set_cookie(name: &str, value: &str, max_age_s: u32, domain: Option<&str>) -> String {
    let mut c =
        format!("{name}={value}; Max-Age={max_age_s}; Path=/; HttpOnly; Secure; SameSite=Lax");
    if let Some(d) = domain {
        c.push_str("; Domain=");
        c.push_str(d);
    }
    c
}

/// The visitor's guid cookie when it holds a UUID (canonical form).
pub fn guid_from_cookie(headers: &[(String, String)], name: &str) -> Option<String> {
    cookie(headers, name).and_then(|v| normalize::parse_guid(v).ok())
}

/// The guid cookie for a new visitor, from 16 random bytes.
pub fn new_guid_cookie(settings: &Settings, random: [u8; 16]) -> (String, String) {
    let guid = normalize::uuid_v4_from_bytes(random);
    let c = set_cookie(
        &settings.guid_cookie,
        &guid,
        GUID_MAX_AGE_S,
        settings.cookie_domain.as_deref(),
    );
    (guid, c)
}

/// Whether a proxied exchange is a page load, where a first-party cookie belongs.
pub fn is_navigation(method: &str, headers: &[(String, String)]) -> bool {
    method.eq_ignore_ascii_case("GET")
        && (header(headers, "sec-fetch-dest").is_some_and(|d| d.eq_ignore_ascii_case("document"))
            || header(headers, "accept").is_some_and(|a| a.contains("text/html")))
}

/// A refused collect request: status and a message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    /// What was wrong with (`body`, a payload field, a header, `method`, `origin`...).
    pub field: String,
    pub message: String,
}

impl Reject {
    pub fn new(status: u16, field: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// `{"error": "...", "field": "..."}`.
    pub fn body(&self) -> String {
        serde_json::to_string(&json!({ "error": self.message, "field": self.field }))
            .unwrap_or_default()
    }
}

/// Media type of a Content-Type, lower case without parameters.
pub fn media_type(ct: Option<&str>) -> String {
    ct.and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The collect endpoint's checks before the body is read. `browser` is true when the request
/// came from an allowed browser origin (a beacon may only send text/plain without preflight).
pub fn check_collect_head(
    method: &str,
    content_type: Option<&str>,
    content_length: Option<&str>,
    max_body: usize,
    browser: bool,
) -> Result<(), Reject> {
    if !method.eq_ignore_ascii_case("POST") {
        return Err(Reject::new(
            405,
            "method",
            format!(
                "method {} not allowed: POST a JSON conversion",
                printable(method, 16)
            ),
        ));
    }
    let media = media_type(content_type);
    let ok = media == "application/json" || (browser && media == "text/plain");
    if !ok {
        let what = if media.is_empty() {
            "missing".to_owned()
        } else {
            format!("{} is not accepted", printable(&media, 64))
        };
        return Err(Reject::new(
            415,
            "content-type",
            format!("content-type {what}: expected application/json"),
        ));
    }
    if let Some(len) = content_length.and_then(|l| l.trim().parse::<u64>().ok())
        && len > max_body as u64
    {
        return Err(Reject::new(
            413,
            "body",
            format!("body of {len} bytes is over the limit of {max_body} bytes"),
        ));
    }
    Ok(())
}

/// The over-size answer when a body without Content-Length grows past the limit.
pub fn too_large(max_body: usize) -> Reject {
    Reject::new(
        413,
        "body",
        format!("body is over the limit of {max_body} bytes"),
    )
}

/// Caller-controlled text for an error message: printable ASCII only, cut short.
fn printable(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(max)
        .collect()
}

pub const SIGNATURE_HEADER: &str = "x-capi-signature";
pub const TIMESTAMP_HEADER: &str = "x-capi-timestamp";

/// Checks `x-capi-signature` = hex HMAC-SHA256 of `"{x-capi-timestamp}.{body}"` under the secret,
/// with the timestamp (unix seconds) within `max_skew_s` of `now_s`. `sha256=` may prefix the
/// signature.
pub fn verify_signature(
    secret: &[u8],
    headers: &[(String, String)],
    body: &[u8],
    now_s: i64,
    max_skew_s: i64,
) -> Result<(), Reject> {
    let ts = header(headers, TIMESTAMP_HEADER).ok_or_else(|| {
        Reject::new(
            401,
            TIMESTAMP_HEADER,
            "missing x-capi-timestamp header (unix seconds) on a signed endpoint",
        )
    })?;
    let ts: i64 = ts.trim().parse().map_err(|_| {
        Reject::new(
            401,
            TIMESTAMP_HEADER,
            "x-capi-timestamp is not unix seconds",
        )
    })?;
    if (now_s - ts).abs() > max_skew_s {
        return Err(Reject::new(
            401,
            TIMESTAMP_HEADER,
            format!("x-capi-timestamp is stale: more than {max_skew_s} s from now"),
        ));
    }
    let sig = header(headers, SIGNATURE_HEADER).ok_or_else(|| {
        Reject::new(
            401,
            SIGNATURE_HEADER,
            "missing x-capi-signature header on a signed endpoint",
        )
    })?;
    let sig = sig.trim();
    let sig = sig.strip_prefix("sha256=").unwrap_or(sig);
    if !capi_core::request::verify(secret, ts, body, sig) {
        return Err(Reject::new(
            401,
            SIGNATURE_HEADER,
            "x-capi-signature does not match the timestamp and body",
        ));
    }
    Ok(())
}

/// CORS headers for an allowed browser origin, on the POST answer.
pub fn cors_headers(origin: &str) -> Vec<(&'static str, String)> {
    vec![
        ("access-control-allow-origin", origin.to_owned()),
        ("access-control-allow-credentials", "true".to_owned()),
        ("vary", "Origin".to_owned()),
    ]
}

/// The answer to `OPTIONS` on the collect path: 204 with the CORS grant for an allowed origin
/// asking for POST, 403 otherwise.
pub fn preflight(
    settings: &Settings,
    origin: Option<&str>,
    request_method: Option<&str>,
) -> Result<Vec<(&'static str, String)>, Reject> {
    let Some(origin) = origin else {
        return Err(Reject::new(
            403,
            "origin",
            "CORS preflight without an Origin header",
        ));
    };
    if !settings.origin_allowed(origin) {
        return Err(Reject::new(403, "origin", "origin not allowed"));
    }
    if !request_method.is_some_and(|m| m.trim().eq_ignore_ascii_case("POST")) {
        return Err(Reject::new(
            403,
            "access-control-request-method",
            "only POST is allowed",
        ));
    }
    let mut h = cors_headers(origin.trim());
    h.push(("access-control-allow-methods", "POST, OPTIONS".to_owned()));
    h.push((
        "access-control-allow-headers",
        format!("content-type, {SIGNATURE_HEADER}, {TIMESTAMP_HEADER}"),
    ));
    h.push(("access-control-max-age", "86400".to_owned()));
    Ok(h)
}

/// When a browser posts a conversion without a guid, the visitor's guid cookie stands in. Returns
/// the new body, or None when nothing changes (no cookie, a guid already given, not an object).
pub fn with_cookie_guid(body: &[u8], guid: Option<&str>) -> Option<Vec<u8>> {
    let guid = guid?;
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let obj = v.as_object_mut()?;
    if obj.get("guid").is_some_and(|g| !g.is_null()) {
        return None;
    }
    obj.insert(
        "guid".to_owned(),
        serde_json::Value::String(guid.to_owned()),
    );
    serde_json::to_vec(&v).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn settings() -> Settings {
        Settings::from_lookup(|k| {
            (k == "CAPI_ALLOWED_ORIGINS").then(|| "https://shop.example".to_owned())
        })
        .unwrap()
    }

    #[test]
    fn cookies_have_the_right_attributes() {
        let (guid, c) = new_guid_cookie(&settings(), [7; 16]);
        assert_eq!(normalize::parse_guid(&guid).as_deref(), Ok(guid.as_str()));
        assert_eq!(&guid[14..15], "4");
        assert_eq!(
            c,
            format!("capi_guid={guid}; Max-Age=31536000; Path=/; HttpOnly; Secure; SameSite=Lax")
        );
        assert!(set_cookie("a", "b", 5, Some("example.com")).ends_with("; Domain=example.com"));
    }

    #[test]
    fn guid_cookie_must_be_a_uuid() {
        let g = "85B04DED-09DD-4015-AD30-581E45452DD9";
        assert_eq!(
            guid_from_cookie(
                &h(&[("cookie", &format!("a=1; capi_guid={g}"))]),
                "capi_guid"
            )
            .as_deref(),
            Some("85b04ded-09dd-4015-ad30-581e45452dd9")
        );
        assert_eq!(
            guid_from_cookie(&h(&[("cookie", "capi_guid=nope")]), "capi_guid"),
            None
        );
    }

    #[test]
    fn collect_head_checks() {
        assert_eq!(
            check_collect_head("GET", None, None, 10, false)
                .unwrap_err()
                .status,
            405
        );
        let e = check_collect_head("POST", Some("text/html"), None, 10, false).unwrap_err();
        assert_eq!((e.status, e.field.as_str()), (415, "content-type"));
        assert!(e.message.contains("text/html"));
        assert_eq!(
            check_collect_head("POST", None, None, 10, false)
                .unwrap_err()
                .status,
            415
        );
        assert_eq!(
            check_collect_head("POST", Some("text/plain"), None, 10, false)
                .unwrap_err()
                .status,
            415
        );
        assert!(
            check_collect_head("POST", Some("text/plain;charset=UTF-8"), None, 10, true).is_ok()
        );
        assert!(
            check_collect_head(
                "POST",
                Some("Application/JSON; charset=utf-8"),
                Some("10"),
                10,
                false
            )
            .is_ok()
        );
        let e = check_collect_head("POST", Some("application/json"), Some("11"), 10, false)
            .unwrap_err();
        assert_eq!(e.status, 413);
        assert_eq!(
            e.body(),
            r#"{"error":"body of 11 bytes is over the limit of 10 bytes","field":"body"}"#
        );
    }

    #[test]
    fn signatures() {
        let body = br#"{"conversion_type":"Lead"}"#;
        let now = 1_700_000_000;
        let sig = capi_core::request::sign(b"s3cret", now, body);
        let ok = h(&[
            ("x-capi-timestamp", &now.to_string()),
            ("x-capi-signature", &sig),
        ]);
        assert!(verify_signature(b"s3cret", &ok, body, now + 10, 300).is_ok());
        let prefixed = h(&[
            ("x-capi-timestamp", &now.to_string()),
            ("x-capi-signature", &format!("sha256={sig}")),
        ]);
        assert!(verify_signature(b"s3cret", &prefixed, body, now, 300).is_ok());
        let e = verify_signature(b"s3cret", &ok, body, now + 301, 300).unwrap_err();
        assert_eq!((e.status, e.field.as_str()), (401, "x-capi-timestamp"));
        let e = verify_signature(b"other", &ok, body, now, 300).unwrap_err();
        assert_eq!(e.field, "x-capi-signature");
        let e = verify_signature(b"s3cret", &ok, b"{}", now, 300).unwrap_err();
        assert_eq!(e.status, 401);
        assert_eq!(
            verify_signature(b"s3cret", &h(&[]), body, now, 300)
                .unwrap_err()
                .field,
            "x-capi-timestamp"
        );
        let no_sig = h(&[("x-capi-timestamp", &now.to_string())]);
        assert_eq!(
            verify_signature(b"s3cret", &no_sig, body, now, 300)
                .unwrap_err()
                .field,
            "x-capi-signature"
        );
    }

    #[test]
    fn cors() {
        let s = settings();
        let ok = preflight(&s, Some("https://shop.example"), Some("POST")).unwrap();
        assert!(ok.contains(&(
            "access-control-allow-origin",
            "https://shop.example".to_owned()
        )));
        assert!(
            ok.iter()
                .any(|(k, v)| *k == "access-control-allow-headers" && v.contains("content-type"))
        );
        assert_eq!(
            preflight(&s, Some("https://evil.example"), Some("POST"))
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(preflight(&s, None, Some("POST")).unwrap_err().status, 403);
        assert_eq!(
            preflight(&s, Some("https://shop.example"), Some("DELETE"))
                .unwrap_err()
                .status,
            403
        );
    }

    #[test]
    fn cookie_guid_fills_a_missing_guid() {
        let g = "85b04ded-09dd-4015-ad30-581e45452dd9";
        let out =
            with_cookie_guid(br#"{"conversion_type":"Lead","email":"a@b.co"}"#, Some(g)).unwrap();
        assert!(String::from_utf8(out).unwrap().contains(g));
        assert_eq!(with_cookie_guid(br#"{"guid":"x"}"#, Some(g)), None);
        assert_eq!(with_cookie_guid(br#"{"a":1}"#, None), None);
        assert_eq!(with_cookie_guid(b"[1]", Some(g)), None);
    }
}
