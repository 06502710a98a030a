//! The offline commands: `hash`, `validate-config`, `build`, and the loading shared with `send`.

use capi_core::event::ConversionEvent;
use capi_core::normalize::{self, sha256_hex};
use capi_core::request::{CapiRequest, build_request};
use capi_core::time::{UnixMillis, parse_iso8601};
use capi_core::{PluginConfig, collect_event};

use crate::util::{CliError, now_ms, print_line, read_input};

/// Reads a value argument; `-` takes the first line of stdin (keeps personal data out of the
/// shell history).
fn value_arg(value: &str) -> Result<String, CliError> {
    if value != "-" {
        return Ok(value.to_owned());
    }
    let bytes = read_input("-", "value")?;
    let text = String::from_utf8(bytes).map_err(|_| CliError::new("value: stdin is not UTF-8"))?;
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// `capi hash email|phone VALUE [--calling-code CC]`.
pub fn hash(phone: bool, value: &str, calling_code: &str) -> Result<u8, CliError> {
    let value = value_arg(value)?;
    let hashed = if phone {
        let cc = calling_code.trim_start_matches('+');
        if cc.is_empty()
            || cc.len() > 3
            || cc.starts_with('0')
            || !cc.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(CliError::new(
                "--calling-code: expected a country calling code of 1 to 3 digits",
            ));
        }
        if normalize::is_sha256_hex(&value) {
            value.trim().to_ascii_lowercase()
        } else {
            let digits = normalize::normalize_phone(&value, cc)
                .map_err(|e| CliError(format!("phone: {e}")))?;
            sha256_hex(digits.as_bytes())
        }
    } else {
        normalize::hash_email(&value).map_err(|e| CliError(format!("email: {e}")))?
    };
    print_line(&hashed);
    Ok(0)
}

/// Reads and parses a plugin configuration (errors name the file and the field path).
pub fn load_config(path: &str) -> Result<PluginConfig, CliError> {
    let bytes = read_input(path, "config")?;
    PluginConfig::from_json(&bytes).map_err(|e| CliError(format!("config {path}: {e}")))
}

/// `capi validate-config FILE`.
pub fn validate_config(path: &str) -> Result<u8, CliError> {
    let config = load_config(path)?;
    let n = config.rules.len();
    print_line(&format!("ok: {n} rule{}", if n == 1 { "" } else { "s" }));
    Ok(0)
}

/// A configuration with its secrets resolved and one event built from a collect payload.
pub struct Prepared {
    pub config: PluginConfig,
    pub event: ConversionEvent,
}

/// Loads the configuration and the event file, resolving `*_env` secrets from the environment.
pub fn prepare(config_path: &str, event_path: &str, now: UnixMillis) -> Result<Prepared, CliError> {
    if config_path == "-" && event_path == "-" {
        return Err(CliError::new(
            "only one of --config and --event can be read from stdin (-)",
        ));
    }
    let mut config = load_config(config_path)?;
    config
        .resolve_secrets(|name| std::env::var(name).ok())
        .map_err(|e| CliError(format!("config {config_path}: {e}")))?;
    let body = read_input(event_path, "event")?;
    let extracted = collect_event(&config, &body, &[], None, now)
        .map_err(|e| CliError(format!("event {event_path}: {e}")))?;
    for s in &extracted.skipped {
        crate::util::log_line(&format!(
            "note: {} left out of the event: {}",
            s.field, s.reason
        ));
    }
    Ok(Prepared {
        config,
        event: extracted.event,
    })
}

/// Builds the request for an event at `now` (the HMAC timestamp).
pub fn request_for(p: &Prepared, now: UnixMillis) -> Result<CapiRequest, CliError> {
    build_request(&p.config, std::slice::from_ref(&p.event), now)
        .map_err(|e| CliError(format!("cannot build the request: {e}")))
}

/// `capi build --config FILE --event FILE [--now ISO8601] [--raw]`.
pub fn build(
    config_path: &str,
    event_path: &str,
    now: Option<&str>,
    raw: bool,
) -> Result<u8, CliError> {
    let now = match now {
        Some(s) => parse_iso8601(s).ok_or_else(|| {
            CliError::new("--now: expected an ISO 8601 time such as 2026-11-26T09:42:00Z")
        })?,
        None => now_ms(),
    };
    let p = prepare(config_path, event_path, now)?;
    let req = request_for(&p, now)?;
    let mut out = format!("{} {}\n", req.method, req.url());
    for (k, v) in req.masked_headers(&p.config) {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push('\n');
    if raw {
        out.push_str(&String::from_utf8_lossy(&req.body));
    } else {
        // Pretty-print from the event itself: a generic JSON value would reorder the fields.
        let pretty = serde_json::to_string_pretty(&p.event)
            .map_err(|e| CliError(format!("cannot format the body: {e}")))?;
        out.push_str(&pretty);
    }
    print_line(&out);
    Ok(0)
}
