//! JavaScript helpers of the Worker glue. Each does in one call what would otherwise take
//! several JS↔wasm crossings (every crossing with a string copies it between UTF-16 and UTF-8)
//! or several awaited promises (each a round trip through the executor, [`crate::exec`]): the
//! request head and headers as one string ([`crate::wire`]), the forward to the origin, our
//! responses, KV dedup, the destination request with its timeout, and log lines; and the
//! executor's side of an await. They hold no logic of their own beyond the I/O: every decision
//! stays in Rust and capi-core.

use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen(inline_js = r#"
const HEAD_HEADERS = ["cookie", "sec-gpc", "accept", "sec-fetch-dest"];

function block(headers, names) {
  let s = "";
  if (names) {
    for (const n of names) {
      const v = headers.get(n);
      if (v !== null) s += n + "\n" + v + "\n";
    }
  } else {
    for (const [k, v] of headers) s += k + "\n" + v + "\n";
  }
  return s;
}

// Header pairs for a Response or fetch init: a list of [name, value] keeps repeated names, and
// unlike a Headers object it is not built once here and copied again by the constructor (each
// Headers is a C++ object with its own allocations in workerd).
function pairs(text) {
  const out = [];
  const p = text.split("\n");
  for (let i = 0; i + 1 < p.length; i += 2) out.push([p[i], p[i + 1]]);
  return out;
}

export function request_head(request) {
  return request.method + "\n" + request.url + "\n" + block(request.headers, HEAD_HEADERS);
}

export function request_headers(request) {
  return block(request.headers, null);
}

export function response_head(response) {
  return response.status + "\n" + block(response.headers, null);
}

function upstream(request, url) {
  return url ? new Request(url, request) : request;
}

export function pass_through(request, url) {
  let up;
  try {
    up = upstream(request, url);
  } catch {
    return null;
  }
  return fetch(up).catch(() => {
    console.log('{"component":"capi-worker","level":"error","msg":"origin_unreachable"}');
    return new Response('{"error":"origin unreachable"}', { status: 502, headers: { "content-type": "application/json" } });
  });
}

export function forward(request, url) {
  try {
    return fetch(upstream(request, url));
  } catch {
    return null;
  }
}

export function with_cookies(response, cookies) {
  try {
    const h = new Headers(response.headers);
    for (const c of cookies.split("\n")) h.append("set-cookie", c);
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers: h });
  } catch {
    return null;
  }
}

export function respond(status, head, body) {
  try {
    const h = pairs(head);
    if (body !== undefined) h.push(["content-type", "application/json"]);
    return new Response(body === undefined ? null : body, { status, headers: h });
  } catch {
    return null;
  }
}

// The executor's side (crate::exec): `resume` is its one closure, installed once per instance.
let resume = null;

export function install_resume(f) {
  resume = f;
}

export function await_promise(promise, index, generation) {
  const r = resume;
  promise.then((v) => r(0, index, generation, v), (e) => r(1, index, generation, e));
}

export function repoll(index, generation) {
  const r = resume;
  queueMicrotask(() => r(2, index, generation, undefined));
}

export function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return [promise, resolve];
}

export function log_line(text) {
  queueMicrotask(() => console.log(text));
}

export async function kv_claim(kv, key, ttl) {
  let state;
  try {
    state = (await kv.get(key)) === null ? 0 : 1;
  } catch {
    state = 2;
  }
  if (state !== 1) {
    try {
      await kv.put(key, "pending", { expirationTtl: ttl });
    } catch {}
  }
  return state;
}

export async function kv_get(kv, key) {
  try {
    return await kv.get(key);
  } catch {
    return null;
  }
}

export async function kv_put(kv, key, value, ttl) {
  try {
    await kv.put(key, value, { expirationTtl: ttl });
  } catch {}
}

export async function kv_delete(kv, key) {
  try {
    await kv.delete(key);
  } catch {}
}

const EMPTY = new Uint8Array(0);

function concat(chunks, n) {
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// The whole body in one await for the common case. workerd's BYOB reader has
// `readAtLeast(n, view)`, which resolves once n bytes are in or the stream has ended: a body
// shorter than the buffer is one read. A default reader takes a read per chunk plus one for the
// end, and each read is an await through workerd's I/O layer (~3 % less workerd CPU per proxied
// checkout with a chunked answer, bench/worker/perf-ab.mjs). The default reader stays the
// fallback.
const BLOCK = 4096;

export async function read_capped(stream, max) {
  let reader;
  try {
    reader = stream.getReader({ mode: "byob" });
  } catch {
    return read_capped_chunks(stream, max);
  }
  if (typeof reader.readAtLeast !== "function") {
    reader.releaseLock();
    return read_capped_chunks(stream, max);
  }
  // One byte past the cap is enough to know the body is over it.
  const limit = max + 1;
  let buf = new Uint8Array(Math.min(limit, BLOCK));
  let n = 0;
  try {
    for (;;) {
      const size = buf.length;
      const want = size - n;
      const { done, value } = await reader.readAtLeast(want, buf.subarray(n));
      // The view's buffer was transferred (buf is now detached): carry on in the one that came
      // back.
      if (value) {
        buf = new Uint8Array(value.buffer, 0, size);
        n += value.byteLength;
      }
      if (n > max) break;
      if (done || !value || value.byteLength < want) return buf.slice(0, n);
      const grown = new Uint8Array(Math.min(limit, buf.length * 2));
      grown.set(buf);
      buf = grown;
    }
  } catch {
    return 2;
  }
  try {
    let scratch = new Uint8Array(BLOCK);
    while (n <= 1048576) {
      const r = await reader.read(scratch);
      if (r.done) return 1;
      n += r.value.byteLength;
      scratch = new Uint8Array(r.value.buffer);
    }
    reader.cancel().catch(() => {});
  } catch {}
  return 1;
}

async function read_capped_chunks(stream, max) {
  let reader;
  try {
    reader = stream.getReader();
  } catch {
    return 2;
  }
  const chunks = [];
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return concat(chunks, n);
      n += value.length;
      if (n > max) break;
      chunks.push(value);
    }
  } catch {
    return 2;
  }
  try {
    while (n <= 1048576) {
      const r = await reader.read();
      if (r.done) return 1;
      n += r.value.length;
    }
    reader.cancel().catch(() => {});
  } catch {}
  return 1;
}

async function read_small(response) {
  try {
    const cl = response.headers.get("content-length");
    if (cl !== null && /^\s*\d+\s*$/.test(cl) && Number(cl) <= 65536) {
      return new Uint8Array(await response.arrayBuffer());
    }
    if (!response.body) return EMPTY;
    // Up to 8 KiB; past that (or broken) nothing, the rest read and dropped as read_capped does.
    const bytes = await read_capped(response.body, 8192);
    return bytes instanceof Uint8Array ? bytes : EMPTY;
  } catch {
    return EMPTY;
  }
}

// The name of the first header that a Headers object refuses, or null.
function invalid_header(list) {
  const h = new Headers();
  for (const [k, v] of list) {
    try {
      h.append(k, v);
    } catch {
      return k;
    }
  }
  return null;
}

export async function post(url, method, head, body, timeout_ms) {
  const h = pairs(head);
  // A timer of our own, cleared as soon as the answer is in: AbortSignal.timeout's timer would
  // stay pending for the whole timeout after every delivery.
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeout_ms);
  try {
    const resp = await fetch(url, { method, headers: h, body: body.slice(), signal: controller.signal });
    const bytes = await read_small(resp);
    if (timedOut) return [0, true, null];
    return [resp.status, resp.headers.get("retry-after"), bytes];
  } catch (e) {
    // A header the runtime refuses is a configuration error, not a delivery failure: name it.
    const name = !timedOut && e instanceof TypeError ? invalid_header(h) : null;
    return name === null ? [0, timedOut, null] : [-1, name, null];
  } finally {
    clearTimeout(timer);
  }
}
"#)]
extern "C" {
    /// `method\nurl\n` and the headers that cookies and consent read ([`crate::wire::RequestHead`]).
    pub fn request_head(request: &web_sys::Request) -> String;
    /// Every request header ([`crate::wire::parse_headers`]).
    pub fn request_headers(request: &web_sys::Request) -> String;
    /// `status\n` and every response header ([`crate::wire::parse_response_head`]).
    pub fn response_head(response: &web_sys::Response) -> String;
    /// `fetch` of the request (to `url` when not empty: `new Request(url, request)`, same
    /// method, headers, body and redirect mode), a 502 for an unreachable origin, entirely in
    /// JS: the pass-through path (most traffic) never enters a Rust future. `null` when the
    /// request cannot be built.
    pub fn pass_through(request: &web_sys::Request, url: &str) -> JsValue;
    /// The same forward, the origin's response promise as it is (`null` as above).
    pub fn forward(request: &web_sys::Request, url: &str) -> JsValue;
    /// The response (status, status text, headers, body stream) plus `set-cookie` headers
    /// (`\n`-separated); `null` when it cannot be built.
    pub fn with_cookies(response: &web_sys::Response, cookies: &str) -> JsValue;
    /// A response of ours: headers packed by [`crate::wire::pack_headers`], a JSON body or none;
    /// `null` when it cannot be built.
    pub fn respond(status: u16, head: &str, body: Option<&str>) -> JsValue;
    /// Installs the executor's callback ([`crate::exec`]).
    pub fn install_resume(f: &js_sys::Function);
    /// Calls the executor's callback with (0, index, generation, value) when the promise
    /// resolves, (1, .., reason) when it rejects.
    pub fn await_promise(promise: &js_sys::Promise, index: u32, generation: u32);
    /// Calls the executor's callback with (2, index, generation) from a microtask.
    pub fn repoll(index: u32, generation: u32);
    /// `[promise, resolve]`.
    pub fn deferred() -> js_sys::Array;
    /// `console.log` from a microtask: with an inspector attached (wrangler dev, `wrangler
    /// tail`) the runtime records the caller's stack with every message, and the Worker's async
    /// Rust stack is deep.
    pub fn log_line(text: &str);
    /// KV dedup claim: reads the key, writes `pending` with the TTL unless it exists. Resolves
    /// to 0 (new), 1 (already there) or 2 (the read failed; the write was still tried).
    pub fn kv_claim(kv: &JsValue, key: &str, ttl_s: f64) -> js_sys::Promise;
    /// Reads a body stream up to `max` bytes, in one promise: the bytes; 1 when it is longer
    /// (the rest read and thrown away up to 1 MiB, then the stream cancelled); 2 when it broke.
    pub fn read_capped(stream: &web_sys::ReadableStream, max: f64) -> js_sys::Promise;
    /// The key's value or `null` (also when KV fails).
    pub fn kv_get(kv: &JsValue, key: &str) -> js_sys::Promise;
    /// Writes a value with a TTL; failures are ignored (dedup is best effort).
    pub fn kv_put(kv: &JsValue, key: &str, value: &str, ttl_s: f64) -> js_sys::Promise;
    pub fn kv_delete(kv: &JsValue, key: &str) -> js_sys::Promise;
    /// One destination request, aborted after `timeout_ms` (response body included). Resolves
    /// to `[status, retry-after or null, body bytes]`; `[0, timed out, null]` when no answer
    /// came; `[-1, header name, null]` when a header is not valid. The body is the whole answer
    /// up to 64 KiB by its length, else what fits in 8 KiB (empty past that).
    pub fn post(
        url: &str,
        method: &str,
        head: &str,
        body: &[u8],
        timeout_ms: f64,
    ) -> js_sys::Promise;
}
