"""The jwt provider behind a real listener of a running gateway: refusals reach the client with their message
and every stage (hence the audit stage) sees them with their reason code.

The protocol here is a test double (one line with the token, one reply line); real protocols carry the same
messages in their own errors (PostgreSQL ErrorResponse 28P01 ...) and are tested in their plugins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import jwt
import pytest
import trio
from gw import hookimpl
from gw.errors import AuthenticationError
from gw.identity import Credential
from gw.protocol import ListenerOptions, ProtocolHandler
from gw.stage import Stage
from gw.testing import running_gateway, write_pipeline
from jwt_testkit import SECRET, SigningKey, TestIdP, claims_for, hand_made_token


class TokenLineHandler(ProtocolHandler):
    """Reads one line (the token), answers ``OK subject groups`` or ``ERR message``."""

    name = "tokenline"
    Options = ListenerOptions

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        data = b""
        while not data.endswith(b"\n"):
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        try:
            identity = await self.listener.authenticate(Credential("token", data.decode().strip()),
                                                        client_address=client_address)
        except AuthenticationError as e:
            await stream.send_all(f"ERR {e}\n".encode())
            return
        await stream.send_all(f"OK {identity.subject} {','.join(identity.groups)}\n".encode())


class RefusalLog(Stage):
    """Keeps what ``session_refused`` receives, as the audit stage would record it."""

    name = "refusal_log"
    seen: ClassVar[list[tuple[str, str]]] = []

    async def session_refused(self, listener: str, protocol: str, client_address: str, claimed_user: str,
                              reason: str, message: str) -> None:
        RefusalLog.seen.append((reason, message))


class Inline:
    @hookimpl
    def gw_register_protocols(self, register: Callable[[type[Any]], None]) -> None:
        register(TokenLineHandler)

    @hookimpl
    def gw_register_stages(self, register: Callable[[type[Any]], None]) -> None:
        register(RefusalLog)


CONFIG = """
[identity.dev]
use = "jwt"
issuer = "gw-dev"
audience = "gw"
secret_env = "GW_DEV_SECRET"
deny_subjects = ["mallory"]

[identity.corp]
use = "jwt"
issuer = "{issuer}"
audience = "gw"
groups_claim = "realm_access.roles"

[pipelines.p]
stages = [{{ use = "refusal_log" }}]

[[listeners]]
name = "dev"
protocol = "tokenline"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "p"
allow_groups = ["agents"]

[[listeners]]
name = "corp"
protocol = "tokenline"
listen = "127.0.0.1:0"
identity = "corp"
pipeline = "p"
"""


async def talk(port: int, text: str) -> str:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(text.encode() + b"\n")
        reply = b""
        with trio.fail_after(5):
            while not reply.endswith(b"\n"):
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                reply += chunk
    return reply.decode().strip()


async def test_refusals_reach_the_client_and_the_stages(tmp_path: Path, idp: TestIdP, gw_plugin_manager: Any,
                                                        gw_register: Callable[[object, str], None],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_DEV_SECRET", SECRET)
    gw_register(Inline(), "jwt-test-inline")
    RefusalLog.seen = []
    key = SigningKey.rsa()
    idp.keys = [key]
    path = write_pipeline(tmp_path, CONFIG.format(issuer=idp.issuer))
    now = int(time.time())
    async with running_gateway(path, pm=gw_plugin_manager) as gw:
        dev, corp = gw.port("dev"), gw.port("corp")
        assert await talk(dev, gw.token("agent-7", ["agents"], identity="dev")) == "OK agent-7 agents"
        corp_claims = claims_for(idp.issuer, groups=None, realm_access={"roles": ["dba"]})
        assert await talk(corp, key.sign(corp_claims)) == "OK agent-7 dba"
        cases = {
            "expired": (dev, jwt.encode(claims_for("gw-dev", iat=now - 900, exp=now - 600), SECRET)),
            "wrong_audience": (dev, jwt.encode(claims_for("gw-dev", audience="other"), SECRET)),
            "bad_signature": (dev, jwt.encode(claims_for("gw-dev"), SECRET + "x")),
            "unsupported_algorithm": (corp, hand_made_token({"alg": "none"}, corp_claims)),
            "unknown_key": (corp, SigningKey.rsa().sign(corp_claims)),
            "denied_subject": (dev, gw.token("mallory", ["agents"], identity="dev")),
            "group_not_allowed": (dev, gw.token("agent-7", ["guests"], identity="dev")),
        }
        for reason, (port, text) in cases.items():
            reply = await talk(port, text)
            assert reply.startswith("ERR "), (reason, reply)
            assert (reason, reply[4:]) in RefusalLog.seen, (reason, RefusalLog.seen)
        # a healthy client right after all that
        assert await talk(dev, gw.token("agent-8", ["agents"], identity="dev")) == "OK agent-8 agents"
