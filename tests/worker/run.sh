#!/usr/bin/env bash
# The Cloudflare Worker's end-to-end tests (what `cargo xtask test worker` runs): installs what
# is missing (setup.sh), builds the Worker and the sink, then runs tests/worker/run.mjs, which
# starts the sink, a test origin and `wrangler dev` on free loopback ports, runs every test,
# stops every process it started (even on failure) and prints `N passed, M failed` last.
# Logs are kept in target/worker-test/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bash tests/worker/setup.sh
echo "worker tests: building the Worker (worker-build --release)" >&2
bash cf-worker/build.sh >target/worker-build.log 2>&1 || { tail -40 target/worker-build.log >&2; echo "0 passed, 1 failed"; exit 1; }
echo "worker tests: building capi (the sink)" >&2
cargo build -p capi-cli --quiet
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false CLOUDFLARE_CF_FETCH_ENABLED=false
exec node tests/worker/run.mjs "$@"
