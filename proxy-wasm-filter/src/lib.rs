//! capi-proxy-wasm-filter: the Envoy (proxy-wasm) adapter of capi-core.
//!
//! * The root context parses the plugin configuration (the core's JSON), owns the [`Outbox`]
//!   and delivers from it with `dispatch_http_call` to `destination.envoy_cluster`.
//! * Each HTTP context watches one exchange: it decides with `match_request` on the request
//!   headers (no match: nothing more is done), checks consent, copies the bodies the rule reads
//!   as they pass (always `Continue`: the client is never delayed nor its bytes altered), and at
//!   the end of the response hands the exchange to the root, whose next tick (1 ms later, after
//!   Envoy has passed the last bytes on) extracts the event into the outbox.
//!
//! Root and HTTP contexts of one plugin live in the same VM on the same thread, so they share
//! state through `Rc<RefCell<_>>`. Calls are only dispatched from the root context (its tick):
//! Envoy routes an answer to the context that dispatched the call, and an HTTP context is
//! gone by the time the destination answers. A completed exchange sets the root's tick to 1 ms,
//! so a single event is extracted and sent about a millisecond after its response.
//!
//! The .wasm has no std and no proxy-wasm SDK: `runtime` exports the ABI 0.2.1 callbacks and
//! routes them to `Root` and `Http`, `host` makes the host calls. That leaves out std's panic
//! and I/O machinery, wasi-libc and the SDK's dispatcher (~53 KB of the .wasm).
//!
//! Nothing here may panic: a trap in the VM takes the filter down for the whole worker.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

pub mod decode;
mod host;
mod metrics;
mod runtime;
pub mod shared_dedup;

use shared_dedup::{Claim, SharedDedup};

use alloc::borrow::ToOwned;
use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::host::{BufferType, HeaderMap, LogLevel};
use capi_core::config::{ClientIp, Rule};
use capi_core::consent;
use capi_core::delivery::DeliveryPlan;
use capi_core::extract::Source;
use capi_core::outbox::Settled;
use capi_core::{
    Answer, Exchange, Outbox, OutboxConfig, PluginConfig, build_request, extract_event,
};

use crate::decode::{DecodeError, Encoding, decode, parse_encoding};
use crate::metrics::{C, Metrics};

/// Tick period with nothing to deliver: flushes the no-rule tally now and then.
/// How long a stopping root keeps delivering held events.
const DRAIN_MS: i64 = 10_000;
const IDLE_TICK_MS: u32 = 1000;
/// Tick period right after a push: deliver almost at once, from the root context.
const KICK_TICK_MS: u32 = 1;
/// Tick period while events are ready but the in-flight cap is reached.
const BLOCKED_TICK_MS: u32 = 50;
/// Requests dispatched per pump at most (a guard against a tight dispatch-fail loop).
const MAX_DISPATCH_PER_PUMP: usize = 256;
/// Bytes of a destination's answer body read (for a 400's reason).
const MAX_ANSWER_BODY: usize = 4096;
/// Completed exchanges waiting for the root's next tick to be extracted, at most (count and
/// body bytes). The tick comes 1 ms after the first one: only a worker stalled for that long
/// under a flood of checkouts reaches these; what does not fit is `dropped_queue_full`.
const MAX_PENDING: usize = 256;
const MAX_PENDING_BYTES: usize = 8 << 20;

/// What one rule needs kept from an exchange.
#[derive(Debug, Clone, Default)]
struct RuleNeeds {
    request_headers: Vec<String>,
    response_headers: Vec<String>,
    reads_request_body: bool,
    reads_response_body: bool,
}

impl RuleNeeds {
    fn of(rule: &Rule, client_ip: &ClientIp) -> Self {
        // Consent reads sec-gpc and the cookie; the default user agent source is user-agent.
        let mut request_headers: Vec<String> = [
            "user-agent",
            "cookie",
            "sec-gpc",
            "content-type",
            "content-encoding",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if let ClientIp::Header(n) = client_ip {
            request_headers.push(n.clone());
        }
        let mut response_headers = Vec::new();
        for s in rule.extract.sources() {
            match s {
                Source::Header(n) if !request_headers.contains(n) => {
                    request_headers.push(n.clone())
                }
                Source::ResponseHeader(n) if !response_headers.contains(n) => {
                    response_headers.push(n.clone())
                }
                _ => {}
            }
        }
        RuleNeeds {
            request_headers,
            response_headers,
            reads_request_body: rule.extract.reads_request_body(),
            reads_response_body: rule.extract.reads_response_body(),
        }
    }
}

/// A configured plugin: the configuration and the delivery queue.
struct Active {
    config: Rc<PluginConfig>,
    needs: Rc<[RuleNeeds]>,
    outbox: Outbox,
    /// (dispatch token, outbox request id) of the calls awaiting an answer.
    inflight: Vec<(u32, u64)>,
    rng: u64,
}

impl Active {
    /// splitmix64 over a seed from the host clock: jitter only, not secrets.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// State shared by a root context and the HTTP contexts it creates.
#[derive(Default)]
struct State {
    active: Option<Active>,
    metrics: Metrics,
    /// Requests no rule matched since the last tick (exported on the tick, so a non-matching
    /// request costs no host call beyond reading the request headers).
    no_rule: u64,
    tick_ms: u32,
    /// When the armed (periodic) tick fires next, host clock ms.
    tick_next: i64,
    /// Set when Envoy asked the root to stop (`on_done`) while events were still held.
    draining_since: Option<i64>,
    /// Exchanges whose response is complete, extracted on the root's next tick: decoding,
    /// parsing and hashing then run after Envoy has passed the response's last bytes on, so
    /// they never add to the client's response time.
    #[allow(clippy::vec_box)] // the HTTP context's Box moves in as it is: no copy of the Track
    pending: Vec<Box<Track>>,
    /// Body bytes held by `pending`.
    pending_bytes: usize,
}

impl State {
    fn sync_metrics(&mut self) {
        if let Some(a) = &self.active {
            self.metrics.sync(a.outbox.counters(), a.outbox.depth());
        }
    }

    /// Sets the root's tick from the outbox's next wakeup. `kick`: called after a push, where
    /// a due event should go out at once.
    fn reschedule(&mut self, now: i64, kick: bool) {
        let Some(a) = &self.active else {
            return;
        };
        let want = match a.outbox.next_wakeup() {
            _ if !self.pending.is_empty() => KICK_TICK_MS,
            Some(t) if t <= now => {
                if kick {
                    KICK_TICK_MS
                } else {
                    BLOCKED_TICK_MS
                }
            }
            Some(t) => u32::try_from(t - now)
                .unwrap_or(IDLE_TICK_MS)
                .clamp(1, IDLE_TICK_MS),
            None => IDLE_TICK_MS,
        };
        // After a push, re-arm only when the armed tick would fire too late: a stream of pushes
        // must not keep postponing a 1 ms kick, nor pay a host call each (with batching, the
        // wait left changes every millisecond). The tick that fires reschedules exactly.
        let rearm = if kick {
            now + i64::from(want) < self.tick_next
        } else {
            want != self.tick_ms
        };
        if rearm {
            host::set_tick_period(want);
            self.tick_ms = want;
            self.tick_next = now + i64::from(want);
        }
    }
}

/// The destination for log lines: scheme, authority and path, never the query string (some
/// platforms take an API key there).
fn destination_for_log(config: &PluginConfig) -> String {
    let u = &config.destination.url;
    let path = u.path.split_once('?').map_or(u.path.as_str(), |(p, _)| p);
    format!("{}://{}{path}", u.scheme, u.authority)
}

fn log_settled(config: &PluginConfig, settled: &[Settled], what: &str, now: i64) {
    // One host call per answer, not per event of the batch.
    let debug = host::enabled(LogLevel::Debug);
    for s in settled {
        match &s.plan {
            DeliveryPlan::Delivered => {
                if debug {
                    host::log(
                        LogLevel::Debug,
                        &format!(
                            "capi: event {} delivered (attempt {})",
                            s.event_id, s.attempts
                        ),
                    );
                }
            }
            DeliveryPlan::RetryAt(at) => host::log(
                LogLevel::Info,
                &format!(
                    "capi: event {} attempt {} failed ({what}); retrying in {} ms",
                    s.event_id,
                    s.attempts,
                    at - now
                ),
            ),
            DeliveryPlan::Drop { reason, detail } => {
                let level = if *reason == capi_core::DropReason::AuthFailed {
                    LogLevel::Error
                } else {
                    LogLevel::Warn
                };
                let detail = detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default();
                host::log(
                    level,
                    &format!(
                        "capi: event {} dropped after {} attempt(s) to {}: {reason} ({what}){detail}",
                        s.event_id,
                        s.attempts,
                        destination_for_log(config)
                    ),
                );
            }
        }
    }
}

struct Root {
    context_id: u32,
    state: Rc<RefCell<State>>,
}

impl Root {
    fn new(context_id: u32) -> Self {
        Root {
            context_id,
            state: Rc::new(RefCell::new(State::default())),
        }
    }

    fn configure(&self, size: usize) -> Result<Active, String> {
        let bytes = host::buffer(BufferType::PluginConfiguration, 0, size).unwrap_or_default();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(
                "plugin configuration is empty (expected the capi JSON configuration)".to_owned(),
            );
        }
        let mut config = PluginConfig::from_json(&bytes).map_err(|e| e.to_string())?;
        config
            .resolve_secrets(host::env_var)
            .map_err(|e| e.to_string())?;
        let needs: Rc<[RuleNeeds]> = config
            .rules
            .iter()
            .map(|r| RuleNeeds::of(r, &config.identifiers.client_ip))
            .collect();
        let outbox = Outbox::new(OutboxConfig::from_plugin(&config));
        let rng = host::now_nanos() ^ u64::from(self.context_id).rotate_left(32);
        Ok(Active {
            config: Rc::new(config),
            needs,
            outbox,
            inflight: Vec::new(),
            rng,
        })
    }

    /// Extracts the exchanges completed since the last tick into the outbox.
    fn extract_pending(&self) {
        let pending = match self.state.try_borrow_mut() {
            Ok(mut st) => {
                st.pending_bytes = 0;
                core::mem::take(&mut st.pending)
            }
            Err(_) => return,
        };
        for t in pending {
            extract_exchange(&self.state, *t);
        }
    }

    /// Sends every request that is due. The state is not borrowed across the host call.
    fn pump(&self) {
        for _ in 0..MAX_DISPATCH_PER_PUMP {
            let now = host::now_ms();
            let (id, req, cluster, timeout_ms) = {
                let Ok(mut st) = self.state.try_borrow_mut() else {
                    return;
                };
                let Some(a) = st.active.as_mut() else { return };
                let config = Rc::clone(&a.config);
                match a
                    .outbox
                    .poll_transmit(now, |events| build_request(&config, events, now))
                {
                    None => break,
                    Some(Err(e)) => {
                        host::log(
                            LogLevel::Error,
                            &format!("capi: cannot build the destination request: {e}"),
                        );
                        break;
                    }
                    Some(Ok((id, req))) => (
                        id,
                        req,
                        config.destination.envoy_cluster.clone(),
                        config.destination.timeout_ms,
                    ),
                }
            };
            let mut headers: Vec<(&str, &str)> = Vec::with_capacity(req.headers.len() + 3);
            headers.push((":method", req.method));
            headers.push((":path", &req.path));
            headers.push((":authority", &req.authority));
            headers.extend(req.headers.iter().map(|(k, v)| (&**k, &**v)));
            let sent = host::dispatch_http_call(&cluster, &headers, &req.body, timeout_ms);
            let Ok(mut st) = self.state.try_borrow_mut() else {
                return;
            };
            let st = &mut *st;
            let Some(a) = st.active.as_mut() else { return };
            match sent {
                Ok(token) => {
                    a.inflight.push((token, id));
                }
                Err(status) => {
                    st.metrics.inc(C::DispatchFailed);
                    host::log(
                        LogLevel::Warn,
                        &format!(
                            "capi: dispatch to cluster {cluster} failed ({}); counted as a failed connection",
                            host::status_name(status)
                        ),
                    );
                    let r = a.random();
                    let settled = a.outbox.on_answer(id, &Answer::ConnectFailed, now, r);
                    log_settled(&a.config, &settled, "dispatch failed", now);
                }
            }
        }
        if let Ok(mut st) = self.state.try_borrow_mut() {
            st.sync_metrics();
        }
    }

    /// After `on_done` returned false: tells Envoy the root is done once the outbox is empty,
    /// or at the drain deadline, counting what is still held as `dropped_shutdown`.
    fn finish_drain(&self) {
        let Ok(mut st) = self.state.try_borrow_mut() else {
            return;
        };
        let Some(since) = st.draining_since else {
            return;
        };
        let held = st.active.as_ref().map_or(0, |a| a.outbox.depth());
        if held > 0 && host::now_ms() - since < DRAIN_MS {
            return;
        }
        if held > 0 {
            st.metrics.add(C::DroppedShutdown, held as u64);
            host::log(
                LogLevel::Warn,
                &format!(
                    "capi: stopped with {held} undelivered event(s) (counted as dropped_shutdown)"
                ),
            );
        }
        st.metrics.release_depth();
        st.draining_since = None;
        st.active = None;
        drop(st);
        host::done();
    }

    fn answer(&self, token: u32, body_size: usize) {
        let now = host::now_ms();
        let headers = host::headers(HeaderMap::CallResponse, |k| {
            k == ":status" || k.eq_ignore_ascii_case("retry-after")
        });
        let status = headers
            .iter()
            .find(|(k, _)| k == ":status")
            .and_then(|(_, v)| v.trim().parse::<u16>().ok());
        let retry_after = headers
            .iter()
            .find(|(k, _)| k == "retry-after")
            .map(|(_, v)| v.as_str());
        let body = if body_size > 0 {
            host::buffer(
                BufferType::HttpCallResponseBody,
                0,
                body_size.min(MAX_ANSWER_BODY),
            )
            .unwrap_or_default()
        } else {
            Vec::new()
        };
        let (answer, what) = match status {
            Some(504) => (
                Answer::Http {
                    status: 504,
                    retry_after,
                    body: &body,
                },
                "HTTP 504 (or Envoy's timeout)".to_owned(),
            ),
            Some(s) => (
                Answer::Http {
                    status: s,
                    retry_after,
                    body: &body,
                },
                format!("HTTP {s}"),
            ),
            None => (
                Answer::ConnectFailed,
                "no answer: connection failed or reset".to_owned(),
            ),
        };
        let Ok(mut st) = self.state.try_borrow_mut() else {
            return;
        };
        let Some(a) = st.active.as_mut() else { return };
        let Some(pos) = a.inflight.iter().position(|(t, _)| *t == token) else {
            return;
        };
        let (_, id) = a.inflight.swap_remove(pos);
        let r = a.random();
        let settled = a.outbox.on_answer(id, &answer, now, r);
        log_settled(&a.config, &settled, &what, now);
        st.sync_metrics();
    }
}

/// Envoy's callbacks on the root context (routed by `runtime`).
impl Root {
    fn on_http_call_response(&mut self, token_id: u32, body_size: usize) {
        self.answer(token_id, body_size);
        // A freed in-flight slot may let a waiting request go.
        self.pump();
        if let Ok(mut st) = self.state.try_borrow_mut() {
            st.reschedule(host::now_ms(), false);
        }
        self.finish_drain();
    }

    /// Envoy stops the root (a reload or shutdown): held events get up to `DRAIN_MS` to go
    /// out before the root says it is done; whatever is left then is counted, not lost.
    fn on_done(&mut self) -> bool {
        // Exchanges that completed since the last tick are events to drain like the others.
        self.extract_pending();
        let Ok(mut st) = self.state.try_borrow_mut() else {
            return true;
        };
        let held = st.active.as_ref().map_or(0, |a| a.outbox.depth());
        if held == 0 {
            st.metrics.release_depth();
            return true;
        }
        st.draining_since = Some(host::now_ms());
        host::log(
            LogLevel::Info,
            &format!("capi: stopping with {held} event(s) held; draining for up to {DRAIN_MS} ms"),
        );
        false
    }

    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        match self.configure(plugin_configuration_size) {
            Ok(active) => {
                let Ok(mut st) = self.state.try_borrow_mut() else {
                    return false;
                };
                let first = st.active.is_none();
                host::log(
                    LogLevel::Info,
                    &format!(
                        "capi: configured {} rule(s); delivering to {} through cluster {}",
                        active.config.rules.len(),
                        destination_for_log(&active.config),
                        active.config.destination.envoy_cluster
                    ),
                );
                if first {
                    st.metrics = Metrics::define();
                } else {
                    // Reconfigured: answers to the old outbox's requests are ignored.
                    st.metrics.release_depth();
                }
                st.active = Some(active);
                st.tick_ms = IDLE_TICK_MS;
                st.tick_next = host::now_ms() + i64::from(IDLE_TICK_MS);
                host::set_tick_period(IDLE_TICK_MS);
                true
            }
            Err(e) => {
                host::log(
                    LogLevel::Error,
                    &format!("capi: invalid plugin configuration: {e}"),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Ok(mut st) = self.state.try_borrow_mut() {
            st.tick_next = host::now_ms() + i64::from(st.tick_ms);
            if st.no_rule > 0 {
                let n = core::mem::take(&mut st.no_rule);
                st.metrics.add(C::SkippedNoRule, n);
            }
        }
        self.extract_pending();
        self.pump();
        if let Ok(mut st) = self.state.try_borrow_mut() {
            st.reschedule(host::now_ms(), false);
        }
        self.finish_drain();
    }

    fn create_http_context(&self) -> Http {
        Http {
            state: Rc::clone(&self.state),
            track: None,
        }
    }
}

/// One exchange being watched.
struct Track {
    config: Rc<PluginConfig>,
    needs: Rc<[RuleNeeds]>,
    rule: usize,
    method: String,
    host: String,
    path: String,
    request_headers: Vec<(String, String)>,
    /// The downstream peer's address (`ip:port`), when the configuration sends the client IP.
    peer_address: Option<String>,
    /// Some while the rule reads the request body.
    request_body: Option<Vec<u8>>,
    request_encoding: Encoding,
    request_complete: bool,
    status: u16,
    response_headers: Vec<(String, String)>,
    /// Some while the rule reads the response body.
    response_body: Option<Vec<u8>>,
    response_encoding: Encoding,
    /// When the response completed (host clock ms): the event's default timestamp.
    completed_at: i64,
}

impl Track {
    fn body_bytes(&self) -> usize {
        let len = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, Vec::len);
        len(&self.request_body) + len(&self.response_body)
    }

    fn rule(&self) -> Option<&Rule> {
        self.config.rules.get(self.rule)
    }

    fn rule_name(&self) -> &str {
        self.rule().map_or("?", |r| r.name.as_str())
    }
}

/// The value of header `name` (lower-case) in a map from `host::headers`.
fn get<'a>(map: &'a [(String, String)], name: &str) -> Option<&'a str> {
    map.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Appends a body chunk unless the total would pass `limit`; false when it would.
fn copy_chunk(which: BufferType, into: &mut Vec<u8>, chunk_size: usize, limit: usize) -> bool {
    if chunk_size == 0 {
        return true;
    }
    if into.len().saturating_add(chunk_size) > limit {
        return false;
    }
    if let Some(chunk) = host::buffer(which, 0, chunk_size) {
        if into.is_empty() {
            *into = chunk; // the usual single chunk: no second copy
        } else {
            into.extend_from_slice(&chunk);
        }
    }
    true
}

struct Http {
    state: Rc<RefCell<State>>,
    track: Option<Box<Track>>,
}

impl Http {
    fn count(&self, c: C) {
        if let Ok(st) = self.state.try_borrow() {
            st.metrics.inc(c);
        }
    }

    /// Stops watching this exchange, counting why.
    fn give_up(&mut self, c: C, level: LogLevel, why: &str) {
        if let Some(t) = self.track.take() {
            self.count(c);
            if host::enabled(level) {
                host::log(
                    level,
                    &format!("capi: rule {}: no event: {why}", t.rule_name()),
                );
            }
        }
    }

    fn start(&mut self, end_of_stream: bool) {
        let Ok(mut st) = self.state.try_borrow_mut() else {
            return;
        };
        let Some(a) = st.active.as_ref() else { return };
        // The whole map in one host call: cheaper than one call per pseudo-header and per
        // header the rule needs (the filter only runs on the routes that enable it).
        let mut all = host::headers(HeaderMap::Request, |_| true);
        let mut take = |name: &str| {
            all.iter_mut()
                .find(|(k, _)| k == name)
                .map(|(_, v)| core::mem::take(v))
                .unwrap_or_default()
        };
        let (method, path, authority) = (take(":method"), take(":path"), take(":authority"));
        let Some(rule) = a.config.match_request(&method, &authority, &path) else {
            st.no_rule += 1;
            return;
        };
        let config = Rc::clone(&a.config);
        let needs = Rc::clone(&a.needs);
        drop(st);
        let Some(rule_needs) = needs.get(rule) else {
            return;
        };
        let reads_request_body = rule_needs.reads_request_body;
        all.retain(|(k, _)| rule_needs.request_headers.iter().any(|n| n == k));
        let request_headers = all;
        self.count(C::Matched);
        let rule_name = config.rules.get(rule).map_or("?", |r| r.name.as_str());
        if let Err(denied) = consent::check(&config.consent, &request_headers) {
            self.count(C::SkippedConsent);
            if host::enabled(LogLevel::Debug) {
                host::log(
                    LogLevel::Debug,
                    &format!(
                        "capi: rule {rule_name}: no event: consent denied ({})",
                        denied.as_str()
                    ),
                );
            }
            return;
        }
        let mut request_encoding = Encoding::Identity;
        if reads_request_body {
            let value = capi_core::extract::header(&request_headers, "content-encoding");
            match parse_encoding(value) {
                Ok(e) => request_encoding = e,
                Err(_) => {
                    self.count(C::SkippedEncoding);
                    host::log(
                        LogLevel::Warn,
                        &format!(
                            "capi: rule {rule_name}: no event: request Content-Encoding not supported"
                        ),
                    );
                    return;
                }
            }
        }
        let peer_address = match config.identifiers.client_ip {
            ClientIp::Peer => host::property(&["source", "address"]),
            _ => None,
        };
        self.track = Some(Box::new(Track {
            config,
            needs,
            rule,
            method,
            host: authority,
            path,
            request_headers,
            peer_address,
            request_body: reads_request_body.then(Vec::new),
            request_encoding,
            request_complete: end_of_stream,
            status: 0,
            response_headers: Vec::new(),
            response_body: None,
            response_encoding: Encoding::Identity,
            completed_at: 0,
        }));
    }

    fn response_started(&mut self, end_of_stream: bool) {
        let Some(t) = self.track.as_mut() else { return };
        // One host call for the whole map, as for the request.
        let mut all = host::headers(HeaderMap::Response, |_| true);
        let status = get(&all, ":status")
            .and_then(|s| s.trim().parse::<u16>().ok())
            .unwrap_or(0);
        let matches = t.rule().is_some_and(|r| {
            r.matcher
                .matches_response(status, get(&all, "content-type"))
        });
        if !matches {
            self.give_up(
                C::SkippedStatus,
                LogLevel::Debug,
                &format!("response status {status} or content type did not match"),
            );
            return;
        }
        t.status = status;
        let needs = Rc::clone(&t.needs);
        let Some(needs) = needs.get(t.rule) else {
            return;
        };
        if needs.reads_response_body {
            let limit = t.config.limits.max_body_bytes;
            match parse_encoding(get(&all, "content-encoding")) {
                Ok(e) => t.response_encoding = e,
                Err(_) => {
                    self.give_up(
                        C::SkippedEncoding,
                        LogLevel::Warn,
                        "response Content-Encoding not supported (only gzip, deflate)",
                    );
                    return;
                }
            }
            let length = get(&all, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
            if length.is_some_and(|n| n > limit as u64) {
                self.give_up(
                    C::SkippedBodyTooLarge,
                    LogLevel::Warn,
                    "response body larger than limits.max_body_bytes",
                );
                return;
            }
            t.response_body = Some(Vec::new());
        }
        all.retain(|(k, _)| needs.response_headers.iter().any(|n| n == k));
        t.response_headers = all;
        if end_of_stream {
            self.finish();
        }
    }

    /// The response is complete: the exchange waits for the root's next tick (1 ms), which
    /// extracts it after Envoy has passed these last bytes on.
    fn finish(&mut self) {
        let Some(mut t) = self.track.take() else {
            return;
        };
        let Ok(mut st) = self.state.try_borrow_mut() else {
            return;
        };
        let bytes = t.body_bytes();
        // One exchange always fits (its bodies are within limits.max_body_bytes).
        if !st.pending.is_empty()
            && (st.pending.len() >= MAX_PENDING
                || st.pending_bytes.saturating_add(bytes) > MAX_PENDING_BYTES)
        {
            st.metrics.inc(C::Dropped(capi_core::DropReason::QueueFull));
            drop(st);
            host::log(
                LogLevel::Warn,
                &format!(
                    "capi: rule {}: no event: {MAX_PENDING} exchanges or {MAX_PENDING_BYTES} body bytes already wait for extraction (counted as dropped_queue_full)",
                    t.rule_name()
                ),
            );
            return;
        }
        let now = host::now_ms();
        t.completed_at = now;
        st.pending_bytes += bytes;
        st.pending.push(t);
        st.reschedule(now, true);
    }
}

/// Decodes the bodies of a completed exchange, extracts its event and hands it to the outbox.
fn extract_exchange(state: &RefCell<State>, mut t: Track) {
    let count = |c: C| {
        if let Ok(st) = state.try_borrow() {
            st.metrics.inc(c);
        }
    };
    let limit = t.config.limits.max_body_bytes;
    let request_body = if t.request_complete {
        t.request_body.take()
    } else {
        None
    };
    let response_body = t.response_body.take();
    let Some(rule) = t.rule() else { return };
    let decoded =
        |body: Option<Vec<u8>>, enc: Encoding| body.map(|b| decode(enc, b, limit)).transpose();
    let bodies = decoded(request_body, t.request_encoding)
        .and_then(|q| Ok((q, decoded(response_body, t.response_encoding)?)));
    let (request_body, response_body) = match bodies {
        Ok(b) => b,
        Err(e) => {
            count(if e == DecodeError::TooLarge {
                C::SkippedBodyTooLarge
            } else {
                C::ExtractFailed
            });
            host::log(
                LogLevel::Warn,
                &format!("capi: rule {}: no event: {}", rule.name, e.as_str()),
            );
            return;
        }
    };
    let ex = Exchange {
        method: &t.method,
        host: &t.host,
        path: &t.path,
        request_headers: &t.request_headers,
        request_body: request_body.as_deref(),
        response_status: t.status,
        response_headers: &t.response_headers,
        response_body: response_body.as_deref(),
        client_ip: t.peer_address.as_deref(),
    };
    // The event's time is when the response completed, not when the tick came.
    let at = t.completed_at;
    let extracted = match extract_event(&t.config, rule, &ex, at) {
        Ok(x) => x,
        Err(e) => {
            count(C::ExtractFailed);
            host::log(
                LogLevel::Warn,
                &format!("capi: rule {}: no event: {e}", rule.name),
            );
            return;
        }
    };
    if !extracted.skipped.is_empty() && host::enabled(LogLevel::Debug) {
        for s in &extracted.skipped {
            host::log(
                LogLevel::Debug,
                &format!(
                    "capi: rule {}: {} left out: {}",
                    rule.name, s.field, s.reason
                ),
            );
        }
    }
    let event_id = extracted.event.event_id.clone();
    // Other worker VMs may have seen the same order: Envoy's shared data is the one place
    // they all read.
    let limits = &t.config.limits;
    let shared = SharedDedup::new(limits.dedup_capacity, limits.dedup_window_ms);
    if shared.claim(&host::SharedData, &event_id, at) == Claim::Duplicate {
        count(C::Dropped(capi_core::DropReason::Duplicate));
        if host::enabled(LogLevel::Debug) {
            host::log(
                LogLevel::Debug,
                &format!(
                    "capi: rule {}: event {event_id} not queued: duplicate (another worker)",
                    rule.name
                ),
            );
        }
        return;
    }
    let Ok(mut st) = state.try_borrow_mut() else {
        return;
    };
    let Some(a) = st.active.as_mut() else { return };
    if !Rc::ptr_eq(&a.config, &t.config) {
        return; // reconfigured meanwhile
    }
    // Queued as of the completion too: a batch's max_wait_ms counts from the response.
    if let Err(reason) = a.outbox.push(extracted.event, at) {
        host::log(
            LogLevel::Warn,
            &format!(
                "capi: rule {}: event {event_id} not queued: {reason}",
                rule.name
            ),
        );
    }
}

/// Envoy's callbacks on an HTTP context (routed by `runtime`, which always answers Continue).
impl Http {
    fn on_request_headers(&mut self, end_of_stream: bool) {
        self.start(end_of_stream);
    }

    fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) {
        if let Some(t) = self.track.as_mut()
            && !t.request_complete
        {
            let limit = t.config.limits.max_body_bytes;
            if let Some(buf) = t.request_body.as_mut()
                && !copy_chunk(BufferType::HttpRequestBody, buf, body_size, limit)
            {
                self.give_up(
                    C::SkippedBodyTooLarge,
                    LogLevel::Warn,
                    "request body larger than limits.max_body_bytes",
                );
                return;
            }
            t.request_complete = end_of_stream;
        }
    }

    fn on_request_trailers(&mut self) {
        if let Some(t) = self.track.as_mut() {
            t.request_complete = true;
        }
    }

    fn on_response_headers(&mut self, end_of_stream: bool) {
        self.response_started(end_of_stream);
    }

    fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) {
        let Some(t) = self.track.as_mut() else {
            return;
        };
        if t.status == 0 {
            return; // no response headers seen yet
        }
        let limit = t.config.limits.max_body_bytes;
        if let Some(buf) = t.response_body.as_mut()
            && !copy_chunk(BufferType::HttpResponseBody, buf, body_size, limit)
        {
            self.give_up(
                C::SkippedBodyTooLarge,
                LogLevel::Warn,
                "response body larger than limits.max_body_bytes",
            );
            return;
        }
        if end_of_stream {
            self.finish();
        }
    }

    fn on_response_trailers(&mut self) {
        if self.track.as_ref().is_some_and(|t| t.status != 0) {
            self.finish();
        }
    }

    fn on_log(&mut self) {
        // Still watching at the end of the stream: the response never completed.
        self.give_up(
            C::SkippedIncomplete,
            LogLevel::Debug,
            "the exchange ended before the response completed",
        );
    }
}
