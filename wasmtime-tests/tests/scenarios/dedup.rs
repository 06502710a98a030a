//! The dedup window: the same order within the window is sent once; after the window it is
//! sent again; past the capacity the oldest ids are forgotten, counted.

use capi_wasmtime_tests::{Planned, Reply};

use crate::common::*;

#[test]
fn same_order_within_the_window_is_sent_once() {
    let cfg = config(serde_json::json!({ "limits": { "dedup_window_ms": 10000 } }));
    let (mut e, root) = envoy(&cfg);
    e.set_responder(|_| Planned {
        delay_ms: 5,
        reply: Reply::status(200),
    });
    e.run_exchange(0, root, &checkout("DUP-1", Some("a@example.com")))
        .unwrap();
    e.advance(3000).unwrap();
    // Another email, same order: same event_id (order-based).
    e.run_exchange(0, root, &checkout("DUP-1", Some("other@example.com")))
        .unwrap();
    e.advance(6000).unwrap();
    assert_eq!(e.shared().calls.len(), 1);
    assert_eq!(e.stat("capi.dropped_duplicate"), 1);
    // 10 s after the first sighting the window has passed.
    e.advance(2000).unwrap();
    e.run_exchange(0, root, &checkout("DUP-1", Some("a@example.com")))
        .unwrap();
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.shared().calls.len(), 2);
    assert_eq!(e.stat("capi.dropped_duplicate"), 1);
    assert_clean(&e);
}

#[test]
fn a_retried_event_is_not_a_duplicate() {
    let cfg =
        config(serde_json::json!({ "retry": { "base_backoff_ms": 10, "max_backoff_ms": 10 } }));
    let (mut e, root) = envoy(&cfg);
    let mut n = 0;
    e.set_responder(move |_| {
        n += 1;
        Planned {
            delay_ms: 5,
            reply: if n < 3 {
                Reply::status(503)
            } else {
                Reply::status(200)
            },
        }
    });
    e.run_exchange(0, root, &checkout("RT-1", Some("a@example.com")))
        .unwrap();
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.shared().calls.len(), 3);
    assert_eq!(e.stat("capi.dropped_duplicate"), 0);
    assert_eq!(e.stat("capi.delivered"), 1);
}

#[test]
fn capacity_forgets_the_oldest_and_counts_it() {
    let cfg = config(serde_json::json!({ "limits": { "dedup_capacity": 3 } }));
    let (mut e, root) = envoy(&cfg);
    e.set_responder(|_| Planned {
        delay_ms: 5,
        reply: Reply::status(200),
    });
    for i in 0..5 {
        e.run_exchange(
            0,
            root,
            &checkout(&format!("CAP-{i}"), Some("a@example.com")),
        )
        .unwrap();
        e.advance(10).unwrap();
    }
    assert_eq!(e.stat("capi.dedup_evicted"), 2);
    // CAP-0 was forgotten: accepted again. CAP-4 is remembered: a duplicate.
    e.run_exchange(0, root, &checkout("CAP-0", Some("a@example.com")))
        .unwrap();
    e.run_exchange(0, root, &checkout("CAP-4", Some("a@example.com")))
        .unwrap();
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.shared().calls.len(), 6);
    assert_eq!(e.stat("capi.dropped_duplicate"), 1);
    assert_clean(&e);
}
