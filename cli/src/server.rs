//! A small HTTP/1.1 server (hyper 1 over tokio, optionally rustls) shared by `sink` and
//! `demo-shop`, with one response body type that covers fixed, chunked and short bodies.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::util::{CliError, log_line};

/// A response body: a queue of chunks. With `exact` the length is announced up front
/// (Content-Length); without it hyper sends chunked transfer encoding, one chunk per part,
/// unless the handler set a Content-Length itself.
#[derive(Debug, Default)]
pub struct Chunks {
    parts: VecDeque<Bytes>,
    exact: bool,
    /// Waited for after the last part, before the body ends (lets hyper flush what was sent).
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Chunks {
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        let mut parts = VecDeque::new();
        if !b.is_empty() {
            parts.push_back(b);
        }
        Self {
            parts,
            exact: true,
            linger: None,
        }
    }

    pub fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// Several parts, length not announced.
    pub fn streamed(parts: impl IntoIterator<Item = Bytes>) -> Self {
        Self {
            parts: parts.into_iter().filter(|p| !p.is_empty()).collect(),
            exact: false,
            linger: None,
        }
    }

    /// Waits this long after the last part before ending the body.
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = Some(Box::pin(tokio::time::sleep(d)));
        self
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(b) = self.parts.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if let Some(sleep) = self.linger.as_mut() {
            std::task::ready!(sleep.as_mut().poll(cx));
            self.linger = None;
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.exact && self.parts.is_empty() && self.linger.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.parts.iter().map(|p| p.len() as u64).sum())
        } else {
            SizeHint::default()
        }
    }
}

/// Returned by a handler to close the connection without any answer.
#[derive(Debug)]
pub struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped")
    }
}

impl std::error::Error for DropConnection {}

pub type HandlerResult = Result<Response<Chunks>, DropConnection>;

/// A response with a status, a content type and a body.
pub fn response(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Chunks> {
    let mut r = Response::new(Chunks::full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    set_header(&mut r, "content-type", content_type);
    r
}

pub fn json_response(status: u16, value: &serde_json::Value) -> Response<Chunks> {
    response(
        status,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// Sets a header; a value that is not a valid header value is skipped.
pub fn set_header<B>(r: &mut Response<B>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// Why a request body could not be read.
pub enum BodyError {
    TooLarge,
    Broken,
}

/// Reads a whole request body, at most `max` bytes.
pub async fn read_body(body: Incoming, max: usize) -> Result<Bytes, BodyError> {
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Broken),
    }
}

/// Binds `bind:port`, turning failures into one-line errors.
pub async fn bind(bind: &str, port: u16) -> Result<(TcpListener, SocketAddr), CliError> {
    let ip: std::net::IpAddr = bind
        .parse()
        .map_err(|_| CliError(format!("--bind: expected an IP address, got {bind:?}")))?;
    let addr = SocketAddr::new(ip, port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| CliError(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError(format!("cannot listen on {addr}: {e}")))?;
    Ok((listener, local))
}

/// `scheme://host:port` for the listening line (IPv6 in brackets).
pub fn base_url(scheme: &str, addr: SocketAddr) -> String {
    format!("{scheme}://{addr}")
}

/// Serves HTTP/1.1 with keep-alive on every accepted connection, forever.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    date_header: bool,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log_line(&format!("accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let svc = service_fn(handler);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .keep_alive(true)
                .auto_date_header(date_header);
            match tls {
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(Duration::from_secs(10), handshake).await {
                        Ok(Ok(s)) => {
                            let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                        }
                        Ok(Err(e)) => {
                            log_line(&format!("capi sink: TLS handshake with {peer} failed: {e}"))
                        }
                        Err(_) => {
                            log_line(&format!("capi sink: TLS handshake with {peer} timed out"))
                        }
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
    }
}
