//! 10,000 checkouts against a destination that answers at random (seeded) after random
//! delays: every event is delivered exactly once or dropped for a reason its answers explain
//! and a counter counts; retries keep to the policy by the virtual clock.

use std::collections::BTreeSet;

use capi_wasmtime_tests::sink::{self, Fate, Mix};
use capi_wasmtime_tests::{Exchange, Rng};

use crate::common::*;

const SEED: u64 = 0x00C0_FFEE;

fn bad_currency(order: &str) -> Exchange {
    let mut ex = checkout(order, Some("x@example.com"));
    ex.response_body = serde_json::to_vec(&serde_json::json!({ "order": { "id": order, "total": "1.00", "currency": "EURO" }, "customer": { "email": "x@example.com" } })).unwrap();
    ex
}

#[test]
fn ten_thousand_checkouts_are_each_delivered_once_or_dropped_with_a_reason() {
    let cfg = config(serde_json::json!({
        "limits": { "queue_capacity": 20000 },
        "retry": { "max_attempts": 5, "max_age_ms": 120000, "base_backoff_ms": 200, "max_backoff_ms": 5000 }
    }));
    let (mut e, root) = envoy(&cfg);
    e.set_responder(sink::responder(SEED, Mix::realistic()));
    let mut rng = Rng::new(SEED ^ 1);
    let mut expected = BTreeSet::new();
    let mut orders: Vec<String> = Vec::new();
    let (mut duplicates, mut invalid) = (0i64, 0i64);
    for i in 0..10_000 {
        let ex = if rng.chance(1) {
            invalid += 1;
            bad_currency(&format!("BAD-{i}"))
        } else if !orders.is_empty() && rng.chance(2) {
            duplicates += 1;
            let o = rng.pick(&orders).cloned().unwrap();
            checkout(&o, Some("dup@example.com"))
        } else {
            let o = format!("O-{i}");
            expected.insert(order_event_id(&cfg, &o));
            orders.push(o.clone());
            checkout(&o, Some(&format!("user{}@example.com", rng.below(5000))))
        };
        let r = e.run_exchange(0, root, &ex).unwrap();
        assert!(r.never_paused());
        assert_eq!(r.client_body, ex.response_body);
        e.advance(rng.range(0, 40)).unwrap();
    }
    assert!(
        settle(&mut e, 4 * 3_600_000),
        "did not settle: {} pending",
        e.pending_total()
    );
    assert_clean(&e);

    let c = parsed(&cfg);
    let a = sink::audit(&e.shared(), &e.delivered, &c.retry, 64, 0);
    assert!(
        a.violations.is_empty(),
        "{} violations, first: {:#?}",
        a.violations.len(),
        &a.violations[..a.violations.len().min(20)]
    );
    assert!(sink::delivered_twice(&a).is_empty());
    let sent: BTreeSet<String> = a.fates.keys().cloned().collect();
    assert_eq!(
        sent, expected,
        "every accepted event was sent, and only those"
    );
    assert_eq!(a.count(&Fate::Pending), 0);

    let stat = |n: &str| e.stat(n);
    assert_eq!(stat("capi.events"), expected.len() as i64);
    assert_eq!(stat("capi.dropped_duplicate"), duplicates);
    assert_eq!(stat("capi.extract_failed"), invalid);
    assert_eq!(stat("capi.delivered"), a.count(&Fate::Delivered) as i64);
    for reason in [
        "rejected",
        "auth_failed",
        "client_error",
        "attempts_exhausted",
        "max_age",
    ] {
        assert_eq!(
            stat(&format!("capi.dropped_{reason}")),
            a.count(&Fate::Dropped(reason)) as i64,
            "{reason}"
        );
    }
    let dropped: i64 = [
        "rejected",
        "auth_failed",
        "client_error",
        "attempts_exhausted",
        "max_age",
    ]
    .iter()
    .map(|r| stat(&format!("capi.dropped_{r}")))
    .sum();
    assert_eq!(
        stat("capi.delivered") + dropped,
        stat("capi.events"),
        "accounting"
    );
    assert_eq!(stat("capi.queue_depth"), 0);
    assert!(
        a.retries_checked > 1000,
        "only {} retries",
        a.retries_checked
    );
    eprintln!(
        "10k: {} events, {} calls, {} delivered, {} dropped, {} retries checked ({} on time), peak in flight {}",
        expected.len(),
        e.shared().calls.len(),
        stat("capi.delivered"),
        dropped,
        a.retries_checked,
        a.retries_on_time,
        a.max_in_flight
    );
}
