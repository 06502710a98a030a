//! Release builds of the .wasm drop the `name` section (function names, ~80-120 KB): Envoy
//! loads one copy per worker VM. Debug builds keep it so that a trap's backtrace has names.
//! `CAPI_WASM_KEEP_NAMES=1` keeps them in a release build too, for size analysis
//! (`twiggy top` on the unstripped file).
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CAPI_WASM_KEEP_NAMES");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let keep_names = std::env::var("CAPI_WASM_KEEP_NAMES").is_ok_and(|v| v == "1");
    if wasm && release && !keep_names {
        println!("cargo::rustc-cdylib-link-arg=--strip-all");
    }
}
