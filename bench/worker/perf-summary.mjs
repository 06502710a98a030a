#!/usr/bin/env node
// Reads the perf.data files that bench/worker/perf-ab.mjs wrote and prints workerd's CPU per
// request for A and B by category (kernel, V8 runtime, GC and handles, kj, workerd, malloc, the
// Worker's wasm, JS), summed over the rounds: a single symbol moves a lot from run to run on a
// shared machine, a category much less. Round 0 is left out (warm-up). Names of JIT code need
// bench/worker/v8-perf-map.sh; without it JIT code shows as one "jit" line.
//   node bench/worker/perf-ab.mjs A/index.js B/index.js proxy 10 6 | tee runs.txt
//   node bench/worker/perf-summary.mjs runs.txt [symbols]
// With `symbols`, the 40 symbols whose cost differs most between A and B follow. The sampling rate
// is read from each file; the workerd's CPU per request from /proc (perf-ab's fifth column) is
// printed beside perf's total.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

const [runsFile, mode] = process.argv.slice(2);
// Samples per second of a perf.data file (perf-ab's PERF_FREQ).
function frequency(file) {
  const out = execFileSync('perf', ['evlist', '-v', '-i', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const m = /sample_freq \}: (\d+)/.exec(out);
  if (!m) throw new Error(`${file}: no sampling frequency in its header`);
  return Number(m[1]);
}

function category(dso, sym) {
  if (dso.includes('kernel')) return 'kernel';
  if (dso.includes('JIT')) {
    if (!/^JS:/.test(sym)) return 'jit';
    // V8's names: wasm functions end in -<index>-<tier>, JS ones carry a source position.
    return /-\d+-(turbofan|liftoff|none)$/.test(sym) && !/\.js:\d+/.test(sym) ? 'jit: wasm' : 'jit: js';
  }
  if (/Scaveng|MarkCompact|Marking|Sweep|cppgc|Heap::|Evacuat|MinorMS|FinalizationRegistry|GlobalHandles/.test(sym)) return 'v8: gc and handles';
  if (/tcmalloc|TCMalloc|operator new|operator delete/.test(sym)) return 'malloc';
  if (/^Builtins_/.test(sym)) return 'v8: builtins';
  if (/v8::|Runtime_/.test(sym)) return 'v8: runtime';
  if (/kj::|capnp/.test(sym)) return 'kj (I/O, promises)';
  if (/workerd::|jsg::/.test(sym)) return 'workerd';
  if (/sqlite/.test(sym)) return 'sqlite';
  return dso.includes('libc') ? 'libc' : 'other';
}

const totals = { a: new Map(), b: new Map() };
const symbols = { a: new Map(), b: new Map() };
const requests = { a: 0, b: 0 };
const procCpu = { a: 0, b: 0 };
const add = (m, k, v) => m.set(k, (m.get(k) || 0) + v);
for (const line of fs.readFileSync(runsFile, 'utf8').split('\n')) {
  const m = /^([ab]) (\d+) (\d+) (\S+)(?: (\d+))?$/.exec(line.trim());
  if (!m || m[2] === '0') continue;
  const [, name, , n, file, cpuUs] = m;
  requests[name] += Number(n);
  procCpu[name] += Number(cpuUs || NaN) * Number(n);
  // Each sample stands for 1/frequency s; stored per request in µs below.
  const weight = 1 / frequency(file);
  const out = execFileSync('perf', ['report', '-i', file, '--no-children', '--sort', 'dso,sym', '-g', 'none', '-n', '-q', '--stdio'], { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
  for (const row of out.split('\n')) {
    const r = /^\s*[\d.]+%\s+(\d+)\s+(\S.*?)\s+\[[.k]\]\s+(.*)$/.exec(row);
    if (!r) continue;
    const samples = Number(r[1]) * weight;
    add(totals[name], category(r[2], r[3].trim()), samples);
    add(symbols[name], r[3].trim().replace(/-\d+-(turbofan|liftoff|none)$/, ' [$1]').slice(0, 120), samples);
  }
}
if (!requests.a || !requests.b) throw new Error(`${runsFile}: no rounds after round 0 for both A and B`);
const perReq = (name, m, k) => ((m[name].get(k) || 0) * 1e6) / requests[name];
const table = (m, keys) => keys.map((k) => [k, perReq('a', m, k), perReq('b', m, k)]);
const cats = [...new Set([...totals.a.keys(), ...totals.b.keys()])];
const rows = table(totals, cats).sort((x, y) => y[1] - x[1]);
console.log(`workerd CPU per request (µs), rounds 1.., A ${requests.a} requests, B ${requests.b}`);
console.log(`${'category'.padEnd(22)} ${'A'.padStart(7)} ${'B'.padStart(7)} ${'A-B'.padStart(7)}`);
let sa = 0;
let sb = 0;
for (const [k, a, b] of rows) {
  sa += a;
  sb += b;
  console.log(`${k.padEnd(22)} ${a.toFixed(0).padStart(7)} ${b.toFixed(0).padStart(7)} ${(a - b).toFixed(0).padStart(7)}`);
}
console.log(`${'total'.padEnd(22)} ${sa.toFixed(0).padStart(7)} ${sb.toFixed(0).padStart(7)} ${(sa - sb).toFixed(0).padStart(7)}`);
const pa = procCpu.a / requests.a;
const pb = procCpu.b / requests.b;
if (Number.isFinite(pa) && Number.isFinite(pb)) console.log(`${'/proc (all threads)'.padEnd(22)} ${pa.toFixed(0).padStart(7)} ${pb.toFixed(0).padStart(7)} ${(pa - pb).toFixed(0).padStart(7)}`);
if (mode === 'symbols') {
  const syms = [...new Set([...symbols.a.keys(), ...symbols.b.keys()])];
  const diff = table(symbols, syms).sort((x, y) => Math.abs(y[1] - y[2]) - Math.abs(x[1] - x[2]));
  console.log('\nlargest differences by symbol (µs per request: A, B)');
  for (const [k, a, b] of diff.slice(0, 40)) console.log(`${(a - b).toFixed(1).padStart(7)} ${a.toFixed(1).padStart(7)} ${b.toFixed(1).padStart(7)}  ${k}`);
}
