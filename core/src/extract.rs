//! Extraction: from one HTTP exchange (or a collected payload) to a conversion event, under a
//! rule that names where each field comes from.

use alloc::borrow::{Cow, ToOwned};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::config::{ClientIp, Extract, PhoneAs, PluginConfig, Rule, ValueUnit};
use crate::event::{ConversionEvent, IdName, Identifier, Timestamp};
use crate::json_select::{PointerTree, Scalar};
use crate::normalize::{self, IdError};
use crate::time::{UnixMillis, parse_iso8601};
use crate::user_agent::parse_user_agent;
use crate::{click_id, currency, decimal, event_id};

/// Where one field's value is read from, written `kind:key` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `response:/json/pointer` into the response body.
    ResponseBody(String),
    /// `request:/json/pointer` into the request body (JSON).
    RequestBody(String),
    /// `form:name` of an `application/x-www-form-urlencoded` request body.
    Form(String),
    /// `header:name` of the request (lower-case).
    Header(String),
    /// `response_header:name` of the response (lower-case).
    ResponseHeader(String),
    /// `cookie:name` of the request.
    Cookie(String),
    /// `query:name` of the request URL.
    Query(String),
    /// `const:value`, a fixed value.
    Const(String),
}

fn is_json_pointer(p: &str) -> bool {
    // RFC 6901: "" or "/"-separated tokens where "~" must be followed by 0 or 1.
    (p.is_empty() || p.starts_with('/')) && {
        let b = p.as_bytes();
        b.iter()
            .enumerate()
            .all(|(i, c)| *c != b'~' || matches!(b.get(i + 1), Some(b'0' | b'1')))
    }
}

impl Source {
    /// The JSON pointer of a response body source.
    pub(crate) fn response_pointer(&self) -> Option<&str> {
        match self {
            Source::ResponseBody(p) => Some(p),
            _ => None,
        }
    }

    /// The JSON pointer of a request body source.
    pub(crate) fn request_pointer(&self) -> Option<&str> {
        match self {
            Source::RequestBody(p) => Some(p),
            _ => None,
        }
    }

    /// Parses `kind:key`. The error text is the configuration error's reason.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, key) = s
            .split_once(':')
            .ok_or_else(|| "expected kind:key (response:/ptr, request:/ptr, form:, header:, response_header:, cookie:, query:, const:)".to_owned())?;
        let name = |k: &str| -> Result<String, String> {
            if k.is_empty() || k.len() > 256 || k.contains(char::is_whitespace) {
                Err(format!("{kind}: expected a name"))
            } else {
                Ok(k.to_owned())
            }
        };
        let pointer = |k: &str| -> Result<String, String> {
            if k.is_empty() || !is_json_pointer(k) {
                Err("expected a JSON pointer (RFC 6901) such as /order/total".to_owned())
            } else {
                Ok(k.to_owned())
            }
        };
        Ok(match kind {
            "response" => Self::ResponseBody(pointer(key)?),
            "request" => Self::RequestBody(pointer(key)?),
            "form" => Self::Form(name(key)?),
            "header" => Self::Header(name(key)?.to_ascii_lowercase()),
            "response_header" => Self::ResponseHeader(name(key)?.to_ascii_lowercase()),
            "cookie" => Self::Cookie(name(key)?),
            "query" => Self::Query(name(key)?),
            "const" if !key.is_empty() => Self::Const(key.to_owned()),
            "const" => return Err("const: expected a value".to_owned()),
            _ => {
                return Err(format!(
                    "unknown source kind {kind:?}; expected a JSON pointer source (response:/ptr, request:/ptr) or form:, header:, response_header:, cookie:, query:, const:"
                ));
            }
        })
    }

    /// Reads from the request (used to tell whether a rule needs the request body).
    pub fn reads_request_body(&self) -> bool {
        matches!(self, Self::RequestBody(_) | Self::Form(_))
    }

    pub fn reads_response_body(&self) -> bool {
        matches!(self, Self::ResponseBody(_))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ResponseBody(k) => write!(f, "response:{k}"),
            Self::RequestBody(k) => write!(f, "request:{k}"),
            Self::Form(k) => write!(f, "form:{k}"),
            Self::Header(k) => write!(f, "header:{k}"),
            Self::ResponseHeader(k) => write!(f, "response_header:{k}"),
            Self::Cookie(k) => write!(f, "cookie:{k}"),
            Self::Query(k) => write!(f, "query:{k}"),
            Self::Const(_) => f.write_str("const"),
        }
    }
}

/// One HTTP exchange as the adapter saw it. Header names must be lower-case (HTTP/2 and
/// Envoy already give them so).
#[derive(Debug, Clone, Copy, Default)]
pub struct Exchange<'a> {
    pub method: &'a str,
    pub host: &'a str,
    /// Path with query string.
    pub path: &'a str,
    pub request_headers: &'a [(String, String)],
    pub request_body: Option<&'a [u8]>,
    pub response_status: u16,
    pub response_headers: &'a [(String, String)],
    pub response_body: Option<&'a [u8]>,
    /// The client's address as the adapter knows it (Envoy: the downstream peer; a Worker:
    /// CF-Connecting-IP), used when `identifiers.client_ip` is `"peer"`.
    pub client_ip: Option<&'a str>,
}

/// Looks up a header by lower-case name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The value of one cookie from the `cookie` request header(s).
pub fn cookie<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let [value] = cookies(headers, [name]);
    value
}

/// The values of several cookies, read in one pass over the `cookie` header(s): for each
/// name, what [`cookie`] gives (the first pair of that name).
pub fn cookies<'a, const N: usize>(
    headers: &'a [(String, String)],
    names: [&str; N],
) -> [Option<&'a str>; N] {
    let mut found = [None; N];
    let mut missing = N;
    for (_, v) in headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
    {
        for (k, v) in pairs(v) {
            let k = normalize::trim(k);
            for (slot, name) in found.iter_mut().zip(names) {
                if slot.is_none() && k == name {
                    *slot = Some(unquote(normalize::trim(v)));
                    missing -= 1;
                    if missing == 0 {
                        return found;
                    }
                }
            }
        }
    }
    found
}

/// `v.trim_matches('"')`, without a pattern search when `v` neither starts nor ends in `"`.
fn unquote(v: &str) -> &str {
    if v.starts_with('"') || v.ends_with('"') {
        v.trim_matches('"')
    } else {
        v
    }
}

/// The `name=value` pairs of a cookie header: what `split(';')` then `split_once('=')` give,
/// without a pattern searcher per piece.
fn pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    let mut rest = Some(header);
    core::iter::from_fn(move || {
        loop {
            let piece = rest?;
            let b = piece.as_bytes();
            // ';' and '=' are ASCII, so the cuts are char boundaries. The name is short: the
            // first of '=' and ';' byte by byte, then the value's end eight bytes at a time.
            match b.iter().position(|&c| c == b'=' || c == b';') {
                Some(eq) if b.get(eq) == Some(&b'=') => {
                    let value = piece.get(eq + 1..).unwrap_or("");
                    let (value, next) = match normalize::find_byte(value.as_bytes(), b';') {
                        Some(i) => (value.get(..i).unwrap_or(""), value.get(i + 1..)),
                        None => (value, None),
                    };
                    rest = next;
                    return Some((piece.get(..eq).unwrap_or(""), value));
                }
                // A pair without '=' (skipped), then the next.
                Some(semi) => rest = piece.get(semi + 1..),
                None => rest = None,
            }
        }
    })
}

/// The decoded value of one `name=value` pair of a query string or form body.
pub fn form_value(encoded: &str, name: &str) -> Option<String> {
    encoded
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (normalize::percent_decode(k, true) == name).then(|| normalize::percent_decode(v, true))
        })
        .next()
}

/// The query string's value for `name`.
pub fn query_value(path: &str, name: &str) -> Option<String> {
    path.split_once('?')
        .and_then(|(_, q)| form_value(q.split('#').next().unwrap_or(q), name))
}

/// Why no event came out of an exchange. `field` names the event field (or `ids`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractError {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// An identifier source that was present but refused (the event went out without it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedId {
    pub field: &'static str,
    pub reason: IdError,
}

/// The event and what was left out of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    pub event: ConversionEvent,
    pub skipped: Vec<SkippedId>,
}

/// The most sources a rule has ([`Extract::sources`]: one per field).
const MAX_SOURCES: usize = 9;

/// The JSON fields a rule reads from one body, selected in a single pass on first use:
/// (pointer, value) pairs, the values borrowed from the body where it holds them unescaped.
struct Picked<'a> {
    pointers: [&'a str; MAX_SOURCES],
    values: [Option<Scalar<'a>>; MAX_SOURCES],
    len: usize,
}

type Selected<'a> = Result<Picked<'a>, ()>;

/// Bodies of one exchange, each read at most once.
struct Bodies<'a> {
    ex: &'a Exchange<'a>,
    extract: &'a Extract,
    response: Option<Selected<'a>>,
    request: Option<Selected<'a>>,
}

/// A field's raw value: text, or a JSON number kept as such for exact money handling.
enum Raw<'a> {
    Text(Cow<'a, str>),
    Number(serde_json::Number),
}

impl<'a> Raw<'a> {
    fn into_text(self) -> Cow<'a, str> {
        match self {
            Raw::Text(s) => s,
            Raw::Number(n) => Cow::Owned(n.to_string()),
        }
    }
}

/// Selects every pointer the rule reads from one body (`want` picks the sources of that body),
/// through the rule's tree of those pointers (`tree`) when it still matches them.
fn select_body<'a>(
    body: Option<&'a [u8]>,
    extract: &'a Extract,
    want: fn(&Source) -> Option<&str>,
    tree: &PointerTree,
) -> Selected<'a> {
    let body = body.ok_or(())?;
    let mut picked = Picked {
        pointers: [""; MAX_SOURCES],
        values: [const { None }; MAX_SOURCES],
        len: 0,
    };
    for pointer in extract.sources().filter_map(want) {
        // Never more than MAX_SOURCES: sources() yields one per field.
        *picked.pointers.get_mut(picked.len).ok_or(())? = pointer;
        picked.len += 1;
    }
    let len = picked.len;
    let (Some(pointers), Some(values)) = (picked.pointers.get(..len), picked.values.get_mut(..len))
    else {
        return Err(());
    };
    let fresh;
    let tree = if tree.is_for(pointers) {
        tree
    } else {
        // Sources changed after the configuration was read, or built per event (collect).
        fresh = PointerTree::new(pointers);
        &fresh
    };
    tree.select_into(body, values).map_err(|_| ())?;
    Ok(picked)
}

impl<'a> Bodies<'a> {
    #[cfg_attr(not(target_family = "wasm"), inline(always))]
    fn read(
        &mut self,
        source: &'a Source,
        field: &'static str,
    ) -> Result<Option<Raw<'a>>, ExtractError> {
        let ex = self.ex;
        let bad_body = |which: &str| ExtractError {
            field,
            reason: format!("{which} body is missing or not JSON"),
        };
        let lookup = |selected: &Selected<'a>,
                      which: &str,
                      ptr: &str|
         -> Result<Option<Raw<'a>>, ExtractError> {
            let picked = selected.as_ref().map_err(|()| bad_body(which))?;
            let pointers = picked.pointers.get(..picked.len).unwrap_or(&[]);
            let values = &picked.values;
            match pointers
                .iter()
                // The pointer is the one select_body took from the same source: same address.
                .position(|p| p.len() == ptr.len() && (p.as_ptr() == ptr.as_ptr() || *p == ptr))
                .and_then(|i| values.get(i)?.as_ref())
            {
                None | Some(Scalar::Null) => Ok(None),
                Some(Scalar::Str(s)) => Ok(Some(Raw::Text(s.clone()))),
                Some(Scalar::Num(n)) => Ok(Some(Raw::Number(n.clone()))),
                Some(Scalar::Bool(b)) => Ok(Some(Raw::Text(Cow::Borrowed(if *b {
                    "true"
                } else {
                    "false"
                })))),
                Some(Scalar::Composite) => Err(ExtractError {
                    field,
                    reason: format!("{source} is an object or array, expected a scalar"),
                }),
            }
        };
        match source {
            Source::ResponseBody(ptr) => {
                let extract = self.extract;
                let selected = self.response.get_or_insert_with(|| {
                    select_body(
                        ex.response_body,
                        extract,
                        Source::response_pointer,
                        &extract.response_tree,
                    )
                });
                lookup(selected, "response", ptr)
            }
            Source::RequestBody(ptr) => {
                let extract = self.extract;
                let selected = self.request.get_or_insert_with(|| {
                    select_body(
                        ex.request_body,
                        extract,
                        Source::request_pointer,
                        &extract.request_tree,
                    )
                });
                lookup(selected, "request", ptr)
            }
            Source::Form(name) => {
                let body = ex.request_body.ok_or_else(|| bad_body("request"))?;
                let text = core::str::from_utf8(body).map_err(|_| ExtractError {
                    field,
                    reason: "request body is not UTF-8".to_owned(),
                })?;
                Ok(form_value(text, name).map(|v| Raw::Text(Cow::Owned(v))))
            }
            Source::Header(name) => {
                Ok(header(ex.request_headers, name).map(|s| Raw::Text(Cow::Borrowed(s))))
            }
            Source::ResponseHeader(name) => {
                Ok(header(ex.response_headers, name).map(|s| Raw::Text(Cow::Borrowed(s))))
            }
            Source::Cookie(name) => Ok(cookie(ex.request_headers, name)
                .map(|s| Raw::Text(normalize::percent_decode_cow(s, false)))),
            Source::Query(name) => Ok(query_value(ex.path, name).map(|v| Raw::Text(Cow::Owned(v)))),
            Source::Const(v) => Ok(Some(Raw::Text(Cow::Borrowed(v)))),
        }
    }

    #[cfg_attr(not(target_family = "wasm"), inline(always))]
    fn text(
        &mut self,
        source: &'a Option<Source>,
        field: &'static str,
    ) -> Result<Option<Cow<'a, str>>, ExtractError> {
        match source {
            None => Ok(None),
            Some(s) => Ok(self
                .read(s, field)?
                .map(Raw::into_text)
                .filter(|t| !normalize::trim(t).is_empty())),
        }
    }
}

fn missing(field: &'static str, source: &Source) -> ExtractError {
    ExtractError {
        field,
        reason: format!("missing at {source}"),
    }
}

/// Parses a money amount: a JSON number or a numeric string such as "12.50". In minor units
/// the value must be an integer and is scaled by the currency's exponent.
fn parse_value(raw: Raw<'_>, unit: ValueUnit, currency: &str) -> Result<f64, &'static str> {
    let text = match &raw {
        // Only read below to tell integers from fractions in minor units: serde_json writes
        // every float with a '.' or an exponent and no integer with either
        // (`float_text_has_a_point_or_exponent` in the tests).
        Raw::Number(n) if n.is_f64() => "0.0",
        Raw::Number(_) => "0",
        Raw::Text(s) => normalize::trim(s),
    };
    let plain = !text.is_empty()
        && text.bytes().filter(|b| *b == b'.').count() <= 1
        && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && text.bytes().any(|b| b.is_ascii_digit());
    let v: f64 = match &raw {
        Raw::Number(n) => n.as_f64().ok_or("not a number")?,
        Raw::Text(_) if plain => decimal::parse_plain(text).ok_or("not a number")?,
        Raw::Text(_) => return Err("expected a number or a numeric string such as \"12.50\""),
    };
    if !v.is_finite() || v < 0.0 {
        return Err("must be a finite number >= 0");
    }
    match unit {
        ValueUnit::Major => Ok(v),
        ValueUnit::Minor => {
            if text.contains(['.', 'e', 'E']) {
                return Err("expected integer minor units (e.g. cents)");
            }
            let digits = currency::minor_units(currency).unwrap_or(2);
            const SCALE: [f64; 5] = [1.0, 10.0, 100.0, 1000.0, 10000.0];
            Ok(v / SCALE.get(usize::from(digits)).copied().unwrap_or(100.0))
        }
    }
}

/// Normalizes one raw identifier value.
type ToIdentifier<'a> = dyn Fn(&str) -> Result<Identifier, IdError> + 'a;

/// Builds the event a rule describes from one exchange. `now` is the default timestamp.
pub fn extract_event<'a>(
    config: &'a PluginConfig,
    rule: &'a Rule,
    ex: &'a Exchange<'a>,
    now: UnixMillis,
) -> Result<Extracted, ExtractError> {
    let e = &rule.extract;
    let mut b = Bodies {
        ex,
        extract: e,
        response: None,
        request: None,
    };

    let currency = match b.text(&e.currency, "currency")? {
        Some(c) => {
            let c = normalize::trim(&c).to_ascii_uppercase();
            if !currency::is_currency(&c) {
                return Err(ExtractError {
                    field: "currency",
                    reason: "not an ISO 4217 currency code".to_owned(),
                });
            }
            c
        }
        None => match &e.currency {
            Some(
                src @ Source::ResponseBody(_)
                | src @ Source::RequestBody(_)
                | src @ Source::Form(_),
            ) => {
                return Err(missing("currency", src));
            }
            _ => "USD".to_owned(),
        },
    };

    let value = match &e.value {
        None => None,
        Some(src) => {
            let raw = b.read(src, "value")?.ok_or_else(|| missing("value", src))?;
            Some(
                parse_value(raw, e.value_unit, &currency).map_err(|r| ExtractError {
                    field: "value",
                    reason: r.to_owned(),
                })?,
            )
        }
    };

    let order_id = match &e.order_id {
        None => None,
        Some(src) => {
            let o = b
                .text(&e.order_id, "order_id")?
                .ok_or_else(|| missing("order_id", src))?;
            let o = normalize::trim(&o);
            if o.len() > crate::event::MAX_KEY_LEN {
                return Err(ExtractError {
                    field: "order_id",
                    reason: "longer than 256 bytes".to_owned(),
                });
            }
            Some(o.to_owned())
        }
    };

    let timestamp = match &e.timestamp {
        None => now,
        Some(src) => match b.text(&e.timestamp, "timestamp")? {
            None => now,
            Some(t) => parse_iso8601(&t).ok_or(ExtractError {
                field: "timestamp",
                reason: format!("{src} is not ISO 8601"),
            })?,
        },
    };

    let ids_cfg = &config.identifiers;
    let hashed_phone = ids_cfg.phone_as == PhoneAs::Hashed;
    let email = |v: &str| {
        normalize::hash_email(v).map(|id| Identifier {
            id,
            name: IdName::HashedEmail,
        })
    };
    let phone =
        |v: &str| normalize::phone_identifier(v, &ids_cfg.default_calling_code, hashed_phone);
    let guid = |v: &str| {
        normalize::parse_guid(v).map(|id| Identifier {
            id,
            name: IdName::Guid,
        })
    };
    let fpid = |v: &str| {
        normalize::normalize_first_party_id(v, ids_cfg.first_party_id_max_len).map(|id| {
            Identifier {
                id,
                name: IdName::FirstPartyId,
            }
        })
    };
    let sources: [(&'static str, &Option<Source>, &ToIdentifier<'_>); 4] = [
        ("email", &e.email, &email),
        ("phone", &e.phone, &phone),
        ("guid", &e.guid, &guid),
        ("first_party_id", &e.first_party_id, &fpid),
    ];
    let mut ids: Vec<Identifier> = Vec::with_capacity(4);
    let mut skipped = Vec::new();
    // Only read for the error below: kept on the stack (one per identifier source).
    let mut absent: [Option<(&str, &Source)>; 4] = [None; 4];
    for (slot, (field, source, to_identifier)) in absent.iter_mut().zip(sources) {
        let Some(src) = source else { continue };
        match b.text(source, field)? {
            None => *slot = Some((field, src)),
            Some(raw) => match to_identifier(&raw) {
                Ok(id) if !ids.contains(&id) => ids.push(id),
                Ok(_) => {}
                Err(reason) => skipped.push(SkippedId { field, reason }),
            },
        }
    }
    if ids.is_empty() {
        let mut reason = String::from("no usable user identifier");
        for s in &skipped {
            reason.push_str(&format!("; {}: {}", s.field, s.reason));
        }
        for (field, src) in absent.iter().flatten() {
            reason.push_str(&format!("; {field}: missing at {src}"));
        }
        return Err(ExtractError {
            field: "ids",
            reason,
        });
    }

    let user_agent = match &e.user_agent {
        Some(_) => b.text(&e.user_agent, "user_agent")?,
        None => header(ex.request_headers, "user-agent")
            .filter(|t| !normalize::trim(t).is_empty())
            .map(Cow::Borrowed),
    }
    .map(|raw| parse_user_agent(&raw));

    let click_ids = if ids_cfg.click_ids {
        click_id::click_ids_of_request(ex.request_headers, ex.path)
    } else {
        Vec::new()
    };
    let raw_ip = match &ids_cfg.client_ip {
        ClientIp::Off => None,
        ClientIp::Peer => ex.client_ip,
        ClientIp::Header(name) => header(ex.request_headers, name),
    };
    let client_ip_address = match raw_ip {
        None => None,
        Some(raw) => {
            let ip = click_id::normalize_ip(raw);
            if ip.is_none() {
                skipped.push(SkippedId {
                    field: "client_ip",
                    reason: IdError::NotAnIpAddress,
                });
            }
            ip
        }
    };

    let conversion_type = rule.conversion_type.clone();
    let advertiser_id = config.destination.advertiser_id;
    let event_id = event_id::derive(
        advertiser_id,
        &conversion_type,
        order_id.as_deref(),
        &ids[0],
        Timestamp(timestamp),
    );
    let event = ConversionEvent {
        advertiser_id,
        data_source_key: config.destination.data_source_key.clone(),
        conversion_type,
        event_id,
        ids,
        user_agent,
        timestamp: Timestamp(timestamp),
        value,
        currency,
        order_id,
        click_ids,
        client_ip_address,
    };
    Ok(Extracted { event, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    /// The lookup `cookie` did before `cookies` read several names in one pass.
    fn cookie_one_by_one<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().trim_matches('"'))
    }

    proptest! {
        /// What parse_value relies on to tell fractions from integers without formatting.
        #[test]
        fn float_text_has_a_point_or_exponent(bits in any::<u64>(), i in any::<i64>(), u in any::<u64>()) {
            let special = [0.0, -0.0, 1.0, 100.0, 1e15, 1e16, 1e17, 1e21, 1e22, 1e300, 5e-324, f64::MAX];
            for x in special.into_iter().chain([f64::from_bits(bits), i as f64, u as f64]) {
                if let Some(n) = serde_json::Number::from_f64(x) {
                    prop_assert!(n.to_string().contains(['.', 'e', 'E']), "{}", n);
                }
            }
            for n in [serde_json::Number::from(i), serde_json::Number::from(u)] {
                prop_assert!(!n.to_string().contains(['.', 'e', 'E']), "{}", n);
            }
        }

        #[test]
        fn one_pass_cookies_are_the_one_by_one_lookups(
            headers in prop::collection::vec(
                (prop::sample::select(vec!["cookie", "Cookie", "x-cookie"]), "[ab=; \"x]{0,24}")
                    .prop_map(|(k, v)| (k.to_owned(), v)),
                0..4,
            ),
        ) {
            let names = ["a", "b", "ab", " a", "x"];
            let got = cookies(&headers, names);
            for (name, g) in names.iter().zip(got) {
                prop_assert_eq!(g, cookie_one_by_one(&headers, name));
            }
        }
    }
}
