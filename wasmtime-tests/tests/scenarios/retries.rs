//! Retries by the virtual clock: Retry-After (seconds and HTTP-date) exactly, full-jitter
//! backoff under its cap, max_attempts and max_age as limits, permanent failures never
//! retried.

use capi_wasmtime_tests::sink::{self, http_date};
use capi_wasmtime_tests::{Planned, Reply};

use crate::common::*;

fn run(cfg: &[u8], replies: Vec<Reply>, delay_ms: u64) -> capi_wasmtime_tests::Envoy {
    let (mut e, root) = envoy(cfg);
    let mut replies = replies.into_iter();
    e.set_responder(move |_| Planned {
        delay_ms,
        reply: replies.next().unwrap_or(Reply::status(200)),
    });
    e.run_exchange(0, root, &checkout("R-1", Some("r@example.com")))
        .unwrap();
    assert!(settle(&mut e, 4 * 3_600_000));
    assert_clean(&e);
    e
}

fn gaps(e: &capi_wasmtime_tests::Envoy) -> Vec<i64> {
    let sh = e.shared();
    e.delivered
        .iter()
        .zip(sh.calls.iter().skip(1))
        .map(|(d, next)| next.dispatched_at_ms - d.at_ms)
        .collect()
}

#[test]
fn retry_after_seconds_is_exact() {
    let cfg = config(serde_json::json!({}));
    let e = run(
        &cfg,
        vec![
            Reply::retry_after(429, "7"),
            Reply::retry_after(503, "1"),
            Reply::status(200),
        ],
        33,
    );
    assert_eq!(gaps(&e), vec![7000, 1000]);
    assert_eq!(e.stat("capi.delivered"), 1);
    assert_eq!(e.stat("capi.retried"), 2);
}

#[test]
fn retry_after_http_date_is_exact() {
    let cfg = config(serde_json::json!({}));
    let (mut e, root) = envoy(&cfg);
    // The answer comes at start + 1 ms (kick) + 40 ms; the date is 10 s after start.
    let due_s = (e.now_ms() / 1000) + 10;
    let date = http_date(due_s);
    let mut first = true;
    e.set_responder(move |_| {
        let reply = if first {
            Reply::retry_after(503, &date)
        } else {
            Reply::status(200)
        };
        first = false;
        Planned {
            delay_ms: 40,
            reply,
        }
    });
    e.run_exchange(0, root, &checkout("D-1", Some("d@example.com")))
        .unwrap();
    assert!(settle(&mut e, 60_000));
    assert_clean(&e);
    let sh = e.shared();
    assert_eq!(sh.calls.len(), 2);
    assert_eq!(sh.calls[1].dispatched_at_ms, due_s * 1000);
}

#[test]
fn backoff_is_full_jitter_under_the_cap_and_attempts_are_bounded() {
    let cfg = config(
        serde_json::json!({ "retry": { "max_attempts": 6, "base_backoff_ms": 500, "max_backoff_ms": 4000 } }),
    );
    for seed in 0..5 {
        let mut o = capi_wasmtime_tests::EnvoyOptions::default();
        o.start_ms += seed * 7919;
        let (mut e, root) = envoy_with(o, &cfg);
        e.set_responder(|_| Planned {
            delay_ms: 10,
            reply: Reply::status(500),
        });
        e.run_exchange(0, root, &checkout("B-1", Some("b@example.com")))
            .unwrap();
        assert!(settle(&mut e, 3_600_000));
        assert_clean(&e);
        let g = gaps(&e);
        assert_eq!(g.len(), 5, "6 attempts: 5 retries");
        for (k, gap) in g.iter().enumerate() {
            let cap = (500i64 << k).min(4000);
            assert!(
                (0..=cap).contains(gap),
                "retry {} after {gap} ms, cap {cap}",
                k + 1
            );
        }
        assert_eq!(e.stat("capi.dropped_attempts_exhausted"), 1);
        assert_eq!(e.stat("capi.retried"), 5);
    }
}

#[test]
fn max_age_stops_retries_and_a_far_retry_after_drops_at_once() {
    let cfg = config(
        serde_json::json!({ "retry": { "max_attempts": 100, "max_age_ms": 20_000, "base_backoff_ms": 1000, "max_backoff_ms": 5000 } }),
    );
    let e = run(&cfg, (0..100).map(|_| Reply::status(503)).collect(), 50);
    let sh = e.shared();
    let first = sh.calls[0].dispatched_at_ms;
    assert!(
        sh.calls
            .iter()
            .all(|c| c.dispatched_at_ms - first <= 20_000)
    );
    drop(sh);
    assert_eq!(e.stat("capi.dropped_max_age"), 1);

    let e = run(&cfg, vec![Reply::retry_after(429, "3600")], 50);
    assert_eq!(
        e.shared().calls.len(),
        1,
        "a Retry-After past max_age drops the event"
    );
    assert_eq!(e.stat("capi.dropped_max_age"), 1);
}

#[test]
fn permanent_failures_are_not_retried() {
    let cfg = config(serde_json::json!({}));
    for (reply, counter) in [
        (
            Reply::with_body(400, br#"{"error":{"message":"ids: required"}}"#),
            "capi.dropped_rejected",
        ),
        (Reply::status(401), "capi.dropped_auth_failed"),
        (Reply::status(403), "capi.dropped_auth_failed"),
        (Reply::status(404), "capi.dropped_client_error"),
        (Reply::status(413), "capi.dropped_client_error"),
    ] {
        let e = run(&cfg, vec![reply.clone()], 5);
        assert_eq!(e.shared().calls.len(), 1, "{reply:?}");
        assert_eq!(e.stat(counter), 1, "{reply:?}");
        // The 400's reason reaches the log, never event data.
        if counter == "capi.dropped_rejected" {
            assert!(
                e.log_lines().iter().any(|l| l.contains("ids: required")),
                "{:#?}",
                e.log_lines()
            );
        }
    }
}

#[test]
fn the_audit_agrees_on_a_small_mixed_run() {
    let cfg = config(
        serde_json::json!({ "retry": { "max_attempts": 4, "base_backoff_ms": 200, "max_backoff_ms": 2000, "max_age_ms": 60_000 } }),
    );
    let (mut e, root) = envoy(&cfg);
    e.set_responder(sink::responder(42, sink::Mix::realistic()));
    for i in 0..200 {
        e.run_exchange(0, root, &checkout(&format!("M-{i}"), Some("m@example.com")))
            .unwrap();
        e.advance(37).unwrap();
    }
    assert!(settle(&mut e, 3_600_000));
    assert_clean(&e);
    let retry = parsed(&cfg).retry;
    let a = sink::audit(&e.shared(), &e.delivered, &retry, 64, 0);
    assert!(a.violations.is_empty(), "{:#?}", a.violations);
    assert_eq!(a.fates.len(), 200);
    assert_eq!(
        a.count(&sink::Fate::Delivered) as i64,
        e.stat("capi.delivered")
    );
}
