//! One typical purchase through the core, as the Envoy filter sees it: the checkout exchange
//! (a real Chrome User-Agent, the `capi_guid` cookie, a ~1 KB JSON response naming the
//! customer's email and phone) is extracted, normalized, hashed and built into request bytes
//! under examples/config.json. Plus the pieces: User-Agent parsing, email hashing, config
//! parsing. Run with `cargo xtask bench core` (or `cargo bench -p capi-core --bench purchase`).
//!
//! `CAPI_BENCH_CLOCK=cpu` measures this thread's CPU time instead of wall time, so that other
//! processes on a shared machine do not inflate the figures (they still share caches).

use std::error::Error;
use std::hint::black_box;

use capi_core::click_id::{click_ids_of_request, normalize_ip};
use capi_core::normalize::{hash_email, phone_identifier};
use capi_core::user_agent::parse_user_agent;
use capi_core::{CapiRequest, Exchange, PluginConfig, build_request, extract_event};
use capi_core::{ConversionType, IdName, Identifier, Timestamp, event_id, json_select};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};

const EXAMPLE_CONFIG: &[u8] = include_bytes!("../../examples/config.json");
const CHROME_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const NOW: i64 = 1_764_150_000_000;

/// A ~1 KB checkout response: the order with its lines, the customer (email and phone, no
/// customer id, so the event carries 3 identifiers with the `capi_guid` cookie).
const RESPONSE: &str = r#"{"order":{"id":"ORD-1001","status":"confirmed","total":"149.90","subtotal":"139.90","shipping":"10.00","tax":"23.93","currency":"eur","created_at":"2026-11-26T09:40:00Z","lines":[{"sku":"TSHIRT-BLK-M","name":"Organic cotton T-shirt, black, M","qty":2,"unit_price":"24.95","total":"49.90"},{"sku":"HOODIE-GRY-L","name":"Recycled fleece hoodie, grey, L","qty":1,"unit_price":"69.90","total":"69.90"},{"sku":"SOCKS-3PK","name":"Merino socks, 3 pack","qty":1,"unit_price":"20.10","total":"20.10"}],"shipping_address":{"name":"Jane Doe","line1":"1 Market Street","line2":"Suite 300","city":"San Francisco","postal_code":"94105","country":"US"},"payment":{"method":"card","brand":"visa","last4":"4242"},"coupon":null},"customer":{"email":" Jane.Doe+shop@Example.com ","phone":"+1 (415) 555-2671","first_name":"Jane","last_name":"Doe","marketing_opt_in":true,"loyalty":{"tier":"gold","points":1280}},"links":{"self":"/api/orders/ORD-1001","receipt":"/api/orders/ORD-1001/receipt.pdf"}}"#;

struct Fixture {
    config: PluginConfig,
    rule: usize,
    request_headers: Vec<(String, String)>,
    request_body: Vec<u8>,
    response_headers: Vec<(String, String)>,
}

impl Fixture {
    fn new() -> Result<Self, Box<dyn Error>> {
        let mut config = PluginConfig::from_json(EXAMPLE_CONFIG).map_err(|e| e.to_string())?;
        config
            .resolve_secrets(|_| Some("bench-token".to_owned()))
            .map_err(|e| e.to_string())?;
        let rule = config
            .match_request("POST", "shop.example", "/api/checkout")
            .ok_or("no rule matches /api/checkout")?;
        let h = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        Ok(Self {
            config,
            rule,
            request_headers: vec![
                h("host", "shop.example"),
                h("user-agent", CHROME_UA),
                h("accept", "application/json"),
                h("content-type", "application/json"),
                h(
                    "cookie",
                    "theme=dark; capi_guid=85b04ded-09dd-4015-ad30-581e45452dd9; session=eyJhbGciOiJIUzI1NiJ9.x.y",
                ),
            ],
            request_body: br#"{"cart_id":"c-77","payment_token":"tok_visa"}"#.to_vec(),
            response_headers: vec![h("content-type", "application/json; charset=utf-8")],
        })
    }

    fn exchange(&self) -> Exchange<'_> {
        Exchange {
            method: "POST",
            host: "shop.example",
            path: "/api/checkout",
            request_headers: &self.request_headers,
            request_body: Some(&self.request_body),
            response_status: 200,
            response_headers: &self.response_headers,
            response_body: Some(RESPONSE.as_bytes()),
            client_ip: Some("203.0.113.7:51234"),
        }
    }

    /// The whole path for one event: match the rule, extract + normalize + hash, build.
    fn one_event(&self) -> Option<CapiRequest> {
        let rule = &self.config.rules[self.config.match_request(
            "POST",
            "shop.example",
            "/api/checkout",
        )?];
        let out = extract_event(&self.config, rule, &self.exchange(), NOW).ok()?;
        build_request(&self.config, std::slice::from_ref(&out.event), NOW).ok()
    }
}

/// CPU time consumed by the calling thread (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
struct ThreadCpuTime;

static WALL: WallTime = WallTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, as for wall time: same units, same formatting.
        WALL.formatter()
    }
}

/// `clock` suffixes the group names (`purchase@cpu`), so the two clocks keep separate
/// baselines and their figures are never compared with each other.
fn benches<M: Measurement>(
    c: &mut Criterion<M>,
    f: &Fixture,
    clock: &str,
) -> Result<(), Box<dyn Error>> {
    {
        let mut g = c.benchmark_group(format!("purchase{clock}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("extract+build", |b| b.iter(|| black_box(f.one_event())));
        let rule = &f.config.rules[f.rule];
        g.bench_function("extract", |b| {
            b.iter(|| black_box(extract_event(&f.config, rule, black_box(&f.exchange()), NOW).ok()))
        });
        let events = [extract_event(&f.config, rule, &f.exchange(), NOW)
            .map_err(|e| e.to_string())?
            .event];
        g.bench_function("build", |b| {
            b.iter(|| black_box(build_request(&f.config, black_box(&events), NOW).ok()))
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group(format!("parts{clock}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("parse_user_agent/chrome", |b| {
            b.iter(|| parse_user_agent(black_box(CHROME_UA)))
        });
        g.bench_function("hash_email", |b| {
            b.iter(|| hash_email(black_box(" Jane.Doe+shop@Example.com ")))
        });
        g.bench_function("hash_phone", |b| {
            b.iter(|| phone_identifier(black_box("+1 (415) 555-2671"), "1", true))
        });
        // The pointers the checkout rule reads from the response, in one pass over 978 bytes.
        let pointers = [
            "/order/id",
            "/order/total",
            "/order/currency",
            "/customer/email",
            "/customer/phone",
            "/customer/id",
        ];
        // As the extractor reads them: through the tree the configuration built once.
        let tree = json_select::PointerTree::new(&pointers);
        g.bench_function("json_select/response", |b| {
            b.iter(|| {
                let mut out = [const { None }; 6];
                tree.select_into(black_box(RESPONSE.as_bytes()), &mut out)
                    .ok()
                    .map(|()| out)
            })
        });
        // `json_select::select`: the tree built per call as well.
        g.bench_function("json_select/response_with_tree", |b| {
            b.iter(|| json_select::select(black_box(RESPONSE.as_bytes()), &pointers).ok())
        });
        g.bench_function("click_ids_of_request", |b| {
            b.iter(|| click_ids_of_request(black_box(&f.request_headers), "/api/checkout"))
        });
        g.bench_function("normalize_ip", |b| {
            b.iter(|| normalize_ip(black_box("203.0.113.7:51234")))
        });
        let first = Identifier {
            id: "85b04ded-09dd-4015-ad30-581e45452dd9".to_owned(),
            name: IdName::Guid,
        };
        g.bench_function("event_id", |b| {
            b.iter(|| {
                event_id::derive(
                    12345,
                    &ConversionType::Purchase,
                    black_box(Some("ORD-1001")),
                    &first,
                    Timestamp(NOW),
                )
            })
        });
        g.bench_function("config_from_json/example", |b| {
            b.iter(|| PluginConfig::from_json(black_box(EXAMPLE_CONFIG)).ok())
        });
        g.finish();
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let f = Fixture::new()?;
    // Measure only what works: the event must carry the 3 identifiers and a parsed UA.
    let req = f
        .one_event()
        .ok_or("the benchmark purchase does not build")?;
    let body = String::from_utf8(req.body.clone())?;
    for want in [
        "\"HashedEmail\"",
        "\"HashedPhone\"",
        "\"Guid\"",
        "\"Chrome\"",
        "ORD-1001",
        "\"client_ip_address\":\"203.0.113.7\"",
    ] {
        if !body.contains(want) {
            return Err(format!("request body lacks {want}: {body}").into());
        }
    }
    // `CAPI_BENCH_EVENTS=n`: only run the whole path n times, no measurement, for
    // instruction counts (`valgrind --tool=callgrind`, n=1 and n=1001: the difference / 1000
    // is what one event costs, without the setup).
    if let Ok(n) = std::env::var("CAPI_BENCH_EVENTS") {
        for _ in 0..n.parse::<u32>()? {
            black_box(f.one_event());
        }
        return Ok(());
    }
    if std::env::var("CAPI_BENCH_CLOCK").is_ok_and(|v| v == "cpu") {
        if thread_cpu_ns() == 0 {
            return Err("CAPI_BENCH_CLOCK=cpu: no thread CPU clock on this system".into());
        }
        eprintln!("purchase: measuring thread CPU time (CAPI_BENCH_CLOCK=cpu)");
        let mut c = Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args();
        benches(&mut c, &f, "@cpu")?;
        c.final_summary();
    } else {
        eprintln!("purchase: measuring wall time (CAPI_BENCH_CLOCK=cpu for thread CPU time)");
        let mut c = Criterion::default().configure_from_args();
        benches(&mut c, &f, "")?;
        c.final_summary();
    }
    eprintln!(
        "purchase: response body {} bytes, request body {} bytes",
        RESPONSE.len(),
        req.body.len()
    );
    Ok(())
}
