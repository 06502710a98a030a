//! The C ABI itself: raw pointers in, a result handle out. Only on wasm32, where a pointer
//! and a length fit together in one `i64`.

use alloc::alloc::{Layout, alloc, dealloc};
use core::ptr;

use crate::{ABI_VERSION, ops};

fn layout(len: usize) -> Option<Layout> {
    Layout::from_size_align(len.max(1), 1).ok()
}

/// The input bytes the host wrote at `ptr`.
///
/// # Safety
/// `ptr..ptr+len` must be readable memory of this module (a `capi_alloc` block, say).
unsafe fn input<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: the caller promises `len` readable bytes at `ptr`.
        unsafe { core::slice::from_raw_parts(ptr, len) }
    }
}

/// Copies a result into a fresh block and packs it as a handle.
fn handle(bytes: &[u8]) -> u64 {
    let Some(l) = layout(bytes.len()) else {
        return 0;
    };
    // SAFETY: the layout has a non-zero size.
    let p = unsafe { alloc(l) };
    if p.is_null() {
        return 0;
    }
    // SAFETY: `p` holds at least `bytes.len()` bytes and cannot overlap `bytes`.
    unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
    ((p as usize as u64) << 32) | bytes.len() as u64
}

#[unsafe(no_mangle)]
pub extern "C" fn capi_abi_version() -> u32 {
    ABI_VERSION
}

#[unsafe(no_mangle)]
pub extern "C" fn capi_alloc(len: usize) -> *mut u8 {
    match layout(len) {
        // SAFETY: the layout has a non-zero size.
        Some(l) => unsafe { alloc(l) },
        None => ptr::null_mut(),
    }
}

/// # Safety
/// `ptr` must come from `capi_alloc(len)` or a result handle of length `len`, freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capi_free(ptr: *mut u8, len: usize) {
    if let (false, Some(l)) = (ptr.is_null(), layout(len)) {
        // SAFETY: the caller promises the block was allocated with this layout.
        unsafe { dealloc(ptr, l) }
    }
}

/// # Safety
/// Each `(ptr, len)` pair must be readable memory of this module.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capi_build_request(
    config_ptr: *const u8,
    config_len: usize,
    input_ptr: *const u8,
    input_len: usize,
    secrets_ptr: *const u8,
    secrets_len: usize,
    now_ms: i64,
) -> u64 {
    // SAFETY: forwarded from the caller.
    let (config, inp, secrets) = unsafe {
        (
            input(config_ptr, config_len),
            input(input_ptr, input_len),
            input(secrets_ptr, secrets_len),
        )
    };
    handle(&ops::build_request(config, inp, secrets, now_ms))
}

/// # Safety
/// Each `(ptr, len)` pair must be readable memory of this module.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capi_hash_identifier(
    kind: u32,
    value_ptr: *const u8,
    value_len: usize,
    cc_ptr: *const u8,
    cc_len: usize,
) -> u64 {
    // SAFETY: forwarded from the caller.
    let (value, cc) = unsafe { (input(value_ptr, value_len), input(cc_ptr, cc_len)) };
    handle(&ops::hash_identifier(kind, value, cc))
}

/// # Safety
/// Each `(ptr, len)` pair must be readable memory of this module.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn capi_plan(
    config_ptr: *const u8,
    config_len: usize,
    request_ptr: *const u8,
    request_len: usize,
) -> u64 {
    // SAFETY: forwarded from the caller.
    let (config, request) = unsafe {
        (
            input(config_ptr, config_len),
            input(request_ptr, request_len),
        )
    };
    handle(&ops::plan(config, request))
}
