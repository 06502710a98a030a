//! A seeded random destination, and an audit of what the filter did with each event: every
//! event delivered exactly once or dropped for a reason the answers explain, retries only
//! when and as often as the retry policy allows, by the virtual clock.

use std::collections::{BTreeMap, BTreeSet};

use capi_core::config::Retry;
use serde_json::Value;

use crate::envoy::{Delivered, Planned, Reply};
use crate::host::{HttpCall, Shared};
use crate::rng::Rng;

/// One kind of answer, with its weight in a [`Mix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Ok,
    /// 400 with a JSON reason.
    Rejected,
    AuthFailed,
    NotFound,
    /// 429 with `Retry-After: <secs>`.
    TooManyRequests(u32),
    /// 503 with `Retry-After` as an HTTP-date `secs` seconds after the answer.
    UnavailableUntil(u32),
    ServerError,
    /// Envoy's own 503 when no upstream host can be reached.
    ConnectFailure,
    Reset,
    /// No answer: the call times out (a 504 from Envoy).
    Hang,
}

/// A weighted mix of answers and a delay range.
#[derive(Debug, Clone)]
pub struct Mix {
    pub kinds: Vec<(u32, Kind)>,
    pub delay_ms: (u64, u64),
}

impl Mix {
    /// Mostly success, every failure kind present.
    pub fn realistic() -> Self {
        Mix {
            kinds: vec![
                (70, Kind::Ok),
                (3, Kind::Rejected),
                (1, Kind::AuthFailed),
                (1, Kind::NotFound),
                (6, Kind::TooManyRequests(2)),
                (2, Kind::UnavailableUntil(3)),
                (8, Kind::ServerError),
                (3, Kind::ConnectFailure),
                (4, Kind::Reset),
                (2, Kind::Hang),
            ],
            delay_ms: (1, 400),
        }
    }

    pub fn pick(&self, rng: &mut Rng) -> Kind {
        let total: u64 = self.kinds.iter().map(|(w, _)| u64::from(*w)).sum();
        let mut x = rng.below(total);
        for (w, k) in &self.kinds {
            if x < u64::from(*w) {
                return k.clone();
            }
            x -= u64::from(*w);
        }
        Kind::Ok
    }
}

/// An IMF-fixdate (RFC 9110) for a Unix time in seconds.
pub fn http_date(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let sod = unix_secs.rem_euclid(86_400);
    let iso = capi_core::time::format_iso8601(days * 86_400_000);
    // iso: YYYY-MM-DDT...
    let (y, m, d) = (&iso[0..4], &iso[5..7], &iso[8..10]);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let month = m
        .parse::<usize>()
        .ok()
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    let wd = WEEKDAYS[days.rem_euclid(7) as usize];
    format!(
        "{wd}, {d} {month} {y} {:02}:{:02}:{:02} GMT",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// The reply of one kind, `at_ms` being when the answer comes.
pub fn reply(kind: &Kind, at_ms: i64) -> Reply {
    match kind {
        Kind::Ok => Reply::with_body(200, br#"{"status":"ok"}"#),
        Kind::Rejected => Reply::with_body(
            400,
            br#"{"error":{"message":"ids: at least one user identifier is required"}}"#,
        ),
        Kind::AuthFailed => Reply::with_body(401, br#"{"error":"invalid token"}"#),
        Kind::NotFound => Reply::status(404),
        Kind::TooManyRequests(s) => Reply::retry_after(429, &s.to_string()),
        Kind::UnavailableUntil(s) => {
            // An HTTP-date has whole seconds: round the answer time up so the date is not
            // earlier than `s` seconds from now.
            Reply::retry_after(503, &http_date(at_ms.div_euclid(1000) + 1 + i64::from(*s)))
        }
        Kind::ServerError => Reply::status(500),
        Kind::ConnectFailure => Reply::envoy_connect_failure(),
        Kind::Reset => Reply::Reset,
        Kind::Hang => Reply::Hang,
    }
}

/// A responder for [`crate::Envoy::set_responder`]: seeded, so a run repeats exactly.
pub fn responder(seed: u64, mix: Mix) -> impl FnMut(&HttpCall) -> Planned {
    let mut rng = Rng::new(seed);
    move |call: &HttpCall| {
        let kind = mix.pick(&mut rng);
        let delay_ms = rng.range(mix.delay_ms.0, mix.delay_ms.1);
        Planned {
            delay_ms,
            reply: reply(&kind, call.dispatched_at_ms + delay_ms as i64),
        }
    }
}

/// The event ids a destination request carries (one object, or an array when batching).
pub fn event_ids(body: &[u8]) -> Vec<String> {
    let id = |v: &Value| v.get("event_id").and_then(Value::as_str).map(str::to_owned);
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(items)) => items.iter().filter_map(id).collect(),
        Ok(v) => id(&v).into_iter().collect(),
        Err(_) => Vec::new(),
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Status(u16, Option<String>),
    Reset,
    Unanswered,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub call_index: usize,
    pub dispatched_ms: i64,
    pub answered_ms: Option<i64>,
    pub outcome: Outcome,
    pub batch_size: usize,
}

/// Final state of one event, from the answers it got.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    Delivered,
    Dropped(&'static str),
    /// Still waiting (in flight or scheduled).
    Pending,
}

/// Everything the audit found.
#[derive(Debug, Default)]
pub struct Audit {
    pub attempts: BTreeMap<String, Vec<Attempt>>,
    pub fates: BTreeMap<String, Fate>,
    /// Broken invariants, human-readable. Empty when all is well.
    pub violations: Vec<String>,
    /// Retries checked against their exact due time, and how many were exactly on time.
    pub retries_checked: usize,
    pub retries_on_time: usize,
    pub max_in_flight: usize,
}

impl Audit {
    pub fn count(&self, fate: &Fate) -> usize {
        self.fates.values().filter(|f| *f == fate).count()
    }
}

fn retryable(o: &Outcome) -> bool {
    match o {
        Outcome::Status(s, _) => matches!(s, 408 | 425 | 429 | 500..=599),
        Outcome::Reset => true,
        Outcome::Unanswered => false,
    }
}

fn drop_reason(o: &Outcome) -> Option<&'static str> {
    match o {
        Outcome::Status(400, _) => Some("rejected"),
        Outcome::Status(401 | 403, _) => Some("auth_failed"),
        Outcome::Status(s, _) if !(200..300).contains(s) && !retryable(o) => Some("client_error"),
        _ => None,
    }
}

/// Calls in flight at `t` (dispatched at or before, answered after).
fn in_flight_at(attempts: &[(i64, Option<i64>)], t: i64) -> usize {
    attempts
        .iter()
        .filter(|(d, a)| *d <= t && a.is_none_or(|a| a > t))
        .count()
}

/// Checks every call and answer against the retry policy. `max_in_flight` is the outbox's
/// cap on concurrent requests: while it is reached a due retry waits (legitimately); so does
/// a retry waiting up to `batch_wait_ms` for its batch to fill.
pub fn audit(
    shared: &Shared,
    delivered: &[Delivered],
    retry: &Retry,
    max_in_flight: usize,
    batch_wait_ms: i64,
) -> Audit {
    let mut a = Audit::default();
    let answers: BTreeMap<usize, &Delivered> =
        delivered.iter().map(|d| (d.call_index, d)).collect();
    let mut windows = Vec::new();
    for (i, call) in shared.calls.iter().enumerate() {
        let ids = event_ids(&call.body);
        if ids.is_empty() {
            a.violations
                .push(format!("call {i}: body carries no event_id"));
        }
        let d = answers.get(&i);
        let outcome = match d {
            None => Outcome::Unanswered,
            Some(d) => match d.status {
                Some(s) => Outcome::Status(s, d.retry_after.clone()),
                None => Outcome::Reset,
            },
        };
        windows.push((call.dispatched_at_ms, d.map(|d| d.at_ms)));
        for id in &ids {
            a.attempts.entry(id.clone()).or_default().push(Attempt {
                call_index: i,
                dispatched_ms: call.dispatched_at_ms,
                answered_ms: d.map(|d| d.at_ms),
                outcome: outcome.clone(),
                batch_size: ids.len(),
            });
        }
    }
    // The peak of concurrent calls, sampled at every dispatch.
    a.max_in_flight = windows
        .iter()
        .map(|(d, _)| in_flight_at(&windows, *d))
        .max()
        .unwrap_or(0);
    for (id, atts) in &a.attempts {
        let mut fate = Fate::Pending;
        if atts.len() > retry.max_attempts as usize {
            a.violations.push(format!(
                "{id}: {} attempts > max_attempts {}",
                atts.len(),
                retry.max_attempts
            ));
        }
        let first = atts[0].dispatched_ms;
        for (k, at) in atts.iter().enumerate() {
            let last = k + 1 == atts.len();
            // The policy plans no attempt past max_age; a batch may hold it up to its wait.
            if at.dispatched_ms - first > retry.max_age_ms + batch_wait_ms {
                a.violations.push(format!(
                    "{id}: attempt {} started {} ms after the first (> max_age)",
                    k + 1,
                    at.dispatched_ms - first
                ));
            }
            if let Some(reason) = drop_reason(&at.outcome) {
                fate = Fate::Dropped(reason);
                if !last {
                    a.violations
                        .push(format!("{id}: sent again after a {reason} answer"));
                }
            } else if matches!(at.outcome, Outcome::Status(200..=299, _)) {
                fate = Fate::Delivered;
                if !last {
                    a.violations
                        .push(format!("{id}: sent again after it was delivered"));
                }
            } else if at.outcome == Outcome::Unanswered {
                fate = Fate::Pending;
                if !last {
                    a.violations
                        .push(format!("{id}: sent again while an attempt was unanswered"));
                }
            } else if retryable(&at.outcome) {
                let answered = at.answered_ms.unwrap_or(at.dispatched_ms);
                let retry_after_due = match &at.outcome {
                    Outcome::Status(_, Some(ra)) => {
                        capi_core::delivery::retry_after_at(ra, answered)
                    }
                    _ => None,
                };
                let cap = retry
                    .base_backoff_ms
                    .saturating_mul(1i64 << (k as u32).min(40))
                    .min(retry.max_backoff_ms);
                // The earliest and latest time the policy could plan the next attempt for.
                let (earliest, latest) = match retry_after_due {
                    Some(due) => (due, due),
                    None => (answered, answered + cap),
                };
                match atts.get(k + 1) {
                    None => {
                        // Not retried: the attempts or the age ran out (the caller runs until
                        // the queue is empty, so no retry is still to come).
                        if k + 1 >= retry.max_attempts as usize {
                            fate = Fate::Dropped("attempts_exhausted");
                        } else {
                            fate = Fate::Dropped("max_age");
                            if latest - first <= retry.max_age_ms {
                                a.violations.push(format!("{id}: dropped for age after attempt {}, but a retry at +{} ms was within max_age", k + 1, latest - first));
                            }
                        }
                    }
                    Some(_)
                        if k + 1 < retry.max_attempts as usize
                            && earliest - first > retry.max_age_ms =>
                    {
                        a.violations.push(format!(
                            "{id}: retried although the next attempt (+{} ms) was past max_age",
                            earliest - first
                        ));
                    }
                    Some(next) => {
                        let gap = next.dispatched_ms - answered;
                        let after = retry_after_due;
                        let blocked = in_flight_at(&windows, answered.max(next.dispatched_ms - 1))
                            >= max_in_flight;
                        match after {
                            Some(due) => {
                                a.retries_checked += 1;
                                if next.dispatched_ms < due {
                                    a.violations.push(format!("{id}: retried at +{gap} ms, before Retry-After (due +{} ms)", due - answered));
                                } else if next.dispatched_ms <= due + batch_wait_ms {
                                    a.retries_on_time += 1;
                                } else if !blocked {
                                    a.violations.push(format!("{id}: retried at +{gap} ms, late for Retry-After (due +{} ms)", due - answered));
                                }
                            }
                            None => {
                                a.retries_checked += 1;
                                if gap < 0 {
                                    a.violations
                                        .push(format!("{id}: retried {gap} ms before the answer"));
                                } else if gap <= cap + batch_wait_ms {
                                    a.retries_on_time += 1;
                                } else if !blocked {
                                    a.violations.push(format!(
                                        "{id}: backoff {gap} ms > cap {cap} ms after attempt {}",
                                        k + 1
                                    ));
                                }
                            }
                        }
                    }
                }
            }
        }
        a.fates.insert(id.clone(), fate);
    }
    a
}

/// Event ids that appear in more than one call that got a 2xx answer.
pub fn delivered_twice(a: &Audit) -> BTreeSet<String> {
    a.attempts
        .iter()
        .filter(|(_, atts)| {
            atts.iter()
                .filter(|x| matches!(x.outcome, Outcome::Status(200..=299, _)))
                .count()
                > 1
        })
        .map(|(id, _)| id.clone())
        .collect()
}
