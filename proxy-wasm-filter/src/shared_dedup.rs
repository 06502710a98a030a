//! The event_id dedup window shared by every worker VM of one Envoy.
//!
//! Envoy runs one wasm VM per worker thread; each has its own outbox and dedup window, so the
//! same order seen on two workers (a double-submitted checkout, a client retry on a new
//! connection) would go out twice. Envoy's shared data (one key/value store per `vm_id`, with
//! compare-and-swap) closes that gap. Keys cannot be removed in ABI 0.2, so the table is a fixed
//! set of slots, `capi.dedup.<n>`, each holding the last event_id hashed to it and when it was
//! claimed: memory stays bounded by `limits.dedup_capacity` slots, and a collision evicts the
//! older id (the per-VM window still covers it on its own worker).

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;

/// Envoy's shared data, behind a trait so the claim logic is tested without a host.
pub trait SharedStore {
    /// The value and its CAS token, or None when the key was never set.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Sets the value if the key's CAS token still is `cas` (0: unconditionally). False on a
    /// CAS mismatch or a host error.
    fn set(&self, key: &str, value: &[u8], cas: u32) -> bool;
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This VM is the first to claim the id within the window: send the event.
    First,
    /// Another VM (or this one) claimed it within the window.
    Duplicate,
    /// The store would not take the claim (contention or host errors): send, and let the
    /// per-VM window and the platform's own dedup decide.
    Unavailable,
}

#[derive(Debug, Clone, Copy)]
pub struct SharedDedup {
    slots: u32,
    window_ms: i64,
}

/// Attempts before a contended slot gives up.
const CAS_ATTEMPTS: usize = 4;

impl SharedDedup {
    pub fn new(slots: usize, window_ms: i64) -> Self {
        SharedDedup {
            slots: u32::try_from(slots.max(1)).unwrap_or(u32::MAX),
            window_ms,
        }
    }

    fn key(&self, event_id: &str) -> String {
        // FNV-1a: stable across VMs and builds (std's hasher is randomly seeded per VM).
        let h = event_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        let mut key = String::with_capacity(24);
        let _ = write!(key, "capi.dedup.{}", h % self.slots);
        key
    }

    /// Claims `event_id` at `now` (ms).
    pub fn claim(&self, store: &impl SharedStore, event_id: &str, now: i64) -> Claim {
        let key = self.key(event_id);
        let mut value = Vec::with_capacity(event_id.len() + 21);
        value.extend_from_slice(now.to_string().as_bytes());
        value.push(b'|');
        value.extend_from_slice(event_id.as_bytes());
        for _ in 0..CAS_ATTEMPTS {
            let cas = match store.get(&key) {
                Some((held, cas)) => {
                    if let Some(at) = claimed_at(&held, event_id)
                        && now.saturating_sub(at) < self.window_ms
                    {
                        return Claim::Duplicate;
                    }
                    cas
                }
                None => {
                    // A first use of the slot: create it empty, then claim it through CAS like
                    // any other. Envoy has no create-if-absent, so two VMs that find the same
                    // slot absent within the same microsecond may both create it, and a claim
                    // in between is overwritten: at worst one duplicate, which the platform's
                    // own event_id dedup absorbs.
                    if !store.set(&key, b"-", 0) {
                        return Claim::Unavailable;
                    }
                    continue;
                }
            };
            if store.set(&key, &value, cas) {
                return Claim::First;
            }
        }
        Claim::Unavailable
    }
}

/// When the slot's value says `event_id` was claimed, or None for another id or garbage.
fn claimed_at(held: &[u8], event_id: &str) -> Option<i64> {
    let s = core::str::from_utf8(held).ok()?;
    let (at, id) = s.split_once('|')?;
    (id == event_id).then(|| at.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Envoy's semantics: a CAS token per key, bumped on every set; 0 skips the check.
    #[derive(Default)]
    struct Store {
        map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next_cas: RefCell<u32>,
        /// Values other VMs write right after our next get (to exercise the CAS path).
        interleave: RefCell<Vec<Vec<u8>>>,
    }

    impl SharedStore for Store {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            let got = self.map.borrow().get(key).cloned();
            if let Some(v) = self.interleave.borrow_mut().pop() {
                self.set(key, &v, 0);
            }
            got
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> bool {
            let mut map = self.map.borrow_mut();
            if cas != 0 && map.get(key).is_some_and(|(_, c)| *c != cas) {
                return false;
            }
            *self.next_cas.borrow_mut() += 1;
            map.insert(key.to_owned(), (value.to_vec(), *self.next_cas.borrow()));
            true
        }
    }

    #[test]
    fn same_id_within_the_window_is_a_duplicate_across_vms() {
        let store = Store::default();
        let d = SharedDedup::new(16, 1000);
        assert_eq!(d.claim(&store, "abc", 10_000), Claim::First);
        // Another VM sees the same store: a duplicate until the window has passed.
        assert_eq!(d.claim(&store, "abc", 10_500), Claim::Duplicate);
        assert_eq!(d.claim(&store, "abc", 10_999), Claim::Duplicate);
        assert_eq!(d.claim(&store, "abc", 11_000), Claim::First);
        assert_eq!(d.claim(&store, "other", 11_000), Claim::First);
    }

    #[test]
    fn a_collision_evicts_the_older_id_and_memory_stays_bounded() {
        let store = Store::default();
        let d = SharedDedup::new(1, 60_000);
        assert_eq!(d.claim(&store, "a", 0), Claim::First);
        assert_eq!(d.claim(&store, "b", 1), Claim::First);
        assert_eq!(d.claim(&store, "a", 2), Claim::First, "a was evicted by b");
        let d = SharedDedup::new(8, 60_000);
        for i in 0..1000 {
            d.claim(&store, &format!("id-{i}"), i);
        }
        assert!(
            store.map.borrow().len() <= 9,
            "{} keys",
            store.map.borrow().len()
        );
    }

    #[test]
    fn a_racing_vm_that_claims_first_wins() {
        let store = Store::default();
        let d = SharedDedup::new(1, 60_000);
        assert_eq!(d.claim(&store, "earlier", 0), Claim::First);
        // Between our get and our set, another VM claims the same id: our CAS fails, the
        // retry reads its claim and reports a duplicate.
        store.interleave.borrow_mut().push(b"5|race".to_vec());
        assert_eq!(d.claim(&store, "race", 6), Claim::Duplicate);
        // Garbage in a slot is overwritten, not trusted.
        let key = d.key("x");
        store.set(&key, b"not a claim", 0);
        assert_eq!(d.claim(&store, "x", 7), Claim::First);
    }
}
