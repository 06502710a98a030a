//! The delivery state machine, sans I/O: events go in, requests to send come out, answers go
//! in, and time and randomness are always the caller's. The Envoy filter's root context, the
//! Worker and the CLI each drive one of these.

use alloc::collections::{BTreeMap, BinaryHeap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::cmp::{Ordering, Reverse};

use crate::config::{Batch, Limits, PluginConfig, Retry};
use crate::delivery::{Answer, DeliveryPlan, DropReason, plan};
use crate::event::ConversionEvent;
use crate::time::UnixMillis;

/// Remembers event ids for a time window, with a hard cap on how many.
#[derive(Debug, Clone, Default)]
pub struct DedupWindow {
    window_ms: i64,
    capacity: usize,
    order: VecDeque<(UnixMillis, String)>,
    seen: BTreeMap<String, UnixMillis>,
    /// Ids forgotten early because the cap was reached.
    pub evicted: u64,
}

impl DedupWindow {
    pub fn new(window_ms: i64, capacity: usize) -> Self {
        Self {
            window_ms,
            capacity,
            ..Self::default()
        }
    }

    fn expire(&mut self, now: UnixMillis) {
        while let Some((t, _)) = self.order.front() {
            if now - *t < self.window_ms {
                break;
            }
            if let Some((t, id)) = self.order.pop_front()
                && self.seen.get(&id) == Some(&t)
            {
                self.seen.remove(&id);
            }
        }
    }

    /// True the first time an id is offered within the window (and remembers it).
    pub fn first_sighting(&mut self, id: &str, now: UnixMillis) -> bool {
        if self.window_ms == 0 || self.capacity == 0 {
            return true;
        }
        self.expire(now);
        if self.seen.contains_key(id) {
            return false;
        }
        if self.seen.len() >= self.capacity
            && let Some((_, old)) = self.order.pop_front()
        {
            self.seen.remove(&old);
            self.evicted += 1;
        }
        self.seen.insert(String::from(id), now);
        self.order.push_back((now, String::from(id)));
        true
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Event counts since the outbox was made; adapters export them as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounters {
    /// Events accepted into the queue.
    pub enqueued: u64,
    /// Requests handed to the adapter to send.
    pub requests: u64,
    /// Event attempts sent (an event in a batch of 5 counts once per request).
    pub sent: u64,
    pub delivered: u64,
    /// Event attempts that will be retried.
    pub retried: u64,
    pub dropped_rejected: u64,
    pub dropped_auth_failed: u64,
    pub dropped_client_error: u64,
    pub dropped_attempts_exhausted: u64,
    pub dropped_max_age: u64,
    pub dropped_queue_full: u64,
    pub dropped_duplicate: u64,
    /// Ids the dedup window forgot early because its cap was reached.
    pub dedup_evicted: u64,
}

impl OutboxCounters {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Rejected => self.dropped_rejected,
            DropReason::AuthFailed => self.dropped_auth_failed,
            DropReason::ClientError => self.dropped_client_error,
            DropReason::AttemptsExhausted => self.dropped_attempts_exhausted,
            DropReason::MaxAge => self.dropped_max_age,
            DropReason::QueueFull => self.dropped_queue_full,
            DropReason::Duplicate => self.dropped_duplicate,
        }
    }

    fn count_drop(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Rejected => &mut self.dropped_rejected,
            DropReason::AuthFailed => &mut self.dropped_auth_failed,
            DropReason::ClientError => &mut self.dropped_client_error,
            DropReason::AttemptsExhausted => &mut self.dropped_attempts_exhausted,
            DropReason::MaxAge => &mut self.dropped_max_age,
            DropReason::QueueFull => &mut self.dropped_queue_full,
            DropReason::Duplicate => &mut self.dropped_duplicate,
        };
        *c += 1;
    }

    /// All drops, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.dropped(*r)).sum()
    }
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    attempts: u32,
    first_attempt_at: Option<UnixMillis>,
    ready_at: UnixMillis,
}

#[derive(Debug, Clone)]
struct Pending {
    event: ConversionEvent,
    meta: Meta,
}

/// An event waiting for its retry time, ordered by (time, sequence) only: the heap of these
/// hands back due events in the order they were scheduled.
#[derive(Debug, Clone)]
struct Scheduled {
    at: UnixMillis,
    seq: u64,
    pending: Pending,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What became of one event after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub event_id: String,
    pub attempts: u32,
    pub plan: DeliveryPlan,
}

/// Limits an outbox runs under, taken from the plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    pub retry: Retry,
    pub batch: Batch,
    pub limits: Limits,
    /// Requests in flight at once.
    pub max_in_flight: usize,
}

impl OutboxConfig {
    pub fn from_plugin(c: &PluginConfig) -> Self {
        Self {
            retry: c.retry.clone(),
            batch: c.destination.batch.clone(),
            limits: c.limits.clone(),
            max_in_flight: 64,
        }
    }
}

/// The bounded delivery queue with its dedup window, retries and batching.
#[derive(Debug, Clone)]
pub struct Outbox {
    cfg: OutboxConfig,
    ready: VecDeque<Pending>,
    // A heap and a short list rather than BTreeMaps: each BTreeMap key/value type adds its own
    // copy of the tree code, which the Envoy filter's .wasm carries (size is a goal there).
    /// Retries by due time (earliest first).
    scheduled: BinaryHeap<Reverse<Scheduled>>,
    /// (request id, events, their bookkeeping); at most `max_in_flight` entries.
    in_flight: Vec<(u64, Vec<ConversionEvent>, Vec<Meta>)>,
    held: usize,
    dedup: DedupWindow,
    seq: u64,
    counters: OutboxCounters,
}

impl Outbox {
    pub fn new(cfg: OutboxConfig) -> Self {
        let dedup = DedupWindow::new(cfg.limits.dedup_window_ms, cfg.limits.dedup_capacity);
        Self {
            cfg,
            ready: VecDeque::new(),
            scheduled: BinaryHeap::new(),
            in_flight: Vec::new(),
            held: 0,
            dedup,
            seq: 0,
            counters: OutboxCounters::default(),
        }
    }

    pub fn counters(&self) -> OutboxCounters {
        let mut c = self.counters;
        c.dedup_evicted = self.dedup.evicted;
        c
    }

    /// Events held: waiting, scheduled for retry, or in flight. Never above the queue capacity.
    pub fn depth(&self) -> usize {
        self.held
    }

    pub fn in_flight_requests(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes an event for delivery, unless its id was seen within the window or the queue is
    /// full (both counted).
    pub fn push(&mut self, event: ConversionEvent, now: UnixMillis) -> Result<(), DropReason> {
        if self.held >= self.cfg.limits.queue_capacity {
            self.counters.count_drop(DropReason::QueueFull);
            return Err(DropReason::QueueFull);
        }
        if !self.dedup.first_sighting(&event.event_id, now) {
            self.counters.count_drop(DropReason::Duplicate);
            return Err(DropReason::Duplicate);
        }
        self.held += 1;
        self.counters.enqueued += 1;
        self.ready.push_back(Pending {
            event,
            meta: Meta {
                attempts: 0,
                first_attempt_at: None,
                ready_at: now,
            },
        });
        Ok(())
    }

    fn promote_due(&mut self, now: UnixMillis) {
        while self.scheduled.peek().is_some_and(|s| s.0.at <= now) {
            if let Some(Reverse(s)) = self.scheduled.pop() {
                self.ready.push_back(s.pending);
            }
        }
    }

    /// The next request to send, if one is due: `build` turns the batch's events into the
    /// adapter's request (it may fail; then the events stay queued). Returns the request id to
    /// pass back with the answer.
    pub fn poll_transmit<R, E>(
        &mut self,
        now: UnixMillis,
        build: impl FnOnce(&[ConversionEvent]) -> Result<R, E>,
    ) -> Option<Result<(u64, R), E>> {
        self.promote_due(now);
        if self.ready.is_empty() || self.in_flight.len() >= self.cfg.max_in_flight {
            return None;
        }
        let max = self.cfg.batch.max_events.max(1);
        let oldest_ready = self.ready.front().map_or(now, |p| p.meta.ready_at);
        if self.ready.len() < max && now - oldest_ready < self.cfg.batch.max_wait_ms {
            return None;
        }
        let n = self.ready.len().min(max);
        // Split events from their bookkeeping so `build` borrows them without a clone.
        let (mut events, mut meta): (Vec<ConversionEvent>, Vec<Meta>) =
            (Vec::with_capacity(n), Vec::with_capacity(n));
        for p in self.ready.drain(..n) {
            events.push(p.event);
            meta.push(p.meta);
        }
        match build(&events) {
            Ok(req) => {
                for m in &mut meta {
                    m.attempts += 1;
                    m.first_attempt_at.get_or_insert(now);
                }
                self.seq += 1;
                self.counters.requests += 1;
                self.counters.sent += events.len() as u64;
                self.in_flight.push((self.seq, events, meta));
                Some(Ok((self.seq, req)))
            }
            Err(e) => {
                for (event, meta) in events.into_iter().zip(meta).rev() {
                    self.ready.push_front(Pending { event, meta });
                }
                Some(Err(e))
            }
        }
    }

    /// Applies an answer to every event of request `id`. Unknown ids (already settled) give
    /// an empty list.
    pub fn on_answer(
        &mut self,
        id: u64,
        answer: &Answer<'_>,
        now: UnixMillis,
        random: u64,
    ) -> Vec<Settled> {
        let Some(pos) = self.in_flight.iter().position(|(i, _, _)| *i == id) else {
            return Vec::new();
        };
        let (_, events, meta) = self.in_flight.swap_remove(pos);
        let mut out = Vec::with_capacity(events.len());
        for (i, (event, mut m)) in events.into_iter().zip(meta).enumerate() {
            // Each event of a batch gets its own jitter so retries spread out.
            let r = random
                .wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .rotate_left(17);
            let first = m.first_attempt_at.unwrap_or(now);
            let decision = plan(&self.cfg.retry, answer, m.attempts, first, now, r);
            let settled = Settled {
                event_id: event.event_id.clone(),
                attempts: m.attempts,
                plan: decision,
            };
            match &settled.plan {
                DeliveryPlan::Delivered => {
                    self.counters.delivered += 1;
                    self.held -= 1;
                }
                DeliveryPlan::RetryAt(at) => {
                    self.counters.retried += 1;
                    m.ready_at = *at;
                    self.seq += 1;
                    self.scheduled.push(Reverse(Scheduled {
                        at: *at,
                        seq: self.seq,
                        pending: Pending { event, meta: m },
                    }));
                }
                DeliveryPlan::Drop { reason, .. } => {
                    self.counters.count_drop(*reason);
                    self.held -= 1;
                }
            }
            out.push(settled);
        }
        out
    }

    /// When the caller should next call `poll_transmit` (a retry falls due or a partial batch
    /// times out), if anything is waiting.
    pub fn next_wakeup(&self) -> Option<UnixMillis> {
        let retry = self.scheduled.peek().map(|s| s.0.at);
        // A full batch leaves at once; a partial one when its oldest event has waited enough.
        let wait = if self.ready.len() >= self.cfg.batch.max_events.max(1) {
            0
        } else {
            self.cfg.batch.max_wait_ms
        };
        let batch = self.ready.front().map(|p| p.meta.ready_at + wait);
        match (retry, batch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
