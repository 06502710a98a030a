//! The core ABI module under wasmtime gives, byte for byte, what the same operations give
//! natively, over thousands of generated inputs; and the native answers agree with capi-core.

use capi_core_abi::{ABI_VERSION, ops};
use capi_wasmtime_tests::{Rng, artifacts};
use serde_json::{Value, json};

use crate::common::*;

const N: usize = 3000;

fn abi() -> capi_wasmtime_tests::core_abi::CoreAbi {
    artifacts::core_abi()
        .unwrap_or_else(|e| panic!("{e}"))
        .instantiate()
        .unwrap()
}

fn pick<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.below(xs.len() as u64) as usize]
}

fn text(rng: &mut Rng) -> String {
    let pool = [
        "a", "Z", "0", "9", "@", ".", "-", "+", " ", "é", "ß", "💥", "\u{0}", "\t", "\"", "\\",
        "/", "(", ")", "𝔘",
    ];
    let n = rng.below(24);
    (0..n)
        .map(|_| pool[rng.below(pool.len() as u64) as usize])
        .collect()
}

fn email(rng: &mut Rng) -> Value {
    let xs = [
        " Alice@Example.COM ",
        "bob+tag@shop.co.uk",
        "no-at-sign",
        "a@b",
        "@example.com",
        "x@-bad-.com",
        "UPPER@CASE.ORG",
        "",
        "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        "q\"uote@example.com",
        "unicode@例え.jp",
    ];
    if rng.chance(15) {
        json!(text(rng))
    } else if rng.chance(3) {
        json!(12345)
    } else {
        json!(pick(rng, &xs))
    }
}

fn phone(rng: &mut Rng) -> Value {
    let xs = [
        "+1 (415) 555-2671",
        "415.555.2671",
        "0044 20 7946 0958",
        "020 7946 0958",
        "+49 30 901820",
        "123",
        "+1 415 555 2671 ext 9",
        "14155552671",
        "+999999999999999999",
        "not a phone",
    ];
    if rng.chance(10) {
        json!(text(rng))
    } else {
        json!(pick(rng, &xs))
    }
}

/// A collect payload that should build: the common case.
fn valid_payload(rng: &mut Rng) -> Vec<u8> {
    let mut o = json!({
        "conversion_type": pick(rng, &["Purchase", "Signup", "Lead", "Page View", "Subscribe"]),
        "currency": pick(rng, &["EUR", "usd", "JPY", "BHD"]),
    });
    if rng.chance(70) {
        o["order_id"] = json!(format!("A-{}", rng.below(1_000_000)));
    }
    if rng.chance(60) {
        o["value"] = json!(pick(rng, &["12.50", "0", "999999.99", "0.01"]));
    } else if rng.chance(30) {
        o["value_minor"] = json!(rng.below(1_000_000));
    }
    let ids = rng.range(1, 15);
    if ids & 1 != 0 {
        o["email"] = json!(format!("User{}@Example.com ", rng.below(1000)));
    }
    if ids & 2 != 0 {
        o["phone"] = json!(pick(
            rng,
            &[
                "+1 (415) 555-2671",
                "415.555.2671",
                "+49 30 901820",
                "020 7946 0958"
            ]
        ));
    }
    if ids & 4 != 0 {
        o["guid"] = json!("0F8FAD5B-D9CB-469F-A165-70867728950E");
    }
    if ids & 8 != 0 {
        o["first_party_id"] = json!(format!("cust-{}", rng.below(1000)));
    }
    if rng.chance(30) {
        o["timestamp"] = json!("2026-11-26T10:42:00.123+01:00");
    }
    if rng.chance(50) {
        o["user_agent"] = json!(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36"
        );
    }
    serde_json::to_vec(&o).unwrap()
}

fn payload(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(50) {
        return valid_payload(rng);
    }
    if rng.chance(4) {
        let junk = [
            &b"not json"[..],
            b"[1,2]",
            b"{\"conversion_type\":",
            b"\xff\xfe{}",
            b"",
            b"null",
            b"{}",
        ];
        return junk[rng.below(junk.len() as u64) as usize].to_vec();
    }
    let mut o = serde_json::Map::new();
    if !rng.chance(3) {
        let types = [
            "Purchase",
            "Page View",
            "Signup",
            "Lead",
            "Subscribe",
            "",
            " Lead",
            &"x".repeat(65),
        ];
        o.insert(
            "conversion_type".into(),
            json!(types[rng.below(types.len() as u64) as usize]),
        );
    }
    if rng.chance(70) {
        o.insert(
            "order_id".into(),
            if rng.chance(5) {
                json!(42)
            } else if rng.chance(3) {
                json!("o".repeat(300))
            } else {
                json!(format!("A-{}", rng.below(1_000_000)))
            },
        );
    }
    if rng.chance(60) {
        let vs = [
            json!("12.50"),
            json!(12.5),
            json!("0"),
            json!("abc"),
            json!(-1),
            json!(1e308),
            json!("1e3"),
            json!(0.1),
            json!("  7.25 "),
            json!(null),
        ];
        o.insert(
            "value".into(),
            vs[rng.below(vs.len() as u64) as usize].clone(),
        );
    }
    if rng.chance(15) {
        let vs = [json!(1250), json!("1250"), json!(12.5), json!(-5)];
        o.insert(
            "value_minor".into(),
            vs[rng.below(vs.len() as u64) as usize].clone(),
        );
    }
    if rng.chance(80) {
        let cs = ["eur", "USD", "JPY", "BHD", "XXX", "EURO", "", "usd "];
        o.insert("currency".into(), json!(pick(rng, &cs)));
    }
    if rng.chance(70) {
        o.insert("email".into(), email(rng));
    }
    if rng.chance(50) {
        o.insert("phone".into(), phone(rng));
    }
    if rng.chance(30) {
        let gs = [
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
            "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
            "nope",
        ];
        o.insert("guid".into(), json!(pick(rng, &gs)));
    }
    if rng.chance(30) {
        o.insert(
            "first_party_id".into(),
            if rng.chance(10) {
                json!("f".repeat(300))
            } else {
                json!(text(rng))
            },
        );
    }
    if rng.chance(25) {
        let ts = [
            "2026-11-26T09:42:00Z",
            "2026-11-26T10:42:00.123+01:00",
            "2026-02-30T00:00:00Z",
            "yesterday",
            "2026-11-26",
        ];
        o.insert("timestamp".into(), json!(pick(rng, &ts)));
    }
    if rng.chance(40) {
        let uas = [
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
            "Googlebot/2.1 (+http://www.google.com/bot.html)",
            "",
        ];
        o.insert(
            "user_agent".into(),
            if rng.chance(10) {
                json!("U".repeat(3000))
            } else {
                json!(pick(rng, &uas))
            },
        );
    }
    if rng.chance(3) {
        o.insert("unknown_field".into(), json!(1));
    }
    serde_json::to_vec(&Value::Object(o)).unwrap()
}

fn configs() -> Vec<Vec<u8>> {
    vec![
        config(json!({})),
        config(
            json!({ "auth": { "bearer_token_env": null, "bearer_token": "inline-token", "hmac": { "secret_env": "HMAC_KEY" } } }),
        ),
        config(
            json!({ "auth": { "hmac": { "secret": "s3cr3t", "signature_header": "X-Sig", "timestamp_header": "X-Ts" } } }),
        ),
        config(json!({ "identifiers": { "phone_as": "Phone", "default_calling_code": "44" } })),
        config(
            json!({ "destination": { "advertiser_id": u64::MAX, "data_source_key": "k".repeat(256) } }),
        ),
        config(json!({ "destination": { "url": "http://example.com/x" } })),
        config(json!({ "rules": [] })),
        b"{not json".to_vec(),
        Vec::new(),
    ]
}

#[test]
fn version_is_stable() {
    assert_eq!(abi().version().unwrap(), ABI_VERSION);
    assert_eq!(ABI_VERSION, 1);
}

#[test]
fn build_request_matches_native_byte_for_byte() {
    let mut m = abi();
    let mut rng = Rng::new(7);
    let cfgs = configs();
    let secrets: [&[u8]; 6] = [
        br#"{"CAPI_TOKEN":"tok","HMAC_KEY":"k"}"#,
        b"{}",
        b"",
        b"not json",
        br#"{"CAPI_TOKEN":5}"#,
        br#"{"CAPI_TOKEN":""}"#,
    ];
    let (mut ok, mut errors) = (0, 0);
    let mut start_mem = 0;
    for i in 0..N {
        let cfg = if rng.chance(85) {
            &cfgs[rng.below(4) as usize]
        } else {
            &cfgs[rng.below(cfgs.len() as u64) as usize]
        };
        let sec = if rng.chance(85) {
            secrets[0]
        } else {
            secrets[rng.below(secrets.len() as u64) as usize]
        };
        let input = payload(&mut rng);
        let now = rng.range(0, 4_102_444_800_000) as i64
            - if rng.chance(2) { 5_000_000_000_000 } else { 0 };
        let wasm = m.build_request(cfg, &input, sec, now).unwrap();
        let native = ops::build_request(cfg, &input, sec, now);
        assert!(
            wasm == native,
            "input {i} differs:\nconfig {}\ninput {}\nwasm   {}\nnative {}",
            String::from_utf8_lossy(cfg),
            String::from_utf8_lossy(&input),
            String::from_utf8_lossy(&wasm),
            String::from_utf8_lossy(&native)
        );
        let v: Value = serde_json::from_slice(&native).unwrap();
        if let Some(r) = v.get("ok") {
            ok += 1;
            // The native answer is capi-core's own request.
            let mut c = capi_core::PluginConfig::from_json(cfg).unwrap();
            let s: Value = serde_json::from_slice(sec).unwrap();
            c.resolve_secrets(|n| s.get(n).and_then(Value::as_str).map(str::to_owned))
                .unwrap();
            let x = capi_core::collect_event(&c, &input, &[], None, now).unwrap();
            let req = capi_core::build_request(&c, std::slice::from_ref(&x.event), now).unwrap();
            assert_eq!(
                r["request"]["body"].as_str().unwrap().as_bytes(),
                req.body.as_slice()
            );
            assert_eq!(r["event_id"], json!(x.event.event_id));
            assert_eq!(r["request"]["url"], json!(req.url()));
            let hs: Vec<(String, String)> =
                serde_json::from_value(r["request"]["headers"].clone()).unwrap();
            let want: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(hs, want);
        } else {
            errors += 1;
            assert!(v["error"]["kind"].is_string(), "{v}");
        }
        if i == 100 {
            start_mem = m.memory_bytes();
        }
    }
    assert!(
        ok > N / 4 && errors > N / 10,
        "generator balance: {ok} ok, {errors} errors"
    );
    assert!(
        m.memory_bytes() <= start_mem.max(1 << 20) * 2,
        "memory grew from {start_mem} to {}",
        m.memory_bytes()
    );
    eprintln!("build_request: {N} inputs, {ok} ok, {errors} errors, identical");
}

#[test]
fn hash_identifier_matches_native_byte_for_byte() {
    let mut m = abi();
    let mut rng = Rng::new(11);
    let ccs: [&[u8]; 7] = [b"", b"1", b"+44", b"49", b"0", b"1234", b"\xff"];
    for i in 0..N {
        let kind = rng.below(5) as u32;
        let value: Vec<u8> = match rng.below(4) {
            0 => serde_json::to_string(&email(&mut rng))
                .unwrap()
                .trim_matches('"')
                .as_bytes()
                .to_vec(),
            1 => serde_json::to_string(&phone(&mut rng))
                .unwrap()
                .trim_matches('"')
                .as_bytes()
                .to_vec(),
            2 => text(&mut rng).into_bytes(),
            _ => {
                let mut b = vec![0u8; rng.below(40) as usize];
                rng.fill(&mut b);
                b
            }
        };
        let cc = ccs[rng.below(ccs.len() as u64) as usize];
        let wasm = m.hash_identifier(kind, &value, cc).unwrap();
        let native = ops::hash_identifier(kind, &value, cc);
        assert!(
            wasm == native,
            "input {i}: kind {kind} value {value:?} cc {cc:?}\nwasm   {}\nnative {}",
            String::from_utf8_lossy(&wasm),
            String::from_utf8_lossy(&native)
        );
        let v: Value = serde_json::from_slice(&native).unwrap();
        if kind == 1 && v.get("ok").is_some() {
            let expect =
                capi_core::normalize::hash_email(std::str::from_utf8(&value).unwrap()).unwrap();
            assert_eq!(v["ok"]["id"], json!(expect));
        }
    }
}

#[test]
fn plan_matches_native_byte_for_byte() {
    let mut m = abi();
    let mut rng = Rng::new(13);
    let cfgs = [
        config(json!({})),
        config(
            json!({ "retry": { "max_attempts": 3, "max_age_ms": 10000, "base_backoff_ms": 100, "max_backoff_ms": 1000 } }),
        ),
        b"{}".to_vec(),
    ];
    for i in 0..N {
        let cfg = &cfgs[if rng.chance(95) { rng.below(2) } else { 2 } as usize];
        let answer = match rng.below(6) {
            0 => json!({ "failure": pick(&mut rng, &["timeout", "connect_failed", "bogus"]) }),
            1 => {
                json!({ "status": 429, "retry_after": pick(&mut rng, &["7", "0", "3600", "Thu, 01 Jan 1970 00:00:30 GMT", "soon", ""]) })
            }
            2 => {
                json!({ "status": 400, "body": pick(&mut rng, &[r#"{"error":{"message":"ids: required"}}"#, "plain reason", "", "\u{1}\u{2}"]) })
            }
            3 => json!({ "status": rng.range(100, 650) }),
            4 => json!({ "status": 503, "retry_after": null, "extra": 1 }),
            _ => json!({ "status": pick(&mut rng, &["200", "x"]) }),
        };
        let mut req = json!({
            "answer": answer,
            "attempts_made": rng.below(8),
            "first_attempt_at": rng.below(1_000_000) as i64,
            "now": rng.below(2_000_000) as i64,
            "random": rng.next_u64(),
        });
        if rng.chance(5) {
            req.as_object_mut()
                .unwrap()
                .remove(["answer", "now", "attempts_made"][rng.below(3) as usize]);
        }
        let bytes = if rng.chance(2) {
            b"[]".to_vec()
        } else {
            serde_json::to_vec(&req).unwrap()
        };
        let wasm = m.plan(cfg, &bytes).unwrap();
        let native = ops::plan(cfg, &bytes);
        assert!(
            wasm == native,
            "input {i}: {}\nwasm   {}\nnative {}",
            String::from_utf8_lossy(&bytes),
            String::from_utf8_lossy(&wasm),
            String::from_utf8_lossy(&native)
        );
    }
}
