#!/usr/bin/env bash
# Worker benchmark (what `cargo xtask bench worker` runs): the Rust Worker vs the plain JS Worker
# under wrangler dev, collect and proxy modes, wrk from Debian. Writes BENCHMARKS.md's
# `## Worker` section. Every process it starts is stopped at the end.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash tests/worker/setup.sh
if ! command -v wrk >/dev/null; then
    echo "worker bench: installing wrk (apt)" >&2
    (apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; })
fi
mkdir -p target
echo "worker bench: building the Worker" >&2
bash cf-worker/build.sh >target/worker-build.log 2>&1 || { tail -40 target/worker-build.log >&2; exit 1; }
echo "worker bench: building capi (the sink)" >&2
cargo build -p capi-cli --quiet
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false CLOUDFLARE_CF_FETCH_ENABLED=false
exec node bench/worker/bench.mjs "$@"
