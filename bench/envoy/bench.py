#!/usr/bin/env python3
"""Envoy load benchmark of the capi proxy-wasm filter (loopback only, standard library + wrk).

    python3 bench/envoy/bench.py [--duration S] [--rounds N] [--checkouts N]

Run by bench/envoy/run.sh (`cargo xtask bench envoy`), which builds and installs what it needs.
Starts `capi sink --tls`, `capi demo-shop` (release) and ONE Envoy (--concurrency 1) with two
listeners built by tests/envoy/run.py's envoy_config: `capi` has the wasm filter in its chain
(switched on per route for the conversion routes, as in envoy.yaml), `plain` is the same
without it. Every process runs in its own session and is killed by id at the end.

Measures, alternating capi/plain in each round (2 shared cores: medians and ratios):
  1. GET /products/1 (no rule, filter disabled on the route): rps ratio and p99 difference;
  2. POST /api/checkout, unique order ids, delivery + batching (max_events 20, max_wait_ms 100);
  3. checkout p99 through the filter with a normal sink vs a sink that answers in 500 ms;
  4. Envoy memory before/after N checkouts with the sink stopped (queue_capacity 1000);
  5. the .wasm size.
Prints a Markdown table and writes the raw figures to target/bench-envoy/result.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
os.environ.setdefault("CAPI_BIN", str(ROOT / "target/release/capi"))
sys.path.insert(0, str(ROOT / "tests/envoy"))
import run as t  # noqa: E402  (the e2e harness: process handling and the Envoy config)

WRK = os.environ.get("WRK", "wrk")
TOKEN = t.TOKEN


def log(msg: str) -> None:
    print(msg, flush=True)


def wrk(url: str, script: str, *, duration: float, conns: int = 10, args: list[str] | None = None,
        timeout_s: int = 10) -> dict:
    argv = [WRK, "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency", f"--timeout={timeout_s}s",
            "-s", str(HERE / script), url]
    if args:
        argv += ["--"] + args
    r = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120)
    m = re.search(r"WRKJSON (\{.*\})", r.stdout)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({r.returncode}): {r.stdout}\n{r.stderr}")
    d = json.loads(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    d["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
    d["errors"] = d["connect"] + d["read"] + d["write"] + d["timeout"] + d["non2xx"]
    return d


def wrk_count(envoy: "Envoy", n: int, *, conns: int, prefix: str) -> dict:
    """Exactly n checkouts: the lua script stops its thread after n responses (CAPI_BENCH_MAX), but
    wrk's main thread still sleeps for -d, so we watch the filter's `matched` counter and send
    SIGINT (wrk then prints its summary) once all n went through."""
    base = envoy.counters().get("matched", 0)
    argv = [WRK, "-t1", f"-c{conns}", "-d600s", "--latency", "--timeout=10s",
            "-s", str(HERE / "checkout.lua"), envoy.capi_url, "--", prefix]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, CAPI_BENCH_MAX=str(n)), start_new_session=True)
    try:
        t0 = time.monotonic()
        last, same = -1, 0
        while time.monotonic() - t0 < 580:
            time.sleep(0.5)
            m = envoy.counters().get("matched", 0) - base
            same = same + 1 if m == last else 0
            last = m
            if m >= n or same >= 6:
                break
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    m = re.search(r"WRKJSON (\{.*\})", out)
    if not m:
        raise RuntimeError(f"wrk failed: {out}\n{err}")
    d = json.loads(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    d["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    d["elapsed_s"] = time.monotonic() - t0
    d["rps"] = d["requests"] / d["elapsed_s"]
    d["errors"] = d["connect"] + d["read"] + d["write"] + d["timeout"] + d["non2xx"]
    d["matched"] = last
    return d


class Envoy:
    def __init__(self, tmp: Path, config: dict) -> None:
        cfg = tmp / "envoy.json"
        cfg.write_text(json.dumps(config, indent=1))
        addr_path = tmp / "admin-address"
        self.log_f = open(tmp / "envoy.log", "ab")
        env = dict(os.environ, CAPI_TOKEN=TOKEN)
        self.proc = t.PROCS.start("envoy", [
            t.envoy_bin(), "-c", str(cfg), "--concurrency", "1", "--use-dynamic-base-id",
            "--admin-address-path", str(addr_path), "-l", "warn",
            "--drain-time-s", "1", "--parent-shutdown-time-s", "2",
        ], env=env, stdout=self.log_f, stderr=self.log_f)
        addr = t.wait_for("envoy's admin address", lambda: (self.proc.poll() is not None and "exited")
                          or (addr_path.exists() and addr_path.read_text().strip()), timeout=60)
        if addr == "exited":
            raise RuntimeError(f"envoy exited: {(tmp / 'envoy.log').read_text()[-3000:]}")
        self.admin = f"http://{addr}"
        t.wait_for("envoy ready", lambda: self.get("/ready") == "LIVE\n", timeout=60)
        ports = {l["name"]: l["local_address"]["socket_address"]["port_value"]
                 for l in json.loads(self.get("/listeners?format=json"))["listener_statuses"]}
        self.capi_url = f"http://127.0.0.1:{ports['capi']}"
        self.plain_url = f"http://127.0.0.1:{ports['plain']}"

    def get(self, path: str) -> str:
        try:
            with urllib.request.urlopen(self.admin + path, timeout=10) as r:
                return r.read().decode()
        except OSError:
            return ""

    def counters(self) -> dict[str, int]:
        out = {}
        for line in self.get("/stats?filter=wasmcustom").splitlines():
            k, _, v = line.partition(": ")
            if k.startswith("wasmcustom.capi."):
                out[k.removeprefix("wasmcustom.capi.")] = int(v)
        return out

    def memory(self) -> dict:
        mem = json.loads(self.get("/memory") or "{}")
        out = {k: int(mem[k]) for k in ("allocated", "heap_size", "pageheap_unmapped", "pageheap_free",
                                          "total_physical_bytes") if k in mem}
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        for key in ("VmRSS", "VmHWM"):
            m = re.search(rf"{key}:\s+(\d+) kB", status)
            if m:
                out[key] = int(m.group(1)) * 1024
        out["wasm_stats"] = {k: int(v) for k, _, v in
                             (l.partition(": ") for l in self.get("/stats?filter=^wasm\\.").splitlines())
                             if v.strip().isdigit()}
        return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--checkouts", type=int, default=100_000)
    ap.add_argument("--conns", type=int, default=10)
    a = ap.parse_args()

    out_dir = ROOT / "target/bench-envoy"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="capi-bench-envoy-"))
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "nproc": os.cpu_count(),
                 "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
                 "duration_s": a.duration, "rounds": a.rounds, "conns": a.conns}
    run_id = f"b{os.getpid()}{int(time.time())}"
    try:
        sink = t.Sink(tmp)
        shop = t.PROCS.start("shop", [str(t.CAPI), "demo-shop", "--port", "0"], stdout=subprocess.PIPE,
                             stderr=open(tmp / "shop.log", "ab"))
        shop_port = int(re.search(r":(\d+)", t.first_line(shop, "capi demo-shop")).group(1))
        plugin = t.plugin_config(sink.port)
        plugin["destination"]["batch"] = {"max_events": 20, "max_wait_ms": 100}
        plugin["limits"]["queue_capacity"] = 1000
        res["plugin_batch"] = plugin["destination"]["batch"]
        res["plugin_limits"] = plugin["limits"]
        envoy = Envoy(tmp, t.envoy_config(shop_port=shop_port, sink_port=sink.port,
                                          ca=sink.cert_dir / "ca.pem", plugin=plugin))
        log(f"envoy {envoy.admin} capi={envoy.capi_url} plain={envoy.plain_url} shop={shop_port} sink={sink.port}")

        # Warm-up (connections, V8 tier-up of the filter).
        wrk(envoy.plain_url + "/products/1", "report.lua", duration=2, conns=a.conns)
        wrk(envoy.capi_url + "/products/1", "report.lua", duration=2, conns=a.conns)
        wrk(envoy.capi_url, "checkout.lua", duration=2, conns=a.conns, args=[f"{run_id}w"])
        wrk(envoy.plain_url, "checkout.lua", duration=2, conns=a.conns, args=[f"{run_id}wp"])
        time.sleep(1)

        # 1 + 2: alternating rounds.
        runs: dict[str, list[dict]] = {"get_plain": [], "get_capi": [], "co_plain": [], "co_capi": []}
        for r in range(a.rounds):
            order = [("plain", "capi"), ("capi", "plain")][r % 2]
            for side in order:
                url = envoy.capi_url if side == "capi" else envoy.plain_url
                d = wrk(url + "/products/1", "report.lua", duration=a.duration, conns=a.conns)
                runs[f"get_{side}"].append(d)
                log(f"round {r + 1} GET /products/1 {side}: {d['rps']:.0f} rps p99 {d['p99_us']} us errors {d['errors']}")
            for side in order:
                url = envoy.capi_url if side == "capi" else envoy.plain_url
                sink.reset()
                before = envoy.counters()
                d = wrk(url, "checkout.lua", duration=a.duration, conns=a.conns, args=[f"{run_id}r{r}{side}"])
                time.sleep(1.5)  # let the last batch go out
                after = envoy.counters()
                d["counters"] = {k: after.get(k, 0) - before.get(k, 0) for k in after
                                 if after.get(k, 0) != before.get(k, 0)}
                if side == "capi":
                    st = sink.stats()
                    d["sink"] = {"requests": st.get("requests"), "accepted_events": st.get("accepted_events")}
                runs[f"co_{side}"].append(d)
                log(f"round {r + 1} checkout {side}: {d['rps']:.0f} rps p99 {d['p99_us']} us errors {d['errors']} "
                    f"counters {d['counters']} sink {d.get('sink')}")
        res["runs"] = runs

        # 3: slow sink vs normal sink, filter on, alternating.
        slow: dict[str, list[dict]] = {"normal": [], "slow": []}
        for r in range(2):
            for mode in [("normal", "slow"), ("slow", "normal")][r % 2]:
                sink.reset()
                if mode == "slow":
                    sink.fault("delay=500")
                before = envoy.counters()
                d = wrk(envoy.capi_url, "checkout.lua", duration=a.duration, conns=a.conns,
                        args=[f"{run_id}s{r}{mode}"])
                time.sleep(1.5 if mode == "normal" else 3)
                after = envoy.counters()
                d["counters"] = {k: after.get(k, 0) - before.get(k, 0) for k in after
                                 if after.get(k, 0) != before.get(k, 0)}
                slow[mode].append(d)
                log(f"slow-sink round {r + 1} {mode}: {d['rps']:.0f} rps p50 {d['p50_us']} p99 {d['p99_us']} us "
                    f"errors {d['errors']} counters {d['counters']}")
        sink.reset()
        res["slow_sink"] = slow

        # 4: memory with the sink down.
        time.sleep(2)
        sink.stop()
        mem = {"before": envoy.memory(), "counters_before": envoy.counters()}
        half = a.checkouts // 2
        sent = 0
        for i, n in enumerate([half, a.checkouts - half]):
            d = wrk_count(envoy, n, conns=a.conns, prefix=f"{run_id}m{i}")
            sent += d["requests"]
            time.sleep(1.5)
            mem[f"after_{sent}"] = envoy.memory()
            mem[f"counters_after_{sent}"] = envoy.counters()
            mem[f"wrk_{i}"] = d
            log(f"sink down: {sent} checkouts sent ({d['rps']:.0f} rps, errors {d['errors']}); "
                f"allocated {mem[f'after_{sent}'].get('allocated')} RSS {mem[f'after_{sent}'].get('VmRSS')} "
                f"counters {mem[f'counters_after_{sent}']}")
        mem["sent"] = sent
        res["memory"] = mem
        res["wasm_size"] = t.WASM.stat().st_size
    finally:
        t.PROCS.stop_all()

    (out_dir / "result.json").write_text(json.dumps(res, indent=1))
    print_table(res)
    return 0


def print_table(res: dict) -> None:
    runs = res["runs"]
    gp, gc = med([d["rps"] for d in runs["get_plain"]]), med([d["rps"] for d in runs["get_capi"]])
    gp99, gc99 = med([d["p99_us"] for d in runs["get_plain"]]), med([d["p99_us"] for d in runs["get_capi"]])
    cp, cc = med([d["rps"] for d in runs["co_plain"]]), med([d["rps"] for d in runs["co_capi"]])
    cp99, cc99 = med([d["p99_us"] for d in runs["co_plain"]]), med([d["p99_us"] for d in runs["co_capi"]])
    sn99 = med([d["p99_us"] for d in res["slow_sink"]["normal"]])
    ss99 = med([d["p99_us"] for d in res["slow_sink"]["slow"]])
    snr = med([d["rps"] for d in res["slow_sink"]["normal"]])
    ssr = med([d["rps"] for d in res["slow_sink"]["slow"]])
    mem = res["memory"]
    sent = mem["sent"]
    b, e = mem["before"], mem[f"after_{sent}"]
    mids = [k for k in mem if k.startswith("after_") and k != f"after_{sent}"]
    m = mem[mids[0]] if mids else e
    ce = mem[f"counters_after_{sent}"]
    cb = mem["counters_before"]
    mib = lambda x: f"{x / 1048576:.1f} MiB"
    ok = lambda c: "met" if c else "**not met**"
    per = lambda xs, k: ", ".join(str(round(d[k])) for d in xs)
    print(f"\nmachine: nproc {res['nproc']}, {res['cpu']}; {res['date']}; wrk -t1 -c{res['conns']} "
          f"-d{res['duration_s']:g}s, {res['rounds']} alternating rounds, medians\n")
    print("| # | measure | without filter | with filter | result | goal |")
    print("|---|---|---|---|---|---|")
    print(f"| 1 | GET /products/1 rps (per round: {per(runs['get_plain'], 'rps')} / {per(runs['get_capi'], 'rps')}) "
          f"| {gp:.0f} | {gc:.0f} | ratio {gc / gp:.3f} | ≥ 0.97: {ok(gc / gp >= 0.97)} |")
    print(f"| 1 | GET /products/1 p99 (per round: {per(runs['get_plain'], 'p99_us')} / {per(runs['get_capi'], 'p99_us')} µs) "
          f"| {gp99:.0f} µs | {gc99:.0f} µs | {gc99 - gp99:+.0f} µs | within 50 µs: {ok(abs(gc99 - gp99) <= 50)} |")
    print(f"| 2 | POST /api/checkout rps, batch 20/100 ms (per round: {per(runs['co_plain'], 'rps')} / {per(runs['co_capi'], 'rps')}) "
          f"| {cp:.0f} | {cc:.0f} | ratio {cc / cp:.3f} | ≥ 0.85: {ok(cc / cp >= 0.85)} |")
    print(f"| 2 | POST /api/checkout p99 | {cp99:.0f} µs | {cc99:.0f} µs | {cc99 - cp99:+.0f} µs | – |")
    print(f"| 3 | checkout p99 with filter, sink normal vs sink delay=500 ms (rps {snr:.0f} vs {ssr:.0f}) "
          f"| {sn99:.0f} µs (normal) | {ss99:.0f} µs (slow) | {ss99 - sn99:+.0f} µs | no rise: "
          f"{ok(ss99 <= sn99 * 1.10 + 50)} |")
    print(f"| 4 | Envoy memory, {sent} checkouts with the sink down (allocated / RSS) | "
          f"before {mib(b['allocated'])} / {mib(b['VmRSS'])} | after {mib(e['allocated'])} / {mib(e['VmRSS'])} "
          f"(at half: {mib(m['allocated'])} / {mib(m['VmRSS'])}) | queue_depth {ce.get('queue_depth')}, "
          f"dropped_queue_full +{ce.get('dropped_queue_full', 0) - cb.get('dropped_queue_full', 0)} | bounded by the queue |")
    print(f"| 5 | filter .wasm size (release) | – | {res['wasm_size']} B ({res['wasm_size'] / 1024:.0f} KiB) | – | "
          f"≤ 250 KB: {ok(res['wasm_size'] <= 250_000)} |")


if __name__ == "__main__":
    sys.exit(main())
