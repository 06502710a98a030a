//! The proxy-wasm ABI 0.2.1 exports: Envoy's callbacks routed to the filter's root and HTTP
//! contexts. It does what the SDK's dispatcher did for this filter and nothing more (only the
//! callbacks an HTTP filter gets are exported; Envoy skips the others): contexts by id in
//! sorted vectors (Envoy hands out increasing ids), no hashing, no trait objects.

use alloc::vec::Vec;
use core::cell::RefCell;

use crate::{Http, Root};

/// Contexts by id, kept sorted.
struct Contexts<T>(Vec<(u32, T)>);

impl<T> Contexts<T> {
    const fn new() -> Self {
        Contexts(Vec::new())
    }

    fn get(&self, id: u32) -> Option<&T> {
        let i = self.0.binary_search_by_key(&id, |(k, _)| *k).ok()?;
        self.0.get(i).map(|(_, t)| t)
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        let i = self.0.binary_search_by_key(&id, |(k, _)| *k).ok()?;
        self.0.get_mut(i).map(|(_, t)| t)
    }

    fn insert(&mut self, id: u32, t: T) {
        match self.0.binary_search_by_key(&id, |(k, _)| *k) {
            Ok(i) => {
                if let Some(slot) = self.0.get_mut(i) {
                    slot.1 = t;
                }
            }
            Err(i) => self.0.insert(i, (id, t)),
        }
    }

    fn remove(&mut self, id: u32) -> Option<T> {
        let i = self.0.binary_search_by_key(&id, |(k, _)| *k).ok()?;
        Some(self.0.remove(i).1)
    }
}

struct Registry {
    roots: Contexts<Root>,
    http: Contexts<Http>,
}

/// The registry of one VM. A VM runs on one thread (wasm32 without the threads proposal), so a
/// `RefCell` is all the guarding it needs; a callback that finds it borrowed (a host that
/// re-entered) does nothing rather than trap.
struct VmCell(RefCell<Registry>);

// SAFETY: wasm32 without atomics has one thread; the native build (unit tests) never touches
// the registry from more than one thread.
unsafe impl Sync for VmCell {}

static REGISTRY: VmCell = VmCell(RefCell::new(Registry {
    roots: Contexts::new(),
    http: Contexts::new(),
}));

fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> Option<R> {
    let mut r = REGISTRY.0.try_borrow_mut().ok()?;
    Some(f(&mut r))
}

fn root<R>(id: u32, f: impl FnOnce(&mut Root) -> R) -> Option<R> {
    with(|r| r.roots.get_mut(id).map(f)).flatten()
}

fn http<R>(id: u32, f: impl FnOnce(&mut Http) -> R) -> Option<R> {
    with(|r| r.http.get_mut(id).map(f)).flatten()
}

/// `Continue`: the filter never pauses a stream.
const CONTINUE: u32 = 0;

#[unsafe(no_mangle)]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host allocates the buffers it returns to us here: a `Vec<u8>` of exactly `size` bytes,
/// taken back with `Vec::from_raw_parts` by [`crate::host`].
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::with_capacity(size);
    let p = v.as_mut_ptr();
    core::mem::forget(v);
    p
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    with(|r| {
        if root_context_id == 0 {
            r.roots.insert(context_id, Root::new(context_id));
        } else if let Some(http) = r.roots.get(root_context_id).map(Root::create_http_context) {
            r.http.insert(context_id, http);
        }
    });
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_vm_start(_context_id: u32, _vm_configuration_size: usize) -> bool {
    true
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_configure(context_id: u32, plugin_configuration_size: usize) -> bool {
    root(context_id, |r| r.on_configure(plugin_configuration_size)).unwrap_or(false)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    root(context_id, Root::on_tick);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token_id: u32,
    _num_headers: usize,
    body_size: usize,
    _num_trailers: usize,
) {
    root(context_id, |r| r.on_http_call_response(token_id, body_size));
}

/// A root says whether it is done now (else it calls `proxy_done` later); a stream always is.
#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_done(context_id: u32) -> bool {
    root(context_id, Root::on_done).unwrap_or(true)
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    with(|r| {
        if r.http.remove(context_id).is_none() {
            r.roots.remove(context_id);
        }
    });
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_log(context_id: u32) {
    http(context_id, Http::on_log);
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    _num_headers: usize,
    end_of_stream: bool,
) -> u32 {
    http(context_id, |h| h.on_request_headers(end_of_stream));
    CONTINUE
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_body(
    context_id: u32,
    body_size: usize,
    end_of_stream: bool,
) -> u32 {
    http(context_id, |h| h.on_request_body(body_size, end_of_stream));
    CONTINUE
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, _num_trailers: usize) -> u32 {
    http(context_id, Http::on_request_trailers);
    CONTINUE
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_headers(
    context_id: u32,
    _num_headers: usize,
    end_of_stream: bool,
) -> u32 {
    http(context_id, |h| h.on_response_headers(end_of_stream));
    CONTINUE
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_body(
    context_id: u32,
    body_size: usize,
    end_of_stream: bool,
) -> u32 {
    http(context_id, |h| h.on_response_body(body_size, end_of_stream));
    CONTINUE
}

#[unsafe(no_mangle)]
pub extern "C" fn proxy_on_response_trailers(context_id: u32, _num_trailers: usize) -> u32 {
    http(context_id, Http::on_response_trailers);
    CONTINUE
}

/// The .wasm's allocator (the filter has no std): dlmalloc over `memory.grow`.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

/// `memcmp` (and `bcmp`, which LLVM may call for equality): compiler-builtins leaves them to
/// the C library, which a .wasm without std does not link, and an unresolved symbol would
/// become an import Envoy cannot satisfy.
///
/// # Safety
/// `a` and `b` are valid for reads of `n` bytes.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: see the function's contract.
    let (a, b) = unsafe {
        (
            core::slice::from_raw_parts(a, n),
            core::slice::from_raw_parts(b, n),
        )
    };
    compare_bytes(a, b)
}

/// # Safety
/// As [`memcmp`].
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the same contract.
    unsafe { memcmp(a, b, n) }
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // memcmp's body; tested natively
/// `memcmp` over two slices of one length: eight bytes a step, then bytes. Written so that
/// LLVM cannot turn it back into a call to `memcmp` (slices' own `cmp` would be one).
fn compare_bytes(a: &[u8], b: &[u8]) -> i32 {
    let n = a.len().min(b.len());
    let word = |s: &[u8], i: usize| {
        s.get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_be_bytes)
    };
    let mut i = 0;
    while i + 8 <= n {
        // Big-endian words compare as their bytes do.
        let (x, y) = (word(a, i), word(b, i));
        if x != y {
            return if x < y { -1 } else { 1 };
        }
        i += 8;
    }
    while i < n {
        let (x, y) = (a.get(i).copied(), b.get(i).copied());
        if x != y {
            return i32::from(x.unwrap_or(0)) - i32::from(y.unwrap_or(0));
        }
        i += 1;
    }
    0
}

/// Nothing in the filter panics (clippy denies unwrap, expect and panic); should something in
/// a dependency do so anyway, the message goes to Envoy's log before the VM traps.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::host::log(
        crate::host::LogLevel::Critical,
        &alloc::format!("capi: panic: {info}"),
    );
    core::arch::wasm32::unreachable()
}

#[cfg(test)]
mod tests {
    use super::{Contexts, compare_bytes};

    #[test]
    fn compare_bytes_orders_as_memcmp_does() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let n = (next() % 40) as usize;
            let a: Vec<u8> = (0..n).map(|_| (next() % 4) as u8 * 60).collect();
            let mut b = a.clone();
            if n > 0 && next() % 4 != 0 {
                let at = (next() as usize) % n;
                b[at] = (next() % 256) as u8;
            }
            let want = a.cmp(&b) as i32;
            assert_eq!(compare_bytes(&a, &b).signum(), want, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn contexts_stay_sorted_whatever_the_order() {
        let mut c = Contexts::new();
        for id in [5u32, 1, 9, 3, 7, 2] {
            c.insert(id, id * 10);
        }
        assert!(c.0.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(c.get(7), Some(&70));
        c.insert(7, 71);
        assert_eq!(c.get(7), Some(&71));
        assert_eq!(c.remove(3), Some(30));
        assert_eq!(c.remove(3), None);
        assert_eq!(c.get(4), None);
        if let Some(v) = c.get_mut(9) {
            *v = 0;
        }
        assert_eq!(c.get(9), Some(&0));
        assert_eq!(c.0.len(), 5);
    }
}
