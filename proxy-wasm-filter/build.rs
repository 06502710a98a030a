//! Release builds of the .wasm drop the `name` section (function names, ~80-120 KB): Envoy
//! loads one copy per worker VM. Debug builds keep it so that a trap's backtrace has names.
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if wasm && release {
        println!("cargo::rustc-cdylib-link-arg=--strip-all");
    }
}
