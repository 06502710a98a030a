//! From an HTTP exchange (or a collect payload) to an event, or a precise error.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use capi_core::config::EXAMPLE_CONFIG;
use capi_core::{ConversionType, Exchange, IdName, PluginConfig, collect_event, extract_event};
use serde_json::json;

const NOW: i64 = 1_795_686_120_000; // 2026-11-26T09:42:00Z
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Safari/537.36";
const JANE: &str = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d";

fn config() -> PluginConfig {
    PluginConfig::from_json(EXAMPLE_CONFIG.as_bytes()).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn checkout_body(total: serde_json::Value, currency: &str) -> Vec<u8> {
    json!({
        "order": {"id": "ORD-1001", "total": total, "currency": currency, "items": [{"sku": "A", "qty": 1}]},
        "customer": {"id": "cust_42", "email": " Jane.Doe@Example.com ", "phone": "+1 (415) 555-2671"}
    })
    .to_string()
    .into_bytes()
}

#[test]
fn checkout_response_gives_the_full_event() {
    let c = config();
    let req = headers(&[
        ("user-agent", UA),
        (
            "cookie",
            "a=1; capi_guid=85B04DED-09DD-4015-AD30-581E45452DD9; b=2",
        ),
    ]);
    let resp = headers(&[("content-type", "application/json")]);
    let body = checkout_body(json!("49.90"), "eur");
    let ex = Exchange {
        method: "POST",
        host: "shop.example.com",
        path: "/api/checkout?x=1",
        request_headers: &req,
        response_status: 200,
        response_headers: &resp,
        response_body: Some(&body),
        ..Exchange::default()
    };
    let rule = &c.rules[c
        .match_request("POST", "shop.example.com", "/api/checkout?x=1")
        .unwrap()];
    assert!(
        rule.matcher
            .matches_response(200, Some("application/json; charset=utf-8"))
    );
    let out = extract_event(&c, rule, &ex, NOW).unwrap();
    let e = out.event;
    assert!(out.skipped.is_empty());
    assert_eq!(e.conversion_type, ConversionType::Purchase);
    assert_eq!(e.value, Some(49.9));
    assert_eq!(e.currency, "EUR");
    assert_eq!(e.order_id.as_deref(), Some("ORD-1001"));
    assert_eq!(e.timestamp.0, NOW);
    let names: Vec<IdName> = e.ids.iter().map(|i| i.name).collect();
    assert_eq!(
        names,
        [
            IdName::HashedEmail,
            IdName::HashedPhone,
            IdName::Guid,
            IdName::FirstPartyId
        ]
    );
    assert_eq!(e.ids[0].id, JANE);
    assert_eq!(
        e.ids[1].id,
        "758fbf68945f21c416814c539ab578876c8d98fb69e6da692def92cd52417fe0"
    );
    assert_eq!(e.ids[2].id, "85b04ded-09dd-4015-ad30-581e45452dd9");
    assert_eq!(e.ids[3].id, "cust_42");
    // sha256("12345|Purchase|ORD-1001")
    assert_eq!(
        e.event_id,
        "992d249cd68b71405252896af97b2c7d4c86996436b51acc846f2bbb758caa2b"
    );
    let ua = e.user_agent.unwrap();
    assert_eq!((&*ua.browser_name, &*ua.os_name), ("Chrome", "Windows"));
    assert_eq!(ua.raw, UA);
}

#[test]
fn other_paths_and_methods_do_not_match() {
    let c = config();
    assert_eq!(c.match_request("GET", "h", "/api/checkout"), None);
    assert_eq!(c.match_request("POST", "h", "/api/checkout/extra"), None);
    assert_eq!(c.match_request("POST", "h", "/products/1"), None);
    assert_eq!(
        c.match_request("POST", "h", "/forms/newsletter/submit"),
        Some(2)
    );
    assert!(
        !c.rules[0]
            .matcher
            .matches_response(500, Some("application/json"))
    );
    assert!(!c.rules[0].matcher.matches_response(200, Some("text/html")));
}

#[test]
fn values_as_numbers_strings_and_minor_units() {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE_CONFIG).unwrap();
    let base = PluginConfig::from_json(v.to_string().as_bytes()).unwrap();
    v["rules"][0]["extract"]["value_unit"] = json!("minor");
    let minor = PluginConfig::from_json(v.to_string().as_bytes()).unwrap();
    let cases: &[(&PluginConfig, serde_json::Value, &str, Result<f64, &str>)] = &[
        (&base, json!(12.5), "usd", Ok(12.5)),
        (&base, json!("12.50"), "USD", Ok(12.5)),
        (&base, json!(" 7 "), "usd", Ok(7.0)),
        (&base, json!("-1"), "usd", Err("value: expected a number")),
        (
            &base,
            json!("12,50"),
            "usd",
            Err("value: expected a number"),
        ),
        (
            &base,
            json!("1e400"),
            "usd",
            Err("value: expected a number"),
        ),
        (
            &base,
            json!({"amount": 1}),
            "usd",
            Err("value: response:/order/total is an object"),
        ),
        (&minor, json!(1250), "usd", Ok(12.5)),
        (&minor, json!("1999"), "usd", Ok(19.99)),
        (&minor, json!(1250), "jpy", Ok(1250.0)),
        (&minor, json!(1250), "kwd", Ok(1.25)),
        (
            &minor,
            json!(12.5),
            "usd",
            Err("value: expected integer minor units"),
        ),
        (
            &base,
            json!(1),
            "usdollar",
            Err("currency: not an ISO 4217"),
        ),
        (&base, json!(1), "xyz", Err("currency: not an ISO 4217")),
    ];
    let req = headers(&[]);
    for (c, total, cur, want) in cases {
        let body = checkout_body(total.clone(), cur);
        let ex = Exchange {
            method: "POST",
            path: "/api/checkout",
            request_headers: &req,
            response_status: 200,
            response_body: Some(&body),
            ..Exchange::default()
        };
        let got = extract_event(c, &c.rules[0], &ex, NOW)
            .map(|o| o.event.value.unwrap())
            .map_err(|e| e.to_string());
        match (got, want) {
            (Ok(g), Ok(w)) => assert_eq!(g, *w, "total {total} {cur}"),
            (Err(g), Err(w)) => assert!(g.starts_with(w), "total {total}: got {g:?} want {w:?}"),
            (g, w) => panic!("total {total} {cur}: got {g:?} want {w:?}"),
        }
    }
}

#[test]
fn missing_fields_are_named_with_their_source() {
    let c = config();
    let req = headers(&[]);
    let body = json!({"order": {"total": 3, "currency": "usd"}, "customer": {"email": "a@b.co"}})
        .to_string();
    let ex = Exchange {
        method: "POST",
        path: "/api/checkout",
        request_headers: &req,
        response_status: 200,
        response_body: Some(body.as_bytes()),
        ..Exchange::default()
    };
    let e = extract_event(&c, &c.rules[0], &ex, NOW).unwrap_err();
    assert_eq!(e.to_string(), "order_id: missing at response:/order/id");

    let not_json = b"<html>oops</html>";
    let ex = Exchange {
        response_body: Some(not_json),
        ..ex
    };
    let e = extract_event(&c, &c.rules[0], &ex, NOW).unwrap_err();
    assert_eq!(
        e.to_string(),
        "currency: response body is missing or not JSON"
    );
}

#[test]
fn bad_identifiers_are_skipped_and_none_left_is_an_error() {
    let c = config();
    let req = headers(&[]);
    let body = json!({"order": {"id": "1", "total": 3, "currency": "usd"}, "customer": {"email": "nope", "phone": "12", "id": "c1"}}).to_string();
    let ex = Exchange {
        method: "POST",
        path: "/api/checkout",
        request_headers: &req,
        response_status: 200,
        response_body: Some(body.as_bytes()),
        ..Exchange::default()
    };
    let out = extract_event(&c, &c.rules[0], &ex, NOW).unwrap();
    assert_eq!(out.event.ids.len(), 1);
    assert_eq!(
        out.skipped.iter().map(|s| s.field).collect::<Vec<_>>(),
        ["email", "phone"]
    );

    let body = json!({"order": {"id": "1", "total": 3, "currency": "usd"}, "customer": {"email": "secret-person@nowhere"}}).to_string();
    let ex = Exchange {
        response_body: Some(body.as_bytes()),
        ..ex
    };
    let e = extract_event(&c, &c.rules[0], &ex, NOW)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("ids: no usable user identifier; email: not a plausible email address"),
        "{e}"
    );
    assert!(
        !e.contains("secret-person"),
        "raw values never appear in errors: {e}"
    );
}

#[test]
fn form_bodies_and_cookies_feed_a_lead() {
    let c = config();
    let req = headers(&[
        ("content-type", "application/x-www-form-urlencoded"),
        ("cookie", "capi_guid=85b04ded-09dd-4015-ad30-581e45452dd9"),
    ]);
    let form = b"name=Jane&email=Jane.Doe%40Example.com&phone=%2B1+415+555+2671";
    let ex = Exchange {
        method: "POST",
        path: "/forms/contact/submit",
        request_headers: &req,
        request_body: Some(form),
        response_status: 200,
        ..Exchange::default()
    };
    let e = extract_event(&c, &c.rules[2], &ex, NOW).unwrap().event;
    assert_eq!(e.conversion_type, ConversionType::Lead);
    assert_eq!(e.ids[0].id, JANE);
    assert_eq!(e.ids[1].name, IdName::HashedPhone);
    assert_eq!(e.currency, "USD");
    assert_eq!(e.order_id, None);
    // Without an order id the event id comes from the first identifier and the timestamp.
    let e2 = extract_event(&c, &c.rules[2], &ex, NOW + 1).unwrap().event;
    assert_ne!(e.event_id, e2.event_id);
    assert_eq!(
        e.event_id,
        extract_event(&c, &c.rules[2], &ex, NOW)
            .unwrap()
            .event
            .event_id
    );
}

#[test]
fn collect_payloads_use_the_same_rules() {
    let c = config();
    let req = headers(&[("user-agent", UA)]);
    let body = json!({"conversion_type": "Purchase", "order_id": "ORD-1001", "value_minor": 4990, "currency": "eur", "email": "JANE.DOE@example.com"}).to_string();
    let e = collect_event(&c, body.as_bytes(), &req, None, NOW)
        .unwrap()
        .event;
    assert_eq!(e.value, Some(49.9));
    assert_eq!(
        e.event_id, "992d249cd68b71405252896af97b2c7d4c86996436b51acc846f2bbb758caa2b",
        "same order, same id as the Envoy path"
    );
    assert_eq!(e.user_agent.unwrap().browser_name, "Chrome");

    for (body, want) in [
        (
            json!({"order_id": "1", "email": "a@b.co"}),
            "conversion_type: missing",
        ),
        (
            json!({"conversion_type": "Lead", "emial": "a@b.co"}),
            "body: unknown field emial",
        ),
        (
            json!({"conversion_type": "Lead"}),
            "ids: no usable user identifier",
        ),
        (
            json!({"conversion_type": "Lead", "email": "a@b.co", "value": 1, "value_minor": 100}),
            "value: give value or value_minor",
        ),
        (
            json!({"conversion_type": "Lead", "email": "a@b.co", "timestamp": "yesterday"}),
            "timestamp: request:/timestamp is not ISO 8601",
        ),
        (json!([1]), "body: expected a JSON object"),
    ] {
        let e = collect_event(&c, body.to_string().as_bytes(), &req, None, NOW)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(want), "got {e:?} want {want:?}");
    }
}

#[test]
fn consent_gpc_and_cookie() {
    use capi_core::consent::{ConsentDenied, check};
    let c = config();
    assert_eq!(
        check(&c.consent, &headers(&[("sec-gpc", "1")])),
        Err(ConsentDenied::Gpc)
    );
    assert_eq!(
        check(
            &c.consent,
            &headers(&[("cookie", "x=1; capi_consent=Denied")])
        ),
        Err(ConsentDenied::Cookie)
    );
    assert_eq!(
        check(
            &c.consent,
            &headers(&[("cookie", "capi_consent=granted"), ("sec-gpc", "0")])
        ),
        Ok(())
    );
}

/// The example config with its `identifiers` section replaced.
fn config_with_identifiers(identifiers: serde_json::Value) -> PluginConfig {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE_CONFIG).unwrap();
    v["identifiers"] = identifiers;
    PluginConfig::from_json(v.to_string().as_bytes()).unwrap()
}

#[test]
fn click_ids_and_client_ip_come_from_cookies_url_and_peer() {
    let req = headers(&[
        ("user-agent", UA),
        (
            "cookie",
            "capi_guid=85b04ded-09dd-4015-ad30-581e45452dd9; capi_gclid=old-gclid; capi_fbclid=fb.1.1700000000.AbC; capi_ttclid=bad;x",
        ),
        ("x-forwarded-for", "198.51.100.23, 10.0.0.1"),
    ]);
    let body = checkout_body(json!(10), "usd");
    let path = "/api/checkout?gclid=new-gclid";
    let ex = Exchange {
        method: "POST",
        host: "shop.example.com",
        path,
        request_headers: &req,
        response_status: 200,
        response_body: Some(&body),
        client_ip: Some("[2001:DB8::7]:41000"),
        ..Exchange::default()
    };
    let c = config();
    let e = extract_event(&c, &c.rules[0], &ex, NOW).unwrap().event;
    let clicks: Vec<(&str, &str)> = e
        .click_ids
        .iter()
        .map(|c| (c.name.as_str(), c.id.as_str()))
        .collect();
    assert_eq!(
        clicks,
        [
            ("fbclid", "fb.1.1700000000.AbC"),
            ("gclid", "new-gclid"),
            ("ttclid", "bad")
        ]
    );
    assert_eq!(e.client_ip_address.as_deref(), Some("2001:db8::7"));
    // The JSON carries both after order_id, and parses back to the same event.
    let json = String::from_utf8(e.to_json()).unwrap();
    assert!(
        json.contains(r#""order_id":"ORD-1001","click_ids":[{"id":"fb.1.1700000000.AbC","name":"fbclid"},{"id":"new-gclid","name":"gclid"},{"id":"bad","name":"ttclid"}],"client_ip_address":"2001:db8::7"}"#),
        "{json}"
    );
    assert_eq!(
        capi_core::ConversionEvent::from_json(json.as_bytes()).unwrap(),
        e
    );

    // From a header instead of the peer; click ids switched off.
    let c =
        config_with_identifiers(json!({"click_ids": false, "client_ip": "header:X-Forwarded-For"}));
    let e = extract_event(&c, &c.rules[0], &ex, NOW).unwrap().event;
    assert!(e.click_ids.is_empty());
    assert_eq!(e.client_ip_address.as_deref(), Some("198.51.100.23"));
    assert!(
        !String::from_utf8(e.to_json())
            .unwrap()
            .contains("click_ids")
    );

    // Off: no address at all, not even from the peer.
    let c = config_with_identifiers(json!({"client_ip": "off"}));
    let e = extract_event(&c, &c.rules[0], &ex, NOW).unwrap().event;
    assert_eq!(e.client_ip_address, None);
    assert!(
        !String::from_utf8(e.to_json())
            .unwrap()
            .contains("client_ip")
    );

    // A peer that is not an address is left out and reported.
    let bad = Exchange {
        client_ip: Some("unix:/run/envoy.sock"),
        ..ex
    };
    let c = config();
    let x = extract_event(&c, &c.rules[0], &bad, NOW).unwrap();
    assert_eq!(x.event.client_ip_address, None);
    assert!(x.skipped.iter().any(|s| s.field == "client_ip"));
}

#[test]
fn client_ip_config_and_payload_errors_name_the_field() {
    let mut v: serde_json::Value = serde_json::from_str(EXAMPLE_CONFIG).unwrap();
    v["identifiers"]["client_ip"] = json!("header:");
    let e = PluginConfig::from_json(v.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.path, "identifiers.client_ip");
    v["identifiers"]["client_ip"] = json!(true);
    assert_eq!(
        PluginConfig::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .path,
        "identifiers.client_ip"
    );

    // The collect payload may carry the visitor's address; a bad one is an error, not dropped.
    let c = config();
    let body = br#"{"conversion_type":"Lead","email":"a@b.co","client_ip":"203.0.113.9"}"#;
    let e = collect_event(&c, body, &[], Some("192.0.2.1"), NOW)
        .unwrap()
        .event;
    assert_eq!(e.client_ip_address.as_deref(), Some("203.0.113.9"));
    let body = br#"{"conversion_type":"Lead","email":"a@b.co"}"#;
    let e = collect_event(&c, body, &[], Some("192.0.2.1"), NOW)
        .unwrap()
        .event;
    assert_eq!(e.client_ip_address.as_deref(), Some("192.0.2.1"));
    let body = br#"{"conversion_type":"Lead","email":"a@b.co","client_ip":"jane@example.com"}"#;
    let err = collect_event(&c, body, &[], None, NOW).unwrap_err();
    assert_eq!(err.field, "client_ip");
    assert!(!err.reason.contains("jane"));

    // An event payload with a bad click id or address is refused with the field named.
    let good = collect_event(
        &c,
        br#"{"conversion_type":"Lead","email":"a@b.co"}"#,
        &[],
        None,
        NOW,
    )
    .unwrap()
    .event;
    let mut v: serde_json::Value = serde_json::from_slice(&good.to_json()).unwrap();
    v["click_ids"] = json!([{"id": "x", "name": "msclkid"}]);
    let err = capi_core::ConversionEvent::from_value(&v).unwrap_err();
    assert_eq!(err.field, "click_ids[0].name");
    v["click_ids"] = json!([{"id": "a;b", "name": "gclid"}]);
    assert_eq!(
        capi_core::ConversionEvent::from_value(&v)
            .unwrap_err()
            .field,
        "click_ids[0].id"
    );
    v["click_ids"] = json!([]);
    v["client_ip_address"] = json!("10.0.0.01");
    assert_eq!(
        capi_core::ConversionEvent::from_value(&v)
            .unwrap_err()
            .field,
        "client_ip_address"
    );
}

/// The configuration splits each rule's body pointers into a tree when it is read; a rule
/// whose sources are changed afterwards still reads what its sources now say.
#[test]
fn sources_changed_after_parsing_are_read_as_they_now_are() {
    let mut c = config();
    let i = c
        .match_request("POST", "shop.example.com", "/api/checkout")
        .unwrap();
    let resp = headers(&[("content-type", "application/json")]);
    let body = json!({
        "order": {"id": "ORD-1001", "total": "49.90", "currency": "eur", "ref": "REF-7"},
        "customer": {"email": "jane@example.com"}
    })
    .to_string()
    .into_bytes();
    let ex = Exchange {
        method: "POST",
        host: "shop.example.com",
        path: "/api/checkout",
        response_status: 200,
        response_headers: &resp,
        response_body: Some(&body),
        ..Exchange::default()
    };
    let before = extract_event(&c, &c.rules[i], &ex, NOW).unwrap().event;
    assert_eq!(before.order_id.as_deref(), Some("ORD-1001"));

    c.rules[i].extract.order_id = Some(capi_core::extract::Source::ResponseBody(
        "/order/ref".into(),
    ));
    let after = extract_event(&c, &c.rules[i], &ex, NOW).unwrap().event;
    assert_eq!(after.order_id.as_deref(), Some("REF-7"));
    assert_eq!(after.value, Some(49.9));
}
