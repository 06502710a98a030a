// Shared plumbing for the Worker tests and benchmark: processes that are always stopped, free
// loopback ports, a raw HTTP client, the test origin, the sink, and `wrangler dev`.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

// ------------------------------------------------------------------------------------------
// Processes: each in its own process group, all stopped on exit, failure or signal.

const procs = [];

export function spawnLogged(name, cmd, args, { cwd = root, env = process.env, logFile, onLine } = {}) {
  const log = fs.createWriteStream(logFile, { flags: 'a' });
  const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const entry = { name, child, exited: false };
  procs.push(entry);
  child.on('exit', () => { entry.exited = true; });
  let pending = '';
  const feed = (chunk) => {
    log.write(chunk);
    if (!onLine) return;
    pending += chunk.toString('utf8');
    let i;
    while ((i = pending.indexOf('\n')) >= 0) {
      onLine(pending.slice(0, i));
      pending = pending.slice(i + 1);
    }
  };
  child.stdout.on('data', feed);
  child.stderr.on('data', feed);
  return child;
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    try { child.kill(signal); } catch { /* already gone */ }
  }
}

async function stop(live) {
  for (const p of live) killGroup(p.child, 'SIGTERM');
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && live.some((p) => !p.exited)) await sleep(100);
  for (const p of live) if (!p.exited) killGroup(p.child, 'SIGKILL');
}

export async function stopAll() {
  await stop(procs.filter((p) => !p.exited));
  procs.length = 0;
}

/** Stops the processes started under one name (spawnLogged's), e.g. `wrangler:rust`. */
export async function stopNamed(name) {
  await stop(procs.filter((p) => p.name === name && !p.exited));
  for (let i = procs.length - 1; i >= 0; i -= 1) if (procs[i].name === name) procs.splice(i, 1);
}

process.on('exit', () => {
  for (const p of procs) if (!p.exited) killGroup(p.child, 'SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => {
    await stopAll();
    process.exit(130);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: every header as sent, multiple Set-Cookie, the status text, timing.

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

export function request(method, url, { headers = {}, body, chunked = false, timeoutMs = 15000, fresh = false } = {}) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const u = new URL(url);
    const h = { ...headers };
    if (body !== undefined && !chunked) h['content-length'] = Buffer.byteLength(body);
    const req = http.request({ method, host: u.hostname, port: u.port, path: u.pathname + u.search, headers: h, agent: fresh ? false : agent }, (res) => {
      const chunks = [];
      const firstByte = performance.now() - started;
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const raw = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) raw.push([res.rawHeaders[i].toLowerCase(), res.rawHeaders[i + 1]]);
        const bodyBuf = Buffer.concat(chunks);
        resolve({
          status: res.statusCode,
          statusText: res.statusMessage,
          headers: raw,
          header: (n) => raw.find(([k]) => k === n)?.[1],
          all: (n) => raw.filter(([k]) => k === n).map(([, v]) => v),
          body: bodyBuf,
          text: () => bodyBuf.toString('utf8'),
          json: () => JSON.parse(bodyBuf.toString('utf8')),
          firstByteMs: firstByte,
          ms: performance.now() - started,
        });
      });
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    if (body !== undefined) {
      if (chunked) {
        const buf = Buffer.from(body);
        const step = 1024;
        for (let i = 0; i < buf.length; i += step) req.write(buf.subarray(i, i + step));
      } else {
        req.write(body);
      }
    }
    req.end();
  });
}

export async function waitFor(what, fn, { timeoutMs = 30000, everyMs = 200 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${last.message})` : ''}`);
}

// ------------------------------------------------------------------------------------------
// The test origin: a small shop whose answers the Worker must pass through untouched.

export function sha256hex(s) {
  return crypto.createHash('sha256').update(s).digest('hex');
}

export const BINARY = crypto.randomBytes(96 * 1024);

export function startOrigin(port) {
  const seen = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      const url = new URL(req.url, 'http://origin');
      const common = { 'x-origin-test': 'kept', 'cache-control': 'private, max-age=7' };
      if (req.method === 'POST' && url.pathname === '/api/checkout') {
        const order = JSON.parse(body.toString('utf8') || '{}');
        const payload = JSON.stringify({
          order: { id: order.order_id || 'ORD-1', total: order.total ?? 59.9, currency: order.currency || 'EUR' },
          customer: { email: order.email || 'Jane.Doe@Example.com', phone: order.phone || '+1 (415) 555-2671', id: 'cust_42' },
        });
        res.writeHead(201, 'Created Here', {
          ...common,
          'content-type': 'application/json; charset=utf-8',
          'set-cookie': ['session=abc123; Path=/; HttpOnly', 'theme=dark; Path=/'],
          'x-request-body-bytes': String(body.length),
        });
        res.end(payload);
      } else if (req.method === 'POST' && url.pathname.startsWith('/forms/')) {
        res.writeHead(200, { ...common, 'content-type': 'text/html; charset=utf-8', 'x-request-body-sha256': sha256hex(body) });
        res.end('<p>thanks</p>');
      } else if (url.pathname === '/redirect') {
        res.writeHead(302, { ...common, location: '/landing?from=redirect' });
        res.end();
      } else if (url.pathname === '/binary') {
        res.writeHead(200, { ...common, 'content-type': 'application/octet-stream' });
        res.end(BINARY);
      } else if (url.pathname === '/bench/checkout') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"order":{"id":"B-' + Math.floor(Math.random() * 1e12) + '","total":19.99,"currency":"USD"},"customer":{"email":"bench@example.com","id":"c1"}}');
      } else if (url.pathname === '/teapot') {
        res.writeHead(418, 'I Am A Teapot', { ...common, 'content-type': 'text/plain' });
        res.end('short and stout');
      } else {
        res.writeHead(200, { ...common, 'content-type': 'text/html; charset=utf-8' });
        res.end(`<html><body>${url.pathname}</body></html>`);
      }
    });
  });
  server.keepAliveTimeout = 30000;
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve({ server, seen, url: `http://127.0.0.1:${port}` })));
}

// ------------------------------------------------------------------------------------------
// The sink (`capi sink`, built by another crate of this workspace).

export async function startSink({ token, hmacSecret, record, logFile, faults = [], bin = path.join(root, 'target/debug/capi') }) {
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: cargo build -p capi-cli`);
  const args = ['sink', '--port', '0', '--token', token, '--record', record];
  if (hmacSecret) args.push('--hmac-secret', hmacSecret);
  for (const f of faults) args.push('--fault', f);
  let url;
  const ready = new Promise((resolve, reject) => {
    const child = spawnLogged('sink', bin, args, {
      logFile,
      onLine: (line) => {
        const m = /listening on (https?:\/\/\S+)/.exec(line);
        if (m && !url) {
          url = m[1];
          resolve(url);
        }
      },
    });
    child.on('exit', (code) => reject(new Error(`capi sink exited (${code}); see ${logFile}`)));
    setTimeout(() => reject(new Error('capi sink did not print its listening line in 20 s')), 20000);
  });
  return await ready;
}

export function sinkClient(base) {
  return {
    base,
    async events() {
      return (await request('GET', `${base}/_sink/events`)).json();
    },
    async stats() {
      return (await request('GET', `${base}/_sink/stats`)).json();
    },
    async fault(spec) {
      const r = await request('POST', `${base}/_sink/fault`, { body: spec, headers: { 'content-type': 'text/plain' } });
      if (r.status !== 200) throw new Error(`sink fault ${spec}: ${r.status} ${r.text()}`);
    },
    async reset() {
      await this.fault('');
      await request('POST', `${base}/_sink/reset`);
    },
  };
}

// ------------------------------------------------------------------------------------------
// wrangler dev on a generated configuration (the real workerd, Miniflare's local KV/Queues).

export const QUIET_WRANGLER_ENV = {
  WRANGLER_SEND_METRICS: 'false',
  WRANGLER_SEND_ERROR_REPORTS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_LOG_SANITIZE: 'false',
  NO_COLOR: '1',
  FORCE_COLOR: '0',
};

function tomlString(s) {
  return JSON.stringify(s);
}

/** Writes dir/wrangler.toml (+ .dev.vars with the secrets) for one Worker. */
export function writeWranglerConfig(dir, { name, main, vars = {}, secrets = {}, kv = true, queues = true, dlqConsumer = true, analytics = false }) {
  fs.mkdirSync(dir, { recursive: true });
  const lines = [`name = ${tomlString(name)}`, `main = ${tomlString(main)}`, 'compatibility_date = "2026-04-20"', '', '[vars]'];
  for (const [k, v] of Object.entries(vars)) lines.push(`${k} = ${tomlString(v)}`);
  if (kv) lines.push('', '[[kv_namespaces]]', 'binding = "CAPI_DEDUP"', 'id = "capi-dedup-local"');
  if (queues) {
    lines.push('', '[[queues.producers]]', 'binding = "CAPI_RETRY_QUEUE"', 'queue = "capi-retry"');
    lines.push('', '[[queues.producers]]', 'binding = "CAPI_DLQ"', 'queue = "capi-dlq"');
    lines.push('', '[[queues.consumers]]', 'queue = "capi-retry"', 'max_batch_size = 10', 'max_batch_timeout = 1', 'max_retries = 5', 'dead_letter_queue = "capi-dlq"');
    if (dlqConsumer) lines.push('', '[[queues.consumers]]', 'queue = "capi-dlq"', 'max_batch_size = 10', 'max_batch_timeout = 1');
  }
  if (analytics) lines.push('', '[[analytics_engine_datasets]]', 'binding = "CAPI_ANALYTICS"', 'dataset = "capi_test"');
  fs.writeFileSync(path.join(dir, 'wrangler.toml'), lines.join('\n') + '\n');
  const dev = Object.entries(secrets).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n');
  fs.writeFileSync(path.join(dir, '.dev.vars'), dev + '\n', { mode: 0o600 });
  return path.join(dir, 'wrangler.toml');
}

/** Process-group ids of the `wrangler dev` processes started, by name (for CPU accounting). */
export const wranglerGroups = {};
/** Inspector ports of the `wrangler dev` processes started, by name (for CPU profiles). */
export const wranglerInspectors = {};
/** Addresses of the workerd that runs each Worker (Miniflare's), by name, when started with `api`. */
export const wranglerDirect = {};

/**
 * CPU time (ms, user + system, all threads) of every live process in a process group, by role:
 * `worker` is the workerd that runs the Worker (Miniflare's, on a random port; its KV and
 * Queues simulators live in it too), `proxy` the workerd in front of it (wrangler's entry on the
 * public port), `node` wrangler itself (which receives every console.log, from the inspector or workerd's stdout),
 * `other` the rest (esbuild's idle service).
 */
export function groupCpuByRole(pgid) {
  const out = { worker: 0, proxy: 0, node: 0, other: 0 };
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(f[2]) !== pgid) continue;
      out[processRole(d, st.slice(st.indexOf('(') + 1, st.lastIndexOf(')')))] += (Number(f[11]) + Number(f[12])) * 10; // USER_HZ = 100
    } catch { /* gone */ }
  }
  return out;
}

const roles = new Map();
function processRole(pid, comm) {
  const key = `${pid}:${comm}`;
  let role = roles.get(key);
  if (!role) {
    if (comm === 'workerd') {
      const args = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      // The proxy workerd listens on the public port; Miniflare's on a random one (port 0).
      role = args.some((a) => a.startsWith('--inspector-addr') || /^--socket-addr=entry=.*:0$/.test(a)) ? 'worker' : 'proxy';
    } else {
      role = comm === 'node' ? 'node' : 'other';
    }
    roles.set(key, role);
  }
  return role;
}

/**
 * `wrangler dev` on a configuration. With `api: true` (the benchmark, the profiler) it runs
 * through wrangler's DevEnv API instead of the CLI (bench/worker/dev.mjs): the same proxy workerd
 * and Miniflare workerd, the inspector only when `inspector` is true (the CLI always attaches
 * one), and the address of Miniflare's workerd in `wranglerDirect[name]`. Without an inspector
 * the Worker's logs reach wrangler through workerd's stdout.
 */
export async function startWrangler({ name, configPath, port, logFile, readyPath = '/', readyHeaders = {}, persistTo, logLevel = 'log', api = false, inspector: withInspector = true }) {
  const env = { ...process.env, ...QUIET_WRANGLER_ENV };
  const inspector = withInspector ? await freePort() : 0;
  let child;
  if (api) {
    const args = [path.join(root, 'bench/worker/dev.mjs'), configPath, String(port), persistTo || '', withInspector ? String(inspector) : ''];
    child = spawnLogged(`wrangler:${name}`, process.execPath, args, {
      logFile,
      env,
      cwd: path.dirname(configPath),
      onLine: (line) => {
        const m = /^Worker on (http:\/\/\S+)$/.exec(line.trim());
        if (m) wranglerDirect[name] = m[1];
      },
    });
  } else {
    const bin = path.join(root, 'node_modules/.bin/wrangler');
    const args = ['dev', '-c', configPath, '--ip', '127.0.0.1', '--port', String(port), '--inspector-port', String(inspector), '--show-interactive-dev-session=false', '--log-level', logLevel];
    if (persistTo) args.push('--persist-to', persistTo);
    child = spawnLogged(`wrangler:${name}`, bin, args, { logFile, env, cwd: path.dirname(configPath) });
  }
  if (withInspector) wranglerInspectors[name] = inspector;
  wranglerGroups[name] = child.pid;
  const base = `http://127.0.0.1:${port}`;
  let exited = false;
  child.on('exit', () => { exited = true; });
  await waitFor(`wrangler dev (${name}) on ${base}`, async () => {
    if (exited) throw new Error(`wrangler dev exited; see ${logFile}`);
    const r = await request('GET', base + readyPath, { headers: readyHeaders, timeoutMs: 3000 });
    return r.status < 500;
  }, { timeoutMs: 90000, everyMs: 500 });
  return base;
}

/** The Worker's structured log lines (JSON objects with component capi-worker) in a log file. */
export function workerLogs(logFile) {
  const out = [];
  for (const line of fs.readFileSync(logFile, 'utf8').split('\n')) {
    const i = line.indexOf('{"');
    if (i < 0) continue;
    try {
      const v = JSON.parse(line.slice(i));
      if (v && v.component === 'capi-worker') out.push(v);
    } catch { /* not one of ours */ }
  }
  return out;
}
