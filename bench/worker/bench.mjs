#!/usr/bin/env node
// Benchmark: the Rust Worker (cf-worker/) against the plain JavaScript Worker with the same logic
// (bench/worker/js-worker/), each under `wrangler dev` (workerd, Miniflare's local KV and
// Queues), same origin, same sink, same configuration, loopback only. wrk drives collect mode,
// proxy mode (a matching checkout) and a pass-through page; requests/s and p50/p99 latency.
// Writes the `## Worker` section of BENCHMARKS.md. bench/worker/run.sh builds first.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  freePort, groupCpuMs, request, root, sinkClient, sleep, startOrigin, startSink, startWrangler, stopAll, wranglerGroups, writeWranglerConfig,
} from '../../tests/worker/lib.mjs';

const DURATION = Number(process.env.BENCH_DURATION || 8);
const WARMUP = Number(process.env.BENCH_WARMUP || 2);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 2);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS || 16);
const THREADS = Number(process.env.BENCH_THREADS || 2);
const SCENARIOS = [
  { name: 'collect', script: 'collect.lua', what: 'POST /collect: validate, normalize, SHA-256 (email, phone, event_id), 202; delivery in waitUntil' },
  { name: 'proxy (matching checkout)', script: 'proxy.lua', what: 'POST /bench/checkout forwarded to the origin, response tee parsed, conversion built and delivered in waitUntil' },
  { name: 'proxy (pass-through)', script: 'passthrough.lua', what: 'GET of a page that matches no rule: forwarded only' },
];

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'capi-worker-bench-'));
const logs = path.join(root, 'target/worker-bench');
fs.mkdirSync(logs, { recursive: true });

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
    child.on('exit', (code) => {
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

/** One measurement: warm-up then run, on one or several Workers at the same time. */
async function measure(ws, sc, tag) {
  const before = await Promise.all(ws.map((w) => w.sink.stats().then((st) => st.accepted_events)));
  const warm = await Promise.all(ws.map((w) => wrk(w.base, sc.script, WARMUP, `${w.name}${tag}w`).then(parseWrk)));
  await sleep(1000);
  const cpu0 = ws.map((w) => groupCpuMs(wranglerGroups[w.name]));
  const outs = await Promise.all(ws.map((w) => wrk(w.base, sc.script, DURATION, `${w.name}${tag}`)));
  const after = await Promise.all(ws.map((w) => waitStable(w.sink)));
  // CPU of the Worker's whole wrangler dev (workerd + its Node proxy), delivery included.
  const cpu1 = ws.map((w) => groupCpuMs(wranglerGroups[w.name]));
  return ws.map((w, i) => {
    fs.appendFileSync(path.join(logs, 'wrk.log'), `== ${sc.name} ${w.name} ${tag}\n${outs[i]}\n`);
    const r = parseWrk(outs[i]);
    return { ...r, delivered: after[i] - before[i], total: r.requests + (warm[i].requests || 0), cpu: r.requests ? (cpu1[i] - cpu0[i]) / r.requests : NaN };
  });
}

async function main() {
  const sinkBin = 'debug';
  const origin = await startOrigin(await freePort());
  // Copies: a later build must not reload a Worker mid-run.
  const rustDir = path.join(work, 'rust-bundle');
  fs.mkdirSync(rustDir, { recursive: true });
  for (const f of ['index.js', 'index_bg.wasm']) fs.copyFileSync(path.join(root, 'cf-worker/build', f), path.join(rustDir, f));
  const jsDir = path.join(work, 'js-bundle');
  fs.mkdirSync(jsDir, { recursive: true });
  fs.copyFileSync(path.join(root, 'bench/worker/js-worker/index.js'), path.join(jsDir, 'index.js'));
  const baseDir = path.join(work, 'baseline-bundle');
  fs.mkdirSync(baseDir, { recursive: true });
  fs.copyFileSync(path.join(root, 'bench/worker/baseline/index.js'), path.join(baseDir, 'index.js'));
  const workers = {};
  for (const [name, main] of [['rust', path.join(rustDir, 'index.js')], ['js', path.join(jsDir, 'index.js')], ['baseline', path.join(baseDir, 'index.js')]]) {
    // Each Worker has its own sink, so that events are counted per Worker.
    const sinkUrl = await startSink({ token: 'bench-token', record: path.join(work, `events-${name}.jsonl`), logFile: path.join(logs, `sink-${name}.log`), bin: path.join(root, `target/${sinkBin}/capi`) });
    const config = {
      destination: { format: 'seed', url: `${sinkUrl}/v1/conversions`, allow_http_loopback: true, timeout_ms: 5000, advertiser_id: 4242, data_source_key: 'bench' },
      auth: { bearer_token_env: 'CAPI_TOKEN' },
      identifiers: { default_calling_code: '1', phone_as: 'HashedPhone' },
      consent: { honor_gpc: true },
      limits: { max_body_bytes: 65536, dedup_window_ms: 600000, dedup_capacity: 100000 },
      retry: { max_attempts: 3, max_age_ms: 60000, base_backoff_ms: 500, max_backoff_ms: 2000 },
      rules: [
        {
          name: 'checkout', conversion_type: 'Purchase',
          match: { method: 'POST', path: '/bench/checkout', status: [200], content_type: 'application/json' },
          extract: { order_id: 'response:/order/id', value: 'response:/order/total', currency: 'response:/order/currency', email: 'response:/customer/email', guid: 'cookie:capi_guid', first_party_id: 'response:/customer/id' },
        },
      ],
    };
    const vars = { CAPI_CONFIG: JSON.stringify(config), CAPI_ORIGIN: origin.url, CAPI_DLQ_NAME: 'capi-dlq' };
    const cfg = writeWranglerConfig(path.join(work, name), { name: `capi-bench-${name}`, main, vars, secrets: { CAPI_TOKEN: 'bench-token' } });
    const base = await startWrangler({ name, configPath: cfg, port: await freePort(), logFile: path.join(logs, `wrangler-${name}.log`), readyPath: '/products/1', persistTo: path.join(work, `state-${name}`) });
    workers[name] = { name, base, sink: sinkClient(sinkUrl) };
  }
  // Sanity: both accept a conversion before being measured.
  for (const w of [workers.rust, workers.js]) {
    const r = await request('POST', `${w.base}/collect`, { body: '{"conversion_type":"Lead","email":"a@b.co","order_id":"sanity"}', headers: { 'content-type': 'application/json' } });
    if (r.status !== 202) throw new Error(`${w.name} collect sanity check: ${r.status} ${r.text()}`);
  }
  const sizes = {
    rust: gzipSize([path.join(rustDir, 'index.js'), path.join(rustDir, 'index_bg.wasm')]),
    js: gzipSize([path.join(jsDir, 'index.js')]),
  };

  const results = { solo: {}, h2h: {} };
  const push = (kind, sc, name, r) => {
    ((results[kind][sc.name] ||= {})[name] ||= []).push(r);
    console.log(`${kind.padEnd(4)} ${sc.name.padEnd(26)} ${name.padEnd(8)}: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, CPU ${r.cpu.toFixed(2)} ms/req, errors ${r.errors}, delivered ${r.delivered}/${r.total}`);
  };
  for (const sc of SCENARIOS) {
    for (let round = 0; round < ROUNDS; round += 1) {
      const tag = `${round}${Date.now().toString(36)}`;
      // Head to head: both Workers loaded at the same time share whatever else the machine does.
      const [rr, jr] = await measure([workers.rust, workers.js], sc, `h${tag}`);
      push('h2h', sc, 'rust', rr);
      push('h2h', sc, 'js', jr);
      // Solo, alternating the order, the baseline included.
      const order = round % 2 === 0 ? ['rust', 'js', 'baseline'] : ['baseline', 'js', 'rust'];
      for (const name of order) {
        const [r] = await measure([workers[name]], sc, `s${tag}`);
        push('solo', sc, name, r);
      }
    }
  }
  return { results, sizes, sinkBin };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function section({ results, sizes, sinkBin }) {
  const wv = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
  const wrkVersion = `${wv.stdout}${wv.stderr}`.split('\n')[0].trim().replace(/^wrk /, '').replace(/ Copyright.*$/, '');
  const wranglerVersion = execFileSync(path.join(root, 'node_modules/.bin/wrangler'), ['--version'], { encoding: 'utf8' }).trim().split('\n').pop();
  const label = { rust: 'Rust (wasm)', js: 'JavaScript', baseline: 'baseline (no work)' };
  const row = (sc, kind, w) => {
    const rs = results[kind][sc.name][w];
    const m = (k) => median(rs.map((r) => r[k]));
    const delivered = w === 'baseline' ? '—' : `${m('delivered').toFixed(0)} / ${m('total').toFixed(0)}`;
    return `| ${sc.name} | ${label[w]} | ${m('rps').toFixed(0)} | ${m('p50').toFixed(1)} | ${m('p99').toFixed(1)} | ${m('cpu').toFixed(2)} | ${m('errors').toFixed(0)} | ${delivered} |`;
  };
  const ratio = (kind, sc) => median(results[kind][sc.name].rust.map((r) => r.rps)) / median(results[kind][sc.name].js.map((r) => r.rps));
  const head = ['| scenario | Worker | req/s | p50 ms | p99 ms | CPU ms/req | errors | events delivered / requests |', '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |'];
  const cpuRatio = (sc) => median(results.solo[sc.name].rust.map((r) => r.cpu)) / median(results.solo[sc.name].js.map((r) => r.cpu));
  const lines = [
    '## Worker',
    '',
    `The Rust Worker (cf-worker/, workers-rs over capi-core) against a plain JavaScript Worker with the same logic written for the comparison (bench/worker/js-worker/: Web Crypto SHA-256, the same normalization, event_id, KV dedup, inline first attempt in waitUntil, Queue retries and structured logs), and a baseline Worker that does none of our work. Each runs under its own \`wrangler dev\` (wrangler ${wranglerVersion}: workerd, Miniflare's local KV and Queues) with its own \`capi sink\` (${sinkBin} build), the same Node origin, loopback only, on ${os.cpus().length} cores shared with other builds. wrk ${wrkVersion}, ${THREADS} threads and ${CONNECTIONS} connections per Worker, ${DURATION} s after a ${WARMUP} s warm-up, medians of ${ROUNDS} rounds.`,
    '',
    `**Head to head** (the Rust and the JavaScript Worker loaded at the same time, so both meet the same background load; the fairest ratio on a shared machine):`,
    '',
    ...head,
  ];
  for (const sc of SCENARIOS) for (const w of ['rust', 'js']) lines.push(row(sc, 'h2h', w));
  lines.push('', '**Solo** (one Worker at a time, order alternating per round; the baseline is the ceiling of this setup):', '', ...head);
  for (const sc of SCENARIOS) for (const w of ['rust', 'js', 'baseline']) lines.push(row(sc, 'solo', w));
  lines.push('');
  for (const sc of SCENARIOS) lines.push(`- ${sc.name}: ${sc.what}. Rust/JS throughput: head to head ${ratio('h2h', sc).toFixed(2)}×, solo ${ratio('solo', sc).toFixed(2)}×; CPU per request (solo) ${cpuRatio(sc).toFixed(2)}×.`);
  lines.push('- CPU ms/req: user + system time of the Worker\'s whole `wrangler dev` process group (workerd and wrangler\'s Node proxy, which carries every request and log line) during the run, delivery included, divided by the requests wrk completed. Less sensitive to the machine\'s background load than req/s.');
  lines.push('- baseline (bench/worker/baseline/): collect reads the body and answers 202; everything else is forwarded to the origin. Our work (the waitUntil delivery: KV read and writes, one subrequest to the sink, two log lines) is what separates the collect rows from it.');
  lines.push('- "Events delivered" counts what the Worker\'s sink accepted from the start of the warm-up until it stopped counting, against the requests wrk completed in warm-up and run; requests cut off in flight when wrk stops are still delivered (up to twice the connections more).');
  lines.push(`- Bundle, gzip -9: Rust ${(sizes.rust / 1024).toFixed(1)} KiB (index.js + index_bg.wasm), JavaScript ${(sizes.js / 1024).toFixed(1)} KiB. Goal ≤ 300 KiB.`);
  lines.push('- `wrangler dev` runs the Worker locally behind a Node proxy with an inspector attached (every console.log crosses it): compare rows with each other, not with production Cloudflare. Background load on this machine moves solo figures by ±30 % from run to run.');
  lines.push('');
  lines.push('Command: `cargo xtask bench worker` (or `bash bench/worker/run.sh`); raw wrk output in target/worker-bench/wrk.log. Settings: BENCH_DURATION, BENCH_WARMUP, BENCH_ROUNDS, BENCH_CONNECTIONS, BENCH_THREADS.');
  lines.push('');
  return lines.join('\n');
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
  const text = section(r);
  writeSection(text);
  console.log(`\n${text}`);
} catch (e) {
  console.error(`worker bench failed: ${e.stack || e.message}`);
  code = 1;
} finally {
  await stopAll();
  fs.rmSync(work, { recursive: true, force: true });
}
process.exit(code);
