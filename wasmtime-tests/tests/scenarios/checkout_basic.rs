//! One checkout end to end: the request the filter dispatches carries exactly the bytes the
//! native core builds for the same exchange, the client is never delayed, and the answer
//! settles the event.

use capi_core::extract::Exchange as CoreExchange;
use capi_wasmtime_tests::abi::Action;
use capi_wasmtime_tests::{Chunking, Planned, Reply};

use crate::common::*;

#[test]
fn one_checkout_is_delivered_with_the_core_bytes() {
    let cfg = config(serde_json::json!({}));
    let (mut e, root) = envoy(&cfg);
    e.set_responder(|_| Planned {
        delay_ms: 20,
        reply: Reply::status(200),
    });
    let ex = checkout("A-1", Some(" Alice@Example.com "));
    let t0 = e.now_ms();
    let r = e.run_exchange(0, root, &ex).unwrap();
    assert!(r.never_paused(), "{:?}", r.actions);
    assert_eq!(
        r.client_body, ex.response_body,
        "the client got other bytes"
    );
    assert_eq!(r.upstream_body, ex.request_body);
    assert!(settle(&mut e, 10_000));
    assert_clean(&e);

    let sh = e.shared();
    assert_eq!(sh.calls.len(), 1, "{:#?}", sh.calls);
    let call = &sh.calls[0];
    assert_eq!(call.cluster, "capi_destination");
    assert_eq!(call.header(":method"), Some("POST"));
    assert_eq!(call.header(":path"), Some("/v1/conversions"));
    assert_eq!(call.header(":authority"), Some("127.0.0.1:9443"));
    assert_eq!(call.header("authorization"), Some("Bearer test-token"));
    assert_eq!(call.timeout_ms, 5000);
    // Dispatched from the root context (its 1 ms kick tick), not from the HTTP context.
    assert_eq!(call.from_context, root);
    assert!(
        call.dispatched_at_ms - t0 <= 1,
        "dispatched {} ms after the checkout",
        call.dispatched_at_ms - t0
    );

    // The native core on the same exchange builds the same body, byte for byte.
    let mut c = parsed(&cfg);
    c.resolve_secrets(|_| Some("test-token".to_owned()))
        .unwrap();
    let req_headers: Vec<(String, String)> = ex
        .request_headers
        .iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let core_ex = CoreExchange {
        method: "POST",
        host: "shop.example.com",
        path: "/api/checkout",
        request_headers: &req_headers,
        request_body: Some(&ex.request_body),
        response_status: 200,
        response_headers: &[],
        response_body: Some(&ex.response_body),
        client_ip: None,
    };
    let x = capi_core::extract_event(&c, &c.rules[0], &core_ex, t0).unwrap();
    let native = capi_core::build_request(&c, &[x.event], t0).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&call.body),
        String::from_utf8_lossy(&native.body)
    );
    assert_eq!(call.header("content-type"), Some("application/json"));
    drop(sh);

    assert_eq!(e.stat("capi.matched"), 1);
    assert_eq!(e.stat("capi.events"), 1);
    assert_eq!(e.stat("capi.requests"), 1);
    assert_eq!(e.stat("capi.delivered"), 1);
    assert_eq!(e.stat("capi.queue_depth"), 0);
}

#[test]
fn any_chunking_gives_the_same_request() {
    let cfg = config(serde_json::json!({}));
    let mut bodies = Vec::new();
    for chunking in [
        Chunking::Whole,
        Chunking::Http1,
        Chunking::Fixed(1),
        Chunking::FixedThenEmpty(7),
        Chunking::Sizes(vec![0, 3, 0, 50], true),
    ] {
        let (mut e, root) = envoy(&cfg);
        e.set_responder(|_| Planned {
            delay_ms: 5,
            reply: Reply::status(200),
        });
        let ex =
            checkout("CH-1", Some("bob@example.com")).chunked(chunking.clone(), chunking.clone());
        let r = e.run_exchange(0, root, &ex).unwrap();
        assert!(r.never_paused(), "{chunking:?}: {:?}", r.actions);
        assert_eq!(r.client_body, ex.response_body, "{chunking:?}");
        assert!(settle(&mut e, 10_000));
        assert_clean(&e);
        assert_eq!(
            e.stat("capi.delivered"),
            1,
            "{chunking:?}: {:#?}",
            e.log_lines()
        );
        bodies.push(e.shared().calls[0].body.clone());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "chunking changed the event"
    );
}

#[test]
fn non_matching_and_consent_denied_exchanges_send_nothing() {
    let cfg = config(serde_json::json!({}));
    let (mut e, root) = envoy(&cfg);
    e.set_responder(|_| Planned {
        delay_ms: 5,
        reply: Reply::status(200),
    });
    // No rule for GET /.
    let r = e
        .run_exchange(
            0,
            root,
            &capi_wasmtime_tests::Exchange::new(
                "GET",
                "shop.example.com",
                "/",
                b"",
                200,
                b"<html>",
            ),
        )
        .unwrap();
    assert!(r.actions.iter().all(|(_, a)| *a == Action::Continue));
    // Global Privacy Control.
    e.run_exchange(
        0,
        root,
        &checkout("GPC-1", Some("a@b.co")).request_header("sec-gpc", "1"),
    )
    .unwrap();
    // The consent cookie says no.
    let mut denied = checkout("CK-1", Some("a@b.co"));
    denied.request_headers.retain(|(k, _)| k != "cookie");
    e.run_exchange(
        0,
        root,
        &denied.request_header("cookie", "capi_consent=denied"),
    )
    .unwrap();
    // Status 500 does not match the rule.
    let mut failed = checkout("ST-1", Some("a@b.co"));
    failed.response_headers[0].1 = "500".into();
    e.run_exchange(0, root, &failed).unwrap();
    e.advance(5000).unwrap();
    assert_clean(&e);
    assert!(e.shared().calls.is_empty(), "{:#?}", e.shared().calls);
    assert_eq!(e.stat("capi.skipped_no_rule"), 1);
    assert_eq!(e.stat("capi.skipped_consent"), 2);
    assert_eq!(e.stat("capi.skipped_status"), 1);
}
