//! The filter's imports are exactly what Envoy offers, and it exports proxy-wasm ABI 0.2.1.

use crate::common::*;

#[test]
fn imports_and_exports() {
    let m = filter();
    let imports = m.imports();
    eprintln!("filter imports: {imports:#?}");
    let exports = m.exports();
    eprintln!("filter exports: {exports:#?}");
    assert!(exports.iter().any(|e| e == "proxy_abi_version_0_2_1"));
    for (module, name) in &imports {
        // Envoy offers proxy-wasm's host calls in `env` and WASI preview 1: a libc symbol left
        // unresolved by the linker (say `memcmp`) would be an `env` import no host satisfies.
        match module.as_str() {
            "env" => assert!(
                name.starts_with("proxy_"),
                "env import {name} is not a host call"
            ),
            "wasi_snapshot_preview1" => {}
            _ => panic!("unexpected import module {module}"),
        }
    }
}
