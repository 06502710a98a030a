//! The proxy-wasm ABI 0.2.1 host calls the filter makes, called directly (no SDK): each wrapper
//! reads bytes, converts lossily and never panics, since a trap kills the filter for every
//! request on that worker. Buffers the host returns were allocated through our
//! `proxy_on_memory_allocate` ([`crate::runtime`]) and are taken over as `Vec<u8>`.

use alloc::string::String;
use alloc::vec::Vec;

/// `proxy_log` levels the filter writes at (Trace = 0 is below them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // the .wasm's panic handler
    Critical = 5,
}

/// Header maps the filter reads (the ABI's map types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum HeaderMap {
    Request = 0,
    Response = 2,
    CallResponse = 6,
}

/// Buffers the filter reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum BufferType {
    HttpRequestBody = 0,
    HttpResponseBody = 1,
    HttpCallResponseBody = 4,
    PluginConfiguration = 7,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
}

const STATUS_OK: u32 = 0;

/// A host status as the proxy-wasm spec names it, for log lines.
pub fn status_name(status: u32) -> &'static str {
    match status {
        0 => "Ok",
        1 => "NotFound",
        2 => "BadArgument",
        3 => "SerializationFailure",
        4 => "ParseFailure",
        7 => "Empty",
        8 => "CasMismatch",
        10 => "InternalFailure",
        12 => "Unimplemented",
        _ => "unknown status",
    }
}

#[cfg(target_arch = "wasm32")]
mod abi {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        pub fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        pub fn proxy_get_log_level(return_level: *mut u32) -> u32;
        pub fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        pub fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        pub fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_buffer_data: *mut *mut u8,
            return_buffer_size: *mut usize,
        ) -> u32;
        pub fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
        pub fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
        ) -> u32;
        #[allow(clippy::too_many_arguments)]
        pub fn proxy_http_call(
            upstream_data: *const u8,
            upstream_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            body_data: *const u8,
            body_size: usize,
            trailers_data: *const u8,
            trailers_size: usize,
            timeout: u32,
            return_token: *mut u32,
        ) -> u32;
        pub fn proxy_define_metric(
            metric_type: u32,
            name_data: *const u8,
            name_size: usize,
            return_id: *mut u32,
        ) -> u32;
        pub fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
        pub fn proxy_done() -> u32;
        pub fn proxy_get_shared_data(
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
            return_cas: *mut u32,
        ) -> u32;
        pub fn proxy_set_shared_data(
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
    }

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    unsafe extern "C" {
        pub fn environ_sizes_get(count: *mut usize, buf_size: *mut usize) -> i32;
        pub fn environ_get(environ: *mut *mut u8, environ_buf: *mut u8) -> i32;
    }
}

/// Native builds (the unit tests) have no host: every call reports failure.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc)]
mod abi {
    pub unsafe fn proxy_log(_: u32, _: *const u8, _: usize) -> u32 {
        1
    }
    pub unsafe fn proxy_get_log_level(_: *mut u32) -> u32 {
        1
    }
    pub unsafe fn proxy_get_current_time_nanoseconds(_: *mut u64) -> u32 {
        1
    }
    pub unsafe fn proxy_set_tick_period_milliseconds(_: u32) -> u32 {
        1
    }
    pub unsafe fn proxy_get_buffer_bytes(
        _: u32,
        _: usize,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_get_header_map_pairs(_: u32, _: *mut *mut u8, _: *mut usize) -> u32 {
        1
    }
    pub unsafe fn proxy_get_property(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
    ) -> u32 {
        1
    }
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn proxy_http_call(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: u32,
        _: *mut u32,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_define_metric(_: u32, _: *const u8, _: usize, _: *mut u32) -> u32 {
        1
    }
    pub unsafe fn proxy_increment_metric(_: u32, _: i64) -> u32 {
        1
    }
    pub unsafe fn proxy_done() -> u32 {
        1
    }
    pub unsafe fn proxy_get_shared_data(
        _: *const u8,
        _: usize,
        _: *mut *mut u8,
        _: *mut usize,
        _: *mut u32,
    ) -> u32 {
        1
    }
    pub unsafe fn proxy_set_shared_data(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: u32,
    ) -> u32 {
        1
    }
    pub unsafe fn environ_sizes_get(_: *mut usize, _: *mut usize) -> i32 {
        1
    }
    pub unsafe fn environ_get(_: *mut *mut u8, _: *mut u8) -> i32 {
        1
    }
}

/// Takes over a buffer the host returned (allocated by our `proxy_on_memory_allocate` as a
/// `Vec<u8>` of exactly `size` bytes).
///
/// # Safety
/// `data` is null or came from `proxy_on_memory_allocate(size)` and is not used elsewhere.
unsafe fn returned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        Vec::new()
    } else {
        // SAFETY: see the function's contract.
        unsafe { Vec::from_raw_parts(data, size, size) }
    }
}

pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the message is valid for its length during the call.
    unsafe {
        abi::proxy_log(level as u32, message.as_ptr(), message.len());
    }
}

/// True when Envoy would print a message at `level` (saves formatting debug lines).
pub fn enabled(level: LogLevel) -> bool {
    let mut host_level = 0u32;
    // SAFETY: the host writes one u32.
    let status = unsafe { abi::proxy_get_log_level(&mut host_level) };
    status != STATUS_OK || level as u32 >= host_level
}

/// Nanoseconds since the Unix epoch, from the host's clock (0 if it cannot tell).
pub fn now_nanos() -> u64 {
    let mut t = 0u64;
    // SAFETY: the host writes one u64.
    let status = unsafe { abi::proxy_get_current_time_nanoseconds(&mut t) };
    if status == STATUS_OK { t } else { 0 }
}

/// Milliseconds since the Unix epoch, from the host's clock.
pub fn now_ms() -> i64 {
    i64::try_from(now_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Reads a header map as proxy-wasm serializes it: the pair count, each pair's key and value
/// sizes (u32, little-endian), then each key and value followed by a NUL.
fn parse_map(bytes: &[u8]) -> Vec<(&[u8], &[u8])> {
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_le_bytes(b) as usize)
    };
    let Some(count) = u32_at(0) else {
        return Vec::new();
    };
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 8));
    let mut data = 4usize.saturating_add(count.saturating_mul(8));
    for i in 0..count {
        let (Some(k), Some(v)) = (u32_at(4 + i * 8), u32_at(8 + i * 8)) else {
            break;
        };
        let key = bytes.get(data..data.saturating_add(k));
        data = data.saturating_add(k).saturating_add(1);
        let value = bytes.get(data..data.saturating_add(v));
        data = data.saturating_add(v).saturating_add(1);
        match (key, value) {
            (Some(key), Some(value)) => pairs.push((key, value)),
            _ => break,
        }
    }
    pairs
}

/// Writes a header map in proxy-wasm's serialization (see [`parse_map`]).
fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len() + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len(k.len()));
        out.extend_from_slice(&len(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// All headers of a map whose (lower-case) names pass `keep`.
pub fn headers(map: HeaderMap, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut size = 0usize;
    // SAFETY: the host writes a pointer and a size; the buffer is ours afterwards.
    let bytes = unsafe {
        if abi::proxy_get_header_map_pairs(map as u32, &mut data, &mut size) != STATUS_OK {
            return Vec::new();
        }
        returned(data, size)
    };
    parse_map(&bytes)
        .into_iter()
        .filter_map(|(k, v)| {
            let mut k = lossy(k);
            k.make_ascii_lowercase();
            keep(&k).then(|| (k, lossy(v)))
        })
        .collect()
}

/// A host property such as `["source", "address"]`, lossily decoded.
pub fn property(path: &[&str]) -> Option<String> {
    // The path's segments joined by NULs.
    let path = path.join("\0");
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut size = 0usize;
    // SAFETY: the path is valid for its length; the returned buffer is ours afterwards.
    let bytes = unsafe {
        if abi::proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) != STATUS_OK {
            return None;
        }
        returned(data, size)
    };
    (!data.is_null()).then(|| lossy(&bytes))
}

/// Bytes `[start, start + max)` of a buffer; None when the host has none.
pub fn buffer(which: BufferType, start: usize, max: usize) -> Option<Vec<u8>> {
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut size = 0usize;
    // SAFETY: the host writes a pointer and a size; the buffer is ours afterwards.
    unsafe {
        if abi::proxy_get_buffer_bytes(which as u32, start, max, &mut data, &mut size) != STATUS_OK
            || data.is_null()
        {
            return None;
        }
        Some(returned(data, size))
    }
}

pub fn set_tick_period(ms: u32) {
    // SAFETY: no pointers.
    unsafe {
        abi::proxy_set_tick_period_milliseconds(ms);
    }
}

pub fn define_metric(kind: MetricType, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: the name is valid for its length; the host writes one u32.
    let status =
        unsafe { abi::proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) };
    (status == STATUS_OK).then_some(id)
}

pub fn increment_metric(id: Option<u32>, by: i64) {
    if let Some(id) = id
        && by != 0
    {
        // SAFETY: no pointers.
        unsafe {
            abi::proxy_increment_metric(id, by);
        }
    }
}

/// Dispatches an HTTP call to `cluster`; the token of the answer to come, or the host's status.
pub fn dispatch_http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout_ms: u32,
) -> Result<u32, u32> {
    let headers = serialize_map(headers);
    let trailers = serialize_map(&[]);
    let mut token = 0u32;
    // SAFETY: every buffer is valid for its length during the call; the host writes one u32.
    let status = unsafe {
        abi::proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    };
    if status == STATUS_OK {
        Ok(token)
    } else {
        Err(status)
    }
}

/// Tells the host that a root context which returned false from `on_done` is done now.
pub fn done() {
    // SAFETY: no pointers.
    unsafe {
        abi::proxy_done();
    }
}

/// An environment variable of the VM (`vm_config.environment_variables`), read through WASI.
pub fn env_var(name: &str) -> Option<String> {
    let (mut count, mut buf_size) = (0usize, 0usize);
    // SAFETY: the host writes two sizes, then `count` pointers into a buffer of `buf_size`
    // bytes that we allocated with those sizes.
    let (pointers, buf) = unsafe {
        if abi::environ_sizes_get(&mut count, &mut buf_size) != 0 {
            return None;
        }
        let mut pointers: Vec<*mut u8> = Vec::with_capacity(count);
        let mut buf: Vec<u8> = Vec::with_capacity(buf_size);
        if abi::environ_get(pointers.as_mut_ptr(), buf.as_mut_ptr()) != 0 {
            return None;
        }
        pointers.set_len(count);
        buf.set_len(buf_size);
        (pointers, buf)
    };
    drop(pointers);
    // Entries are `NAME=value\0`, back to back in `buf`.
    buf.split(|&b| b == 0).find_map(|entry| {
        let rest = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        core::str::from_utf8(rest).ok().map(String::from)
    })
}

/// Envoy's shared data as the dedup table sees it, through the raw ABI: statuses the table does
/// not expect are "not found" or "not set", never a trap.
pub struct SharedData;

impl crate::shared_dedup::SharedStore for SharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let mut data: *mut u8 = core::ptr::null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the key is valid for its length; the returned buffer is ours afterwards.
        unsafe {
            let status =
                abi::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas);
            if status != STATUS_OK {
                return None;
            }
            Some((returned(data, size), cas))
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> bool {
        // SAFETY: both buffers are valid for their lengths during the call.
        unsafe {
            abi::proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
                == STATUS_OK
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip_through_the_abi_serialization() {
        let pairs = [
            (":status", "200"),
            ("x-empty", ""),
            ("set-cookie", "a=1; b"),
        ];
        let bytes = serialize_map(&pairs);
        // The layout the proxy-wasm spec gives: count, sizes, then NUL-terminated data.
        assert_eq!(&bytes[..4], &3u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &7u32.to_le_bytes());
        assert_eq!(&bytes[8..12], &3u32.to_le_bytes());
        assert!(bytes.ends_with(b"set-cookie\0a=1; b\0"));
        let back: Vec<(&[u8], &[u8])> = parse_map(&bytes);
        let want: Vec<(&[u8], &[u8])> = pairs
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        assert_eq!(back, want);
        assert!(parse_map(&serialize_map(&[])).is_empty());
    }

    #[test]
    fn truncated_or_lying_maps_give_what_is_whole() {
        let bytes = serialize_map(&[("a", "1"), ("bb", "22")]);
        for cut in 0..bytes.len() {
            let got = parse_map(&bytes[..cut]);
            assert!(got.len() <= 2);
            if let Some((k, _)) = got.first() {
                assert_eq!(*k, b"a");
            }
        }
        // A count far beyond the data: no allocation of that size, no panic.
        let mut lying = bytes.clone();
        lying[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_map(&lying).is_empty());
    }
}
