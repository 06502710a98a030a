//! Batching boundaries: a full batch leaves at once, a partial one after max_wait_ms, a batch
//! of one is a JSON object and more is an array, and a batch's answer settles all its events.

use capi_wasmtime_tests::sink;
use capi_wasmtime_tests::{Planned, Reply};

use crate::common::*;

fn cfg() -> Vec<u8> {
    config(
        serde_json::json!({ "destination": { "batch": { "max_events": 5, "max_wait_ms": 2000 } } }),
    )
}

fn push(e: &mut capi_wasmtime_tests::Envoy, root: u32, prefix: &str, n: usize) {
    for i in 0..n {
        e.run_exchange(
            0,
            root,
            &checkout(&format!("{prefix}-{i}"), Some("b@example.com")),
        )
        .unwrap();
    }
}

#[test]
fn a_partial_batch_waits_max_wait_then_goes() {
    let (mut e, root) = envoy(&cfg());
    e.set_responder(|_| Planned {
        delay_ms: 5,
        reply: Reply::status(200),
    });
    let t0 = e.now_ms();
    push(&mut e, root, "P", 4);
    e.advance(1999).unwrap();
    assert!(e.shared().calls.is_empty(), "a partial batch went early");
    e.advance(1).unwrap();
    let sh = e.shared();
    assert_eq!(sh.calls.len(), 1);
    assert_eq!(sh.calls[0].dispatched_at_ms - t0, 2000);
    assert_eq!(sink::event_ids(&sh.calls[0].body).len(), 4);
    assert!(sh.calls[0].body.starts_with(b"["));
}

#[test]
fn full_batches_are_cut_at_max_events_and_the_rest_waits_max_wait() {
    let (mut e, root) = envoy(&cfg());
    e.set_responder(|_| Planned {
        delay_ms: 5,
        reply: Reply::status(200),
    });
    let t0 = e.now_ms();
    push(&mut e, root, "F", 11);
    assert!(settle(&mut e, 10_000));
    let sh = e.shared();
    let sizes: Vec<usize> = sh
        .calls
        .iter()
        .map(|c| sink::event_ids(&c.body).len())
        .collect();
    assert_eq!(sizes, vec![5, 5, 1]);
    // Two full batches before the partial one, which waited max_wait_ms.
    assert!(sh.calls[0].dispatched_at_ms - t0 < 2000 && sh.calls[1].dispatched_at_ms - t0 < 2000);
    assert_eq!(sh.calls[2].dispatched_at_ms - t0, 2000);
    // A batch of one is one JSON object, as without batching; more is an array.
    assert!(sh.calls[0].body.starts_with(b"[") && sh.calls[2].body.starts_with(b"{"));
    drop(sh);
    assert_eq!(e.stat("capi.delivered"), 11);
    assert_eq!(e.stat("capi.requests"), 3);
    assert_eq!(e.stat("capi.sent"), 11);
    assert_clean(&e);
}

/// A full batch should leave at once, as a single event does without batching (the filter
/// kicks its tick to 1 ms after a push when the outbox says something is due).
#[test]
fn a_full_batch_leaves_at_once() {
    let (mut e, root) = envoy(&cfg());
    e.set_responder(|_| Planned {
        delay_ms: 5,
        reply: Reply::status(200),
    });
    let t0 = e.now_ms();
    e.advance(300).unwrap();
    push(&mut e, root, "AO", 5);
    e.advance(2).unwrap();
    let sh = e.shared();
    assert_eq!(
        sh.calls.len(),
        1,
        "the full batch did not leave within 2 ms"
    );
    assert!(sh.calls[0].dispatched_at_ms - t0 <= 301);
}

#[test]
fn a_batch_answer_settles_each_event_and_retries_spread() {
    let c = cfg();
    let (mut e, root) = envoy(&c);
    let mut n = 0;
    e.set_responder(move |_| {
        n += 1;
        Planned {
            delay_ms: 5,
            reply: if n == 1 {
                Reply::status(500)
            } else {
                Reply::status(200)
            },
        }
    });
    push(&mut e, root, "S", 5);
    assert!(settle(&mut e, 60_000));
    assert_clean(&e);
    let a = sink::audit(&e.shared(), &e.delivered, &parsed(&c).retry, 64, 2000);
    assert!(a.violations.is_empty(), "{:#?}", a.violations);
    assert_eq!(e.stat("capi.retried"), 5);
    assert_eq!(e.stat("capi.delivered"), 5);
    assert!(sink::delivered_twice(&a).is_empty());
}
