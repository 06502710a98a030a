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
    let tmp = wasm.with_extension("opt.wasm");
    sh.run(
        sh.cmd(&wasm_opt)
            .args(WASM_OPT_PASSES)
            .args(WASM_OPT_FEATURES)
            .arg(&wasm)
            .arg("-o")
            .arg(&tmp),
    )?;
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
