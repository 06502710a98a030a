//! `capi demo-shop`: realistic, deterministic answers and the body shapes the Envoy filter's
//! tests need.
// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use serde_json::json;
use std::io::Read;

fn shop() -> Server {
    let dir = tmp_dir("shop");
    spawn_server(&["demo-shop", "--port", "0"], &dir)
}

#[test]
fn checkout_register_forms_and_pages() {
    let s = shop();
    assert!(s.url.starts_with("http://127.0.0.1:"));
    let body = br#"{"email":"Jane@Example.com","phone":"+1 415 555 2671","total":"12.50","order_id":"A-1"}"#;
    let r = s.request(
        "POST",
        "/api/checkout",
        &[("content-type", "application/json")],
        body,
    );
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("application/json"))
    );
    let v = r.json();
    assert_eq!(v["order"]["id"], "A-1");
    assert_eq!(v["order"]["total"], "12.50");
    assert_eq!(v["order"]["currency"], "usd");
    assert!(
        v["order"]["items"]
            .as_array()
            .is_some_and(|i| !i.is_empty())
    );
    assert_eq!(v["customer"]["email"], "Jane@Example.com");
    assert_eq!(v["customer"]["phone"], "+1 415 555 2671");
    assert!(v["customer"]["id"].as_str().unwrap().starts_with("cust_"));

    let d = s.request("POST", "/api/checkout", &[], b"").json();
    assert!(d["order"]["id"].as_str().unwrap().starts_with("ORD-"));
    assert!(d["customer"]["email"].as_str().unwrap().contains('@'));

    let u = s
        .request(
            "POST",
            "/api/register",
            &[("content-type", "application/json")],
            br#"{"email":"a@b.co"}"#,
        )
        .json();
    assert!(u["user"]["id"].as_str().unwrap().starts_with("user_"));

    let f = s.request(
        "POST",
        "/forms/contact/submit",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"email=a%40b.co",
    );
    assert_eq!(f.status, 200);
    assert!(f.header("content-type").unwrap().starts_with("text/html"));

    let p = s.request("GET", "/products/espresso", &[], b"");
    assert_eq!(p.status, 200);
    assert!(p.header("content-type").unwrap().starts_with("text/html"));
    assert!((1500..3000).contains(&p.body.len()), "{}", p.body.len());
    assert!(p.text().contains("espresso"));
    assert_eq!(s.request("GET", "/anything/else", &[], b"").status, 200);
}

#[test]
fn answers_are_byte_for_byte_deterministic() {
    let s = shop();
    let body = br#"{"email":"x@y.co","total":99}"#;
    let a = s.request("POST", "/api/checkout", &[], body);
    let b = s.request("POST", "/api/checkout", &[], body);
    assert_eq!(a.raw, b.raw, "no date header, no counters");
    assert_eq!(a.json()["order"]["total"], "99");
    let other = s.request("POST", "/api/checkout", &[], br#"{"email":"z@y.co"}"#);
    assert_ne!(a.json()["customer"]["id"], other.json()["customer"]["id"]);
}

#[test]
fn body_shapes() {
    let s = shop();
    let plain = s.request("POST", "/api/checkout", &[], b"{}");
    assert_eq!(plain.status, 200);

    let gz = s.request("POST", "/api/checkout?shape=gzip", &[], b"{}");
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz.body[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, plain.body);

    let df = s.request("POST", "/api/checkout?shape=deflate", &[], b"{}");
    assert_eq!(df.header("content-encoding"), Some("deflate"));
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(&df.body[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, plain.body);

    let ch = s.request("POST", "/api/checkout?shape=chunked", &[], b"{}");
    assert_eq!(ch.header("transfer-encoding"), Some("chunked"));
    assert!(ch.header("content-length").is_none());
    assert!(ch.chunks >= 3, "{} chunks", ch.chunks);
    assert_eq!(ch.body, plain.body);

    let empty = s.request("POST", "/api/checkout?shape=empty", &[], b"{}");
    assert_eq!(
        (
            empty.status,
            empty.header("content-length"),
            empty.body.len()
        ),
        (200, Some("0"), 0)
    );

    let text = s.request("POST", "/api/checkout?shape=text", &[], b"{}");
    assert!(
        text.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(text.body, plain.body);

    let large = s.request("POST", "/api/checkout?shape=large&kb=300", &[], b"{}");
    assert_eq!(large.body.len(), 300 * 1024);
    assert_eq!(large.header("content-type"), Some("application/json"));
    let v = large.json();
    assert_eq!(v["order"], plain.json()["order"]);

    let page = s.request("GET", "/products/x?shape=large&kb=4", &[], b"");
    assert_eq!(page.body.len(), 4096);
    assert!(page.json()["padding"].is_string());

    // Truncated: the announced length is never reached and the connection closes.
    let raw = raw_exchange(
        s.port,
        None,
        b"POST /api/checkout?shape=truncated HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}",
    );
    let t = parse_response(raw);
    let announced: usize = t.header("content-length").unwrap().parse().unwrap();
    assert!(t.body.len() < announced, "{} < {announced}", t.body.len());
    assert_eq!(t.body, plain.body);

    assert_eq!(s.request("GET", "/?shape=square", &[], b"").status, 400);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let s = shop();
    let req = b"GET /products/a HTTP/1.1\r\nhost: x\r\n\r\nPOST /api/register HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
    let raw = raw_exchange(s.port, None, req);
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.contains(r#"{"user":{"id":"user_"#));
    let _ = json!(null);
}

#[test]
fn bad_arguments() {
    capi(&["demo-shop", "--port", "http"], None, &[]).assert_bad_input();
    capi(&["demo-shop", "--bind", "localhost:80"], None, &[]).assert_bad_input();
}
