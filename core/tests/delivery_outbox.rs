//! The outbox: bounded queue, dedup window, batching, and retries by the caller's clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use capi_core::config::{Batch, EXAMPLE_CONFIG, Limits, Retry};
use capi_core::outbox::{Outbox, OutboxConfig};
use capi_core::{Answer, ConversionEvent, DeliveryPlan, DropReason, PluginConfig, collect_event};

fn event(order: &str) -> ConversionEvent {
    let c = PluginConfig::from_json(EXAMPLE_CONFIG.as_bytes()).unwrap();
    let body = format!(
        r#"{{"conversion_type":"Purchase","order_id":"{order}","value":1,"email":"a@b.co"}}"#
    );
    collect_event(&c, body.as_bytes(), &[], None, 0)
        .unwrap()
        .event
}

fn cfg(queue: usize, max_events: usize, max_wait_ms: i64) -> OutboxConfig {
    OutboxConfig {
        retry: Retry {
            max_attempts: 3,
            max_age_ms: 10_000,
            base_backoff_ms: 100,
            max_backoff_ms: 1000,
        },
        batch: Batch {
            max_events,
            max_wait_ms,
        },
        limits: Limits {
            max_body_bytes: 1 << 20,
            queue_capacity: queue,
            dedup_window_ms: 1000,
            dedup_capacity: 100,
        },
        max_in_flight: 8,
    }
}

fn send(o: &mut Outbox, now: i64) -> Option<(u64, Vec<String>)> {
    o.poll_transmit(now, |evs: &[ConversionEvent]| {
        Ok::<_, ()>(evs.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>())
    })
    .map(|r| r.unwrap())
}

const OK: Answer<'static> = Answer::Http {
    status: 200,
    retry_after: None,
    body: b"",
};

#[test]
fn delivers_once_and_counts() {
    let mut o = Outbox::new(cfg(10, 1, 0));
    o.push(event("1"), 0).unwrap();
    let (id, ids) = send(&mut o, 0).unwrap();
    assert_eq!(ids.len(), 1);
    assert!(send(&mut o, 0).is_none(), "nothing else to send");
    let settled = o.on_answer(id, &OK, 5, 0);
    assert_eq!(settled[0].plan, DeliveryPlan::Delivered);
    assert_eq!(o.depth(), 0);
    let c = o.counters();
    assert_eq!((c.enqueued, c.sent, c.delivered, c.requests), (1, 1, 1, 1));
    assert!(
        o.on_answer(id, &OK, 6, 0).is_empty(),
        "a second answer for the same request is ignored"
    );
}

#[test]
fn duplicates_within_the_window_are_dropped_and_counted() {
    let mut o = Outbox::new(cfg(10, 1, 0));
    o.push(event("1"), 0).unwrap();
    assert_eq!(o.push(event("1"), 999), Err(DropReason::Duplicate));
    o.push(event("1"), 1000).unwrap();
    assert_eq!(o.counters().dropped_duplicate, 1);
}

#[test]
fn queue_is_bounded_and_counts_what_it_drops() {
    let mut o = Outbox::new(cfg(3, 1, 0));
    for i in 0..3 {
        o.push(event(&i.to_string()), 0).unwrap();
    }
    assert_eq!(o.push(event("x"), 0), Err(DropReason::QueueFull));
    // In-flight events still count against the cap.
    let _ = send(&mut o, 0).unwrap();
    assert_eq!(o.push(event("y"), 0), Err(DropReason::QueueFull));
    assert_eq!(o.counters().dropped_queue_full, 2);
    assert_eq!(o.depth(), 3);
}

#[test]
fn retries_follow_the_plan_by_the_callers_clock() {
    let mut o = Outbox::new(cfg(10, 1, 0));
    o.push(event("1"), 0).unwrap();
    let (id, _) = send(&mut o, 0).unwrap();
    let busy = Answer::Http {
        status: 429,
        retry_after: Some("2"),
        body: b"",
    };
    let s = o.on_answer(id, &busy, 100, 7);
    assert_eq!(s[0].plan, DeliveryPlan::RetryAt(2100));
    assert_eq!(o.next_wakeup(), Some(2100));
    assert!(send(&mut o, 2099).is_none(), "not before Retry-After");
    let (id, _) = send(&mut o, 2100).unwrap();
    let s = o.on_answer(id, &Answer::Timeout, 2200, 50);
    let DeliveryPlan::RetryAt(at) = s[0].plan else {
        panic!("{:?}", s[0].plan)
    };
    assert!(
        (2200..=2200 + 200).contains(&at),
        "full jitter under base*2: {at}"
    );
    let (id, _) = send(&mut o, at).unwrap();
    let s = o.on_answer(id, &Answer::ConnectFailed, at + 1, 0);
    assert_eq!(
        s[0].plan,
        DeliveryPlan::Drop {
            reason: DropReason::AttemptsExhausted,
            detail: None
        }
    );
    let c = o.counters();
    assert_eq!(
        (c.sent, c.retried, c.dropped_attempts_exhausted, c.delivered),
        (3, 2, 1, 0)
    );
    assert_eq!(o.depth(), 0);
}

#[test]
fn rejected_and_auth_failures_are_not_retried() {
    let mut o = Outbox::new(cfg(10, 1, 0));
    o.push(event("1"), 0).unwrap();
    o.push(event("2"), 0).unwrap();
    let (a, _) = send(&mut o, 0).unwrap();
    let (b, _) = send(&mut o, 0).unwrap();
    let s = o.on_answer(
        a,
        &Answer::Http {
            status: 400,
            retry_after: None,
            body: br#"{"message":"bad currency"}"#,
        },
        1,
        0,
    );
    assert_eq!(
        s[0].plan,
        DeliveryPlan::Drop {
            reason: DropReason::Rejected,
            detail: Some("bad currency".into())
        }
    );
    let s = o.on_answer(
        b,
        &Answer::Http {
            status: 401,
            retry_after: None,
            body: b"",
        },
        1,
        0,
    );
    assert!(matches!(
        s[0].plan,
        DeliveryPlan::Drop {
            reason: DropReason::AuthFailed,
            ..
        }
    ));
    assert_eq!(o.next_wakeup(), None);
    assert!(send(&mut o, 1_000_000).is_none());
}

#[test]
fn batches_fill_up_or_time_out() {
    let mut o = Outbox::new(cfg(100, 3, 50));
    o.push(event("1"), 0).unwrap();
    o.push(event("2"), 10).unwrap();
    assert!(send(&mut o, 20).is_none(), "waits for a fuller batch");
    assert_eq!(o.next_wakeup(), Some(50));
    o.push(event("3"), 30).unwrap();
    o.push(event("4"), 30).unwrap();
    assert_eq!(
        o.next_wakeup(),
        Some(0),
        "a full batch is due now, not at max_wait_ms"
    );
    let (_, ids) = send(&mut o, 30).unwrap();
    assert_eq!(ids.len(), 3, "a full batch goes at once");
    assert!(send(&mut o, 79).is_none());
    let (_, ids) = send(&mut o, 80).unwrap();
    assert_eq!(
        ids.len(),
        1,
        "a partial batch goes when its oldest event has waited max_wait_ms"
    );
}

#[test]
fn a_failed_build_keeps_the_events() {
    let mut o = Outbox::new(cfg(10, 2, 0));
    o.push(event("1"), 0).unwrap();
    o.push(event("2"), 0).unwrap();
    let r = o.poll_transmit(0, |_evs: &[ConversionEvent]| Err::<(), _>("no secret"));
    assert_eq!(r, Some(Err("no secret")));
    let (_, ids) = send(&mut o, 0).unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(o.counters().requests, 1);
}

#[test]
fn dedup_window_is_capped() {
    let mut c = cfg(1000, 1, 0);
    c.limits.dedup_capacity = 5;
    let mut o = Outbox::new(c);
    for i in 0..8 {
        o.push(event(&i.to_string()), 0).unwrap();
    }
    assert_eq!(o.counters().dedup_evicted, 3);
    // The oldest ids were forgotten, the newest still block.
    assert!(o.push(event("0"), 1).is_ok());
    assert_eq!(o.push(event("7"), 1), Err(DropReason::Duplicate));
}
