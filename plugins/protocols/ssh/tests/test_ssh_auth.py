"""Client authentication (tokens, authorized keys, certificates), admission, and the upstream side (host key
verification, unreachable target): each refusal is a clear message to the client and an audit record."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gw.testing import require_program

if TYPE_CHECKING:
    from conftest import Gateway


def _refusal(gateway: Gateway, claimed_user: str, reason: str, timeout: float = 5) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for record in gateway.audit_events("session_refused"):
            if record.get("claimed_user") == claimed_user and record.get("reason") == reason:
                return record
        assert time.monotonic() < deadline, f"no session_refused record for {claimed_user} ({reason})"
        time.sleep(0.1)


def test_wrong_token_is_refused_with_the_reason(gateway: Gateway) -> None:
    token = gateway.token("forger")
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    result = gateway.ssh("true", token=forged, user="wrong-token")
    assert result.returncode == 255
    assert b"Permission denied" in result.stderr
    assert b"gw: " in result.stderr and b"signature" in result.stderr
    assert _refusal(gateway, "wrong-token", "bad_signature")["listener"] == "web-1"
    garbage = gateway.ssh("true", token="not-a-token", user="garbage-token")
    assert garbage.returncode == 255 and b"not in a form the identity providers" in garbage.stderr


def test_token_through_sshpass_answers_the_keyboard_interactive_prompt(gateway: Gateway) -> None:
    sshpass = require_program("sshpass")
    env = {k: v for k, v in gateway.env(None).items() if not k.startswith("SSH_ASKPASS")}
    env["SSHPASS"] = gateway.token("sshpass-user", ["agents"])
    result = subprocess.run([sshpass, "-e", *gateway.ssh_args("echo via-sshpass")], capture_output=True,
                            stdin=subprocess.DEVNULL, env=env, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"via-sshpass\n"


def test_expired_token_is_refused(gateway: Gateway) -> None:
    token = gateway.token("late", ["agents"], exp=int(time.time()) - 3600)
    result = gateway.ssh("true", token=token, user="late")
    assert result.returncode == 255
    assert b"expired" in result.stderr


def test_group_outside_allow_groups_is_refused(gateway: Gateway) -> None:
    result = gateway.ssh("true", token=gateway.token("guest-1", ["guests"]), user="guest-1")
    assert result.returncode == 255
    assert b"is not in a group allowed on listener 'web-1'" in result.stderr
    _refusal(gateway, "guest-1", "group_not_allowed")


def test_authorized_key_maps_to_its_identity(gateway: Gateway) -> None:
    result = gateway.ssh("echo key-login", key=gateway.keys.alice, user="anything")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"key-login\n"
    record = gateway.audit_command("echo key-login")
    assert (record["subject"], record["groups"], record["provider"]) == ("alice", ["ops", "agents"], "ssh-keys")
    assert record["claimed_user"] == "anything"


def test_unknown_key_is_refused_and_audited(gateway: Gateway) -> None:
    result = gateway.ssh("true", key=gateway.keys.stranger, user="stranger-user")
    assert result.returncode == 255
    assert b"is not in the authorized_keys of listener 'web-1'" in result.stderr
    _refusal(gateway, "stranger-user", "unknown_key")


def test_known_key_of_an_identity_the_listener_does_not_admit_is_refused(gateway: Gateway) -> None:
    result = gateway.ssh("true", key=gateway.keys.mallory, user="mallory-user")
    assert result.returncode == 255
    assert b"identity 'mallory' is not in a group allowed on listener 'web-1'" in result.stderr
    _refusal(gateway, "mallory-user", "group_not_allowed")


def test_certificate_principal_becomes_the_subject_and_its_extension_the_groups(gateway: Gateway,
                                                                                 tmp_path: Path) -> None:
    key = gateway.keygen(tmp_path / "carol")
    gateway.sign_certificate(gateway.keys.ca, key, principals="carol", extensions=["groups@gw=dba,agents"])
    result = gateway.ssh("echo cert-login", key=key, user="carol")
    assert result.returncode == 0, result.stderr
    record = gateway.audit_command("echo cert-login")
    assert (record["subject"], record["groups"], record["provider"]) == ("carol", ["dba", "agents"], "ssh-ca")
    session = gateway.audit_events("session_start")[0]
    assert session["subject"] == "carol" and session["token_expires_at"] is not None


def test_certificate_without_groups_extension_gets_the_configured_groups(gateway: Gateway, tmp_path: Path) -> None:
    key = gateway.keygen(tmp_path / "dave")
    gateway.sign_certificate(gateway.keys.ca, key, principals="dave")
    result = gateway.ssh("echo dave-login", key=key, user="dave")
    assert result.returncode == 0, result.stderr
    assert gateway.audit_command("echo dave-login")["groups"] == ["agents"]


def test_expired_certificate_is_refused(gateway: Gateway, tmp_path: Path) -> None:
    key = gateway.keygen(tmp_path / "erin")
    gateway.sign_certificate(gateway.keys.ca, key, principals="erin", validity="20200101:20200102", key_id="erin-2020")
    result = gateway.ssh("true", key=key, user="erin")
    assert result.returncode == 255
    assert b"certificate 'erin-2020' (serial 0) expired at 2020-01-02" in result.stderr
    assert b"get a fresh certificate" in result.stderr
    _refusal(gateway, "erin", "certificate_expired")


def test_certificate_for_another_principal_or_from_an_unknown_ca_is_refused(gateway: Gateway,
                                                                             tmp_path: Path) -> None:
    key = gateway.keygen(tmp_path / "frank")
    gateway.sign_certificate(gateway.keys.ca, key, principals="frank")
    result = gateway.ssh("true", key=key, user="root")
    assert result.returncode == 255
    assert b"is valid for frank, not 'root'" in result.stderr
    rogue_ca = gateway.keygen(tmp_path / "rogue_ca")
    other = gateway.keygen(tmp_path / "grace")
    gateway.sign_certificate(rogue_ca, other, principals="grace")
    result = gateway.ssh("true", key=other, user="grace")
    assert result.returncode == 255
    assert b"which listener 'web-1' does not trust" in result.stderr


def test_changed_target_host_key_refuses_the_session(gateway: Gateway) -> None:
    result = gateway.ssh("echo never", listener="rekeyed", user="rekeyed-user")
    assert result.returncode == 255 and result.stdout == b""
    assert b"CHANGED" in result.stderr and b"man-in-the-middle" in result.stderr
    assert b"known_hosts_changed" in result.stderr
    _refusal(gateway, "rekeyed-user", "upstream_host_key")
    assert "CHANGED" in gateway.process.output()


def test_unknown_target_host_key_refuses_the_session(gateway: Gateway) -> None:
    result = gateway.ssh("echo never", listener="stranger", user="stranger-host")
    assert result.returncode == 255 and result.stdout == b""
    assert b"which is not in gw's known_hosts" in result.stderr
    _refusal(gateway, "stranger-host", "upstream_host_key")


def test_target_down_is_a_clear_error(gateway: Gateway) -> None:
    started = time.monotonic()
    result = gateway.ssh("echo never", listener="down", user="down-user")
    assert result.returncode == 255
    assert b"gw cannot reach the target 127.0.0.1:" in result.stderr
    assert time.monotonic() - started < 10
    _refusal(gateway, "down-user", "upstream_unavailable")


def test_upstream_key_from_an_environment_variable(gateway: Gateway) -> None:
    result = gateway.ssh("echo via-key-env", listener="locked")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"via-key-env\n"
