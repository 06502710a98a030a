//! Every configuration error names the path of the bad field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use capi_core::PluginConfig;
use capi_core::config::EXAMPLE_CONFIG;
use serde_json::{Value, json};

type Mutation = Box<dyn Fn(&mut Value)>;

fn example() -> Value {
    serde_json::from_str(EXAMPLE_CONFIG).unwrap()
}

fn error_of(v: &Value) -> String {
    PluginConfig::from_json(v.to_string().as_bytes())
        .unwrap_err()
        .to_string()
}

#[test]
fn example_is_valid_and_complete() {
    let c = PluginConfig::from_json(EXAMPLE_CONFIG.as_bytes()).unwrap();
    assert_eq!(c.destination.advertiser_id, 12345);
    assert_eq!(c.rules.len(), 3);
    assert_eq!(c.destination.url.port, 9443);
}

#[test]
fn bad_pointer_is_named() {
    let mut v = example();
    v["rules"][0]["extract"]["value"] = json!("response:order.total");
    let e = error_of(&v);
    assert!(
        e.starts_with("rules[0].extract.value: expected a JSON pointer"),
        "{e}"
    );
}

#[test]
fn unknown_fields_are_errors_at_every_level() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "colour"),
        (&["destination"], "colour"),
        (&["destination", "batch"], "colour"),
        (&["auth"], "colour"),
        (&["limits"], "colour"),
        (&["retry"], "colour"),
        (&["consent"], "colour"),
        (&["consent", "cookie"], "colour"),
        (&["identifiers"], "colour"),
    ];
    for (path, key) in cases {
        let mut v = example();
        let mut node = &mut v;
        for p in *path {
            node = &mut node[*p];
        }
        node[*key] = json!(1);
        let want = if path.is_empty() {
            format!("{key}: unknown field")
        } else {
            format!("{}.{key}: unknown field", path.join("."))
        };
        assert_eq!(error_of(&v), want);
    }
    let mut v = example();
    v["rules"][1]["match"]["verb"] = json!("POST");
    assert_eq!(error_of(&v), "rules[1].match.verb: unknown field");
    let mut v = example();
    v["rules"][2]["extract"]["mail"] = json!("form:email");
    assert_eq!(error_of(&v), "rules[2].extract.mail: unknown field");
}

#[test]
fn each_bad_value_names_its_path() {
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|v| v["destination"]["url"] = json!("http://ads.example.com/x")),
            "destination.url: must be https",
        ),
        (
            Box::new(|v| v["destination"]["url"] = json!("ftp://ads.example.com/x")),
            "destination.url: expected an https:// URL",
        ),
        (
            Box::new(|v| v["destination"]["advertiser_id"] = json!("12345")),
            "destination.advertiser_id: expected an integer",
        ),
        (
            Box::new(|v| v["destination"]["advertiser_id"] = json!(-1)),
            "destination.advertiser_id: expected an integer",
        ),
        (
            Box::new(|v| v["destination"]["data_source_key"] = json!("")),
            "destination.data_source_key: must be a non-empty",
        ),
        (
            Box::new(|v| v["destination"]["batch"]["max_events"] = json!(0)),
            "destination.batch.max_events: expected an integer from 1",
        ),
        (
            Box::new(|v| v["destination"]["format"] = json!("meta")),
            "destination.format: unknown format",
        ),
        (
            Box::new(|v| v["auth"]["bearer_token"] = json!("t")),
            "auth.bearer_token_env: give either bearer_token or bearer_token_env",
        ),
        (
            Box::new(|v| v["auth"]["hmac"] = json!({"signature_header": "x-sig"})),
            "auth.hmac.secret: required",
        ),
        (
            Box::new(|v| {
                v["auth"]["hmac"] = json!({"secret": "s", "signature_header": "bad header"})
            }),
            "auth.hmac.signature_header: expected an HTTP header name",
        ),
        (
            Box::new(|v| v["identifiers"]["default_calling_code"] = json!("01")),
            "identifiers.default_calling_code: expected a country calling code",
        ),
        (
            Box::new(|v| v["identifiers"]["phone_as"] = json!("phone")),
            "identifiers.phone_as: expected \"Phone\" or \"HashedPhone\"",
        ),
        (
            Box::new(|v| v["limits"]["queue_capacity"] = json!(0)),
            "limits.queue_capacity: expected an integer from 1",
        ),
        (
            Box::new(|v| v["retry"]["max_backoff_ms"] = json!(1)),
            "retry.max_backoff_ms: must be >= base_backoff_ms",
        ),
        (
            Box::new(|v| v["rules"] = json!([])),
            "rules: at least one rule is required",
        ),
        (
            Box::new(|v| v["rules"][0]["name"] = json!("check out")),
            "rules[0].name: expected 1 to 64 characters",
        ),
        (
            Box::new(|v| v["rules"][1]["name"] = json!("checkout")),
            "rules[1].name: duplicate rule name",
        ),
        (
            Box::new(|v| v["rules"][0]["conversion_type"] = json!("")),
            "rules[0].conversion_type: expected Purchase",
        ),
        (
            Box::new(|v| v["rules"][0]["match"]["path"] = json!("api/checkout")),
            "rules[0].match.path: must start with /",
        ),
        (
            Box::new(|v| v["rules"][0]["match"]["status"] = json!([200, 700])),
            "rules[0].match.status[1]: expected an HTTP status",
        ),
        (
            Box::new(|v| v["rules"][0]["match"]["method"] = json!("PO ST")),
            "rules[0].match.method: expected an HTTP method",
        ),
        (
            Box::new(|v| v["rules"][0]["extract"]["currency"] = json!("body:/x")),
            "rules[0].extract.currency: unknown source kind",
        ),
        (
            Box::new(|v| v["rules"][0]["extract"]["value_unit"] = json!("cents")),
            "rules[0].extract.value_unit: expected \"major\" or \"minor\"",
        ),
        (
            Box::new(|v| v["rules"][2]["extract"] = json!({"value": "form:total"})),
            "rules[2].extract: needs at least one identifier source",
        ),
        (
            Box::new(|v| v["consent"]["cookie"]["deny_values"] = json!([1])),
            "consent.cookie.deny_values[0]: expected a string",
        ),
    ];
    for (mutate, want) in cases {
        let mut v = example();
        mutate(&mut v);
        let e = error_of(&v);
        assert!(e.starts_with(want), "got {e:?}, want prefix {want:?}");
    }
}

#[test]
fn http_is_allowed_only_to_loopback_when_marked() {
    let mut v = example();
    v["destination"]["url"] = json!("http://127.0.0.1:8080/v1");
    assert!(error_of(&v).starts_with("destination.url: must be https"));
    v["destination"]["allow_http_loopback"] = json!(true);
    assert!(PluginConfig::from_json(v.to_string().as_bytes()).is_ok());
    v["destination"]["url"] = json!("http://10.0.0.1:8080/v1");
    assert!(error_of(&v).starts_with("destination.url: must be https"));
}

#[test]
fn secrets_resolve_from_the_hosts_lookup_and_never_print() {
    let mut v = example();
    v["auth"]["hmac"] = json!({"secret": "hmac-secret-value"});
    let mut c = PluginConfig::from_json(v.to_string().as_bytes()).unwrap();
    let missing = c.clone().resolve_secrets(|_| None).unwrap_err().to_string();
    assert_eq!(
        missing,
        "auth.bearer_token_env: environment variable CAPI_TOKEN is not set"
    );
    c.resolve_secrets(|name| (name == "CAPI_TOKEN").then(|| "tok-123".to_string()))
        .unwrap();
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("tok-123") && !debug.contains("hmac-secret-value"),
        "{debug}"
    );
}

#[test]
fn garbage_is_one_error_not_a_panic() {
    for input in [
        &b""[..],
        b"{",
        b"[]",
        b"null",
        b"{\"destination\":1}",
        &[0xff, 0xfe],
    ] {
        let e = PluginConfig::from_json(input).unwrap_err();
        assert!(!e.to_string().is_empty());
    }
}
