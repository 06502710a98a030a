//! Configuration reloads. Envoy applies a new plugin configuration by starting a new root
//! context (the plugin key includes the configuration) and retiring the old one with
//! `proxy_on_done` once its streams are gone; `proxy_on_delete` cancels the old root's
//! outstanding calls.

use capi_wasmtime_tests::{Planned, Reply};

use crate::common::*;

#[test]
fn a_new_configuration_takes_over_without_a_trap() {
    let old = config(serde_json::json!({}));
    let new = config(
        serde_json::json!({ "destination": { "advertiser_id": 999, "url": "https://127.0.0.1:9443/v2/conversions" } }),
    );
    let (mut e, root_a) = envoy(&old);
    e.set_responder(|_| Planned {
        delay_ms: 10,
        reply: Reply::status(200),
    });
    e.run_exchange(0, root_a, &checkout("RL-1", Some("a@example.com")))
        .unwrap();
    assert!(settle(&mut e, 10_000));
    let (root_b, ok) = e.start_root(0, &new).unwrap();
    assert!(ok);
    assert!(
        e.retire_root(0, root_a).unwrap(),
        "the old root is deleted at once (on_done returned true)"
    );
    e.run_exchange(0, root_b, &checkout("RL-2", Some("a@example.com")))
        .unwrap();
    assert!(settle(&mut e, 10_000));
    assert_clean(&e);
    let sh = e.shared();
    assert_eq!(sh.calls.len(), 2);
    assert_eq!(sh.calls[1].header(":path"), Some("/v2/conversions"));
    assert!(String::from_utf8_lossy(&sh.calls[1].body).contains("\"advertiser_id\":999"));
    drop(sh);
    assert_eq!(e.stat("capi.delivered"), 2);
    assert_eq!(e.stat("capi.queue_depth"), 0);
    assert_eq!(e.roots(0), vec![root_b]);
}

#[test]
fn an_invalid_new_configuration_is_refused_and_the_old_one_keeps_working() {
    let old = config(serde_json::json!({}));
    let (mut e, root_a) = envoy(&old);
    e.set_responder(|_| Planned {
        delay_ms: 10,
        reply: Reply::status(200),
    });
    let (_, ok) = e.start_root(0, br#"{"destination":{}}"#).unwrap();
    assert!(
        !ok,
        "on_configure must refuse it (Envoy then keeps the old configuration)"
    );
    assert!(
        e.log_lines()
            .iter()
            .any(|l| l.contains("invalid plugin configuration"))
    );
    e.run_exchange(0, root_a, &checkout("RL-3", Some("a@example.com")))
        .unwrap();
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.delivered"), 1);
    assert_clean(&e);
}

#[test]
fn streams_started_before_a_reload_finish_on_the_old_root() {
    let old = config(serde_json::json!({}));
    let new = config(serde_json::json!({ "destination": { "advertiser_id": 777 } }));
    let (mut e, root_a) = envoy(&old);
    e.set_responder(|_| Planned {
        delay_ms: 10,
        reply: Reply::status(200),
    });
    let ex = checkout("RL-4", Some("a@example.com"));
    let ctx = e.create_http(0, root_a).unwrap();
    e.request_headers(0, ctx, &ex.request_headers, false)
        .unwrap();
    e.request_body(0, ctx, &ex.request_body, true).unwrap();
    // The reload happens mid-stream.
    let (root_b, ok) = e.start_root(0, &new).unwrap();
    assert!(ok);
    e.response_headers(0, ctx, &ex.response_headers, false)
        .unwrap();
    e.response_body(0, ctx, &ex.response_body, false).unwrap();
    e.response_body(0, ctx, b"", true).unwrap();
    e.end_stream(0, ctx).unwrap();
    assert!(settle(&mut e, 10_000));
    e.retire_root(0, root_a).unwrap();
    e.run_exchange(0, root_b, &checkout("RL-5", Some("a@example.com")))
        .unwrap();
    assert!(settle(&mut e, 10_000));
    assert_clean(&e);
    let sh = e.shared();
    assert_eq!(sh.calls.len(), 2);
    assert!(String::from_utf8_lossy(&sh.calls[0].body).contains("\"advertiser_id\":12345"));
    assert!(String::from_utf8_lossy(&sh.calls[1].body).contains("\"advertiser_id\":777"));
}

/// Events the old root holds (queued, scheduled for retry, or in flight) when Envoy retires
/// it must still be delivered, or be dropped with a counted reason: none may vanish.
#[test]
fn reload_with_calls_in_flight_loses_no_event_silently() {
    let old = config(serde_json::json!({ "destination": { "timeout_ms": 30000 } }));
    let new = config(serde_json::json!({ "destination": { "advertiser_id": 999 } }));
    let (mut e, root_a) = envoy(&old);
    // Calls wait for the test: they are in flight during the reload.
    for i in 0..5 {
        e.run_exchange(
            0,
            root_a,
            &checkout(&format!("IF-{i}"), Some("a@example.com")),
        )
        .unwrap();
    }
    e.advance(5).unwrap();
    assert_eq!(e.pending_total(), 5);
    let (root_b, ok) = e.start_root(0, &new).unwrap();
    assert!(ok);
    e.retire_root(0, root_a).unwrap();
    // The destination answers whatever is still outstanding.
    for t in e.pending_tokens(0) {
        e.answer(0, t, Reply::status(200)).unwrap();
    }
    e.set_responder(|_| Planned {
        delay_ms: 10,
        reply: Reply::status(200),
    });
    assert!(settle(&mut e, 120_000));
    let _ = root_b;
    assert_clean(&e);
    let dropped: i64 = [
        "rejected",
        "auth_failed",
        "client_error",
        "attempts_exhausted",
        "max_age",
        "queue_full",
        "shutdown",
    ]
    .iter()
    .map(|r| e.stat(&format!("capi.dropped_{r}")))
    .sum();
    let accounted = e.stat("capi.delivered") + dropped;
    assert_eq!(
        accounted,
        e.stat("capi.events"),
        "{} events accepted, {} delivered or dropped: the rest vanished",
        e.stat("capi.events"),
        accounted
    );
}
