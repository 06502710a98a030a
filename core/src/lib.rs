//! capi-core: the sans-I/O heart of capi-wasm.
//!
//! Data flows extract → normalize → build → deliver:
//! [`extract::extract_event`] reads an HTTP exchange under a [`config::Rule`],
//! [`normalize`] hashes identifiers, [`request::build_request`] encodes events through an
//! [`encode::Encoder`], and [`outbox::Outbox`] / [`delivery::plan`] decide what each answer
//! leads to. Time, randomness and secrets are always arguments: nothing here reads a clock,
//! an environment or a socket, so the same code runs in Envoy, in a Worker and natively.
#![no_std]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod click_id;
pub mod collect;
pub mod config;
pub mod consent;
pub mod currency;
pub mod decimal;
pub mod delivery;
pub mod encode;
pub mod event;
pub mod event_id;
pub mod extract;
pub mod json_select;
pub mod lowercase;
pub mod normalize;
pub mod outbox;
pub mod request;
pub mod time;
pub mod user_agent;

pub use collect::collect_event;
pub use config::{ConfigError, PluginConfig};
pub use delivery::{Answer, DeliveryPlan, DropReason};
pub use event::{ConversionEvent, ConversionType, IdName, Identifier, Timestamp, events_from_json};
pub use extract::{Exchange, ExtractError, Extracted, extract_event};
pub use outbox::{Outbox, OutboxConfig, OutboxCounters};
pub use request::{CapiRequest, build_request};
