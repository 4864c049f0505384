"""Large bodies stream: a 100 MB download (curl) and a 20 MB upload (httpx) pass through without gw's memory
growing with them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
import trio
from gw.testing import running_gateway
from http_adversarial import LONG_ECHO_AT

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


# A body longer than one receive is relayed by two tasks (one receiving from the upstream, one sending to the
# agent); what follows holds for such bodies.

async def test_a_long_download_arrives_whole_and_in_order(http_config, http_pm, upstream, agent,
                                                          observed) -> None:
    size = 5 * MB + 123
    piece = bytes(range(256)) * 256
    config = http_config(upstream.url, stages='{ use = "http_test_outcomes" }')
    async with running_gateway(config, pm=http_pm) as gw, agent(gw, timeout=30) as c:
        r = await c.get(f"/bytes/{size}")
        again = await c.get("/api/v1/customers/1")  # the same connections, kept alive
    assert r.status_code == 200 and again.status_code == 200
    assert r.content == (piece * (size // len(piece) + 1))[:size]
    (_, outcome), _ = observed["outcomes"]
    assert outcome.status == "ok" and outcome.notes["response_bytes"] == size


async def test_a_long_body_the_upstream_cuts_is_cut_for_the_agent(http_config, http_pm, upstream, agent,
                                                                  observed) -> None:
    """The upstream closes 1000 bytes short of what it declared, megabytes into the body: the agent sees a
    truncated response (never a complete-looking one), the outcome says why, and gw serves the next request."""
    config = http_config(upstream.url, stages='{ use = "http_test_outcomes" }')
    async with running_gateway(config, pm=http_pm) as gw:
        async with agent(gw, timeout=30) as c:
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get(f"/shortbytes/{3 * MB}")
        async with agent(gw) as c:
            assert (await c.get("/api/v1/customers/1")).status_code == 200
    (_, outcome), _ = observed["outcomes"]
    assert outcome.status == "error" and outcome.error_code == "upstream_closed"
    assert "ended the response early" in outcome.error_message


async def test_an_agent_leaving_mid_download_cancels_the_request(http_config, http_pm, upstream, agent,
                                                                 observed) -> None:
    config = http_config(upstream.url, stages='{ use = "http_test_outcomes" }')
    async with running_gateway(config, pm=http_pm) as gw:
        stream = await trio.open_tcp_stream("127.0.0.1", gw.port("api"))
        await stream.send_all(f"GET /bytes/{200 * MB} HTTP/1.1\r\nHost: x\r\n"
                              "Authorization: Bearer tok-agent\r\n\r\n".encode())
        received = 0
        while received < 2 * MB:
            received += len(await stream.receive_some(65536))
        await stream.aclose()  # the agent leaves
        with trio.fail_after(10):
            while not observed.get("outcomes"):
                await trio.sleep(0.01)
        async with agent(gw) as c:
            assert (await c.get("/api/v1/customers/1")).status_code == 200
    (_, outcome), _ = observed["outcomes"]
    assert outcome.status == "cancelled"
    assert 2 * MB <= outcome.notes.get("response_bytes", 2 * MB) < 200 * MB


async def test_the_credential_is_scrubbed_deep_in_a_long_body(http_config, http_pm, upstream, agent,
                                                              upstream_token_env) -> None:
    """The upstream echoes its credential in its first read, across piece boundaries and megabytes in."""
    size = 2 * MB
    config = http_config(upstream.url, stages='{ use = "http_test_outcomes" }')
    async with running_gateway(config, pm=http_pm) as gw, agent(gw, timeout=30) as c:
        r = await c.get(f"/echo-deep/{size}")
    assert r.status_code == 200 and len(r.content) == size
    assert upstream_token_env.encode() not in r.content
    echo = f"Bearer {upstream_token_env}".encode()
    for at in LONG_ECHO_AT:
        assert r.content[at:at + len(echo)] == b"*" * len(echo)
    assert r.content[-10:] == (b"abcdefghij" * (size // 10 + 1))[size - 10:size]
