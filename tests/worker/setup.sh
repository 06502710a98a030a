#!/usr/bin/env bash
# Installs what the Cloudflare Worker build and its tests need, offline-friendly and idempotent:
#   - the wasm32-unknown-unknown Rust target;
#   - worker-build 0.8.7 and wasm-bindgen-cli (exactly the wasm-bindgen version in Cargo.lock)
#     into ~/.cargo/bin when missing or at another version;
#   - npm ci (wrangler with workerd + Miniflare, esbuild, binaryen's wasm-opt) when node_modules
#     lacks wrangler.
# Called by cf-worker/build.sh, tests/worker/run.sh, bench/worker/run.sh and `cargo xtask test worker`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
WORKER_BUILD_VERSION="0.8.7"

say() { echo "worker setup: $*" >&2; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
fi

if [[ "$("$cargo_bin/worker-build" --version 2>/dev/null || true)" != *"$WORKER_BUILD_VERSION"* ]]; then
    say "installing worker-build $WORKER_BUILD_VERSION (a few minutes)"
    cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

# The CLI must equal the wasm-bindgen crate in Cargo.lock (cf-worker pins it with =X.Y.Z).
wb_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$root/Cargo.lock")"
if [[ -z "$wb_version" ]]; then
    say "wasm-bindgen is not in Cargo.lock; run: cargo generate-lockfile"
    exit 1
fi
if [[ "$("$cargo_bin/wasm-bindgen" --version 2>/dev/null || true)" != "wasm-bindgen $wb_version"* ]]; then
    say "installing wasm-bindgen-cli $wb_version (a few minutes)"
    # No --locked: the CLI's own lockfile names a crate version the registry here lacks.
    cargo install wasm-bindgen-cli --version "$wb_version" --force
fi

if [[ ! -x "$root/node_modules/.bin/wrangler" || ! -x "$root/node_modules/.bin/wasm-opt" || ! -x "$root/node_modules/.bin/esbuild" ]]; then
    say "npm ci (wrangler, esbuild, binaryen)"
    (cd "$root" && npm ci --no-audit --no-fund)
fi
say "ok: worker-build $("$cargo_bin/worker-build" --version), $("$cargo_bin/wasm-bindgen" --version), wrangler $("$root/node_modules/.bin/wrangler" --version 2>/dev/null | tail -1)"
