//! Structured JSON logs and counters. A log line is built from named fields; every free-text
//! value is scrubbed (anything shaped like an email address or a phone number is masked) so
//! that a platform's echo or a future careless field cannot put personal data in the logs.
//! Secrets never reach this module.

use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write as _;

/// Counts since this isolate started (Workers keep no global memory: each isolate counts its
/// own; Analytics Engine, when bound, aggregates across them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Proxied exchanges that matched a rule on both request and response.
    pub matched: u64,
    /// Collect requests accepted (202).
    pub collected: u64,
    /// Collect requests refused (4xx).
    pub refused: u64,
    /// Exchanges or collect requests left alone for consent (Sec-GPC, consent cookie).
    pub consent_skipped: u64,
    /// Matched exchanges whose event could not be built (a field missing or invalid).
    pub extract_failed: u64,
    /// Attempts sent to the destination.
    pub sent: u64,
    pub delivered: u64,
    /// Attempts that failed and were queued for a retry.
    pub retried: u64,
    /// Events given up, by reason (the core's drop reasons, `duplicate`, `no_retry_queue`...).
    pub dropped: BTreeMap<String, u64>,
    /// Events moved to the dead-letter queue.
    pub dead_lettered: u64,
}

impl Counters {
    pub fn drop(&mut self, reason: &str) {
        *self.dropped.entry(reason.to_owned()).or_default() += 1;
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// Masks email-like words and any stretch of digits, spaces and `+()-.` holding 7 or more
/// digits (a phone number however it is formatted). Cut to 300 characters.
pub fn scrub(text: &str) -> String {
    let words: Vec<&str> = text
        .split(' ')
        .map(|w| if w.contains('@') { "[redacted]" } else { w })
        .collect();
    let words = words.join(" ");
    let mut out = String::with_capacity(words.len());
    let mut run = String::new();
    for c in words.chars() {
        if c.is_ascii_digit() || matches!(c, ' ' | '+' | '(' | ')' | '-' | '.') {
            run.push(c);
        } else {
            flush_run(&mut out, &mut run);
            out.push(c);
        }
    }
    flush_run(&mut out, &mut run);
    out.chars().take(300).collect()
}

fn flush_run(out: &mut String, run: &mut String) {
    if run.chars().filter(char::is_ascii_digit).count() >= 7 {
        if run.starts_with(' ') {
            out.push(' ');
        }
        out.push_str("[redacted]");
        if run.ends_with(' ') {
            out.push(' ');
        }
    } else {
        out.push_str(run);
    }
    run.clear();
}

/// One structured log line, written as it is built: `{"component":"capi-worker","level":..,
/// "msg":..` then each field in the order added (a map of JSON values cost an allocation per
/// key and per value, on every event).
#[derive(Debug)]
pub struct Line {
    json: Vec<u8>,
}

impl Line {
    pub fn new(level: &str, msg: &str) -> Self {
        let mut json = Vec::with_capacity(160);
        json.extend_from_slice(br#"{"component":"capi-worker""#);
        let mut line = Self { json };
        line.key("level");
        line.string(level);
        line.key("msg");
        line.string(msg);
        line
    }

    fn key(&mut self, key: &str) {
        self.json.push(b',');
        self.string(key);
        self.json.push(b':');
    }

    fn string(&mut self, s: &str) {
        capi_core::encode::write_str(s, &mut self.json);
    }

    /// A free-text field (scrubbed).
    pub fn text(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        self.string(&scrub(value));
        self
    }

    /// An event id: the core derives it as SHA-256 hex; anything else is dropped.
    pub fn event_id(mut self, id: &str) -> Self {
        if id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            self.key("event_id");
            self.string(id);
        }
        self
    }

    pub fn num(mut self, key: &str, value: i64) -> Self {
        self.key(key);
        // Writing into a Vec cannot fail.
        let _ = write!(self.json, "{value}");
        self
    }

    pub fn list(mut self, key: &str, values: &[&str]) -> Self {
        self.key(key);
        self.json.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.json.push(b',');
            }
            self.string(&scrub(v));
        }
        self.json.push(b']');
        self
    }

    pub fn render(mut self) -> String {
        self.json.push(b'}');
        // Only escaped &str bytes, ASCII punctuation and digits went in: valid UTF-8.
        String::from_utf8(self.json).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn lines_escape_text_and_keep_field_order() {
        let l = Line::new("warn", "extract_failed")
            .text("error", "bad \"quote\" \\ back\nslash \u{1} é")
            .list("ids_skipped", &["email", "ph\"one"])
            .list("none", &[])
            .num("neg", -42);
        let text = l.render();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"], "bad \"quote\" \\ back\nslash \u{1} é");
        assert_eq!(v["ids_skipped"], serde_json::json!(["email", "ph\"one"]));
        assert_eq!(v["none"], serde_json::json!([]));
        assert_eq!(v["neg"], -42);
        assert!(text.starts_with(
            r#"{"component":"capi-worker","level":"warn","msg":"extract_failed","error":"#
        ));
        assert!(!text.contains('\n'), "one line");
    }

    #[test]
    fn scrub_masks_emails_and_phones() {
        assert_eq!(
            scrub("bad email jane.doe@example.com here"),
            "bad email [redacted] here"
        );
        assert_eq!(scrub("phone +1 (415) 555-2671 x"), "phone [redacted] x");
        assert_eq!(scrub("phone 14155552671."), "phone [redacted]");
        assert_eq!(
            scrub("status 503 after 1200 ms"),
            "status 503 after 1200 ms"
        );
        assert_eq!(
            scrub("ids[0].id: expected 64 hex"),
            "ids[0].id: expected 64 hex"
        );
        assert_eq!(scrub(&"x".repeat(400)).len(), 300);
    }

    #[test]
    fn lines_are_json_with_safe_fields() {
        let l = Line::new("info", "delivered")
            .event_id("ab12")
            .event_id("not an id!")
            .num("status", 200)
            .text("detail", "a@b.co rejected");
        let v: Value = serde_json::from_str(&l.render()).unwrap();
        assert_eq!(v["event_id"], "ab12");
        assert_eq!(v["status"], 200);
        assert_eq!(v["detail"], "[redacted] rejected");
        assert_eq!(v["component"], "capi-worker");
    }

    #[test]
    fn counters() {
        let mut c = Counters::default();
        c.drop("rejected");
        c.drop("rejected");
        c.drop("duplicate");
        assert_eq!(c.dropped_total(), 3);
        assert_eq!(serde_json::to_value(&c).unwrap()["dropped"]["rejected"], 2);
    }
}
