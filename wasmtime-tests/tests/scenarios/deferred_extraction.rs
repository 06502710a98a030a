//! A completed exchange is extracted on the root's next tick, not inside the callback that
//! passes the response's last bytes on: the client's response never waits for decoding,
//! parsing or hashing. The event still carries the completion time, and what waits for the
//! tick is bounded and counted.

use capi_wasmtime_tests::{Planned, Reply};

use crate::common::*;

#[test]
fn extraction_waits_for_the_tick_after_the_response() {
    let cfg = config(serde_json::json!({}));
    let (mut e, root) = envoy(&cfg);
    e.set_responder(|_| Planned {
        delay_ms: 5,
        reply: Reply::status(200),
    });
    let completed = e.now_ms();
    let ex = checkout("D-1", Some("d@example.com"));
    let r = e.run_exchange(0, root, &ex).unwrap();
    assert!(r.never_paused(), "{:?}", r.actions);
    assert_eq!(r.client_body, ex.response_body);
    // The exchange matched, but nothing was extracted while the response passed.
    assert_eq!(e.stat("capi.matched"), 1);
    assert_eq!(e.stat("capi.events"), 0);
    assert_eq!(e.stat("capi.queue_depth"), 0);
    assert!(e.shared().calls.is_empty());

    e.advance(1).unwrap();
    assert_eq!(e.stat("capi.events"), 1);
    let sh = e.shared();
    assert_eq!(sh.calls.len(), 1, "extracted and sent on the first tick");
    assert_eq!(sh.calls[0].dispatched_at_ms, completed + 1);
    let event: serde_json::Value = serde_json::from_slice(&sh.calls[0].body).unwrap();
    assert_eq!(
        event["timestamp"],
        capi_core::time::format_iso8601(completed),
        "the event's time is the response's completion, not the tick's"
    );
    drop(sh);
    assert!(settle(&mut e, 1000));
    assert_clean(&e);
}

#[test]
fn exchanges_waiting_for_the_tick_are_bounded_and_the_rest_counted() {
    let cfg = config(serde_json::json!({ "limits": { "queue_capacity": 1000 } }));
    let (mut e, root) = envoy(&cfg);
    e.set_responder(|_| Planned {
        delay_ms: 1,
        reply: Reply::status(200),
    });
    // 300 responses complete before the worker gets back to its timers.
    for i in 0..300 {
        let r = e
            .run_exchange(0, root, &checkout(&format!("W-{i}"), Some("w@example.com")))
            .unwrap();
        assert!(r.never_paused());
    }
    assert_eq!(e.stat("capi.matched"), 300);
    assert_eq!(e.stat("capi.dropped_queue_full"), 300 - 256);
    let logs = e.log_lines();
    let full: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("wait for extraction"))
        .collect();
    assert_eq!(full.len(), 300 - 256, "one line per exchange let go");
    assert!(logs.iter().all(|l| !l.contains("w@example.com")));

    e.advance(1).unwrap();
    assert_eq!(
        e.stat("capi.events"),
        256,
        "the 256 that waited are all extracted"
    );
    // Room again after the tick.
    e.run_exchange(0, root, &checkout("W-last", Some("w@example.com")))
        .unwrap();
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.events"), 257);
    assert_eq!(e.stat("capi.delivered"), 257);
    assert_eq!(e.stat("capi.dropped_queue_full"), 300 - 256);
    assert_clean(&e);
}
