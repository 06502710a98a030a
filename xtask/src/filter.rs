//! Building the Envoy filter's .wasm the way every consumer loads it (Envoy tests, the demo,
//! the wasmtime tests, the benchmarks): `cargo build --profile filter` (release with fat LTO,
//! `opt-level = "z"` for every crate in it, stripped), then binaryen's `wasm-opt -Oz` (and a
//! few more passes, see `WASM_OPT_PASSES`) over the result, in place.
//!
//! In place: the file cargo leaves at `target/wasm32-wasip1/filter/` is a hard link to its
//! `deps/` copy, and writing through it keeps cargo's fingerprint fresh, so a later plain
//! `cargo build --profile filter` neither rebuilds nor undoes the optimization. A stamp next to
//! it (size and mtime of the optimized file) saves running wasm-opt again on the same file.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::setup;
use crate::sh::{Res, Sh, err};

/// `cargo build` arguments of the filter.
pub const FILTER_BUILD: [&str; 7] = [
    "build",
    "-p",
    "capi-proxy-wasm-filter",
    "--target",
    "wasm32-wasip1",
    "--profile",
    "filter",
];

/// The filter under the target directory.
pub const FILTER_WASM: &str = "wasm32-wasip1/filter/capi_proxy_wasm_filter.wasm";

/// `-Oz` until it changes nothing more (`--converge`, ~0.8 KB), then constants used many times
/// (data addresses, mostly) moved into immutable globals (`--const-hoisting`, ~2.4 KB): a
/// `global.get` where an `i32.const` was, a load of the instance's globals in V8 rather than an
/// immediate, too small to show next to a checkout's host calls. `--low-memory-unused` (~1.6
/// KB) lets it fold `p + C` (C < 1024) into a load's or store's offset, which differs only when
/// `p + C` wraps past 4 GiB: no Rust pointer arithmetic does (and it saves an add).
const WASM_OPT_PASSES: [&str; 4] = [
    "--low-memory-unused",
    "-Oz",
    "--converge",
    "--const-hoisting",
];

/// The wasm features rustc enables for wasm32-wasip1 (binaryen must accept what it reads and
/// must not add any that V8 in Envoy might lack). The stripped file has no target_features
/// section for `--detect-features` to read.
const WASM_OPT_FEATURES: [&str; 7] = [
    "--enable-bulk-memory",
    "--enable-bulk-memory-opt",
    "--enable-sign-ext",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-multivalue",
    "--enable-reference-types",
];

/// Callbacks the proxy-wasm SDK exports that Envoy never calls on this filter, dropped before
/// wasm-opt so that it removes them and what only they reach (~7 KB): gRPC answers (the filter
/// starts no gRPC call), network-filter events (it is an HTTP filter: its root context says
/// so), shared-queue events (it registers no queue) and foreign-function callbacks (it calls
/// none). The SDK's versions do nothing for this filter or trap on an unknown context; a host
/// skips a callback the module does not export.
const UNUSED_EXPORTS: [&str; 11] = [
    "proxy_on_grpc_close",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_receive_initial_metadata",
    "proxy_on_grpc_receive_trailing_metadata",
    "proxy_on_new_connection",
    "proxy_on_downstream_data",
    "proxy_on_upstream_data",
    "proxy_on_downstream_connection_close",
    "proxy_on_upstream_connection_close",
    "proxy_on_queue_ready",
    "proxy_on_foreign_function",
];

/// The module without the named exports (its export section rewritten; nothing else changes).
fn drop_exports(wasm: &[u8], names: &[&str]) -> Res<Vec<u8>> {
    fn leb(b: &[u8], at: &mut usize) -> Res<usize> {
        let (mut v, mut shift) = (0usize, 0);
        loop {
            let byte = *b.get(*at).ok_or_else(|| err("truncated wasm"))?;
            *at += 1;
            v |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }
    fn put_leb(out: &mut Vec<u8>, mut v: usize) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let header = wasm.get(..8).ok_or_else(|| err("not a wasm module"))?;
    let mut out = header.to_vec();
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = leb(wasm, &mut at)?;
        let body = wasm
            .get(at..at + size)
            .ok_or_else(|| err("truncated wasm section"))?;
        at += size;
        if id != 7 {
            out.push(id);
            put_leb(&mut out, size);
            out.extend_from_slice(body);
            continue;
        }
        // Export section: a vector of (name, kind byte, index).
        let mut p = 0;
        let count = leb(body, &mut p)?;
        let mut kept = Vec::new();
        let mut n = 0;
        for _ in 0..count {
            let start = p;
            let len = leb(body, &mut p)?;
            let name = body
                .get(p..p + len)
                .ok_or_else(|| err("truncated export"))?;
            p += len + 1;
            leb(body, &mut p)?;
            if !names.iter().any(|d| d.as_bytes() == name) {
                kept.extend_from_slice(body.get(start..p).ok_or_else(|| err("truncated export"))?);
                n += 1;
            }
        }
        let mut section = Vec::new();
        put_leb(&mut section, n);
        section.extend_from_slice(&kept);
        out.push(id);
        put_leb(&mut out, section.len());
        out.extend_from_slice(&section);
    }
    Ok(out)
}

/// Builds and optimizes the filter; returns its path.
pub fn build(sh: &Sh) -> Res<PathBuf> {
    sh.run(sh.cargo().args(FILTER_BUILD))?;
    let wasm = sh.target_dir().join(FILTER_WASM);
    let stamp = wasm.with_extension("wasm-opt-stamp");
    if std::fs::read_to_string(&stamp).ok() == Some(fingerprint(&wasm)?) {
        println!("{}: already optimized by wasm-opt", wasm.display());
        return Ok(wasm);
    }
    // Without Node.js there is no wasm-opt: the unoptimized filter works the same (it is only
    // larger), so the tests and the demo go on with it, loudly.
    let wasm_opt = match setup::ensure_wasm_opt(sh) {
        Ok(w) => w,
        Err(e) => {
            println!(
                "!!! wasm-opt unavailable ({e}): {} stays as cargo built it ({} B)",
                wasm.display(),
                std::fs::metadata(&wasm)?.len()
            );
            return Ok(wasm);
        }
    };
    let before = std::fs::metadata(&wasm)?.len();
    let pruned = wasm.with_extension("pruned.wasm");
    std::fs::write(
        &pruned,
        drop_exports(&std::fs::read(&wasm)?, &UNUSED_EXPORTS)?,
    )?;
    let tmp = wasm.with_extension("opt.wasm");
    sh.run(
        sh.cmd(&wasm_opt)
            .args(WASM_OPT_PASSES)
            .args(WASM_OPT_FEATURES)
            .arg(&pruned)
            .arg("-o")
            .arg(&tmp),
    )?;
    std::fs::remove_file(&pruned)?;
    let optimized = std::fs::read(&tmp)?;
    // Write through the existing file (same inode as cargo's deps/ copy), see above.
    std::fs::write(&wasm, &optimized)?;
    std::fs::remove_file(&tmp)?;
    std::fs::write(&stamp, fingerprint(&wasm)?)?;
    println!(
        "{}: {before} B -> {} B (wasm-opt {})",
        wasm.display(),
        optimized.len(),
        WASM_OPT_PASSES.join(" ")
    );
    Ok(wasm)
}

fn fingerprint(path: &Path) -> Res<String> {
    let m = std::fs::metadata(path)
        .map_err(|e| err(format!("{}: {e} (was the filter built?)", path.display())))?;
    let mtime = m
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("{} {mtime}\n", m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_exports_rewrites_only_the_export_section() {
        let header = b"\0asm\x01\0\0\0";
        let other = [1u8, 4, 1, 0x60, 0, 0]; // a type section: one () -> () type
        let export = |name: &str, index: u8| {
            let mut e = vec![name.len() as u8];
            e.extend_from_slice(name.as_bytes());
            e.extend_from_slice(&[0, index]);
            e
        };
        let section = |entries: &[Vec<u8>]| {
            let body: Vec<u8> = std::iter::once(entries.len() as u8)
                .chain(entries.iter().flatten().copied())
                .collect();
            let mut s = vec![7, body.len() as u8];
            s.extend_from_slice(&body);
            s
        };
        let module = |entries: &[Vec<u8>]| {
            let mut m = header.to_vec();
            m.extend_from_slice(&other);
            m.extend_from_slice(&section(entries));
            m
        };
        let all = module(&[export("keep", 0), export("drop_me", 1), export("also", 2)]);
        let want = module(&[export("keep", 0), export("also", 2)]);
        assert_eq!(drop_exports(&all, &["drop_me"]).unwrap(), want);
        assert_eq!(drop_exports(&all, &["absent"]).unwrap(), all);
        assert!(drop_exports(&all[..all.len() - 1], &["drop_me"]).is_err());
    }
}
