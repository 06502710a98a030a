//! Deterministic event ids: a retry, and the same order seen by the Envoy filter and by the
//! Worker, carry the same id, so the platform (and our dedup window) can drop the repeats.

use alloc::string::String;
use alloc::vec::Vec;
use sha2::{Digest, Sha256};

use crate::event::{ConversionType, Identifier, Timestamp};
use crate::normalize::finish_hex;
use crate::time::write_iso8601;

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
    // The same bytes as formatting the input first, fed to the hash piece by piece.
    let mut h = Sha256::new();
    match order_id {
        Some(order) => {
            let mut digits = [0u8; 20];
            h.update(crate::encode::decimal(advertiser_id, &mut digits));
            h.update(b"|");
            h.update(conversion_type.as_str());
            h.update(b"|");
            h.update(order);
        }
        None => {
            let mut iso = Vec::with_capacity(24);
            write_iso8601(timestamp.0, &mut iso);
            h.update(&first_id.id);
            h.update(b"|");
            h.update(&iso);
        }
    }
    finish_hex(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::IdName;
    use crate::normalize::sha256_hex;
    use crate::time::format_iso8601;
    use alloc::format;
    use proptest::prelude::*;

    proptest! {
        /// Hashing the pieces is hashing the formatted input the ids were defined with.
        #[test]
        fn derive_hashes_the_formatted_input(
            advertiser_id in any::<u64>(),
            custom in "\\PC{1,20}",
            order in prop::option::of("\\PC{0,40}"),
            id in "\\PC{0,70}",
            t in any::<i64>().prop_map(|t| t >> 8),
        ) {
            let conversion_type = ConversionType::Custom(custom);
            let first = Identifier { id, name: IdName::FirstPartyId };
            let want = match &order {
                Some(o) => sha256_hex(format!("{advertiser_id}|{conversion_type}|{o}").as_bytes()),
                None => sha256_hex(format!("{}|{}", first.id, format_iso8601(t)).as_bytes()),
            };
            let got = derive(advertiser_id, &conversion_type, order.as_deref(), &first, Timestamp(t));
            prop_assert_eq!(got, want);
            prop_assert_eq!(
                derive(advertiser_id, &ConversionType::Purchase, Some("A-1"), &first, Timestamp(t)),
                sha256_hex(format!("{advertiser_id}|Purchase|A-1").as_bytes())
            );
        }
    }
}
