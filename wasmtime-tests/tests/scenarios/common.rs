//! Shared helpers of the scenarios: the built filter, configurations, checkouts, settling.

use capi_wasmtime_tests::artifacts;
use capi_wasmtime_tests::envoy::{Envoy, EnvoyOptions, Exchange, FilterModule};
use serde_json::{Value, json};

pub fn filter() -> &'static FilterModule {
    artifacts::filter().unwrap_or_else(|e| panic!("{e}"))
}

/// RFC 7386 merge patch.
pub fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// The example configuration with a merge patch applied.
pub fn config(patch: Value) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(artifacts::example_config()).unwrap();
    merge(&mut v, &patch);
    serde_json::to_vec(&v).unwrap()
}

pub fn parsed(config: &[u8]) -> capi_core::PluginConfig {
    capi_core::PluginConfig::from_json(config).unwrap()
}

/// One VM, one root context configured with `config`.
pub fn envoy(config: &[u8]) -> (Envoy, u32) {
    Envoy::single(filter(), EnvoyOptions::default(), config).unwrap_or_else(|e| panic!("{e}"))
}

pub fn envoy_with(options: EnvoyOptions, config: &[u8]) -> (Envoy, u32) {
    Envoy::single(filter(), options, config).unwrap_or_else(|e| panic!("{e}"))
}

pub fn checkout_body(order: &str, total: &str, email: Option<&str>) -> Vec<u8> {
    let mut customer = json!({ "id": format!("cust-{order}"), "phone": "+1 415 555 2671" });
    if let Some(e) = email {
        customer["email"] = json!(e);
    }
    serde_json::to_vec(&json!({ "order": { "id": order, "total": total, "currency": "EUR" }, "customer": customer })).unwrap()
}

/// A checkout the example configuration's `checkout` rule turns into a Purchase.
pub fn checkout(order: &str, email: Option<&str>) -> Exchange {
    Exchange::new("POST", "shop.example.com", "/api/checkout", br#"{"cart":"c-1"}"#, 200, &checkout_body(order, "12.50", email))
        .request_header("content-type", "application/json")
        .request_header("cookie", "capi_guid=0f8fad5b-d9cb-469f-a165-70867728950e; other=1")
        .request_header("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1")
        .response_header("content-type", "application/json; charset=utf-8")
}

/// The event_id the core derives for an order of the checkout rule.
pub fn order_event_id(config: &[u8], order: &str) -> String {
    let c = parsed(config);
    let ct = capi_core::ConversionType::Purchase;
    capi_core::normalize::sha256_hex(
        format!("{}|{}|{order}", c.destination.advertiser_id, ct).as_bytes(),
    )
}

/// Advances until no call is pending and the outbox is empty (or `max_ms` passed). The first
/// millisecond always passes: the filter extracts completed exchanges on that tick.
pub fn settle(e: &mut Envoy, max_ms: u64) -> bool {
    e.advance(1).unwrap_or_else(|err| panic!("{err}"));
    e.advance_until(100, max_ms, |e| {
        e.pending_total() == 0 && e.stat("capi.queue_depth") == 0
    })
    .unwrap_or_else(|err| panic!("{err}"))
}

/// Asserts the filter never trapped, never touched a stream, and broke no host rule.
pub fn assert_clean(e: &Envoy) {
    let sh = e.shared();
    assert!(sh.traps.is_empty(), "traps: {:#?}", sh.traps);
    assert!(
        sh.mutations.is_empty(),
        "the filter changed a stream: {:#?}",
        sh.mutations
    );
    assert!(sh.anomalies.is_empty(), "anomalies: {:#?}", sh.anomalies);
}
