#!/usr/bin/env bash
# Builds the Worker bundle (cf-worker/build/index.js + index_bg.wasm) offline: worker-build with
# esbuild and wasm-opt from the repo's node_modules and the wasm-bindgen-cli that
# tests/worker/setup.sh installs (same version as the wasm-bindgen pinned in Cargo.toml), so
# worker-build downloads nothing. wrangler.toml's [build] runs this before dev and deploy.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if [[ ! -x "$root/node_modules/.bin/esbuild" || ! -x "$cargo_bin/worker-build" || ! -x "$cargo_bin/wasm-bindgen" ]]; then
    bash "$root/tests/worker/setup.sh"
fi
# esbuild through cf-worker/esbuild.sh: it bundles cf-worker/entry.js, our entry module, in
# place of worker-build's shim (a Proxy around a class per request; see entry.js).
export ESBUILD_BIN="$root/cf-worker/esbuild.sh"
export WASM_OPT_BIN="$root/node_modules/.bin/wasm-opt"
export WASM_BINDGEN_BIN="$cargo_bin/wasm-bindgen"
cd "$root/cf-worker"
exec "$cargo_bin/worker-build" --profile worker "$@"
