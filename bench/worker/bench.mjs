#!/usr/bin/env node
// Benchmark: the Rust Worker (cf-worker/) against the plain JavaScript Worker with the same logic
// (bench/worker/js-worker/), each under `wrangler dev` (workerd, Miniflare's local KV and
// Queues; started by bench/worker/dev.mjs, by default without the inspector that the CLI always
// attaches), same origin, same sink, same configuration, loopback only. wrk drives collect mode,
// proxy mode (a matching checkout) and a pass-through page, by default straight at the workerd
// that runs the Worker; requests/s and p50/p99 latency, CPU per request by process.
// Writes the `## Worker` section of BENCHMARKS.md. bench/worker/run.sh builds first.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  freePort, groupCpuByRole, request, root, sinkClient, sleep, startOrigin, startSink, startWrangler, stopAll, stopNamed, wranglerDirect, wranglerGroups, writeWranglerConfig,
} from '../../tests/worker/lib.mjs';
import { benchConfig } from './config.mjs';

// Defaults keep the whole run near 10 minutes on 2 cores (5 rounds × 3 scenarios × 4 runs).
const DEFAULTS = { rounds: 6, duration: 5, warmup: 1, connections: 16, threads: 2 };
const DURATION = Number(process.env.BENCH_DURATION || DEFAULTS.duration);
const WARMUP = Number(process.env.BENCH_WARMUP || DEFAULTS.warmup);
const ROUNDS = Number(process.env.BENCH_ROUNDS || DEFAULTS.rounds);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS || DEFAULTS.connections);
const THREADS = Number(process.env.BENCH_THREADS || DEFAULTS.threads);
// BENCH_DIRECT=1 (default): wrk talks to the workerd that runs the Worker (Miniflare's entry
// socket), not through wrangler's proxy workerd on the public port, which costs more CPU per
// request than the Worker itself and logs every request to Node. 0: through the public port.
const DIRECT = process.env.BENCH_DIRECT !== '0';
// BENCH_INSPECTOR=0 (default): wrangler dev without its inspector (bench/worker/dev.mjs). The CLI
// always attaches one and enables its Network domain; wrangler then relays every log line and
// every subrequest event through its proxy workerd to Node, several ms of CPU per request on the
// same cores as the Worker. 1: the `wrangler dev` CLI, inspector attached.
const INSPECTOR = process.env.BENCH_INSPECTOR === '1';
// BENCH_RESTART=1 (default): the Rust and the JavaScript Worker get fresh `wrangler dev`
// instances every round, started in alternating order. 0: one instance each for the whole run.
const RESTART = process.env.BENCH_RESTART !== '0';
const ALL_SCENARIOS = [
  { name: 'collect', script: 'collect.lua', what: 'POST /collect: validate, normalize, SHA-256 (email, phone, event_id), 202; delivery in waitUntil' },
  { name: 'proxy (matching checkout)', script: 'proxy.lua', what: 'POST /bench/checkout forwarded to the origin, response tee parsed, conversion built and delivered in waitUntil' },
  { name: 'proxy (pass-through)', script: 'passthrough.lua', what: 'GET of a page that matches no rule: forwarded only' },
];
// BENCH_SCENARIOS=collect,pass-through (names contain the words) runs a subset while iterating.
const SCENARIOS = process.env.BENCH_SCENARIOS ? ALL_SCENARIOS.filter((s) => process.env.BENCH_SCENARIOS.split(',').some((w) => s.name.includes(w))) : ALL_SCENARIOS;

// Miniflare keeps KV values as files under the state directory: on a disk, each put allocates an
// inode, and ext4's inode search (after many deletes) took ~15 % of one Worker's workerd CPU in
// one perf run and none of the other's. On tmpfs (BENCH_STATE_DIR, default /dev/shm when it
// exists) both Workers pay the same small cost.
const stateBase = process.env.BENCH_STATE_DIR || (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
const work = fs.mkdtempSync(path.join(stateBase, 'capi-worker-bench-'));
const logs = path.join(root, 'target/worker-bench');
fs.mkdirSync(logs, { recursive: true });
// One run's logs: appended to within the run (every round restarts wrangler dev), cleared
// before the next (they grew by ~200 MB over a day of runs).
for (const f of fs.readdirSync(logs)) if (/^(wrangler-|sink-).*\.log$|^wrk\.log$/.test(f)) fs.rmSync(path.join(logs, f), { force: true });

function parseWrk(out) {
  const num = (re) => {
    const m = re.exec(out);
    return m ? Number(m[1]) : NaN;
  };
  const lat = (pct) => {
    const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
    if (!m) return NaN;
    return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
  };
  // A report without its figures must stop the run, not turn a median into NaN.
  if (!/Requests\/sec:/.test(out)) throw new Error(`wrk printed no report:\n${out}`);
  return {
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    p50: lat(50),
    p99: lat(99),
    requests: num(/(\d+) requests in/),
    errors: (num(/Non-2xx or 3xx responses:\s+(\d+)/) || 0) + (/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)?.slice(1).reduce((a, b) => a + Number(b), 0) || 0),
  };
}

// Asynchronous: the test origin runs in this process and must keep answering.
function wrk(base, script, seconds, runId) {
  const args = ['-t', String(THREADS), '-c', String(CONNECTIONS), '-d', `${seconds}s`, '--latency', '-s', path.join(root, 'bench/worker', script), base, '--', runId];
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => { out += c; });
    child.stderr.on('data', (c) => { err += c; });
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    // 'close', not 'exit': 'exit' can come before the last of stdout has been read (one run
    // lost a whole wrk report that way).
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`wrk failed (${code}): ${err || out}`));
    });
  });
}

function gzipSize(files) {
  return files.reduce((n, f) => n + zlib.gzipSync(fs.readFileSync(f), { level: 9 }).length, 0);
}

async function waitStable(sink) {
  // Delivery runs after the answers (waitUntil, queue): wait until the sink stops counting.
  let after = (await sink.stats()).accepted_events;
  for (let stable = 0, i = 0; stable < 3 && i < 40; i += 1) {
    await sleep(500);
    const now = (await sink.stats()).accepted_events;
    stable = now === after ? stable + 1 : 0;
    after = now;
  }
  return after;
}

const ROLES = ['worker', 'proxy', 'node', 'other'];

/** One measurement: warm-up then run, on one or several Workers at the same time. */
async function measure(ws, sc, tag) {
  const before = await Promise.all(ws.map((w) => w.sink.stats().then((st) => st.accepted_events)));
  const warm = await Promise.all(ws.map((w) => wrk(w.base, sc.script, WARMUP, `${w.name}${tag}w`).then(parseWrk)));
  await sleep(500);
  const cpu0 = ws.map((w) => groupCpuByRole(wranglerGroups[w.name]));
  const outs = await Promise.all(ws.map((w) => wrk(w.base, sc.script, DURATION, `${w.name}${tag}`)));
  const after = await Promise.all(ws.map((w) => waitStable(w.sink)));
  // CPU per process of the Worker's wrangler dev, delivery (waitUntil) included.
  const cpu1 = ws.map((w) => groupCpuByRole(wranglerGroups[w.name]));
  return ws.map((w, i) => {
    fs.appendFileSync(path.join(logs, 'wrk.log'), `== ${sc.name} ${w.name} ${tag}\n${outs[i]}\n`);
    const r = parseWrk(outs[i]);
    const cpu = Object.fromEntries(ROLES.map((k) => [k, r.requests ? (cpu1[i][k] - cpu0[i][k]) / r.requests : NaN]));
    cpu.total = ROLES.reduce((a, k) => a + cpu[k], 0);
    return { ...r, delivered: after[i] - before[i], total: r.requests + (warm[i].requests || 0), cpu };
  });
}

const loads = [];
let loadStart;

async function main() {
  loadStart = os.loadavg();
  const sinkBin = 'debug';
  const origin = await startOrigin(await freePort());
  // Copies: a later build must not reload a Worker mid-run.
  const rustDir = path.join(work, 'rust-bundle');
  fs.mkdirSync(rustDir, { recursive: true });
  // BENCH_RUST_DIR / BENCH_JS_DIR put another bundle in a slot (a noise-floor run: the same
  // Worker in both slots); the tables still say Rust and JavaScript.
  const rustSrc = process.env.BENCH_RUST_DIR || path.join(root, 'cf-worker/build');
  for (const f of ['index.js', 'index_bg.wasm']) if (fs.existsSync(path.join(rustSrc, f))) fs.copyFileSync(path.join(rustSrc, f), path.join(rustDir, f));
  const jsDir = path.join(work, 'js-bundle');
  fs.mkdirSync(jsDir, { recursive: true });
  const jsSrc = process.env.BENCH_JS_DIR || path.join(root, 'bench/worker/js-worker');
  for (const f of ['index.js', 'index_bg.wasm']) if (fs.existsSync(path.join(jsSrc, f))) fs.copyFileSync(path.join(jsSrc, f), path.join(jsDir, f));
  const baseDir = path.join(work, 'baseline-bundle');
  fs.mkdirSync(baseDir, { recursive: true });
  fs.copyFileSync(path.join(root, 'bench/worker/baseline/index.js'), path.join(baseDir, 'index.js'));
  const workers = {};
  const mains = { rust: path.join(rustDir, 'index.js'), js: path.join(jsDir, 'index.js'), baseline: path.join(baseDir, 'index.js') };
  const configs = {};
  for (const name of Object.keys(mains)) {
    // Each Worker has its own sink, so that events are counted per Worker.
    const sinkUrl = await startSink({ token: 'bench-token', record: path.join(work, `events-${name}.jsonl`), logFile: path.join(logs, `sink-${name}.log`), bin: path.join(root, `target/${sinkBin}/capi`) });
    const vars = { CAPI_CONFIG: JSON.stringify(benchConfig(sinkUrl)), CAPI_ORIGIN: origin.url, CAPI_DLQ_NAME: 'capi-dlq' };
    configs[name] = writeWranglerConfig(path.join(work, name), { name: `capi-bench-${name}`, main: mains[name], vars, secrets: { CAPI_TOKEN: 'bench-token' } });
    workers[name] = { name, sink: sinkClient(sinkUrl) };
  }
  const start = async (name) => {
    const base = await startWrangler({ name, configPath: configs[name], port: await freePort(), logFile: path.join(logs, `wrangler-${name}.log`), readyPath: '/products/1', persistTo: path.join(work, `state-${name}`), api: true, inspector: INSPECTOR });
    const direct = DIRECT ? wranglerDirect[name] : base;
    if (!direct) throw new Error(`${name}: the address of its workerd is unknown`);
    workers[name].base = direct;
  };
  for (const name of ['rust', 'js', 'baseline']) await start(name);
  // Sanity: both accept a conversion before being measured.
  for (const w of [workers.rust, workers.js]) {
    const r = await request('POST', `${w.base}/collect`, { body: '{"conversion_type":"Lead","email":"a@b.co","order_id":"sanity"}', headers: { 'content-type': 'application/json' } });
    if (r.status !== 202) throw new Error(`${w.name} collect sanity check: ${r.status} ${r.text()}`);
  }
  const sizes = {
    rust: gzipSize(['index.js', 'index_bg.wasm'].map((f) => path.join(rustDir, f)).filter((f) => fs.existsSync(f))),
    js: gzipSize(['index.js', 'index_bg.wasm'].map((f) => path.join(jsDir, f)).filter((f) => fs.existsSync(f))),
  };

  const results = { solo: {}, h2h: {} };
  const push = (kind, sc, name, r) => {
    ((results[kind][sc.name] ||= {})[name] ||= []).push(r);
    console.log(`${kind.padEnd(4)} ${sc.name.padEnd(26)} ${name.padEnd(8)}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, CPU ms/req workerd ${r.cpu.worker.toFixed(2)} + proxy ${r.cpu.proxy.toFixed(2)} + node ${r.cpu.node.toFixed(2)} = ${r.cpu.total.toFixed(2)}, errors ${r.errors}, delivered ${r.delivered}/${r.total}`);
  };
  const started = Date.now();
  // Rounds outside, scenarios inside: a scenario's rounds are spread over the whole run, so a
  // burst of background load weighs on every scenario's median alike.
  for (let round = 0; round < ROUNDS; round += 1) {
    if (round > 0 && RESTART) {
      // Fresh wrangler dev instances for the two Workers every round, started in alternating
      // order: with the same JavaScript Worker in both slots, the first-started instance came out
      // 6-11 % behind head to head over a whole run, whichever wrk started first.
      await stopNamed('wrangler:rust');
      await stopNamed('wrangler:js');
      for (const name of round % 2 ? ['js', 'rust'] : ['rust', 'js']) await start(name);
    }
    if (round === 0 || RESTART) {
      // JIT warm-up of new isolates on every path measured, outside the measurements.
      for (const sc of SCENARIOS) for (const name of ['rust', 'js']) await wrk(workers[name].base, sc.script, WARMUP, `${name}r${round}`);
    }
    for (const sc of SCENARIOS) {
      const tag = `${round}${Date.now().toString(36)}`;
      // Head to head: both Workers loaded at the same time share whatever else the machine does.
      // Which wrk starts first alternates per round (a same-code run came out behind in the
      // first slot).
      const pair = round % 2 === 0 ? [workers.rust, workers.js] : [workers.js, workers.rust];
      const both = await measure(pair, sc, `h${tag}`);
      const [rr, jr] = round % 2 === 0 ? both : [both[1], both[0]];
      push('h2h', sc, 'rust', rr);
      push('h2h', sc, 'js', jr);
      // Solo, the order alternating per round, the baseline included.
      const order = round % 2 === 0 ? ['rust', 'js', 'baseline'] : ['baseline', 'js', 'rust'];
      for (const name of order) {
        const [r] = await measure([workers[name]], sc, `s${tag}`);
        push('solo', sc, name, r);
      }
    }
    console.log(`round ${round + 1}/${ROUNDS} done at ${((Date.now() - started) / 1000).toFixed(0)} s, load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    loads.push(os.loadavg()[0]);
  }
  const seconds = (Date.now() - started) / 1000;
  return { results, sizes, sinkBin, seconds, loads, loadStart };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '—');

function section({ results, sizes, sinkBin, seconds, loads, loadStart }) {
  const wv = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  const wrkVersion = `${wv.stdout}${wv.stderr}`.split('\n')[0].trim().replace(/^wrk /, '').replace(/ Copyright.*$/, '');
  const wranglerVersion = execFileSync(path.join(root, 'node_modules/.bin/wrangler'), ['--version'], { encoding: 'utf8' }).trim().split('\n').pop();
  const label = { rust: 'Rust (wasm)', js: 'JavaScript', baseline: 'baseline (no work)' };
  const runs = (kind, sc, w) => results[kind][sc.name][w];
  const med = (kind, sc, w, get) => median(runs(kind, sc, w).map(get));
  const row = (sc, kind, w) => {
    const m = (get) => med(kind, sc, w, get);
    const delivered = w === 'baseline' ? '—' : `${fmt(m((r) => r.delivered), 0)} / ${fmt(m((r) => r.total), 0)}`;
    return `| ${sc.name} | ${label[w]} | ${fmt(m((r) => r.rps), 0)} | ${fmt(m((r) => r.p50), 1)} | ${fmt(m((r) => r.p99), 1)} | **${fmt(m((r) => r.cpu.worker))}** | ${fmt(m((r) => r.cpu.proxy))} | ${fmt(m((r) => r.cpu.node))} | ${fmt(m((r) => r.cpu.total))} | ${fmt(m((r) => r.errors), 0)} | ${delivered} |`;
  };
  // Per-round ratios (the two runs of a round are next to each other in time, or simultaneous).
  const ratios = (kind, sc, get) => runs(kind, sc, 'rust').map((r, i) => get(r) / get(runs(kind, sc, 'js')[i]));
  const spread = (xs) => `${fmt(median(xs))}× (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`;
  const rps = (r) => r.rps;
  const wcpu = (r) => r.cpu.worker;
  const head = [
    '| scenario | Worker | req/s | p50 ms | p99 ms | CPU ms/req: workerd running the Worker | workerd proxy | Node (wrangler) | all | errors | events delivered / requests |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const loadText = `load average (1 min) ${loadStart.map((x) => x.toFixed(2)).join(' / ')} (1/5/15 min) at the start, ${loads.map((x) => x.toFixed(1)).join(', ')} at the end of each round`;
  const lines = [
    '## Worker',
    '',
    `The Rust Worker (cf-worker/, workers-rs over capi-core) against a plain JavaScript Worker with the same logic written for the comparison (bench/worker/js-worker/: Web Crypto SHA-256, the same normalization, event_id, KV dedup, inline first attempt in waitUntil, Queue retries and structured logs), and a baseline Worker that does none of our work. Each runs under its own \`wrangler dev\` (wrangler ${wranglerVersion}: workerd, Miniflare's local KV and Queues; ${INSPECTOR ? 'the CLI, with its inspector attached' : 'started through wrangler\'s startWorker API with the inspector off, bench/worker/dev.mjs: the CLI always attaches one, enables its Network domain and relays every log line and subrequest event through its proxy workerd to Node, several ms of CPU per request on the same cores; BENCH_INSPECTOR=1 uses the CLI'}) with its own \`capi sink\` (${sinkBin} build), the same Node origin, loopback only, on ${os.cpus().length} cores shared with other builds. ${DIRECT ? 'wrk talks to the workerd that runs each Worker (Miniflare\'s entry socket), not through wrangler\'s proxy workerd on the public port (which costs more CPU per request than the Worker and logs every request to Node; BENCH_DIRECT=0 goes through it)' : 'wrk talks to wrangler\'s public port (its proxy workerd, which logs every request to Node)'}. wrk ${wrkVersion}, ${THREADS} threads and ${CONNECTIONS} connections per Worker, ${DURATION} s after a ${WARMUP} s warm-up; ${ROUNDS} rounds, each running every scenario head to head then solo (order alternating)${RESTART ? ', the Rust and the JavaScript Worker on fresh `wrangler dev` instances each round, started in alternating order (then warmed up on every scenario)' : ''}; tables show medians over the rounds. Run ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${fmt(seconds / 60, 1)} min, ${loadText}.`,
    '',
    `CPU per request is split by process (user + system time from /proc/<pid>/stat over the run and until delivery settles, divided by the requests wrk completed; 10 ms ticks). **workerd running the Worker** is where the Worker's code runs (with Miniflare's KV and Queues simulators and the outbound fetches); ${DIRECT ? 'the workerd proxy is off the request path' : 'the workerd proxy carries every request'}; Node (wrangler) receives every log line${INSPECTOR ? ' and, through the proxy workerd, every inspector event (log lines, subrequests)' : ' (workerd\'s stdout)'}${DIRECT ? '' : ' and logs every request'}; both cost about the same whatever the Worker does.`,
    '',
    '**Rust / JavaScript, per round** (median over the rounds, min–max in brackets; throughput above 1 and CPU below 1 favour Rust):',
    '',
    '| scenario | req/s, head to head | req/s, solo | workerd CPU/req, head to head | workerd CPU/req, solo | Rust ≥ JS? |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
  ];
  const verdicts = [];
  for (const sc of SCENARIOS) {
    const h = ratios('h2h', sc, rps);
    const so = ratios('solo', sc, rps);
    const hc = ratios('h2h', sc, wcpu);
    const sc2 = ratios('solo', sc, wcpu);
    // Judged on the medians as printed (two decimals).
    const shown = (x) => Number(fmt(x));
    const yes = (x) => (shown(x) >= 1 ? 'yes' : 'no');
    const verdict = `throughput ${yes(median(h))} head to head, ${yes(median(so))} solo; workerd CPU ${shown(median(sc2)) <= 1 ? 'lower or equal' : 'higher'} (solo)`;
    verdicts.push(verdict);
    lines.push(`| ${sc.name} | ${spread(h)} | ${spread(so)} | ${spread(hc)} | ${spread(sc2)} | ${verdict} |`);
  }
  lines.push('', '**Head to head** (the Rust and the JavaScript Worker loaded at the same time, so both meet the same background load):', '', ...head);
  for (const sc of SCENARIOS) for (const w of ['rust', 'js']) lines.push(row(sc, 'h2h', w));
  lines.push('', '**Solo** (one Worker at a time; the baseline is the ceiling of this setup):', '', ...head);
  for (const sc of SCENARIOS) for (const w of ['rust', 'js', 'baseline']) lines.push(row(sc, 'solo', w));
  lines.push('');
  for (const sc of SCENARIOS) {
    const over = (w) => fmt(med('solo', sc, w, wcpu) - med('solo', sc, 'baseline', wcpu));
    const ahead = (xs) => `Rust ahead in ${xs.filter((x) => Number(fmt(x)) >= 1).length} of ${xs.length}`;
    lines.push(`- ${sc.name}: ${sc.what}. Per-round Rust/JS req/s, head to head: ${ratios('h2h', sc, rps).map((x) => fmt(x)).join(', ')} (${ahead(ratios('h2h', sc, rps))}); solo: ${ratios('solo', sc, rps).map((x) => fmt(x)).join(', ')} (${ahead(ratios('solo', sc, rps))}). workerd CPU over the baseline's (solo medians): Rust ${over('rust')} ms/req, JavaScript ${over('js')} ms/req.`);
  }
  lines.push('- baseline (bench/worker/baseline/): collect reads the body and answers 202; everything else is forwarded to the origin. Our work (the waitUntil delivery: KV read and writes, one subrequest to the sink, two log lines) is what separates the collect rows from it.');
  lines.push('- "Events delivered" counts what the Worker\'s sink accepted from the start of the warm-up until it stopped counting, against the requests wrk completed in warm-up and run; requests cut off in flight when wrk stops are still delivered (up to twice the connections more).');
  lines.push(`- Bundle, gzip -9: Rust ${(sizes.rust / 1024).toFixed(1)} KiB (index.js + index_bg.wasm), JavaScript ${(sizes.js / 1024).toFixed(1)} KiB. Goal ≤ 300 KiB.`);
  lines.push('- `wrangler dev` runs the Worker locally (Miniflare\'s simulators for KV and Queues, Node next to it): compare rows with each other, not with production Cloudflare. Background load moves single runs by ±30 %: read the per-round medians and spreads, not one run.');
  lines.push('');
  lines.push(`Command: \`cargo xtask bench worker\` (or \`bash bench/worker/run.sh\`); raw wrk output in target/worker-bench/wrk.log. Settings (environment, defaults): BENCH_SCENARIOS (all), BENCH_WRITE=1 (0: print only), BENCH_DIRECT=1, BENCH_INSPECTOR=0, BENCH_RESTART=1 (0: one instance per Worker for the whole run), BENCH_RUST_DIR / BENCH_JS_DIR (another bundle in a slot, for a noise-floor run), BENCH_ROUNDS=${DEFAULTS.rounds}, BENCH_DURATION=${DEFAULTS.duration} (s), BENCH_WARMUP=${DEFAULTS.warmup} (s), BENCH_CONNECTIONS=${DEFAULTS.connections}, BENCH_THREADS=${DEFAULTS.threads}; with the defaults the run takes about ${fmt(seconds / 60, 0)} minutes plus the build.`);
  lines.push('');
  return { text: lines.join('\n'), verdicts };
}

function writeSection(text) {
  const file = path.join(root, 'BENCHMARKS.md');
  let doc = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n';
  const start = doc.search(/^## Worker\s*$/m);
  if (start >= 0) {
    const rest = doc.slice(start + 1);
    const next = rest.search(/^## /m);
    const end = next >= 0 ? start + 1 + next : doc.length;
    doc = doc.slice(0, start) + text + (next >= 0 ? '\n' : '') + doc.slice(end);
  } else {
    doc = `${doc.replace(/\n*$/, '\n\n')}${text}`;
  }
  fs.writeFileSync(file, doc.replace(/\n{3,}/g, '\n\n'));
}

let code = 0;
try {
  const r = await main();
  const { text } = section(r);
  if (process.env.BENCH_WRITE !== '0') writeSection(text);
  console.log(`\n${text}`);
} catch (e) {
  console.error(`worker bench failed: ${e.stack || e.message}`);
  code = 1;
} finally {
  await stopAll();
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(code);
