#!/usr/bin/env node
// `wrangler dev` for the benchmark and the profiler: wrangler's own DevEnv / startWorker API (what
// the `wrangler dev` command runs: its proxy workerd on the public port in front of Miniflare's
// workerd, which runs the Worker with the local KV and Queues), with two differences from the CLI:
// the inspector is optional (the CLI always attaches one, enables its Network domain and relays
// every log line and subrequest event through its proxy workerd to Node, several ms of CPU per
// request on the cores the Worker runs on), and it prints the address of Miniflare's workerd, so
// that load can go to the Worker without crossing the proxy workerd.
//   node bench/worker/dev.mjs <wrangler.toml> <port> [persist-dir] [inspector-port]
// Prints `Worker on <url>` (Miniflare's workerd) and `Ready on <url>` (the public port); stops
// on SIGTERM or SIGINT.
import { unstable_DevEnv as DevEnv } from 'wrangler';

const [config, port, persist, inspectorPort] = process.argv.slice(2);
const devEnv = new DevEnv();
const dispatch = devEnv.dispatch.bind(devEnv);
devEnv.dispatch = (event) => {
  if (event.type === 'reloadComplete') {
    const u = event.proxyData.userWorkerUrl;
    console.log(`Worker on ${u.protocol}//${u.hostname}:${u.port}`);
  }
  dispatch(event);
};
const worker = await devEnv.startWorker({
  config,
  dev: {
    inspector: inspectorPort ? { hostname: '127.0.0.1', port: Number(inspectorPort) } : false,
    server: { hostname: '127.0.0.1', port: Number(port) },
    persist: persist || false,
    watch: false,
    liveReload: false,
    logLevel: 'log',
  },
});
await worker.ready;
console.log(`Ready on ${await worker.url}`);
const stop = async () => {
  try {
    await worker.dispose();
  } finally {
    process.exit(0);
  }
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
