"""Pipeline file validation and the plugin manager's switches."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pluggy
import pytest

from gw import hookimpl
from gw.config import load_config, parse_address, parse_duration
from gw.errors import ConfigError, PluginError
from gw.plugins import Registry, make_plugin_manager
from gw.runtime import Runtime
from gw.testing import write_pipeline

GOOD = """
[identity.static]
use = "static"

[pipelines.p]
stages = [{ use = "deny_drop" }]

[[listeners]]
name = "lines"
protocol = "lines"
listen = "127.0.0.1:0"
identity = "static"
pipeline = "p"
"""


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("10m", 600), ("1h", 3600), ("30d", 2592000),
                                          ("1h30m", 5400), (45, 45), ("250ms", 0.25), ("2", 2)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["10 minutes", "-1s", "", "m", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_addresses() -> None:
    assert parse_address("127.0.0.1:15432") == ("127.0.0.1", 15432)
    assert parse_address("[::1]:80") == ("::1", 80)
    assert parse_address(":8080") == ("0.0.0.0", 8080)
    with pytest.raises(ValueError):
        parse_address("localhost")
    with pytest.raises(ValueError):
        parse_address("h:70000")


@pytest.mark.parametrize("mutate,path,message", [
    (lambda t: t.replace('pipeline = "p"', 'pipeline = "q"'), "listeners[0].pipeline", "pipeline 'q' is not defined"),
    (lambda t: t.replace('identity = "static"', 'identity = "okta"'), "listeners[0].identity",
     "identity provider 'okta' is not defined"),
    (lambda t: t.replace('listen = "127.0.0.1:0"', 'listen = "nowhere"'), "listeners[0].listen",
     "expected HOST:PORT"),
    (lambda t: t + "\n[gateway]\ndrain_timeout = \"soon\"\n", "gateway.drain_timeout", "expected a duration"),
    (lambda t: t + "\n[gateway]\ndata_dri = \"x\"\n", "gateway.data_dri", "unknown key"),
    (lambda t: t.replace('name = "lines"\n', ''), "listeners[0].name", "required key is missing"),
    (lambda t: t.replace('{ use = "deny_drop" }', '{ use = "deny_drop", mesage = "x" }'),
     "pipelines.p.stages[0].mesage", "unknown key"),
    (lambda t: t.replace('{ use = "deny_drop" }', '{ use = "nope" }'), "pipelines.p.stages[0].use",
     "unknown stage 'nope'"),
    (lambda t: t.replace('protocol = "lines"', 'protocol = "gopher"'), "listeners[0].protocol",
     "unknown protocol 'gopher'"),
])
def test_errors_name_file_and_key_path(tmp_path: Path, inline_pm: pluggy.PluginManager, mutate, path: str,  # type: ignore[no-untyped-def]
                                       message: str) -> None:
    file = write_pipeline(tmp_path, mutate(GOOD))
    with pytest.raises(ConfigError) as err:
        Runtime.build(file, pm=inline_pm)
    text = str(err.value)
    assert text.startswith(str(file)), text
    assert f"{path}:" in text, text
    assert message in text, text


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write_pipeline(tmp_path, "[gateway\n"))
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    cfg = load_config(write_pipeline(sub, '[gateway]\ndata_dir = "state"\n'))
    assert cfg.data_dir == (sub / "state").resolve()


def test_disable_plugins_blocks_by_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    class Extra:
        @hookimpl
        def gw_register_stages(self, register):  # type: ignore[no-untyped-def]
            from gw.stage import Stage

            class Noop(Stage):
                name = "noop"

            register(Noop)

    monkeypatch.setenv("GW_DISABLE_PLUGINS", "extra, other")
    pm = make_plugin_manager(load_entrypoints=False, extra=[(Extra(), "extra")])
    assert pm.is_blocked("extra")
    registry = Registry.build(pm)
    with pytest.raises(PluginError, match="GW_DISABLE_PLUGINS blocks: extra, other"):
        registry.get("stages", "noop")


def test_misspelt_hookimpl_is_an_error() -> None:
    class Typo:
        @hookimpl
        def gw_register_stage(self, register):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(pluggy.PluginValidationError):
        make_plugin_manager(load_entrypoints=False, extra=[(Typo(), "typo")])


def test_trace_plugins(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    class Quiet:
        @hookimpl
        def gw_register_stages(self, register):  # type: ignore[no-untyped-def]
            pass

    monkeypatch.setenv("GW_TRACE_PLUGINS", "1")
    pm = make_plugin_manager(load_entrypoints=False, extra=[(Quiet(), "quiet")])
    Registry.build(pm)
    assert "gw: hook gw_register_stages" in capsys.readouterr().err


def test_name_clash_is_reported() -> None:
    from gw.stage import Stage

    class A(Stage):
        name = "same"

    class B(Stage):
        name = "same"

    class P1:
        @hookimpl
        def gw_register_stages(self, register):  # type: ignore[no-untyped-def]
            register(A)

    class P2:
        @hookimpl
        def gw_register_stages(self, register):  # type: ignore[no-untyped-def]
            register(B)

    pm = make_plugin_manager(load_entrypoints=False, extra=[(P1(), "p1"), (P2(), "p2")])
    with pytest.raises(PluginError, match="registered twice"):
        Registry.build(pm)
