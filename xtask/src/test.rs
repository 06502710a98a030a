//! `cargo xtask test [core|envoy|wasmtime|worker]`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::filter;
use crate::setup::{self, WASM_TARGETS};
use crate::sh::{Res, Sh, err, fmt_duration};

/// Packages that only build for wasm: excluded from the native clippy run and linted for
/// their own target instead.
pub const WASM_ONLY: [(&str, &str); 2] = [
    ("capi-proxy-wasm-filter", "wasm32-wasip1"),
    ("capi-cf-worker", "wasm32-unknown-unknown"),
];

/// The build command of the core ABI module the wasmtime tests load (the filter's is in
/// `filter.rs`).
pub const CORE_ABI_BUILD: [&str; 6] = [
    "build",
    "-p",
    "capi-core-abi",
    "--target",
    "wasm32v1-none",
    "--release",
];

/// Seconds each fuzz target runs for (`XTASK_FUZZ_SECS` overrides).
const FUZZ_SECS_DEFAULT: u64 = 20;
/// Upper bounds for the end-to-end test commands (they start servers; a hang must end).
const ENVOY_TEST_LIMIT: Duration = Duration::from_secs(15 * 60);
const WASMTIME_TEST_LIMIT: Duration = Duration::from_secs(20 * 60);
const WORKER_TEST_LIMIT: Duration = Duration::from_secs(30 * 60);

pub enum Outcome {
    Passed,
    Skipped(String),
    Failed(Vec<String>),
}

/// The steps of one part: each runs even when an earlier one failed, so one run reports
/// every failure.
struct Steps {
    part: &'static str,
    failures: Vec<String>,
    skipped: Vec<String>,
}

impl Steps {
    fn new(part: &'static str) -> Self {
        Self {
            part,
            failures: Vec::new(),
            skipped: Vec::new(),
        }
    }

    fn step(&mut self, name: &str, f: impl FnOnce() -> Res) {
        println!("\n--- {}: {name}", self.part);
        let t = Instant::now();
        match f() {
            Ok(()) => println!(
                "--- {}: {name}: ok ({})",
                self.part,
                fmt_duration(t.elapsed())
            ),
            Err(e) => {
                println!(
                    "--- {}: {name}: FAILED ({}): {e}",
                    self.part,
                    fmt_duration(t.elapsed())
                );
                self.failures.push(format!("{name}: {e}"));
            }
        }
    }

    /// A step that could not run: loud, but not a failure.
    fn skip(&mut self, name: &str, why: &str) {
        println!("\n!!! {}: {name} SKIPPED: {why}", self.part);
        self.skipped.push(format!("{name} skipped: {why}"));
    }

    fn outcome(self) -> (Outcome, Vec<String>) {
        if self.failures.is_empty() {
            (Outcome::Passed, self.skipped)
        } else {
            (Outcome::Failed(self.failures), self.skipped)
        }
    }
}

pub fn run(sh: &Sh, part: &str) -> (Outcome, Vec<String>) {
    match part {
        "core" => core(sh),
        "envoy" => envoy(sh),
        "wasmtime" => wasmtime(sh),
        "worker" => worker(sh),
        other => (
            Outcome::Failed(vec![format!("unknown part {other}")]),
            Vec::new(),
        ),
    }
}

/// A part whose code is not in the repository yet.
fn not_built(part: &str, missing: &str) -> (Outcome, Vec<String>) {
    let why = format!("{part}: not built yet (no {missing})");
    println!("{why}");
    (Outcome::Skipped(why), Vec::new())
}

fn wasm_only_members(sh: &Sh) -> Res<Vec<(&'static str, &'static str)>> {
    let members = setup::workspace_members(sh)?;
    Ok(WASM_ONLY
        .iter()
        .copied()
        .filter(|(p, _)| members.iter().any(|m| m == p))
        .collect())
}

fn core(sh: &Sh) -> (Outcome, Vec<String>) {
    let mut s = Steps::new("core");
    let wasm_only = match wasm_only_members(sh) {
        Ok(w) => w,
        Err(e) => {
            return (
                Outcome::Failed(vec![format!("cargo metadata: {e}")]),
                Vec::new(),
            );
        }
    };

    s.step("rustup targets", || {
        setup::ensure_targets(sh, &WASM_TARGETS)
    });

    if setup::ensure_cargo_tool(sh, "fmt", "rustfmt") {
        s.step("fmt", || {
            // Every workspace member, wasm-only ones included (rustfmt needs no target).
            sh.run(sh.cargo().args(["fmt", "--all", "--check"]))
        });
    } else {
        s.skip("fmt", "rustfmt is not installed and could not be added");
    }

    s.step("clippy (native)", || {
        if !setup::ensure_cargo_tool(sh, "clippy", "clippy") {
            return Err(err("cargo clippy is not installed and could not be added"));
        }
        let mut c = sh.cargo();
        c.args(["clippy", "--workspace", "--all-targets"]);
        for (p, _) in &wasm_only {
            c.args(["--exclude", p]);
        }
        sh.run(c.args(["--", "-D", "warnings"]))
    });
    for (p, target) in &wasm_only {
        s.step(&format!("clippy {p} ({target})"), || {
            sh.run(sh.cargo().args([
                "clippy", "-p", p, "--target", target, "--", "-D", "warnings",
            ]))
        });
    }

    s.step("tests", || {
        sh.run(sh.cargo().args([
            "test",
            "-p",
            "capi-core",
            "-p",
            "capi-cli",
            "-p",
            "xtask",
            "-p",
            "capi-core-abi",
            "-p",
            "capi-cf-worker",
        ]))
    });

    for target in ["wasm32v1-none", "wasm32-wasip1", "wasm32-unknown-unknown"] {
        s.step(&format!("build capi-core for {target}"), || {
            sh.run(
                sh.cargo()
                    .args(["build", "-p", "capi-core", "--target", target]),
            )
        });
    }

    match setup::ensure_nightly(sh).and_then(|()| setup::ensure_cargo_fuzz(sh)) {
        Ok(()) => fuzz(sh, &mut s),
        Err(e) => s.skip("fuzz", &format!("no nightly toolchain or cargo-fuzz: {e}")),
    }
    s.outcome()
}

/// Each fuzz target for a bounded time, starting from its saved corpus (read-only: new
/// inputs go to core/fuzz/target/corpus-run/, so a test run never changes tracked files).
fn fuzz(sh: &Sh, s: &mut Steps) {
    let dir = sh.root.join("core/fuzz");
    let secs: u64 = std::env::var("XTASK_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FUZZ_SECS_DEFAULT);
    let fuzz_cmd = || {
        let mut c = sh.cargo();
        c.current_dir(&dir).args(["+nightly", "fuzz"]);
        c
    };
    let targets = match fuzz_targets(&dir) {
        Ok(t) if !t.is_empty() => t,
        Ok(_) => {
            return s.step("fuzz", || {
                Err(err("core/fuzz/fuzz_targets/ has no targets"))
            });
        }
        Err(e) => return s.step("fuzz", || Err(e)),
    };
    s.step("fuzz build", || sh.run(fuzz_cmd().arg("build")));
    for t in &targets {
        s.step(&format!("fuzz {t} ({secs}s)"), || {
            let run_corpus = dir.join("target/corpus-run").join(t);
            std::fs::create_dir_all(&run_corpus)?;
            let seeds = dir.join("corpus").join(t);
            let mut c = fuzz_cmd();
            c.args(["run", t.as_str()]).arg(&run_corpus);
            if seeds.is_dir() {
                c.arg(&seeds);
            }
            c.args([
                "--",
                &format!("-max_total_time={secs}"),
                "-timeout=10",
                "-print_final_stats=1",
            ]);
            // Building is done above; allow a generous margin over the fuzzing time anyway.
            sh.run_bounded(&mut c, Duration::from_secs(secs + 300))
        });
    }
}

fn fuzz_targets(dir: &Path) -> Res<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir.join("fuzz_targets"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs")
            && let Some(stem) = path.file_stem()
        {
            names.push(stem.to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn envoy(sh: &Sh) -> (Outcome, Vec<String>) {
    let filter = WASM_ONLY[0].0;
    match wasm_only_members(sh) {
        Ok(w) if w.iter().any(|(p, _)| *p == filter) => {}
        Ok(_) => {
            let why = format!("envoy: {filter} is not a workspace member yet");
            println!("{why}");
            return (Outcome::Skipped(why), Vec::new());
        }
        Err(e) => {
            return (
                Outcome::Failed(vec![format!("cargo metadata: {e}")]),
                Vec::new(),
            );
        }
    }
    let mut s = Steps::new("envoy");
    s.step("rustup targets", || {
        setup::ensure_targets(sh, &["wasm32-wasip1"])
    });
    let mut envoy_bin = None;
    s.step("install envoy", || {
        envoy_bin = Some(setup::ensure_envoy(sh)?);
        Ok(())
    });
    // Natively, with the filter's own feature set (its serde_json has no float_roundtrip).
    s.step("filter unit tests", || {
        sh.run(sh.cargo().args(["test", "-p", "capi-proxy-wasm-filter"]))
    });
    s.step("build filter", || filter::build(sh).map(drop));
    s.step("build capi CLI", || {
        sh.run(sh.cargo().args(["build", "-p", "capi-cli"]))
    });
    if !s.failures.is_empty() {
        return s.outcome();
    }
    match envoy_test_command(sh) {
        Some(mut c) => {
            let target = sh.target_dir();
            if let Some(bin) = &envoy_bin {
                c.env("ENVOY_BIN", bin);
            }
            c.env("CAPI_BIN", target.join("debug/capi"));
            c.env("CAPI_FILTER_WASM", target.join(filter::FILTER_WASM));
            s.step("envoy tests", || sh.run_bounded(&mut c, ENVOY_TEST_LIMIT));
            s.outcome()
        }
        None => {
            println!("envoy: no tests yet");
            let (outcome, notes) = s.outcome();
            match outcome {
                Outcome::Passed => (
                    Outcome::Skipped("envoy: no tests yet (filter and CLI built)".to_owned()),
                    notes,
                ),
                other => (other, notes),
            }
        }
    }
}

/// The Envoy end-to-end test command. PLACEHOLDER until tests/envoy/ settles: replace with
/// the one final command. Receives ENVOY_BIN, CAPI_BIN and CAPI_FILTER_WASM in its environment.
fn envoy_test_command(sh: &Sh) -> Option<Command> {
    let dir = sh.root.join("tests/envoy");
    if dir.join("run.py").is_file() {
        let mut c = sh.cmd(sh.root.join(".venv/bin/python"));
        c.arg("tests/envoy/run.py");
        Some(c)
    } else if dir.join("Cargo.toml").is_file() {
        let mut c = sh.cargo();
        c.args(["test", "--manifest-path", "tests/envoy/Cargo.toml"]);
        Some(c)
    } else {
        None
    }
}

/// The wasmtime host tests: the filter and the core ABI module run in wasmtime, natively.
fn wasmtime(sh: &Sh) -> (Outcome, Vec<String>) {
    if !sh.root.join("wasmtime-tests/Cargo.toml").is_file() {
        return not_built("wasmtime", "wasmtime-tests/");
    }
    let mut s = Steps::new("wasmtime");
    s.step("rustup targets", || {
        setup::ensure_targets(sh, &["wasm32-wasip1", "wasm32v1-none"])
    });
    s.step("build filter", || filter::build(sh).map(drop));
    s.step("build core ABI module", || {
        sh.run(sh.cargo().args(CORE_ABI_BUILD))
    });
    if s.failures.is_empty() {
        s.step("wasmtime tests", || {
            let mut c = sh.cargo();
            c.args([
                "test",
                "-p",
                "capi-wasmtime-tests",
                "--profile",
                "wasmtime-tests",
            ]);
            sh.run_bounded(&mut c, WASMTIME_TEST_LIMIT)
        });
        // The host-input fuzzer, briefly (CAPI_FUZZ_SECS=300 … for a long run, see README).
        s.step("wasmtime fuzz_host (20s)", || {
            let mut c = sh.cargo();
            c.args([
                "test",
                "-p",
                "capi-wasmtime-tests",
                "--profile",
                "wasmtime-tests",
                "--test",
                "fuzz_host",
                "--",
                "--ignored",
            ])
            .env("CAPI_FUZZ_SECS", "20");
            sh.run_bounded(&mut c, WASMTIME_TEST_LIMIT)
        });
    }
    s.outcome()
}

/// The Cloudflare Worker in real workerd (`wrangler dev`): tests/worker/run.sh installs what
/// it needs (worker-build, wasm-bindgen-cli, npm packages), builds, and runs every test.
fn worker(sh: &Sh) -> (Outcome, Vec<String>) {
    if !sh.root.join("tests/worker/run.sh").is_file() {
        return not_built("worker", "tests/worker/run.sh");
    }
    let mut s = Steps::new("worker");
    s.step("worker tests", || {
        let mut c = sh.cmd("bash");
        c.arg("tests/worker/run.sh");
        sh.run_bounded(&mut c, WORKER_TEST_LIMIT)
    });
    s.outcome()
}
