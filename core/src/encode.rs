//! Destination wire formats behind one small interface: extraction, hashing and delivery
//! never change when a platform is added, only a new `Encoder`.

use alloc::vec::Vec;

use crate::config::Format;
use crate::event::ConversionEvent;

/// Turns events into one request body for a destination.
pub trait Encoder {
    /// The `Content-Type` of the body.
    fn content_type(&self) -> &'static str;
    /// Whether one request may carry several events.
    fn supports_batch(&self) -> bool;
    /// Appends the body for these events (one or, when batching, several) to `out`.
    fn encode(&self, events: &[ConversionEvent], out: &mut Vec<u8>);
}

/// The seed format: one JSON object per event; a batch is a JSON array of them.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedEncoder;

impl Encoder for SeedEncoder {
    fn content_type(&self) -> &'static str {
        "application/json"
    }

    fn supports_batch(&self) -> bool {
        true
    }

    fn encode(&self, events: &[ConversionEvent], out: &mut Vec<u8>) {
        // Serializing plain data cannot fail (every map key is a string).
        let bytes = match events {
            [one] => serde_json::to_vec(one),
            many => serde_json::to_vec(many),
        };
        out.extend_from_slice(&bytes.unwrap_or_default());
    }
}

/// The encoder for a configured format.
pub fn encoder_for(format: Format) -> &'static dyn Encoder {
    match format {
        Format::Seed => &SeedEncoder,
    }
}
