//! The Worker itself (wasm32 only): the `fetch` handler (collect endpoint and proxy mode) and
//! the `queue` handler (retries and dead letters), over capi-core.

use std::cell::RefCell;
use std::rc::Rc;

use capi_core::config::PluginConfig;
use capi_core::consent;
use capi_core::delivery::{Answer, DeliveryPlan, DropReason, plan};
use capi_core::extract::{Exchange, header};
use capi_core::outbox::DedupWindow;
use capi_core::request::build_request;
use capi_core::{ConversionEvent, collect_event, extract_event};
use js_sys::{Reflect, Uint8Array};
use serde_json::json;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::{
    AnalyticsEngineDataPointBuilder, Context, Env, MessageBatch, MessageBuilder, MessageExt,
    QueueRetryOptionsBuilder, RawMessage, event,
};

use crate::edge::{self, Reject};
use crate::exec;
use crate::js;
use crate::message::{self, RetryMessage};
use crate::settings::{Settings, names};
use crate::telemetry::{Counters, Line};
use crate::wire::{self, Headers, RequestHead};

/// What the isolate reads once from its environment (a new deployment is a new isolate).
struct Loaded {
    settings: Result<Settings, String>,
    config: Result<Rc<PluginConfig>, String>,
    collect_secret: Option<String>,
    admin_token: Option<String>,
    /// Whether Analytics Engine is bound (looked up once: most deployments leave it out).
    analytics_bound: bool,
}

thread_local! {
    static LOADED: RefCell<Option<Rc<Loaded>>> = const { RefCell::new(None) };
    static COUNTERS: RefCell<Counters> = RefCell::new(Counters::default());
    static DEDUP: RefCell<Option<DedupWindow>> = const { RefCell::new(None) };
}

fn count(f: impl FnOnce(&mut Counters)) {
    COUNTERS.with(|c| f(&mut c.borrow_mut()));
}

/// Writes one log line (from a microtask, see [`js::log_line`]).
fn log(line: Line) {
    js::log_line(&line.render());
}

fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::fill(&mut b).is_err() {
        for x in &mut b {
            *x = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    b
}

/// Randomness for retry jitter, which needs spread, not secrecy: a SplitMix64 stream seeded once
/// per isolate from `getrandom`, so that an event does not cost a call out to
/// `crypto.getRandomValues`. Guids still come from [`random_bytes`].
fn random_u64() -> u64 {
    thread_local! {
        static JITTER: std::cell::Cell<u64> = std::cell::Cell::new(u64::from_le_bytes(random_bytes::<8>()));
    }
    JITTER.with(|state| {
        let x = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(x);
        let z = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

/// A string entry of the environment: a var, a secret, or a TOML table (as JSON).
fn env_str(env: &Env, name: &str) -> Option<String> {
    let v = Reflect::get(env.as_ref(), &JsValue::from_str(name)).ok()?;
    if let Some(s) = v.as_string() {
        return Some(s);
    }
    if v.is_object() {
        return js_sys::JSON::stringify(&v).ok().and_then(|s| s.as_string());
    }
    None
}

fn load(env: &Env) -> Rc<Loaded> {
    if let Some(l) = LOADED.with(|l| l.borrow().clone()) {
        return l;
    }
    let settings = Settings::from_lookup(|n| env_str(env, n)).map_err(|e| e.to_string());
    let config = match env_str(env, names::CONFIG) {
        None => Err(format!(
            "{}: not set (the core configuration JSON)",
            names::CONFIG
        )),
        Some(raw) => PluginConfig::from_json(raw.as_bytes())
            .and_then(|mut c| c.resolve_secrets(|n| env_str(env, n)).map(|()| c))
            .map(Rc::new)
            .map_err(|e| format!("{}: {e}", names::CONFIG)),
    };
    let nonempty = |n: &str| env_str(env, n).filter(|s| !s.is_empty());
    let loaded = Rc::new(Loaded {
        settings,
        config,
        collect_secret: nonempty(names::COLLECT_SECRET),
        admin_token: nonempty(names::ADMIN_TOKEN),
        analytics_bound: binding(env, names::ANALYTICS).is_some(),
    });
    if let Err(e) = &loaded.settings {
        log(Line::new("error", "settings_invalid").text("error", e));
    }
    match &loaded.config {
        Err(e) => log(Line::new("error", "config_invalid").text("error", e)),
        Ok(c) => {
            let unsigned = loaded.collect_secret.is_none();
            log(Line::new("info", "config_loaded")
                .num("rules", c.rules.len() as i64)
                .num("collect_signed", i64::from(!unsigned)));
            DEDUP.with(|d| {
                *d.borrow_mut() = Some(DedupWindow::new(
                    c.limits.dedup_window_ms,
                    c.limits.dedup_capacity,
                ))
            });
        }
    }
    LOADED.with(|l| *l.borrow_mut() = Some(loaded.clone()));
    loaded
}

/// A binding of the environment (KV namespace, queue, dataset), when bound.
fn binding(env: &Env, name: &str) -> Option<JsValue> {
    Reflect::get(env.as_ref(), &JsValue::from_str(name))
        .ok()
        .filter(JsValue::is_object)
}

/// `(host without port, path with query)` of an absolute URL.
fn split_url(url: &str) -> (&str, &str) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, pq) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    let host = if authority.starts_with('[') {
        authority
            .split_once(']')
            .map_or(authority, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        authority.split_once(':').map_or(authority, |(h, _)| h)
    };
    let pq = pq.split_once('#').map_or(pq, |(p, _)| p);
    (host, pq)
}

fn js_err(e: JsValue) -> worker::Error {
    worker::Error::JsError(
        e.as_string()
            .unwrap_or_else(|| "JavaScript error".to_owned()),
    )
}

/// A response of ours, in one call ([`js::respond`]); a body is JSON.
fn respond(
    status: u16,
    headers: &[(&str, String)],
    body: Option<&str>,
) -> worker::Result<web_sys::Response> {
    let r = js::respond(status, &wire::pack_headers(headers), body);
    if r.is_null() {
        return Err(worker::Error::JsError(
            "the response could not be built".to_owned(),
        ));
    }
    Ok(r.unchecked_into())
}

fn json_response(
    status: u16,
    cors: &[(&str, String)],
    v: &serde_json::Value,
) -> worker::Result<web_sys::Response> {
    let body = serde_json::to_string(v).unwrap_or_default();
    respond(status, cors, Some(&body))
}

fn reject(r: &Reject, cors: &[(&str, String)]) -> worker::Result<web_sys::Response> {
    count(|c| c.refused += 1);
    log(Line::new("info", "collect_refused")
        .num("status", i64::from(r.status))
        .text("field", &r.field)
        .text("error", &r.message));
    let mut headers: Vec<(&str, String)> = cors.to_vec();
    if r.status == 405 {
        headers.push(("allow", "POST, OPTIONS".to_owned()));
    }
    respond(r.status, &headers, Some(&r.body()))
}

enum BodyError {
    TooLarge,
    Broken,
}

/// Reads a body stream, giving up past `max` bytes ([`js::read_capped`]: the chunks are read in
/// JS, one promise for the whole body). The rest of an over-size body is read and thrown away
/// (up to 1 MiB) before the stream is cancelled: answering while the client still uploads
/// breaks the next request in `wrangler dev`'s local proxy.
async fn read_capped(
    stream: Option<web_sys::ReadableStream>,
    max: usize,
) -> Result<Vec<u8>, BodyError> {
    let Some(stream) = stream else {
        return Ok(Vec::new());
    };
    let read = exec::wait(js::read_capped(&stream, max as f64))
        .await
        .map_err(|_| BodyError::Broken)?;
    match read.as_f64() {
        Some(1.0) => Err(BodyError::TooLarge),
        Some(_) => Err(BodyError::Broken),
        None => read
            .dyn_into::<Uint8Array>()
            .map(|b| b.to_vec())
            .map_err(|_| BodyError::Broken),
    }
}

/// The copy of a body that proxy mode reads after the fact.
enum Tee {
    Request(web_sys::Request),
    Response(web_sys::Response),
}

impl Tee {
    fn body(&self) -> Option<web_sys::ReadableStream> {
        match self {
            Self::Request(r) => r.body(),
            Self::Response(r) => r.body(),
        }
    }

    fn array_buffer(&self) -> Result<js_sys::Promise, JsValue> {
        match self {
            Self::Request(r) => r.array_buffer(),
            Self::Response(r) => r.array_buffer(),
        }
    }
}

/// Reads a tee: over the limit by its length (from the headers already read), it is cancelled
/// unread (an unread tee would buffer what the client reads); a known length is one
/// `arrayBuffer()`; otherwise chunks up to the limit.
async fn read_copy(tee: Tee, length: Option<usize>, max: usize) -> Result<Vec<u8>, BodyError> {
    match length {
        Some(l) if l > max => {
            if let Some(s) = tee.body() {
                let _ = s.cancel();
            }
            Err(BodyError::TooLarge)
        }
        Some(_) => {
            let p = tee.array_buffer().map_err(|_| BodyError::Broken)?;
            let buf = exec::wait(p).await.map_err(|_| BodyError::Broken)?;
            Ok(Uint8Array::new(&buf).to_vec())
        }
        None => read_capped(tee.body(), max).await,
    }
}

/// A request body of known length (already checked against the limit): one promise.
async fn read_known(raw: &web_sys::Request, max: usize) -> Result<Vec<u8>, BodyError> {
    let p = raw.array_buffer().map_err(|_| BodyError::Broken)?;
    let buf = exec::wait(p).await.map_err(|_| BodyError::Broken)?;
    let arr = Uint8Array::new(&buf);
    if arr.length() as usize > max {
        return Err(BodyError::TooLarge);
    }
    Ok(arr.to_vec())
}

/// Discards a request body that will not be read (a refused collect request): read and thrown
/// away up to 1 MiB, then cancelled.
async fn discard(raw: &web_sys::Request) {
    if let Some(stream) = raw.body()
        && !raw.body_used()
    {
        let _ = read_capped(Some(stream), 0).await;
    }
}

/// The response for an error the handler could not answer itself (as workers-rs would).
fn internal_error(e: &worker::Error) -> JsValue {
    log(Line::new("error", "internal_error").text("error", &e.to_string()));
    respond(500, &[], Some(r#"{"error":"internal error"}"#)).map_or(JsValue::NULL, JsValue::from)
}

fn settle_response(r: worker::Result<web_sys::Response>) -> JsValue {
    match r {
        Ok(resp) => resp.into(),
        Err(e) => internal_error(&e),
    }
}

/// `ctx.waitUntil` for a future run on [`exec`].
fn wait_until(ctx: &worker::worker_sys::Context, work: impl Future<Output = ()> + 'static) {
    let done = exec::spawn_promise(async move {
        work.await;
        JsValue::UNDEFINED
    });
    let _ = ctx.wait_until(&done);
}

/// The Worker's `fetch` handler (exported by hand rather than with `#[event(fetch)]`: a request
/// that only passes through returns the origin's promise directly, with no Rust future).
#[wasm_bindgen]
pub fn fetch(req: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> js_sys::Promise {
    let l = load(&env);
    // Method, URL and the headers that cookies and consent read, in one crossing.
    let head = RequestHead::parse(&js::request_head(&req));
    let (host, pq) = split_url(&head.url);
    let path = pq.split_once('?').map_or(pq, |(p, _)| p);
    let settings = match &l.settings {
        Ok(s) => s,
        Err(e) => {
            let r = json_response(
                500,
                &[],
                &json!({ "error": format!("worker settings: {e}") }),
            );
            return js_sys::Promise::resolve(&settle_response(r));
        }
    };
    if settings.collect_path.as_deref() == Some(path) {
        let l = l.clone();
        return exec::spawn_promise(async move {
            let Ok(settings) = &l.settings else {
                return JsValue::NULL;
            };
            settle_response(collect(&req, &head.method, &l, settings, &env, &ctx).await)
        });
    }
    if path == "/_capi/stats"
        && let Some(token) = &l.admin_token
    {
        return js_sys::Promise::resolve(&settle_response(stats(&req, token)));
    }
    match proxy_prepare(&req, head.method, head.headers, host, pq, &l, settings) {
        Err(e) => js_sys::Promise::resolve(&internal_error(&e)),
        Ok(p) if p.rule_index.is_none() && p.set_cookies.is_empty() => {
            let sent = js::pass_through(&req, &p.upstream_url);
            if sent.is_null() {
                let e = worker::Error::JsError("the upstream request could not be built".into());
                return js_sys::Promise::resolve(&internal_error(&e));
            }
            sent.unchecked_into()
        }
        Ok(p) => {
            let host = host.to_owned();
            let pq = pq.to_owned();
            exec::spawn_promise(async move {
                settle_response(proxy_finish(req, p, &host, &pq, &l, &env, &ctx).await)
            })
        }
    }
}

fn stats(raw: &web_sys::Request, token: &str) -> worker::Result<web_sys::Response> {
    let got = raw
        .headers()
        .get("authorization")
        .ok()
        .flatten()
        .unwrap_or_default();
    let want = format!("Bearer {token}");
    let ok = got.len() == want.len()
        && got
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |a, (x, y)| a | (x ^ y))
            == 0;
    if !ok {
        return json_response(
            401,
            &[],
            &json!({ "error": "missing or invalid bearer token", "field": "authorization" }),
        );
    }
    let counters = COUNTERS.with(|c| c.borrow().clone());
    let remembered = DEDUP.with(|d| d.borrow().as_ref().map_or(0, DedupWindow::len));
    let (spawned, tasks, waits) = exec::usage();
    json_response(
        200,
        &[],
        &json!({
            "counters": counters,
            "dedup_remembered": remembered,
            "executor": { "spawned": spawned, "tasks": tasks, "waits": waits },
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// Collect mode

async fn collect(
    raw: &web_sys::Request,
    method: &str,
    l: &Loaded,
    settings: &Settings,
    env: &Env,
    ctx: &worker::worker_sys::Context,
) -> worker::Result<web_sys::Response> {
    let headers = wire::parse_headers(&js::request_headers(raw));
    let origin = header(&headers, "origin").map(str::to_owned);
    if method.eq_ignore_ascii_case("OPTIONS") {
        discard(raw).await;
        return match edge::preflight(
            settings,
            origin.as_deref(),
            header(&headers, "access-control-request-method"),
        ) {
            Ok(h) => respond(204, &h, None),
            Err(r) => reject(&r, &[]),
        };
    }
    let browser = origin
        .as_deref()
        .is_some_and(|o| settings.origin_allowed(o));
    let cors = if browser {
        origin
            .as_deref()
            .map(edge::cors_headers)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    if origin.is_some() && !browser {
        discard(raw).await;
        return reject(&Reject::new(403, "origin", "origin not allowed"), &[]);
    }
    let config = match &l.config {
        Ok(c) => c.clone(),
        Err(_) => {
            discard(raw).await;
            return json_response(
                503,
                &cors,
                &json!({ "error": "the Worker's CAPI configuration is invalid (see its logs)", "field": "config" }),
            );
        }
    };
    let max = config.limits.max_body_bytes;
    if let Err(r) = edge::check_collect_head(
        method,
        header(&headers, "content-type"),
        header(&headers, "content-length"),
        max,
        browser,
    ) {
        discard(raw).await;
        return reject(&r, &cors);
    }
    let known_length = header(&headers, "content-length").is_some();
    let body = if known_length {
        read_known(raw, max).await
    } else {
        read_capped(raw.body(), max).await
    };
    let body = match body {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return reject(&edge::too_large(max), &cors),
        Err(BodyError::Broken) => {
            return reject(
                &Reject::new(400, "body", "the request body could not be read"),
                &cors,
            );
        }
    };
    let now = now_ms();
    if let Some(secret) = &l.collect_secret
        && !browser
        && let Err(r) = edge::verify_signature(
            secret.as_bytes(),
            &headers,
            &body,
            now.div_euclid(1000),
            settings.signature_max_skew_s,
        )
    {
        return reject(&r, &cors);
    }
    if let Err(denied) = consent::check(&config.consent, &headers) {
        count(|c| c.consent_skipped += 1);
        log(Line::new("info", "consent_skipped")
            .text("source", "collect")
            .text("reason", denied.as_str()));
        return json_response(
            202,
            &cors,
            &json!({ "status": "skipped", "reason": denied.as_str() }),
        );
    }
    let guid = edge::guid_from_cookie(&headers, &settings.guid_cookie);
    let body = edge::with_cookie_guid(&body, guid.as_deref()).unwrap_or(body);
    // The caller's address is the visitor's only when a browser sends the beacon (it carries
    // an Origin); a backend posting for its visitor passes `client_ip` in the payload instead.
    let peer_ip = origin
        .as_ref()
        .and_then(|_| header(&headers, "cf-connecting-ip"));
    match collect_event(&config, &body, &headers, peer_ip, now) {
        Ok(x) => {
            count(|c| c.collected += 1);
            let event_id = x.event.event_id.clone();
            let skipped: Vec<&str> = x.skipped.iter().map(|s| s.field).collect();
            log(Line::new("info", "collected")
                .event_id(&event_id)
                .text("type", x.event.conversion_type.as_str())
                .list("ids_skipped", &skipped));
            let env = env.clone();
            wait_until(ctx, async move {
                deliver_new(&env, &config, x.event, "collect").await
            });
            json_response(
                202,
                &cors,
                &json!({ "status": "accepted", "event_id": event_id }),
            )
        }
        Err(e) => reject(&Reject::new(400, e.field, e.to_string()), &cors),
    }
}

// ---------------------------------------------------------------------------------------------
// Proxy mode

/// What proxy mode decided before forwarding.
struct Prepared {
    method: String,
    headers: Headers,
    rule_index: Option<usize>,
    request_copy: Option<web_sys::Request>,
    /// Where the request goes (empty: to its own URL, the zone's origin).
    upstream_url: String,
    set_cookies: Vec<String>,
}

/// Proxy mode up to the forward: consent, cookies, the rule, the tee of the request body.
/// `headers` are the few that cookies and consent read ([`js::request_head`]); every header is
/// read only when a rule may use them.
fn proxy_prepare(
    raw: &web_sys::Request,
    method: String,
    mut headers: Headers,
    host: &str,
    pq: &str,
    l: &Loaded,
    settings: &Settings,
) -> worker::Result<Prepared> {
    let config = l.config.as_ref().ok();
    let rule_idx = config.and_then(|c| c.match_request(&method, host, pq));
    if rule_idx.is_some() {
        headers = wire::parse_headers(&js::request_headers(raw));
    }
    let consent = config.map(|c| consent::check(&c.consent, &headers));
    let consent_ok = matches!(consent, Some(Ok(())));
    let mut set_cookies: Vec<String> = Vec::new();
    if consent_ok {
        let clicks = capi_core::click_id::click_ids_in_query(pq);
        if edge::guid_from_cookie(&headers, &settings.guid_cookie).is_none()
            && (rule_idx.is_some() || !clicks.is_empty() || edge::is_navigation(&method, &headers))
        {
            let (guid, c) = edge::new_guid_cookie(settings, random_bytes::<16>());
            set_cookies.push(c);
            // The conversion of this very exchange already carries the new visitor's guid.
            headers.push((
                "cookie".to_owned(),
                format!("{}={guid}", settings.guid_cookie),
            ));
        }
        for click in clicks {
            set_cookies.push(edge::set_cookie(
                click.name.cookie_name(),
                &click.id,
                settings.click_id_max_age_s,
                settings.cookie_domain.as_deref(),
            ));
        }
    } else if rule_idx.is_some() {
        count(|c| c.consent_skipped += 1);
        let reason = match consent {
            Some(Err(d)) => d.as_str(),
            _ => "config",
        };
        log(Line::new("info", "consent_skipped")
            .text("source", "proxy")
            .text("reason", reason));
    }
    let rule = if consent_ok {
        rule_idx.and_then(|i| config.and_then(|c| c.rules.get(i)))
    } else {
        None
    };

    // The request body is read from a tee (Request.clone) only when a rule needs it; the tee
    // comes before the forward, which takes the body.
    let request_copy = match rule {
        Some(r) if r.extract.reads_request_body() && raw.body().is_some() => {
            Some(raw.clone().map_err(js_err)?)
        }
        _ => None,
    };
    let upstream_url = match &settings.origin {
        Some(origin) => format!("{origin}{pq}"),
        None => String::new(),
    };
    let rule_index = if rule.is_some() { rule_idx } else { None };
    Ok(Prepared {
        method,
        headers,
        rule_index,
        request_copy,
        upstream_url,
        set_cookies,
    })
}

/// Proxy mode after the forward: the conversion (in waitUntil) and our cookies.
async fn proxy_finish(
    raw: web_sys::Request,
    p: Prepared,
    host: &str,
    pq: &str,
    l: &Loaded,
    env: &Env,
    ctx: &worker::worker_sys::Context,
) -> worker::Result<web_sys::Response> {
    let Prepared {
        method,
        headers,
        rule_index,
        request_copy,
        upstream_url,
        set_cookies,
    } = p;
    let config = l.config.as_ref().ok().cloned();
    let rule = rule_index.and_then(|i| config.as_ref().and_then(|c| c.rules.get(i)));
    let sent = js::forward(&raw, &upstream_url);
    if sent.is_null() {
        return Err(worker::Error::JsError(
            "the upstream request could not be built".into(),
        ));
    }
    let resp: web_sys::Response = match exec::wait(js_sys::Promise::from(sent)).await {
        Ok(r) => r.unchecked_into(),
        Err(_) => {
            log(Line::new("error", "origin_unreachable"));
            return json_response(502, &[], &json!({ "error": "origin unreachable" }));
        }
    };

    let mut request_copy = request_copy;
    if let (Some(rule), Some(config)) = (rule, config.as_ref()) {
        // Status and every header in one crossing.
        let (status, response_headers) = wire::parse_response_head(&js::response_head(&resp));
        let ct = header(&response_headers, "content-type");
        if rule.matcher.matches_response(status, ct) {
            count(|c| c.matched += 1);
            // The client gets the original; we read a tee of its body, after the fact.
            let response_copy = if rule.extract.reads_response_body() {
                Some(resp.clone().map_err(js_err)?)
            } else {
                None
            };
            let job = Observed {
                rule_index: rule_index.unwrap_or(0),
                method,
                host: host.to_owned(),
                path: pq.to_owned(),
                request_headers: headers,
                request_copy: request_copy.take(),
                status,
                response_headers,
                response_copy,
            };
            let (env, config) = (env.clone(), config.clone());
            wait_until(ctx, async move { observe(&env, &config, job).await });
        }
    }
    // A tee nobody will read would keep the request body buffered.
    if let Some(body) = request_copy.and_then(|r| r.body()) {
        let _ = body.cancel();
    }

    if set_cookies.is_empty() {
        return Ok(resp);
    }
    // Same status, status text, headers and body stream, plus our first-party cookies.
    let with = js::with_cookies(&resp, &set_cookies.join("\n"));
    if with.is_null() {
        return Err(worker::Error::JsError(
            "the response could not be rebuilt".into(),
        ));
    }
    Ok(with.unchecked_into())
}

struct Observed {
    rule_index: usize,
    method: String,
    host: String,
    path: String,
    request_headers: Headers,
    request_copy: Option<web_sys::Request>,
    status: u16,
    response_headers: Headers,
    response_copy: Option<web_sys::Response>,
}

async fn observe(env: &Env, config: &Rc<PluginConfig>, job: Observed) {
    let Some(rule) = config.rules.get(job.rule_index) else {
        return;
    };
    let max = config.limits.max_body_bytes;
    let mut too_large = false;
    let mut read = |r: Result<Vec<u8>, BodyError>| match r {
        Ok(b) => Some(b),
        Err(BodyError::TooLarge) => {
            too_large = true;
            None
        }
        Err(BodyError::Broken) => None,
    };
    let length = |h: &Headers| header(h, "content-length").and_then(|l| l.trim().parse().ok());
    let request_body = match job.request_copy {
        Some(r) => {
            let n = length(&job.request_headers);
            read(read_copy(Tee::Request(r), n, max).await)
        }
        None => None,
    };
    let response_body = match job.response_copy {
        Some(r) => {
            let n = length(&job.response_headers);
            read(read_copy(Tee::Response(r), n, max).await)
        }
        None => None,
    };
    if too_large {
        count(|c| c.extract_failed += 1);
        log(Line::new("warn", "body_too_large")
            .text("rule", &rule.name)
            .num("max_body_bytes", max as i64));
        return;
    }
    let ex = Exchange {
        method: &job.method,
        host: &job.host,
        path: &job.path,
        request_headers: &job.request_headers,
        request_body: request_body.as_deref(),
        response_status: job.status,
        response_headers: &job.response_headers,
        response_body: response_body.as_deref(),
        client_ip: header(&job.request_headers, "cf-connecting-ip"),
    };
    match extract_event(config, rule, &ex, now_ms()) {
        Ok(x) => {
            let skipped: Vec<&str> = x.skipped.iter().map(|s| s.field).collect();
            log(Line::new("info", "matched")
                .event_id(&x.event.event_id)
                .text("rule", &rule.name)
                .list("ids_skipped", &skipped));
            deliver_new(env, config, x.event, &rule.name).await;
        }
        Err(e) => {
            count(|c| c.extract_failed += 1);
            log(Line::new("warn", "extract_failed")
                .text("rule", &rule.name)
                .text("field", e.field)
                .text("error", &e.reason));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery

/// An attempt's result, owned (the core's `Answer` borrows from it).
struct Outcome {
    status: Option<u16>,
    retry_after: Option<String>,
    body: Vec<u8>,
    timed_out: bool,
    ms: i64,
}

impl Outcome {
    fn answer(&self) -> Answer<'_> {
        match self.status {
            Some(status) => Answer::Http {
                status,
                retry_after: self.retry_after.as_deref(),
                body: &self.body,
            },
            None if self.timed_out => Answer::Timeout,
            None => Answer::ConnectFailed,
        }
    }

    fn describe(&self) -> String {
        match self.status {
            Some(s) => format!("status {s}"),
            None if self.timed_out => "timeout".to_owned(),
            None => "connect failed".to_owned(),
        }
    }
}

fn dedup_key(event_id: &str) -> String {
    format!("ev:{event_id}")
}

fn dedup_ttl_s(config: &PluginConfig) -> u64 {
    // KV's shortest expiration is 60 s.
    (config.limits.dedup_window_ms.max(0) as u64)
        .div_ceil(1000)
        .max(60)
}

fn analytics(
    env: &Env,
    config: &PluginConfig,
    outcome: &str,
    source: &str,
    reason: &str,
    attempts: u32,
    ms: i64,
) {
    let bound = LOADED.with(|l| l.borrow().as_ref().is_some_and(|l| l.analytics_bound));
    if !bound {
        return;
    }
    let Ok(ds) = env.analytics_engine(names::ANALYTICS) else {
        return;
    };
    let key: String = config
        .destination
        .data_source_key
        .chars()
        .take(32)
        .collect();
    let point = AnalyticsEngineDataPointBuilder::new()
        .indexes([key.as_str()])
        .add_blob(outcome)
        .add_blob(source)
        .add_blob(reason)
        .add_double(1.0)
        .add_double(f64::from(attempts))
        .add_double(ms as f64);
    if point.write_to(&ds).is_err() {
        log(Line::new("warn", "analytics_write_failed"));
    }
}

/// Sends events in one request, with the destination's timeout ([`js::post`]: the request,
/// the timeout and the answer in one promise).
async fn attempt(config: &PluginConfig, events: &[ConversionEvent]) -> Result<Outcome, String> {
    let started = now_ms();
    let req = build_request(config, events, started).map_err(|e| e.to_string())?;
    let head: Vec<(&str, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (&**k, String::from(&**v)))
        .collect();
    let sent = js::post(
        &req.url(),
        req.method,
        &wire::pack_headers(&head),
        &req.body,
        f64::from(config.destination.timeout_ms),
    );
    let answer: js_sys::Array = exec::wait(sent)
        .await
        .map_err(|_| "the destination request failed".to_owned())?
        .unchecked_into();
    let code = answer.get(0).as_f64().unwrap_or(0.0);
    if code < 0.0 {
        let name = answer.get(1).as_string().unwrap_or_default();
        return Err(format!("header {name} is not valid"));
    }
    let out = if code >= 1.0 {
        Outcome {
            status: Some(code as u16),
            retry_after: answer.get(1).as_string(),
            body: answer
                .get(2)
                .dyn_into::<Uint8Array>()
                .map(|b| b.to_vec())
                .unwrap_or_default(),
            timed_out: false,
            ms: 0,
        }
    } else {
        Outcome {
            status: None,
            retry_after: None,
            body: Vec::new(),
            timed_out: answer.get(1).as_bool().unwrap_or(false),
            ms: 0,
        }
    };
    Ok(Outcome {
        ms: now_ms() - started,
        ..out
    })
}

/// A new event: dedup, first attempt inline, then the retry queue if it must be retried.
async fn deliver_new(env: &Env, config: &PluginConfig, event: ConversionEvent, source: &str) {
    let now = now_ms();
    let first = DEDUP.with(|d| {
        d.borrow_mut()
            .as_mut()
            .is_none_or(|w| w.first_sighting(&event.event_id, now))
    });
    if !first {
        dropped(
            env,
            config,
            &event.event_id,
            source,
            "duplicate",
            None,
            0,
            0,
        );
        return;
    }
    let kv = binding(env, names::DEDUP_KV);
    if let Some(kv) = &kv
        && config.limits.dedup_window_ms > 0
    {
        // Read, then write "pending" unless present: one promise.
        let key = dedup_key(&event.event_id);
        let claim = exec::wait(js::kv_claim(kv, &key, dedup_ttl_s(config) as f64)).await;
        match claim.ok().and_then(|v| v.as_f64()).unwrap_or(2.0) as u8 {
            1 => {
                dropped(
                    env,
                    config,
                    &event.event_id,
                    source,
                    "duplicate",
                    None,
                    0,
                    0,
                );
                return;
            }
            0 => {}
            // KV trouble must not lose the event: send it, the platform dedups on event_id too.
            _ => log(Line::new("warn", "dedup_unavailable").event_id(&event.event_id)),
        }
    }
    let msg = RetryMessage {
        v: message::VERSION,
        attempts: 0,
        first_attempt_at: now,
        source: source.to_owned(),
        last_error: String::new(),
        event,
    };
    let outcome = match attempt(config, std::slice::from_ref(&msg.event)).await {
        Ok(o) => o,
        Err(e) => {
            dropped(
                env,
                config,
                &msg.event.event_id,
                source,
                "build_failed",
                Some(&e),
                1,
                0,
            );
            return;
        }
    };
    count(|c| c.sent += 1);
    match settle(env, config, kv.as_ref(), msg, &outcome).await {
        Settled::Done => {}
        Settled::Requeue { msg, delay_s } => {
            if let Err(e) = enqueue(env, &msg, delay_s).await {
                dropped(
                    env,
                    config,
                    &msg.event.event_id,
                    &msg.source,
                    "no_retry_queue",
                    Some(&e),
                    msg.attempts,
                    outcome.ms,
                );
                forget(kv.as_ref(), &msg.event.event_id).await;
            }
        }
    }
}

async fn enqueue(env: &Env, msg: &RetryMessage, delay_s: u32) -> Result<(), String> {
    let q = env
        .queue(names::RETRY_QUEUE)
        .map_err(|_| format!("{} is not bound", names::RETRY_QUEUE))?;
    q.send(
        MessageBuilder::new(msg.to_json())
            .delay_seconds(delay_s)
            .build(),
    )
    .await
    .map_err(|e| e.to_string())?;
    count(|c| c.retried += 1);
    log(Line::new("info", "retry_queued")
        .event_id(&msg.event.event_id)
        .text("source", &msg.source)
        .num("attempts", i64::from(msg.attempts))
        .num("delay_s", i64::from(delay_s))
        .text("last_error", &msg.last_error));
    Ok(())
}

enum Settled {
    Done,
    Requeue {
        msg: Box<RetryMessage>,
        delay_s: u32,
    },
}

/// Applies the core's delivery plan to one event after one attempt.
async fn settle(
    env: &Env,
    config: &PluginConfig,
    kv: Option<&JsValue>,
    mut msg: RetryMessage,
    outcome: &Outcome,
) -> Settled {
    let now = now_ms();
    msg.attempts += 1;
    msg.last_error = outcome.describe();
    let source = msg.source.clone();
    let id = msg.event.event_id.clone();
    match plan(
        &config.retry,
        &outcome.answer(),
        msg.attempts,
        msg.first_attempt_at,
        now,
        random_u64(),
    ) {
        DeliveryPlan::Delivered => {
            count(|c| c.delivered += 1);
            log(Line::new("info", "delivered")
                .event_id(&id)
                .text("source", &source)
                .num("status", i64::from(outcome.status.unwrap_or(0)))
                .num("attempts", i64::from(msg.attempts))
                .num("ms", outcome.ms));
            analytics(
                env,
                config,
                "delivered",
                &source,
                "",
                msg.attempts,
                outcome.ms,
            );
            if let Some(kv) = kv
                && config.limits.dedup_window_ms > 0
            {
                let ttl = dedup_ttl_s(config) as f64;
                let _ = exec::wait(js::kv_put(kv, &dedup_key(&id), "delivered", ttl)).await;
            }
            Settled::Done
        }
        DeliveryPlan::RetryAt(at) => Settled::Requeue {
            delay_s: message::delay_seconds(at, now),
            msg: Box::new(msg),
        },
        DeliveryPlan::Drop { reason, detail } => {
            dropped(
                env,
                config,
                &id,
                &source,
                reason.as_str(),
                detail.as_deref(),
                msg.attempts,
                outcome.ms,
            );
            if matches!(reason, DropReason::AttemptsExhausted | DropReason::MaxAge) {
                dead_letter(env, &msg).await;
            }
            forget(kv, &id).await;
            Settled::Done
        }
    }
}

/// An event that will not be delivered no longer blocks a corrected resubmission.
async fn forget(kv: Option<&JsValue>, event_id: &str) {
    if let Some(kv) = kv {
        let _ = exec::wait(js::kv_delete(kv, &dedup_key(event_id))).await;
    }
}

#[allow(clippy::too_many_arguments)]
fn dropped(
    env: &Env,
    config: &PluginConfig,
    event_id: &str,
    source: &str,
    reason: &str,
    detail: Option<&str>,
    attempts: u32,
    ms: i64,
) {
    count(|c| c.drop(reason));
    let level = if reason == "duplicate" {
        "info"
    } else {
        "warn"
    };
    let mut line = Line::new(level, "dropped")
        .event_id(event_id)
        .text("source", source)
        .text("reason", reason)
        .num("attempts", i64::from(attempts));
    if let Some(d) = detail {
        line = line.text("detail", d);
    }
    log(line);
    analytics(env, config, "dropped", source, reason, attempts, ms);
}

async fn dead_letter(env: &Env, msg: &RetryMessage) {
    let sent = match env.queue(names::DLQ) {
        Ok(q) => q.send(msg.to_json()).await.is_ok(),
        Err(_) => false,
    };
    log(Line::new(
        "error",
        if sent {
            "dead_lettered"
        } else {
            "dead_letter_unbound"
        },
    )
    .event_id(&msg.event.event_id)
    .text("source", &msg.source)
    .num("attempts", i64::from(msg.attempts))
    .text("last_error", &msg.last_error));
}

// ---------------------------------------------------------------------------------------------
// Queue consumer: retries, and the dead-letter queue when this Worker consumes it too.

#[event(queue)]
pub async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    let l = load(&env);
    let (Ok(settings), Ok(config)) = (&l.settings, &l.config) else {
        // Nothing is lost: the messages come back once the configuration is fixed.
        log(Line::new("error", "queue_config_invalid"));
        batch.retry_all();
        return Ok(());
    };
    let dlq = batch.queue() == settings.dlq_name;
    let mut work: Vec<(RawMessage, RetryMessage)> = Vec::new();
    for raw in batch.raw_iter() {
        let parsed = raw
            .body()
            .as_string()
            .ok_or_else(|| "retry message: not a string".to_owned())
            .and_then(|s| RetryMessage::from_json(&s));
        match parsed {
            Err(e) => {
                log(Line::new("error", "queue_message_unreadable").text("error", &e));
                raw.ack();
            }
            Ok(m) if dlq => {
                count(|c| c.dead_lettered += 1);
                log(Line::new("error", "dead_letter_received")
                    .event_id(&m.event.event_id)
                    .text("source", &m.source)
                    .num("attempts", i64::from(m.attempts))
                    .text("last_error", &m.last_error));
                analytics(
                    &env,
                    config,
                    "dead_letter",
                    &m.source,
                    &m.last_error,
                    m.attempts,
                    0,
                );
                raw.ack();
            }
            Ok(m) => work.push((raw, m)),
        }
    }
    if work.is_empty() {
        return Ok(());
    }
    let kv = binding(&env, names::DEDUP_KV);
    let mut todo = Vec::with_capacity(work.len());
    for (raw, m) in work {
        let delivered = match &kv {
            Some(kv) if config.limits.dedup_window_ms > 0 => {
                exec::wait(js::kv_get(kv, &dedup_key(&m.event.event_id)))
                    .await
                    .ok()
                    .and_then(|v| v.as_string())
                    .as_deref()
                    == Some("delivered")
            }
            _ => false,
        };
        if delivered {
            dropped(
                &env,
                config,
                &m.event.event_id,
                &m.source,
                "duplicate",
                None,
                m.attempts,
                0,
            );
            raw.ack();
        } else {
            todo.push((raw, m));
        }
    }
    let per_request = config.destination.batch.max_events.max(1);
    let mut groups: Vec<Vec<(RawMessage, RetryMessage)>> = Vec::new();
    for item in todo {
        match groups.last_mut() {
            Some(g) if g.len() < per_request => g.push(item),
            _ => groups.push(vec![item]),
        }
    }
    let runs = groups
        .into_iter()
        .map(|g| retry_group(&env, config, kv.as_ref(), g));
    futures_util::future::join_all(runs).await;
    Ok(())
}

async fn retry_group(
    env: &Env,
    config: &PluginConfig,
    kv: Option<&JsValue>,
    group: Vec<(RawMessage, RetryMessage)>,
) {
    let events: Vec<ConversionEvent> = group.iter().map(|(_, m)| m.event.clone()).collect();
    let outcome = match attempt(config, &events).await {
        Ok(o) => o,
        Err(e) => {
            // Only an unresolved secret gets here: keep the messages for a fixed deployment.
            log(Line::new("error", "build_failed").text("error", &e));
            for (raw, _) in &group {
                raw.retry();
            }
            return;
        }
    };
    count(|c| c.sent += group.len() as u64);
    for (raw, msg) in group {
        match settle(env, config, kv, msg, &outcome).await {
            Settled::Done => raw.ack(),
            Settled::Requeue { msg, delay_s } => {
                // A fresh message carries the attempt count; if it cannot be sent, the queue's
                // own retry (and, past max_retries, its dead-letter queue) keeps the event.
                if enqueue(env, &msg, delay_s).await.is_ok() {
                    raw.ack();
                } else {
                    raw.retry_with_options(
                        &QueueRetryOptionsBuilder::new()
                            .with_delay_seconds(delay_s)
                            .build(),
                    );
                }
            }
        }
    }
}
