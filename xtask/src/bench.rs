//! `cargo xtask bench [core|envoy|wasmtime|worker] [-- criterion args]`: runs the benchmarks,
//! then prints each benchmark's median from criterion's estimates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use crate::filter;
use crate::sh::{Res, Sh};
use crate::test::CORE_ABI_BUILD;

pub fn run(sh: &Sh, parts: &[&'static str], extra: &[String]) -> Res<ExitCode> {
    let mut failed = 0;
    for part in parts {
        println!("\n==================== xtask bench {part} ====================");
        let result = match *part {
            "core" => criterion(sh, &["-p", "capi-core", "--bench", "purchase"], extra),
            "wasmtime" if sh.root.join("wasmtime-tests/benches/wasmtime.rs").is_file() => {
                filter::build(sh)
                    .and_then(|_| sh.run(sh.cargo().args(CORE_ABI_BUILD)))
                    .and_then(|()| {
                        criterion(
                            sh,
                            &["-p", "capi-wasmtime-tests", "--bench", "wasmtime"],
                            extra,
                        )
                    })
            }
            other => {
                // Load benchmarks with servers (Envoy, workerd) live in bench/<part>/run.sh.
                let script = format!("bench/{other}/run.sh");
                if sh.root.join(&script).is_file() {
                    sh.run(sh.cmd("bash").arg(&script).args(extra))
                } else {
                    println!("{other}: no benchmark yet");
                    Ok(())
                }
            }
        };
        if let Err(e) = result {
            println!("{part}: FAILED: {e}");
            failed += 1;
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `cargo bench <args>`, then the median of every benchmark it ran.
fn criterion(sh: &Sh, args: &[&str], extra: &[String]) -> Res {
    let start = SystemTime::now();
    let mut c = sh.cargo();
    c.arg("bench").args(args);
    if !extra.is_empty() {
        c.arg("--").args(extra);
    }
    sh.run(&mut c)?;
    let mut rows = Vec::new();
    collect_medians(&sh.target_dir().join("criterion"), start, &mut rows)?;
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let clock = match std::env::var("CAPI_BENCH_CLOCK") {
        Ok(v) if v == "cpu" => "thread CPU time",
        _ => "wall time",
    };
    println!("\nmedians (criterion, this run, {clock}):");
    println!("| benchmark | median | per second (one core) |");
    println!("|---|---|---|");
    for (name, ns) in rows {
        println!("| {name} | {} | {} |", fmt_ns(ns), fmt_rate(1e9 / ns));
    }
    Ok(())
}

/// Finds `<id>/new/estimates.json` files written since `since` and reads their median (ns).
fn collect_medians(dir: &Path, since: SystemTime, rows: &mut Vec<(String, f64)>) -> Res {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path: PathBuf = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let est = path.join("new/estimates.json");
        if est.is_file() && est.metadata()?.modified()? >= since {
            let text = std::fs::read_to_string(&est)?;
            if let Some(ns) = median_ns(&text) {
                let id = path.join("new/benchmark.json");
                let name = std::fs::read_to_string(id)
                    .ok()
                    .and_then(|b| json_str(&b, "full_id"));
                rows.push((name.unwrap_or_else(|| path.display().to_string()), ns));
            }
        }
        if path
            .file_name()
            .is_some_and(|n| n != "new" && n != "base" && n != "change" && n != "report")
        {
            collect_medians(&path, since, rows)?;
        }
    }
    Ok(())
}

/// `"median":{...,"point_estimate":123.4,...}` → 123.4.
fn median_ns(estimates: &str) -> Option<f64> {
    let rest = &estimates[estimates.find("\"median\"")?..];
    let rest = &rest[rest.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}

/// A string field of a flat JSON object, without escapes.
fn json_str(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let rest = &json[json.find(&pat)? + pat.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn fmt_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else {
        format!("{:.0} k/s", per_s / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_criterion_median() {
        let est = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":3.0},"point_estimate":2.0,"standard_error":0.1},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0},"point_estimate":1512.25,"standard_error":0.1}}"#;
        assert_eq!(median_ns(est), Some(1512.25));
        assert_eq!(
            json_str(
                r#"{"group_id":"g","full_id":"purchase/extract+build"}"#,
                "full_id"
            )
            .as_deref(),
            Some("purchase/extract+build")
        );
    }
}
