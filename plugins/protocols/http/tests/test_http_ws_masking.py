"""WebSocket messages towards the agent are masked like bodies, end to end with the real plugins: a wsproto
client through gw to a WebSocket upstream that sends scripted messages (JSON and text, fragmented, binary,
pings, a close reason).  Binary messages close the WebSocket while masking applies (1008 with the reason),
unless ``pass_through_types`` allows ``application/octet-stream``; recordings hold only masked forms."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import trio
from gw.testing import running_gateway
from http_adversarial import CARD_SPACED, SSN, SSN_BARE, gw_cli, leaks, stored_bytes
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate

DOC = json.dumps({"name": "Ann", "ssn": SSN_BARE, "nested": {"card_number": "4111111111111111"}})


async def ws_client(port: int, token: str, *, send: list[str] = (), deflate: bool = False  # type: ignore[assignment]
                    ) -> dict[str, Any]:
    """Connect through gw, send ``send``, collect everything until the WebSocket closes."""
    ws = WSConnection(ConnectionType.CLIENT)
    got: dict[str, Any] = {"messages": [], "pings": [], "close": None, "handshake": None}
    partial: list[Any] = []
    extensions = [PerMessageDeflate()] if deflate else []
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(ws.send(Request(host="gw", target="/ws", extensions=extensions,
                                              extra_headers=[(b"authorization", f"Bearer {token}".encode())])))
        with trio.move_on_after(8):
            while got["close"] is None:
                data = await stream.receive_some(65536)
                ws.receive_data(data or None)
                for event in ws.events():
                    if isinstance(event, (AcceptConnection, RejectConnection)):
                        got["handshake"] = event
                        for text in send:
                            await stream.send_all(ws.send(Message(data=text)))
                    elif isinstance(event, Message):
                        partial.append(event.data)
                        if event.message_finished:
                            first = partial[0]
                            joined = ("" if isinstance(first, str) else b"").join(partial)  # type: ignore[attr-defined]
                            got["messages"].append(joined)
                            partial = []
                    elif isinstance(event, Ping):
                        got["pings"].append(bytes(event.payload))
                        await stream.send_all(ws.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        got["close"] = (event.code, event.reason)
                        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                            await stream.send_all(ws.send(event.response()))  # gw may have closed already
                if not data:
                    break
    return got


def _all_received(got: dict[str, Any]) -> bytes:
    parts = [m.encode() if isinstance(m, str) else m for m in got["messages"]]
    parts += got["pings"]
    if got["close"]:
        parts.append(str(got["close"][1]).encode())
    return b"\n".join(parts)


async def test_text_messages_are_masked_and_binary_ones_close_the_websocket(adversarial_config: Any,
                                                                            ws_scripted: Any,
                                                                            gw_plugin_manager: Any) -> None:
    ws_scripted.script = [
        TextMessage(DOC),
        TextMessage(f"card {CARD_SPACED} and ssn {SSN}"),
        TextMessage("ssn: " + SSN_BARE[:4], message_finished=False),  # fragmented across three frames
        TextMessage(SSN_BARE[4:7], message_finished=False),
        TextMessage(SSN_BARE[7:] + "\n"),
        Ping(payload=f"ssn {SSN}".encode()),
        BytesMessage(b"\x00raw " + SSN_BARE.encode()),
        TextMessage("never delivered: after the binary message gw closed"),
    ]
    config = adversarial_config(ws_scripted.url)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        got = await ws_client(gw.port("api"), token, send=[f"my ssn is {SSN}"], deflate=True)
    assert isinstance(got["handshake"], AcceptConnection)
    assert "sec-websocket-extensions" not in ws_scripted.upgrade_headers[0], "gw offers no compression"
    assert not leaks(_all_received(got)), got
    first = json.loads(got["messages"][0])
    assert first == {"name": "Ann", "ssn": "***", "nested": {"card_number": "***"}}
    assert got["messages"][1] == "card *** and ssn ***"
    assert got["messages"][2] == "ssn: ***\n"
    assert got["pings"] == [b""], "a ping payload could carry anything: emptied while masking applies"
    assert len(got["messages"]) == 3, "nothing after the binary message"
    code, reason = got["close"]
    assert code == 1008 and "binary" in reason and "pass_through_types" in reason
    await trio.sleep(0.2)
    assert ws_scripted.received == [f"my ssn is {SSN}"], "what the agent sends is relayed unchanged"
    _, sessions, _ = await gw_cli("sessions", "list", "--json", "-c", str(config))
    export = "".join([(await gw_cli("sessions", "export", s["id"], "--format", "jsonl", "-c", str(config)))[1]
                      for s in json.loads(sessions)])
    assert "card *** and ssn ***" in export
    assert not leaks(export.encode(), values=(SSN_BARE, CARD_SPACED)) and not leaks(stored_bytes(config),
                                                                                 values=(SSN_BARE, CARD_SPACED))
    _, audit, _ = await gw_cli("audit", "list", "--json", "-c", str(config))
    (entry,) = [e for e in json.loads(audit) if e["text"] == "GET /ws"]
    assert entry["outcome"]["error_code"] == "stream_filter_failed"


async def test_binary_messages_pass_when_allowed_and_close_reasons_are_masked(adversarial_config: Any,
                                                                             ws_scripted: Any,
                                                                             gw_plugin_manager: Any) -> None:
    ws_scripted.script = [
        BytesMessage(b"\x01\x02binary"),
        TextMessage(DOC),
        CloseConnection(code=4000, reason=f"bye {SSN}"),
    ]
    config = adversarial_config(ws_scripted.url, mask=', pass_through_types = ["application/octet-stream"]')
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        got = await ws_client(gw.port("api"), token)
    assert got["messages"][0] == b"\x01\x02binary"
    assert json.loads(got["messages"][1])["ssn"] == "***"
    assert got["close"] == (4000, "bye ***")


async def test_without_masking_frames_are_relayed_as_sent(adversarial_config: Any, ws_scripted: Any,
                                                          gw_plugin_manager: Any) -> None:
    ws_scripted.script = [BytesMessage(b"\x00\xffbinary"), TextMessage(DOC), Ping(payload=b"keepalive"),
                          CloseConnection(code=1000)]
    config = adversarial_config(ws_scripted.url, masking=False)
    async with running_gateway(config, pm=gw_plugin_manager) as gw:
        token = gw.token("agent-7", ["agents"])
        got = await ws_client(gw.port("api"), token, send=["hello"])
    assert got["messages"][:2] == [b"\x00\xffbinary", DOC]
    assert got["pings"] == [b"keepalive"]


async def test_the_credential_is_blanked_in_websocket_messages(adversarial_config: Any, ws_scripted: Any,
                                                               gw_plugin_manager: Any) -> None:
    """An upstream that echoes the injected credential over the WebSocket: blanked in text and binary
    messages, in UTF-16 too, with masking (message by message) and without (in the raw frames)."""
    from http_adversarial import UPSTREAM_SECRET

    ws_scripted.script = [TextMessage(f"your token: Bearer {UPSTREAM_SECRET}"),
                          BytesMessage(UPSTREAM_SECRET.encode("utf-16-le")),
                          CloseConnection(code=1000, reason=UPSTREAM_SECRET)]
    forms = [UPSTREAM_SECRET.encode(enc) for enc in ("utf-8", "utf-16-le")]
    for masking in (True, False):
        config = adversarial_config(ws_scripted.url, masking=masking,
                                    mask=', pass_through_types = ["application/octet-stream"]')
        async with running_gateway(config, pm=gw_plugin_manager) as gw:
            got = await ws_client(gw.port("api"), gw.token("agent-7", ["agents"]))
        received = _all_received(got)
        assert len(got["messages"]) == 2 and got["close"][0] == 1000, got
        assert not [f for f in forms if f in received], (masking, got)
        assert not [f for f in forms if f in stored_bytes(config)]
