// wrk with one of the bench's Lua scripts (collect, proxy, passthrough) against a Worker, for the
// development aids (profile.mjs, perf-ab.mjs): 2 threads, 16 connections; resolves to wrk's
// output. bench.mjs has its own, with its settings and log.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { root } from '../../tests/worker/lib.mjs';

export function wrk(base, script, secs) {
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', ['-t', '2', '-c', '16', '-d', `${secs}s`, '-s', path.join(root, 'bench/worker', `${script}.lua`), base, '--', `p${Date.now()}`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    // 'close': after stdout has been read to its end ('exit' can come first).
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`wrk ${code}`))));
  });
}
