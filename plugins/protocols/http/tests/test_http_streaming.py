"""Large bodies stream: a 100 MB download (curl) and a 20 MB upload (httpx) pass through without gw's memory
growing with them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import trio
from gw.testing import running_gateway

MB = 1024 * 1024


def rss() -> int:
    """Resident set size of this process (gw runs in it) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def watch_peak(peak: list[int]) -> None:
    while True:
        peak[0] = max(peak[0], rss())
        await trio.sleep(0.02)


async def test_100mb_download_streams_with_flat_memory(http_config, http_pm, upstream, curl) -> None:
    size = 100 * MB
    config = http_config(upstream.url, stages="")
    async with running_gateway(config, pm=http_pm) as gw:
        url = f"http://127.0.0.1:{gw.port('api')}/bytes/{size}"
        # warm up (first-request allocations are not what this test is about)
        assert (await curl("-o", "/dev/null", "-H", "Authorization: Bearer tok-agent", url.replace(
            str(size), "1000000")))[0] == 0
        before = rss()
        peak = [before]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_peak, peak)
            code, out, err = await curl("-o", "/dev/null", "-w", "%{size_download} %{http_code}",
                                        "-H", "Authorization: Bearer tok-agent", url, timeout=60)
            nursery.cancel_scope.cancel()
    assert code == 0, err
    assert out == f"{size} 200".encode()
    growth = peak[0] - before
    assert growth < 25 * MB, f"gw's memory grew by {growth / MB:.1f} MB during a {size // MB} MB download"


async def test_large_upload_streams_to_the_upstream(http_config, http_pm, upstream, agent) -> None:
    size = 20 * MB
    piece = bytes(range(256)) * 256
    config = http_config(upstream.url, stages='{ use = "http_test_observe" }',
                         listener='max_request_body = "50MB"')

    async def body():
        for _ in range(size // len(piece)):
            yield piece

    async with running_gateway(config, pm=http_pm) as gw, agent(gw, timeout=30) as c:
        r = await c.put("/api/v1/customers/9", content=body())
    assert r.status_code == 200
    seen = upstream.last()
    assert len(seen.body) == size
    assert hashlib.sha256(seen.body).digest() == hashlib.sha256(piece * (size // len(piece))).digest()
