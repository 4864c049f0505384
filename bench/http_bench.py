"""HTTP benchmark: requests/s for small GETs (keep-alive, 8 connections) and MB/s for a large download,
direct to the upstream vs through gw (``gw serve`` with an http listener), measured side by side in one run.

    python bench/http_bench.py [--seconds 5] [--connections 8] [--size-mb 200] [--stages none audit]
                               [--baseline OTHER_CHECKOUT] [--rounds 1]

Each stage set named by ``--stages`` (default: none, then audit) gets its own gateway; the small GETs and the
download alternate between direct and each gateway in one run, and the last table holds the target rows of
docs/performance.md.  ``--baseline`` names another gw checkout (say ``git archive main core plugins`` unpacked
somewhere): each stage set then also gets a gateway running that checkout's code (its ``core`` and plugin
directories first on ``PYTHONPATH``), measured in the same rounds, for before/after comparisons on a busy
machine.  ``--rounds`` repeats the whole alternation and reports each figure's median.

The upstream is bench/http_upstream.py (trio + h11); the small-GET client is a minimal keep-alive client in
this process (pre-built request bytes, Content-Length framing), the download client is curl.  Timings are
printed, never asserted: tests do not depend on them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
from common import BIN, ROOT, cpu_seconds, free_port, wait_port

STAGES = {
    "none": "",
    "audit": '{ use = "audit" },',
    "mask": '{ use = "audit" },\n'
            '  { use = "mask", columns = ["ssn"], detectors = ["credit_card", "us_ssn"], '
            'pass_through_types = ["application/octet-stream"] },',
}


class HttpGateway:
    """``gw serve`` with one http listener in front of the benchmark upstream, and a token for it."""

    def __init__(self, upstream_port: int, stages: str, checkout: Path | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="gw-http-bench-"))
        self.port = free_port()
        self.env = {**os.environ, "GW_DEV_SECRET": "http-bench-secret-0123456789abcdef",
                    "BENCH_UPSTREAM_TOKEN": "bench-upstream-token"}
        if checkout is not None:
            paths = [checkout / "core", *sorted(p.parent for p in checkout.glob("plugins/*/*/pyproject.toml"))]
            self.env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
        (self.dir / "pipeline.toml").write_text(f"""
[gateway]
data_dir = "state"

[storage]
use = "sqlite"
path = "state/gw.db"

[identity.dev]
use = "jwt"
issuer = "gw-bench"
audience = "gw"
secret_env = "GW_DEV_SECRET"

[pipelines.bench]
stages = [
  {STAGES[stages]}
]

[[listeners]]
name = "api"
protocol = "http"
listen = "127.0.0.1:{self.port}"
identity = "dev"
pipeline = "bench"

[listeners.upstream]
url = "http://127.0.0.1:{upstream_port}"
headers = {{ Authorization = "Bearer ${{BENCH_UPSTREAM_TOKEN}}" }}
""")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HttpGateway:
        args = [str(BIN / "gw"), "serve", str(self.dir / "pipeline.toml"), "--log-level", "warning"]
        with open(self.dir / "gw.log", "wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port)
        except RuntimeError:
            raise RuntimeError("gw serve did not start:\n" + (self.dir / "gw.log").read_text()) from None
        return self

    def token(self) -> str:
        args = [str(BIN / "gw"), "token", "issue", "-c", str(self.dir / "pipeline.toml"), "--identity", "dev",
                "--sub", "bench-agent", "--group", "agents", "--ttl", "2h"]
        return subprocess.run(args, env=self.env, capture_output=True, text=True, check=True).stdout.strip()

    def rss_mb(self) -> float:
        assert self.proc is not None
        m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{self.proc.pid}/status").read_text())
        return int(m.group(1)) / 1024 if m else 0.0

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


async def one_connection(port: int, request: bytes, deadline: float, counts: list[int]) -> None:
    """Sequential keep-alive requests until ``deadline``; each response read by its Content-Length."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buf = b""
    async with stream:
        while trio.current_time() < deadline:
            await stream.send_all(request)
            while b"\r\n\r\n" not in buf:
                buf += await stream.receive_some(65536)
            head, _, buf = buf.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected response: {head[:200]!r}")
            found = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if found is None:
                raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
            length = int(found.group(1))
            while len(buf) < length:
                buf += await stream.receive_some(65536)
            buf = buf[length:]
            counts[0] += 1


async def small_gets(port: int, token: str | None, seconds: float, connections: int) -> float:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET /small HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode()
    counts = [0]
    # warm-up: one request per connection so connection setup is not measured
    await one_connection(port, request, trio.current_time() + 0.2, [0])
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(one_connection, port, request, start + seconds, counts)
    return counts[0] / (trio.current_time() - start)


def download(port: int, token: str | None, size: int) -> float:
    """MB/s of one curl download of ``size`` bytes."""
    args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
            f"http://127.0.0.1:{port}/large/{size}"]
    if token:
        args[1:1] = ["-H", f"Authorization: Bearer {token}"]
    start = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - start
    if int(out) != size:
        raise RuntimeError(f"downloaded {out} bytes, expected {size}")
    return size / (1024 * 1024) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--stages", choices=sorted(STAGES), nargs="+", default=["none", "audit"])
    parser.add_argument("--baseline", type=Path, help="another gw checkout to measure beside this one")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if not shutil.which("curl"):
        sys.exit("curl is needed for the download measurement (Debian package: curl)")

    upstream_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "http_upstream.py"),
                                 str(upstream_port)])
    gateways: dict[str, HttpGateway] = {}
    for stages in args.stages:
        if args.baseline is not None:
            gateways[f"{stages} (baseline)"] = HttpGateway(upstream_port, stages, args.baseline.resolve())
        gateways[stages] = HttpGateway(upstream_port, stages)
    rps: dict[str, list[float]] = {name: [] for name in ["direct", *gateways]}
    mbs: dict[str, list[float]] = {name: [] for name in ["direct", *gateways]}
    rss: dict[str, tuple[float, float]] = {}
    cpu: dict[str, list[float]] = {name: [] for name in gateways}
    cpu_per_get: dict[str, list[float]] = {name: [] for name in gateways}
    try:
        wait_port(upstream_port)
        tokens = {name: g.start().token() for name, g in gateways.items()}
        size = args.size_mb * 1024 * 1024
        for _ in range(args.rounds):
            rps["direct"].append(trio.run(small_gets, upstream_port, None, args.seconds, args.connections))
            for name, g in gateways.items():
                cpu_before = g.cpu_seconds()
                rps[name].append(trio.run(small_gets, g.port, tokens[name], args.seconds, args.connections))
                cpu_per_get[name].append((g.cpu_seconds() - cpu_before) / (rps[name][-1] * args.seconds))
        for _ in range(args.rounds):
            mbs["direct"].append(download(upstream_port, None, size))
            for name, g in gateways.items():
                before, cpu_before = g.rss_mb(), g.cpu_seconds()
                mbs[name].append(download(g.port, tokens[name], size))
                rss[name] = (before, g.rss_mb())
                cpu[name].append(g.cpu_seconds() - cpu_before)
    finally:
        for g in gateways.values():
            g.stop()
        upstream.terminate()
        upstream.wait(5)

    rate = {name: statistics.median(values) for name, values in rps.items()}
    speed = {name: statistics.median(values) for name, values in mbs.items()}
    print(f"http benchmark: {args.connections} keep-alive connections, {args.seconds:g}s per side, "
          f"{args.size_mb} MB download, {args.rounds} round(s) (medians), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'':24}{'direct':>12}" + "".join(f"{'gw, ' + s:>24}" for s in gateways))
    print(f"{'small GET (req/s)':24}{rate['direct']:>12.0f}" + "".join(f"{rate[s]:>24.0f}" for s in gateways))
    print(f"{'gw CPU per GET (us)':24}{'':>12}"
          + "".join(f"{statistics.median(cpu_per_get[s]) * 1e6:>24.0f}" for s in gateways))
    print(f"{'large download (MB/s)':24}{speed['direct']:>12.1f}"
          + "".join(f"{speed[s]:>24.1f}" for s in gateways))
    for name, (before, after) in rss.items():
        print(f"gw ({name}) RSS around the download: {before:.1f} MB before, {after:.1f} MB after; "
              f"CPU time per download {statistics.median(cpu[name]):.2f} s")
    targets = {"none": ">= 0.5", "audit": ">= 0.4"}
    print("\ntarget table\n")
    print(f"{'measurement':64}{'this run':>9}  target")
    for name in gateways:
        print(f"{f'HTTP small GETs, {name} / direct':64}{rate[name] / rate['direct']:>9.2f}  "
              f"{targets.get(name, '-')}")
    for name in gateways:
        label = f"HTTP {args.size_mb} MB download, {name} / direct"
        print(f"{label:64}{speed[name] / speed['direct']:>9.2f}  "
              f"{'>= 0.6' if name == 'none' else '-'}")


if __name__ == "__main__":
    main()
