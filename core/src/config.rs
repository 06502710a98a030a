//! The plugin configuration: one JSON document that the Envoy filter, the Worker and the CLI
//! all receive. Parsing walks the JSON by hand so that every error names the path of the bad
//! field (`rules[0].extract.value: expected a JSON pointer`) and unknown fields are refused.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde_json::{Map, Value};

use crate::event::ConversionType;
use crate::extract::Source;
use crate::json_select::PointerTree;

/// A configuration error: the JSON path of the bad field and what is wrong with it. Never
/// carries the value itself (it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

fn cerr(path: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Which wire format the destination speaks (see `encode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The seed CAPI payload: one JSON object, or a JSON array of them when batching.
    Seed,
}

/// A parsed destination URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    /// `host[:port]` as it goes into `:authority` / `Host`.
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub fn as_string(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// True for 127.0.0.0/8, ::1 and localhost: the only hosts plain http may reach.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") || h == "::1" {
        return true;
    }
    let parts: Vec<&str> = h.split('.').collect();
    parts.len() == 4 && parts[0] == "127" && parts.iter().all(|p| p.parse::<u8>().is_ok())
}

/// Parses `https://host[:port]/path?query`. Plain http is refused unless `allow_http_loopback`
/// is set and the host is a loopback address.
pub fn parse_url(s: &str, allow_http_loopback: bool) -> Result<Url, &'static str> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or("expected an absolute https:// URL")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return Err("expected an https:// URL"),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err("expected a host in the URL (and no user info)");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("bad IPv6 host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse::<u16>().map_err(|_| "bad port")?,
            None if after.is_empty() => default_port,
            None => return Err("bad port"),
        };
        (format!("[{h}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse::<u16>().map_err(|_| "bad port")?),
            None => (authority.to_owned(), default_port),
        }
    };
    if host.is_empty() || port == 0 {
        return Err("expected a host and a non-zero port");
    }
    if scheme == "http" && !(allow_http_loopback && is_loopback_host(&host)) {
        return Err("must be https (plain http only to a loopback host with allow_http_loopback)");
    }
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    Ok(Url {
        scheme,
        authority: authority.to_ascii_lowercase(),
        host: host.to_ascii_lowercase(),
        port,
        path,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Events per request; 1 disables batching.
    pub max_events: usize,
    /// How long a ready event may wait for others to fill its batch.
    pub max_wait_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub format: Format,
    pub url: Url,
    pub allow_http_loopback: bool,
    /// The Envoy cluster that reaches `url` (the filter dispatches to it).
    pub envoy_cluster: String,
    pub timeout_ms: u32,
    pub advertiser_id: u64,
    pub data_source_key: String,
    pub batch: Batch,
}

/// A secret given inline or named as an environment variable that the adapter resolves.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    Env(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Secret(***)"),
            Self::Env(name) => write!(f, "Secret(env {name})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacSigning {
    pub secret: Secret,
    pub signature_header: String,
    pub timestamp_header: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    pub bearer_token: Option<Secret>,
    pub hmac: Option<HmacSigning>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneAs {
    /// `Phone`: plain E.164 digits, as the spec allows.
    Plain,
    /// `HashedPhone`: SHA-256 of the E.164 digits.
    Hashed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifiers {
    pub default_calling_code: String,
    pub phone_as: PhoneAs,
    pub first_party_id_max_len: usize,
    /// Send the ad click ids (gclid, fbclid, …) a request carries on its URL or in the
    /// `capi_<name>` first-party cookies.
    pub click_ids: bool,
    pub client_ip: ClientIp,
}

/// Where the client's IP address comes from, if it is sent at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIp {
    /// Not sent.
    Off,
    /// The address the adapter knows: Envoy's downstream peer, Cloudflare's CF-Connecting-IP.
    Peer,
    /// The first address in this request header (lower-case name), e.g. `x-forwarded-for`
    /// behind a load balancer that sets it.
    Header(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentCookie {
    pub name: String,
    /// Cookie values (compared case-insensitively) that deny tracking.
    pub deny_values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// Drop the event when the request carries `Sec-GPC: 1`.
    pub honor_gpc: bool,
    pub cookie: Option<ConsentCookie>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bodies larger than this are not parsed (the exchange is counted and skipped).
    pub max_body_bytes: usize,
    /// Events held for delivery (queued and in flight); beyond it new events are dropped.
    pub queue_capacity: usize,
    /// The same event_id is sent at most once within this window...
    pub dedup_window_ms: i64,
    /// ...of at most this many remembered ids (the oldest are forgotten first, counted).
    pub dedup_capacity: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Attempts per event, the first included.
    pub max_attempts: u32,
    /// No retry is planned for later than this after the first attempt (a planned retry may
    /// still start a little later while it waits for a batch or a free in-flight slot).
    pub max_age_ms: i64,
    pub base_backoff_ms: i64,
    pub max_backoff_ms: i64,
}

/// How a rule's path pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Any,
    Exact(String),
    Prefix(String),
    /// `*` matches any run of characters (including `/`).
    Glob(String),
}

impl PathPattern {
    /// Matches the path without its query string.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        match self {
            Self::Any => true,
            Self::Exact(p) => p == path,
            Self::Prefix(p) => path.starts_with(p.as_str()),
            Self::Glob(g) => glob_match(g.as_bytes(), path.as_bytes()),
        }
    }
}

// Iterative `*` glob with one backtrack point: linear in practice, no recursion.
fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, i));
                p += 1;
            }
            Some(c) if *c == s[i] => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    pat.get(p..)
        .is_some_and(|rest| rest.iter().all(|c| *c == b'*'))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Upper-case method, or None for any.
    pub method: Option<String>,
    pub path: PathPattern,
    /// Lower-case host without port, or None for any.
    pub host: Option<String>,
    /// Response statuses that count; empty means 200..=299.
    pub status: Vec<u16>,
    /// Response media type (lower-case, no parameters), or None for any.
    pub content_type: Option<String>,
}

impl Match {
    /// The request-side test: everything known when the request headers arrive.
    pub fn matches_request(&self, method: &str, host: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.host.as_deref().is_none_or(|h| {
                let host = if host.starts_with('[') {
                    host.split_once(']')
                        .map_or(host, |(h, _)| h)
                        .trim_start_matches('[')
                } else {
                    host.split_once(':').map_or(host, |(h, _)| h)
                };
                h.eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']'))
                    || h.trim_start_matches('[')
                        .trim_end_matches(']')
                        .eq_ignore_ascii_case(host)
            })
            && self.path.matches(path)
    }

    /// The response-side test.
    pub fn matches_response(&self, status: u16, content_type: Option<&str>) -> bool {
        let status_ok = if self.status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.status.contains(&status)
        };
        let ct_ok = self.content_type.as_deref().is_none_or(|want| {
            content_type.is_some_and(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case(want)
            })
        });
        status_ok && ct_ok
    }
}

/// Whether a value source reads major units (`12.50`) or integer minor units (`1250` cents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueUnit {
    Major,
    Minor,
}

/// Where each field of the event comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extract {
    pub order_id: Option<Source>,
    pub value: Option<Source>,
    pub value_unit: ValueUnit,
    pub currency: Option<Source>,
    pub email: Option<Source>,
    pub phone: Option<Source>,
    pub guid: Option<Source>,
    pub first_party_id: Option<Source>,
    pub timestamp: Option<Source>,
    pub user_agent: Option<Source>,
    /// The response body's pointers as a tree, built when the rule is read
    /// ([`Extract::with_trees`]); the extractor checks it still matches the sources and builds
    /// a fresh one when not.
    pub(crate) response_tree: PointerTree,
    /// The request body's pointers, the same way.
    pub(crate) request_tree: PointerTree,
}

impl Extract {
    /// The pointers of the sources that `want` picks, in field order.
    pub(crate) fn pointers(&self, want: fn(&Source) -> Option<&str>) -> Vec<&str> {
        self.sources().filter_map(want).collect()
    }

    /// With the body pointer trees built from the current sources (the extractor's per-event
    /// JSON selection then starts from them).
    pub(crate) fn with_trees(mut self) -> Self {
        self.response_tree = PointerTree::new(&self.pointers(Source::response_pointer));
        self.request_tree = PointerTree::new(&self.pointers(Source::request_pointer));
        self
    }

    /// Every configured source, in field order.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        [
            &self.order_id,
            &self.value,
            &self.currency,
            &self.email,
            &self.phone,
            &self.guid,
            &self.first_party_id,
            &self.timestamp,
            &self.user_agent,
        ]
        .into_iter()
        .flatten()
    }

    /// Whether the rule needs the request body (the adapters buffer it only then).
    pub fn reads_request_body(&self) -> bool {
        self.sources().any(Source::reads_request_body)
    }

    /// Whether the rule needs the response body.
    pub fn reads_response_body(&self) -> bool {
        self.sources().any(Source::reads_response_body)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub conversion_type: ConversionType,
    pub matcher: Match,
    pub extract: Extract,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    pub destination: Destination,
    pub auth: Auth,
    pub identifiers: Identifiers,
    pub consent: Consent,
    pub limits: Limits,
    pub retry: Retry,
    pub rules: Vec<Rule>,
}

impl PluginConfig {
    /// Parses and validates the whole configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            cerr(
                "",
                format!("not valid JSON (line {}, column {})", e.line(), e.column()),
            )
        })?;
        parse_config(&v)
    }

    /// The first rule whose request side matches, by index.
    pub fn match_request(&self, method: &str, host: &str, path: &str) -> Option<usize> {
        self.rules
            .iter()
            .position(|r| r.matcher.matches_request(method, host, path))
    }

    /// Resolves `*_env` secrets through the host's lookup (environment variables, Worker
    /// secrets). Returns the path of the first secret that cannot be resolved.
    pub fn resolve_secrets(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let resolve = |s: &mut Secret, path: &str| -> Result<(), ConfigError> {
            if let Secret::Env(name) = s {
                match lookup(name).filter(|v| !v.is_empty()) {
                    Some(v) => *s = Secret::Inline(v),
                    None => {
                        return Err(cerr(
                            path,
                            format!("environment variable {name} is not set"),
                        ));
                    }
                }
            }
            Ok(())
        };
        if let Some(t) = self.auth.bearer_token.as_mut() {
            resolve(t, "auth.bearer_token_env")?;
        }
        if let Some(h) = self.auth.hmac.as_mut() {
            resolve(&mut h.secret, "auth.hmac.secret_env")?;
        }
        Ok(())
    }
}

/// A JSON object being read: remembers which keys were used so the rest can be refused.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    /// Few keys per object: a list is as quick as a set here, and less code.
    used: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, path: &str) -> Result<Self, ConfigError> {
        match v {
            Value::Object(map) => Ok(Obj {
                map,
                path: path.to_owned(),
                used: Vec::new(),
            }),
            _ => Err(cerr(path, "expected an object")),
        }
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        if !self.used.contains(&key) {
            self.used.push(key);
        }
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn str_opt(&mut self, key: &'static str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(cerr(&self.child(key), "expected a string")),
        }
    }

    fn str_req(&mut self, key: &'static str) -> Result<&'a str, ConfigError> {
        self.str_opt(key)?
            .ok_or_else(|| cerr(&self.child(key), "required"))
    }

    fn nonempty_str_opt(&mut self, key: &'static str) -> Result<Option<&'a str>, ConfigError> {
        match self.str_opt(key)? {
            Some(s) if s.trim().is_empty() => Err(cerr(&self.child(key), "must not be empty")),
            other => Ok(other),
        }
    }

    fn u64_opt(
        &mut self,
        key: &'static str,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(cerr(
                    &self.child(key),
                    format!("expected an integer from {min} to {max}"),
                )),
            },
        }
    }

    fn bool_opt(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(cerr(&self.child(key), "expected true or false")),
        }
    }

    fn obj_opt(&mut self, key: &'static str) -> Result<Option<Obj<'a>>, ConfigError> {
        let path = self.child(key);
        self.get(key).map(|v| Obj::new(v, &path)).transpose()
    }

    /// Refuses every key that was not read.
    fn finish(self) -> Result<(), ConfigError> {
        match self.map.keys().find(|k| !self.used.contains(&k.as_str())) {
            Some(k) => Err(cerr(&self.child(k), "unknown field")),
            None => Ok(()),
        }
    }
}

fn parse_config(v: &Value) -> Result<PluginConfig, ConfigError> {
    let mut root = Obj::new(v, "")?;
    let destination = {
        let mut o = root
            .obj_opt("destination")?
            .ok_or_else(|| cerr("destination", "required"))?;
        let d = parse_destination(&mut o)?;
        o.finish()?;
        d
    };
    let auth = match root.obj_opt("auth")? {
        Some(mut o) => {
            let a = parse_auth(&mut o)?;
            o.finish()?;
            a
        }
        None => Auth::default(),
    };
    let identifiers = {
        let mut o = root.obj_opt("identifiers")?;
        let id = parse_identifiers(o.as_mut())?;
        if let Some(o) = o {
            o.finish()?;
        }
        id
    };
    let consent = {
        let mut o = root.obj_opt("consent")?;
        let c = parse_consent(o.as_mut())?;
        if let Some(o) = o {
            o.finish()?;
        }
        c
    };
    let limits = {
        let mut o = root.obj_opt("limits")?;
        let l = parse_limits(o.as_mut())?;
        if let Some(o) = o {
            o.finish()?;
        }
        l
    };
    let retry = {
        let mut o = root.obj_opt("retry")?;
        let r = parse_retry(o.as_mut())?;
        if let Some(o) = o {
            o.finish()?;
        }
        r
    };
    let rules = match root.get("rules") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut rules = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                rules.push(parse_rule(item, &format!("rules[{i}]"))?);
            }
            rules
        }
        Some(Value::Array(_)) | None => return Err(cerr("rules", "at least one rule is required")),
        Some(_) => return Err(cerr("rules", "expected an array of rules")),
    };
    for (i, r) in rules.iter().enumerate() {
        if rules.iter().take(i).any(|p| p.name == r.name) {
            return Err(cerr(&format!("rules[{i}].name"), "duplicate rule name"));
        }
    }
    root.finish()?;
    if destination.batch.max_events > limits.queue_capacity {
        return Err(cerr(
            "destination.batch.max_events",
            "must not exceed limits.queue_capacity",
        ));
    }
    Ok(PluginConfig {
        destination,
        auth,
        identifiers,
        consent,
        limits,
        retry,
        rules,
    })
}

fn parse_destination(o: &mut Obj<'_>) -> Result<Destination, ConfigError> {
    let format = match o.str_opt("format")? {
        None | Some("seed") => Format::Seed,
        Some(_) => {
            return Err(cerr(
                &o.child("format"),
                "unknown format (supported: \"seed\")",
            ));
        }
    };
    let allow_http_loopback = o.bool_opt("allow_http_loopback")?.unwrap_or(false);
    let url_path = o.child("url");
    let url = parse_url(o.str_req("url")?, allow_http_loopback).map_err(|r| cerr(&url_path, r))?;
    let envoy_cluster = o
        .nonempty_str_opt("envoy_cluster")?
        .unwrap_or("capi_destination")
        .to_owned();
    let timeout_ms = o.u64_opt("timeout_ms", 1, 600_000)?.unwrap_or(5_000) as u32;
    let advertiser_id = o
        .u64_opt("advertiser_id", 0, u64::MAX)?
        .ok_or_else(|| cerr(&o.child("advertiser_id"), "required (an integer)"))?;
    let dsk_path = o.child("data_source_key");
    let data_source_key = o.str_req("data_source_key")?;
    if data_source_key.trim().is_empty() || data_source_key.len() > crate::event::MAX_KEY_LEN {
        return Err(cerr(
            &dsk_path,
            "must be a non-empty string of at most 256 bytes",
        ));
    }
    let batch = match o.obj_opt("batch")? {
        Some(mut b) => {
            let max_events = b.u64_opt("max_events", 1, 1000)?.unwrap_or(1) as usize;
            let max_wait_ms = b.u64_opt("max_wait_ms", 0, 60_000)?.unwrap_or(0) as i64;
            b.finish()?;
            Batch {
                max_events,
                max_wait_ms,
            }
        }
        None => Batch {
            max_events: 1,
            max_wait_ms: 0,
        },
    };
    Ok(Destination {
        format,
        url,
        allow_http_loopback,
        envoy_cluster,
        timeout_ms,
        advertiser_id,
        data_source_key: data_source_key.to_owned(),
        batch,
    })
}

fn parse_secret(
    o: &mut Obj<'_>,
    inline: &'static str,
    env: &'static str,
) -> Result<Option<Secret>, ConfigError> {
    let a = o.nonempty_str_opt(inline)?;
    let b = o.nonempty_str_opt(env)?;
    match (a, b) {
        (Some(_), Some(_)) => Err(cerr(
            &o.child(env),
            format!("give either {inline} or {env}, not both"),
        )),
        (Some(s), None) => Ok(Some(Secret::Inline(s.to_owned()))),
        (None, Some(n)) => Ok(Some(Secret::Env(n.to_owned()))),
        (None, None) => Ok(None),
    }
}

fn header_name(o: &mut Obj<'_>, key: &'static str, default: &str) -> Result<String, ConfigError> {
    let path = o.child(key);
    let name = o.str_opt(key)?.unwrap_or(default);
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(cerr(&path, "expected an HTTP header name"));
    }
    Ok(name.to_ascii_lowercase())
}

fn parse_auth(o: &mut Obj<'_>) -> Result<Auth, ConfigError> {
    let bearer_token = parse_secret(o, "bearer_token", "bearer_token_env")?;
    let hmac = match o.obj_opt("hmac")? {
        Some(mut h) => {
            let secret = parse_secret(&mut h, "secret", "secret_env")?
                .ok_or_else(|| cerr(&h.child("secret"), "required (or secret_env)"))?;
            let signature_header = header_name(&mut h, "signature_header", "x-capi-signature")?;
            let timestamp_header = header_name(&mut h, "timestamp_header", "x-capi-timestamp")?;
            h.finish()?;
            Some(HmacSigning {
                secret,
                signature_header,
                timestamp_header,
            })
        }
        None => None,
    };
    Ok(Auth { bearer_token, hmac })
}

fn parse_identifiers(o: Option<&mut Obj<'_>>) -> Result<Identifiers, ConfigError> {
    let mut out = Identifiers {
        default_calling_code: "1".to_owned(),
        phone_as: PhoneAs::Hashed,
        first_party_id_max_len: 128,
        click_ids: true,
        client_ip: ClientIp::Peer,
    };
    if let Some(o) = o {
        out.click_ids = o.bool_opt("click_ids")?.unwrap_or(true);
        out.client_ip = match o.str_opt("client_ip")? {
            None | Some("peer") => ClientIp::Peer,
            Some("off") => ClientIp::Off,
            Some(h) => match h.strip_prefix("header:") {
                Some(name)
                    if !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
                {
                    ClientIp::Header(name.to_ascii_lowercase())
                }
                _ => {
                    return Err(cerr(
                        &o.child("client_ip"),
                        "expected \"peer\", \"off\" or \"header:<name>\"",
                    ));
                }
            },
        };
        if let Some(cc) = o.str_opt("default_calling_code")? {
            let cc = cc.trim_start_matches('+');
            if cc.is_empty()
                || cc.len() > 3
                || !cc.bytes().all(|b| b.is_ascii_digit())
                || cc.starts_with('0')
            {
                return Err(cerr(
                    &o.child("default_calling_code"),
                    "expected a country calling code of 1 to 3 digits",
                ));
            }
            out.default_calling_code = cc.to_owned();
        }
        out.phone_as = match o.str_opt("phone_as")? {
            None | Some("HashedPhone") => PhoneAs::Hashed,
            Some("Phone") => PhoneAs::Plain,
            Some(_) => {
                return Err(cerr(
                    &o.child("phone_as"),
                    "expected \"Phone\" or \"HashedPhone\"",
                ));
            }
        };
        if let Some(n) = o.u64_opt(
            "first_party_id_max_len",
            1,
            crate::normalize::MAX_FIRST_PARTY_ID_LEN as u64,
        )? {
            out.first_party_id_max_len = n as usize;
        }
    }
    Ok(out)
}

fn parse_consent(o: Option<&mut Obj<'_>>) -> Result<Consent, ConfigError> {
    let mut out = Consent {
        honor_gpc: true,
        cookie: None,
    };
    if let Some(o) = o {
        out.honor_gpc = o.bool_opt("honor_gpc")?.unwrap_or(true);
        if let Some(mut c) = o.obj_opt("cookie")? {
            let name = c
                .nonempty_str_opt("name")?
                .ok_or_else(|| cerr(&c.child("name"), "required"))?
                .to_owned();
            let path = c.child("deny_values");
            let deny_values = match c.get("deny_values") {
                None => ["0", "false", "no", "denied", "deny"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
                Some(Value::Array(vs)) if !vs.is_empty() => vs
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| cerr(&format!("{path}[{i}]"), "expected a string"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err(cerr(&path, "expected a non-empty array of strings")),
            };
            c.finish()?;
            out.cookie = Some(ConsentCookie { name, deny_values });
        }
    }
    Ok(out)
}

fn parse_limits(o: Option<&mut Obj<'_>>) -> Result<Limits, ConfigError> {
    let mut out = Limits {
        max_body_bytes: 256 * 1024,
        queue_capacity: 1000,
        dedup_window_ms: 600_000,
        dedup_capacity: 10_000,
    };
    if let Some(o) = o {
        if let Some(n) = o.u64_opt("max_body_bytes", 1, 64 * 1024 * 1024)? {
            out.max_body_bytes = n as usize;
        }
        if let Some(n) = o.u64_opt("queue_capacity", 1, 1_000_000)? {
            out.queue_capacity = n as usize;
        }
        if let Some(n) = o.u64_opt("dedup_window_ms", 0, 7 * 86_400_000)? {
            out.dedup_window_ms = n as i64;
        }
        if let Some(n) = o.u64_opt("dedup_capacity", 0, 10_000_000)? {
            out.dedup_capacity = n as usize;
        }
    }
    Ok(out)
}

fn parse_retry(o: Option<&mut Obj<'_>>) -> Result<Retry, ConfigError> {
    let mut out = Retry {
        max_attempts: 6,
        max_age_ms: 3_600_000,
        base_backoff_ms: 500,
        max_backoff_ms: 60_000,
    };
    if let Some(o) = o {
        if let Some(n) = o.u64_opt("max_attempts", 1, 100)? {
            out.max_attempts = n as u32;
        }
        if let Some(n) = o.u64_opt("max_age_ms", 0, 7 * 86_400_000)? {
            out.max_age_ms = n as i64;
        }
        if let Some(n) = o.u64_opt("base_backoff_ms", 1, 3_600_000)? {
            out.base_backoff_ms = n as i64;
        }
        if let Some(n) = o.u64_opt("max_backoff_ms", 1, 86_400_000)? {
            out.max_backoff_ms = n as i64;
        }
        if out.max_backoff_ms < out.base_backoff_ms {
            return Err(cerr(
                &o.child("max_backoff_ms"),
                "must be >= base_backoff_ms",
            ));
        }
    }
    Ok(out)
}

fn parse_match(o: &mut Obj<'_>) -> Result<Match, ConfigError> {
    let method = match o.str_opt("method")? {
        None => None,
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(m.to_ascii_uppercase())
        }
        Some(_) => {
            return Err(cerr(
                &o.child("method"),
                "expected an HTTP method such as POST",
            ));
        }
    };
    let exact = o.str_opt("path")?;
    let prefix = o.str_opt("path_prefix")?;
    let path = match (exact, prefix) {
        (Some(_), Some(_)) => {
            return Err(cerr(
                &o.child("path_prefix"),
                "give either path or path_prefix, not both",
            ));
        }
        (Some(p), None) if !p.starts_with('/') => {
            return Err(cerr(&o.child("path"), "must start with /"));
        }
        (None, Some(p)) if !p.starts_with('/') => {
            return Err(cerr(&o.child("path_prefix"), "must start with /"));
        }
        (Some(p), None) if p.contains('*') => PathPattern::Glob(p.to_owned()),
        (Some(p), None) => PathPattern::Exact(p.to_owned()),
        (None, Some(p)) => PathPattern::Prefix(p.to_owned()),
        (None, None) => PathPattern::Any,
    };
    let host = o.nonempty_str_opt("host")?.map(str::to_ascii_lowercase);
    let status_path = o.child("status");
    let status = match o.get("status") {
        None => Vec::new(),
        Some(Value::Array(xs)) if !xs.is_empty() => xs
            .iter()
            .enumerate()
            .map(|(i, x)| match x.as_u64() {
                Some(n @ 100..=599) => Ok(n as u16),
                _ => Err(cerr(
                    &format!("{status_path}[{i}]"),
                    "expected an HTTP status from 100 to 599",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(cerr(
                &status_path,
                "expected a non-empty array of HTTP statuses",
            ));
        }
    };
    let content_type = o
        .nonempty_str_opt("content_type")?
        .map(|s| s.trim().to_ascii_lowercase());
    Ok(Match {
        method,
        path,
        host,
        status,
        content_type,
    })
}

fn parse_source(o: &mut Obj<'_>, key: &'static str) -> Result<Option<Source>, ConfigError> {
    let path = o.child(key);
    match o.str_opt(key)? {
        None => Ok(None),
        Some(s) => Source::parse(s).map(Some).map_err(|r| cerr(&path, r)),
    }
}

fn parse_extract(o: &mut Obj<'_>) -> Result<Extract, ConfigError> {
    let e = Extract {
        order_id: parse_source(o, "order_id")?,
        value: parse_source(o, "value")?,
        value_unit: match o.str_opt("value_unit")? {
            None | Some("major") => ValueUnit::Major,
            Some("minor") => ValueUnit::Minor,
            Some(_) => {
                return Err(cerr(
                    &o.child("value_unit"),
                    "expected \"major\" or \"minor\"",
                ));
            }
        },
        currency: parse_source(o, "currency")?,
        email: parse_source(o, "email")?,
        phone: parse_source(o, "phone")?,
        guid: parse_source(o, "guid")?,
        first_party_id: parse_source(o, "first_party_id")?,
        timestamp: parse_source(o, "timestamp")?,
        user_agent: parse_source(o, "user_agent")?,
        response_tree: PointerTree::default(),
        request_tree: PointerTree::default(),
    }
    .with_trees();
    if e.email.is_none() && e.phone.is_none() && e.guid.is_none() && e.first_party_id.is_none() {
        return Err(cerr(
            &o.path,
            "needs at least one identifier source (email, phone, guid or first_party_id)",
        ));
    }
    Ok(e)
}

fn parse_rule(v: &Value, path: &str) -> Result<Rule, ConfigError> {
    let mut o = Obj::new(v, path)?;
    let name_path = o.child("name");
    let name = o.str_req("name")?;
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(cerr(
            &name_path,
            "expected 1 to 64 characters of [A-Za-z0-9_-]",
        ));
    }
    let ct_path = o.child("conversion_type");
    let conversion_type =
        ConversionType::parse(o.str_req("conversion_type")?).ok_or_else(|| {
            cerr(
                &ct_path,
                "expected Purchase, Page View, Signup, Lead or a custom name",
            )
        })?;
    let matcher = {
        let mut m = o
            .obj_opt("match")?
            .ok_or_else(|| cerr(&format!("{path}.match"), "required"))?;
        let r = parse_match(&mut m)?;
        m.finish()?;
        r
    };
    let extract = {
        let mut e = o
            .obj_opt("extract")?
            .ok_or_else(|| cerr(&format!("{path}.extract"), "required"))?;
        let r = parse_extract(&mut e)?;
        e.finish()?;
        r
    };
    o.finish()?;
    Ok(Rule {
        name: name.to_owned(),
        conversion_type,
        matcher,
        extract,
    })
}

/// A complete configuration aimed at a local `capi sink`: the CLI's and the demo's default.
pub const EXAMPLE_CONFIG: &str = include_str!("../../examples/config.json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let c = PluginConfig::from_json(EXAMPLE_CONFIG.as_bytes()).unwrap();
        assert!(!c.rules.is_empty());
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"/api/*/checkout", b"/api/v2/checkout"));
        assert!(glob_match(b"/api/*", b"/api/"));
        assert!(!glob_match(b"/api/*/checkout", b"/api/v2/cart"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"/a*b*c", b"/aXbYbZc"));
    }

    #[test]
    fn urls() {
        let u = parse_url("https://Capi.Example.com/v1/events?x=1", false).unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("capi.example.com", 443, "/v1/events?x=1")
        );
        assert!(parse_url("http://capi.example.com/", true).is_err());
        assert!(parse_url("http://127.0.0.1:8080/x", false).is_err());
        assert_eq!(
            parse_url("http://127.0.0.1:8080/x", true).unwrap().port,
            8080
        );
        assert_eq!(parse_url("https://[::1]:9443", false).unwrap().path, "/");
        assert!(parse_url("ftp://x/", true).is_err());
        assert!(parse_url("https://user@x/", true).is_err());
    }
}
