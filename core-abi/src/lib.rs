//! capi-core behind a small, stable C ABI, so that any wasm host (wasmtime, wasmer, wazero, V8,
//! a browser) can build Conversions API requests with exactly the bytes the Envoy filter and
//! the Worker send.
//!
//! Build: `cargo build -p capi-core-abi --target wasm32v1-none --release` →
//! `target/wasm32v1-none/release/capi_core_abi.wasm`. The module imports nothing and exports
//! one linear memory (`memory`) and the functions below. `wasm32v1-none` is plain
//! WebAssembly 1.0 (plus mutable globals): no bulk-memory, reference-types or multi-value that
//! an older or stricter runtime might refuse, and no std at all (so it also proves the core is
//! `no_std`).
//!
//! # ABI version 1
//!
//! All pointers and lengths are `i32` (wasm32 addresses); `now_ms` is an `i64` of
//! milliseconds since the Unix epoch. Every operation returns an `i64` **result handle**:
//! `(ptr << 32) | len` of a UTF-8 JSON document that the module allocated; the host reads
//! `len` bytes at `ptr` and then calls `capi_free(ptr, len)`. A handle of 0 means the module
//! could not allocate the result.
//!
//! | export | signature | what it does |
//! | --- | --- | --- |
//! | `capi_abi_version` | `() -> i32` | `1` for this ABI; a change that breaks a caller bumps it |
//! | `capi_alloc` | `(len) -> ptr` | `len` bytes for the host to write inputs into; `0` if out of memory |
//! | `capi_free` | `(ptr, len)` | frees what `capi_alloc` or a result handle gave, with the same `len` |
//! | `capi_build_request` | `(config_ptr, config_len, input_ptr, input_len, secrets_ptr, secrets_len, now_ms: i64) -> i64` | a destination request for one collected conversion |
//! | `capi_hash_identifier` | `(kind, value_ptr, value_len, calling_code_ptr, calling_code_len) -> i64` | normalize and hash an email (kind 1) or phone (kind 2 hashed, kind 3 plain E.164) |
//! | `capi_plan` | `(config_ptr, config_len, request_ptr, request_len) -> i64` | what an answer from the destination leads to: delivered, retry at, or drop |
//!
//! A zero-length input may come with any pointer (even 0). Inputs are never kept: the host may
//! free them as soon as the call returns.
//!
//! Every result is `{"ok": ...}` or `{"error": {"kind": ..., ...}}`, with keys in sorted order:
//!
//! - `capi_build_request`: `config` is the plugin configuration JSON (the same document the
//!   filter and the Worker take), `input` a collect payload
//!   (`{"conversion_type":"Purchase","order_id":"A-1","value":"12.50","currency":"EUR","email":"a@b.co"}`),
//!   `secrets` a JSON object `{"CAPI_TOKEN": "..."}` that resolves the configuration's `*_env`
//!   names (empty input = `{}`). The answer is
//!   `{"ok":{"event_id":"…","request":{"body":"…","headers":[["content-type","application/json"],…],"method":"POST","url":"https://…"},"skipped":[{"field":"phone","reason":"not_a_phone"}]}}`.
//!   Errors: `config` (`path`, `reason`), `secrets` (`path`, `reason`), `input` (`field`,
//!   `reason`), `build` (`reason`).
//! - `capi_hash_identifier`: `{"ok":{"id":"<64 hex or E.164 digits>","name":"HashedEmail"|"HashedPhone"|"Phone"}}`;
//!   errors `identifier` (`reason`: `empty`, `not_an_email`, `not_a_phone`, `too_long`, …) or
//!   `argument`. The calling code (for numbers without `+`) defaults to `1` when empty.
//! - `capi_plan`: `request` is
//!   `{"answer":{"status":429,"retry_after":"7","body":"…"},"attempts_made":1,"first_attempt_at":0,"now":1000,"random":42}`
//!   (or `"answer":{"failure":"timeout"|"connect_failed"}`); the configuration's `retry`
//!   section applies. The answer is `{"ok":{"plan":"delivered"}}`,
//!   `{"ok":{"at":8000,"plan":"retry"}}` or
//!   `{"ok":{"detail":"…"|null,"plan":"drop","reason":"rejected"}}`; errors `config`,
//!   `request`.
//!
//! The functions in [`ops`] are the same operations as safe Rust (they return the JSON bytes),
//! compiled natively for tests that compare the wasm module byte for byte.
#![no_std]

extern crate alloc;
// Natively (the rlib the tests compare with, or a native cdylib) std provides the allocator and
// the panic handler; only the wasm build is std-free.
#[cfg(not(target_arch = "wasm32"))]
extern crate std;

/// The ABI version `capi_abi_version` returns.
pub const ABI_VERSION: u32 = 1;

pub mod ops;

#[cfg(target_arch = "wasm32")]
mod exports;

// wasm32v1-none has no std: the allocator and the panic handler are ours. A panic (there
// should be none: the code paths return errors) becomes a wasm trap.
#[cfg(all(target_arch = "wasm32", target_os = "none"))]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[cfg(all(target_arch = "wasm32", target_os = "none", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
