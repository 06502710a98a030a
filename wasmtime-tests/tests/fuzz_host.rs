//! Fuzzes what the host feeds the filter: streams interleaved at random across worker VMs,
//! random chunking and resets, random destination answers and delays, manual answers, extra
//! ticks, clock jumps and configuration reloads. After every step: no trap, no change to any
//! stream, no host-rule break; streams that ended gave the client its bytes unchanged; at the
//! end of each case no event was delivered twice and the retry policy held.
//!
//! Run it for a while (seconds of wall time; the seed is printed, and reproduces a case):
//!
//! ```text
//! CAPI_FUZZ_SECS=300 cargo test -p capi-wasmtime-tests --profile wasmtime-tests --test fuzz_host -- --ignored --nocapture
//! CAPI_FUZZ_SEED=1234 CAPI_FUZZ_SECS=1 cargo test -p capi-wasmtime-tests --profile wasmtime-tests --test fuzz_host -- --ignored --nocapture
//! ```
//!
//! `cargo xtask test wasmtime` runs it briefly; `fuzz_smoke` runs a few fixed cases in every
//! `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use capi_wasmtime_tests::envoy::{Envoy, EnvoyOptions, Exchange};
use capi_wasmtime_tests::sink::{self, Kind, Mix};
use capi_wasmtime_tests::{Chunking, Planned, Reply, Rng, artifacts};
use serde_json::{Value, json};

fn base_config(rng: &mut Rng) -> Value {
    let mut v: Value = serde_json::from_str(artifacts::example_config()).unwrap();
    let batch = if rng.chance(30) {
        json!({ "max_events": rng.range(2, 8), "max_wait_ms": rng.range(0, 3000) })
    } else {
        json!({ "max_events": 1, "max_wait_ms": 0 })
    };
    v["destination"]["batch"] = batch;
    v["destination"]["timeout_ms"] = json!(rng.range(50, 5000));
    v["limits"]["queue_capacity"] = json!(rng.range(8, 400));
    // Mostly a dedup window longer than the case, so that an event id names one event and
    // the audit can follow it; sometimes a short or small one (then only the stream-level
    // invariants are checked).
    if rng.chance(80) {
        v["limits"]["dedup_window_ms"] = json!(rng.range(3_600_000, 7_200_000));
        v["limits"]["dedup_capacity"] = json!(1_000_000);
    } else {
        v["limits"]["dedup_window_ms"] = json!(rng.range(0, 20_000));
        v["limits"]["dedup_capacity"] = json!(rng.range(0, 50));
    }
    v["limits"]["max_body_bytes"] = json!(rng.range(64, 8192));
    let base = rng.range(1, 2000);
    v["retry"] = json!({ "max_attempts": rng.range(1, 6), "max_age_ms": rng.range(0, 60_000), "base_backoff_ms": base, "max_backoff_ms": base + rng.range(0, 5000) });
    v
}

fn random_mix(rng: &mut Rng) -> Mix {
    let kinds = [
        Kind::Ok,
        Kind::Rejected,
        Kind::AuthFailed,
        Kind::NotFound,
        Kind::TooManyRequests(rng.range(0, 5) as u32),
        Kind::UnavailableUntil(rng.range(0, 5) as u32),
        Kind::ServerError,
        Kind::ConnectFailure,
        Kind::Reset,
        Kind::Hang,
    ];
    Mix {
        kinds: kinds
            .into_iter()
            .map(|k| (rng.range(0, 10) as u32, k))
            .collect(),
        delay_ms: (0, rng.range(0, 3000)),
    }
}

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rng.fill(&mut b);
    b
}

fn random_exchange(rng: &mut Rng, n: u64) -> Exchange {
    let order = format!("F-{}", rng.below(n.max(1) * 2));
    let email = ["a@example.com", "B@EXAMPLE.COM ", "bad", ""][rng.below(4) as usize];
    let body = |rng: &mut Rng| -> Vec<u8> {
        match rng.below(8) {
            0 => {
                let n = rng.below(300) as usize;
                random_bytes(rng, n)
            }
            1 => b"[".repeat(rng.below(5000) as usize),
            2 => Vec::new(),
            _ => {
                let total = ["12.50", "0", "-1", "x"][rng.below(4) as usize];
                let currency = ["EUR", "usd", "EURO"][rng.below(3) as usize];
                let id = format!("c-{}", rng.below(100));
                serde_json::to_vec(&json!({
                    "order": { "id": order, "total": total, "currency": currency },
                    "customer": { "email": email, "phone": "+1 415 555 2671", "id": id }
                }))
                .unwrap()
            }
        }
    };
    let mut ex = match rng.below(6) {
        0 => Exchange::new("GET", "shop.example.com", "/product/1", b"", 200, b"<html>"),
        1 => Exchange::new(
            "POST",
            "shop.example.com",
            "/api/register",
            &serde_json::to_vec(&json!({ "email": email })).unwrap(),
            201,
            br#"{"user":{"id":"u-1"}}"#,
        )
        .request_header("content-type", "application/json"),
        2 => Exchange::new(
            "POST",
            "shop.example.com",
            "/forms/x/submit",
            format!("email={email}&phone=%2B14155552671").as_bytes(),
            200,
            b"ok",
        )
        .request_header("content-type", "application/x-www-form-urlencoded"),
        _ => {
            let rb = body(rng);
            Exchange::new(
                "POST",
                "shop.example.com",
                "/api/checkout",
                b"{}",
                [200, 201, 500][rng.below(3) as usize],
                &rb,
            )
            .request_header("content-type", "application/json")
            .response_header(
                "content-type",
                [
                    "application/json",
                    "text/html",
                    "application/json; charset=utf-8",
                ][rng.below(3) as usize],
            )
        }
    };
    ex = ex.request_header(
        "cookie",
        [
            "capi_guid=0f8fad5b-d9cb-469f-a165-70867728950e",
            "capi_consent=denied",
            "capi_guid=zz",
        ][rng.below(3) as usize],
    );
    if rng.chance(10) {
        ex = ex.request_header("sec-gpc", "1");
    }
    if rng.chance(10) {
        ex = ex.response_header(
            "content-encoding",
            ["gzip", "deflate", "br"][rng.below(3) as usize],
        );
    }
    if rng.chance(10) {
        ex = ex.response_header("content-length", &rng.below(100_000).to_string());
    }
    if rng.chance(5) {
        ex.response_trailers = vec![("x-t".into(), "1".into())];
    }
    let chunking = |rng: &mut Rng| match rng.below(5) {
        0 => Chunking::Whole,
        1 => Chunking::Http1,
        2 => Chunking::Fixed(rng.range(1, 64) as usize),
        3 => Chunking::FixedThenEmpty(rng.range(1, 64) as usize),
        _ => Chunking::Sizes(
            (0..rng.below(6)).map(|_| rng.below(40) as usize).collect(),
            rng.chance(50),
        ),
    };
    let (a, b) = (chunking(rng), chunking(rng));
    ex = ex.chunked(a, b);
    ex.response_reset = rng.chance(5);
    ex
}

/// The callbacks of one exchange, to be run one at a time, interleaved with others.
enum Step {
    ReqHeaders(bool),
    ReqBody(Vec<u8>, bool),
    ReqTrailers,
    RespHeaders(bool),
    RespBody(Vec<u8>, bool),
    RespTrailers,
    End,
}

fn steps(ex: &Exchange) -> Vec<Step> {
    let mut s = Vec::new();
    let rq_body = !ex.request_body.is_empty();
    let rq_tr = !ex.request_trailers.is_empty();
    s.push(Step::ReqHeaders(!rq_body && !rq_tr));
    if rq_body {
        for (c, eos) in ex.request_chunking.split(&ex.request_body) {
            s.push(Step::ReqBody(c, eos && !rq_tr));
        }
    }
    if rq_tr {
        s.push(Step::ReqTrailers);
    }
    let rs_body = !ex.response_body.is_empty();
    let rs_tr = !ex.response_trailers.is_empty();
    s.push(Step::RespHeaders(!rs_body && !rs_tr && !ex.response_reset));
    if rs_body {
        let chunks = ex.response_chunking.split(&ex.response_body);
        let n = chunks.len();
        for (i, (c, eos)) in chunks.into_iter().enumerate() {
            if ex.response_reset && i + 1 == n {
                break;
            }
            s.push(Step::RespBody(c, eos && !rs_tr));
        }
    }
    if rs_tr && !ex.response_reset {
        s.push(Step::RespTrailers);
    }
    s.push(Step::End);
    s.reverse();
    s
}

struct Open {
    vm: usize,
    ctx: u32,
    ex: Exchange,
    steps: Vec<Step>,
}

fn check(e: &Envoy, what: &str) {
    let sh = e.shared();
    assert!(sh.traps.is_empty(), "{what}: trap: {:#?}", sh.traps);
    assert!(
        sh.mutations.is_empty(),
        "{what}: the filter changed a stream: {:#?}",
        sh.mutations
    );
    assert!(sh.anomalies.is_empty(), "{what}: {:#?}", sh.anomalies);
}

/// One fuzz case. Returns the number of operations run.
fn case(seed: u64, ops: usize) -> usize {
    let mut rng = Rng::new(seed);
    let label = format!("seed {seed}");
    let cfg_v = base_config(&mut rng);
    let cfg = serde_json::to_vec(&cfg_v).unwrap();
    let options = EnvoyOptions {
        seed,
        start_ms: 1_795_686_120_000 + rng.below(1 << 30) as i64,
        ..EnvoyOptions::default()
    };
    let mut e = Envoy::new(
        artifacts::filter().unwrap_or_else(|err| panic!("{err}")),
        options,
    )
    .unwrap();
    let vms = rng.range(1, 3) as usize;
    let mut roots: BTreeMap<usize, u32> = BTreeMap::new();
    for _ in 0..vms {
        let vm = e.add_vm().unwrap();
        let (root, ok) = e.start_root(vm, &cfg).unwrap();
        assert!(ok, "{label}: config refused: {:#?}", e.log_lines());
        roots.insert(vm, root);
    }
    let manual = rng.chance(20);
    if !manual {
        e.set_responder(sink::responder(seed ^ 0xA5A5, random_mix(&mut rng)));
    }
    let mut open: Vec<Open> = Vec::new();
    let mut reloaded = false;
    let mut started = 0u64;
    for op in 0..ops {
        let what = format!("{label} op {op}");
        match rng.below(100) {
            0..=24 => {
                let vm = rng.below(vms as u64) as usize;
                let ex = random_exchange(&mut rng, started + 1);
                started += 1;
                let ctx = e
                    .create_http(vm, roots[&vm])
                    .unwrap_or_else(|err| panic!("{what}: {err}"));
                let steps = steps(&ex);
                open.push(Open { vm, ctx, ex, steps });
            }
            25..=74 if !open.is_empty() => {
                let i = rng.below(open.len() as u64) as usize;
                let o = &mut open[i];
                let (vm, ctx) = (o.vm, o.ctx);
                let step = o.steps.pop().unwrap_or(Step::End);
                let ex = o.ex.clone();
                let r = match step {
                    Step::ReqHeaders(eos) => e
                        .request_headers(vm, ctx, &ex.request_headers, eos)
                        .map(|_| ()),
                    Step::ReqBody(c, eos) => e.request_body(vm, ctx, &c, eos).map(|_| ()),
                    Step::ReqTrailers => e
                        .request_trailers(vm, ctx, &ex.request_trailers)
                        .map(|_| ()),
                    Step::RespHeaders(eos) => e
                        .response_headers(vm, ctx, &ex.response_headers, eos)
                        .map(|_| ()),
                    Step::RespBody(c, eos) => e.response_body(vm, ctx, &c, eos).map(|_| ()),
                    Step::RespTrailers => e
                        .response_trailers(vm, ctx, &ex.response_trailers)
                        .map(|_| ()),
                    Step::End => {
                        let o = open.swap_remove(i);
                        let r = e
                            .end_stream(vm, ctx)
                            .unwrap_or_else(|err| panic!("{what}: {err}"));
                        assert!(r.never_paused(), "{what}: paused {:?}", r.actions);
                        if !o.ex.response_reset {
                            assert!(
                                r.client_body == o.ex.response_body,
                                "{what}: the client's bytes changed"
                            );
                        }
                        assert_eq!(r.upstream_body, o.ex.request_body, "{what}");
                        Ok(())
                    }
                };
                r.unwrap_or_else(|err| panic!("{what}: {err}"));
            }
            75..=89 => e
                .advance(rng.range(0, 3000))
                .unwrap_or_else(|err| panic!("{what}: {err}")),
            90..=93 => {
                let vm = rng.below(vms as u64) as usize;
                e.tick(vm, roots[&vm])
                    .unwrap_or_else(|err| panic!("{what}: {err}"));
            }
            94..=97 if manual => {
                let vm = rng.below(vms as u64) as usize;
                let toks = e.pending_tokens(vm);
                if let Some(t) = rng.pick(&toks).copied() {
                    let mix = random_mix(&mut rng);
                    let reply = match sink::reply(&mix.pick(&mut rng), e.now_ms()) {
                        Reply::Hang => Reply::envoy_timeout(),
                        r => r,
                    };
                    e.answer(vm, t, reply)
                        .unwrap_or_else(|err| panic!("{what}: {err}"));
                }
            }
            98 if rng.chance(30) && open.is_empty() => {
                // A reload: a new root with another configuration, the old one retired.
                let vm = rng.below(vms as u64) as usize;
                let new_cfg = serde_json::to_vec(&base_config(&mut rng)).unwrap();
                let (root, ok) = e
                    .start_root(vm, &new_cfg)
                    .unwrap_or_else(|err| panic!("{what}: {err}"));
                assert!(ok, "{what}");
                let old = roots.insert(vm, root).unwrap();
                e.retire_root(vm, old)
                    .unwrap_or_else(|err| panic!("{what}: {err}"));
                reloaded = true;
            }
            _ => {}
        }
        check(&e, &what);
    }
    // Finish every stream, let every answer and retry come.
    for o in std::mem::take(&mut open) {
        e.end_stream(o.vm, o.ctx)
            .unwrap_or_else(|err| panic!("{label}: {err}"));
    }
    if manual {
        e.set_responder(|_| Planned {
            delay_ms: 10,
            reply: Reply::status(200),
        });
        for vm in 0..vms {
            for t in e.pending_tokens(vm) {
                e.answer(vm, t, Reply::status(200))
                    .unwrap_or_else(|err| panic!("{label}: {err}"));
            }
        }
    }
    e.advance(6 * 60 * 60 * 1000)
        .unwrap_or_else(|err| panic!("{label}: {err}"));
    check(&e, &label);
    assert!(
        e.stat("capi.queue_depth") >= 0,
        "{label}: negative queue depth"
    );
    let strict_dedup = cfg_v["limits"]["dedup_capacity"] == json!(1_000_000);
    if !reloaded && vms == 1 && strict_dedup {
        let c = capi_core::PluginConfig::from_json(&cfg).unwrap();
        let a = sink::audit(
            &e.shared(),
            &e.delivered,
            &c.retry,
            64,
            c.destination.batch.max_wait_ms,
        );
        assert!(
            sink::delivered_twice(&a).is_empty(),
            "{label}: delivered twice"
        );
        assert!(
            a.violations.is_empty(),
            "{label}: {:#?}\nconfig {cfg_v}",
            a.violations
        );
    }
    ops
}

#[test]
fn fuzz_smoke() {
    for seed in 1..=4 {
        case(seed, 400);
    }
}

#[test]
#[ignore = "long: run with CAPI_FUZZ_SECS=<seconds> (see the file's docs)"]
fn fuzz_host() {
    let secs: u64 = std::env::var("CAPI_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let fixed: Option<u64> = std::env::var("CAPI_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let mut seed = fixed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut cases, mut ops) = (0u64, 0usize);
    loop {
        eprintln!("fuzz case seed {seed}");
        ops += case(seed, 1500);
        cases += 1;
        if fixed.is_some() || Instant::now() >= end {
            break;
        }
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    eprintln!("fuzz: {cases} cases, {ops} operations, no failure");
}
