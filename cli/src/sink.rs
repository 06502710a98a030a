//! `capi sink`: a local stand-in for an ad platform's Conversions API. It validates what it
//! receives as the spec says, records accepted events, injects faults on request, and answers
//! admin requests under `/_sink/` for tests.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use capi_core::event::ConversionEvent;
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::json;
use tokio_rustls::TlsAcceptor;

use crate::fault::{self, Action, Fault};
use crate::server::{
    self, BodyError, Chunks, DropConnection, HandlerResult, json_response, set_header,
};
use crate::util::{CliError, io_reason, log_line, now_ms, print_line, runtime};

/// Largest request body the sink reads.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Largest signature timestamp skew accepted, seconds.
const MAX_SKEW_S: i64 = 300;

#[derive(clap::Args, Debug)]
pub struct SinkArgs {
    /// Port to listen on (0 picks a free one; the listening line tells which).
    #[arg(long, default_value_t = 9443)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Serve HTTPS with a generated CA and server certificate.
    #[arg(long)]
    tls: bool,
    /// Where ca.pem, cert.pem and key.pem are written (and reused).
    #[arg(long, default_value = "target/capi-sink")]
    cert_dir: PathBuf,
    /// Require `Authorization: Bearer TOKEN`.
    #[arg(long)]
    token: Option<String>,
    /// Require a valid HMAC signature (x-capi-timestamp / x-capi-signature) with this secret.
    #[arg(long)]
    hmac_secret: Option<String>,
    /// Append each accepted event as one JSON line to this file.
    #[arg(long)]
    record: Option<PathBuf>,
    /// A fault to inject (repeatable; the first that applies wins), e.g. `status=503,first=2`.
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<String>,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    accepted_events: u64,
    dropped: u64,
    by_status: BTreeMap<u16, u64>,
}

struct State {
    /// Accepted events in arrival order, as their JSON.
    events: Vec<Vec<u8>>,
    stats: Stats,
    faults: Vec<Fault>,
    record: Option<File>,
}

struct Sink {
    state: Mutex<State>,
    token: Option<String>,
    hmac_secret: Option<Vec<u8>>,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another request panicked; the data is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn error_body(status: u16, message: &str) -> Response<Chunks> {
    json_response(status, &json!({ "error": { "message": message } }))
}

/// Constant-time comparison of two byte strings.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn header<'a>(parts: &'a hyper::http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks auth, content type and payload. Ok carries the accepted events' JSON.
fn validate(
    sink: &Sink,
    parts: &hyper::http::request::Parts,
    body: &[u8],
) -> Result<Vec<Vec<u8>>, (u16, String)> {
    if let Some(token) = &sink.token {
        let got = header(parts, "authorization").unwrap_or("");
        let ok = got.len() > 7
            && got
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
            && ct_eq(
                got.get(7..).unwrap_or("").trim().as_bytes(),
                token.as_bytes(),
            );
        if !ok {
            return Err((401, "missing or invalid bearer token".to_owned()));
        }
    }
    if let Some(secret) = &sink.hmac_secret {
        let ts = header(parts, "x-capi-timestamp").and_then(|t| t.trim().parse::<i64>().ok());
        let sig = header(parts, "x-capi-signature");
        let (Some(ts), Some(sig)) = (ts, sig) else {
            return Err((
                401,
                "missing x-capi-timestamp or x-capi-signature".to_owned(),
            ));
        };
        if (now_ms() / 1000 - ts).abs() > MAX_SKEW_S {
            return Err((401, "signature timestamp too far from now".to_owned()));
        }
        if !capi_core::request::verify(secret, ts, body, sig.trim()) {
            return Err((401, "invalid signature".to_owned()));
        }
    }
    let media = header(parts, "content-type")
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if !media.eq_ignore_ascii_case("application/json") {
        return Err((400, "content-type: expected application/json".to_owned()));
    }
    let events = capi_core::events_from_json(body).map_err(|e| (400, e.to_string()))?;
    Ok(events.iter().map(ConversionEvent::to_json).collect())
}

fn log_request(
    method: &Method,
    path: &str,
    status: Option<u16>,
    events: usize,
    started: Instant,
    note: &str,
) {
    let status = status.map_or_else(|| "dropped".to_owned(), |s| s.to_string());
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    log_line(&format!(
        "capi sink: {method} {path} {status} events={events} {ms:.1}ms{note}"
    ));
}

async fn admin(sink: Arc<Sink>, req: Request<Incoming>) -> HandlerResult {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = match (method.clone(), path.as_str()) {
        (Method::GET, "/_sink/events") => {
            let st = sink.lock();
            let mut out =
                Vec::with_capacity(st.events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
            out.push(b'[');
            for (i, e) in st.events.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(e);
            }
            out.push(b']');
            server::response(200, "application/json", out)
        }
        (Method::GET, "/_sink/stats") => {
            let st = sink.lock();
            let by_status: serde_json::Map<String, serde_json::Value> = st
                .stats
                .by_status
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            json_response(
                200,
                &json!({
                    "requests": st.stats.requests,
                    "accepted_events": st.stats.accepted_events,
                    "dropped": st.stats.dropped,
                    "by_status": by_status,
                    "faults": st.faults.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
            )
        }
        (Method::POST, "/_sink/fault") => match server::read_body(req.into_body(), 64 * 1024).await
        {
            Ok(body) => match std::str::from_utf8(&body)
                .map_err(|_| "fault: body is not UTF-8".to_owned())
                .and_then(fault::parse_list)
            {
                Ok(list) => {
                    let n = list.len();
                    sink.lock().faults = list;
                    json_response(200, &json!({ "status": "ok", "faults": n }))
                }
                Err(e) => error_body(400, &format!("fault: {e}")),
            },
            Err(BodyError::TooLarge) => error_body(413, "fault: body too large"),
            Err(BodyError::Broken) => return Err(DropConnection),
        },
        (Method::POST, "/_sink/reset") => {
            let mut st = sink.lock();
            st.events.clear();
            st.stats = Stats::default();
            json_response(200, &json!({ "status": "ok" }))
        }
        (_, "/_sink/events" | "/_sink/stats" | "/_sink/fault" | "/_sink/reset") => {
            error_body(405, "method not allowed")
        }
        _ => error_body(404, "unknown admin endpoint"),
    };
    log_request(
        &method,
        &path,
        Some(resp.status().as_u16()),
        0,
        started,
        " admin",
    );
    Ok(resp)
}

async fn handle(sink: Arc<Sink>, req: Request<Incoming>) -> HandlerResult {
    let path = req.uri().path();
    if path == "/_sink" || path.starts_with("/_sink/") {
        return admin(sink, req).await;
    }
    let started = Instant::now();
    let method = req.method().clone();
    let path = path.to_owned();
    let (parts, body) = req.into_parts();
    // Read the body first: then hyper notices a client that hangs up during a delay and
    // cancels this request, so a timed-out attempt is never recorded.
    let body = server::read_body(body, MAX_BODY).await;
    if matches!(body, Err(BodyError::Broken)) {
        return Err(DropConnection);
    }
    let applied = {
        let mut st = sink.lock();
        st.stats.requests += 1;
        fault::decide(&mut st.faults)
    };
    let mut note = String::new();
    if let Some(a) = &applied {
        note = format!(" fault={}", a.label);
        if a.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(a.delay_ms)).await;
        }
        match a.action {
            Some(Action::Drop) => {
                sink.lock().stats.dropped += 1;
                log_request(&method, &path, None, 0, started, &note);
                return Err(DropConnection);
            }
            Some(Action::Status { code, retry_after }) => {
                let mut resp = error_body(code, &format!("injected fault: status {code}"));
                if let Some(s) = retry_after {
                    set_header(&mut resp, "retry-after", &s.to_string());
                }
                *sink.lock().stats.by_status.entry(code).or_default() += 1;
                log_request(&method, &path, Some(code), 0, started, &note);
                return Ok(resp);
            }
            None => {}
        }
    }
    let outcome = if method != Method::POST {
        Err((405, "method not allowed: POST events here".to_owned()))
    } else {
        match &body {
            Ok(b) => validate(&sink, &parts, b),
            Err(_) => Err((413, "body: larger than 4 MiB".to_owned())),
        }
    };
    let (resp, status, n) = match outcome {
        Ok(events) => {
            let n = events.len();
            let mut st = sink.lock();
            if let Some(f) = st.record.as_mut() {
                let mut lines = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum());
                for e in &events {
                    lines.extend_from_slice(e);
                    lines.push(b'\n');
                }
                if let Err(e) = f.write_all(&lines).and_then(|()| f.flush()) {
                    log_line(&format!(
                        "capi sink: cannot append to the record file: {}",
                        io_reason(&e)
                    ));
                }
            }
            st.events.extend(events);
            st.stats.accepted_events += n as u64;
            *st.stats.by_status.entry(200).or_default() += 1;
            (
                json_response(200, &json!({ "status": "ok", "received": n })),
                200,
                n,
            )
        }
        Err((status, message)) => {
            *sink.lock().stats.by_status.entry(status).or_default() += 1;
            let mut resp = error_body(status, &message);
            if status == 405 {
                set_header(&mut resp, "allow", "POST");
            }
            (resp, status, 0)
        }
    };
    log_request(&method, &path, Some(status), n, started, &note);
    Ok(resp)
}

pub fn run(args: SinkArgs) -> Result<u8, CliError> {
    let mut faults = Vec::with_capacity(args.faults.len());
    for spec in &args.faults {
        faults.push(Fault::parse(spec).map_err(|e| CliError(format!("--fault {spec:?}: {e}")))?);
    }
    if args
        .token
        .as_deref()
        .is_some_and(|t| t.is_empty() || t.contains(char::is_whitespace))
    {
        return Err(CliError::new(
            "--token: expected a non-empty token without spaces",
        ));
    }
    if args.hmac_secret.as_deref().is_some_and(str::is_empty) {
        return Err(CliError::new("--hmac-secret: expected a non-empty secret"));
    }
    let record = match &args.record {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| CliError(format!("--record {}: {}", path.display(), io_reason(&e))))?,
        ),
        None => None,
    };
    let tls = if args.tls {
        let (config, files) = crate::tls::server_config(&args.cert_dir)?;
        log_line(&format!("capi sink: CA certificate {}", files.ca.display()));
        Some(TlsAcceptor::from(config))
    } else {
        None
    };
    let sink = Arc::new(Sink {
        state: Mutex::new(State {
            events: Vec::new(),
            stats: Stats::default(),
            faults,
            record,
        }),
        token: args.token,
        hmac_secret: args.hmac_secret.map(String::into_bytes),
    });
    let rt = runtime()?;
    rt.block_on(async move {
        let (listener, addr) = server::bind(&args.bind, args.port).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        print_line(&format!(
            "capi sink listening on {}",
            server::base_url(scheme, addr)
        ));
        server::serve(listener, tls, true, move |req| handle(sink.clone(), req)).await;
        Ok::<u8, CliError>(0)
    })
}
