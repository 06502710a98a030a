//! The collect format: a conversion described directly in JSON (by a site's backend, a
//! browser beacon, or `capi build --event`), turned into an event by the same extraction,
//! normalization and event_id rules as an observed exchange.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use serde_json::Value;

use crate::config::{Extract, Match, PathPattern, PluginConfig, Rule, ValueUnit};
use crate::event::ConversionType;
use crate::extract::{Exchange, ExtractError, Extracted, Source, extract_event};
use crate::json_select::PointerTree;
use crate::time::UnixMillis;

/// The fields a collect payload may carry. Anything else is refused.
pub const COLLECT_FIELDS: [&str; 12] = [
    "conversion_type",
    "order_id",
    "value",
    "value_minor",
    "currency",
    "email",
    "phone",
    "guid",
    "first_party_id",
    "timestamp",
    "user_agent",
    "client_ip",
];

fn field_err(field: &'static str, reason: &str) -> ExtractError {
    ExtractError {
        field,
        reason: reason.to_owned(),
    }
}

/// Builds the event for a collect payload such as
/// `{"conversion_type":"Purchase","order_id":"A-1","value":"12.50","currency":"eur","email":"a@b.co"}`.
/// `value_minor` (integer minor units) may stand instead of `value`. When the payload has no
/// `user_agent`, the request's `user-agent` header (from `request_headers`) is used. The
/// client's IP address is the payload's `client_ip` when given (a backend knows its visitor's),
/// else `peer_ip`, which an adapter passes only when the caller is the visitor's browser.
/// Click ids come from the request's `capi_<name>` cookies (a browser beacon carries them).
pub fn collect_event(
    config: &PluginConfig,
    body: &[u8],
    request_headers: &[(String, String)],
    peer_ip: Option<&str>,
    now: UnixMillis,
) -> Result<Extracted, ExtractError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| field_err("body", "not valid JSON"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| field_err("body", "expected a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !COLLECT_FIELDS.contains(&k.as_str())) {
        // The key is caller-controlled; name it only when it is short and plain.
        let shown: String =
            if k.len() <= 40 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                k.clone()
            } else {
                "(unprintable)".to_owned()
            };
        return Err(ExtractError {
            field: "body",
            reason: alloc::format!("unknown field {shown}"),
        });
    }
    let conversion_type = match obj.get("conversion_type") {
        Some(Value::String(s)) => ConversionType::parse(s)
            .ok_or_else(|| field_err("conversion_type", "empty or longer than 64 bytes"))?,
        Some(_) => return Err(field_err("conversion_type", "expected a string")),
        None => return Err(field_err("conversion_type", "missing")),
    };
    if obj.contains_key("value") && obj.contains_key("value_minor") {
        return Err(field_err("value", "give value or value_minor, not both"));
    }
    let src = |key: &str| {
        obj.get(key)
            .filter(|v| !v.is_null())
            .map(|_| Source::RequestBody(alloc::format!("/{key}")))
    };
    let (value, value_unit) = match (src("value"), src("value_minor")) {
        (Some(s), _) => (Some(s), ValueUnit::Major),
        (None, Some(s)) => (Some(s), ValueUnit::Minor),
        (None, None) => (None, ValueUnit::Major),
    };
    let extract = Extract {
        order_id: src("order_id"),
        value,
        value_unit,
        currency: src("currency"),
        email: src("email"),
        phone: src("phone"),
        guid: src("guid"),
        first_party_id: src("first_party_id"),
        timestamp: src("timestamp"),
        user_agent: Some(
            src("user_agent").unwrap_or_else(|| Source::Header("user-agent".to_owned())),
        ),
        // Built by the extractor for this one event.
        response_tree: PointerTree::default(),
        request_tree: PointerTree::default(),
    };
    let client_ip = match obj.get("client_ip") {
        None | Some(Value::Null) => peer_ip,
        Some(Value::String(s)) => {
            if crate::click_id::normalize_ip(s).is_none() {
                return Err(field_err("client_ip", "expected an IPv4 or IPv6 address"));
            }
            Some(s.as_str())
        }
        Some(_) => return Err(field_err("client_ip", "expected a string")),
    };
    let rule = Rule {
        name: "collect".to_owned(),
        conversion_type,
        matcher: Match {
            method: None,
            path: PathPattern::Any,
            host: None,
            status: Vec::new(),
            content_type: None,
        },
        extract,
    };
    let ex = Exchange {
        method: "POST",
        request_headers,
        request_body: Some(body),
        response_status: 200,
        client_ip,
        ..Exchange::default()
    };
    extract_event(config, &rule, &ex, now)
}
