//! The ABI's operations as safe Rust: bytes in, the JSON result document out. The wasm
//! exports call exactly these; native tests call them too and compare.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use serde_json::{Map, Value, json};

use capi_core::config::PluginConfig;
use capi_core::delivery::{self, Answer, DeliveryPlan};
use capi_core::normalize::{self, IdError};
use capi_core::{build_request as core_build, collect_event};

/// Identifier kinds of `capi_hash_identifier`.
pub const KIND_EMAIL: u32 = 1;
pub const KIND_PHONE_HASHED: u32 = 2;
pub const KIND_PHONE_PLAIN: u32 = 3;

fn to_bytes(v: &Value) -> Vec<u8> {
    // A Value always serializes (its map keys are strings).
    serde_json::to_vec(v).unwrap_or_default()
}

fn ok(v: Value) -> Vec<u8> {
    to_bytes(&json!({ "ok": v }))
}

fn error(kind: &str, mut fields: Map<String, Value>) -> Vec<u8> {
    fields.insert("kind".to_owned(), Value::from(kind));
    to_bytes(&json!({ "error": Value::Object(fields) }))
}

fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Stable snake_case codes for identifier errors.
pub fn id_error_code(e: IdError) -> &'static str {
    match e {
        IdError::Empty => "empty",
        IdError::NotAnEmail => "not_an_email",
        IdError::NotAPhone => "not_a_phone",
        IdError::NotAUuid => "not_a_uuid",
        IdError::TooLong => "too_long",
        IdError::ControlCharacter => "control_character",
        IdError::NotAnIpAddress => "not_an_ip_address",
    }
}

fn parse_config(config: &[u8]) -> Result<PluginConfig, Vec<u8>> {
    PluginConfig::from_json(config).map_err(|e| {
        error(
            "config",
            fields([
                ("path", Value::from(e.path)),
                ("reason", Value::from(e.reason)),
            ]),
        )
    })
}

fn parse_secrets(secrets: &[u8]) -> Result<Map<String, Value>, Vec<u8>> {
    if secrets.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let bad = || {
        error(
            "secrets",
            fields([
                ("path", Value::from("")),
                ("reason", Value::from("expected a JSON object of strings")),
            ]),
        )
    };
    match serde_json::from_slice::<Value>(secrets) {
        Ok(Value::Object(m)) if m.values().all(Value::is_string) => Ok(m),
        _ => Err(bad()),
    }
}

/// `capi_build_request`: the destination request for one collected conversion.
pub fn build_request(config: &[u8], input: &[u8], secrets: &[u8], now_ms: i64) -> Vec<u8> {
    let mut cfg = match parse_config(config) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let secrets = match parse_secrets(secrets) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if let Err(e) =
        cfg.resolve_secrets(|name| secrets.get(name).and_then(Value::as_str).map(str::to_owned))
    {
        return error(
            "secrets",
            fields([
                ("path", Value::from(e.path)),
                ("reason", Value::from(e.reason)),
            ]),
        );
    }
    let extracted = match collect_event(&cfg, input, &[], None, now_ms) {
        Ok(x) => x,
        Err(e) => {
            return error(
                "input",
                fields([
                    ("field", Value::from(e.field)),
                    ("reason", Value::from(e.reason)),
                ]),
            );
        }
    };
    let request = match core_build(&cfg, core::slice::from_ref(&extracted.event), now_ms) {
        Ok(r) => r,
        Err(e) => {
            return error(
                "build",
                fields([("reason", Value::from(alloc::format!("{e}")))]),
            );
        }
    };
    let headers: Vec<Value> = request.headers.iter().map(|(k, v)| json!([k, v])).collect();
    let skipped: Vec<Value> = extracted
        .skipped
        .iter()
        .map(|s| json!({ "field": s.field, "reason": id_error_code(s.reason) }))
        .collect();
    // The seed encoder writes JSON, so the body is UTF-8; lossy only guards a future encoder.
    let body = match String::from_utf8(request.body) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    ok(json!({
        "event_id": extracted.event.event_id,
        "request": { "method": request.method, "url": alloc::format!("{}://{}{}", request.scheme, request.authority, request.path), "headers": headers, "body": body },
        "skipped": skipped,
    }))
}

/// `capi_hash_identifier`: normalize and hash one email or phone number.
pub fn hash_identifier(kind: u32, value: &[u8], calling_code: &[u8]) -> Vec<u8> {
    let arg = |reason: &str| error("argument", fields([("reason", Value::from(reason))]));
    let Ok(value) = core::str::from_utf8(value) else {
        return arg("value is not UTF-8");
    };
    let Ok(cc) = core::str::from_utf8(calling_code) else {
        return arg("calling code is not UTF-8");
    };
    let cc = cc.trim().trim_start_matches('+');
    let cc = if cc.is_empty() { "1" } else { cc };
    if cc.len() > 3 || !cc.bytes().all(|b| b.is_ascii_digit()) || cc.starts_with('0') {
        return arg("expected a country calling code of 1 to 3 digits");
    }
    let result = match kind {
        KIND_EMAIL => normalize::hash_email(value).map(|id| (id, "HashedEmail")),
        KIND_PHONE_HASHED | KIND_PHONE_PLAIN => {
            normalize::phone_identifier(value, cc, kind == KIND_PHONE_HASHED)
                .map(|i| (i.id, i.name.as_str()))
        }
        _ => return arg("kind must be 1 (email), 2 (phone, hashed) or 3 (phone, plain)"),
    };
    match result {
        Ok((id, name)) => ok(json!({ "id": id, "name": name })),
        Err(e) => error(
            "identifier",
            fields([("reason", Value::from(id_error_code(e)))]),
        ),
    }
}

/// The request of `capi_plan`, read strictly (unknown keys are refused).
struct PlanRequest {
    status: Option<u16>,
    retry_after: Option<String>,
    body: String,
    failure: Option<Answer<'static>>,
    attempts_made: u32,
    first_attempt_at: i64,
    now: i64,
    random: u64,
}

fn parse_plan_request(request: &[u8]) -> Result<PlanRequest, String> {
    let v: Value = serde_json::from_slice(request).map_err(|_| "not valid JSON".to_owned())?;
    let o = v.as_object().ok_or("expected a JSON object")?;
    if let Some(k) = o.keys().find(|k| {
        ![
            "answer",
            "attempts_made",
            "first_attempt_at",
            "now",
            "random",
        ]
        .contains(&k.as_str())
    }) {
        let shown = if k.len() <= 40 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            k.as_str()
        } else {
            "(unprintable)"
        };
        return Err(alloc::format!("unknown field {shown}"));
    }
    let int = |key: &str| -> Result<i64, String> {
        o.get(key)
            .and_then(Value::as_i64)
            .ok_or_else(|| alloc::format!("{key}: expected an integer"))
    };
    let attempts_made = u32::try_from(int("attempts_made")?)
        .map_err(|_| "attempts_made: expected an integer from 0".to_owned())?;
    let first_attempt_at = int("first_attempt_at")?;
    let now = int("now")?;
    let random = match o.get("random") {
        None => 0,
        Some(r) => r.as_u64().ok_or("random: expected an unsigned integer")?,
    };
    let a = o
        .get("answer")
        .and_then(Value::as_object)
        .ok_or("answer: expected an object")?;
    let mut out = PlanRequest {
        status: None,
        retry_after: None,
        body: String::new(),
        failure: None,
        attempts_made,
        first_attempt_at,
        now,
        random,
    };
    if let Some(f) = a.get("failure") {
        if a.len() != 1 {
            return Err(
                "answer: give failure alone, or status with retry_after and body".to_owned(),
            );
        }
        out.failure = Some(match f.as_str() {
            Some("timeout") => Answer::Timeout,
            Some("connect_failed") => Answer::ConnectFailed,
            _ => {
                return Err("answer.failure: expected \"timeout\" or \"connect_failed\"".to_owned());
            }
        });
        return Ok(out);
    }
    if let Some(k) = a
        .keys()
        .find(|k| !["status", "retry_after", "body"].contains(&k.as_str()))
    {
        let shown = if k.len() <= 40 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            k.as_str()
        } else {
            "(unprintable)"
        };
        return Err(alloc::format!("answer: unknown field {shown}"));
    }
    let status = a
        .get("status")
        .and_then(Value::as_u64)
        .filter(|s| (100..=599).contains(s))
        .ok_or("answer.status: expected an HTTP status from 100 to 599")?;
    out.status = u16::try_from(status).ok();
    out.retry_after = match a.get("retry_after") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("answer.retry_after: expected a string".to_owned()),
    };
    out.body = match a.get("body") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("answer.body: expected a string".to_owned()),
    };
    Ok(out)
}

/// `capi_plan`: what one answer leads to, under the configuration's retry policy.
pub fn plan(config: &[u8], request: &[u8]) -> Vec<u8> {
    let cfg = match parse_config(config) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let r = match parse_plan_request(request) {
        Ok(r) => r,
        Err(reason) => return error("request", fields([("reason", Value::from(reason))])),
    };
    let answer = match (r.failure, r.status) {
        (Some(f), _) => f,
        (None, Some(status)) => Answer::Http {
            status,
            retry_after: r.retry_after.as_deref(),
            body: r.body.as_bytes(),
        },
        (None, None) => Answer::ConnectFailed,
    };
    match delivery::plan(
        &cfg.retry,
        &answer,
        r.attempts_made,
        r.first_attempt_at,
        r.now,
        r.random,
    ) {
        DeliveryPlan::Delivered => ok(json!({ "plan": "delivered" })),
        DeliveryPlan::RetryAt(at) => ok(json!({ "plan": "retry", "at": at })),
        DeliveryPlan::Drop { reason, detail } => {
            ok(json!({ "plan": "drop", "reason": reason.as_str(), "detail": detail }))
        }
    }
}
