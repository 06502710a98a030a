//! `capi send`: one event to the configured destination over HTTPS (hyper + rustls), with the
//! core's retry policy (`delivery::plan`) deciding after every attempt.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use capi_core::config::Url;
use capi_core::delivery::{Answer, DeliveryPlan, plan};
use capi_core::request::CapiRequest;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::offline::{Prepared, prepare, request_for};
use crate::util::{CliError, millis, now_ms, print_line, runtime};

/// The most of an answer's body kept (for the drop reason).
const MAX_ANSWER_BODY: usize = 64 * 1024;

/// How one attempt ended.
enum Outcome {
    Http {
        status: u16,
        retry_after: Option<String>,
        body: Vec<u8>,
    },
    Timeout,
    Failed(String),
}

/// An error with its causes, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

async fn exchange<I>(
    io: I,
    request: Request<Full<Bytes>>,
) -> Result<(u16, Option<String>, Vec<u8>), String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| chain(&e))?;
    let answer = async move {
        let resp = sender.send_request(request).await.map_err(|e| chain(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = resp.into_body();
        let mut kept = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| chain(&e))?;
            if let Some(data) = frame.data_ref() {
                let room = MAX_ANSWER_BODY.saturating_sub(kept.len());
                kept.extend_from_slice(data.get(..room.min(data.len())).unwrap_or(&[]));
            }
        }
        Ok::<_, String>((status, retry_after, kept))
    };
    // Drive the connection in this task (not a spawned one) so that a timeout, which drops
    // this future, closes the socket at once.
    tokio::pin!(answer);
    tokio::pin!(conn);
    let mut conn_done = false;
    loop {
        tokio::select! {
            biased;
            r = &mut answer => return r,
            c = &mut conn, if !conn_done => {
                conn_done = true;
                if let Err(e) = c {
                    // The answer future now fails too; prefer the connection's reason.
                    return match answer.await {
                        Ok(r) => Ok(r),
                        Err(_) => Err(chain(&e)),
                    };
                }
            }
        }
    }
}

async fn attempt(
    url: &Url,
    req: &CapiRequest,
    tls: Option<Arc<ClientConfig>>,
) -> Result<(u16, Option<String>, Vec<u8>), String> {
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((host, url.port))
        .await
        .map_err(|e| format!("connect to {}: {e}", url.authority))?;
    let _ = tcp.set_nodelay(true);
    let mut builder = Request::builder()
        .method(req.method)
        .uri(req.path.as_str())
        .header("host", req.authority.as_str());
    for (k, v) in &req.headers {
        builder = builder.header(&**k, &**v);
    }
    let request = builder
        .header("content-length", req.body.len().to_string())
        .header("user-agent", concat!("capi/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(Bytes::from(req.body.clone())))
        .map_err(|e| format!("bad request: {e}"))?;
    match tls {
        Some(config) => {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| format!("bad TLS server name: {e}"))?;
            let stream = TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {}", chain(&e)))?;
            exchange(TokioIo::new(stream), request).await
        }
        None => exchange(TokioIo::new(tcp), request).await,
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

async fn deliver(p: &Prepared, tls: Option<Arc<ClientConfig>>) -> Result<u8, CliError> {
    let dest = &p.config.destination;
    let timeout = Duration::from_millis(u64::from(dest.timeout_ms));
    print_line(&format!(
        "sending {} event {} to {}",
        p.event.conversion_type,
        p.event.event_id,
        dest.url.as_string()
    ));
    let first = now_ms();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        // Rebuilt per attempt: an HMAC signature carries the time it was made.
        let req = request_for(p, now_ms())?;
        let outcome =
            match tokio::time::timeout(timeout, attempt(&dest.url, &req, tls.clone())).await {
                Ok(Ok((status, retry_after, body))) => Outcome::Http {
                    status,
                    retry_after,
                    body,
                },
                Ok(Err(reason)) => Outcome::Failed(reason),
                Err(_) => Outcome::Timeout,
            };
        let answer = match &outcome {
            Outcome::Http {
                status,
                retry_after,
                body,
            } => {
                let ra = retry_after
                    .as_deref()
                    .map(|r| format!(" (Retry-After: {})", r.trim()))
                    .unwrap_or_default();
                print_line(&format!("attempt {attempts}: HTTP {status}{ra}"));
                Answer::Http {
                    status: *status,
                    retry_after: retry_after.as_deref(),
                    body,
                }
            }
            Outcome::Timeout => {
                print_line(&format!(
                    "attempt {attempts}: timed out after {} ms",
                    dest.timeout_ms
                ));
                Answer::Timeout
            }
            Outcome::Failed(reason) => {
                print_line(&format!("attempt {attempts}: connection failed: {reason}"));
                Answer::ConnectFailed
            }
        };
        let now = now_ms();
        match plan(
            &p.config.retry,
            &answer,
            attempts,
            first,
            now,
            rand::random::<u64>(),
        ) {
            DeliveryPlan::Delivered => {
                print_line(&format!(
                    "delivered after {attempts} attempt{}",
                    plural(attempts)
                ));
                return Ok(0);
            }
            DeliveryPlan::RetryAt(at) => {
                let wait = (at - now).max(0);
                print_line(&format!("retrying in {wait} ms"));
                tokio::time::sleep(millis(wait)).await;
            }
            DeliveryPlan::Drop { reason, detail } => {
                let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
                print_line(&format!(
                    "dropped after {attempts} attempt{}: {reason}{detail}",
                    plural(attempts)
                ));
                return Ok(1);
            }
        }
    }
}

/// `capi send --config FILE --event FILE [--ca PEM]`.
pub fn send(config_path: &str, event_path: &str, ca: Option<&Path>) -> Result<u8, CliError> {
    let p = prepare(config_path, event_path, now_ms())?;
    // Load the CA file even for http so that a wrong --ca is reported either way.
    let tls = client_for(&p, ca)?;
    let rt = runtime()?;
    rt.block_on(deliver(&p, tls))
}

fn client_for(p: &Prepared, ca: Option<&Path>) -> Result<Option<Arc<ClientConfig>>, CliError> {
    let config = crate::tls::client_config(ca).map_err(|e| CliError(format!("--ca: {e}")))?;
    Ok((p.config.destination.url.scheme == "https").then_some(config))
}
