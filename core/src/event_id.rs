//! Deterministic event ids: a retry, and the same order seen by the Envoy filter and by the
//! Worker, carry the same id, so the platform (and our dedup window) can drop the repeats.

use alloc::format;
use alloc::string::String;

use crate::event::{ConversionType, Identifier, Timestamp};
use crate::normalize::sha256_hex;
use crate::time::format_iso8601;

/// With an order id: `sha256_hex("{advertiser_id}|{conversion_type}|{order_id}")`.
/// Without one: `sha256_hex("{first identifier's id}|{timestamp as ISO 8601}")`, the
/// identifier as sent (normalized, hashed where its name says so).
pub fn derive(
    advertiser_id: u64,
    conversion_type: &ConversionType,
    order_id: Option<&str>,
    first_id: &Identifier,
    timestamp: Timestamp,
) -> String {
    match order_id {
        Some(order) => sha256_hex(format!("{advertiser_id}|{conversion_type}|{order}").as_bytes()),
        None => sha256_hex(format!("{}|{}", first_id.id, format_iso8601(timestamp.0)).as_bytes()),
    }
}
