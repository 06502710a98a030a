#!/usr/bin/env python3
"""What single proxy-wasm host calls cost Envoy's worker thread (loopback only; run after
`bash bench/envoy/run.sh --parts floor` has built what it needs).

    python3 bench/envoy/hostcalls.py [--rounds N] [--duration S] [--n CALLS]

One Envoy (bench.py's setup) with one listener per variant of bench/envoy/floor-filter: `floor`
reads what a conversion needs and nothing else; each other variant makes `--n` extra calls of one
kind at the end of every response (get_current_time, increment_metric, get_shared_data,
set_shared_data, get_property source.address, get_header_map_pairs). Checkouts through each in
turn; Envoy's CPU µs per request over the floor's, divided by n, is one call's price.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as b  # noqa: E402

t = b.t
KINDS = ["time", "metric", "shared_get", "shared_set", "property", "headers"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--n", type=int, default=10)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="capi-bench-hostcalls-"))
    res: dict[str, list[float]] = {}
    try:
        sink, shop, shop_port = b.start_sink_and_shop(tmp)
        config = t.envoy_config(shop_port=shop_port, sink_port=sink.port, ca=sink.cert_dir / "ca.pem",
                                plugin=t.plugin_config(sink.port))
        config = b.with_floor_listener(config)
        for k in KINDS:
            config = b.with_floor_listener(config, f"floor_{k}", json.dumps({"extra": k, "n": a.n}))
        envoy = b.Envoy(tmp, config)
        cpu = b.CpuMeter({"envoy": envoy.proc})
        variants = ["floor"] + [f"floor_{k}" for k in KINDS]
        for v in variants:
            b.wrk(envoy.urls[v], "checkout.lua", duration=1, args=[f"w{os.getpid()}{v}"])
        for r in range(a.rounds):
            for v in variants[r % len(variants):] + variants[:r % len(variants)]:
                before = cpu.snapshot()
                d = b.wrk(envoy.urls[v], "checkout.lua", duration=a.duration, args=[f"h{os.getpid()}r{r}{v}"])
                us = b.CpuMeter.per_request_us(before, cpu.snapshot(), d["requests"])["envoy"]
                res.setdefault(v, []).append(us)
                b.log(f"round {r + 1} {v}: {d['rps']:.0f} rps, Envoy CPU {us} µs/request, "
                      f"load {os.getloadavg()[0]:.2f}")
    finally:
        t.PROCS.stop_all()
    base = b.med(res["floor"])
    print(f"\n{a.n} extra calls per checkout; medians over {a.rounds} rounds of {a.duration} s")
    print("| variant | Envoy CPU µs/request | over the floor | per call |\n|---|---:|---:|---:|")
    for v, xs in res.items():
        m = b.med(xs)
        per = "" if v == "floor" else f"{(m - base) / a.n:.2f}"
        print(f"| {v} | {m:.1f} | {m - base:+.1f} | {per} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
