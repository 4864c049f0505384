"""The shared vocabulary of core: sizes, ports, channels, session endings, outcome status, default admission,
the background nursery, and plugin ``open()`` failures reported as configuration errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

import pytest
import trio
from gw import hookimpl
from gw.errors import AccessDenied, ConfigError
from gw.identity import IdentityProvider, ProviderOptions
from gw.model import Channel, Direction, Identity, OutcomeStatus, SessionEnd
from gw.runtime import Runtime
from gw.stage import Stage, StageOptions
from gw.testing import write_pipeline
from gw.types import ByteSize, Port, StrictModel, format_size, parse_size, size_range
from pydantic import ValidationError


@pytest.mark.parametrize(("text", "expected"), [
    (65536, 65536), ("0", 0), ("512", 512), ("512B", 512), ("1kB", 1000), ("1KB", 1000), ("1KiB", 1024),
    ("1MB", 10**6), ("1mb", 10**6), ("1MiB", 2**20), ("1mib", 2**20), ("2GB", 2 * 10**9), ("2GiB", 2 * 2**30),
    (" 8 MiB ", 8 * 2**20),
])
def test_sizes_have_one_convention(text: Any, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["1m", "16M", "1g", "4k", "1.5MB", "-1", "1TB", "MB", "", True, 1.5, None])
def test_ambiguous_or_malformed_sizes_are_refused(text: Any) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_the_ambiguous_unit_message_offers_both_spellings() -> None:
    with pytest.raises(ValueError) as e:
        parse_size("16m")
    assert '"16MB"' in str(e.value) and '"16MiB"' in str(e.value)


def test_format_size_round_trips() -> None:
    for n in (0, 1, 1000, 1024, 10**6, 2**20, 3 * 2**30, 123457):
        assert parse_size(format_size(n)) == n
    assert format_size(2**20) == "1MiB" and format_size(10**6) == "1MB"


class _Opts(StrictModel):
    size: Annotated[ByteSize, size_range(1024, 2**20)] = 4096
    port: Port = 5432


def test_strict_options_refuse_unknown_keys_string_ports_and_out_of_range_sizes() -> None:
    assert _Opts.model_validate({"size": "1KiB", "port": 15432}).size == 1024
    with pytest.raises(ValidationError, match="extra"):
        _Opts.model_validate({"sise": "1KiB"})
    with pytest.raises(ValidationError, match="without quotes"):
        _Opts.model_validate({"port": "5432"})
    with pytest.raises(ValidationError):
        _Opts.model_validate({"port": 0})
    with pytest.raises(ValidationError, match="at most 1MiB"):
        _Opts.model_validate({"size": "2MB"})


def test_channels_carry_their_direction() -> None:
    assert Channel.STDOUT.direction is Direction.TO_AGENT
    assert Channel.RESPONSE_BODY.direction is Direction.TO_AGENT
    assert Channel("request-body").direction is Direction.FROM_AGENT
    assert Channel.PTY_INPUT.direction is Direction.FROM_AGENT
    assert Channel.PTY_RESIZE.direction is Direction.CONTROL
    assert Channel.WS_SERVER.messages and not Channel.STDOUT.messages
    assert Channel.STDOUT == "stdout"  # protocols and stored recordings use the plain names
    with pytest.raises(ValueError):
        Channel("body")


def test_session_end_reasons_and_their_messages() -> None:
    assert SessionEnd.of("error: upstream reset") is SessionEnd.ERROR
    assert SessionEnd.of("upstream_closed: lost") is SessionEnd.UPSTREAM_CLOSED
    assert SessionEnd.of("something new") is SessionEnd.ERROR
    assert "fresh token" in SessionEnd.TOKEN_EXPIRED.message
    assert "session_max" in SessionEnd.SESSION_MAX.message
    assert "shutting down" in SessionEnd.SHUTDOWN.message
    assert OutcomeStatus("denied") is OutcomeStatus.DENIED


class _Provider(IdentityProvider):
    name = "vocab-test"


def test_default_admission_applies_deny_subjects_and_groups() -> None:
    opts = ProviderOptions(use="vocab-test", deny_subjects=["mallory"], deny_groups=["contractors"])
    p = _Provider("idp", opts, None)  # type: ignore[arg-type]
    p.admit(Identity("alice", ("dev",)))
    with pytest.raises(AccessDenied) as e:
        p.admit(Identity("mallory"))
    assert e.value.reason == "denied_subject"
    with pytest.raises(AccessDenied) as e:
        p.admit(Identity("bob", ("dev", "contractors")))
    assert e.value.reason == "denied_group" and "'contractors'" in str(e.value)


# -- the runtime: background tasks and open() failures ---------------------------------------------------------

EVENTS: list[str] = []


class _TickerOptions(StageOptions):
    fail_open: bool = False
    crash: bool = False


class _Ticker(Stage):
    """Starts a background task at open; optionally fails to open, or its task crashes."""

    name: ClassVar[str] = "vocab-ticker"
    Options = _TickerOptions

    async def open(self) -> None:
        if self.options.fail_open:
            raise FileNotFoundError(2, "No such file or directory", "/nonexistent/cert.pem")
        EVENTS.append(f"open {self.index}")
        self.services.spawn(self._tick, name=f"ticker {self.index}")

    async def _tick(self) -> None:
        if self.options.crash:
            raise RuntimeError("boom")
        try:
            await trio.sleep_forever()
        finally:
            EVENTS.append(f"cancelled {self.index}")

    async def close(self) -> None:
        EVENTS.append(f"close {self.index}")


class _Plugin:
    @hookimpl
    def gw_register_stages(self, register: Any) -> None:
        register(_Ticker)


def _runtime(tmp_path: Path, gw_plugin_manager: Any, stages: str) -> Runtime:
    gw_plugin_manager.register(_Plugin(), "vocab-ticker")
    path = write_pipeline(tmp_path, f"""
[pipelines.p]
stages = [{stages}]
""")
    return Runtime.build(path, pm=gw_plugin_manager)


async def test_background_tasks_run_until_the_runtime_closes_and_a_crash_is_contained(
        tmp_path: Path, gw_plugin_manager: Any, caplog: pytest.LogCaptureFixture) -> None:
    EVENTS.clear()
    rt = _runtime(tmp_path, gw_plugin_manager, '{ use = "vocab-ticker" }, { use = "vocab-ticker", crash = true }')
    await rt.open(serving=True)
    await trio.sleep(0.05)
    assert "cancelled 0" not in EVENTS
    assert "background task ticker 1 failed" in caplog.text
    await rt.close()
    # close() of every plugin first, then the tasks are cancelled
    assert EVENTS.index("close 0") < EVENTS.index("cancelled 0")
    with pytest.raises(RuntimeError, match="closed"):
        rt.services.spawn(trio.sleep_forever)


async def test_an_open_failure_is_a_config_error_with_the_key_path_and_what_was_opened_is_closed(
        tmp_path: Path, gw_plugin_manager: Any) -> None:
    EVENTS.clear()
    rt = _runtime(tmp_path, gw_plugin_manager, '{ use = "vocab-ticker" }, { use = "vocab-ticker", fail_open = true }')
    with pytest.raises(ConfigError) as e:
        await rt.open(serving=True)
    assert e.value.path == "pipelines.p.stages[1]"
    assert "/nonexistent/cert.pem" in str(e.value) and "pipeline.toml" in str(e.value)
    # the task it spawned never outlives the failed start (here it had not even begun to run)
    assert EVENTS[:2] == ["open 0", "close 0"] and rt.services.background.closed
