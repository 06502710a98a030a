//! `cargo bench -p capi-wasmtime-tests` (the wasm artifacts must be built first):
//!
//! * `filter/checkout_full_path/wasmtime`: one checkout through the built Envoy filter under
//!   wasmtime: request headers and body, response headers and body (Envoy's HTTP/1 chunks),
//!   end of stream, extraction, the 1 ms tick that dispatches, and the destination's 200.
//! * `filter/checkout_full_path/native`: the same core work natively (match, consent,
//!   extract, outbox push, build, answer), without the proxy-wasm plumbing.
//! * `core/build_request/{wasmtime,native}`: `capi_build_request` of the core ABI module
//!   under wasmtime vs the same function natively (config parse, secrets, collect, build,
//!   JSON result).
//! * `core/hash_identifier/{wasmtime,native}`: one email normalized and hashed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use capi_core::extract::Exchange as CoreExchange;
use capi_core::{Answer, Outbox, OutboxConfig, PluginConfig};
use capi_wasmtime_tests::{Envoy, EnvoyOptions, Exchange, Planned, Reply, artifacts};
use criterion::{Criterion, criterion_group, criterion_main};

fn response_body(order: u64) -> Vec<u8> {
    format!(
        r#"{{"order":{{"id":"B-{order}","total":"129.90","currency":"EUR"}},"customer":{{"id":"c-{order}","email":" Shopper.{order}@Example.com ","phone":"+1 (415) 555-2671"}}}}"#
    )
    .into_bytes()
}

fn checkout(order: u64) -> Exchange {
    Exchange::new("POST", "shop.example.com", "/api/checkout", br#"{"cart":"c-1","items":[{"sku":"X","qty":1}]}"#, 200, &response_body(order))
        .request_header("content-type", "application/json")
        .request_header("cookie", "capi_guid=0f8fad5b-d9cb-469f-a165-70867728950e; theme=dark")
        .request_header("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")
        .request_header("accept", "application/json")
        .response_header("content-type", "application/json")
}

fn filter_path(c: &mut Criterion) {
    let cfg = capi_core::config::EXAMPLE_CONFIG.as_bytes();
    let mut g = c.benchmark_group("filter/checkout_full_path");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));

    let module = artifacts::filter().unwrap_or_else(|e| panic!("{e}"));
    let (mut e, root) = Envoy::single(module, EnvoyOptions::default(), cfg).unwrap();
    e.set_responder(|_| Planned {
        delay_ms: 0,
        reply: Reply::status(200),
    });
    let mut n = 0u64;
    g.bench_function("wasmtime", |b| {
        b.iter(|| {
            n += 1;
            let r = e.run_exchange(0, root, &checkout(n)).unwrap();
            e.advance(1).unwrap();
            if n.is_multiple_of(1024) {
                e.clear_records();
            }
            black_box(r);
        })
    });
    assert!(e.shared().traps.is_empty());
    assert!(
        e.stat("capi.delivered") as u64 >= n - 1,
        "the benchmark did not deliver: {:#?}",
        e.log_lines()
    );

    // The same core work, natively.
    let mut config = PluginConfig::from_json(cfg).unwrap();
    config
        .resolve_secrets(|_| Some("test-token".to_owned()))
        .unwrap();
    let mut outbox = Outbox::new(OutboxConfig::from_plugin(&config));
    let ex = checkout(0);
    let req_headers: Vec<(String, String)> = ex
        .request_headers
        .iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .cloned()
        .collect();
    let mut m = 0u64;
    let mut now = 1_795_686_120_000i64;
    g.bench_function("native", |b| {
        b.iter(|| {
            m += 1;
            now += 1;
            let body = response_body(m);
            let rule = config
                .match_request("POST", "shop.example.com", "/api/checkout")
                .unwrap();
            capi_core::consent::check(&config.consent, &req_headers).unwrap();
            let cex = CoreExchange {
                method: "POST",
                host: "shop.example.com",
                path: "/api/checkout",
                request_headers: &req_headers,
                request_body: Some(&ex.request_body),
                response_status: 200,
                response_headers: &[],
                response_body: Some(&body),
                client_ip: None,
            };
            let x = capi_core::extract_event(&config, &config.rules[rule], &cex, now).unwrap();
            outbox.push(x.event, now).unwrap();
            let (id, req) = outbox
                .poll_transmit(now, |evs| capi_core::build_request(&config, evs, now))
                .unwrap()
                .unwrap();
            black_box(&req);
            black_box(outbox.on_answer(
                id,
                &Answer::Http {
                    status: 200,
                    retry_after: None,
                    body: b"",
                },
                now,
                m,
            ));
        })
    });
    g.finish();
}

fn core_build(c: &mut Criterion) {
    let cfg = capi_core::config::EXAMPLE_CONFIG.as_bytes();
    let secrets = br#"{"CAPI_TOKEN":"test-token"}"#;
    let input = br#"{"conversion_type":"Purchase","order_id":"A-1","value":"129.90","currency":"eur","email":" Shopper@Example.com ","phone":"+1 (415) 555-2671","guid":"0F8FAD5B-D9CB-469F-A165-70867728950E","user_agent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"}"#;
    let now = 1_795_686_120_000i64;
    let mut abi = artifacts::core_abi()
        .unwrap_or_else(|e| panic!("{e}"))
        .instantiate()
        .unwrap();
    assert_eq!(
        abi.build_request(cfg, input, secrets, now).unwrap(),
        capi_core_abi::ops::build_request(cfg, input, secrets, now)
    );

    let mut g = c.benchmark_group("core/build_request");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    g.bench_function("wasmtime", |b| {
        b.iter(|| black_box(abi.build_request(cfg, input, secrets, now).unwrap()))
    });
    g.bench_function("native", |b| {
        b.iter(|| {
            black_box(capi_core_abi::ops::build_request(
                black_box(cfg),
                input,
                secrets,
                now,
            ))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("core/hash_identifier");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("wasmtime", |b| {
        b.iter(|| {
            black_box(
                abi.hash_identifier(1, b" Shopper@Example.com ", b"")
                    .unwrap(),
            )
        })
    });
    g.bench_function("native", |b| {
        b.iter(|| {
            black_box(capi_core_abi::ops::hash_identifier(
                1,
                black_box(b" Shopper@Example.com "),
                b"",
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, filter_path, core_build);
criterion_main!(benches);
