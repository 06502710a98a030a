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
    for (module, _) in &imports {
        assert!(
            module == "env" || module == "wasi_snapshot_preview1",
            "unexpected import module {module}"
        );
    }
}
