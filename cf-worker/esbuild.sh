#!/usr/bin/env bash
# The esbuild that cf-worker/build.sh gives worker-build (ESBUILD_BIN). worker-build 0.8.7 calls
# esbuild once to bundle its generated ./shim.js with wasm-bindgen's ./index.js; this puts
# cf-worker/entry.js in the shim's place first (why: see entry.js), then runs the real esbuild
# with worker-build's own arguments. Any other call (e.g. --version) passes straight through.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
real="$here/../node_modules/.bin/esbuild"
for arg in "$@"; do
    if [[ "$arg" == "./shim.js" ]]; then
        if [[ ! -f shim.js || ! -f index.js ]] || ! grep -q "__worker_init_state" index.js; then
            echo "cf-worker/esbuild.sh: worker-build's staging directory is not as expected (shim.js, index.js with __worker_init_state); was worker-build upgraded?" >&2
            exit 1
        fi
        cp "$here/entry.js" shim.js
    fi
done
exec "$real" "$@"
