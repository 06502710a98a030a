//! The filter is built with serde_json's default float parsing (no `float_roundtrip`, ≈ 28 KB
//! less .wasm). That parser is exact (the same f64 as Rust's correctly rounded `str::parse`)
//! when a number's digits fit in 2^53 and its decimal exponent is small, which covers every
//! amount a shop sends. Run as `cargo test -p capi-proxy-wasm-filter`, so that the feature set
//! is the filter's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn json_f64(text: &str) -> f64 {
    serde_json::from_str::<f64>(text).unwrap()
}

#[test]
fn prices_in_cents_up_to_100k_read_exactly() {
    for cents in (0u64..10_000_000).step_by(7).chain(9_999_990..10_000_000) {
        let text = format!("{}.{:02}", cents / 100, cents % 100);
        let exact: f64 = text.parse().unwrap();
        assert_eq!(json_f64(&text).to_bits(), exact.to_bits(), "{text}");
    }
}

#[test]
fn realistic_amounts_read_exactly() {
    let amounts = [
        "149.90",
        "149.9",
        "0.01",
        "0.30",
        "19.99",
        "1999.999",
        "12.5",
        "1e2",
        "1.5E3",
        "1234567.89",
        "99999999.99",
        "-5.25",
        "123456789012.34",
        "999999999999999",
    ];
    for text in amounts {
        let exact: f64 = text.parse().unwrap();
        assert_eq!(json_f64(text).to_bits(), exact.to_bits(), "{text}");
    }
    assert_eq!(json_f64("149.90"), 149.9);
}
