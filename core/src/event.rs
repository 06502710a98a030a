//! The conversion event as the seed Conversions API specifies it, with a stable JSON form.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::click_id::{ClickId, ClickIdName, clean_click_id, normalize_ip};
use crate::normalize;
use crate::time::{UnixMillis, format_iso8601, parse_iso8601};
use crate::user_agent::UserAgent;

/// What the user did. The four named kinds serialize as the spec spells them; anything else is
/// a platform-specific custom string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConversionType {
    Purchase,
    PageView,
    Signup,
    Lead,
    Custom(String),
}

impl ConversionType {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Purchase => "Purchase",
            Self::PageView => "Page View",
            Self::Signup => "Signup",
            Self::Lead => "Lead",
            Self::Custom(s) => s,
        }
    }

    /// The named kinds are matched exactly; an empty or over-long name is refused.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Purchase" => Self::Purchase,
            "Page View" => Self::PageView,
            "Signup" => Self::Signup,
            "Lead" => Self::Lead,
            _ if s.trim().is_empty() || s.len() > 64 || s.trim() != s => return None,
            _ => Self::Custom(s.to_owned()),
        })
    }
}

impl fmt::Display for ConversionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ConversionType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ConversionType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| de::Error::custom("conversion_type: empty or too long"))
    }
}

/// The identifier kinds of the spec's `ids` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdName {
    Guid,
    HashedEmail,
    Phone,
    HashedPhone,
    FirstPartyId,
}

impl IdName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guid => "Guid",
            Self::HashedEmail => "HashedEmail",
            Self::Phone => "Phone",
            Self::HashedPhone => "HashedPhone",
            Self::FirstPartyId => "FirstPartyId",
        }
    }
}

/// One `{id, name}` entry of `ids`: the value is already normalized (and hashed where the name
/// says so).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identifier {
    pub id: String,
    pub name: IdName,
}

impl Identifier {
    /// Checks the value has the form its name promises.
    pub fn validate(&self) -> Result<(), &'static str> {
        let ok = match self.name {
            IdName::HashedEmail | IdName::HashedPhone => {
                self.id.len() == 64
                    && self
                        .id
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
            IdName::Phone => {
                (normalize::MIN_PHONE_DIGITS..=normalize::MAX_PHONE_DIGITS).contains(&self.id.len())
                    && self.id.bytes().all(|b| b.is_ascii_digit())
                    && !self.id.starts_with('0')
            }
            IdName::Guid => normalize::parse_guid(&self.id).is_ok_and(|g| g == self.id),
            IdName::FirstPartyId => {
                normalize::normalize_first_party_id(&self.id, normalize::MAX_FIRST_PARTY_ID_LEN)
                    .is_ok_and(|v| v == self.id)
            }
        };
        if ok {
            Ok(())
        } else {
            Err(match self.name {
                IdName::HashedEmail | IdName::HashedPhone => {
                    "expected 64 lower-case hex characters (SHA-256)"
                }
                IdName::Phone => "expected 8 to 15 digits with country code, no formatting",
                IdName::Guid => "expected a lower-case hyphenated UUID",
                IdName::FirstPartyId => {
                    "expected a trimmed, non-empty id of at most 256 characters"
                }
            })
        }
    }
}

/// A point in time, serialized as ISO 8601 UTC with milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub UnixMillis);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_iso8601(self.0))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_iso8601(&s)
            .map(Timestamp)
            .ok_or_else(|| de::Error::custom("timestamp: expected ISO 8601"))
    }
}

/// One conversion, field for field the seed payload. Field order here is the JSON order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversionEvent {
    pub advertiser_id: u64,
    pub data_source_key: String,
    pub conversion_type: ConversionType,
    pub event_id: String,
    pub ids: Vec<Identifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<UserAgent>,
    pub timestamp: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Ad click ids (gclid, fbclid, …) seen on the visitor's landing; an extension of the seed
    /// payload, sent only when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub click_ids: Vec<ClickId>,
    /// The client's IP address (canonical text); an extension of the seed payload for
    /// matching, sent only when known and configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip_address: Option<String>,
}

/// Why an event (or an event payload) is not acceptable, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    pub field: String,
    pub reason: String,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

fn err(field: &str, reason: &str) -> EventError {
    EventError {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// Longest `order_id`/`event_id`/`data_source_key` accepted.
pub const MAX_KEY_LEN: usize = 256;

impl ConversionEvent {
    /// Checks everything the spec requires beyond the JSON shape.
    pub fn validate(&self) -> Result<(), EventError> {
        if self.data_source_key.trim().is_empty() || self.data_source_key.len() > MAX_KEY_LEN {
            return Err(err(
                "data_source_key",
                "must be a non-empty string of at most 256 bytes",
            ));
        }
        if self.event_id.trim().is_empty() || self.event_id.len() > MAX_KEY_LEN {
            return Err(err(
                "event_id",
                "must be a non-empty string of at most 256 bytes",
            ));
        }
        if self.ids.is_empty() {
            return Err(err("ids", "at least one user identifier is required"));
        }
        for (i, id) in self.ids.iter().enumerate() {
            id.validate().map_err(|r| err(&format!("ids[{i}].id"), r))?;
        }
        if let Some(v) = self.value
            && (!v.is_finite() || v < 0.0)
        {
            return Err(err("value", "must be a finite number >= 0"));
        }
        if !crate::currency::is_currency(&self.currency) {
            return Err(err("currency", "must be an upper-case ISO 4217 code"));
        }
        if let Some(o) = &self.order_id
            && (o.trim().is_empty() || o.len() > MAX_KEY_LEN)
        {
            return Err(err(
                "order_id",
                "must be a non-empty string of at most 256 bytes",
            ));
        }
        for (i, c) in self.click_ids.iter().enumerate() {
            if clean_click_id(&c.id) != Some(c.id.as_str()) {
                return Err(err(
                    &format!("click_ids[{i}].id"),
                    "expected printable ASCII without separators, at most 512 bytes",
                ));
            }
            if self.click_ids[..i].iter().any(|o| o.name == c.name) {
                return Err(err(&format!("click_ids[{i}].name"), "repeated"));
            }
        }
        if let Some(ip) = &self.client_ip_address
            && normalize_ip(ip).as_deref() != Some(ip.as_str())
        {
            return Err(err(
                "client_ip_address",
                "expected an IPv4 or IPv6 address in canonical form",
            ));
        }
        Ok(())
    }

    /// The stable JSON form (the seed's field order).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        crate::encode::write_event(self, &mut out);
        out
    }

    /// Parses and validates one event in the seed format.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|_| err("body", "not valid JSON"))?;
        Self::from_value(&v)
    }

    /// Validates one event given as JSON: every error names its field, and never echoes a
    /// value (it may be personal data) nor an odd key.
    pub fn from_value(v: &Value) -> Result<Self, EventError> {
        check_shape(v)?;
        let ev: Self = serde_json::from_value(v.clone()).map_err(|e| {
            let msg = e.to_string();
            let field = msg.split_once(':').map_or("body", |(f, _)| f);
            err(
                if FIELDS.iter().any(|(k, _, _)| *k == field) {
                    field
                } else {
                    "body"
                },
                "invalid value",
            )
        })?;
        ev.validate()?;
        Ok(ev)
    }
}

/// Parses a request body holding one event or a JSON array of events (a batch). Errors in a
/// batch name the element: `[1].value: must be a finite number >= 0`.
pub fn events_from_json(bytes: &[u8]) -> Result<Vec<ConversionEvent>, EventError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|_| err("body", "not valid JSON"))?;
    match v {
        Value::Array(items) if items.is_empty() => Err(err("body", "expected at least one event")),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                ConversionEvent::from_value(item).map_err(|e| EventError {
                    field: if e.field == "body" {
                        format!("[{i}]")
                    } else {
                        format!("[{i}].{}", e.field)
                    },
                    reason: e.reason,
                })
            })
            .collect(),
        one => ConversionEvent::from_value(&one).map(|e| alloc::vec![e]),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Uint,
    Number,
    Str,
    Array,
    Object,
}

/// The seed fields: name, JSON type, required.
const FIELDS: [(&str, Kind, bool); 12] = [
    ("advertiser_id", Kind::Uint, true),
    ("data_source_key", Kind::Str, true),
    ("conversion_type", Kind::Str, true),
    ("event_id", Kind::Str, true),
    ("ids", Kind::Array, true),
    ("user_agent", Kind::Object, false),
    ("timestamp", Kind::Str, true),
    ("value", Kind::Number, false),
    ("currency", Kind::Str, true),
    ("order_id", Kind::Str, false),
    ("click_ids", Kind::Array, false),
    ("client_ip_address", Kind::Str, false),
];

fn fits(kind: Kind, v: &Value) -> bool {
    match kind {
        Kind::Uint => v.is_u64(),
        Kind::Number => v.is_number(),
        Kind::Str => v.is_string(),
        Kind::Array => v.is_array(),
        Kind::Object => v.is_object(),
    }
}

fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Uint => "expected a non-negative integer",
        Kind::Number => "expected a number",
        Kind::Str => "expected a string",
        Kind::Array => "expected an array",
        Kind::Object => "expected an object",
    }
}

/// A key from the client's JSON, shown only when it is plain.
fn shown_key(k: &str) -> String {
    if !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        k.to_string()
    } else {
        "(unprintable field)".to_string()
    }
}

fn check_shape(v: &Value) -> Result<(), EventError> {
    let obj = v
        .as_object()
        .ok_or_else(|| err("body", "expected a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !FIELDS.iter().any(|(f, _, _)| f == k)) {
        return Err(err(&shown_key(k), "unknown field"));
    }
    for (key, kind, required) in FIELDS {
        match obj.get(key) {
            None if required => return Err(err(key, "missing field")),
            Some(Value::Null) if required => return Err(err(key, "missing field")),
            Some(x) if !x.is_null() && !fits(kind, x) => return Err(err(key, expected(kind))),
            _ => {}
        }
    }
    if let Some(Value::Array(ids)) = obj.get("ids") {
        for (i, id) in ids.iter().enumerate() {
            let o = id
                .as_object()
                .ok_or_else(|| err(&format!("ids[{i}]"), "expected an object with id and name"))?;
            if let Some(k) = o.keys().find(|k| *k != "id" && *k != "name") {
                return Err(err(&format!("ids[{i}].{}", shown_key(k)), "unknown field"));
            }
            match o.get("id") {
                Some(Value::String(_)) => {}
                _ => return Err(err(&format!("ids[{i}].id"), "expected a string")),
            }
            match o.get("name").and_then(Value::as_str) {
                Some("Guid" | "HashedEmail" | "Phone" | "HashedPhone" | "FirstPartyId") => {}
                _ => {
                    return Err(err(
                        &format!("ids[{i}].name"),
                        "expected Guid, HashedEmail, Phone, HashedPhone or FirstPartyId",
                    ));
                }
            }
        }
    }
    if let Some(Value::Array(clicks)) = obj.get("click_ids") {
        for (i, c) in clicks.iter().enumerate() {
            let o = c.as_object().ok_or_else(|| {
                err(
                    &format!("click_ids[{i}]"),
                    "expected an object with id and name",
                )
            })?;
            if let Some(k) = o.keys().find(|k| *k != "id" && *k != "name") {
                return Err(err(
                    &format!("click_ids[{i}].{}", shown_key(k)),
                    "unknown field",
                ));
            }
            if !matches!(o.get("id"), Some(Value::String(_))) {
                return Err(err(&format!("click_ids[{i}].id"), "expected a string"));
            }
            let known = o
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| ClickIdName::ALL.iter().any(|c| c.as_str() == n));
            if !known {
                return Err(err(
                    &format!("click_ids[{i}].name"),
                    "expected fbclid, gclid, ttclid, ScCid, epik or rdt_cid",
                ));
            }
        }
    }
    Ok(())
}
