"""The injected upstream credential never reaches the agent, whatever encoding an upstream echoes it in, and is
never stored: end to end with the real plugins, an upstream that echoes the Authorization header it received
(in its body and a header), httpx and curl."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from gw.testing import running_gateway
from http_adversarial import UPSTREAM_SECRET, gw_cli, stored_bytes

SECRET = UPSTREAM_SECRET
#: Every byte form in which the credential would be readable by an agent.
FORMS = {
    **{enc: SECRET.encode(enc) for enc in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "cp500")},
    "json-slash": SECRET.replace("/", "\\/").encode(),
    "percent": quote(SECRET, safe="").encode(),
    "percent-plus": quote_plus(SECRET, safe="").encode(),
    "html": html.escape(SECRET).encode(),
}


def exposed(data: bytes) -> list[str]:
    return [name for name, form in FORMS.items() if form in data]


#: (form the upstream writes, body encoding, Content-Type with "_" for "/" and "~" for "; charset=")
ECHOES = [
    ("raw", "utf-8", "text_plain"),
    ("raw", "utf-16-le", "application_octet-stream"),
    ("raw", "utf-16-be", "application_octet-stream"),
    ("raw", "utf-32-le", "application_octet-stream"),
    ("raw", "utf-32-be", "text_plain"),
    ("raw", "utf-16", "text_plain~utf-16"),
    ("raw", "utf-32", "application_json~utf-32"),
    ("raw", "cp500", "text_plain~cp500"),
    ("slash", "utf-8", "application_json"),
    ("pct", "utf-8", "text_html"),
    ("html", "utf-8", "text_html"),
]


@pytest.mark.parametrize("masking", [False, True], ids=["no-mask", "mask"])
async def test_the_credential_is_scrubbed_in_every_echoed_form(adversarial_config: Any, scripted: Any,
                                                               gw_plugin_manager: Any, masking: bool,
                                                               curl: Any) -> None:
    config = adversarial_config(scripted.url, masking=masking,
                                mask=', pass_through_types = ["application/octet-stream"]')
    problems = []
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        base = f"http://127.0.0.1:{gw.port('api')}"
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            for form, encoding, ctype in ECHOES:
                r = await c.get(f"/echo-auth?form={form}&enc={encoding}&ctype={ctype}")
                seen = b"".join(k + b": " + v + b"\n" for k, v in r.headers.raw) + r.content
                if exposed(seen):
                    problems.append(f"{form}/{encoding}/{ctype}: {exposed(seen)} in {r.status_code}")
                if r.status_code != 200:
                    # With masking, bodies that declare JSON but are not, or text with NULs, are refused.
                    if not masking or r.status_code != 502:
                        problems.append(f"{form}/{encoding}/{ctype}: {r.status_code} {r.text[:200]}")
                elif int(r.headers["content-length"]) != len(r.content):
                    problems.append(f"{form}/{encoding}/{ctype}: wrong length")
        code, out, _ = await curl("-i", "-H", f"Authorization: Bearer {token}",
                                  f"{base}/echo-auth?form=raw&enc=utf-16-le&ctype=application_octet-stream")
        assert code == 0 and not exposed(out)
    assert not problems, "\n".join(problems)
    assert all(s[2]["authorization"] == f"Bearer {SECRET}" for s in scripted.seen), "the upstream got it"
    _, audit, _ = await gw_cli("audit", "list", "--json", "-c", str(config))
    assert not exposed(audit.encode()) and not exposed(stored_bytes(config))


@pytest.mark.parametrize("ctype", ["text_plain~utf-7", "text_plain~x-gw-unknown", "application_json~hz"])
async def test_a_charset_the_credential_cannot_be_found_in_is_refused(adversarial_config: Any, scripted: Any,
                                                                      gw_plugin_manager: Any, ctype: str) -> None:
    config = adversarial_config(scripted.url, masking=False)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            r = await c.get(f"/echo-auth?form=raw&enc=utf-8&ctype={ctype}")
            after = await c.get("/echo-auth?form=raw&enc=utf-8&ctype=text_plain")
    assert r.status_code == 502 and r.json()["reason"] == "credential_scrub"
    assert "charset" in r.json()["error"] and not exposed(r.content)
    assert after.status_code == 200 and not exposed(after.content)


async def test_a_json_body_rewritten_by_masking_is_scrubbed_again(adversarial_config: Any, scripted: Any,
                                                                  gw_plugin_manager: Any) -> None:
    """The mask stage re-serialises a JSON document it changed; the credential it may have decoded from an
    escaped form is blanked after it as well."""
    from http_adversarial import SSN_BARE, Scripted

    escaped = SECRET.replace("/", "\\u002f")
    body = json.dumps({"ssn": SSN_BARE}).encode()[:-1] + f', "auth": "Bearer {escaped}"}}'.encode()
    scripted.routes["/escaped"] = Scripted(body, [("Content-Type", "application/json")])
    config = adversarial_config(scripted.url)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            r = await c.get("/escaped")
    assert r.status_code == 200 and r.json()["ssn"] == "***"
    assert SECRET not in r.json()["auth"] and not exposed(r.content)
    assert not exposed(stored_bytes(config)), "nor in what gw stored"
