#!/usr/bin/env node
// CPU profile of one Worker's isolate under load (a development aid for the benchmark, not part
// of it): starts the origin, a sink and `wrangler dev` as bench.mjs does, drives one scenario
// with wrk, records a V8 CPU profile through wrangler's inspector, and prints the isolate's
// sampled CPU per request and the functions with the most self time.
//   node bench/worker/profile.mjs rust|js|baseline collect|proxy|passthrough [seconds] [out.cpuprofile]
// bench/worker/run.sh's build must have run (cf-worker/build/, target/debug/capi).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import {
  freePort, request, root, startOrigin, startSink, startWrangler, stopAll, wranglerDirect, wranglerInspectors, writeWranglerConfig,
} from '../../tests/worker/lib.mjs';
import { benchConfig } from './config.mjs';
import { wrk } from './load.mjs';

const [which = 'rust', scenario = 'passthrough', secondsArg = '10', outFile] = process.argv.slice(2);
const seconds = Number(secondsArg);
const mains = {
  rust: 'cf-worker/build/index.js',
  js: 'bench/worker/js-worker/index.js',
  baseline: 'bench/worker/baseline/index.js',
};


function session(url) {
  const ws = new WebSocket(url);
  let id = 0;
  const waiting = new Map();
  ws.on('message', (m) => {
    const msg = JSON.parse(m.toString());
    if (msg.id && waiting.has(msg.id)) {
      waiting.get(msg.id)(msg);
      waiting.delete(msg.id);
    }
  });
  const opened = new Promise((resolve, reject) => { ws.on('open', resolve); ws.on('error', reject); });
  return {
    opened,
    send(method, params = {}) {
      id += 1;
      ws.send(JSON.stringify({ id, method, params }));
      return new Promise((resolve) => waiting.set(id, resolve));
    },
    close: () => ws.close(),
  };
}

async function main() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'capi-worker-profile-'));
  const origin = await startOrigin(await freePort());
  const sinkUrl = await startSink({ token: 'bench-token', record: path.join(work, 'events.jsonl'), logFile: path.join(work, 'sink.log') });
  const config = benchConfig(sinkUrl);
  const vars = { CAPI_CONFIG: JSON.stringify(config), CAPI_ORIGIN: origin.url, CAPI_DLQ_NAME: 'capi-dlq' };
  const cfg = writeWranglerConfig(path.join(work, which), { name: `capi-profile-${which}`, main: path.join(root, mains[which]), vars, secrets: { CAPI_TOKEN: 'bench-token' } });
  const publicBase = await startWrangler({ name: which, configPath: cfg, port: await freePort(), logFile: path.join(work, 'wrangler.log'), readyPath: '/products/1', persistTo: path.join(work, 'state'), api: true });
  // As bench.mjs: straight to the Worker's own workerd unless BENCH_DIRECT=0.
  const base = process.env.BENCH_DIRECT === '0' ? publicBase : wranglerDirect[which];
  const inspector = wranglerInspectors[which];
  await wrk(base, scenario, 2);
  const targets = (await request('GET', `http://127.0.0.1:${inspector}/json`)).json();
  const s = session(targets[0].webSocketDebuggerUrl);
  await s.opened;
  await s.send('Profiler.enable');
  await s.send('Profiler.setSamplingInterval', { interval: 200 });
  await s.send('Profiler.start');
  const out = await wrk(base, scenario, seconds);
  const { result } = await s.send('Profiler.stop');
  s.close();
  const requests = Number(/(\d+) requests in/.exec(out)[1]);
  const p = result.profile;
  if (outFile) {
    fs.writeFileSync(outFile, JSON.stringify(p));
    // The bundle wrangler ran (the profile's line numbers point into it).
    const tmp = path.join(work, which, '.wrangler/tmp');
    for (const d of fs.existsSync(tmp) ? fs.readdirSync(tmp) : []) {
      const f = path.join(tmp, d, 'index.js');
      if (fs.existsSync(f)) fs.copyFileSync(f, `${outFile}.js`);
    }
  }
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const counts = new Map();
  for (const sid of p.samples) counts.set(sid, (counts.get(sid) || 0) + 1);
  const dt = (p.endTime - p.startTime) / p.samples.length / 1000; // ms per sample
  const self = new Map();
  let busy = 0;
  for (const [sid, c] of counts) {
    const f = byId.get(sid).callFrame;
    const name = `${f.functionName || '(anonymous)'} ${f.url ? path.basename(f.url) : ''}`.trim();
    self.set(name, (self.get(name) || 0) + c);
    if (f.functionName !== '(idle)') busy += c;
  }
  console.log(`${which} ${scenario}: ${requests} requests in ${seconds} s, ${(requests / seconds).toFixed(0)} req/s; isolate busy ${(busy * dt).toFixed(0)} ms = ${(busy * dt / requests * 1000).toFixed(0)} µs/request (sampled)`);
  for (const [name, c] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
    console.log(`${(c * dt / requests * 1000).toFixed(1).padStart(8)} µs/req  ${(100 * c / p.samples.length).toFixed(1).padStart(5)} %  ${name}`);
  }
  fs.rmSync(work, { recursive: true, force: true });
}

try {
  await main();
} catch (e) {
  console.error(e.stack || e.message);
  process.exitCode = 1;
} finally {
  await stopAll();
}
process.exit();
