#!/usr/bin/env node
// perf A/B of two Worker bundles (a development aid for the benchmark, not part of it): starts
// each under its own `wrangler dev` (as bench.mjs does: own sink, the same origin, state on
// /dev/shm), then alternates: wrk on one Worker while `perf record -g` samples the workerd that
// runs it, then the other. Prints requests per run and the perf.data files; read them with
// `perf report --no-children --sort dso,sym` and divide by the requests. perf's view covers what
// V8's profiler does not: workerd's own C++ (its APIs, KV, I/O), the kernel, V8's runtime.
// JIT code (JS and wasm) shows as [JIT] without names, unless bench/worker/v8-perf-map.sh is on
// and CAPI_V8_FLAGS=--perf-basic-prof is set. bench/worker/perf-summary.mjs sums the files by
// category per request. Each line also carries the workerd's CPU per request from /proc (user +
// system, all threads, over the round), which perf does not perturb.
//   node bench/worker/perf-ab.mjs A/index.js B/index.js [collect|proxy|passthrough] [s] [rounds]
// PERF_PREFIX (default /tmp/capi-perf-ab) names the perf.data files. PERF_FREQ (default 499)
// is the sampling rate, PERF_CALLGRAPH=1 adds -g (1999 Hz with call graphs slows the sampled
// workerd by ~15 %). The inspector is off, as in bench.mjs: with it on, every console.log went
// through it (~1.5 ms more per checkout for either Worker), and the Rust/JS difference per
// checkout read +1-3 % instead of the +7 % that /proc and the bench see. Both Workers restart
// before every round, in alternating order (PERF_RESTART=0: one instance each). Needs perf
// and wrk.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, root, startOrigin, startSink, startWrangler, stopAll, stopNamed, wranglerDirect, wranglerGroups, writeWranglerConfig } from '../../tests/worker/lib.mjs';
import { benchConfig } from './config.mjs';
import { wrk } from './load.mjs';

const [aMain, bMain, scenario = 'proxy', secondsArg = '8', roundsArg = '3'] = process.argv.slice(2);
const seconds = Number(secondsArg);
function workerdPid(pg) {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(f[2]) !== pg || !st.includes('(workerd)')) continue;
      const args = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (args.some((a) => /^--socket-addr=entry=.*:0$/.test(a))) return d;
    } catch { /* gone */ }
  }
  return null;
}
// User + system CPU of a process, all threads (10 ms ticks).
function processCpuMs(pid) {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}
const work = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'capi-perf-ab-'));
try {
  const origin = await startOrigin(await freePort());
  const ws = {};
  const configs = {};
  for (const [name, main] of [['a', aMain], ['b', bMain]]) {
    const sinkUrl = await startSink({ token: 'bench-token', record: path.join(work, `events-${name}.jsonl`), logFile: path.join(work, `sink-${name}.log`), bin: path.join(root, 'target/debug/capi') });
    const vars = { CAPI_CONFIG: JSON.stringify(benchConfig(sinkUrl)), CAPI_ORIGIN: origin.url, CAPI_DLQ_NAME: 'capi-dlq' };
    configs[name] = writeWranglerConfig(path.join(work, name), { name: `capi-perf-${name}`, main: path.resolve(main), vars, secrets: { CAPI_TOKEN: 'bench-token' } });
  }
  // Both Workers on fresh wrangler dev instances, started in the given order and warmed up.
  const start = async (order) => {
    for (const name of order) await stopNamed(`wrangler:${name}`);
    for (const name of order) {
      await startWrangler({ name, configPath: configs[name], port: await freePort(), logFile: path.join(work, `wrangler-${name}.log`), readyPath: '/products/1', persistTo: path.join(work, `state-${name}`), api: true, inspector: false });
      ws[name] = { base: wranglerDirect[name], pid: workerdPid(wranglerGroups[name]) };
    }
    for (const name of order) await wrk(ws[name].base, scenario, 3);
  };
  await start(['a', 'b']);
  for (let r = 0; r < Number(roundsArg); r += 1) {
    const order = r % 2 ? ['b', 'a'] : ['a', 'b'];
    // With one instance each for the whole run, the first-started one read 80-100 us per
    // checkout higher whichever build it ran (as bench.mjs had seen): so each round restarts
    // both, in alternating order. PERF_RESTART=0 keeps one instance each.
    if (r > 0 && process.env.PERF_RESTART !== '0') await start(order);
    for (const name of order) {
      const out = `${process.env.PERF_PREFIX || '/tmp/capi-perf-ab'}-${name}-${r}.data`;
      const args = ['record', '-q', '-F', process.env.PERF_FREQ || '499', ...(process.env.PERF_CALLGRAPH === '1' ? ['-g'] : [])];
      const cpu0 = processCpuMs(ws[name].pid);
      const perf = spawn('perf', [...args, '-o', out, '-p', ws[name].pid, '--', 'sleep', String(seconds)], { stdio: 'ignore' });
      const o = await wrk(ws[name].base, scenario, seconds);
      await new Promise((res) => perf.on('exit', res));
      const n = Number(/(\d+) requests in/.exec(o)[1]);
      const cpuUs = ((processCpuMs(ws[name].pid) - cpu0) * 1000) / n;
      console.log(`${name} ${r} ${n} ${out} ${cpuUs.toFixed(0)}`);
      await new Promise((res) => setTimeout(res, 1500));
    }
  }
} finally {
  await stopAll();
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit();
