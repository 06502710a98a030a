//! Thin wrappers over the proxy-wasm host calls that never panic on our side.
//!
//! The SDK's `Context` helpers `unwrap()` host results and its string getters `unwrap()` UTF-8
//! conversions: a header value with obs-text bytes would trap the VM (and a trap kills the
//! filter for every request on that worker). These go through `hostcalls` directly, read bytes
//! and convert lossily.

use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// True when Envoy would print a message at `level` (saves formatting debug lines).
pub fn enabled(level: LogLevel) -> bool {
    hostcalls::get_log_level().map_or(true, |l| level as u32 >= l as u32)
}

/// Milliseconds since the Unix epoch, from the host's clock.
pub fn now_ms() -> i64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Nanoseconds of the host clock, for seeding.
pub fn now_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// All headers of a map whose (lower-case) names pass `keep`.
pub fn headers(map: MapType, keep: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    match hostcalls::get_map_bytes(map) {
        Ok(pairs) => pairs
            .into_iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| {
                let v = match String::from_utf8(v) {
                    Ok(s) => s,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                };
                (k.to_ascii_lowercase(), v)
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A host property such as `["source", "address"]`, lossily decoded.
pub fn property(path: &[&str]) -> Option<String> {
    match hostcalls::get_property(path.to_vec()) {
        Ok(Some(v)) => Some(String::from_utf8_lossy(&v).into_owned()),
        _ => None,
    }
}

/// Bytes `[start, start + max)` of a buffer.
pub fn buffer(which: BufferType, start: usize, max: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(which, start, max).ok().flatten()
}

pub fn set_tick_period(ms: u32) {
    let _ = hostcalls::set_tick_period(Duration::from_millis(u64::from(ms)));
}

pub fn define_metric(kind: MetricType, name: &str) -> Option<u32> {
    hostcalls::define_metric(kind, name).ok()
}

pub fn increment_metric(id: Option<u32>, by: i64) {
    if let Some(id) = id
        && by != 0
    {
        let _ = hostcalls::increment_metric(id, by);
    }
}

// Envoy's shared data, through the raw ABI: the SDK's wrappers panic (a VM trap) on any status
// they do not expect, and its import returns a Rust enum that an unknown status would make UB.
mod abi {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
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
}

const STATUS_OK: u32 = 0;

/// Envoy's shared data as the dedup table sees it.
pub struct SharedData;

impl crate::shared_dedup::SharedStore for SharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the host writes a buffer it allocated through our `proxy_on_memory_allocate`
        // (the SDK's, a Vec<u8> of exactly `size` bytes), which we take ownership of.
        unsafe {
            let status =
                abi::proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas);
            if status != STATUS_OK {
                return None;
            }
            let value = if data.is_null() {
                Vec::new()
            } else {
                Vec::from_raw_parts(data, size, size)
            };
            Some((value, cas))
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
