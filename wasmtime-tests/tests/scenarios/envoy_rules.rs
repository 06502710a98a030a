//! The Envoy behaviours the host mirrors, seen through the filter: an unknown cluster makes
//! `dispatch_http_call` fail with BadArgument, a call that times out comes back as a 504, a
//! reset comes back with no headers, and one VM runs per worker thread.

use capi_wasmtime_tests::{EnvoyOptions, Planned, Reply};

use crate::common::*;

#[test]
fn unknown_cluster_is_a_counted_dispatch_failure() {
    let cfg = config(serde_json::json!({
        "destination": { "envoy_cluster": "not_in_envoy" },
        "retry": { "max_attempts": 3, "base_backoff_ms": 100, "max_backoff_ms": 400 }
    }));
    let (mut e, root) = envoy(&cfg);
    e.run_exchange(0, root, &checkout("UC-1", Some("a@b.co")))
        .unwrap();
    assert!(settle(&mut e, 60_000));
    assert_clean(&e);
    let sh = e.shared();
    assert!(sh.calls.is_empty());
    assert_eq!(
        sh.rejected_calls.len(),
        3,
        "one refused dispatch per attempt"
    );
    assert!(
        sh.rejected_calls
            .iter()
            .all(|(c, s)| c.cluster == "not_in_envoy" && *s == 2)
    );
    drop(sh);
    assert_eq!(e.stat("capi.dispatch_failed"), 3);
    assert_eq!(e.stat("capi.dropped_attempts_exhausted"), 1);
}

#[test]
fn a_timed_out_call_answers_504_at_the_timeout() {
    let cfg = config(serde_json::json!({
        "destination": { "timeout_ms": 250 },
        "retry": { "max_attempts": 2, "base_backoff_ms": 100, "max_backoff_ms": 100 }
    }));
    let (mut e, root) = envoy(&cfg);
    e.set_responder(|_| Planned {
        delay_ms: 0,
        reply: Reply::Hang,
    });
    e.run_exchange(0, root, &checkout("TO-1", Some("a@b.co")))
        .unwrap();
    assert!(settle(&mut e, 60_000));
    assert_clean(&e);
    let sh = e.shared();
    assert_eq!(sh.calls.len(), 2);
    for (i, d) in e.delivered.iter().enumerate() {
        assert!(d.timed_out);
        assert_eq!(d.status, Some(504));
        assert_eq!(
            d.at_ms - sh.calls[d.call_index].dispatched_at_ms,
            250,
            "answer {i}"
        );
    }
    drop(sh);
    assert_eq!(e.stat("capi.retried"), 1);
    assert_eq!(e.stat("capi.dropped_attempts_exhausted"), 1);
}

#[test]
fn a_reset_is_a_connection_failure() {
    let cfg = config(
        serde_json::json!({ "retry": { "max_attempts": 2, "base_backoff_ms": 10, "max_backoff_ms": 10 } }),
    );
    let (mut e, root) = envoy(&cfg);
    let mut n = 0;
    e.set_responder(move |_| {
        n += 1;
        Planned {
            delay_ms: 3,
            reply: if n == 1 {
                Reply::Reset
            } else {
                Reply::status(200)
            },
        }
    });
    e.run_exchange(0, root, &checkout("RS-1", Some("a@b.co")))
        .unwrap();
    assert!(settle(&mut e, 10_000));
    assert_clean(&e);
    assert_eq!(e.shared().calls.len(), 2);
    assert_eq!(e.stat("capi.retried"), 1);
    assert_eq!(e.stat("capi.delivered"), 1);
}

#[test]
fn one_vm_per_worker_shares_stats_and_dedup() {
    let cfg = config(serde_json::json!({}));
    let mut e = capi_wasmtime_tests::Envoy::new(filter(), EnvoyOptions::default()).unwrap();
    let workers = 3;
    let mut roots = Vec::new();
    for _ in 0..workers {
        let vm = e.add_vm().unwrap();
        let (root, ok) = e.start_root(vm, &cfg).unwrap();
        assert!(ok);
        roots.push((vm, root));
    }
    e.set_responder(|_| Planned {
        delay_ms: 10,
        reply: Reply::status(200),
    });
    for i in 0..30 {
        let (vm, root) = roots[i % workers];
        e.run_exchange(
            vm,
            root,
            &checkout(&format!("W-{i}"), Some("w@example.com")),
        )
        .unwrap();
    }
    assert!(settle(&mut e, 10_000));
    assert_clean(&e);
    let sh = e.shared();
    assert_eq!(sh.calls.len(), 30);
    for vm in 0..workers {
        assert_eq!(
            sh.calls.iter().filter(|c| c.vm == vm).count(),
            10,
            "each worker delivers its own events"
        );
    }
    drop(sh);
    // Stats are Envoy-wide: the three VMs' counters add up.
    assert_eq!(e.stat("capi.delivered"), 30);
    assert_eq!(e.stat("capi.events"), 30);
    // Dedup is shared (Envoy's shared data): the same order on two workers goes out once.
    e.run_exchange(0, roots[0].1, &checkout("SAME", Some("w@example.com")))
        .unwrap();
    e.run_exchange(1, roots[1].1, &checkout("SAME", Some("w@example.com")))
        .unwrap();
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.delivered"), 31);
    assert_eq!(e.stat("capi.dropped_duplicate"), 1);
    let sh = e.shared();
    let claims = sh
        .shared_data
        .keys()
        .filter(|k| k.starts_with(b"capi.dedup."))
        .count();
    assert_eq!(claims, 31, "one slot per event id, nothing else");
}
