"""Masking that holds on HTTP, end to end with the real plugins (jwt, audit, guard, mask, record on sqlite),
httpx and curl, against an upstream whose responses the test scripts byte for byte.

Each case is a response an upstream could send for data whose columns the pipeline masks (an SSN stored as
bare digits under an ``ssn`` key or column, a card number, an e-mail address).  Every case ends one of two
ways: masked (200, no raw value anywhere in the status line, headers or body, in any encoding), or refused
(502 JSON saying why).  Afterwards nothing gw stored -- audit, recordings, the database and its WAL -- holds a
raw value either."""

from __future__ import annotations

import codecs
import gzip
import json
from typing import Any

import httpx
import pytest
from gw.testing import running_gateway
from http_adversarial import (
    CARD,
    DOC,
    DOC_JSON,
    EMAIL,
    SSN,
    SSN_BARE,
    Scripted,
    gw_cli,
    leaks,
    stored_bytes,
)

JSON = [("Content-Type", "application/json")]


def _ctype(value: str, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    return [("Content-Type", value), *extra]


CSV_BODY = f"id,name,ssn,email\r\n7,Ann,{SSN_BARE},{EMAIL}\r\n8,Bob,{SSN_BARE},bob-at-example\r\n".encode()
TEXT = f"customer Ann\nssn: {SSN_BARE}\ncard {CARD[:4]} {CARD[4:8]} {CARD[8:12]} {CARD[12:]} and {SSN}\n"

#: name -> (response, expected: "masked" or the refusal's reason, a value that must survive when masked)
CASES: dict[str, tuple[Scripted, str, str | None]] = {
    # content types gw cannot parse
    "octet-stream": (Scripted(DOC_JSON, _ctype("application/octet-stream")), "mask_failed", None),
    "msgpack": (Scripted(b"\x85\xa3ssn\xa9" + SSN_BARE.encode(), _ctype("application/msgpack")), "mask_failed", None),
    "multipart-form": (Scripted(b"--b\r\nContent-Disposition: form-data; name=\"ssn\"\r\n\r\n" + SSN_BARE.encode()
                                + b"\r\n--b--\r\n", _ctype("multipart/form-data; boundary=b")), "mask_failed", None),
    "multipart-mixed": (Scripted(b"--b\r\nContent-Type: application/json\r\n\r\n" + DOC_JSON + b"\r\n--b--\r\n",
                                 _ctype("multipart/mixed; boundary=b")), "mask_failed", None),
    "jsonx": (Scripted(DOC_JSON, _ctype("application/jsonx")), "mask_failed", None),
    "type-list": (Scripted(DOC_JSON, _ctype("application/json,text/plain")), "mask_failed", None),
    "two-content-types": (Scripted(DOC_JSON, _ctype("application/json", ("Content-Type", "text/plain"))),
                          "mask_failed", None),
    "no-content-type": (Scripted(DOC_JSON, []), "mask_failed", None),
    "repeated-charset": (Scripted(DOC_JSON, _ctype("application/json; charset=utf-8; charset=latin1")),
                         "mask_failed", None),
    "param-without-value": (Scripted(DOC_JSON, _ctype("application/json; charset")), "mask_failed", None),
    "unknown-charset": (Scripted(DOC_JSON, _ctype("application/json; charset=x-gw-unknown")), "mask_failed",
                        None),
    "utf7-text": (Scripted(f"ssn +ADI-{SSN_BARE[1:]}\n".encode(), _ctype("text/plain; charset=utf-7")),
                  "mask_failed", None),
    "utf16le-text-undeclared": (Scripted(TEXT.encode("utf-16-le"), _ctype("text/plain")), "mask_failed", None),
    "image": (Scripted(b"\x89PNG\r\n\x1a\n" + SSN_BARE.encode(), _ctype("image/png")), "mask_failed", None),
    "pdf": (Scripted(b"%PDF-1.4 " + SSN_BARE.encode(), _ctype("application/pdf")), "mask_failed", None),
    "error-page-octets": (Scripted(DOC_JSON, _ctype("application/octet-stream"), 404, "Not Found"),
                          "mask_failed", None),
    "gzip-json": (Scripted(gzip.compress(DOC_JSON), _ctype("application/json", ("Content-Encoding", "gzip"))),
                  "mask_failed", None),
    "csv-without-header": (Scripted(CSV_BODY, _ctype("text/csv; header=absent")), "mask_failed", None),
    # content gw parses: masked
    "json": (Scripted(DOC_JSON, JSON), "masked", "Ann"),
    "json-upper-case-type": (Scripted(DOC_JSON, _ctype("Application/JSON")), "masked", "Ann"),
    "json-quoted-charset": (Scripted(DOC_JSON, _ctype('application/json; charset="utf-8"')), "masked", "Ann"),
    "problem-json": (Scripted(DOC_JSON, _ctype("application/problem+json"), 400, "Bad Request"), "masked",
                     "Ann"),
    "vendor-json": (Scripted(DOC_JSON, _ctype("application/vnd.api+json")), "masked", "Ann"),
    "text-json": (Scripted(DOC_JSON, _ctype("text/json")), "masked", "Ann"),
    "json-utf16-declared": (Scripted(json.dumps(DOC).encode("utf-16"), _ctype("application/json; charset=utf-16")),
                            "masked", None),
    "json-utf16-undeclared": (Scripted(json.dumps(DOC).encode("utf-16-le"), JSON), "masked", None),
    "json-utf32-undeclared": (Scripted(json.dumps(DOC).encode("utf-32-be"), JSON), "masked", None),
    "json-escaped-digits": (Scripted(json.dumps(DOC).replace(SSN_BARE, "".join(f"\\u{ord(c):04x}" for c in SSN_BARE))
                                     .encode(), JSON), "masked", "Ann"),
    "json-chunked": (Scripted(DOC_JSON, JSON, chunked=True), "masked", "Ann"),
    "ndjson": (Scripted(DOC_JSON + b"\n" + DOC_JSON + b"\n", _ctype("application/x-ndjson")), "masked", "Ann"),
    "watch-stream": (Scripted(json.dumps({"type": "ADDED", "object": DOC}).encode() + b"\n",
                              _ctype("application/json;stream=watch"), chunked=True), "masked", "Ann"),
    "csv": (Scripted(CSV_BODY, _ctype("text/csv")), "masked", "Ann"),
    "csv-semicolons": (Scripted(CSV_BODY.replace(b",", b";"), _ctype("text/csv; charset=utf-8")), "masked", "Ann"),
    "csv-spelled-header": (Scripted(f"Id,Name,Customer SSN\n7,Ann,{SSN_BARE}\n".encode(), _ctype("text/csv")),
                           "masked", "Ann"),
    "csv-quoted-multiline": (Scripted(f'id,name,ssn\n7,"Ann\nSmith, Jr.",{SSN_BARE}\n'.encode(),
                                      _ctype("text/csv"), chunked=True), "masked", "Smith"),
    "csv-shifted-row": (Scripted(f"id,name,ssn\n7,Smith, Ann,{SSN_BARE}\n8,Bob,{SSN_BARE}\n".encode(),
                                 _ctype("text/csv")), "masked", "Bob"),
    "csv-cr-line-ends": (Scripted(CSV_BODY.replace(b"\r\n", b"\r"), _ctype("text/csv")), "masked", "Ann"),
    "csv-preamble": (Scripted(b"# export\n" + CSV_BODY, _ctype("text/csv")), "masked", None),
    "json-in-text": (Scripted(json.dumps(DOC, indent=2).encode(), _ctype("text/plain")), "masked", "Ann"),
    "tsv": (Scripted(CSV_BODY.replace(b",", b"\t"), _ctype("text/tab-separated-values")), "masked", "Ann"),
    "csv-bom-quoted-header": (Scripted(codecs.BOM_UTF8 + f'"id","SSN"\n"7","{SSN_BARE}"\n'.encode(),
                                       _ctype("text/csv")), "masked", None),
    "form": (Scripted(f"name=Ann&ssn={SSN_BARE}&card_number={CARD}".encode(),
                      _ctype("application/x-www-form-urlencoded")), "masked", "Ann"),
    "xml": (Scripted(f"<customer><name>Ann</name><ssn>{SSN_BARE}</ssn><email>{EMAIL}</email></customer>".encode(),
                     _ctype("application/xml")), "masked", "Ann"),
    "xml-attribute": (Scripted(f'<customer name="Ann" ssn="{SSN_BARE}"/>'.encode(), _ctype("text/xml")), "masked",
                      "Ann"),
    "yaml": (Scripted(f"name: Ann\nssn: {SSN_BARE}\ncard_number: '{CARD}'\n".encode(), _ctype("application/yaml")),
             "masked", "Ann"),
    "event-stream": (Scripted(b"event: row\ndata: " + DOC_JSON + b"\n\n", _ctype("text/event-stream"), chunked=True),
                     "masked", "Ann"),
    "javascript": (Scripted(b"var customer = " + DOC_JSON + b";\n", _ctype("application/javascript")), "masked",
                   "Ann"),
    "text": (Scripted(TEXT.encode(), _ctype("text/plain")), "masked", "Ann"),
    "text-utf16-bom": (Scripted(TEXT.encode("utf-16"), _ctype("text/plain")), "masked", None),
    "text-utf16-declared": (Scripted(TEXT.encode("utf-16-be"), _ctype("text/plain; charset=UTF-16BE")), "masked",
                            None),
    "text-ebcdic": (Scripted(TEXT.encode("cp500"), _ctype("text/plain; charset=cp500")), "masked", None),
    "empty-octets": (Scripted(b"", _ctype("application/octet-stream")), "masked", None),
    # headers and the status line
    "headers": (Scripted(b"{}", _ctype("application/json", ("X-Customer-Ssn", SSN_BARE), ("X-Card-Number", CARD),
                                       ("Set-Cookie", f"owner={EMAIL}; Path=/"), ("X-Note", f"ssn {SSN}"),
                                       ("X-SSN", SSN_BARE), ("X-Customer-SSN-Value", SSN_BARE),
                                       ("Location", f"/api/v1/customers?ssn={SSN_BARE}"))), "masked", None),
    "reason-phrase": (Scripted(b"{}", JSON, 404, f"No customer with ssn {SSN_BARE}"), "masked", None),
}


def _route(name: str) -> str:
    return f"/api/v1/r/{name}"


@pytest.fixture
def corpus_upstream(scripted: Any) -> Any:
    scripted.routes.update({_route(name): spec for name, (spec, _, _) in CASES.items()})
    return scripted


def _status_line_and_headers(r: httpx.Response) -> bytes:
    head = f"{r.status_code} {r.reason_phrase}\n".encode()
    return head + b"".join(k + b": " + v + b"\n" for k, v in r.headers.raw)


async def test_every_response_is_masked_or_refused_and_nothing_raw_is_stored(
        adversarial_config: Any, corpus_upstream: Any, gw_plugin_manager: Any) -> None:
    config = adversarial_config(corpus_upstream.url)
    problems: list[str] = []
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            for name, (_, expected, kept) in CASES.items():
                r = await c.get(_route(name))
                seen = _status_line_and_headers(r) + r.content
                found = leaks(seen)
                if found:
                    problems.append(f"{name}: leaked {found}")
                if expected == "masked":
                    if r.status_code >= 500:
                        problems.append(f"{name}: expected a masked response, got {r.status_code} {r.text[:300]}")
                    elif kept and kept.encode() not in r.content:
                        problems.append(f"{name}: over-masked, {kept!r} is gone: {r.content[:200]!r}")
                else:
                    if r.status_code != 502 or r.json().get("reason") != expected:
                        problems.append(f"{name}: expected 502 {expected}, got {r.status_code} {r.text[:200]}")
                    elif "pass_through_types" not in r.json()["error"] and name not in (
                            "gzip-json", "csv-without-header", "utf16le-text-undeclared"):
                        problems.append(f"{name}: the refusal does not tell what to do: {r.json()['error']}")
            assert (await c.get(_route("json"))).status_code == 200, "the connection is still usable"
    assert not problems, "\n".join(problems)

    _, audit, _ = await gw_cli("audit", "list", "--json", "-c", str(config))
    _, sessions, _ = await gw_cli("sessions", "list", "--json", "-c", str(config))
    exports = [(await gw_cli("sessions", "export", s["id"], "--format", "jsonl", "-c", str(config)))[1]
               for s in json.loads(sessions)]
    assert "GET /api/v1/r/headers" in audit and any("/api/v1/r/csv" in e for e in exports)
    for what, data in [("audit", audit.encode()), ("recordings", "".join(exports).encode()),
                       ("the data directory", stored_bytes(config))]:
        assert not leaks(data), f"{what} holds raw values: {leaks(data)}"


async def test_masked_values_keep_the_shape_clients_parse(adversarial_config: Any, corpus_upstream: Any,
                                                          gw_plugin_manager: Any, curl: Any) -> None:
    config = adversarial_config(corpus_upstream.url)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        base = f"http://127.0.0.1:{gw.port('api')}"
        code, out, err = await curl("-i", "-H", f"Authorization: Bearer {token}", f"{base}{_route('csv')}")
        assert code == 0, err
        _, _, body = out.partition(b"\r\n\r\n")
        assert body == b"id,name,ssn,email\r\n7,Ann,***,***\r\n8,Bob,***,***\r\n"
        code, out, _ = await curl("-sS", "-D", "-", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}",
                                  f"{base}{_route('headers')}")
        headers = out.decode().lower()
        assert "x-customer-ssn: ***" in headers and "x-card-number: ***" in headers
        assert "x-ssn: ***" in headers and "set-cookie: owner=***; path=/" in headers
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            doc = (await c.get(_route("json-utf16-declared"))).content.decode("utf-16")
            assert json.loads(doc)["ssn"] == "***" and json.loads(doc)["name"] == "Ann"
            missing = await c.get(_route("reason-phrase"))
            assert missing.status_code == 404 and missing.reason_phrase == "Not Found"
            form = (await c.get(_route("form"))).text
            assert form == "name=Ann&ssn=***&card_number=***"
            xml = (await c.get(_route("xml"))).text
            assert xml == "<customer><name>Ann</name><ssn>***</ssn><email>***</email></customer>"
            refused = await c.get(_route("msgpack"))
            assert refused.json()["request_id"] == refused.headers["x-gw-request-id"]
            assert "msgpack" in refused.json()["error"]


async def test_pass_through_types_let_listed_content_through_unchanged(adversarial_config: Any,
                                                                      corpus_upstream: Any,
                                                                      gw_plugin_manager: Any) -> None:
    config = adversarial_config(corpus_upstream.url,
                                mask=', pass_through_types = ["application/octet-stream", "image/*"]')
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            octets = await c.get(_route("octet-stream"))
            image = await c.get(_route("image"))
            still_refused = await c.get(_route("msgpack"))
            unparseable = await c.get(_route("type-list"))
    assert octets.status_code == 200 and octets.content == DOC_JSON
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert still_refused.status_code == 502 and unparseable.status_code == 502


async def test_a_malformed_upstream_head_is_not_quoted_back(adversarial_config: Any, gw_plugin_manager: Any
                                                            ) -> None:
    """The parser's complaint about a malformed response names the problem, never the bytes (which may be
    data masking protects), in the 502 and in what gw stores."""
    import trio

    async def handler(stream: trio.SocketStream) -> None:
        with trio.move_on_after(5):
            await stream.receive_some(65536)
            await stream.send_all(f"HTTP/1.1 200 OK\r\nX-Customer ssn {SSN_BARE}\r\n\r\n".encode())
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, handler, 0)
        port = listeners[0].socket.getsockname()[1]
        config = adversarial_config(f"http://127.0.0.1:{port}")
        async with running_gateway(config, pm=gw_plugin_manager) as gw:
            token = gw.token("agent-7", ["agents"])
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}",
                                         headers={"Authorization": f"Bearer {token}"}) as c:
                r = await c.get("/api/v1/x")
        nursery.cancel_scope.cancel()
    assert r.status_code == 502 and r.json()["reason"] == "upstream_protocol"
    assert "illegal header line" in r.json()["error"] and not leaks(r.content)
    assert not leaks(stored_bytes(config))


async def test_mask_stage_option_errors_name_the_key(adversarial_config: Any, corpus_upstream: Any) -> None:
    config = adversarial_config(corpus_upstream.url, mask=', pass_through_types = ["application/octet-stream; x=1"]')
    code, _, err = await gw_cli("check", str(config), check=False)
    assert code != 0
    assert "pass_through_types" in err and "is not a media type" in err


@pytest.mark.parametrize("case", ["json", "csv", "text", "headers"])
async def test_clean_values_are_not_over_masked(adversarial_config: Any, corpus_upstream: Any,
                                                gw_plugin_manager: Any, case: str) -> None:
    config = adversarial_config(corpus_upstream.url)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port('api')}",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            r = await c.get(_route(case))
    assert r.status_code == 200
    if case == "json":
        doc = r.json()
        assert (doc["id"], doc["name"]) == (7, "Ann") and doc["ssn"] == "***" and doc["email"] == "***"
        assert doc["card_number"] == "***" and SSN not in doc["note"]
    elif case == "headers":
        assert r.headers["content-type"] == "application/json" and r.content == b"{}"
    else:
        assert "Ann" in r.text and "customer" in r.text or "id,name" in r.text
    assert CARD not in r.text and EMAIL not in r.text
