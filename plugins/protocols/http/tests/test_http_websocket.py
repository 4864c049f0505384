"""Upgrade relay: a WebSocket echo through gw (wsproto client -> gw -> wsproto echo server), recorded on the
ws-client / ws-server channels; an upgrade is a command like any other and can be refused."""

from __future__ import annotations

from typing import Any

import trio
from gw.testing import running_gateway
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, RejectConnection, RejectData, Request


async def websocket_session(port: int, messages: list[str], token: str = "tok-agent"
                            ) -> tuple[Any, list[str], bytes]:
    """Open a WebSocket through gw, send ``messages``, collect the echoes, close.  Returns (handshake result
    event, echoes, body of a rejection)."""
    ws = WSConnection(ConnectionType.CLIENT)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    echoes: list[str] = []
    partial = ""
    rejected = b""
    handshake: Any = None
    async with stream:
        auth = [(b"authorization", f"Bearer {token}".encode())]
        await stream.send_all(ws.send(Request(host="gw", target="/ws/exec", extra_headers=auth)))
        with trio.fail_after(5):
            pending = list(messages)
            closing = False
            while True:
                data = await stream.receive_some(65536)
                ws.receive_data(data or None)
                for event in ws.events():
                    if isinstance(event, (AcceptConnection, RejectConnection)):
                        handshake = event
                        if isinstance(event, RejectConnection):
                            continue
                        for text in pending:
                            await stream.send_all(ws.send(Message(data=text)))
                    elif isinstance(event, RejectData):
                        rejected += event.data
                        if event.body_finished:
                            return handshake, echoes, rejected
                    elif isinstance(event, Message):
                        partial += event.data
                        if not event.message_finished:
                            continue
                        echoes.append(partial)
                        partial = ""
                        if len(echoes) == len(messages) and not closing:
                            closing = True
                            await stream.send_all(ws.send(CloseConnection(code=1000)))
                    elif isinstance(event, CloseConnection):
                        return handshake, echoes, rejected
                if not data:
                    return handshake, echoes, rejected


async def test_websocket_echo_through_gw_is_relayed_and_recorded(http_config, http_pm, ws_upstream,
                                                                observed) -> None:
    async with running_gateway(http_config(ws_upstream), pm=http_pm) as gw:
        handshake, echoes, _ = await websocket_session(gw.port("api"), ["ls -la", "x" * 70000, "exit"])
    assert isinstance(handshake, AcceptConnection)
    assert echoes == ["ls -la", "x" * 70000, "exit"]
    command = observed["commands"][0]
    assert command.verb == "GET" and "upgrade" in command.flags
    assert command.attributes["upgrade"] == "websocket"
    streams = observed["streams"]
    sent, received = bytes(streams[(1, "ws-client")]), bytes(streams[(1, "ws-server")])
    # Stages see messages, one per feed: the agent's unmasked from RFC 6455's client masking.
    assert sent == received == b"ls -la" + b"x" * 70000 + b"exit"
    ((_, outcome),) = observed["outcomes"]
    assert outcome.tag == "101" and outcome.status == "ok"
    assert outcome.notes["messages_from_client"] == outcome.notes["messages_from_upstream"] == 3
    assert outcome.notes["bytes_from_client"] > 70000


async def test_a_refused_upgrade_gets_the_403_json(http_config, http_pm, ws_upstream) -> None:
    stages = '{ use = "http_test_deny", rules = [{ flags = ["upgrade"], message = "no exec for agents" }] }'
    async with running_gateway(http_config(ws_upstream, stages=stages), pm=http_pm) as gw:
        handshake, echoes, rejected = await websocket_session(gw.port("api"), ["hello"])
    assert isinstance(handshake, RejectConnection) and handshake.status_code == 403
    assert b"no exec for agents" in rejected
    assert echoes == []
