//! A simulated Envoy around the proxy-wasm host: worker VMs, root and HTTP contexts driven
//! in Envoy's order, a virtual clock with tick timers, and a scheduler that answers the
//! filter's `dispatch_http_call`s (status, headers, body, delay, reset or timeout).
//!
//! Envoy behaviours mirrored here, and where they come from:
//! * One VM per worker thread (Envoy's wasm extension clones the VM into each worker's thread
//!   local slot, `source/extensions/common/wasm/wasm.cc` `getOrCreateThreadLocalPlugin`):
//!   [`Envoy::add_vm`]; VMs share only the stats store, shared data and shared queues.
//! * A root context per plugin configuration (the plugin key includes the configuration):
//!   a reload is [`Envoy::start_root`] then [`Envoy::retire_root`] (`proxy_on_done`, then
//!   `proxy_on_delete` at once if it returned true, else after `proxy_done`), and deleting a
//!   root cancels its outstanding calls (their handlers die with the context).
//! * Stream order (`ConnectionManagerImpl::doDeferredStreamDestroy`: access log, then
//!   `destroyFilters`): ..., `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
//! * Header maps and bodies are readable only while Envoy holds them for the filter
//!   (`context.cc` `decodeHeaders`/`decodeData`/`encodeHeaders`/`encodeData` null them after
//!   a Continue); after StopIterationAndBuffer the next body callback sees the whole buffer.
//! * The last body callback may be an empty end-of-stream chunk: observed with Envoy 1.40
//!   for HTTP/1 (a chunk with end_of_stream false, then an empty one with true), the default
//!   [`Chunking::Http1`].
//! * A call that times out is answered, with `:status` 504 (the router's
//!   `onUpstreamTimeoutAbort` local reply, "upstream request timeout"): [`Reply::envoy_timeout`];
//!   a reset calls back with no headers and status BrokenConnection (`context.cc`
//!   `onHttpCallFailure`): [`Reply::Reset`].
//! * Calls are made on the root context (`exports.cc` `http_call` uses `root_context()`), and
//!   the answer comes to `proxy_on_http_call_response(root_id, token, ...)`.

use std::cell::{Ref, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use wasmtime::{Engine, Instance, Linker, Module, Store, TypedFunc};

use crate::abi::{self, Action, Pairs};
use crate::host::{self, CallResponse, Ctx, HttpCall, HttpCtx, RootCtx, Shared, VmState};

/// What went wrong driving the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// The module trapped: in Envoy the VM is dead from then on.
    Trap {
        vm: usize,
        callback: &'static str,
        context: u32,
        message: String,
    },
    /// A callback on a VM that trapped before.
    VmFailed { vm: usize },
    /// The driver was asked for something that does not exist (a test bug).
    Usage(String),
    /// Loading, compiling or instantiating the module failed.
    Setup(String),
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trap {
                vm,
                callback,
                context,
                message,
            } => write!(
                f,
                "vm {vm}: trap in {callback} (context {context}): {message}"
            ),
            Self::VmFailed { vm } => write!(f, "vm {vm} trapped earlier and is dead"),
            Self::Usage(m) => write!(f, "host usage: {m}"),
            Self::Setup(m) => write!(f, "setup: {m}"),
        }
    }
}

impl std::error::Error for HostError {}

fn setup(e: impl fmt::Display) -> HostError {
    HostError::Setup(e.to_string())
}

/// A compiled proxy-wasm module and the engine it was compiled for (compile once, instantiate
/// per VM: cheap).
pub struct FilterModule {
    pub engine: Engine,
    pub module: Module,
}

impl FilterModule {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HostError> {
        let mut cfg = wasmtime::Config::new();
        // `CAPI_PERFMAP=1`: write /tmp/perf-<pid>.map, so that `perf report` names the guest's
        // functions (with a `CAPI_WASM_KEEP_NAMES=1` build of the filter).
        if std::env::var_os("CAPI_PERFMAP").is_some() {
            cfg.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&cfg).map_err(setup)?;
        let module = Module::new(&engine, bytes).map_err(setup)?;
        Ok(FilterModule { engine, module })
    }

    /// `(module, name)` of every import, e.g. `("env", "proxy_log")`.
    pub fn imports(&self) -> Vec<(String, String)> {
        self.module
            .imports()
            .map(|i| (i.module().to_owned(), i.name().to_owned()))
            .collect()
    }

    pub fn exports(&self) -> Vec<String> {
        self.module.exports().map(|e| e.name().to_owned()).collect()
    }
}

/// How a destination answers one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        trailers: Vec<(String, String)>,
    },
    /// The connection broke (`onHttpCallFailure`): the callback gets no headers and no body.
    Reset,
    /// No answer at all: the call's timeout, if any, fires.
    Hang,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply::Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
        }
    }

    pub fn with_body(status: u16, body: &[u8]) -> Self {
        Reply::Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_vec(),
            trailers: Vec::new(),
        }
    }

    pub fn retry_after(status: u16, value: &str) -> Self {
        Reply::Response {
            status,
            headers: vec![("retry-after".into(), value.into())],
            body: Vec::new(),
            trailers: Vec::new(),
        }
    }

    /// What Envoy's router answers when the call's timeout passes (`onUpstreamTimeoutAbort`
    /// → `sendLocalReply(GatewayTimeout, "upstream request timeout")`): the callback still
    /// comes, with `:status` 504.
    pub fn envoy_timeout() -> Self {
        let body = b"upstream request timeout".to_vec();
        Reply::Response {
            status: 504,
            headers: vec![
                ("content-length".into(), body.len().to_string()),
                ("content-type".into(), "text/plain".into()),
            ],
            body,
            trailers: Vec::new(),
        }
    }

    /// What Envoy's router answers when it cannot connect to any host of the cluster.
    pub fn envoy_connect_failure() -> Self {
        let body = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure".to_vec();
        Reply::Response {
            status: 503,
            headers: vec![
                ("content-length".into(), body.len().to_string()),
                ("content-type".into(), "text/plain".into()),
            ],
            body,
            trailers: Vec::new(),
        }
    }
}

/// A reply and how long after the dispatch it comes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub delay_ms: u64,
    pub reply: Reply,
}

pub type Responder = Box<dyn FnMut(&HttpCall) -> Planned>;

/// One answer delivered to the filter.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub vm: usize,
    pub token: u32,
    /// Index into [`Shared::calls`].
    pub call_index: usize,
    pub at_ms: i64,
    /// `None` for a reset.
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    pub timed_out: bool,
}

#[derive(Debug, Clone)]
enum Event {
    Answer {
        vm: usize,
        token: u32,
        reply: Reply,
        timed_out: bool,
    },
}

/// Options of a simulated Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    pub clusters: Vec<String>,
    /// The virtual clock's start (ms since the epoch).
    pub start_ms: i64,
    /// What `proxy_get_log_level` reports (Envoy's default for the wasm logger is info).
    pub log_level: u32,
    /// Environment variables of every VM (Envoy's `vm_config.environment_variables`).
    pub env: Vec<(String, String)>,
    pub vm_config: Vec<u8>,
    /// Seeds each VM's `random_get`.
    pub seed: u64,
    pub plugin_name: String,
    pub vm_id: String,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            clusters: vec!["capi_destination".to_owned()],
            // 2026-11-26T09:42:00Z
            start_ms: 1_795_686_120_000,
            log_level: abi::log_level::INFO,
            env: vec![("CAPI_TOKEN".to_owned(), "test-token".to_owned())],
            vm_config: Vec::new(),
            seed: 1,
            plugin_name: "capi".to_owned(),
            vm_id: "capi".to_owned(),
        }
    }
}

/// `proxy_on_http_call_response`'s parameters: context, token, headers, body size, trailers.
type CallResponseArgs = (u32, u32, u32, u32, u32);

/// The exports of one instance that Envoy calls.
struct Exports {
    on_context_create: TypedFunc<(u32, u32), ()>,
    on_vm_start: Option<TypedFunc<(u32, u32), u32>>,
    on_configure: Option<TypedFunc<(u32, u32), u32>>,
    on_tick: Option<TypedFunc<u32, ()>>,
    on_request_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_request_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_request_trailers: Option<TypedFunc<(u32, u32), u32>>,
    on_response_headers: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_response_body: Option<TypedFunc<(u32, u32, u32), u32>>,
    on_response_trailers: Option<TypedFunc<(u32, u32), u32>>,
    on_http_call_response: Option<TypedFunc<CallResponseArgs, ()>>,
    on_queue_ready: Option<TypedFunc<(u32, u32), ()>>,
    on_log: Option<TypedFunc<u32, ()>>,
    on_done: Option<TypedFunc<u32, u32>>,
    on_delete: Option<TypedFunc<u32, ()>>,
}

fn typed<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    inst: &Instance,
    store: &mut Store<VmState>,
    name: &str,
) -> Result<Option<TypedFunc<P, R>>, HostError> {
    match inst.get_func(&mut *store, name) {
        None => Ok(None),
        Some(f) => f
            .typed::<P, R>(&*store)
            .map(Some)
            .map_err(|e| setup(format!("{name}: {e}"))),
    }
}

/// One worker thread's VM.
struct Vm {
    store: Store<VmState>,
    ex: Exports,
}

/// What the driver remembers of an HTTP stream, to tell what the client and the upstream got.
#[derive(Debug, Clone, Default)]
struct StreamTrack {
    request_headers: Pairs,
    response_headers: Pairs,
    response_trailers: Pairs,
    request_released: bool,
    response_headers_released: Option<Pairs>,
    upstream_body: Vec<u8>,
    client_body: Vec<u8>,
    actions: Vec<(&'static str, Action)>,
}

/// How a body arrives in body callbacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunking {
    /// One callback with end_of_stream.
    Whole,
    /// What Envoy did for an HTTP/1 body: one chunk (end_of_stream false), then an empty
    /// chunk with end_of_stream true.
    Http1,
    /// Chunks of this size, the last with end_of_stream.
    Fixed(usize),
    /// Chunks of this size, then an empty end_of_stream chunk.
    FixedThenEmpty(usize),
    /// These sizes (the rest in one more chunk), then an empty end_of_stream chunk if `true`.
    Sizes(Vec<usize>, bool),
}

impl Chunking {
    /// The (chunk, end_of_stream) callbacks for a body.
    pub fn split(&self, body: &[u8]) -> Vec<(Vec<u8>, bool)> {
        let fixed = |n: usize, trailing_empty: bool| {
            let n = n.max(1);
            let mut out: Vec<(Vec<u8>, bool)> =
                body.chunks(n).map(|c| (c.to_vec(), false)).collect();
            if trailing_empty || out.is_empty() {
                out.push((Vec::new(), true));
            } else if let Some(last) = out.last_mut() {
                last.1 = true;
            }
            out
        };
        match self {
            Chunking::Whole => vec![(body.to_vec(), true)],
            Chunking::Http1 => vec![(body.to_vec(), false), (Vec::new(), true)],
            Chunking::Fixed(n) => fixed(*n, false),
            Chunking::FixedThenEmpty(n) => fixed(*n, true),
            Chunking::Sizes(sizes, trailing_empty) => {
                let mut out = Vec::new();
                let mut pos = 0;
                for s in sizes {
                    let end = (pos + s).min(body.len());
                    out.push((body[pos..end].to_vec(), false));
                    pos = end;
                }
                if pos < body.len() {
                    out.push((body[pos..].to_vec(), false));
                }
                if *trailing_empty || out.is_empty() {
                    out.push((Vec::new(), true));
                } else if let Some(last) = out.last_mut() {
                    last.1 = true;
                }
                out
            }
        }
    }
}

/// One HTTP exchange to run through a filter, in Envoy's callback order.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub request_trailers: Vec<(String, String)>,
    pub request_chunking: Chunking,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
    pub response_trailers: Vec<(String, String)>,
    pub response_chunking: Chunking,
    /// The upstream resets before the end of the response: no end-of-stream callback.
    pub response_reset: bool,
}

impl Exchange {
    /// A request and its response; bodies arrive as Envoy delivered HTTP/1 bodies.
    pub fn new(
        method: &str,
        authority: &str,
        path: &str,
        request_body: &[u8],
        status: u16,
        response_body: &[u8],
    ) -> Self {
        Exchange {
            request_headers: vec![
                (":method".into(), method.into()),
                (":path".into(), path.into()),
                (":authority".into(), authority.into()),
                (":scheme".into(), "https".into()),
            ],
            request_body: request_body.to_vec(),
            request_trailers: Vec::new(),
            request_chunking: Chunking::Http1,
            response_headers: vec![(":status".into(), status.to_string())],
            response_body: response_body.to_vec(),
            response_trailers: Vec::new(),
            response_chunking: Chunking::Http1,
            response_reset: false,
        }
    }

    pub fn request_header(mut self, k: &str, v: &str) -> Self {
        self.request_headers
            .push((k.to_ascii_lowercase(), v.into()));
        self
    }

    pub fn response_header(mut self, k: &str, v: &str) -> Self {
        self.response_headers
            .push((k.to_ascii_lowercase(), v.into()));
        self
    }

    pub fn chunked(mut self, request: Chunking, response: Chunking) -> Self {
        self.request_chunking = request;
        self.response_chunking = response;
        self
    }
}

/// What an exchange did.
#[derive(Debug, Clone)]
pub struct ExchangeResult {
    pub context: u32,
    /// Every callback and what the filter returned.
    pub actions: Vec<(&'static str, Action)>,
    /// The response headers as the client received them (None: never released).
    pub client_headers: Option<Vec<(String, String)>>,
    /// The response body bytes the client received.
    pub client_body: Vec<u8>,
    /// The request body bytes the upstream received.
    pub upstream_body: Vec<u8>,
}

impl ExchangeResult {
    /// True when every callback returned Continue (the client was never delayed).
    pub fn never_paused(&self) -> bool {
        self.actions.iter().all(|(_, a)| a.is_continue())
    }
}

/// A simulated Envoy process: worker VMs of one module, one clock, one stats store.
pub struct Envoy {
    module: Module,
    linker: Linker<VmState>,
    options: EnvoyOptions,
    shared: Rc<RefCell<Shared>>,
    vms: Vec<Vm>,
    schedule: BTreeMap<(u64, u64), Event>,
    seq: u64,
    responder: Option<Responder>,
    streams: BTreeMap<(usize, u32), StreamTrack>,
    /// Every answer delivered to the filter, in order.
    pub delivered: Vec<Delivered>,
}

impl Envoy {
    /// An Envoy with no VM yet (see [`Envoy::add_vm`]).
    pub fn new(module: &FilterModule, options: EnvoyOptions) -> Result<Self, HostError> {
        let mut linker = Linker::new(&module.engine);
        host::add_to_linker(&mut linker).map_err(setup)?;
        let start_ns = (options.start_ms as u64) * 1_000_000;
        let shared = Shared {
            now_ns: start_ns,
            monotonic_origin_ns: start_ns - 1_000_000_000,
            clusters: options.clusters.iter().cloned().collect(),
            ..Shared::default()
        };
        Ok(Envoy {
            module: module.module.clone(),
            linker,
            options,
            shared: Rc::new(RefCell::new(shared)),
            vms: Vec::new(),
            schedule: BTreeMap::new(),
            seq: 0,
            responder: None,
            streams: BTreeMap::new(),
            delivered: Vec::new(),
        })
    }

    /// One VM with one root context configured with `plugin_config`: the common case.
    pub fn single(
        module: &FilterModule,
        options: EnvoyOptions,
        plugin_config: &[u8],
    ) -> Result<(Self, u32), HostError> {
        let mut e = Envoy::new(module, options)?;
        let vm = e.add_vm()?;
        let (root, ok) = e.start_root(vm, plugin_config)?;
        if !ok {
            return Err(HostError::Setup(format!(
                "on_configure refused the configuration; logs: {:?}",
                e.log_lines()
            )));
        }
        Ok((e, root))
    }

    /// Starts one more worker VM (Envoy runs one per worker thread, sharing nothing but
    /// stats, shared data and shared queues). Returns its index.
    pub fn add_vm(&mut self) -> Result<usize, HostError> {
        let index = self.vms.len();
        let mut state = VmState::new(
            Rc::clone(&self.shared),
            index,
            self.options.env.clone(),
            self.options.vm_config.clone(),
            self.options
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(index as u64),
        );
        state.log_level = self.options.log_level;
        for (k, v) in [
            ("plugin_name", self.options.plugin_name.clone()),
            ("plugin_root_id", String::new()),
            ("plugin_vm_id", self.options.vm_id.clone()),
        ] {
            state
                .properties
                .insert(k.as_bytes().to_vec(), v.into_bytes());
        }
        let mut store = Store::new(self.module.engine(), state);
        let inst = self
            .linker
            .instantiate(&mut store, &self.module)
            .map_err(setup)?;
        if inst
            .get_func(&mut store, "proxy_abi_version_0_2_1")
            .is_none()
        {
            return Err(HostError::Setup(
                "the module does not export proxy_abi_version_0_2_1".into(),
            ));
        }
        let ex = Exports {
            on_context_create: typed(&inst, &mut store, "proxy_on_context_create")?
                .ok_or_else(|| HostError::Setup("no proxy_on_context_create export".into()))?,
            on_vm_start: typed(&inst, &mut store, "proxy_on_vm_start")?,
            on_configure: typed(&inst, &mut store, "proxy_on_configure")?,
            on_tick: typed(&inst, &mut store, "proxy_on_tick")?,
            on_request_headers: typed(&inst, &mut store, "proxy_on_request_headers")?,
            on_request_body: typed(&inst, &mut store, "proxy_on_request_body")?,
            on_request_trailers: typed(&inst, &mut store, "proxy_on_request_trailers")?,
            on_response_headers: typed(&inst, &mut store, "proxy_on_response_headers")?,
            on_response_body: typed(&inst, &mut store, "proxy_on_response_body")?,
            on_response_trailers: typed(&inst, &mut store, "proxy_on_response_trailers")?,
            on_http_call_response: typed(&inst, &mut store, "proxy_on_http_call_response")?,
            on_queue_ready: typed(&inst, &mut store, "proxy_on_queue_ready")?,
            on_log: typed(&inst, &mut store, "proxy_on_log")?,
            on_done: typed(&inst, &mut store, "proxy_on_done")?,
            on_delete: typed(&inst, &mut store, "proxy_on_delete")?,
        };
        // The WASI reactor start (proxy-wasm's `main!` defines `_initialize`).
        if let Some(init) = typed::<(), ()>(&inst, &mut store, "_initialize")? {
            init.call(&mut store, ()).map_err(|e| HostError::Trap {
                vm: index,
                callback: "_initialize",
                context: 0,
                message: format!("{e:?}"),
            })?;
        }
        self.vms.push(Vm { store, ex });
        Ok(index)
    }

    pub fn vm_count(&self) -> usize {
        self.vms.len()
    }

    fn vm(&mut self, vm: usize) -> Result<&mut Vm, HostError> {
        self.vms
            .get_mut(vm)
            .ok_or_else(|| HostError::Usage(format!("no vm {vm}")))
    }

    /// Runs one callback into a VM, as Envoy does: the context is current, a trap kills the
    /// VM, and deferred work (calls to schedule, `proxy_done`, queue notifications) follows.
    fn callback<R>(
        &mut self,
        vm: usize,
        ctx: u32,
        name: &'static str,
        f: impl FnOnce(&Exports, &mut Store<VmState>) -> wasmtime::Result<R>,
    ) -> Result<R, HostError> {
        let v = self.vm(vm)?;
        if v.store.data().failed {
            return Err(HostError::VmFailed { vm });
        }
        host::begin_callback(v.store.data_mut(), ctx);
        let r = f(&v.ex, &mut v.store);
        host::end_callback(v.store.data_mut());
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                v.store.data_mut().failed = true;
                let message = format!("{e:?}");
                self.shared
                    .borrow_mut()
                    .traps
                    .push(format!("vm {vm}: {name} (context {ctx}): {message}"));
                return Err(HostError::Trap {
                    vm,
                    callback: name,
                    context: ctx,
                    message,
                });
            }
        };
        self.after_callback(vm)?;
        Ok(r)
    }

    fn after_callback(&mut self, vm: usize) -> Result<(), HostError> {
        let (new_calls, done_roots) = {
            let s = self.vm(vm)?.store.data_mut();
            (
                std::mem::take(&mut s.new_calls),
                std::mem::take(&mut s.done_roots),
            )
        };
        for token in new_calls {
            self.schedule_call(vm, token)?;
        }
        for root in done_roots {
            self.delete_context(vm, root)?;
        }
        let ready = std::mem::take(&mut self.shared.borrow_mut().queue_ready);
        for (qvm, root, token) in ready {
            let alive = self
                .vms
                .get(qvm)
                .is_some_and(|v| v.store.data().contexts.contains_key(&root));
            if alive {
                self.callback(qvm, root, "proxy_on_queue_ready", |ex, st| {
                    match &ex.on_queue_ready {
                        Some(f) => f.call(st, (root, token)),
                        None => Ok(()),
                    }
                })?;
            }
        }
        Ok(())
    }

    fn push_event(&mut self, at_ns: u64, e: Event) {
        self.seq += 1;
        self.schedule.insert((at_ns, self.seq), e);
    }

    fn schedule_call(&mut self, vm: usize, token: u32) -> Result<(), HostError> {
        let pending = self.vm(vm)?.store.data().pending.get(&token).cloned();
        let Some(p) = pending else { return Ok(()) };
        let call = self.shared.borrow().calls.get(p.call_index).cloned();
        let Some(call) = call else { return Ok(()) };
        let timeout_ns = (p.timeout_ms > 0).then(|| u64::from(p.timeout_ms) * 1_000_000);
        let planned = self.responder.as_mut().map(|r| r(&call));
        let at = |delay_ns: u64| p.dispatched_ns + delay_ns;
        match (planned, timeout_ns) {
            (Some(Planned { delay_ms, reply }), t)
                if reply != Reply::Hang && t.is_none_or(|t| delay_ms * 1_000_000 < t) =>
            {
                self.push_event(
                    at(delay_ms * 1_000_000),
                    Event::Answer {
                        vm,
                        token,
                        reply,
                        timed_out: false,
                    },
                );
            }
            // A hang, a reply slower than the timeout, or no responder: Envoy's timeout (a 504)
            // comes unless the test answers first. Without a timeout the call waits forever.
            (_, Some(t)) => self.push_event(
                at(t),
                Event::Answer {
                    vm,
                    token,
                    reply: Reply::envoy_timeout(),
                    timed_out: true,
                },
            ),
            (_, None) => {}
        }
        Ok(())
    }

    /// Answers the filter's calls from now on: the responder picks each reply and its delay.
    pub fn set_responder(&mut self, r: impl FnMut(&HttpCall) -> Planned + 'static) {
        self.responder = Some(Box::new(r));
    }

    /// Answers calls by hand ([`Envoy::answer`]) from now on; timeouts still fire.
    pub fn clear_responder(&mut self) {
        self.responder = None;
    }

    /// Delivers a reply to a pending call now.
    pub fn answer(&mut self, vm: usize, token: u32, reply: Reply) -> Result<(), HostError> {
        self.deliver(vm, token, &reply, false)
    }

    /// Tokens of the calls of a VM still waiting for an answer.
    pub fn pending_tokens(&self, vm: usize) -> Vec<u32> {
        self.vms
            .get(vm)
            .map(|v| v.store.data().pending.keys().copied().collect())
            .unwrap_or_default()
    }

    pub fn pending_total(&self) -> usize {
        self.vms.iter().map(|v| v.store.data().pending.len()).sum()
    }

    fn deliver(
        &mut self,
        vm: usize,
        token: u32,
        reply: &Reply,
        timed_out: bool,
    ) -> Result<(), HostError> {
        let Some(p) = self.vm(vm)?.store.data_mut().pending.remove(&token) else {
            return Ok(());
        };
        let at_ms = self.now_ms();
        let (status, retry_after) = match reply {
            Reply::Response {
                status, headers, ..
            } => (
                Some(*status),
                abi::header(headers, "retry-after").map(str::to_owned),
            ),
            _ => (None, None),
        };
        self.delivered.push(Delivered {
            vm,
            token,
            call_index: p.call_index,
            at_ms,
            status,
            retry_after,
            timed_out,
        });
        let root = p.root;
        if !self.vm(vm)?.store.data().contexts.contains_key(&root) {
            return Ok(());
        }
        let (nh, nb, nt) = {
            let s = self.vm(vm)?.store.data_mut();
            match reply {
                Reply::Response {
                    status,
                    headers,
                    body,
                    trailers,
                } => {
                    let mut h = vec![(b":status".to_vec(), status.to_string().into_bytes())];
                    h.extend(abi::to_pairs(headers));
                    s.call_response = Some(CallResponse {
                        headers: h,
                        body: body.clone(),
                        trailers: abi::to_pairs(trailers),
                    });
                    s.call_status = (abi::status::OK, String::new());
                }
                _ => {
                    // context.cc onHttpCallFailure: no response, status BrokenConnection "reset".
                    s.call_response = None;
                    s.call_status = (abi::status::BROKEN_CONNECTION, "reset".to_owned());
                }
            }
            s.call_response.as_ref().map_or((0, 0, 0), |r| {
                (
                    r.headers.len() as u32,
                    r.body.len() as u32,
                    r.trailers.len() as u32,
                )
            })
        };
        let r = self.callback(vm, root, "proxy_on_http_call_response", |ex, st| match &ex
            .on_http_call_response
        {
            Some(f) => f.call(st, (root, token, nh, nb, nt)),
            None => Ok(()),
        });
        if let Ok(v) = self.vm(vm) {
            let s = v.store.data_mut();
            s.call_response = None;
            s.call_status = (abi::status::OK, String::new());
        }
        r
    }

    /// Creates a root context with this plugin configuration: `proxy_on_context_create`,
    /// `proxy_on_vm_start`, `proxy_on_configure`. Returns its id and whether it accepted
    /// the configuration (Envoy refuses to start when it did not).
    pub fn start_root(
        &mut self,
        vm: usize,
        plugin_config: &[u8],
    ) -> Result<(u32, bool), HostError> {
        let (id, vm_config_len) = {
            let s = self.vm(vm)?.store.data_mut();
            let id = s.next_context_id;
            s.next_context_id += 1;
            s.contexts.insert(id, Ctx::Root(RootCtx::default()));
            (id, s.vm_config.len() as u32)
        };
        self.callback(vm, id, "proxy_on_context_create", |ex, st| {
            ex.on_context_create.call(st, (id, 0))
        })?;
        let started = self.callback(vm, id, "proxy_on_vm_start", |ex, st| {
            match &ex.on_vm_start {
                Some(f) => f.call(st, (id, vm_config_len)).map(|r| r != 0),
                None => Ok(true),
            }
        })?;
        if !started {
            return Ok((id, false));
        }
        let ok = self.configure(vm, id, plugin_config)?;
        Ok((id, ok))
    }

    /// `proxy_on_configure` on an existing root context.
    pub fn configure(
        &mut self,
        vm: usize,
        root: u32,
        plugin_config: &[u8],
    ) -> Result<bool, HostError> {
        self.vm(vm)?.store.data_mut().configuring = Some(plugin_config.to_vec());
        let size = plugin_config.len() as u32;
        let r = self.callback(vm, root, "proxy_on_configure", |ex, st| {
            match &ex.on_configure {
                Some(f) => f.call(st, (root, size)).map(|r| r != 0),
                None => Ok(true),
            }
        });
        if let Ok(v) = self.vm(vm) {
            v.store.data_mut().configuring = None;
        }
        r
    }

    /// Retires a root context as Envoy does when its plugin configuration is replaced:
    /// `proxy_on_done`; if it returns true, `proxy_on_delete` at once (its pending calls are
    /// cancelled), else the root lives on until it calls `proxy_done`. Returns whether it
    /// was deleted now.
    pub fn retire_root(&mut self, vm: usize, root: u32) -> Result<bool, HostError> {
        let done = self.callback(vm, root, "proxy_on_done", |ex, st| match &ex.on_done {
            Some(f) => f.call(st, root).map(|r| r != 0),
            None => Ok(true),
        })?;
        if done {
            self.delete_context(vm, root)?;
        } else if let Some(Ctx::Root(r)) = self.vm(vm)?.store.data_mut().contexts.get_mut(&root) {
            r.pending_done = true;
        }
        Ok(done)
    }

    fn delete_context(&mut self, vm: usize, id: u32) -> Result<(), HostError> {
        if !self.vm(vm)?.store.data().contexts.contains_key(&id) {
            return Ok(());
        }
        let r = self.callback(vm, id, "proxy_on_delete", |ex, st| match &ex.on_delete {
            Some(f) => f.call(st, id),
            None => Ok(()),
        });
        let s = self.vm(vm)?.store.data_mut();
        s.contexts.remove(&id);
        // Deleting a root context cancels its outstanding calls (their handlers go with it).
        s.pending.retain(|_, p| p.root != id);
        self.streams.remove(&(vm, id));
        r
    }

    /// `proxy_on_context_create` for a new HTTP stream on `root`.
    pub fn create_http(&mut self, vm: usize, root: u32) -> Result<u32, HostError> {
        let id = {
            let s = self.vm(vm)?.store.data_mut();
            if !matches!(s.contexts.get(&root), Some(Ctx::Root(_))) {
                return Err(HostError::Usage(format!("vm {vm}: no root context {root}")));
            }
            let id = s.next_context_id;
            s.next_context_id += 1;
            s.contexts.insert(
                id,
                Ctx::Http(Box::new(HttpCtx {
                    root,
                    ..HttpCtx::default()
                })),
            );
            id
        };
        self.streams.insert((vm, id), StreamTrack::default());
        self.callback(vm, id, "proxy_on_context_create", |ex, st| {
            ex.on_context_create.call(st, (id, root))
        })?;
        Ok(id)
    }

    fn http_mut(&mut self, vm: usize, ctx: u32) -> Result<&mut HttpCtx, HostError> {
        host::http_ctx_mut(self.vm(vm)?.store.data_mut(), ctx)
            .ok_or_else(|| HostError::Usage(format!("vm {vm}: no http context {ctx}")))
    }

    fn track(&mut self, vm: usize, ctx: u32) -> &mut StreamTrack {
        self.streams.entry((vm, ctx)).or_default()
    }

    /// `proxy_on_request_headers`. Envoy hands the map to the filter for this callback, and
    /// keeps it only while the filter holds the stream with a stop status.
    pub fn request_headers(
        &mut self,
        vm: usize,
        ctx: u32,
        headers: &[(String, String)],
        eos: bool,
    ) -> Result<Action, HostError> {
        let pairs = abi::to_pairs(headers);
        let n = pairs.len() as u32;
        self.track(vm, ctx).request_headers = pairs.clone();
        self.http_mut(vm, ctx)?.request_headers = Some(pairs);
        let a = Action::from_raw(self.callback(
            vm,
            ctx,
            "proxy_on_request_headers",
            |ex, st| match &ex.on_request_headers {
                Some(f) => f.call(st, (ctx, n, u32::from(eos))),
                None => Ok(0),
            },
        )?);
        self.track(vm, ctx).actions.push(("request_headers", a));
        if a.is_continue() {
            self.track(vm, ctx).request_released = true;
            self.http_mut(vm, ctx)?.request_headers = None;
        }
        Ok(a)
    }

    /// `proxy_on_request_body` for one chunk. After a stop status Envoy buffers: the next
    /// callback sees everything buffered so far.
    pub fn request_body(
        &mut self,
        vm: usize,
        ctx: u32,
        chunk: &[u8],
        eos: bool,
    ) -> Result<Action, HostError> {
        let size = {
            let h = self.http_mut(vm, ctx)?;
            let b = h.request_body.get_or_insert_with(Vec::new);
            b.extend_from_slice(chunk);
            b.len() as u32
        };
        let a = Action::from_raw(self.callback(vm, ctx, "proxy_on_request_body", |ex, st| {
            match &ex.on_request_body {
                Some(f) => f.call(st, (ctx, size, u32::from(eos))),
                None => Ok(0),
            }
        })?);
        self.track(vm, ctx).actions.push(("request_body", a));
        if a.is_continue() {
            let body = self
                .http_mut(vm, ctx)?
                .request_body
                .take()
                .unwrap_or_default();
            let t = self.track(vm, ctx);
            t.upstream_body.extend_from_slice(&body);
            t.request_released = true;
            self.http_mut(vm, ctx)?.request_headers = None;
        }
        Ok(a)
    }

    pub fn request_trailers(
        &mut self,
        vm: usize,
        ctx: u32,
        trailers: &[(String, String)],
    ) -> Result<Action, HostError> {
        let pairs = abi::to_pairs(trailers);
        let n = pairs.len() as u32;
        self.http_mut(vm, ctx)?.request_trailers = Some(pairs);
        let a = Action::from_raw(self.callback(
            vm,
            ctx,
            "proxy_on_request_trailers",
            |ex, st| match &ex.on_request_trailers {
                Some(f) => f.call(st, (ctx, n)),
                None => Ok(0),
            },
        )?);
        self.track(vm, ctx).actions.push(("request_trailers", a));
        if a.is_continue() {
            self.http_mut(vm, ctx)?.request_trailers = None;
        }
        Ok(a)
    }

    pub fn response_headers(
        &mut self,
        vm: usize,
        ctx: u32,
        headers: &[(String, String)],
        eos: bool,
    ) -> Result<Action, HostError> {
        let pairs = abi::to_pairs(headers);
        let n = pairs.len() as u32;
        self.track(vm, ctx).response_headers = pairs.clone();
        self.http_mut(vm, ctx)?.response_headers = Some(pairs);
        let a = Action::from_raw(self.callback(
            vm,
            ctx,
            "proxy_on_response_headers",
            |ex, st| match &ex.on_response_headers {
                Some(f) => f.call(st, (ctx, n, u32::from(eos))),
                None => Ok(0),
            },
        )?);
        self.track(vm, ctx).actions.push(("response_headers", a));
        if a.is_continue() {
            self.release_response_headers(vm, ctx)?;
        }
        Ok(a)
    }

    fn release_response_headers(&mut self, vm: usize, ctx: u32) -> Result<(), HostError> {
        if let Some(h) = self.http_mut(vm, ctx)?.response_headers.take() {
            let t = self.track(vm, ctx);
            if t.response_headers_released.is_none() {
                t.response_headers_released = Some(h);
            }
        }
        Ok(())
    }

    pub fn response_body(
        &mut self,
        vm: usize,
        ctx: u32,
        chunk: &[u8],
        eos: bool,
    ) -> Result<Action, HostError> {
        let size = {
            let h = self.http_mut(vm, ctx)?;
            let b = h.response_body.get_or_insert_with(Vec::new);
            b.extend_from_slice(chunk);
            b.len() as u32
        };
        let a = Action::from_raw(self.callback(vm, ctx, "proxy_on_response_body", |ex, st| {
            match &ex.on_response_body {
                Some(f) => f.call(st, (ctx, size, u32::from(eos))),
                None => Ok(0),
            }
        })?);
        self.track(vm, ctx).actions.push(("response_body", a));
        if a.is_continue() {
            self.release_response_headers(vm, ctx)?;
            let body = self
                .http_mut(vm, ctx)?
                .response_body
                .take()
                .unwrap_or_default();
            self.track(vm, ctx).client_body.extend_from_slice(&body);
        }
        Ok(a)
    }

    pub fn response_trailers(
        &mut self,
        vm: usize,
        ctx: u32,
        trailers: &[(String, String)],
    ) -> Result<Action, HostError> {
        let pairs = abi::to_pairs(trailers);
        let n = pairs.len() as u32;
        self.track(vm, ctx).response_trailers = pairs.clone();
        self.http_mut(vm, ctx)?.response_trailers = Some(pairs);
        let a = Action::from_raw(self.callback(
            vm,
            ctx,
            "proxy_on_response_trailers",
            |ex, st| match &ex.on_response_trailers {
                Some(f) => f.call(st, (ctx, n)),
                None => Ok(0),
            },
        )?);
        self.track(vm, ctx).actions.push(("response_trailers", a));
        if a.is_continue() {
            self.http_mut(vm, ctx)?.response_trailers = None;
        }
        Ok(a)
    }

    /// The end of a stream as Envoy runs it: the access log (`proxy_on_log`, with read-only
    /// request and response headers), then `proxy_on_done` and `proxy_on_delete`.
    pub fn end_stream(&mut self, vm: usize, ctx: u32) -> Result<ExchangeResult, HostError> {
        let t = self.streams.remove(&(vm, ctx)).unwrap_or_default();
        let log_view = (
            t.request_headers.clone(),
            t.response_headers.clone(),
            t.response_trailers.clone(),
        );
        {
            let h = self.http_mut(vm, ctx)?;
            h.request_headers = None;
            h.response_headers = None;
            h.request_body = None;
            h.response_body = None;
            h.log_phase = Some(log_view);
        }
        let logged = self.callback(vm, ctx, "proxy_on_log", |ex, st| match &ex.on_log {
            Some(f) => f.call(st, ctx),
            None => Ok(()),
        });
        if let Ok(h) = self.http_mut(vm, ctx) {
            h.log_phase = None;
        }
        logged?;
        self.callback(vm, ctx, "proxy_on_done", |ex, st| match &ex.on_done {
            Some(f) => f.call(st, ctx).map(|_| ()),
            None => Ok(()),
        })?;
        self.delete_context(vm, ctx)?;
        Ok(ExchangeResult {
            context: ctx,
            actions: t.actions,
            client_headers: t.response_headers_released.map(|h| abi::to_strings(&h)),
            client_body: t.client_body,
            upstream_body: t.upstream_body,
        })
    }

    /// Runs one exchange on `root` from request headers to `proxy_on_delete`.
    pub fn run_exchange(
        &mut self,
        vm: usize,
        root: u32,
        ex: &Exchange,
    ) -> Result<ExchangeResult, HostError> {
        let ctx = self.create_http(vm, root)?;
        let has_req_body = !ex.request_body.is_empty();
        let req_trailers = !ex.request_trailers.is_empty();
        self.request_headers(vm, ctx, &ex.request_headers, !has_req_body && !req_trailers)?;
        if has_req_body {
            for (chunk, eos) in ex.request_chunking.split(&ex.request_body) {
                self.request_body(vm, ctx, &chunk, eos && !req_trailers)?;
            }
        }
        if req_trailers {
            self.request_trailers(vm, ctx, &ex.request_trailers)?;
        }
        let has_resp_body = !ex.response_body.is_empty();
        let resp_trailers = !ex.response_trailers.is_empty();
        self.response_headers(
            vm,
            ctx,
            &ex.response_headers,
            !has_resp_body && !resp_trailers && !ex.response_reset,
        )?;
        if has_resp_body {
            let chunks = ex.response_chunking.split(&ex.response_body);
            let n = chunks.len();
            for (i, (chunk, eos)) in chunks.into_iter().enumerate() {
                if ex.response_reset && i + 1 == n {
                    // The upstream reset: the last chunk (and end of stream) never comes.
                    break;
                }
                self.response_body(vm, ctx, &chunk, eos && !resp_trailers)?;
            }
        }
        if resp_trailers && !ex.response_reset {
            self.response_trailers(vm, ctx, &ex.response_trailers)?;
        }
        self.end_stream(vm, ctx)
    }

    /// `proxy_on_tick` now, out of schedule.
    pub fn tick(&mut self, vm: usize, root: u32) -> Result<(), HostError> {
        self.callback(vm, root, "proxy_on_tick", |ex, st| match &ex.on_tick {
            Some(f) => f.call(st, root),
            None => Ok(()),
        })
    }

    pub fn now_ms(&self) -> i64 {
        self.shared.borrow().now_ms()
    }

    pub fn now_ns(&self) -> u64 {
        self.shared.borrow().now_ns
    }

    /// The earliest thing due: a scheduled answer (first) or a root's tick.
    fn next_due(&self) -> Option<(u64, Option<(usize, u32)>)> {
        let answer = self.schedule.keys().next().map(|(t, _)| (*t, None));
        let tick = self
            .vms
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.store.data().failed)
            .flat_map(|(i, v)| {
                v.store
                    .data()
                    .contexts
                    .iter()
                    .filter_map(move |(id, c)| match c {
                        Ctx::Root(r) => r.next_tick_ns.map(|t| (t, Some((i, *id)))),
                        Ctx::Http(_) => None,
                    })
            })
            .min_by_key(|(t, w)| (*t, *w));
        match (answer, tick) {
            (Some(a), Some(t)) => Some(if a.0 <= t.0 { a } else { t }),
            (a, t) => a.or(t),
        }
    }

    /// Runs everything due up to `until_ns` in time order, then sets the clock to it.
    pub fn advance_to_ns(&mut self, until_ns: u64) -> Result<(), HostError> {
        while let Some((t, what)) = self.next_due() {
            if t > until_ns {
                break;
            }
            {
                let mut sh = self.shared.borrow_mut();
                sh.now_ns = sh.now_ns.max(t);
            }
            match what {
                None => {
                    let Some(((_, _), e)) = self.schedule.pop_first() else {
                        break;
                    };
                    match e {
                        Event::Answer {
                            vm,
                            token,
                            reply,
                            timed_out,
                        } => self.deliver(vm, token, &reply, timed_out)?,
                    }
                }
                Some((vm, root)) => {
                    let now = self.now_ns();
                    if let Some(Ctx::Root(r)) =
                        self.vm(vm)?.store.data_mut().contexts.get_mut(&root)
                    {
                        // Envoy's timer re-arms itself for the next period.
                        r.next_tick_ns = Some(now + u64::from(r.tick_period_ms.max(1)) * 1_000_000);
                    }
                    self.tick(vm, root)?;
                }
            }
        }
        let mut sh = self.shared.borrow_mut();
        sh.now_ns = sh.now_ns.max(until_ns);
        Ok(())
    }

    /// Moves the virtual clock forward by `ms`, firing ticks and answers on the way.
    pub fn advance(&mut self, ms: u64) -> Result<(), HostError> {
        let target = self.now_ns() + ms * 1_000_000;
        self.advance_to_ns(target)
    }

    /// Advances in steps of `step_ms` until `done` holds (checked after each step) or
    /// `max_ms` passed. Returns whether `done` held.
    pub fn advance_until(
        &mut self,
        step_ms: u64,
        max_ms: u64,
        mut done: impl FnMut(&Envoy) -> bool,
    ) -> Result<bool, HostError> {
        let end = self.now_ns() + max_ms * 1_000_000;
        while self.now_ns() < end {
            if done(self) {
                return Ok(true);
            }
            let next = (self.now_ns() + step_ms * 1_000_000).min(end);
            self.advance_to_ns(next)?;
        }
        Ok(done(self))
    }

    /// The Envoy-wide records: calls, logs, stats, mutations, traps.
    pub fn shared(&self) -> Ref<'_, Shared> {
        self.shared.borrow()
    }

    /// A stat by the name the filter defined (Envoy shows it as `wasmcustom.<name>`).
    pub fn stat(&self, name: &str) -> i64 {
        self.shared.borrow().stat(name)
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.shared
            .borrow()
            .logs
            .iter()
            .map(|l| format!("[{}] {}", l.level, l.message))
            .collect()
    }

    /// Forgets the records (calls, logs, answers) kept so far, to bound memory in long runs.
    /// Only when no call is pending (their records are referenced by index).
    pub fn clear_records(&mut self) -> bool {
        if self.pending_total() > 0 {
            return false;
        }
        let mut sh = self.shared.borrow_mut();
        sh.calls.clear();
        sh.logs.clear();
        sh.rejected_calls.clear();
        self.delivered.clear();
        true
    }

    /// Sets a property a stream context can read (`proxy_get_property`).
    pub fn set_stream_property(
        &mut self,
        vm: usize,
        ctx: u32,
        path: &[&str],
        value: &[u8],
    ) -> Result<(), HostError> {
        let key = path.join("\0").into_bytes();
        self.http_mut(vm, ctx)?
            .properties
            .insert(key, value.to_vec());
        Ok(())
    }

    pub fn vm_failed(&self, vm: usize) -> bool {
        self.vms.get(vm).is_some_and(|v| v.store.data().failed)
    }

    /// Root contexts alive in a VM.
    pub fn roots(&self, vm: usize) -> Vec<u32> {
        self.vms
            .get(vm)
            .map(|v| {
                v.store
                    .data()
                    .contexts
                    .iter()
                    .filter(|(_, c)| matches!(c, Ctx::Root(_)))
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pages of linear memory of a VM (to watch for leaks).
    pub fn memory_bytes(&mut self, vm: usize) -> usize {
        let Some(v) = self.vms.get_mut(vm) else {
            return 0;
        };
        match v.store.data().memory {
            Some(m) => m.data_size(&v.store),
            None => 0,
        }
    }
}
