//! The seed payload: stable field order, exact round trip, validation naming the field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use capi_core::config::EXAMPLE_CONFIG;
use capi_core::request::{sign, verify};
use capi_core::{ConversionEvent, PluginConfig, build_request, collect_event};

type Mutation = Box<dyn Fn(&mut serde_json::Value)>;

const UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

fn purchase() -> (PluginConfig, ConversionEvent) {
    let mut c = PluginConfig::from_json(EXAMPLE_CONFIG.as_bytes()).unwrap();
    c.resolve_secrets(|_| Some("tok-123".into())).unwrap();
    let body = format!(
        r#"{{"conversion_type":"Purchase","order_id":"ORD-1001","value":"49.90","currency":"eur","email":"Jane.Doe@Example.com","phone":"+1 415 555 2671","guid":"85b04ded-09dd-4015-ad30-581e45452dd9","user_agent":"{UA}"}}"#
    );
    let e = collect_event(&c, body.as_bytes(), &[], None, 1_795_686_120_000)
        .unwrap()
        .event;
    (c, e)
}

#[test]
fn field_order_is_the_seeds() {
    let (_, e) = purchase();
    let json = String::from_utf8(e.to_json()).unwrap();
    let keys = [
        "advertiser_id",
        "data_source_key",
        "conversion_type",
        "event_id",
        "ids",
        "user_agent",
        "timestamp",
        "value",
        "currency",
        "order_id",
    ];
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| json.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
    assert!(json.starts_with(r#"{"advertiser_id":12345,"data_source_key":"web-shop-1","conversion_type":"Purchase","event_id":"992d249c"#), "{json}");
    assert!(json.contains(r#""timestamp":"2026-11-26T09:42:00.000Z","value":49.9,"currency":"EUR","order_id":"ORD-1001"}"#), "{json}");
    // The example config hashes phones: the digits never travel in clear.
    assert!(
        !json.contains("14155552671") && json.contains(r#""name":"HashedPhone""#),
        "{json}"
    );
}

#[test]
fn round_trip_is_exact() {
    let (_, e) = purchase();
    let bytes = e.to_json();
    let back = ConversionEvent::from_json(&bytes).unwrap();
    assert_eq!(back, e);
    assert_eq!(back.to_json(), bytes);
}

#[test]
fn parse_names_the_bad_field() {
    let (_, e) = purchase();
    let good: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|v| v["ids"] = serde_json::json!([])),
            "ids: at least one",
        ),
        (
            Box::new(|v| v["ids"][0]["id"] = "Jane.Doe@Example.com".into()),
            "ids[0].id: expected 64 lower-case hex",
        ),
        (
            Box::new(|v| v["ids"][0]["name"] = "Email".into()),
            "ids[0].name: expected Guid",
        ),
        (
            Box::new(|v| v["currency"] = "eur".into()),
            "currency: must be an upper-case ISO 4217",
        ),
        (
            Box::new(|v| v["value"] = (-1.0).into()),
            "value: must be a finite number",
        ),
        (Box::new(|v| v["timestamp"] = "now".into()), "timestamp: "),
        (
            Box::new(|v| v["colour"] = 1.into()),
            "colour: unknown field",
        ),
        (
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("event_id");
            }),
            "event_id: missing field",
        ),
        (
            Box::new(|v| v["event_id"] = "".into()),
            "event_id: must be a non-empty",
        ),
    ];
    for (mutate, want) in cases {
        let mut v = good.clone();
        mutate(&mut v);
        let err = ConversionEvent::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(want), "got {err:?} want {want:?}");
        assert!(!err.contains("Jane"), "no raw value in {err:?}");
    }
}

#[test]
fn request_has_auth_content_type_and_a_verifiable_signature() {
    let (mut c, e) = purchase();
    let r = build_request(&c, core::slice::from_ref(&e), 1_795_686_120_000).unwrap();
    assert_eq!(
        (r.method, r.url().as_str()),
        ("POST", "https://127.0.0.1:9443/v1/conversions")
    );
    assert!(
        r.headers
            .contains(&("content-type".into(), "application/json".into()))
    );
    assert!(
        r.headers
            .contains(&("authorization".into(), "Bearer tok-123".into()))
    );
    assert_eq!(r.body, e.to_json());
    let masked = r.masked_headers(&c);
    assert!(masked.contains(&("authorization".into(), "Bearer ***".into())));

    c.auth.hmac = Some(capi_core::config::HmacSigning {
        secret: capi_core::config::Secret::Inline("shh".into()),
        signature_header: "x-capi-signature".into(),
        timestamp_header: "x-capi-timestamp".into(),
    });
    let r = build_request(&c, &[e.clone(), e.clone()], 1_795_686_120_999).unwrap();
    let ts = &r
        .headers
        .iter()
        .find(|(k, _)| k == "x-capi-timestamp")
        .unwrap()
        .1;
    let sig = &r
        .headers
        .iter()
        .find(|(k, _)| k == "x-capi-signature")
        .unwrap()
        .1;
    assert_eq!(ts, "1795686120");
    assert!(verify(b"shh", 1_795_686_120, &r.body, sig));
    assert!(!verify(b"shh", 1_795_686_121, &r.body, sig));
    assert!(!verify(b"other", 1_795_686_120, &r.body, sig));
    assert!(
        r.body.starts_with(b"[{") && r.body.ends_with(b"}]"),
        "a batch is a JSON array"
    );
    // Known answer (Python: hmac.new(b"key", b"0.body", sha256).hexdigest()).
    assert_eq!(
        sign(b"key", 0, b"body"),
        "e0af04d5c83b24373ff89f540d0c8fd9a4e097e2b3ee8318ab5541047697626d"
    );
}
