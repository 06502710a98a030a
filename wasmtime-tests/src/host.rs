//! The host side of proxy-wasm ABI 0.2.1 (the `env` imports) and the few WASI preview1
//! functions Envoy gives a proxy-wasm module, on a virtual clock.
//!
//! Each function mirrors proxy-wasm-cpp-host `src/exports.cc` (which Envoy embeds) and
//! Envoy's `source/extensions/common/wasm/context.cc` (the `Context` those exports call):
//! the same status codes in the same situations, so that a filter which would trap in Envoy
//! (the Rust SDK `panic!`s on most unexpected statuses) traps here too.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use wasmtime::{Caller, Extern, Linker, Memory, TypedFunc};

use crate::abi::{self, Pairs, buffer, log_level, map, metric, status};
use crate::rng::Rng;

/// Envoy-wide state: one per simulated Envoy process, shared by its worker VMs.
#[derive(Debug, Default)]
pub struct Shared {
    /// Virtual wall clock (what `proxy_get_current_time_nanoseconds` returns).
    pub now_ns: u64,
    /// Virtual monotonic origin.
    pub monotonic_origin_ns: u64,
    /// Cluster names `proxy_http_call` accepts.
    pub clusters: BTreeSet<String>,
    /// Stats by name, shared by every VM as Envoy's stats store is.
    pub stats: BTreeMap<String, Stat>,
    pub shared_data: BTreeMap<Vec<u8>, (Vec<u8>, u32)>,
    pub next_cas: u32,
    /// Shared queues: (vm_id, name, owning vm index, owning root context, items).
    pub queues: Vec<SharedQueue>,
    /// `proxy_on_queue_ready` notifications to deliver after the current callback.
    pub queue_ready: Vec<(usize, u32, u32)>,
    /// Every call `proxy_http_call` accepted, in dispatch order.
    pub calls: Vec<HttpCall>,
    /// Calls `proxy_http_call` refused, with the status returned.
    pub rejected_calls: Vec<(HttpCall, u32)>,
    pub logs: Vec<LogRecord>,
    /// Every attempt to change a request or response (headers, body, trailers), or to answer
    /// or break a stream: an observing filter should leave this empty.
    pub mutations: Vec<Mutation>,
    /// Host-detected misuse that Envoy would not flag but that is a bug all the same
    /// (a gauge going below zero, which wraps Envoy's unsigned gauge).
    pub anomalies: Vec<String>,
    /// Traps, by VM: a trapped VM is dead, as in Envoy.
    pub traps: Vec<String>,
}

impl Shared {
    pub fn now_ms(&self) -> i64 {
        (self.now_ns / 1_000_000) as i64
    }

    fn next_cas(&mut self) -> u32 {
        self.next_cas = self.next_cas.wrapping_add(1);
        if self.next_cas == 0 {
            self.next_cas = 1;
        }
        self.next_cas
    }

    /// A stat's value (counters and gauges), 0 when never defined.
    pub fn stat(&self, name: &str) -> i64 {
        self.stats.get(name).map_or(0, |s| s.value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug, Clone)]
pub struct Stat {
    pub kind: StatKind,
    pub value: i64,
    pub samples: Vec<u64>,
}

#[derive(Debug, Clone)]
pub struct SharedQueue {
    pub vm_id: String,
    pub name: String,
    pub vm: usize,
    pub root: u32,
    pub items: std::collections::VecDeque<Vec<u8>>,
}

/// One `proxy_http_call`.
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub vm: usize,
    pub token: u32,
    /// The root context the call belongs to (Envoy makes every call on the root context).
    pub root: u32,
    /// The context whose callback dispatched it.
    pub from_context: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(String, String)>,
    pub timeout_ms: u32,
    pub dispatched_at_ms: i64,
}

impl HttpCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        abi::header(&self.headers, name)
    }
}

#[derive(Debug, Clone)]
pub struct LogRecord {
    pub vm: usize,
    pub context: u32,
    pub level: u32,
    pub message: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Mutation {
    pub vm: usize,
    pub context: u32,
    pub what: String,
}

/// A root context's timer.
#[derive(Debug, Clone, Default)]
pub struct RootCtx {
    pub tick_period_ms: u32,
    pub next_tick_ns: Option<u64>,
    /// Set when `proxy_on_done` returned false: waiting for `proxy_done`.
    pub pending_done: bool,
}

/// What Envoy holds for one HTTP stream. A map or body is `Some` only while Envoy would hand
/// it to the filter: request headers during `on_request_headers` (and after, only while the
/// filter holds them with a stop status), a body chunk during its callback (or, once the
/// filter returned StopIterationAndBuffer, the whole buffered body).
#[derive(Debug, Clone, Default)]
pub struct HttpCtx {
    pub root: u32,
    pub request_headers: Option<Pairs>,
    pub request_trailers: Option<Pairs>,
    pub response_headers: Option<Pairs>,
    pub response_trailers: Option<Pairs>,
    pub request_body: Option<Vec<u8>>,
    pub response_body: Option<Vec<u8>>,
    /// During `proxy_on_log`: Envoy's access-log view (request and response headers,
    /// response trailers), read-only.
    pub log_phase: Option<(Pairs, Pairs, Pairs)>,
    pub properties: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Debug, Clone)]
pub enum Ctx {
    Root(RootCtx),
    Http(Box<HttpCtx>),
}

/// The answer being delivered to `proxy_on_http_call_response`.
#[derive(Debug, Clone, Default)]
pub struct CallResponse {
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub trailers: Pairs,
}

/// A call `proxy_http_call` accepted and nobody has answered yet.
#[derive(Debug, Clone)]
pub struct PendingCall {
    pub root: u32,
    pub call_index: usize,
    pub timeout_ms: u32,
    pub dispatched_ns: u64,
}

/// Everything one VM (one Envoy worker thread) holds: the store's data.
pub struct VmState {
    pub shared: Rc<RefCell<Shared>>,
    pub vm: usize,
    pub env: Vec<(String, String)>,
    pub vm_config: Vec<u8>,
    pub rng: Rng,
    pub log_level: u32,
    pub memory: Option<Memory>,
    pub malloc: Option<TypedFunc<u32, u32>>,
    /// The context whose callback is running (0: none).
    pub current: u32,
    /// Set by `proxy_set_effective_context` for the rest of the callback.
    pub effective: u32,
    pub contexts: BTreeMap<u32, Ctx>,
    pub next_context_id: u32,
    /// The plugin configuration, only during `proxy_on_configure` (Envoy's `temp_plugin_`).
    pub configuring: Option<Vec<u8>>,
    /// The answer, only during `proxy_on_http_call_response`.
    pub call_response: Option<CallResponse>,
    /// What `proxy_get_status` reports (Envoy sets BrokenConnection/"reset" for a failed call).
    pub call_status: (u32, String),
    pub pending: BTreeMap<u32, PendingCall>,
    /// Calls accepted during the current callback, for the driver to schedule.
    pub new_calls: Vec<u32>,
    pub next_token: u32,
    /// Metric ids of this VM → stat names (Envoy's ids are per VM, the stats global).
    pub metrics: BTreeMap<u32, String>,
    next_metric: [u32; 3],
    /// Root contexts that called `proxy_done`: deleted once the callback returns.
    pub done_roots: Vec<u32>,
    /// Root-level properties (`plugin_root_id`, `plugin_name`, ...), path parts joined by NUL.
    pub properties: BTreeMap<Vec<u8>, Vec<u8>>,
    pub failed: bool,
}

impl VmState {
    pub fn new(
        shared: Rc<RefCell<Shared>>,
        vm: usize,
        env: Vec<(String, String)>,
        vm_config: Vec<u8>,
        seed: u64,
    ) -> Self {
        VmState {
            shared,
            vm,
            env,
            vm_config,
            rng: Rng::new(seed),
            log_level: log_level::INFO,
            memory: None,
            malloc: None,
            current: 0,
            effective: 0,
            contexts: BTreeMap::new(),
            // Envoy numbers contexts from 1, per VM.
            next_context_id: 1,
            configuring: None,
            call_response: None,
            call_status: (status::OK, String::new()),
            pending: BTreeMap::new(),
            new_calls: Vec::new(),
            next_token: 1,
            metrics: BTreeMap::new(),
            next_metric: [0; 3],
            done_roots: Vec::new(),
            properties: BTreeMap::new(),
            failed: false,
        }
    }

    /// `contextOrEffectiveContext()`: the effective context if set and alive, else the current.
    pub fn ctx_id(&self) -> u32 {
        if self.effective != 0 && self.contexts.contains_key(&self.effective) {
            self.effective
        } else {
            self.current
        }
    }

    fn http(&self) -> Option<&HttpCtx> {
        match self.contexts.get(&self.ctx_id()) {
            Some(Ctx::Http(h)) => Some(h),
            _ => None,
        }
    }

    fn http_mut(&mut self) -> Option<&mut HttpCtx> {
        let id = self.ctx_id();
        match self.contexts.get_mut(&id) {
            Some(Ctx::Http(h)) => Some(h),
            _ => None,
        }
    }

    /// The root context of the context in effect.
    pub fn root_of(&self, id: u32) -> u32 {
        match self.contexts.get(&id) {
            Some(Ctx::Http(h)) => h.root,
            _ => id,
        }
    }

    fn log(&self, level: u32, message: String) {
        let mut sh = self.shared.borrow_mut();
        let at_ms = sh.now_ms();
        sh.logs.push(LogRecord {
            vm: self.vm,
            context: self.ctx_id(),
            level,
            message,
            at_ms,
        });
    }

    fn mutation(&self, what: String) {
        self.shared.borrow_mut().mutations.push(Mutation {
            vm: self.vm,
            context: self.ctx_id(),
            what,
        });
    }

    /// Envoy's `getConstMap`: the map the filter may read now, if any.
    fn const_map(&self, t: u32) -> Option<&Pairs> {
        match t {
            map::HTTP_CALL_RESPONSE_HEADERS => self.call_response.as_ref().map(|r| &r.headers),
            map::HTTP_CALL_RESPONSE_TRAILERS => self.call_response.as_ref().map(|r| &r.trailers),
            _ => {
                let h = self.http()?;
                if let Some((req, resp, trailers)) = &h.log_phase {
                    return match t {
                        map::REQUEST_HEADERS => Some(req),
                        map::RESPONSE_HEADERS => Some(resp),
                        map::RESPONSE_TRAILERS => Some(trailers),
                        _ => None,
                    };
                }
                match t {
                    map::REQUEST_HEADERS => h.request_headers.as_ref(),
                    map::REQUEST_TRAILERS => h.request_trailers.as_ref(),
                    map::RESPONSE_HEADERS => h.response_headers.as_ref(),
                    map::RESPONSE_TRAILERS => h.response_trailers.as_ref(),
                    _ => None,
                }
            }
        }
    }

    /// Envoy's `getMap`: the map the filter may change now, if any.
    fn mutable_map(&mut self, t: u32) -> Option<&mut Pairs> {
        let h = self.http_mut()?;
        if h.log_phase.is_some() {
            return None;
        }
        match t {
            map::REQUEST_HEADERS => h.request_headers.as_mut(),
            map::REQUEST_TRAILERS => h.request_trailers.as_mut(),
            map::RESPONSE_HEADERS => h.response_headers.as_mut(),
            map::RESPONSE_TRAILERS => h.response_trailers.as_mut(),
            _ => None,
        }
    }

    /// Envoy's `getBuffer`.
    fn buffer(&self, t: u32) -> Option<&[u8]> {
        match t {
            buffer::VM_CONFIGURATION => Some(&self.vm_config),
            buffer::PLUGIN_CONFIGURATION => self.configuring.as_deref(),
            buffer::HTTP_CALL_RESPONSE_BODY => {
                self.call_response.as_ref().map(|r| r.body.as_slice())
            }
            buffer::HTTP_REQUEST_BODY => self.http()?.request_body.as_deref(),
            buffer::HTTP_RESPONSE_BODY => self.http()?.response_body.as_deref(),
            _ => None,
        }
    }
}

type C<'a> = Caller<'a, VmState>;

const PARSE_FAILURE: u32 = 4;

fn memory(caller: &mut C<'_>) -> Option<Memory> {
    if let Some(m) = caller.data().memory {
        return Some(m);
    }
    let m = caller.get_export("memory").and_then(Extern::into_memory)?;
    caller.data_mut().memory = Some(m);
    Some(m)
}

/// Reads `len` bytes of guest memory at `ptr`.
fn read(caller: &mut C<'_>, ptr: u32, len: u32) -> Option<Vec<u8>> {
    let m = memory(caller)?;
    let (start, len) = (ptr as usize, len as usize);
    m.data(&*caller)
        .get(start..start.checked_add(len)?)
        .map(<[u8]>::to_vec)
}

fn write(caller: &mut C<'_>, ptr: u32, bytes: &[u8]) -> bool {
    let Some(m) = memory(caller) else {
        return false;
    };
    let start = ptr as usize;
    match m
        .data_mut(&mut *caller)
        .get_mut(start..start.saturating_add(bytes.len()))
    {
        Some(dst) if dst.len() == bytes.len() => {
            dst.copy_from_slice(bytes);
            true
        }
        _ => false,
    }
}

fn write_u32(caller: &mut C<'_>, ptr: u32, v: u32) -> bool {
    write(caller, ptr, &v.to_le_bytes())
}

fn write_u64(caller: &mut C<'_>, ptr: u32, v: u64) -> bool {
    write(caller, ptr, &v.to_le_bytes())
}

/// Allocates in the guest (its `malloc` or `proxy_on_memory_allocate` export) and copies.
fn alloc_copy(caller: &mut C<'_>, bytes: &[u8]) -> wasmtime::Result<Option<u32>> {
    let f = match caller.data().malloc.clone() {
        Some(f) => f,
        None => {
            let f = ["malloc", "proxy_on_memory_allocate"]
                .iter()
                .find_map(|n| caller.get_export(n).and_then(Extern::into_func))
                .ok_or_else(|| {
                    wasmtime::format_err!(
                        "the module exports no malloc nor proxy_on_memory_allocate"
                    )
                })?
                .typed::<u32, u32>(&*caller)?;
            caller.data_mut().malloc = Some(f.clone());
            f
        }
    };
    let p = f.call(&mut *caller, bytes.len() as u32)?;
    if p == 0 || !write(caller, p, bytes) {
        return Ok(None);
    }
    Ok(Some(p))
}

/// Envoy's `copyToPointerSize`: nothing is allocated for an empty value (pointer 0).
fn copy_out(
    caller: &mut C<'_>,
    bytes: &[u8],
    ptr_ptr: u32,
    size_ptr: u32,
) -> wasmtime::Result<u32> {
    let p = if bytes.is_empty() {
        0
    } else {
        match alloc_copy(caller, bytes)? {
            Some(p) => p,
            None => return Ok(status::INVALID_MEMORY_ACCESS),
        }
    };
    if !write_u32(caller, ptr_ptr, p) || !write_u32(caller, size_ptr, bytes.len() as u32) {
        return Ok(status::INVALID_MEMORY_ACCESS);
    }
    Ok(status::OK)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Envoy's `Buffer::copyFrom` for a mutable body: prepend, replace all, or append.
fn copy_from(buf: &mut Vec<u8>, start: usize, length: usize, data: &[u8]) -> u32 {
    if start == 0 {
        if length == 0 {
            buf.splice(0..0, data.iter().copied());
            status::OK
        } else if length >= buf.len() {
            buf.clear();
            buf.extend_from_slice(data);
            status::OK
        } else {
            status::BAD_ARGUMENT
        }
    } else if start >= buf.len() {
        buf.extend_from_slice(data);
        status::OK
    } else {
        status::BAD_ARGUMENT
    }
}

/// Every `env` function of proxy-wasm ABI 0.2.1 that the Rust SDK 0.2.x can import, and the
/// WASI preview1 functions proxy-wasm-cpp-host defines. A module importing anything else
/// fails to instantiate, as it would in Envoy.
pub fn add_to_linker(linker: &mut Linker<VmState>) -> wasmtime::Result<()> {
    add_env(linker)?;
    crate::wasi::add_to_linker(linker)?;
    Ok(())
}

fn add_env(l: &mut Linker<VmState>) -> wasmtime::Result<()> {
    l.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: u32, ptr: u32, len: u32| -> u32 {
            if level > log_level::CRITICAL {
                return status::BAD_ARGUMENT;
            }
            let Some(msg) = read(&mut c, ptr, len) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            c.data().log(level, lossy(&msg));
            status::OK
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C<'_>, ptr: u32| -> u32 {
            let level = c.data().log_level;
            if write_u32(&mut c, ptr, level) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ptr: u32| -> u32 {
            let now = c.data().shared.borrow().now_ns;
            if write_u64(&mut c, ptr, now) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: C<'_>, period: u32| -> u32 {
            let s = c.data_mut();
            let root = s.root_of(s.ctx_id());
            let now = s.shared.borrow().now_ns;
            match s.contexts.get_mut(&root) {
                Some(Ctx::Root(r)) => {
                    // Envoy re-arms the root's timer on every call (`setTimerPeriod`); 0 stops it.
                    r.tick_period_ms = period;
                    r.next_tick_ns = (period > 0).then(|| now + u64::from(period) * 1_000_000);
                    status::OK
                }
                _ => status::BAD_ARGUMENT,
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>,
         t: u32,
         start: u32,
         length: u32,
         ptr_ptr: u32,
         size_ptr: u32|
         -> wasmtime::Result<u32> {
            if t > buffer::MAX {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(b) = c.data().buffer(t) else {
                return Ok(status::NOT_FOUND);
            };
            let (start, length) = (start as u64, length as u64);
            // exports.cc get_buffer_bytes: overflow check, then clamp to the buffer's size;
            // a zero length returns Ok without writing the out-pointers.
            if start > b.len() as u64 {
                return Ok(status::BAD_ARGUMENT);
            }
            let end = (start + length).min(b.len() as u64);
            if end == start {
                return Ok(status::OK);
            }
            let bytes = b[start as usize..end as usize].to_vec();
            copy_out(&mut c, &bytes, ptr_ptr, size_ptr)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: C<'_>, t: u32, len_ptr: u32, flags_ptr: u32| -> u32 {
            if t > buffer::MAX {
                return status::BAD_ARGUMENT;
            }
            let Some(n) = c.data().buffer(t).map(<[u8]>::len) else {
                return status::NOT_FOUND;
            };
            if write_u32(&mut c, len_ptr, n as u32) && write_u32(&mut c, flags_ptr, 0) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: C<'_>, t: u32, start: u32, length: u32, ptr: u32, len: u32| -> u32 {
            if t > buffer::MAX {
                return status::BAD_ARGUMENT;
            }
            if c.data().buffer(t).is_none() {
                return status::NOT_FOUND;
            }
            let Some(data) = read(&mut c, ptr, len) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            c.data().mutation(format!(
                "set_buffer_bytes(buffer {t}, start {start}, length {length}, {} bytes)",
                data.len()
            ));
            let s = c.data_mut();
            let body = match (t, s.http_mut()) {
                (buffer::HTTP_REQUEST_BODY, Some(h)) => h.request_body.as_mut(),
                (buffer::HTTP_RESPONSE_BODY, Some(h)) => h.response_body.as_mut(),
                _ => None,
            };
            match body {
                Some(b) => copy_from(b, start as usize, length as usize, &data),
                // Configuration and call bodies are immutable in Envoy.
                None => status::BAD_ARGUMENT,
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, t: u32, ptr_ptr: u32, size_ptr: u32| -> wasmtime::Result<u32> {
            if t > map::MAX {
                return Ok(status::BAD_ARGUMENT);
            }
            // context.cc getHeaderMapPairs: always Ok, an unavailable map reads as empty.
            let pairs = c.data().const_map(t).cloned().unwrap_or_default();
            let bytes = if pairs.is_empty() {
                Vec::new()
            } else {
                abi::serialize_pairs(&pairs)
            };
            copy_out(&mut c, &bytes, ptr_ptr, size_ptr)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>,
         t: u32,
         kptr: u32,
         klen: u32,
         ptr_ptr: u32,
         size_ptr: u32|
         -> wasmtime::Result<u32> {
            if t > map::MAX {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(key) = read(&mut c, kptr, klen) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            // context.cc getHeaderMapValue: an unavailable map is BadArgument (outside the
            // access-log phase), a missing key NotFound; the first value wins.
            let value = match c.data().const_map(t) {
                None => return Ok(status::BAD_ARGUMENT),
                Some(m) => m
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                    .map(|(_, v)| v.clone()),
            };
            match value {
                None => Ok(status::NOT_FOUND),
                Some(v) => copy_out(&mut c, &v, ptr_ptr, size_ptr),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, t: u32, ptr: u32, len: u32| -> u32 {
            if t > map::MAX {
                return status::BAD_ARGUMENT;
            }
            let Some(data) = read(&mut c, ptr, len) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            c.data()
                .mutation(format!("set_header_map_pairs({})", map::name(t)));
            let pairs: Pairs = abi::parse_pairs(&data)
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            match c.data_mut().mutable_map(t) {
                Some(m) => {
                    *m = pairs;
                    status::OK
                }
                None => status::BAD_ARGUMENT,
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: C<'_>, t: u32, ptr: u32| -> u32 {
            if t > map::MAX {
                return status::BAD_ARGUMENT;
            }
            let Some(size) = c
                .data_mut()
                .mutable_map(t)
                .map(|m| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>())
            else {
                return status::BAD_ARGUMENT;
            };
            if write_u32(&mut c, ptr, size as u32) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kl: u32, vp: u32, vl: u32| -> u32 {
            if t > map::MAX {
                return status::BAD_ARGUMENT;
            }
            let (Some(k), Some(v)) = (read(&mut c, kp, kl), read(&mut c, vp, vl)) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            c.data().mutation(format!(
                "add_header_map_value({}, {})",
                map::name(t),
                lossy(&k)
            ));
            match c.data_mut().mutable_map(t) {
                Some(m) => {
                    m.push((k.to_ascii_lowercase(), v));
                    status::OK
                }
                None => status::BAD_ARGUMENT,
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kl: u32, vp: u32, vl: u32| -> u32 {
            if t > map::MAX {
                return status::BAD_ARGUMENT;
            }
            let (Some(k), Some(v)) = (read(&mut c, kp, kl), read(&mut c, vp, vl)) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            c.data().mutation(format!(
                "replace_header_map_value({}, {})",
                map::name(t),
                lossy(&k)
            ));
            match c.data_mut().mutable_map(t) {
                Some(m) => {
                    let k = k.to_ascii_lowercase();
                    m.retain(|(x, _)| !x.eq_ignore_ascii_case(&k));
                    m.push((k, v));
                    status::OK
                }
                None => status::BAD_ARGUMENT,
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, t: u32, kp: u32, kl: u32| -> u32 {
            if t > map::MAX {
                return status::BAD_ARGUMENT;
            }
            let Some(k) = read(&mut c, kp, kl) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            c.data().mutation(format!(
                "remove_header_map_value({}, {})",
                map::name(t),
                lossy(&k)
            ));
            match c.data_mut().mutable_map(t) {
                Some(m) => {
                    m.retain(|(x, _)| !x.eq_ignore_ascii_case(&k));
                    status::OK
                }
                None => status::BAD_ARGUMENT,
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, pp: u32, pl: u32, ptr_ptr: u32, size_ptr: u32| -> wasmtime::Result<u32> {
            let Some(path) = read(&mut c, pp, pl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let s = c.data();
            let value = s
                .http()
                .and_then(|h| h.properties.get(&path))
                .or_else(|| s.properties.get(&path))
                .cloned();
            match value {
                Some(v) => copy_out(&mut c, &v, ptr_ptr, size_ptr),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: C<'_>, pp: u32, pl: u32, vp: u32, vl: u32| -> u32 {
            let (Some(path), Some(value)) = (read(&mut c, pp, pl), read(&mut c, vp, vl)) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            // context.cc setProperty: NotFound without a stream (in a root context).
            match c.data_mut().http_mut() {
                Some(h) => {
                    h.properties.insert(path, value);
                    status::OK
                }
                None => status::NOT_FOUND,
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: C<'_>,
         up: u32,
         ul: u32,
         hp: u32,
         hl: u32,
         bp: u32,
         bl: u32,
         tp: u32,
         tl: u32,
         timeout: u32,
         token_ptr: u32|
         -> u32 {
            let (Some(cluster), Some(h), Some(body), Some(t)) = (
                read(&mut c, up, ul),
                read(&mut c, hp, hl),
                read(&mut c, bp, bl),
                read(&mut c, tp, tl),
            ) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            // exports.cc http_call writes a 0 token first to check the pointer.
            if !write_u32(&mut c, token_ptr, 0) {
                return status::INVALID_MEMORY_ACCESS;
            }
            let headers = abi::to_strings(&abi::parse_pairs(&h));
            let trailers = abi::to_strings(&abi::parse_pairs(&t));
            let s = c.data_mut();
            let from_context = s.ctx_id();
            let root = s.root_of(from_context);
            let now_ns = s.shared.borrow().now_ns;
            let mut call = HttpCall {
                vm: s.vm,
                token: 0,
                root,
                from_context,
                cluster: lossy(&cluster),
                headers,
                body,
                trailers,
                timeout_ms: timeout,
                dispatched_at_ms: (now_ns / 1_000_000) as i64,
            };
            // context.cc httpCall: a negative timeout, an unknown cluster, or a request
            // without :path, :method and :authority (Host) is BadArgument.
            let known_cluster = s.shared.borrow().clusters.contains(&call.cluster);
            let complete = [":path", ":method", ":authority"]
                .iter()
                .all(|h| call.header(h).is_some());
            if timeout > i32::MAX as u32 || !known_cluster || !complete {
                s.shared
                    .borrow_mut()
                    .rejected_calls
                    .push((call, status::BAD_ARGUMENT));
                return status::BAD_ARGUMENT;
            }
            // Tokens are per VM (`Wasm::nextHttpCallId`), never 0.
            let token = s.next_token;
            s.next_token = s.next_token.wrapping_add(1).max(1);
            call.token = token;
            // Envoy adds content-length for a non-empty body.
            if !call.body.is_empty() {
                call.headers
                    .retain(|(k, _)| !k.eq_ignore_ascii_case("content-length"));
                call.headers
                    .push(("content-length".to_owned(), call.body.len().to_string()));
            }
            let index = {
                let mut sh = s.shared.borrow_mut();
                sh.calls.push(call);
                sh.calls.len() - 1
            };
            s.pending.insert(
                token,
                PendingCall {
                    root,
                    call_index: index,
                    timeout_ms: timeout,
                    dispatched_ns: now_ns,
                },
            );
            s.new_calls.push(token);
            if write_u32(&mut c, token_ptr, token) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_status",
        |mut c: C<'_>, code_ptr: u32, ptr_ptr: u32, size_ptr: u32| -> wasmtime::Result<u32> {
            let (code, msg) = c.data().call_status.clone();
            if !write_u32(&mut c, code_ptr, code) {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            copy_out(&mut c, msg.as_bytes(), ptr_ptr, size_ptr)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: C<'_>, id: u32| -> u32 {
            let s = c.data_mut();
            if s.contexts.contains_key(&id) {
                s.effective = id;
                status::OK
            } else {
                status::BAD_ARGUMENT
            }
        },
    )?;
    l.func_wrap("env", "proxy_done", |mut c: C<'_>| -> u32 {
        // WasmBase::done: only a root context whose on_done returned false may call it.
        let s = c.data_mut();
        let id = s.ctx_id();
        match s.contexts.get_mut(&id) {
            Some(Ctx::Root(r)) if r.pending_done => {
                r.pending_done = false;
                s.done_roots.push(id);
                status::OK
            }
            _ => status::NOT_FOUND,
        }
    })?;
    l.func_wrap("env", "proxy_continue_stream", |c: C<'_>, t: u32| -> u32 {
        if t > crate::abi::stream::MAX {
            return status::BAD_ARGUMENT;
        }
        c.data().mutation(format!("continue_stream({t})"));
        status::OK
    })?;
    l.func_wrap("env", "proxy_close_stream", |c: C<'_>, t: u32| -> u32 {
        if t > crate::abi::stream::MAX {
            return status::BAD_ARGUMENT;
        }
        c.data().mutation(format!("close_stream({t})"));
        status::OK
    })?;
    l.func_wrap(
        "env",
        "proxy_send_local_response",
        |c: C<'_>,
         code: u32,
         _dp: u32,
         _dl: u32,
         _bp: u32,
         bl: u32,
         _hp: u32,
         _hl: u32,
         _grpc: i32|
         -> u32 {
            c.data()
                .mutation(format!("send_local_response({code}, {bl} bytes)"));
            status::OK
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: C<'_>, t: u32, np: u32, nl: u32, id_ptr: u32| -> u32 {
            let Some(name) = read(&mut c, np, nl) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let name = lossy(&name);
            let kind = match t {
                metric::COUNTER => StatKind::Counter,
                metric::GAUGE => StatKind::Gauge,
                metric::HISTOGRAM => StatKind::Histogram,
                _ => return status::BAD_ARGUMENT,
            };
            let s = c.data_mut();
            s.next_metric[t as usize] += 1;
            let id = (s.next_metric[t as usize] << 2) | t;
            s.metrics.insert(id, name.clone());
            s.shared.borrow_mut().stats.entry(name).or_insert(Stat {
                kind,
                value: 0,
                samples: Vec::new(),
            });
            if write_u32(&mut c, id_ptr, id) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_increment_metric",
        |c: C<'_>, id: u32, offset: i64| -> u32 {
            let s = c.data();
            let Some(name) = s.metrics.get(&id) else {
                // context.cc incrementMetric: an unknown counter id falls through to BadArgument.
                return if id & metric::TYPE_MASK == metric::GAUGE {
                    status::NOT_FOUND
                } else {
                    status::BAD_ARGUMENT
                };
            };
            let mut sh = s.shared.borrow_mut();
            let Some(stat) = sh.stats.get_mut(name) else {
                return status::NOT_FOUND;
            };
            match stat.kind {
                StatKind::Counter if offset > 0 => {
                    stat.value += offset;
                    status::OK
                }
                StatKind::Counter => status::BAD_ARGUMENT,
                StatKind::Gauge => {
                    stat.value += offset;
                    if stat.value < 0 {
                        let msg = format!(
                            "gauge {name} went below zero ({}): Envoy's unsigned gauge wraps",
                            stat.value
                        );
                        sh.anomalies.push(msg);
                    }
                    status::OK
                }
                StatKind::Histogram => status::BAD_ARGUMENT,
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_record_metric",
        |c: C<'_>, id: u32, value: u64| -> u32 {
            let s = c.data();
            let Some(name) = s.metrics.get(&id) else {
                return status::NOT_FOUND;
            };
            let mut sh = s.shared.borrow_mut();
            let Some(stat) = sh.stats.get_mut(name) else {
                return status::NOT_FOUND;
            };
            match stat.kind {
                StatKind::Counter => stat.value += value as i64,
                StatKind::Gauge => stat.value = value as i64,
                StatKind::Histogram => stat.samples.push(value),
            }
            status::OK
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: C<'_>, id: u32, ptr: u32| -> u32 {
            let value = {
                let s = c.data();
                let Some(name) = s.metrics.get(&id) else {
                    return status::NOT_FOUND;
                };
                let sh = s.shared.borrow();
                match sh.stats.get(name) {
                    Some(st) if st.kind != StatKind::Histogram => st.value as u64,
                    Some(_) => return status::BAD_ARGUMENT,
                    None => return status::NOT_FOUND,
                }
            };
            if write_u64(&mut c, ptr, value) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_shared_data",
        |mut c: C<'_>,
         kp: u32,
         kl: u32,
         ptr_ptr: u32,
         size_ptr: u32,
         cas_ptr: u32|
         -> wasmtime::Result<u32> {
            let Some(key) = read(&mut c, kp, kl) else {
                return Ok(status::INVALID_MEMORY_ACCESS);
            };
            let entry = c.data().shared.borrow().shared_data.get(&key).cloned();
            let Some((value, cas)) = entry else {
                return Ok(status::NOT_FOUND);
            };
            let r = copy_out(&mut c, &value, ptr_ptr, size_ptr)?;
            if r != status::OK || !write_u32(&mut c, cas_ptr, cas) {
                return Ok(status::INVALID_MEMORY_ACCESS);
            }
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: C<'_>, kp: u32, kl: u32, vp: u32, vl: u32, cas: u32| -> u32 {
            let (Some(key), Some(value)) = (read(&mut c, kp, kl), read(&mut c, vp, vl)) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let mut sh = c.data().shared.borrow_mut();
            if cas != 0
                && sh
                    .shared_data
                    .get(&key)
                    .is_some_and(|(_, current)| *current != cas)
            {
                return status::CAS_MISMATCH;
            }
            let next = sh.next_cas();
            sh.shared_data.insert(key, (value, next));
            status::OK
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_register_shared_queue",
        |mut c: C<'_>, np: u32, nl: u32, token_ptr: u32| -> u32 {
            let Some(name) = read(&mut c, np, nl) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let token = {
                let s = c.data();
                let root = s.root_of(s.ctx_id());
                let mut sh = s.shared.borrow_mut();
                let name = lossy(&name);
                let vm_id = String::from_utf8_lossy(
                    s.properties
                        .get(b"plugin_vm_id".as_slice())
                        .map_or(&[][..], |v| v),
                )
                .into_owned();
                match sh
                    .queues
                    .iter()
                    .position(|q| q.vm_id == vm_id && q.name == name)
                {
                    Some(i) => {
                        sh.queues[i].vm = s.vm;
                        sh.queues[i].root = root;
                        i as u32 + 1
                    }
                    None => {
                        sh.queues.push(SharedQueue {
                            vm_id,
                            name,
                            vm: s.vm,
                            root,
                            items: Default::default(),
                        });
                        sh.queues.len() as u32
                    }
                }
            };
            if write_u32(&mut c, token_ptr, token) {
                status::OK
            } else {
                status::INVALID_MEMORY_ACCESS
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_resolve_shared_queue",
        |mut c: C<'_>, vp: u32, vl: u32, np: u32, nl: u32, token_ptr: u32| -> u32 {
            let (Some(vm_id), Some(name)) = (read(&mut c, vp, vl), read(&mut c, np, nl)) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let found = {
                let sh = c.data().shared.borrow();
                sh.queues.iter().position(|q| {
                    q.vm_id.as_bytes() == vm_id.as_slice() && q.name.as_bytes() == name.as_slice()
                })
            };
            match found {
                Some(i) => {
                    if write_u32(&mut c, token_ptr, i as u32 + 1) {
                        status::OK
                    } else {
                        status::INVALID_MEMORY_ACCESS
                    }
                }
                None => status::NOT_FOUND,
            }
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_enqueue_shared_queue",
        |mut c: C<'_>, token: u32, vp: u32, vl: u32| -> u32 {
            let Some(value) = read(&mut c, vp, vl) else {
                return status::INVALID_MEMORY_ACCESS;
            };
            let mut sh = c.data().shared.borrow_mut();
            let Some(q) = sh.queues.get_mut(token.wrapping_sub(1) as usize) else {
                return status::NOT_FOUND;
            };
            q.items.push_back(value);
            let note = (q.vm, q.root, token);
            sh.queue_ready.push(note);
            status::OK
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_dequeue_shared_queue",
        |mut c: C<'_>, token: u32, ptr_ptr: u32, size_ptr: u32| -> wasmtime::Result<u32> {
            let item = {
                let mut sh = c.data().shared.borrow_mut();
                let Some(q) = sh.queues.get_mut(token.wrapping_sub(1) as usize) else {
                    return Ok(status::NOT_FOUND);
                };
                q.items.pop_front()
            };
            match item {
                Some(v) => copy_out(&mut c, &v, ptr_ptr, size_ptr),
                None => Ok(status::EMPTY),
            }
        },
    )?;
    // gRPC: Envoy defines these; the filter has no gRPC service, so a call finds no cluster
    // (context.cc grpcCall/grpcStream: ParseFailure) and a token is unknown (NotFound).
    l.func_wrap(
        "env",
        "proxy_grpc_call",
        |c: C<'_>,
         _a: u32,
         _b: u32,
         _sn: u32,
         _sl: u32,
         _mn: u32,
         _ml: u32,
         _ip: u32,
         _il: u32,
         _rp: u32,
         _rl: u32,
         _t: u32,
         _tok: u32|
         -> u32 {
            c.data().mutation("grpc_call".to_owned());
            PARSE_FAILURE
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_grpc_stream",
        |c: C<'_>,
         _a: u32,
         _b: u32,
         _sn: u32,
         _sl: u32,
         _mn: u32,
         _ml: u32,
         _ip: u32,
         _il: u32,
         _tok: u32|
         -> u32 {
            c.data().mutation("grpc_stream".to_owned());
            PARSE_FAILURE
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_grpc_send",
        |_c: C<'_>, _t: u32, _p: u32, _l: u32, _eos: u32| -> u32 { status::NOT_FOUND },
    )?;
    l.func_wrap("env", "proxy_grpc_cancel", |_c: C<'_>, _t: u32| -> u32 {
        status::NOT_FOUND
    })?;
    l.func_wrap("env", "proxy_grpc_close", |_c: C<'_>, _t: u32| -> u32 {
        status::NOT_FOUND
    })?;
    l.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |_c: C<'_>, _np: u32, _nl: u32, _ap: u32, _al: u32, _rp: u32, _rs: u32| -> u32 {
            status::NOT_FOUND
        },
    )?;
    Ok(())
}

/// Clears the per-callback `effective` context (cpp-host resets `effective_context_id_`).
pub fn begin_callback(s: &mut VmState, ctx: u32) {
    s.current = ctx;
    s.effective = 0;
}

pub fn end_callback(s: &mut VmState) {
    s.current = 0;
    s.effective = 0;
}

/// Takes a root's HTTP body or map out for the driver (used to compute what the client got).
pub fn http_ctx_mut(s: &mut VmState, id: u32) -> Option<&mut HttpCtx> {
    match s.contexts.get_mut(&id) {
        Some(Ctx::Http(h)) => Some(h),
        _ => None,
    }
}
