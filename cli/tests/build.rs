//! `capi build`: the request that would be sent, secrets masked, bad input refused.
// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{EVENT, JANE_EMAIL_SHA, JANE_PHONE_SHA, capi, tmp_dir, write_config, write_event};

const TOKEN: &str = "tok_live_5up3r5ecret";

fn split(stdout: &str) -> (Vec<&str>, &str) {
    let (head, body) = stdout.split_once("\n\n").expect("head and body");
    (head.lines().collect(), body)
}

#[test]
fn prints_method_url_masked_headers_and_body() {
    let dir = tmp_dir("build");
    let config = write_config(
        &dir,
        "https://capi.example.com/v1/conversions?src=test",
        |_| {},
    );
    let event = write_event(&dir, EVENT);
    let out = capi(
        &[
            "build",
            "--config",
            config.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
            "--now",
            "2026-03-01T12:00:00Z",
        ],
        None,
        &[("CAPI_TEST_TOKEN", TOKEN)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        !out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN),
        "token leaked: {}",
        out.stdout
    );
    let (head, body) = split(&out.stdout);
    assert_eq!(
        head[0],
        "POST https://capi.example.com/v1/conversions?src=test"
    );
    assert!(head.contains(&"authorization: Bearer ***"), "{head:?}");
    assert!(head.contains(&"content-type: application/json"), "{head:?}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["advertiser_id"], 12345);
    assert_eq!(v["conversion_type"], "Purchase");
    assert_eq!(v["currency"], "EUR");
    assert_eq!(v["value"], 12.5);
    assert_eq!(v["order_id"], "A-1");
    assert_eq!(v["timestamp"], "2026-03-01T12:00:00.000Z");
    assert_eq!(
        v["ids"][0],
        serde_json::json!({"id": JANE_EMAIL_SHA, "name": "HashedEmail"})
    );
    assert_eq!(
        v["ids"][1],
        serde_json::json!({"id": JANE_PHONE_SHA, "name": "HashedPhone"})
    );
    assert_eq!(v["user_agent"]["browser_name"], "Safari");
    assert!(!out.stdout.contains("Jane@Example.com"));
    // Pretty output keeps the spec's field order.
    let order: Vec<usize> = [
        "advertiser_id",
        "data_source_key",
        "conversion_type",
        "event_id",
        "ids",
        "timestamp",
        "currency",
    ]
    .iter()
    .map(|k| body.find(&format!("\"{k}\"")).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}

#[test]
fn raw_body_and_stdin_event_and_stable_event_id() {
    let dir = tmp_dir("build-raw");
    let config = write_config(&dir, "https://capi.example.com/v1", |_| {});
    let run = || {
        let out = capi(
            &[
                "build",
                "--config",
                config.to_str().unwrap(),
                "--event",
                "-",
                "--raw",
            ],
            Some(EVENT.as_bytes()),
            &[("CAPI_TEST_TOKEN", TOKEN)],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let (_, body) = split(&out.stdout);
        let body = body.trim_end().to_owned();
        assert_eq!(body.lines().count(), 1, "raw body is one line");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let (a, b) = (run(), run());
    // With an order id the event id is derived from it, not from the time.
    assert_eq!(a["event_id"], b["event_id"]);
    assert_eq!(a["event_id"].as_str().unwrap().len(), 64);
}

#[test]
fn hmac_signature_is_masked() {
    let dir = tmp_dir("build-hmac");
    let config = write_config(&dir, "https://capi.example.com/v1", |v| {
        v["auth"] =
            serde_json::json!({"bearer_token": TOKEN, "hmac": {"secret": "hmac-secret-value"}});
    });
    let event = write_event(&dir, EVENT);
    let out = capi(
        &[
            "build",
            "--config",
            config.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (head, _) = split(&out.stdout);
    assert!(head.contains(&"x-capi-signature: ***"), "{head:?}");
    assert!(
        head.iter().any(|h| h.starts_with("x-capi-timestamp: ")),
        "{head:?}"
    );
    assert!(!out.stdout.contains(TOKEN) && !out.stdout.contains("hmac-secret-value"));
}

#[test]
fn missing_secret_names_the_variable() {
    let dir = tmp_dir("build-env");
    let config = write_config(&dir, "https://capi.example.com/v1", |_| {});
    let event = write_event(&dir, EVENT);
    let out = capi(
        &[
            "build",
            "--config",
            config.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
        ],
        None,
        &[],
    );
    let line = out.assert_bad_input();
    assert!(line.contains("CAPI_TEST_TOKEN"), "{line}");
}

#[test]
fn bad_event_and_arguments() {
    let dir = tmp_dir("build-bad");
    let config = write_config(&dir, "https://capi.example.com/v1", |_| {});
    let c = config.to_str().unwrap();
    let env = [("CAPI_TEST_TOKEN", TOKEN)];
    let run = |event: &str, extra: &[&str]| {
        let mut args = vec!["build", "--config", c, "--event", "-"];
        args.extend_from_slice(extra);
        capi(&args, Some(event.as_bytes()), &env)
    };
    let out = run(
        r#"{"conversion_type":"Purchase","email":"jane.doe(at)example.com"}"#,
        &[],
    );
    let line = out.assert_bad_input();
    assert!(
        line.contains("ids") && !line.contains("jane.doe(at)"),
        "{line}"
    );
    let out = run(
        r#"{"conversion_type":"Purchase","email":"a@b.co","currency":"euros"}"#,
        &[],
    );
    assert!(out.assert_bad_input().contains("currency"));
    let out = run(r#"{"email":"a@b.co"}"#, &[]);
    assert!(out.assert_bad_input().contains("conversion_type"));
    let out = run(
        r#"{"conversion_type":"Purchase","email":"a@b.co","value":"twelve"}"#,
        &[],
    );
    assert!(out.assert_bad_input().contains("value"));
    let out = run("[1,2", &[]);
    assert!(out.assert_bad_input().contains("not valid JSON"));
    let out = run(EVENT, &["--now", "yesterday"]);
    assert!(out.assert_bad_input().contains("--now"));
    // Only one input can come from stdin.
    capi(
        &["build", "--config", "-", "--event", "-"],
        Some(b"{}"),
        &env,
    )
    .assert_bad_input();
    capi(&["build", "--config", c], None, &env).assert_bad_input();
}
