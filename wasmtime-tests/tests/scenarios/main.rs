//! Scenarios: the built Envoy filter and core ABI module under wasmtime, one module per
//! behaviour. Build the artifacts first (see the crate docs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod abi_surface;
mod adversarial;
mod batching;
mod checkout_basic;
mod core_abi_compare;
mod dedup;
mod deferred_extraction;
mod envoy_rules;
mod host_rules;
mod queue_full;
mod readme_host;
mod reload;
mod retries;
mod ten_thousand;
