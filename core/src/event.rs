//! The conversion event as the seed Conversions API specifies it, with a stable JSON form.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

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
                self.id.len() == 64 && self.id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
            IdName::Phone => {
                (normalize::MIN_PHONE_DIGITS..=normalize::MAX_PHONE_DIGITS).contains(&self.id.len())
                    && self.id.bytes().all(|b| b.is_ascii_digit())
                    && !self.id.starts_with('0')
            }
            IdName::Guid => normalize::parse_guid(&self.id).is_ok_and(|g| g == self.id),
            IdName::FirstPartyId => normalize::normalize_first_party_id(&self.id, normalize::MAX_FIRST_PARTY_ID_LEN)
                .is_ok_and(|v| v == self.id),
        };
        if ok {
            Ok(())
        } else {
            Err(match self.name {
                IdName::HashedEmail | IdName::HashedPhone => "expected 64 lower-case hex characters (SHA-256)",
                IdName::Phone => "expected 8 to 15 digits with country code, no formatting",
                IdName::Guid => "expected a lower-case hyphenated UUID",
                IdName::FirstPartyId => "expected a trimmed, non-empty id of at most 256 characters",
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
    EventError { field: field.to_string(), reason: reason.to_string() }
}

/// Longest `order_id`/`event_id`/`data_source_key` accepted.
pub const MAX_KEY_LEN: usize = 256;

impl ConversionEvent {
    /// Checks everything the spec requires beyond the JSON shape.
    pub fn validate(&self) -> Result<(), EventError> {
        if self.data_source_key.trim().is_empty() || self.data_source_key.len() > MAX_KEY_LEN {
            return Err(err("data_source_key", "must be a non-empty string of at most 256 bytes"));
        }
        if self.event_id.trim().is_empty() || self.event_id.len() > MAX_KEY_LEN {
            return Err(err("event_id", "must be a non-empty string of at most 256 bytes"));
        }
        if self.ids.is_empty() {
            return Err(err("ids", "at least one user identifier is required"));
        }
        for (i, id) in self.ids.iter().enumerate() {
            id.validate().map_err(|r| err(&format!("ids[{i}].id"), r))?;
        }
        if let Some(v) = self.value
            && (!v.is_finite() || v < 0.0) {
                return Err(err("value", "must be a finite number >= 0"));
            }
        if !crate::currency::is_currency(&self.currency) {
            return Err(err("currency", "must be an upper-case ISO 4217 code"));
        }
        if let Some(o) = &self.order_id
            && (o.trim().is_empty() || o.len() > MAX_KEY_LEN) {
                return Err(err("order_id", "must be a non-empty string of at most 256 bytes"));
            }
        Ok(())
    }

    /// The stable JSON form (the seed's field order).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail: every map key is a string.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and validates one event in the seed format.
    pub fn from_json(bytes: &[u8]) -> Result<Self, EventError> {
        let ev: Self = serde_json::from_slice(bytes).map_err(|e| json_error(&e))?;
        ev.validate()?;
        Ok(ev)
    }
}

/// Turns a serde_json error into a field-named error without echoing input values (they may
/// be raw personal data).
pub(crate) fn json_error(e: &serde_json::Error) -> EventError {
    let msg = e.to_string();
    // serde's messages look like "unknown field `x`, expected one of ..." or
    // "missing field `ids` at line 1 column 5": keep the field name, not the value.
    if let Some(rest) = msg.split_once('`').map(|(_, r)| r)
        && let Some((name, _)) = rest.split_once('`') {
            if msg.starts_with("unknown field") {
                return err(name, "unknown field");
            }
            if msg.starts_with("missing field") {
                return err(name, "missing field");
            }
            if msg.starts_with("unknown variant") {
                return err("ids[].name", "unknown identifier name");
            }
        }
    if let Some((field, _)) = msg.split_once(": ")
        && !field.contains(' ') {
            return err(field, "invalid value");
        }
    let kind = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not valid JSON",
        serde_json::error::Category::Data => "a field has the wrong type",
        serde_json::error::Category::Io => "read error",
    };
    err("body", kind)
}
