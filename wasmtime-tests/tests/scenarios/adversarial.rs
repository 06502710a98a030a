//! Hostile bodies and headers: deep nesting, 10 MB, invalid UTF-8, 1-byte chunks, gzip
//! bombs, lies in Content-Length, resets. The filter never traps (a trap kills the worker's
//! VM), never changes or delays what the client receives, and counts why it made no event.

use capi_wasmtime_tests::{Chunking, Exchange, Planned, Reply};
use miniz_oxide::deflate::compress_to_vec;

use crate::common::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    out.extend(compress_to_vec(data, 6));
    let crc = 0u32; // the filter does not check the CRC (it checks ISIZE)
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn with_body(body: Vec<u8>) -> Exchange {
    let mut ex = checkout("ADV-1", Some("adv@example.com"));
    ex.response_body = body;
    ex
}

/// Runs one exchange and checks the stream was left alone. Returns the counters' deltas.
fn run(cfg: &[u8], ex: &Exchange) -> capi_wasmtime_tests::Envoy {
    let (mut e, root) = envoy(cfg);
    e.set_responder(|_| Planned {
        delay_ms: 5,
        reply: Reply::status(200),
    });
    let r = e
        .run_exchange(0, root, ex)
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(r.never_paused(), "{:?}", r.actions);
    if !ex.response_reset {
        assert!(
            r.client_body == ex.response_body,
            "the client's bytes changed"
        );
        let sent = r.client_headers.clone().unwrap_or_default();
        assert_eq!(sent, ex.response_headers, "the client's headers changed");
    }
    assert_eq!(r.upstream_body, ex.request_body);
    e.advance(1000).unwrap();
    assert_clean(&e);
    assert!(
        e.memory_bytes(0) < 96 << 20,
        "the VM grew to {} bytes",
        e.memory_bytes(0)
    );
    e
}

#[test]
fn deeply_nested_json_is_refused_without_a_trap() {
    let cfg = config(serde_json::json!({}));
    for body in [
        [b"[".repeat(200_000), b"]".repeat(200_000)].concat(),
        [
            b"{\"order\":".repeat(50_000),
            b"1".to_vec(),
            b"}".repeat(50_000),
        ]
        .concat(),
        b"[".repeat(250_000),
    ] {
        let e = run(
            &cfg,
            &with_body(body).chunked(Chunking::Http1, Chunking::Fixed(16 * 1024)),
        );
        assert_eq!(
            e.stat("capi.extract_failed") + e.stat("capi.skipped_body_too_large"),
            1
        );
        assert!(e.shared().calls.is_empty());
    }
}

#[test]
fn ten_megabytes_is_skipped_and_streams_through() {
    let cfg = config(serde_json::json!({}));
    let big: Vec<u8> = serde_json::to_vec(&serde_json::json!({ "pad": "x".repeat(10 << 20), "order": { "id": "BIG", "total": "1", "currency": "EUR" } })).unwrap();
    // Without Content-Length: copied until the limit, then given up.
    let e = run(
        &cfg,
        &with_body(big.clone()).chunked(Chunking::Http1, Chunking::Fixed(64 * 1024)),
    );
    assert_eq!(e.stat("capi.skipped_body_too_large"), 1);
    // With a Content-Length over the limit: given up at the headers.
    let e = run(
        &cfg,
        &with_body(big.clone())
            .response_header("content-length", &big.len().to_string())
            .chunked(Chunking::Http1, Chunking::Fixed(1 << 20)),
    );
    assert_eq!(e.stat("capi.skipped_body_too_large"), 1);
    // With a limit that fits, a 10 MB body is parsed and the event goes out.
    let roomy = config(serde_json::json!({ "limits": { "max_body_bytes": 16 << 20 } }));
    let mut e = run(
        &roomy,
        &with_body(big).chunked(Chunking::Http1, Chunking::FixedThenEmpty(256 * 1024)),
    );
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.delivered"), 1, "{:#?}", e.log_lines());
}

#[test]
fn a_content_length_that_lies_changes_nothing() {
    let cfg = config(serde_json::json!({}));
    // Claims 10 bytes, sends a valid body: the body decides.
    let mut e = run(
        &cfg,
        &with_body(checkout_body("LIE-1", "3.00", Some("l@example.com")))
            .response_header("content-length", "10"),
    );
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.delivered"), 1);
    // Not a number.
    let mut e = run(
        &cfg,
        &with_body(checkout_body("LIE-2", "3.00", Some("l@example.com")))
            .response_header("content-length", "-1, 99999999999999999999"),
    );
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.delivered"), 1);
}

#[test]
fn invalid_utf8_bodies_and_headers() {
    let cfg = config(serde_json::json!({}));
    let mut body = checkout_body("U8-1", "1.00", Some("u@example.com"));
    body.splice(10..10, [0xff, 0xfe, 0xc3]);
    let e = run(&cfg, &with_body(body));
    assert_eq!(e.stat("capi.extract_failed"), 1);
    // obs-text in headers Envoy passes through: read lossily, the event still goes.
    let mut ex = checkout("U8-2", Some("u@example.com"));
    ex.request_headers.push((
        "user-agent".into(),
        String::from_utf8_lossy(b"Mozilla/5.0 \xff\xfe (X11)").into_owned(),
    ));
    let mut e = run(&cfg, &ex);
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.delivered"), 1);
    // A form body (the lead rule) that is not UTF-8.
    let lead = Exchange::new(
        "POST",
        "shop.example.com",
        "/forms/contact/submit",
        b"email=a%40b.co&phone=\xff\xff",
        200,
        b"ok",
    )
    .request_header("content-type", "application/x-www-form-urlencoded");
    let e = run(&cfg, &lead);
    assert_eq!(e.stat("capi.extract_failed"), 1);
}

#[test]
fn one_byte_chunks_everywhere() {
    let cfg = config(serde_json::json!({}));
    let mut ex = checkout("ONE-1", Some("one@example.com"));
    ex.response_body = checkout_body("ONE-1", "9.99", Some("one@example.com"));
    ex.response_body.extend(std::iter::repeat_n(b' ', 20_000));
    let mut e = run(
        &cfg,
        &ex.chunked(Chunking::Fixed(1), Chunking::FixedThenEmpty(1)),
    );
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.delivered"), 1);
    // The register rule reads the request body: 1-byte request chunks too.
    let reg = Exchange::new(
        "POST",
        "shop.example.com",
        "/api/register",
        br#"{"email":"reg@example.com"}"#,
        201,
        br#"{"user":{"id":"u-1"}}"#,
    )
    .request_header("content-type", "application/json")
    .chunked(Chunking::Fixed(1), Chunking::Fixed(1));
    let mut e = run(&cfg, &reg);
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.delivered"), 1, "{:#?}", e.log_lines());
}

#[test]
fn gzip_bombs_and_broken_encodings() {
    let cfg = config(serde_json::json!({}));
    // 10 MB of zeros in ~10 KB.
    let bomb = gzip(&vec![0u8; 10 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let e = run(
        &cfg,
        &with_body(bomb).response_header("content-encoding", "gzip"),
    );
    assert_eq!(e.stat("capi.skipped_body_too_large"), 1);
    // A valid gzip body gives the same event as identity.
    let plain = checkout_body("GZ-1", "5.00", Some("gz@example.com"));
    let mut e = run(
        &cfg,
        &with_body(gzip(&plain))
            .response_header("content-encoding", "gzip")
            .chunked(Chunking::Http1, Chunking::Fixed(7)),
    );
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.delivered"), 1, "{:#?}", e.log_lines());
    // Truncated, garbage, stacked and unknown encodings.
    let mut cut = gzip(&plain);
    cut.truncate(cut.len() / 2);
    for (body, enc) in [
        (cut, "gzip"),
        (b"not gzip".to_vec(), "gzip"),
        (b"x".to_vec(), "deflate"),
        (plain.clone(), "gzip, gzip"),
        (plain.clone(), "br"),
    ] {
        let e = run(
            &cfg,
            &with_body(body).response_header("content-encoding", enc),
        );
        let skipped = e.stat("capi.extract_failed")
            + e.stat("capi.skipped_encoding")
            + e.stat("capi.skipped_body_too_large");
        assert_eq!(skipped, 1, "{enc}");
        assert!(e.shared().calls.is_empty(), "{enc}");
    }
}

#[test]
fn resets_empty_bodies_and_odd_headers() {
    let cfg = config(serde_json::json!({}));
    // The upstream resets mid-body: no end of stream, counted as incomplete.
    let mut ex =
        checkout("RST-1", Some("r@example.com")).chunked(Chunking::Http1, Chunking::Fixed(10));
    ex.response_reset = true;
    let e = run(&cfg, &ex);
    assert_eq!(e.stat("capi.skipped_incomplete"), 1);
    // Empty JSON body.
    let e = run(&cfg, &with_body(Vec::new()));
    assert_eq!(e.stat("capi.extract_failed"), 1);
    // Huge and many headers, a :status that is not a number.
    let mut ex = checkout("HDR-1", Some("h@example.com"));
    ex.request_headers.push((
        "cookie".into(),
        format!("capi_guid=x; big={}", "c".repeat(64 * 1024)),
    ));
    for i in 0..500 {
        ex.request_headers
            .push((format!("x-h-{i}"), "v".repeat(100)));
    }
    let mut e = run(&cfg, &ex);
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.delivered"), 1);
    let mut bad_status = checkout("HDR-2", Some("h@example.com"));
    bad_status.response_headers[0].1 = "2OO".into();
    let e = run(&cfg, &bad_status);
    assert_eq!(e.stat("capi.skipped_status"), 1);
    // Trailers on both sides.
    let mut tr = checkout("TR-1", Some("t@example.com"));
    tr.request_trailers = vec![("x-req-trailer".into(), "1".into())];
    tr.response_trailers = vec![("grpc-status".into(), "0".into())];
    let mut e = run(&cfg, &tr);
    assert!(settle(&mut e, 10_000));
    assert_eq!(e.stat("capi.delivered"), 1, "{:#?}", e.log_lines());
}
