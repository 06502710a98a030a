//! Arbitrary exchanges through extract_event under the example configuration, and arbitrary
//! bodies through collect_event: never panics, and every event that comes out validates,
//! round-trips through its JSON form and builds into a request.
//!
//! Input layout, NUL-separated: `selector \0 path \0 cookie \0 user-agent \0 request body \0
//! response body`. The selector's first byte picks the rule (`c` = the collect format on the
//! request body), its second the response status (`2` = 200, else 201 or 500).
#![no_main]

use capi_core::{
    ConversionEvent, Exchange, Extracted, PluginConfig, build_request, collect_event, extract_event,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const EXAMPLE_CONFIG: &[u8] = include_bytes!("../../../examples/config.json");
const NOW: i64 = 1_764_150_000_000; // 2025-11-26T09:40:00Z

fn config() -> &'static PluginConfig {
    static CONFIG: OnceLock<PluginConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut c = PluginConfig::from_json(EXAMPLE_CONFIG).expect("examples/config.json parses");
        c.resolve_secrets(|_| Some("fuzz-token".to_owned()))
            .expect("secrets resolve");
        c
    })
}

fn check(config: &PluginConfig, out: Extracted) {
    let ev = out.event;
    assert_eq!(ev.validate(), Ok(()), "extracted events are valid: {ev:?}");
    let json = ev.to_json();
    assert_eq!(
        ConversionEvent::from_json(&json).as_ref(),
        Ok(&ev),
        "JSON round trip: {}",
        String::from_utf8_lossy(&json)
    );
    let req = build_request(config, core::slice::from_ref(&ev), NOW).expect("a valid event builds");
    assert_eq!(req.body, json, "a one-event seed body is the event's JSON");
}

fuzz_target!(|data: &[u8]| {
    let config = config();
    let mut parts = data.splitn(6, |b| *b == 0);
    let selector = parts.next().unwrap_or_default();
    let text = |p: Option<&[u8]>| String::from_utf8_lossy(p.unwrap_or_default()).into_owned();
    let path = text(parts.next());
    let cookie = text(parts.next());
    let ua = text(parts.next());
    // The peer address is arbitrary text too (a selector byte picks a plausible one).
    let peer = match selector.get(2) {
        Some(b'4') => "203.0.113.7:443".to_owned(),
        Some(b'6') => "[2001:db8::1]:443".to_owned(),
        _ => ua.clone(),
    };
    let request_body = parts.next().unwrap_or_default();
    let response_body = parts.next().unwrap_or_default();

    let mut headers = vec![
        ("user-agent".to_owned(), ua),
        ("content-type".to_owned(), "application/json".to_owned()),
    ];
    if !cookie.is_empty() {
        headers.push(("cookie".to_owned(), cookie));
    }

    if selector.first() == Some(&b'c') {
        if let Ok(out) = collect_event(config, request_body, &headers, Some(&peer), NOW) {
            check(config, out);
        }
        return;
    }
    let rule = match config.match_request("POST", "shop.example", &path) {
        Some(i) => &config.rules[i],
        None => {
            &config.rules[usize::from(selector.first().copied().unwrap_or(0)) % config.rules.len()]
        }
    };
    let status = match selector.get(1) {
        Some(b'2') | None => 200,
        Some(b) if b % 2 == 0 => 201,
        Some(_) => 500,
    };
    let response_headers = vec![(
        "content-type".to_owned(),
        "application/json; charset=utf-8".to_owned(),
    )];
    let ex = Exchange {
        method: "POST",
        host: "shop.example",
        path: &path,
        request_headers: &headers,
        request_body: Some(request_body),
        response_status: status,
        response_headers: &response_headers,
        response_body: Some(response_body),
        client_ip: Some(&peer),
    };
    if let Ok(out) = extract_event(config, rule, &ex, NOW) {
        check(config, out);
    }
});
