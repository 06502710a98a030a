//! `capi demo-shop`: a small, fast, deterministic shop upstream for the Envoy filter's tests and
//! the demo. Same request, same bytes: no clock, no counters in any body.
//!
//! `?shape=` on any path changes how the body travels: gzip, deflate, chunked, empty, text,
//! large (`&kb=N`), truncated.

use std::io::Write;
use std::time::Instant;

use capi_core::extract::query_value;
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use serde_json::Value;

use crate::server::{self, BodyError, Chunks, DropConnection, HandlerResult, response, set_header};
use crate::util::{CliError, log_line, print_line, runtime};

const MAX_BODY: usize = 8 * 1024 * 1024;
const MAX_KB: usize = 64 * 1024;

#[derive(clap::Args, Debug)]
pub struct ShopArgs {
    /// Port to listen on (0 picks a free one; the listening line tells which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Log one line per request to stderr.
    #[arg(long)]
    log: bool,
}

/// FNV-1a: a stable small number from request bytes (ids that repeat for the same request).
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn html_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '&' => "&amp;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// A string field of the request's JSON body (numbers as written).
fn field(body: &Option<Value>, key: &str) -> Option<String> {
    match body.as_ref()?.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn checkout(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let email = field(&parsed, "email").unwrap_or_else(|| "jane.doe@example.com".to_owned());
    let phone = field(&parsed, "phone").unwrap_or_else(|| "+1 (415) 555-2671".to_owned());
    let total = field(&parsed, "total").unwrap_or_else(|| "49.90".to_owned());
    let currency = field(&parsed, "currency").unwrap_or_else(|| "usd".to_owned());
    let order_id = field(&parsed, "order_id")
        .unwrap_or_else(|| format!("ORD-{}", 10_000 + fnv(body) % 90_000));
    let customer = format!("cust_{}", 1000 + fnv(email.as_bytes()) % 9000);
    format!(
        concat!(
            r#"{{"order":{{"id":{},"total":{},"currency":{},"status":"paid","items":["#,
            r#"{{"sku":"SKU-1001","name":"Espresso beans 1 kg","quantity":1,"price":{}}}]}},"#,
            r#""customer":{{"id":{},"email":{},"phone":{}}}}}"#
        ),
        js(&order_id),
        js(&total),
        js(&currency),
        js(&total),
        js(&customer),
        js(&email),
        js(&phone),
    )
}

fn register(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let key = field(&parsed, "email").map_or_else(|| fnv(body), |e| fnv(e.as_bytes()));
    format!(r#"{{"user":{{"id":"user_{}"}}}}"#, 1000 + key % 9000)
}

const THANKS: &str = "<!doctype html>\n<html><head><title>Thank you</title></head>\
<body><h1>Thank you!</h1><p>We received your request and will be in touch soon.</p></body></html>\n";

/// A product page of about 2 KB.
fn page(path: &str) -> String {
    let name = html_escape(path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("home"));
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{name} | Demo Shop</title>\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<style>body{{font-family:sans-serif;margin:2rem;color:#222}}.price{{font-weight:bold}}.grid{{display:grid;grid-template-columns:repeat(3,1fr);gap:1rem}}</style>\n\
</head>\n<body>\n<header><a href=\"/\">Demo Shop</a> | <a href=\"/products/espresso\">Espresso</a> | <a href=\"/cart\">Cart</a></header>\n\
<main>\n<h1>{name}</h1>\n<p class=\"price\">$49.90</p>\n\
<form method=\"post\" action=\"/api/checkout\"><input type=\"hidden\" name=\"sku\" value=\"SKU-1001\"><button>Buy now</button></form>\n\
<section class=\"grid\">\n"
    );
    for i in 1..=6 {
        out.push_str(&format!(
            "<article><h2>Related item {i}</h2><p>Freshly roasted, small batch, shipped within two days.</p>\
<a href=\"/products/item-{i}\">View item {i}</a></article>\n"
        ));
    }
    out.push_str("</section>\n<p>");
    while out.len() < 1900 {
        out.push_str("Our beans are sourced from small farms and roasted every week. ");
    }
    out.push_str("</p>\n</main>\n<footer>&copy; Demo Shop</footer>\n</body>\n</html>\n");
    out
}

/// The route's status, content type and body.
fn route(method: &Method, path: &str, body: &[u8]) -> (u16, &'static str, Vec<u8>) {
    const JSON: &str = "application/json";
    const HTML: &str = "text/html; charset=utf-8";
    match (method, path) {
        (&Method::POST, "/api/checkout") => (200, JSON, checkout(body).into_bytes()),
        (&Method::POST, "/api/register") => (200, JSON, register(body).into_bytes()),
        (&Method::POST, p) if p.starts_with("/forms/") && p.ends_with("/submit") => {
            (200, HTML, THANKS.as_bytes().to_vec())
        }
        _ => (200, HTML, page(path).into_bytes()),
    }
}

fn compress(data: &[u8], gzip: bool) -> Vec<u8> {
    let out = if gzip {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).and_then(|()| e.finish())
    } else {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).and_then(|()| e.finish())
    };
    // Writing into a Vec cannot fail.
    out.unwrap_or_default()
}

/// `content` grown to exactly `kb` KiB of JSON: a JSON object gets a `padding` field.
fn large(content: &[u8], is_json: bool, kb: usize) -> Vec<u8> {
    let target = kb * 1024;
    let (head, tail): (&[u8], &[u8]) = match content.strip_suffix(b"}") {
        Some(h) if is_json && h.len() > 1 => (h, b",\"padding\":\""),
        _ => (b"{", b"\"padding\":\""),
    };
    let mut out = Vec::with_capacity(target.max(head.len() + 32));
    out.extend_from_slice(head);
    out.extend_from_slice(tail);
    let fill = target.saturating_sub(out.len() + 2);
    out.extend(std::iter::repeat_n(b'x', fill));
    out.extend_from_slice(b"\"}");
    out
}

fn shaped(
    shape: Option<&str>,
    kb: Option<&str>,
    status: u16,
    ctype: &'static str,
    content: Vec<u8>,
) -> Response<Chunks> {
    match shape {
        None => response(status, ctype, content),
        Some("gzip") | Some("deflate") => {
            let gzip = shape == Some("gzip");
            let mut r = response(status, ctype, compress(&content, gzip));
            set_header(
                &mut r,
                "content-encoding",
                if gzip { "gzip" } else { "deflate" },
            );
            r
        }
        Some("chunked") => {
            let bytes = Bytes::from(content);
            let step = bytes.len().div_ceil(4).max(1);
            let parts = (0..bytes.len())
                .step_by(step)
                .map(|i| bytes.slice(i..(i + step).min(bytes.len())));
            let mut r = Response::new(Chunks::streamed(parts.collect::<Vec<_>>()));
            set_header(&mut r, "content-type", ctype);
            r
        }
        Some("empty") => {
            let mut r = Response::new(Chunks::empty());
            set_header(&mut r, "content-type", ctype);
            r
        }
        Some("text") => response(status, "text/plain; charset=utf-8", content),
        Some("large") => {
            let kb = match kb.map(str::parse::<usize>) {
                None => 256,
                Some(Ok(n)) if (1..=MAX_KB).contains(&n) => n,
                Some(_) => {
                    return response(400, "text/plain", format!("kb: expected 1 to {MAX_KB}\n"));
                }
            };
            response(
                status,
                "application/json",
                large(&content, ctype == "application/json", kb),
            )
        }
        Some("truncated") => {
            // Announce more than is sent; hyper closes the connection when the body ends short (the
            // linger lets it flush the head and the bytes first).
            let announced = content.len() + 1024;
            let body = Chunks::streamed([Bytes::from(content)])
                .linger(std::time::Duration::from_millis(20));
            let mut r = Response::new(body);
            set_header(&mut r, "content-type", ctype);
            set_header(&mut r, "content-length", &announced.to_string());
            r
        }
        Some(_) => response(
            400,
            "text/plain",
            "unknown shape (gzip, deflate, chunked, empty, text, large, truncated)\n",
        ),
    }
}

async fn handle(log: bool, req: Request<Incoming>) -> HandlerResult {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let body = match server::read_body(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return Ok(response(413, "text/plain", "request body too large\n"));
        }
        Err(BodyError::Broken) => return Err(DropConnection),
    };
    let (status, ctype, content) = route(&method, &path, &body);
    let shape = query_value(&pq, "shape");
    let kb = query_value(&pq, "kb");
    let resp = shaped(shape.as_deref(), kb.as_deref(), status, ctype, content);
    if log {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        log_line(&format!(
            "capi demo-shop: {method} {path} {} {ms:.1}ms",
            resp.status().as_u16()
        ));
    }
    Ok(resp)
}

pub fn run(args: ShopArgs) -> Result<u8, CliError> {
    let rt = runtime()?;
    rt.block_on(async move {
        let (listener, addr) = server::bind(&args.bind, args.port).await?;
        print_line(&format!(
            "capi demo-shop listening on {}",
            server::base_url("http", addr)
        ));
        let log = args.log;
        server::serve(listener, None, false, move |req| handle(log, req)).await;
        Ok::<u8, CliError>(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkout_uses_request_fields_and_is_deterministic() {
        let body = br#"{"email":"a@b.co","total":12.5,"order_id":"A-1"}"#;
        let v: Value = serde_json::from_str(&checkout(body)).unwrap();
        assert_eq!(v["order"]["id"], "A-1");
        assert_eq!(v["order"]["total"], "12.5");
        assert_eq!(v["customer"]["email"], "a@b.co");
        assert_eq!(checkout(body), checkout(body));
        let d: Value = serde_json::from_str(&checkout(b"")).unwrap();
        assert!(d["order"]["id"].as_str().unwrap().starts_with("ORD-"));
    }

    #[test]
    fn large_is_exact_json() {
        for (content, json) in [
            (checkout(b"").into_bytes(), true),
            (page("/x").into_bytes(), false),
        ] {
            let out = large(&content, json, 10);
            assert_eq!(out.len(), 10 * 1024);
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert!(v["padding"].is_string());
        }
        let p = page("/products/espresso");
        assert!((1900..2600).contains(&p.len()), "{}", p.len());
    }
}
