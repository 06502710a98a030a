//! capi-cf-worker: the Cloudflare Worker adapter of capi-wasm.
//!
//! Two modes in one Worker. In proxy mode it stands in front of the origin, returns the
//! origin's answer untouched (plus first-party cookies) and, for exchanges that match a rule of
//! the core configuration, builds the conversion from a tee of the bodies inside
//! `ctx.waitUntil`. In collect mode a POST to `/collect` carries a conversion that the core
//! validates. Delivery: a first attempt inline, retries through a Cloudflare Queue under the
//! core's plan, a dead-letter queue, and event_id dedup in KV.
//!
//! The Worker glue ([`glue`], wasm32 only) is thin; cookies, CORS, signatures, queue messages
//! and logs are pure modules that the host tests.

pub mod edge;
pub mod message;
pub mod settings;
pub mod telemetry;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod exec;
#[cfg(target_arch = "wasm32")]
mod glue;
#[cfg(target_arch = "wasm32")]
mod js;
