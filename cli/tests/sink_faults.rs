//! The sink's fault injection, and `capi send` retrying through it: every fault is survived
//! and the event arrives exactly once.
// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct Setup {
    _dir: std::path::PathBuf,
    sink: Server,
    config: std::path::PathBuf,
    event: std::path::PathBuf,
}

fn setup(name: &str, faults: &[&str], edit: impl FnOnce(&mut Value)) -> Setup {
    let dir = tmp_dir(name);
    let mut args = Vec::new();
    for f in faults {
        args.push("--fault");
        args.push(*f);
    }
    let sink = spawn_sink(&dir, true, &args);
    let config = write_config(&dir, &format!("{}/v1/conversions", sink.url), |v| {
        v["auth"] = json!({});
        edit(v);
    });
    let event = write_event(&dir, EVENT);
    Setup {
        _dir: dir,
        sink,
        config,
        event,
    }
}

impl Setup {
    fn send(&self) -> Output {
        let ca = self.sink.ca.clone().unwrap();
        capi(
            &[
                "send",
                "--config",
                self.config.to_str().unwrap(),
                "--event",
                self.event.to_str().unwrap(),
                "--ca",
                ca.to_str().unwrap(),
            ],
            None,
            &[],
        )
    }

    fn assert_delivered_once(&self, out: &Output, attempts: usize) {
        assert_eq!(
            out.code, 0,
            "stdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        let plural = if attempts == 1 { "" } else { "s" };
        assert!(
            out.stdout
                .contains(&format!("delivered after {attempts} attempt{plural}")),
            "{}",
            out.stdout
        );
        let events = self.sink.events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0]["ids"][0]["id"], JANE_EMAIL_SHA);
        assert_eq!(self.sink.stats()["accepted_events"], 1);
    }
}

#[test]
fn retry_after_on_429_is_honored() {
    let s = setup("fault-429", &["status=429,retry_after=1,first=1"], |_| {});
    let t = Instant::now();
    let out = s.send();
    s.assert_delivered_once(&out, 2);
    assert!(
        out.stdout.contains("attempt 1: HTTP 429 (Retry-After: 1)"),
        "{}",
        out.stdout
    );
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    let wait: i64 = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("retrying in "))
        .unwrap()
        .trim_end_matches(" ms")
        .parse()
        .unwrap();
    assert!((800..=1000).contains(&wait), "{wait}");
}

#[test]
fn first_two_503s_are_retried() {
    let s = setup("fault-503", &["status=503,first=2"], |_| {});
    let out = s.send();
    s.assert_delivered_once(&out, 3);
    assert_eq!(out.stdout.matches("HTTP 503").count(), 2, "{}", out.stdout);
    let stats = s.sink.stats();
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["by_status"], json!({"200": 1, "503": 2}));
}

#[test]
fn dropped_connections_are_retried() {
    let s = setup("fault-drop", &["drop,first=2"], |_| {});
    let out = s.send();
    s.assert_delivered_once(&out, 3);
    assert_eq!(
        out.stdout.matches("connection failed").count(),
        2,
        "{}",
        out.stdout
    );
    assert_eq!(s.sink.stats()["dropped"], 2);
}

#[test]
fn a_slow_answer_times_out_is_retried_and_arrives_once() {
    let s = setup("fault-delay", &["delay=1500,first=1"], |v| {
        v["destination"]["timeout_ms"] = 500.into()
    });
    let t = Instant::now();
    let out = s.send();
    s.assert_delivered_once(&out, 2);
    assert!(
        out.stdout.contains("attempt 1: timed out after 500 ms"),
        "{}",
        out.stdout
    );
    // Past the point where the delayed first request would have been answered: the sink
    // dropped it with the connection, so the event is still there once.
    std::thread::sleep(Duration::from_millis(1800).saturating_sub(t.elapsed()));
    assert_eq!(s.sink.events().len(), 1);
}

#[test]
fn delay_alone_only_slows_the_answer() {
    let s = setup("fault-slow", &["delay=300"], |_| {});
    let t = Instant::now();
    let out = s.send();
    s.assert_delivered_once(&out, 1);
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[test]
fn persistent_failure_exhausts_attempts() {
    let s = setup("fault-always", &["status=500"], |v| {
        v["retry"]["max_attempts"] = 3.into()
    });
    let out = s.send();
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("dropped after 3 attempts: attempts_exhausted"),
        "{}",
        out.stdout
    );
    assert_eq!(s.sink.stats()["by_status"], json!({"500": 3}));
    assert!(s.sink.events().is_empty());
}

fn valid_event() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "advertiser_id": 7, "data_source_key": "k", "conversion_type": "Lead", "event_id": "f",
        "ids": [{"id": "14155552671", "name": "Phone"}], "timestamp": "2026-01-01T00:00:00Z", "currency": "USD"
    }))
    .unwrap()
}

fn post_status(sink: &Server) -> Option<u16> {
    let req = format!(
        "POST /v1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        valid_event().len()
    );
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(&valid_event());
    let raw = raw_exchange(sink.port, sink.ca.as_deref(), &bytes);
    if raw.is_empty() {
        None
    } else {
        Some(parse_response(raw).status)
    }
}

#[test]
fn first_applicable_fault_wins_and_admin_replaces_the_list() {
    let dir = tmp_dir("fault-admin");
    let sink = spawn_sink(
        &dir,
        false,
        &[
            "--fault",
            "status=500,first=1",
            "--fault",
            "status=503,first=1",
        ],
    );
    let seq: Vec<_> = (0..3).map(|_| post_status(&sink)).collect();
    assert_eq!(seq, vec![Some(500), Some(503), Some(200)]);

    // Admin requests are never faulted.
    sink.set_fault("drop");
    assert_eq!(sink.stats()["faults"], json!(["drop"]));
    assert_eq!(post_status(&sink), None);
    sink.set_fault("status=429,retry_after=7");
    let r = sink.request(
        "POST",
        "/v1",
        &[("content-type", "application/json")],
        &valid_event(),
    );
    assert_eq!((r.status, r.header("retry-after")), (429, Some("7")));
    let r = sink.request("POST", "/_sink/fault", &[], b"status=abc");
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("status")
    );
    assert_eq!(
        post_status(&sink),
        Some(429),
        "a bad spec leaves the list as it was"
    );
    sink.set_fault("");
    assert_eq!(post_status(&sink), Some(200));
    assert_eq!(sink.events().len(), 2);
}

#[test]
fn fraction_is_deterministic_per_seed() {
    let dir = tmp_dir("fault-fraction");
    let pattern = |seed: &str| {
        let sink = spawn_sink(
            &dir,
            false,
            &["--fault", &format!("status=503,fraction=0.5,seed={seed}")],
        );
        (0..24)
            .map(|_| post_status(&sink) == Some(503))
            .collect::<Vec<_>>()
    };
    let a = pattern("7");
    assert_eq!(a, pattern("7"));
    assert_ne!(a, pattern("8"));
    let hits = a.iter().filter(|x| **x).count();
    assert!((4..=20).contains(&hits), "{hits} of 24");
}
