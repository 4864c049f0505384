"""The mask stage inside a running gateway: core runs its filters before observing stages, so what an observer
(``record``, ``audit``) sees -- and could persist -- is already masked, and the mask counts reach the outcome.

The protocol and the identity provider here are test doubles (a line protocol: each line after the token is
one single-column row of a query result), because no real protocol plugin may be imported by this plugin's
tests; the real PostgreSQL path is covered by the end-to-end tests in the repository's tests/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from gw import hookimpl
from gw.errors import AuthenticationError
from gw.identity import Credential, IdentityProvider, ProviderOptions
from gw.model import Column, Identity, Kind, Outcome
from gw.protocol import ListenerOptions, ProtocolHandler
from gw.stage import Stage
from gw.testing import running_gateway, write_pipeline

SEEN: list[tuple[str, Any]] = []


class TokenIsSubject(IdentityProvider):
    name = "mask_test_identity"
    Options = ProviderOptions

    async def authenticate(self, credential: Credential) -> Identity:
        if not str(credential.secret).startswith("agent"):
            raise AuthenticationError("unknown token", reason="invalid_token")
        return Identity(str(credential.secret), ("agents",), provider=self.instance_name)


class RowLines(ProtocolHandler):
    """Line 1: the token.  Every further line: one row of a ``select note from people`` result."""

    name = "mask_test_rows"
    Options = ListenerOptions

    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        data = b""
        while not data.endswith(b"\n.\n"):
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        token, *lines = data.decode().split("\n")[:-2]
        identity = await self.listener.authenticate(Credential("token", token), client_address=client_address)
        sr = await self.listener.start_session(identity, client_address=client_address)
        try:
            cmd = sr.command("select ssn, note from people", language="sql", kind=Kind.READ, verb="select")
            run = await sr.decide(cmd, self)
            columns = [Column("ssn", type_name="text", sources=("public.people.ssn",)),
                       Column("note", type_name="text", sources=("public.people.note",))]
            rows = run.rows(columns)
            out = []
            for line in lines:
                ssn, note = line.split("|")
                values: list[bytes | None] = [ssn.encode(), note.encode()]
                if rows is not None:
                    values = rows.row(values)
                out.append(b"|".join(v or b"NULL" for v in values))
            await stream.send_all(b"\n".join(out) + b"\n")
            await run.complete(Outcome(rows=len(out), tag=f"SELECT {len(out)}"))
        finally:
            await sr.end("client_closed")

    async def notice(self, message: str) -> None:
        """No notices on this protocol."""


class Observer(Stage):
    """Stands in for ``record``/``audit``: remembers every row and outcome it is shown."""

    name = "mask_test_observer"

    def rows(self, command: Any, columns: Any) -> Any:
        class Keep:
            def row(self, values: list[bytes | None]) -> list[bytes | None]:
                SEEN.append(("row", list(values)))
                return values
        return Keep()

    async def completed(self, command: Any, outcome: Outcome) -> None:
        SEEN.append(("notes", dict(outcome.notes)))


class DoublesPlugin:
    @hookimpl
    def gw_register_protocols(self, register: Any) -> None:
        register(RowLines)

    @hookimpl
    def gw_register_identity_providers(self, register: Any) -> None:
        register(TokenIsSubject)

    @hookimpl
    def gw_register_stages(self, register: Any) -> None:
        register(Observer)


CONFIG = """
[identity.dev]
use = "mask_test_identity"

[pipelines.agents]
stages = [{ use = "mask_test_observer" }, MASK, { use = "mask_test_observer" }]

[[listeners]]
name = "db"
protocol = "mask_test_rows"
listen = "127.0.0.1:0"
identity = "dev"
pipeline = "agents"
"""


async def query(port: int, rows: list[str]) -> list[str]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(("agent-7\n" + "".join(r + "\n" for r in rows) + ".\n").encode())
        out = b""
        with trio.fail_after(5):
            while out.count(b"\n") < len(rows):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                out += chunk
    return out.decode().splitlines()


async def test_observers_only_ever_see_masked_rows(tmp_path: Path, gw_plugin_manager: Any, gw_register: Any,
                                                   canonical: str) -> None:
    SEEN.clear()
    gw_register(DoublesPlugin(), "mask_test_doubles")
    path = write_pipeline(tmp_path, CONFIG.replace("MASK", canonical))
    raw = ["123-45-6789|card 4111 1111 1111 1111, mail ann@example.com",
           "219-09-9998|ref 4111 1111 1111 1112"]
    async with running_gateway(path, pm=gw_plugin_manager) as gw:
        got = await query(gw.port("db"), raw)
    assert got == ["***|card ***, mail ***", "***|ref 4111 1111 1111 1112"]
    seen_rows = [v for kind, v in SEEN if kind == "row"]
    # Both observers -- configured before and after mask -- saw the masked rows only.
    assert len(seen_rows) == 4
    for values in seen_rows:
        text = b"|".join(v or b"" for v in values)
        for secret in (b"123-45-6789", b"219-09-9998", b"4111 1111 1111 1111", b"ann@example.com"):
            assert secret not in text
    notes = [v for kind, v in SEEN if kind == "notes"]
    expected = {"columns": 2, "detected": {"credit_card": 1, "email": 1}}
    # Core completes transforming stages first, so observers on either side of mask (audit is usually
    # first in the pipeline) see the counts.
    assert notes == [{"masked": expected}, {"masked": expected}]
