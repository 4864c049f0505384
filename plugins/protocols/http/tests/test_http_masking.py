"""Response filters (the mask stage's contract, played here by a test double): masked bodies get a correct
length, a failing filter is a 502 before the head or a cut connection after it, never unmasked bytes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from gw.testing import running_gateway

AGENT = {"Authorization": "Bearer tok-agent"}
MASK = '{ use = "http_test_mask", keys = ["ssn"], bound = BOUND }'


def client(gw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}", headers=AGENT)


def contains_any_ssn(text: str) -> bool:
    return any(s in text for s in ("123-45-6789", "987-65-4321", "111-22-3333", "222-33-4444"))


async def test_json_response_is_masked_at_any_nesting_with_a_correct_length(http_config, http_pm,
                                                                            upstream, curl) -> None:
    config = http_config(upstream.url, stages=MASK.replace("BOUND", "65536"))
    async with running_gateway(config, pm=http_pm) as gw:
        async with client(gw) as c:
            r = await c.get("/api/v1/customers")
        code, out, _ = await curl("-H", "Authorization: Bearer tok-agent",
                                  f"http://127.0.0.1:{gw.port('api')}/api/v1/customers")
    assert r.status_code == 200
    assert int(r.headers["content-length"]) == len(r.content)
    doc = r.json()
    assert doc["customers"][0]["ssn"] == "***"
    assert doc["customers"][1]["profile"]["tax"]["ssn"] == "***"
    assert doc["meta"]["owner"]["ssn"] == "***"
    assert doc["customers"][0]["name"] == "Ann"
    assert code == 0 and json.loads(out) == doc


@pytest.mark.parametrize("path", ["/api/v1/customers", "/badjson"])
async def test_filter_failure_before_the_head_is_a_502_without_data(http_config, http_pm, upstream,
                                                                    path) -> None:
    config = http_config(upstream.url, stages=MASK.replace("BOUND", "100"))
    async with running_gateway(config, pm=http_pm) as gw, client(gw) as c:
        r = await c.get(path)
        assert (await c.get("/bytes/10")).status_code == 200, "the gateway keeps serving"
    assert r.status_code == 502
    assert r.json()["reason"] == "mask_failed"
    assert "refused to pass it on unmasked" in r.json()["error"]
    assert not contains_any_ssn(r.text)


async def test_text_filter_streams_and_a_late_failure_cuts_the_connection(http_config, http_pm, upstream,
                                                                          ) -> None:
    stages = '{ use = "http_test_mask", text_fail_after = 3000000 }'
    config = http_config(upstream.url, stages=stages, listener='max_response_buffer = "64KiB"')
    async with running_gateway(config, pm=http_pm) as gw:
        async with client(gw) as c:
            ok = await c.get("/text")
            assert ok.text == "CARD 4111 1111 1111 1111 AND SSN 123-45-6789\n"
            assert int(ok.headers["content-length"]) == len(ok.content)
            big = await c.get("/textbytes/2000000")
            assert big.headers.get("transfer-encoding") == "chunked" and len(big.content) == 2_000_000
            with pytest.raises(httpx.RemoteProtocolError):
                await c.get("/textbytes/5000000")
        async with client(gw) as c:
            assert (await c.get("/text")).status_code == 200


async def test_binary_bodies_pass_unchanged_with_their_length(http_config, http_pm, upstream) -> None:
    config = http_config(upstream.url, stages=MASK.replace("BOUND", "100"))
    async with running_gateway(config, pm=http_pm) as gw, client(gw) as c:
        r = await c.get("/bytes/300000")
    assert r.headers["content-length"] == "300000"
    assert r.content == (bytes(range(256)) * 256 * 5)[:300000]


async def test_an_encoded_body_that_needs_masking_is_refused(http_config, http_pm, upstream) -> None:
    config = http_config(upstream.url, stages=MASK.replace("BOUND", "65536"))
    async with running_gateway(config, pm=http_pm) as gw, client(gw) as c:
        r = await c.get("/gzip")
    assert r.status_code == 502 and r.json()["reason"] == "mask_failed"
    assert "gzip-encoded" in r.json()["error"]
    assert upstream.last().header("Accept-Encoding") == "identity"
