//! The retry queue's message: one event and its delivery history. The event is already
//! normalized and hashed, so a message holds no raw email or phone.

use capi_core::ConversionEvent;
use capi_core::time::UnixMillis;
use serde::{Deserialize, Serialize};

/// Version of the message layout.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryMessage {
    pub v: u32,
    /// Attempts already made (the inline one included).
    pub attempts: u32,
    /// When the first attempt started (unix ms): the core's `max_age_ms` counts from it.
    pub first_attempt_at: UnixMillis,
    /// What produced the event: a rule name or `collect`.
    pub source: String,
    /// Why the message was sent (the last failure), for logs and the dead-letter queue.
    #[serde(default)]
    pub last_error: String,
    pub event: ConversionEvent,
}

impl RetryMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and validates a message; the error names what is wrong.
    pub fn from_json(s: &str) -> Result<Self, String> {
        let m: Self =
            serde_json::from_str(s).map_err(|e| format!("retry message: {}", e.classify_name()))?;
        if m.v != VERSION {
            return Err(format!("retry message: unknown version {}", m.v));
        }
        m.event
            .validate()
            .map_err(|e| format!("retry message: event {e}"))?;
        Ok(m)
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "not valid JSON"
            }
            serde_json::error::Category::Data => "a field is missing or has the wrong type",
            serde_json::error::Category::Io => "read error",
        }
    }
}

/// Seconds to hand the queue for a retry due at `at` (the queue counts whole seconds; its
/// limit is 12 hours).
pub fn delay_seconds(at: UnixMillis, now: UnixMillis) -> u32 {
    let ms = (at - now).max(0);
    (ms.div_euclid(1000) + i64::from(ms % 1000 != 0)).min(43_200) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use capi_core::PluginConfig;
    use capi_core::config::EXAMPLE_CONFIG;

    fn event() -> ConversionEvent {
        let c = PluginConfig::from_json(EXAMPLE_CONFIG.as_bytes()).unwrap();
        capi_core::collect_event(&c, br#"{"conversion_type":"Purchase","order_id":"A-1","value":"12.50","email":"Jane.Doe@Example.com"}"#, &[], None, 1_700_000_000_000)
            .unwrap()
            .event
    }

    #[test]
    fn round_trip_without_raw_identifiers() {
        let m = RetryMessage {
            v: VERSION,
            attempts: 1,
            first_attempt_at: 5,
            source: "collect".into(),
            last_error: "status 503".into(),
            event: event(),
        };
        let s = m.to_json();
        assert!(!s.to_ascii_lowercase().contains("jane"), "{s}");
        assert_eq!(RetryMessage::from_json(&s).unwrap(), m);
        assert!(
            RetryMessage::from_json("{")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            RetryMessage::from_json(&s.replace("\"v\":1", "\"v\":9"))
                .unwrap_err()
                .contains("version")
        );
    }

    #[test]
    fn delays_round_up_to_seconds() {
        assert_eq!(delay_seconds(1000, 1000), 0);
        assert_eq!(delay_seconds(1001, 1000), 1);
        assert_eq!(delay_seconds(3000, 1000), 2);
        assert_eq!(delay_seconds(0, 1000), 0);
        assert_eq!(delay_seconds(i64::MAX / 2, 0), 43_200);
    }
}
