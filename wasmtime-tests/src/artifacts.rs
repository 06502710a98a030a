//! Where the built `.wasm` artifacts are, and each compiled once per process.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::core_abi::CoreAbiModule;
use crate::envoy::{FilterModule, HostError};

/// The build command of the Envoy filter.
pub const FILTER_BUILD: &str = "cargo xtask build-filter";
/// The build command of the core ABI module.
pub const CORE_ABI_BUILD: &str = "cargo build -p capi-core-abi --target wasm32v1-none --release";

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target"),
    }
}

/// The filter: `$CAPI_FILTER_WASM`, else `target/wasm32-wasip1/filter/capi_proxy_wasm_filter.wasm`.
pub fn filter_wasm_path() -> PathBuf {
    std::env::var_os("CAPI_FILTER_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            target_dir()
                .join("wasm32-wasip1")
                .join("filter")
                .join("capi_proxy_wasm_filter.wasm")
        })
}

/// The core ABI module: `$CAPI_CORE_ABI_WASM`, else `target/wasm32v1-none/release/capi_core_abi.wasm`.
pub fn core_abi_wasm_path() -> PathBuf {
    std::env::var_os("CAPI_CORE_ABI_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            target_dir()
                .join("wasm32v1-none")
                .join("release")
                .join("capi_core_abi.wasm")
        })
}

fn read(path: PathBuf, build: &str) -> Result<Vec<u8>, HostError> {
    std::fs::read(&path)
        .map_err(|e| HostError::Setup(format!("{}: {e}; build it first: {build}", path.display())))
}

/// The filter, compiled once per process (cranelift takes a moment).
pub fn filter() -> Result<&'static FilterModule, HostError> {
    static M: OnceLock<Result<FilterModule, HostError>> = OnceLock::new();
    M.get_or_init(|| FilterModule::from_bytes(&read(filter_wasm_path(), FILTER_BUILD)?))
        .as_ref()
        .map_err(Clone::clone)
}

/// The core ABI module, compiled once per process.
pub fn core_abi() -> Result<&'static CoreAbiModule, HostError> {
    static M: OnceLock<Result<CoreAbiModule, HostError>> = OnceLock::new();
    M.get_or_init(|| CoreAbiModule::from_bytes(&read(core_abi_wasm_path(), CORE_ABI_BUILD)?))
        .as_ref()
        .map_err(Clone::clone)
}

/// The example configuration the CLI and the demo use.
pub fn example_config() -> &'static str {
    capi_core::config::EXAMPLE_CONFIG
}
