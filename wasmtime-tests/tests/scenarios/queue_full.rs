//! A full queue drops new events with a counter, never holds more than its capacity, and
//! takes events again once it drains.

use capi_wasmtime_tests::Reply;

use crate::common::*;

#[test]
fn queue_full_drops_and_counts_and_recovers() {
    let cfg = config(
        serde_json::json!({ "limits": { "queue_capacity": 5 }, "destination": { "timeout_ms": 60000 } }),
    );
    let (mut e, root) = envoy(&cfg);
    // No responder: calls wait for the test.
    for i in 0..20 {
        e.run_exchange(0, root, &checkout(&format!("Q-{i}"), Some("q@example.com")))
            .unwrap();
        e.advance(2).unwrap();
        assert!(e.stat("capi.queue_depth") <= 5);
    }
    assert_eq!(e.stat("capi.events"), 5);
    assert_eq!(e.stat("capi.dropped_queue_full"), 15);
    assert_eq!(e.pending_tokens(0).len(), 5);
    for t in e.pending_tokens(0) {
        e.answer(0, t, Reply::status(200)).unwrap();
    }
    assert_eq!(e.stat("capi.delivered"), 5);
    assert_eq!(e.stat("capi.queue_depth"), 0);
    e.run_exchange(0, root, &checkout("Q-after", Some("q@example.com")))
        .unwrap();
    e.advance(5).unwrap();
    assert_eq!(e.stat("capi.events"), 6);
    assert!(e.log_lines().iter().any(|l| l.contains("queue_full")));
    assert_clean(&e);
}
