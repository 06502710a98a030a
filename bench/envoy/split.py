#!/usr/bin/env python3
"""Where a checkout's extra CPU goes: the filter's work stopped at successive points, Envoy's CPU
time per request for each (loopback only; run after `bash bench/envoy/run.sh --parts get` or
`cargo xtask bench envoy` has built what it needs).

    python3 bench/envoy/split.py [--rounds N] [--duration S] [--batch-events N] [--batch-wait-ms MS]

Variants, in turn each round, on one Envoy (bench.py's setup):
  plain     checkout through the listener without the filter;
  gpc       checkout with Sec-GPC: 1 (filter entered, rule matched, skipped for consent);
  same      one order id over and over (body copied, event extracted, dropped by dedup);
  full      unique order ids (extraction and delivery to the sink);
  getplain, get   GET /products/1 on both listeners (the filter is disabled on that route).
Prints each run and the medians of CPU µs per request (Envoy, sink, shop, wrk).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as b  # noqa: E402

t = b.t
VARIANTS = ["plain", "gpc", "same", "full", "getplain", "get"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--batch-events", type=int, default=b.BATCH["max_events"])
    ap.add_argument("--batch-wait-ms", type=int, default=b.BATCH["max_wait_ms"])
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="capi-bench-split-"))
    res: dict[str, list[dict]] = {}
    try:
        sink, shop, shop_port = b.start_sink_and_shop(tmp)
        plugin = t.plugin_config(sink.port)
        plugin["destination"]["batch"] = {"max_events": a.batch_events, "max_wait_ms": a.batch_wait_ms}
        plugin["limits"]["queue_capacity"] = 1000
        envoy = b.Envoy(tmp, t.envoy_config(shop_port=shop_port, sink_port=sink.port,
                                            ca=sink.cert_dir / "ca.pem", plugin=plugin))
        cpu = b.CpuMeter({"envoy": envoy.proc, "sink": sink.proc, "shop": shop})
        b.wrk(envoy.capi_url, "checkout.lua", duration=2, args=[f"w{os.getpid()}"])
        b.wrk(envoy.plain_url, "checkout.lua", duration=2, args=[f"wp{os.getpid()}"])
        for r in range(a.rounds):
            for v in VARIANTS:
                os.environ.pop("CAPI_BENCH_SAME_ORDER", None)
                os.environ.pop("CAPI_BENCH_GPC", None)
                if v == "same":
                    os.environ["CAPI_BENCH_SAME_ORDER"] = "1"
                if v == "gpc":
                    os.environ["CAPI_BENCH_GPC"] = "1"
                base = envoy.plain_url if v in ("plain", "getplain") else envoy.capi_url
                before = cpu.snapshot()
                if v.startswith("get"):
                    d = b.wrk(base + "/products/1", "report.lua", duration=a.duration)
                else:
                    d = b.wrk(base, "checkout.lua", duration=a.duration, args=[f"s{os.getpid()}r{r}{v}"])
                time.sleep(1.5 + a.batch_wait_ms / 1000)
                d["cpu_us_per_req"] = b.CpuMeter.per_request_us(before, cpu.snapshot(), d["requests"])
                res.setdefault(v, []).append(d)
                b.log(f"round {r + 1} {v}: {d['rps']:.0f} rps, CPU µs/request {d['cpu_us_per_req']}, "
                      f"errors {d['errors']}, load {os.getloadavg()[0]:.2f}")
    finally:
        t.PROCS.stop_all()
    print(f"\nbatch {a.batch_events} / {a.batch_wait_ms} ms; medians over {a.rounds} rounds of {a.duration} s")
    print("| variant | rps | Envoy CPU µs/req | sink | shop | wrk |\n|---|---:|---:|---:|---:|---:|")
    for v, runs in res.items():
        m = lambda k: b.med([d["cpu_us_per_req"][k] for d in runs])
        print(f"| {v} | {b.med([d['rps'] for d in runs]):.0f} | {m('envoy'):.1f} | {m('sink'):.1f} | "
              f"{m('shop'):.1f} | {m('wrk'):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
