//! proxy-wasm ABI 0.2.1 constants and the header-map wire format, as the Rust SDK
//! (`proxy-wasm` 0.2.x, `src/types.rs`, `src/hostcalls.rs`) and proxy-wasm-cpp-host
//! (`include/proxy-wasm/wasm_api_impl.h`, `src/exports.cc`) define them.

/// `WasmResult` codes returned by host functions.
pub mod status {
    pub const OK: u32 = 0;
    pub const NOT_FOUND: u32 = 1;
    pub const BAD_ARGUMENT: u32 = 2;
    pub const INVALID_MEMORY_ACCESS: u32 = 6;
    pub const EMPTY: u32 = 7;
    pub const CAS_MISMATCH: u32 = 8;
    pub const INTERNAL_FAILURE: u32 = 10;
    /// Passed to `proxy_get_status` after a reset call (`onHttpCallFailure`).
    pub const BROKEN_CONNECTION: u32 = 11;
}

/// Buffer types of `proxy_get_buffer_bytes` / `proxy_set_buffer_bytes`.
pub mod buffer {
    pub const HTTP_REQUEST_BODY: u32 = 0;
    pub const HTTP_RESPONSE_BODY: u32 = 1;
    pub const DOWNSTREAM_DATA: u32 = 2;
    pub const UPSTREAM_DATA: u32 = 3;
    pub const HTTP_CALL_RESPONSE_BODY: u32 = 4;
    pub const GRPC_RECEIVE_BUFFER: u32 = 5;
    pub const VM_CONFIGURATION: u32 = 6;
    pub const PLUGIN_CONFIGURATION: u32 = 7;
    pub const CALL_DATA: u32 = 8;
    pub const MAX: u32 = 8;
}

/// Header map types.
pub mod map {
    pub const REQUEST_HEADERS: u32 = 0;
    pub const REQUEST_TRAILERS: u32 = 1;
    pub const RESPONSE_HEADERS: u32 = 2;
    pub const RESPONSE_TRAILERS: u32 = 3;
    pub const GRPC_INITIAL_METADATA: u32 = 4;
    pub const GRPC_TRAILING_METADATA: u32 = 5;
    pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
    pub const HTTP_CALL_RESPONSE_TRAILERS: u32 = 7;
    pub const MAX: u32 = 7;

    pub fn name(t: u32) -> &'static str {
        match t {
            REQUEST_HEADERS => "request_headers",
            REQUEST_TRAILERS => "request_trailers",
            RESPONSE_HEADERS => "response_headers",
            RESPONSE_TRAILERS => "response_trailers",
            HTTP_CALL_RESPONSE_HEADERS => "http_call_response_headers",
            HTTP_CALL_RESPONSE_TRAILERS => "http_call_response_trailers",
            _ => "other",
        }
    }
}

/// Stream types of `proxy_continue_stream` / `proxy_close_stream`.
pub mod stream {
    pub const HTTP_REQUEST: u32 = 0;
    pub const HTTP_RESPONSE: u32 = 1;
    pub const MAX: u32 = 3;
}

pub mod log_level {
    pub const TRACE: u32 = 0;
    pub const DEBUG: u32 = 1;
    pub const INFO: u32 = 2;
    pub const WARN: u32 = 3;
    pub const ERROR: u32 = 4;
    pub const CRITICAL: u32 = 5;
}

pub mod metric {
    pub const COUNTER: u32 = 0;
    pub const GAUGE: u32 = 1;
    pub const HISTOGRAM: u32 = 2;
    /// Envoy keeps the type in the low bits of a metric id (`Wasm::kMetricTypeMask`).
    pub const TYPE_MASK: u32 = 0x3;
}

/// What a header or body callback returned. Header callbacks: 0 Continue, 1 StopIteration,
/// 3 StopAllIterationAndBuffer, 4 StopAllIterationAndWatermark. Body callbacks: 0 Continue,
/// 1 StopIterationAndBuffer, 2 StopIterationAndWatermark, 3 StopIterationNoBuffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Continue,
    /// Any stop status (the SDK's `Action::Pause` is 1).
    Pause(u32),
}

impl Action {
    pub fn from_raw(v: u32) -> Self {
        if v == 0 {
            Action::Continue
        } else {
            Action::Pause(v)
        }
    }
    pub fn is_continue(self) -> bool {
        self == Action::Continue
    }
}

/// A header map as bytes (values may hold any octets).
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// proxy-wasm's map serialization: `u32 count`, then `count` × (`u32 key len`, `u32 value
/// len`), then each key and value followed by a NUL, all little-endian.
pub fn serialize_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// The inverse of [`serialize_pairs`]. Like proxy-wasm-cpp-host's `toPairs`, a malformed
/// buffer gives an empty map rather than an error.
pub fn parse_pairs(buf: &[u8]) -> Pairs {
    let u32_at = |i: usize| -> Option<usize> {
        buf.get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let Some(n) = u32_at(0) else {
        return Vec::new();
    };
    if n.checked_mul(8)
        .and_then(|x| x.checked_add(4))
        .is_none_or(|need| need > buf.len())
    {
        return Vec::new();
    }
    let mut sizes = Vec::with_capacity(n);
    for i in 0..n {
        match (u32_at(4 + i * 8), u32_at(8 + i * 8)) {
            (Some(k), Some(v)) => sizes.push((k, v)),
            _ => return Vec::new(),
        }
    }
    let mut pos = 4 + n * 8;
    let mut out = Vec::with_capacity(n);
    for (k, v) in sizes {
        let Some(key) = buf.get(pos..pos + k) else {
            return Vec::new();
        };
        pos += k + 1;
        let Some(value) = buf.get(pos..pos + v) else {
            return Vec::new();
        };
        pos += v + 1;
        out.push((key.to_vec(), value.to_vec()));
    }
    out
}

/// String pairs as byte pairs.
pub fn to_pairs<K: AsRef<str>, V: AsRef<str>>(headers: &[(K, V)]) -> Pairs {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_ref().as_bytes().to_vec(),
                v.as_ref().as_bytes().to_vec(),
            )
        })
        .collect()
}

/// Byte pairs as (lossy) string pairs, for assertions and printing.
pub fn to_strings(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// The first value of a header (names compared case-insensitively, as Envoy's maps do).
pub fn header<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let p = to_pairs(&[(":method", "POST"), ("x", ""), ("", "v")]);
        assert_eq!(parse_pairs(&serialize_pairs(&p)), p);
        assert!(parse_pairs(&[1, 0, 0, 0]).is_empty());
        assert!(parse_pairs(&[]).is_empty());
    }
}
