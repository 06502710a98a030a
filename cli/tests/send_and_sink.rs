//! `capi send` against a real `capi sink` (TLS with its generated CA, and plain http on
//! loopback), and the sink's own validation of what it receives.
// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "tok_test_9f8e7d6c5b4a";
const HMAC: &str = "hmac-test-secret-1234";

fn valid_event(event_id: &str) -> Value {
    json!({
        "advertiser_id": 42,
        "data_source_key": "web",
        "conversion_type": "Purchase",
        "event_id": event_id,
        "ids": [{"id": JANE_EMAIL_SHA, "name": "HashedEmail"}],
        "timestamp": "2026-01-01T00:00:00.000Z",
        "value": 10.0,
        "currency": "USD"
    })
}

#[test]
fn send_over_tls_delivers_and_the_sink_records_the_event() {
    let dir = tmp_dir("send-tls");
    let record = dir.join("events.jsonl");
    let sink = spawn_sink(
        &dir,
        true,
        &[
            "--token",
            TOKEN,
            "--hmac-secret",
            HMAC,
            "--record",
            record.to_str().unwrap(),
        ],
    );
    let ca = sink.ca.clone().unwrap();
    assert!(
        ca.exists() && dir.join("certs/cert.pem").exists() && dir.join("certs/key.pem").exists()
    );
    let config = write_config(
        &dir,
        &format!("{}/v1/conversions", localhost(&sink.url)),
        |v| {
            v["auth"] = json!({"bearer_token_env": "CAPI_TEST_TOKEN", "hmac": {"secret_env": "CAPI_TEST_HMAC"}});
        },
    );
    let event = write_event(&dir, EVENT);
    let out = capi(
        &[
            "send",
            "--config",
            config.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
            "--ca",
            ca.to_str().unwrap(),
        ],
        None,
        &[("CAPI_TEST_TOKEN", TOKEN), ("CAPI_TEST_HMAC", HMAC)],
    );
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.contains("attempt 1: HTTP 200"), "{}", out.stdout);
    assert!(
        out.stdout.contains("delivered after 1 attempt"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(TOKEN) && !out.stdout.contains(HMAC));

    let events = sink.events();
    assert_eq!(events.len(), 1);
    let ev = &events[0];
    assert_eq!(
        ev["ids"],
        json!([{"id": JANE_EMAIL_SHA, "name": "HashedEmail"}, {"id": JANE_PHONE_SHA, "name": "HashedPhone"}])
    );
    assert_eq!(ev["order_id"], "A-1");
    assert_eq!(ev["currency"], "EUR");
    assert_eq!(ev["value"], 12.5);
    assert_eq!(ev["advertiser_id"], 12345);

    let recorded = std::fs::read_to_string(&record).unwrap();
    assert_eq!(recorded.lines().count(), 1);
    assert_eq!(
        serde_json::from_str::<Value>(recorded.lines().next().unwrap()).unwrap(),
        *ev
    );

    let stats = sink.stats();
    assert_eq!(
        (
            stats["requests"].as_u64(),
            stats["accepted_events"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(stats["by_status"], json!({"200": 1}));

    let log = sink.stderr();
    assert!(log.contains("POST /v1/conversions 200 events=1"), "{log}");
    for secret in [TOKEN, HMAC, "Jane@Example.com", JANE_EMAIL_SHA] {
        assert!(!log.contains(secret), "sink log leaks {secret}: {log}");
    }
}

#[test]
fn auth_failures_and_rejections_are_not_retried() {
    let dir = tmp_dir("send-noretry");
    let sink = spawn_sink(&dir, true, &["--token", TOKEN]);
    let ca = sink.ca.clone().unwrap();
    let config = write_config(&dir, &format!("{}/v1/conversions", sink.url), |_| {});
    let event = write_event(&dir, EVENT);
    let send = |token: &str| {
        capi(
            &[
                "send",
                "--config",
                config.to_str().unwrap(),
                "--event",
                event.to_str().unwrap(),
                "--ca",
                ca.to_str().unwrap(),
            ],
            None,
            &[("CAPI_TEST_TOKEN", token)],
        )
    };
    let out = send("wrong-token");
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("attempt 1: HTTP 401"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("dropped after 1 attempt: auth_failed (missing or invalid bearer token)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("attempt 2"));
    assert_eq!(sink.stats()["requests"], 1);

    sink.request("POST", "/_sink/reset", &[], b"");
    sink.set_fault("status=400");
    let out = send(TOKEN);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("attempt 1: HTTP 400")
            && out.stdout.contains("dropped after 1 attempt: rejected"),
        "{}",
        out.stdout
    );
    assert_eq!(sink.stats()["requests"], 1);
    assert!(sink.events().is_empty());
}

#[test]
fn plain_http_on_loopback_and_stdin() {
    let dir = tmp_dir("send-http");
    let sink = spawn_sink(&dir, false, &[]);
    assert!(sink.url.starts_with("http://127.0.0.1:"));
    let config = write_config(&dir, &format!("{}/collect", sink.url), |v| {
        v["auth"] = json!({})
    });
    let out = capi(
        &["send", "--config", config.to_str().unwrap(), "--event", "-"],
        Some(EVENT.as_bytes()),
        &[],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(sink.events().len(), 1);

    // Plain http is refused unless the config allows it for loopback.
    let config = write_config(&dir, &format!("{}/collect", sink.url), |v| {
        v["auth"] = json!({});
        v["destination"]["allow_http_loopback"] = false.into();
    });
    let line = capi(
        &["send", "--config", config.to_str().unwrap(), "--event", "-"],
        Some(EVENT.as_bytes()),
        &[],
    )
    .assert_bad_input()
    .to_owned();
    assert!(line.contains("destination.url"), "{line}");
    assert_eq!(sink.events().len(), 1);
}

#[test]
fn unreachable_destination_is_retried_then_dropped() {
    let dir = tmp_dir("send-unreachable");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = write_config(&dir, &format!("https://127.0.0.1:{port}/v1"), |v| {
        v["auth"] = json!({});
        v["retry"]["max_attempts"] = 3.into();
    });
    let out = capi(
        &["send", "--config", config.to_str().unwrap(), "--event", "-"],
        Some(EVENT.as_bytes()),
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_eq!(
        out.stdout.matches("connection failed").count(),
        3,
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("dropped after 3 attempts: attempts_exhausted"),
        "{}",
        out.stdout
    );

    let missing = dir.join("nope.pem");
    let out = capi(
        &[
            "send",
            "--config",
            config.to_str().unwrap(),
            "--event",
            "-",
            "--ca",
            missing.to_str().unwrap(),
        ],
        Some(EVENT.as_bytes()),
        &[],
    );
    assert!(out.assert_bad_input().contains("nope.pem"));
}

#[test]
fn sink_validates_per_spec_and_never_echoes_values() {
    let dir = tmp_dir("sink-validate");
    let sink = spawn_sink(&dir, true, &["--token", TOKEN]);
    let auth = format!("Bearer {TOKEN}");
    let post = |body: &[u8], ct: &str, auth: &str| {
        let mut headers = vec![("content-type", ct)];
        if !auth.is_empty() {
            headers.push(("authorization", auth));
        }
        sink.request("POST", "/v1/conversions", &headers, body)
    };
    let json_ct = "application/json";

    // Authentication first.
    let r = post(
        &serde_json::to_vec(&valid_event("e1")).unwrap(),
        json_ct,
        "",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": {"message": "missing or invalid bearer token"}})
    );
    assert_eq!(post(b"{}", json_ct, "Bearer nope").status, 401);

    // Content type.
    let r = post(
        &serde_json::to_vec(&valid_event("e1")).unwrap(),
        "text/plain",
        &auth,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content-type")
    );

    // Field-named errors without the raw values.
    let pii = "jane.doe@example.com";
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut e = valid_event("e1");
                e["ids"][0]["id"] = pii.into();
                e
            },
            "ids[0].id: ",
        ),
        (
            {
                let mut e = valid_event("e1");
                e["advertiser_id"] = pii.into();
                e
            },
            "advertiser_id: ",
        ),
        (
            {
                let mut e = valid_event("e1");
                e["currency"] = "usd".into();
                e
            },
            "currency: ",
        ),
        (
            {
                let mut e = valid_event("e1");
                e["ids"] = json!([]);
                e
            },
            "ids: ",
        ),
        (
            {
                let mut e = valid_event("e1");
                e["ids"][0]["name"] = pii.into();
                e
            },
            "ids[0].name: ",
        ),
        (
            {
                let mut e = valid_event("e1");
                e.as_object_mut().unwrap().remove("timestamp");
                e
            },
            "timestamp: missing",
        ),
        (
            {
                let mut e = valid_event("e1");
                e["timestamp"] = pii.into();
                e
            },
            "timestamp: ",
        ),
        (
            {
                let mut e = valid_event("e1");
                e[pii] = 1.into();
                e
            },
            "unknown field",
        ),
        (
            {
                let mut e = valid_event("e2");
                e["value"] = (-1).into();
                json!([valid_event("e1"), e])
            },
            "[1].value: ",
        ),
        (json!([]), "body: "),
    ];
    for (body, want) in cases {
        let r = post(&serde_json::to_vec(&body).unwrap(), json_ct, &auth);
        assert_eq!(r.status, 400, "{body}");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        assert!(
            !r.text().contains(pii) && !r.text().contains("jane.doe"),
            "echoed a value: {}",
            r.text()
        );
    }
    let r = post(b"{\"advertiser_id\": 1,", json_ct, &auth);
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("body: ")
    );

    // One event and a batch are accepted.
    let r = post(
        &serde_json::to_vec(&valid_event("one")).unwrap(),
        "application/json; charset=utf-8",
        &auth,
    );
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"status": "ok", "received": 1}))
    );
    let r = post(
        &serde_json::to_vec(&json!([valid_event("two"), valid_event("three")])).unwrap(),
        json_ct,
        &auth,
    );
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"status": "ok", "received": 2}))
    );
    let ids: Vec<Value> = sink
        .events()
        .iter()
        .map(|e| e["event_id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("one"), json!("two"), json!("three")]);

    assert_eq!(sink.request("GET", "/v1/conversions", &[], b"").status, 405);
    let stats = sink.stats();
    assert_eq!(stats["accepted_events"], 3);
    assert_eq!(stats["by_status"]["200"], 2);
    assert_eq!(stats["by_status"]["401"], 2);

    sink.request("POST", "/_sink/reset", &[], b"");
    assert!(sink.events().is_empty());
    assert_eq!(sink.stats()["requests"], 0);
    assert!(!sink.stderr().contains(pii) && !sink.stderr().contains(TOKEN));
}

#[test]
fn sink_checks_hmac_signatures() {
    let dir = tmp_dir("sink-hmac");
    let sink = spawn_sink(&dir, false, &["--hmac-secret", HMAC]);
    let body = serde_json::to_vec(&valid_event("signed")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let good = capi_core::request::sign(HMAC.as_bytes(), now, &body);
    let ts = now.to_string();
    let post = |sig: &str, ts: &str| {
        sink.request(
            "POST",
            "/v1/conversions",
            &[
                ("content-type", "application/json"),
                ("x-capi-timestamp", ts),
                ("x-capi-signature", sig),
            ],
            &body,
        )
    };
    assert_eq!(post(&good, &ts).status, 200);
    let bad = capi_core::request::sign(b"other", now, &body);
    assert_eq!(post(&bad, &ts).status, 401);
    assert_eq!(post(&good, &(now - 1).to_string()).status, 401);
    let r = sink.request(
        "POST",
        "/v1/conversions",
        &[("content-type", "application/json")],
        &body,
    );
    assert_eq!(r.status, 401);
    assert_eq!(sink.events().len(), 1);
}

#[test]
fn sink_bad_arguments() {
    let dir = tmp_dir("sink-args");
    let d = dir.to_str().unwrap();
    capi(
        &[
            "sink",
            "--port",
            "0",
            "--cert-dir",
            d,
            "--fault",
            "status=700",
        ],
        None,
        &[],
    )
    .assert_bad_input();
    capi(&["sink", "--port", "0", "--bind", "not-an-ip"], None, &[]).assert_bad_input();
    let rec = dir.join("no/such/dir/rec.jsonl");
    capi(
        &["sink", "--port", "0", "--record", rec.to_str().unwrap()],
        None,
        &[],
    )
    .assert_bad_input();
}
