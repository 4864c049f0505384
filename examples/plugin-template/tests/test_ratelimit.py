"""The template's test: the stage in a running gateway, through the kit's line protocol and static identity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from gw.testing import KitPlugin, running_gateway, write_pipeline

PIPELINE = """
[identity.static]
use = "static"
users = { alice = ["agents"] }

[pipelines.p]
stages = [{ use = "ratelimit", per_minute = 2 }]

[[listeners]]
name = "lines"
protocol = "lines"
listen = "127.0.0.1:0"
identity = "static"
pipeline = "p"
"""


async def test_the_third_command_in_a_minute_is_refused(tmp_path: Path, gw_plugin_manager: Any,
                                                        gw_register: Any) -> None:
    gw_register(KitPlugin(), "kit")  # the installed gw_ratelimit is found through its entry point
    async with running_gateway(write_pipeline(tmp_path, PIPELINE), pm=gw_plugin_manager) as gw:
        stream = await trio.open_tcp_stream("127.0.0.1", gw.port("lines"))
        await stream.send_all(b"alice\nselect 1\nselect 2\nselect 3\n")
        out = b""
        with trio.fail_after(5):
            while out.count(b"\n") < 4:
                out += await stream.receive_some(4096)
        await stream.aclose()
    assert out.decode().splitlines() == ["OK", "ROW select 1", "ROW select 2",
                                         "DENIED more than 2 commands a minute; slow down"]
