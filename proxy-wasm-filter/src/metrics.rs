//! Envoy stats: `wasmcustom.capi.*` counters and the `capi.queue_depth` gauge.

use alloc::format;

use capi_core::{DropReason, OutboxCounters};

use crate::host::MetricType;

use crate::host;

/// Every counter the filter defines, in `NAMES` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum C {
    /// A request matched a rule (request side: method, host, path).
    Matched,
    /// Matched, but the request denied consent (Sec-GPC or the consent cookie).
    SkippedConsent,
    /// No rule matched the request (flushed from a local tally on each tick).
    SkippedNoRule,
    SkippedBodyTooLarge,
    SkippedEncoding,
    /// The response's status or content type did not match the rule.
    SkippedStatus,
    /// The response ended without end of stream (reset, truncated upstream).
    SkippedIncomplete,
    ExtractFailed,
    /// Events accepted into the outbox.
    Events,
    /// Requests dispatched to the destination.
    Requests,
    /// `dispatch_http_call` refused (unknown cluster, bad header): counted as a connect failure.
    DispatchFailed,
    Sent,
    Delivered,
    Rejected,
    AuthFailed,
    Retried,
    DedupEvicted,
    /// Events still held when the plugin stopped and its drain deadline passed.
    DroppedShutdown,
    Dropped(DropReason),
}

const FIXED: [(C, &str); 18] = [
    (C::Matched, "capi.matched"),
    (C::SkippedConsent, "capi.skipped_consent"),
    (C::SkippedNoRule, "capi.skipped_no_rule"),
    (C::SkippedBodyTooLarge, "capi.skipped_body_too_large"),
    (C::SkippedEncoding, "capi.skipped_encoding"),
    (C::SkippedStatus, "capi.skipped_status"),
    (C::SkippedIncomplete, "capi.skipped_incomplete"),
    (C::ExtractFailed, "capi.extract_failed"),
    (C::Events, "capi.events"),
    (C::Requests, "capi.requests"),
    (C::DispatchFailed, "capi.dispatch_failed"),
    (C::Sent, "capi.sent"),
    (C::Delivered, "capi.delivered"),
    (C::Rejected, "capi.rejected"),
    (C::AuthFailed, "capi.auth_failed"),
    (C::Retried, "capi.retried"),
    (C::DedupEvicted, "capi.dedup_evicted"),
    (C::DroppedShutdown, "capi.dropped_shutdown"),
];

fn index(c: C) -> usize {
    match c {
        C::Dropped(r) => FIXED.len() + DropReason::ALL.iter().position(|x| *x == r).unwrap_or(0),
        other => FIXED.iter().position(|(x, _)| *x == other).unwrap_or(0),
    }
}

const N: usize = FIXED.len() + DropReason::ALL.len();

/// Metric ids as Envoy gave them, plus the outbox counters already exported.
#[derive(Debug, Default)]
pub struct Metrics {
    ids: [Option<u32>; N],
    queue_depth: Option<u32>,
    exported: OutboxCounters,
    exported_depth: i64,
}

impl Metrics {
    /// Defines every metric. Defining the same name twice (a second root context in the VM)
    /// returns the same Envoy stat.
    pub fn define() -> Self {
        let mut m = Metrics::default();
        for (c, name) in FIXED {
            if let Some(slot) = m.ids.get_mut(index(c)) {
                *slot = host::define_metric(MetricType::Counter, name);
            }
        }
        for r in DropReason::ALL {
            let name = format!("capi.dropped_{}", r.as_str());
            if let Some(slot) = m.ids.get_mut(index(C::Dropped(r))) {
                *slot = host::define_metric(MetricType::Counter, &name);
            }
        }
        m.queue_depth = host::define_metric(MetricType::Gauge, "capi.queue_depth");
        m
    }

    pub fn add(&self, c: C, by: u64) {
        host::increment_metric(
            self.ids.get(index(c)).copied().flatten(),
            i64::try_from(by).unwrap_or(i64::MAX),
        );
    }

    pub fn inc(&self, c: C) {
        self.add(c, 1);
    }

    /// Exports what the outbox counted since the last call, and the queue depth. The gauge
    /// moves by deltas so that the worker VMs' depths add up in the one Envoy gauge.
    pub fn sync(&mut self, now: OutboxCounters, depth: usize) {
        let was = self.exported;
        let d = |a: u64, b: u64| a.saturating_sub(b);
        self.add(C::Events, d(now.enqueued, was.enqueued));
        self.add(C::Requests, d(now.requests, was.requests));
        self.add(C::Sent, d(now.sent, was.sent));
        self.add(C::Delivered, d(now.delivered, was.delivered));
        self.add(C::Retried, d(now.retried, was.retried));
        self.add(C::Rejected, d(now.dropped_rejected, was.dropped_rejected));
        self.add(
            C::AuthFailed,
            d(now.dropped_auth_failed, was.dropped_auth_failed),
        );
        self.add(C::DedupEvicted, d(now.dedup_evicted, was.dedup_evicted));
        for r in DropReason::ALL {
            self.add(C::Dropped(r), d(now.dropped(r), was.dropped(r)));
        }
        self.exported = now;
        let depth = i64::try_from(depth).unwrap_or(i64::MAX);
        host::increment_metric(self.queue_depth, depth - self.exported_depth);
        self.exported_depth = depth;
    }

    /// Takes this root context's share out of the gauge (the context is going away).
    pub fn release_depth(&mut self) {
        host::increment_metric(self.queue_depth, -self.exported_depth);
        self.exported_depth = 0;
    }
}
