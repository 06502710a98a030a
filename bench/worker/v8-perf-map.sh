#!/usr/bin/env bash
# Development aid for bench/worker/perf-ab.mjs: lets perf name the JIT frames (JS and wasm
# functions) of the workerd that runs a Worker. V8 writes /tmp/perf-<pid>.map when started with
# --perf-basic-prof, but wrangler and Miniflare offer no way to pass V8 flags; workerd takes them
# only from its config (`v8Flags`), which Miniflare builds. `on` patches the repo's
# node_modules/miniflare (an ignored folder) so that CAPI_V8_FLAGS (comma-separated) lands in
# that config; `off` restores the file. Not used by any test or by the benchmark itself.
#   bash bench/worker/v8-perf-map.sh on|off
#   CAPI_V8_FLAGS=--perf-basic-prof node bench/worker/perf-ab.mjs A/index.js B/index.js proxy 10 6
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
f="$root/node_modules/miniflare/dist/src/index.js"
line='  if (process.env.CAPI_V8_FLAGS) config.v8Flags = process.env.CAPI_V8_FLAGS.split(",");'
case "${1:-}" in
on)
    grep -q "CAPI_V8_FLAGS" "$f" && { echo "already on"; exit 0; }
    grep -q "^function serializeConfig(config) {$" "$f" || { echo "miniflare's serializeConfig not found: another Miniflare version?" >&2; exit 1; }
    cp "$f" "$f.orig"
    awk -v add="$line" '{ print } /^function serializeConfig\(config\) \{$/ { print add }' "$f.orig" >"$f"
    echo "on: CAPI_V8_FLAGS now reaches workerd's v8Flags"
    ;;
off)
    if [[ -f "$f.orig" ]]; then mv "$f.orig" "$f"; else grep -v "CAPI_V8_FLAGS" "$f" >"$f.tmp" && mv "$f.tmp" "$f"; fi
    echo "off"
    ;;
*)
    echo "usage: $0 on|off" >&2
    exit 2
    ;;
esac
