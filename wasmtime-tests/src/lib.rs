//! capi-wasmtime-tests: runs the real built `.wasm` artifacts under wasmtime, fast and
//! deterministically.
//!
//! * [`envoy`]: a simulated Envoy around a proxy-wasm ABI 0.2.1 host ([`host`], [`wasi`])
//!   with a virtual clock: worker VMs, root and HTTP contexts, bodies in any chunks, any
//!   answer to a dispatched call (status, headers, body, delay, reset, timeout), ticks; and
//!   records of what the filter did (calls, logs, stats, mutations, traps).
//! * [`core_abi`]: calls the `capi-core-abi` module (the core's C ABI) under wasmtime.
//! * [`sink`]: a seeded random destination and a checker of the delivery invariants.
//!
//! The artifacts must be built first (see [`artifacts`]):
//! `cargo xtask build-filter` and
//! `cargo build -p capi-core-abi --target wasm32v1-none --release`.

pub mod abi;
pub mod artifacts;
pub mod core_abi;
pub mod envoy;
pub mod host;
pub mod rng;
pub mod sink;
pub mod wasi;

pub use envoy::{
    Chunking, Envoy, EnvoyOptions, Exchange, ExchangeResult, FilterModule, HostError, Planned,
    Reply,
};
pub use rng::Rng;
pub use wasmtime;
