//! What each answer from the destination leads to: delivered, retry at a time, or drop.

use alloc::string::String;
use core::fmt;

use crate::config::Retry;
use crate::time::{UnixMillis, parse_http_date};

/// How an attempt ended, as the adapter observed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// An HTTP answer, with its `Retry-After` header and body if any.
    Http {
        status: u16,
        retry_after: Option<&'a str>,
        body: &'a [u8],
    },
    /// No answer within the configured timeout.
    Timeout,
    /// The connection could not be made or broke before an answer.
    ConnectFailed,
}

/// Why an event was given up. Each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// 400: the platform refused the payload; retrying cannot help.
    Rejected,
    /// 401/403: the token or signature is wrong; loud, not retried.
    AuthFailed,
    /// Another 4xx (404, 413, 422…) or an unexpected 1xx/3xx.
    ClientError,
    /// `retry.max_attempts` reached.
    AttemptsExhausted,
    /// The next attempt would start later than `retry.max_age_ms` after the first.
    MaxAge,
    /// The delivery queue was full when the event arrived.
    QueueFull,
    /// The same event_id was already taken within the dedup window.
    Duplicate,
}

impl DropReason {
    /// Stable snake_case name, used in counters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::AuthFailed => "auth_failed",
            Self::ClientError => "client_error",
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::MaxAge => "max_age",
            Self::QueueFull => "queue_full",
            Self::Duplicate => "duplicate",
        }
    }

    pub const ALL: [DropReason; 7] = [
        Self::Rejected,
        Self::AuthFailed,
        Self::ClientError,
        Self::AttemptsExhausted,
        Self::MaxAge,
        Self::QueueFull,
        Self::Duplicate,
    ];
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision for one event after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryPlan {
    Delivered,
    /// Try again at this time (absolute, the caller's clock).
    RetryAt(UnixMillis),
    /// Give up; `detail` is the platform's reason when it gave one (never event data).
    Drop {
        reason: DropReason,
        detail: Option<String>,
    },
}

/// The platform's reason from a 400 body: `error.message`, `message`, `error` or `reason`
/// when the body is JSON, else its first printable ASCII, at most 200 characters.
pub fn rejection_reason(body: &[u8]) -> Option<String> {
    const MAX: usize = 200;
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["/error/message", "/message", "/error", "/reason", "/detail"]
                .iter()
                .find_map(|p| v.pointer(p).and_then(|x| x.as_str()).map(String::from))
        });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                ' '
            }
        })
        .take(MAX)
        .collect();
    let clean = clean.trim();
    (!clean.is_empty()).then(|| String::from(clean))
}

/// `Retry-After` as an absolute time: delta-seconds or an HTTP-date.
pub fn retry_after_at(value: &str, now: UnixMillis) -> Option<UnixMillis> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u32>() {
        return Some(now + i64::from(secs) * 1000);
    }
    parse_http_date(v).map(|t| t.max(now))
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, base·2^(attempt-1))]`,
/// `random` supplied by the caller.
pub fn backoff_ms(retry: &Retry, attempts_made: u32, random: u64) -> i64 {
    let exp = attempts_made.saturating_sub(1).min(40);
    let cap = retry
        .base_backoff_ms
        .saturating_mul(1i64 << exp)
        .min(retry.max_backoff_ms)
        .max(0);
    (random % (cap as u64 + 1)) as i64
}

/// Decides what follows an attempt. `attempts_made` counts this one; `first_attempt_at` is
/// when the event's first attempt started.
pub fn plan(
    retry: &Retry,
    answer: &Answer<'_>,
    attempts_made: u32,
    first_attempt_at: UnixMillis,
    now: UnixMillis,
    random: u64,
) -> DeliveryPlan {
    let drop = |reason, detail| DeliveryPlan::Drop { reason, detail };
    let retry_after = match *answer {
        Answer::Http {
            status: 200..=299, ..
        } => return DeliveryPlan::Delivered,
        Answer::Http {
            status: 400, body, ..
        } => return drop(DropReason::Rejected, rejection_reason(body)),
        Answer::Http {
            status: 401 | 403,
            body,
            ..
        } => return drop(DropReason::AuthFailed, rejection_reason(body)),
        Answer::Http {
            status: 408 | 425 | 429 | 500..=599,
            retry_after,
            ..
        } => retry_after.and_then(|v| retry_after_at(v, now)),
        Answer::Http { body, .. } => return drop(DropReason::ClientError, rejection_reason(body)),
        Answer::Timeout | Answer::ConnectFailed => None,
    };
    if attempts_made >= retry.max_attempts {
        return drop(DropReason::AttemptsExhausted, None);
    }
    let at = retry_after.unwrap_or_else(|| now + backoff_ms(retry, attempts_made, random));
    if at - first_attempt_at > retry.max_age_ms {
        return drop(DropReason::MaxAge, None);
    }
    DeliveryPlan::RetryAt(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Retry = Retry {
        max_attempts: 4,
        max_age_ms: 60_000,
        base_backoff_ms: 1000,
        max_backoff_ms: 8000,
    };

    fn http(status: u16) -> Answer<'static> {
        Answer::Http {
            status,
            retry_after: None,
            body: b"",
        }
    }

    #[test]
    fn success_and_permanent_failures() {
        assert_eq!(plan(&R, &http(200), 1, 0, 0, 0), DeliveryPlan::Delivered);
        assert_eq!(plan(&R, &http(201), 1, 0, 0, 0), DeliveryPlan::Delivered);
        let bad = Answer::Http {
            status: 400,
            retry_after: None,
            body: br#"{"error":{"message":"ids: required"}}"#,
        };
        assert_eq!(
            plan(&R, &bad, 1, 0, 0, 0),
            DeliveryPlan::Drop {
                reason: DropReason::Rejected,
                detail: Some("ids: required".into())
            }
        );
        for s in [401, 403] {
            assert!(matches!(
                plan(&R, &http(s), 1, 0, 0, 0),
                DeliveryPlan::Drop {
                    reason: DropReason::AuthFailed,
                    ..
                }
            ));
        }
        assert!(matches!(
            plan(&R, &http(404), 1, 0, 0, 0),
            DeliveryPlan::Drop {
                reason: DropReason::ClientError,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_seconds_and_date_are_exact() {
        let a = Answer::Http {
            status: 429,
            retry_after: Some("7"),
            body: b"",
        };
        assert_eq!(plan(&R, &a, 1, 0, 1000, 0), DeliveryPlan::RetryAt(8000));
        let d = Answer::Http {
            status: 503,
            retry_after: Some("Thu, 01 Jan 1970 00:00:30 GMT"),
            body: b"",
        };
        assert_eq!(plan(&R, &d, 1, 0, 1000, 0), DeliveryPlan::RetryAt(30_000));
        let far = Answer::Http {
            status: 429,
            retry_after: Some("3600"),
            body: b"",
        };
        assert!(matches!(
            plan(&R, &far, 1, 0, 0, 0),
            DeliveryPlan::Drop {
                reason: DropReason::MaxAge,
                ..
            }
        ));
    }

    #[test]
    fn backoff_is_full_jitter_under_the_cap() {
        assert_eq!(backoff_ms(&R, 1, u64::MAX), (u64::MAX % 1001) as i64);
        for attempt in 1..10 {
            let cap = (1000i64 << (attempt - 1)).min(8000);
            for r in [0u64, 1, 999, 12_345, u64::MAX] {
                let b = backoff_ms(&R, attempt, r);
                assert!((0..=cap).contains(&b), "attempt {attempt} r {r} -> {b}");
            }
            assert_eq!(backoff_ms(&R, attempt, cap as u64), cap);
        }
    }

    #[test]
    fn attempts_are_bounded() {
        assert!(matches!(
            plan(&R, &Answer::Timeout, 3, 0, 0, 5),
            DeliveryPlan::RetryAt(_)
        ));
        assert!(matches!(
            plan(&R, &Answer::ConnectFailed, 4, 0, 0, 5),
            DeliveryPlan::Drop {
                reason: DropReason::AttemptsExhausted,
                ..
            }
        ));
    }
}
