#!/usr/bin/env python3
"""Envoy load benchmark of the capi proxy-wasm filter (loopback only, standard library + wrk).

    python3 bench/envoy/bench.py [--duration S] [--rounds N] [--checkouts N] [--parts get,checkout,slow,memory]

Run by bench/envoy/run.sh (`cargo xtask bench envoy`), which builds and installs what it needs.
Starts `capi sink --tls`, `capi demo-shop` (release) and ONE Envoy (--concurrency 1) with two
listeners built by tests/envoy/run.py's envoy_config: `capi` has the wasm filter in its chain
(switched on per route for the conversion routes, as in envoy.yaml), `plain` is the same
without it. Every process runs in its own session and is killed by id at the end.

Measures, alternating capi/plain in each round (2 shared cores: per-round ratios and their
median, and CPU time per request of each process from /proc, less sensitive to the machine's
load than req/s):
  1. GET /products/1 (no rule, filter disabled on the route): rps ratio and p99 difference;
  2. POST /api/checkout, unique order ids, delivery + batching (BATCH: max_events 100,
     max_wait_ms 1000 unless --batch-events/--batch-wait-ms);
  3. checkout p99 through the filter with a normal sink vs a sink that answers in 500 ms;
  4. Envoy memory before/after N checkouts with the sink stopped (queue_capacity 1000);
  5. the .wasm size.
Optional parts: `floor` adds a third listener with bench/envoy/floor-filter (reads what a
conversion needs, does nothing else) to the checkout rounds: the ceiling of any filter that reads
these inputs through proxy-wasm; `latency` runs checkouts over one connection through plain,
floor and capi (and `alt`, another build given with --alt-wasm), paced 2 ms apart: p50/p99 per
checkout.
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
# Delivery batching in the bench's plugin configuration (`destination.batch`): what a
# production deployment would set. Conversions APIs take large batches (Meta: up to 1000 events
# per request) and a conversion reported one second late loses nothing, while each request costs
# Envoy a dispatch, TLS records and an answer to process, and the platform a request to parse.
BATCH = {"max_events": 100, "max_wait_ms": 1000}
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
        self.floor_url = f"http://127.0.0.1:{ports['floor']}" if "floor" in ports else None
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

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


FLOOR_WASM = ROOT / "target/wasm32-wasip1/filter/capi_bench_floor_filter.wasm"


def with_floor_listener(config: dict, name: str = "floor", configuration: str = "{}") -> dict:
    """Adds a listener `name`: the `capi` listener with bench/envoy/floor-filter's .wasm (reads
    request headers, the peer address, response headers and body; does nothing else) in place of
    the capi filter, in its own VM, with `configuration` as its plugin configuration."""
    capi = next(l for l in config["static_resources"]["listeners"] if l["name"] == "capi")
    floor = json.loads(json.dumps(capi).replace('"capi"', json.dumps(name)))
    hcm = floor["filter_chains"][0]["filters"][0]["typed_config"]
    for f in hcm["http_filters"]:
        if f["name"] == name:  # enabled per route as the capi filter is (the routes name it now)
            f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(FLOOR_WASM)
            f["typed_config"]["config"]["configuration"]["value"] = configuration
    config["static_resources"]["listeners"].append(floor)
    return config


def with_alt_listener(config: dict, wasm: Path) -> dict:
    """Adds a listener `alt`: the `capi` listener (same plugin configuration) loading another
    build of the filter, in its own VM."""
    capi = next(l for l in config["static_resources"]["listeners"] if l["name"] == "capi")
    alt = json.loads(json.dumps(capi).replace('"capi"', '"alt"'))
    for f in alt["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]:
        if f["name"] == "alt":
            f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(wasm.resolve())
    config["static_resources"]["listeners"].append(alt)
    return config


def start_sink_and_shop(tmp: Path) -> tuple["t.Sink", subprocess.Popen, int]:
    """`capi sink --tls` (no --record: it stands in for a remote platform; appending each event
    to a file would only add disk work on the cores the measured Envoy shares) and
    `capi demo-shop`; returns both and the shop's port."""
    sink = t.Sink(tmp, record=False)
    shop = t.PROCS.start("shop", [str(t.CAPI), "demo-shop", "--port", "0"], stdout=subprocess.PIPE,
                         stderr=open(tmp / "shop.log", "ab"))
    shop_port = int(re.search(r":(\d+)", t.first_line(shop, "capi demo-shop")).group(1))
    return sink, shop, shop_port


def med(xs: list[float]) -> float:
    return statistics.median(xs)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class CpuMeter:
    """CPU seconds per process over a run: Envoy, the sink, the shop (from /proc) and wrk (the
    waited-for children of this process). Less sensitive to a busy machine than req/s."""

    def __init__(self, procs: dict[str, subprocess.Popen]) -> None:
        self.procs = procs

    def snapshot(self) -> dict[str, float]:
        out = {name: proc_cpu_s(p.pid) for name, p in self.procs.items()}
        ru = __import__("resource").getrusage(__import__("resource").RUSAGE_CHILDREN)
        out["wrk"] = ru.ru_utime + ru.ru_stime
        return out

    @staticmethod
    def per_request_us(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
        return {k: round((after[k] - before[k]) / max(requests, 1) * 1e6, 1) for k in before}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=5, help="alternating capi/plain rounds per route")
    ap.add_argument("--checkouts", type=int, default=100_000, help="checkouts in the memory part")
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--parts", default="get,checkout,slow,memory",
                    help="comma list of get, checkout, floor (checkout with a third listener: "
                         "bench/envoy/floor-filter), latency (one paced connection: plain, floor, "
                         "capi [, alt]), slow, memory")
    ap.add_argument("--alt-wasm", type=Path, default=None,
                    help="another build of the capi filter on a listener `alt` (the latency part "
                         "runs it beside the others): compare two builds in one Envoy")
    ap.add_argument("--batch-events", type=int, default=BATCH["max_events"])
    ap.add_argument("--batch-wait-ms", type=int, default=BATCH["max_wait_ms"])
    a = ap.parse_args()
    parts = set(a.parts.split(","))

    out_dir = ROOT / "target/bench-envoy"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="capi-bench-envoy-"))
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "nproc": os.cpu_count(),
                 "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
                 "duration_s": a.duration, "rounds": a.rounds, "conns": a.conns, "parts": sorted(parts),
                 "loadavg_start": os.getloadavg()}
    run_id = f"b{os.getpid()}{int(time.time())}"
    try:
        sink, shop, shop_port = start_sink_and_shop(tmp)
        plugin = t.plugin_config(sink.port)
        plugin["destination"]["batch"] = {"max_events": a.batch_events, "max_wait_ms": a.batch_wait_ms}
        plugin["limits"]["queue_capacity"] = 1000
        res["plugin_batch"] = plugin["destination"]["batch"]
        res["plugin_limits"] = plugin["limits"]
        config = t.envoy_config(shop_port=shop_port, sink_port=sink.port, ca=sink.cert_dir / "ca.pem",
                                plugin=plugin)
        if "floor" in parts or "latency" in parts:
            config = with_floor_listener(config)
        if a.alt_wasm:
            config = with_alt_listener(config, a.alt_wasm)
        envoy = Envoy(tmp, config)
        cpu = CpuMeter({"envoy": envoy.proc, "sink": sink.proc, "shop": shop})
        log(f"envoy {envoy.admin} capi={envoy.capi_url} plain={envoy.plain_url} shop={shop_port} sink={sink.port}")

        # Warm-up (connections, V8 tier-up of the filter).
        wrk(envoy.plain_url + "/products/1", "report.lua", duration=2, conns=a.conns)
        wrk(envoy.capi_url + "/products/1", "report.lua", duration=2, conns=a.conns)
        wrk(envoy.capi_url, "checkout.lua", duration=2, conns=a.conns, args=[f"{run_id}w"])
        wrk(envoy.plain_url, "checkout.lua", duration=2, conns=a.conns, args=[f"{run_id}wp"])
        if envoy.floor_url:
            wrk(envoy.floor_url, "checkout.lua", duration=2, conns=a.conns, args=[f"{run_id}wf"])
        time.sleep(1)

        def measured(url: str, script: str, args: list[str] | None, settle: float) -> dict:
            """One wrk run; CPU per request of each process, counted until `settle` seconds
            after wrk stopped (the last batch's delivery included)."""
            before = cpu.snapshot()
            d = wrk(url, script, duration=a.duration, conns=a.conns, args=args)
            time.sleep(settle)
            d["cpu_us_per_req"] = CpuMeter.per_request_us(before, cpu.snapshot(), d["requests"])
            d["loadavg"] = os.getloadavg()[0]
            return d

        # 1 + 2: alternating rounds (the order flips each round).
        runs: dict[str, list[dict]] = {"get_plain": [], "get_capi": [], "co_plain": [], "co_capi": [],
                                       "co_floor": []}
        urls = {"plain": envoy.plain_url, "capi": envoy.capi_url, "floor": envoy.floor_url}
        for r in range(a.rounds):
            order = [("plain", "capi"), ("capi", "plain")][r % 2]
            # With the floor listener: the three in turn, each round starting one later.
            co_order = order if not envoy.floor_url else \
                [("plain", "capi", "floor"), ("capi", "floor", "plain"), ("floor", "plain", "capi")][r % 3]
            if "get" in parts:
                for side in order:
                    url = envoy.capi_url if side == "capi" else envoy.plain_url
                    d = measured(url + "/products/1", "report.lua", None, 0.5)
                    runs[f"get_{side}"].append(d)
                    log(f"round {r + 1} GET /products/1 {side}: {d['rps']:.0f} rps p99 {d['p99_us']} us "
                        f"errors {d['errors']} cpu us/req {d['cpu_us_per_req']} load {d['loadavg']:.2f}")
            if "checkout" in parts or "floor" in parts:
                for side in co_order:
                    url = urls[side]
                    sink.reset()
                    before = envoy.counters()
                    d = measured(url, "checkout.lua", [f"{run_id}r{r}{side}"],
                                 1.5 + a.batch_wait_ms / 1000)
                    after = envoy.counters()
                    d["counters"] = {k: after.get(k, 0) - before.get(k, 0) for k in after
                                     if after.get(k, 0) != before.get(k, 0)}
                    if side == "capi":
                        st = sink.stats()
                        d["sink"] = {"requests": st.get("requests"), "accepted_events": st.get("accepted_events")}
                    runs[f"co_{side}"].append(d)
                    log(f"round {r + 1} checkout {side}: {d['rps']:.0f} rps p99 {d['p99_us']} us errors {d['errors']} "
                        f"cpu us/req {d['cpu_us_per_req']} load {d['loadavg']:.2f} "
                        f"counters {d['counters']} sink {d.get('sink')}")
        res["runs"] = runs

        if "latency" in parts:
            # One connection, paced (a 2 ms pause before each request): each checkout meets an
            # idle worker, so its latency is its own, not a queue's. Work the filter does on the
            # response path shows as p50 over plain's; work it defers to a tick does not.
            os.environ["CAPI_BENCH_DELAY_MS"] = "2"
            sides = ["plain", "floor", "capi"] + (["alt"] if a.alt_wasm else [])
            lat: dict[str, list[dict]] = {k: [] for k in sides}
            for r in range(a.rounds):
                for side in sides[r % len(sides):] + sides[:r % len(sides)]:
                    d = wrk(envoy.urls[side], "checkout.lua", duration=a.duration, conns=1,
                            args=[f"{run_id}l{r}{side}"])
                    lat[side].append(d)
                    log(f"latency round {r + 1} {side}: {d['rps']:.0f} rps p50 {d['p50_us']} p99 {d['p99_us']} us "
                        f"errors {d['errors']}")
                time.sleep(1.5 + a.batch_wait_ms / 1000)
            os.environ.pop("CAPI_BENCH_DELAY_MS", None)
            res["latency"] = lat

        if "slow" in parts:
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

        if "memory" in parts:
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
        res["loadavg_end"] = os.getloadavg()
    finally:
        t.PROCS.stop_all()

    (out_dir / "result.json").write_text(json.dumps(res, indent=1))
    print_table(res)
    return 0


def ratio_rows(plain: list[dict], capi: list[dict]) -> dict:
    """Per-round figures (round i pairs plain[i] with capi[i], run back to back)."""
    ratios = [c["rps"] / p["rps"] for p, c in zip(plain, capi)]
    p99d = [c["p99_us"] - p["p99_us"] for p, c in zip(plain, capi)]
    cpu = {side: {k: med([d["cpu_us_per_req"][k] for d in runs]) for k in runs[0]["cpu_us_per_req"]}
           for side, runs in (("plain", plain), ("capi", capi))}
    return {"ratios": ratios, "ratio": med(ratios), "p99_deltas": p99d, "p99_delta": med(p99d),
            "rps_plain": med([d["rps"] for d in plain]), "rps_capi": med([d["rps"] for d in capi]),
            "p99_plain": med([d["p99_us"] for d in plain]), "p99_capi": med([d["p99_us"] for d in capi]),
            "cpu": cpu}


def print_table(res: dict) -> None:
    runs = res["runs"]
    ok = lambda c: "met" if c else "**not met**"
    fr = lambda xs: ", ".join(f"{x:.3f}" for x in xs)
    fi = lambda xs: ", ".join(f"{x:+.0f}" for x in xs)
    cpu_s = lambda c: ", ".join(f"{k} {v:.1f}" for k, v in c.items())
    la = res["loadavg_start"]
    print(f"\nmachine: nproc {res['nproc']}, {res['cpu']}; {res['date']}; load average at start "
          f"{la[0]:.2f} {la[1]:.2f} {la[2]:.2f}, at end {res['loadavg_end'][0]:.2f}; wrk -t1 -c{res['conns']} "
          f"-d{res['duration_s']:g}s, {res['rounds']} alternating rounds; plugin batch {res['plugin_batch']}\n")
    print("| # | measure | without filter | with filter | result | goal |")
    print("|---|---|---|---|---|---|")
    if runs["get_plain"]:
        g = ratio_rows(runs["get_plain"], runs["get_capi"])
        print(f"| 1 | `GET /products/1` rps (median of rounds) | {g['rps_plain']:.0f} | {g['rps_capi']:.0f} | "
              f"ratio per round {fr(g['ratios'])}; median **{g['ratio']:.3f}** | ≥ 0.97: {ok(g['ratio'] >= 0.97)} |")
        print(f"| 1 | `GET /products/1` p99 | {g['p99_plain']:.0f} µs | {g['p99_capi']:.0f} µs | "
              f"difference per round {fi(g['p99_deltas'])} µs; median **{g['p99_delta']:+.0f} µs** | "
              f"within 50 µs: {ok(abs(g['p99_delta']) <= 50)} |")
        print(f"| 1 | CPU µs per GET (medians) | {cpu_s(g['cpu']['plain'])} | {cpu_s(g['cpu']['capi'])} | "
              f"Envoy {g['cpu']['capi']['envoy'] - g['cpu']['plain']['envoy']:+.1f} µs | – |")
    if runs["co_plain"]:
        c = ratio_rows(runs["co_plain"], runs["co_capi"])
        print(f"| 2 | `POST /api/checkout` rps, delivery + batching (median of rounds) | {c['rps_plain']:.0f} | "
              f"{c['rps_capi']:.0f} | ratio per round {fr(c['ratios'])}; median **{c['ratio']:.3f}** | "
              f"≥ 0.85: {ok(c['ratio'] >= 0.85)} |")
        print(f"| 2 | `POST /api/checkout` p99 | {c['p99_plain']:.0f} µs | {c['p99_capi']:.0f} µs | "
              f"median {c['p99_delta']:+.0f} µs | – |")
        print(f"| 2 | CPU µs per checkout (medians) | {cpu_s(c['cpu']['plain'])} | {cpu_s(c['cpu']['capi'])} | "
              f"Envoy {c['cpu']['capi']['envoy'] - c['cpu']['plain']['envoy']:+.1f} µs, sink "
              f"{c['cpu']['capi']['sink'] - c['cpu']['plain']['sink']:+.1f} µs | – |")
    if runs.get("co_floor"):
        f = ratio_rows(runs["co_plain"], runs["co_floor"])
        print(f"| 2f | `POST /api/checkout` rps through the floor filter (reads, does nothing) | {f['rps_plain']:.0f} | "
              f"{f['rps_capi']:.0f} | ratio per round {fr(f['ratios'])}; median **{f['ratio']:.3f}** | – |")
        print(f"| 2f | CPU µs per checkout, floor filter (medians) | {cpu_s(f['cpu']['plain'])} | {cpu_s(f['cpu']['capi'])} | "
              f"Envoy {f['cpu']['capi']['envoy'] - f['cpu']['plain']['envoy']:+.1f} µs | – |")
    if "latency" in res:
        lat = res["latency"]
        base = med([d["p50_us"] for d in lat["plain"]])
        for side, runs_ in lat.items():
            p50 = [d["p50_us"] for d in runs_]
            p99 = med([d["p99_us"] for d in runs_])
            print(f"| L | checkout latency, one connection, `{side}` (p50 per round {', '.join(str(x) for x in p50)} µs) "
                  f"| – | p50 **{med(p50):.0f} µs**, p99 {p99:.0f} µs | p50 {med(p50) - base:+.0f} µs over plain | – |")
    if "slow_sink" in res:
        sl = res["slow_sink"]
        sn99, ss99 = med([d["p99_us"] for d in sl["normal"]]), med([d["p99_us"] for d in sl["slow"]])
        snr, ssr = med([d["rps"] for d in sl["normal"]]), med([d["rps"] for d in sl["slow"]])
        print(f"| 3 | checkout p99 with filter, sink normal vs sink delay=500 ms (rps {snr:.0f} vs {ssr:.0f}) "
              f"| {sn99:.0f} µs (normal) | {ss99:.0f} µs (slow) | {ss99 - sn99:+.0f} µs | no rise: "
              f"{ok(ss99 <= sn99 * 1.10 + 50)} |")
    if "memory" in res:
        mem = res["memory"]
        sent = mem["sent"]
        b, e = mem["before"], mem[f"after_{sent}"]
        mids = [k for k in mem if k.startswith("after_") and k != f"after_{sent}"]
        m = mem[mids[0]] if mids else e
        ce, cb = mem[f"counters_after_{sent}"], mem["counters_before"]
        mib = lambda x: f"{x / 1048576:.1f} MiB"
        print(f"| 4 | Envoy memory, {sent} checkouts with the sink down (allocated / RSS) | "
              f"before {mib(b['allocated'])} / {mib(b['VmRSS'])} | after {mib(e['allocated'])} / {mib(e['VmRSS'])} "
              f"(at half: {mib(m['allocated'])} / {mib(m['VmRSS'])}) | queue_depth {ce.get('queue_depth')}, "
              f"dropped_queue_full +{ce.get('dropped_queue_full', 0) - cb.get('dropped_queue_full', 0)} | bounded by the queue |")
    print(f"| 5 | filter .wasm size (`cargo xtask build-filter`) | – | {res['wasm_size']} B "
          f"({res['wasm_size'] / 1024:.0f} KiB) | – | ≤ 250 KB: {ok(res['wasm_size'] <= 250_000)} |")


if __name__ == "__main__":
    sys.exit(main())
