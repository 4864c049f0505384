"""The sans-IO parts without any network: command-line classification, the SFTP codec (fed split at every
byte boundary), the authorized-keys format and certificate fields, listener options."""

from __future__ import annotations

import struct
import subprocess
import time
from pathlib import Path

import pytest
from gw.model import Kind
from gw_shellanalysis import ShellContext
from gw_ssh import sftp
from gw_ssh.commands import classify, transfer_program, with_contents
from gw_ssh.keys import ClientKeys, KeyFileError, KeyLogin, Refusal, parse_authorized_keys
from gw_ssh.options import SSHListenerOptions

# -- command lines ------------------------------------------------------------------------------------------


HOME = ShellContext(cwd="/home/u", home="/home/u", user="u")


@pytest.mark.parametrize(("text", "kind", "verb", "verbs", "objects", "flags"), [
    ("uname -a", "exec", "uname", ["uname"], [], set()),
    ("FOO=1 /usr/bin/ls -l /etc", "exec", "ls", ["ls"], ["/usr/bin/ls", "/etc"], {"env_assignment"}),
    ("sudo systemctl restart nginx", "exec", "systemctl", ["sudo", "systemctl"], [], {"privileged"}),
    ("sudo -u postgres psql -c 'select 1'", "exec", "psql", ["sudo", "psql"], [], {"privileged"}),
    ("timeout 5 env A=1 nice -n 3 curl http://x/y", "exec", "curl", ["timeout", "env", "nice", "curl"], [],
     {"env_assignment"}),
    ("cat /etc/passwd | grep root > /tmp/out.txt 2>&1", "exec", "cat", ["cat", "grep"],
     ["/etc/passwd", "/tmp/out.txt"], {"pipeline", "redirect"}),
    ("cd /srv && git pull; make &", "exec", "cd", ["cd", "git", "make"], [], {"multi_command", "background"}),
    ("echo $(rm -rf /tmp/x) `id`", "exec", "echo", ["rm", "id", "echo"], ["/tmp/x", "/tmp/x/*"],
     {"substitution"}),
    ("bash -c 'rm -rf /var/tmp/y'", "exec", "rm", ["bash", "rm"], ["/var/tmp/y", "/var/tmp/y/*"],
     {"nested_shell"}),
    ("echo '$(not a command)'", "exec", "echo", ["echo"], [], set()),
    ("ls\nrm x", "exec", "ls", ["ls", "rm"], ["/home/u/x"], {"multi_command"}),
    ("echo 'unbalanced", "unknown", "echo", ["echo"], [], {"unparsed", "multi_command"}),
    ("sudo -i", "unknown", "sudo", ["sudo"], [], {"privileged", "runs_code"}),
])
def test_command_lines_are_classified(text: str, kind: str, verb: str, verbs: list[str], objects: list[str],
                                      flags: set[str]) -> None:
    c = classify(text, HOME)
    assert (c.kind.value, c.verb, list(c.verbs), list(c.objects), set(c.flags)) == \
        (kind, verb, verbs, objects, flags)


def test_transfer_programs_and_their_contents() -> None:
    for text, program in [("scp -f /etc/hosts", "scp"), ("scp -r -t /srv/up/", "scp"), ("scp -v -p -f -- x", "scp"),
                          ("rsync --server --sender -logDtpre.iLsfxCIvu . /srv", "rsync"),
                          ("git-upload-pack '/srv/repo.git'", "git-upload-pack"), ("scp a b", None),
                          ("scp -f x | cat", None), ("rsync -a a b", None)]:
        assert transfer_program(text, classify(text, HOME)) == program, text
    assert with_contents(("/srv/up",)) == ("/srv/up", "/srv/up/*")


# -- SFTP ---------------------------------------------------------------------------------------------------


def _string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def _packet(kind: int, body: bytes) -> bytes:
    return struct.pack(">IB", len(body) + 1, kind) + body


OPEN = _packet(sftp.T.OPEN, struct.pack(">I", 7) + _string(b"/tmp/up.txt")
               + struct.pack(">I", sftp.FXF_WRITE | sftp.FXF_CREAT | sftp.FXF_TRUNC) + struct.pack(">I", 0))
WRITE = _packet(sftp.T.WRITE, struct.pack(">I", 8) + _string(b"h1") + struct.pack(">Q", 0) + _string(b"x" * 300))
RENAME = _packet(sftp.T.EXTENDED, struct.pack(">I", 9) + _string(b"posix-rename@openssh.com") + _string(b"/a")
                 + _string(b"/b"))


def test_sftp_framer_yields_the_same_packets_whatever_the_split() -> None:
    stream = OPEN + WRITE + RENAME
    for cut in range(len(stream) + 1):
        for second in (cut, min(len(stream), cut + 3)):
            framer = sftp.PacketFramer()
            got = []
            for part in (stream[:cut], stream[cut:second], stream[second:]):
                framer.receive_data(part)
                while (p := framer.next_packet()) is not sftp.NEED_DATA:
                    got.append(p)
            assert got == [OPEN, WRITE, RENAME]


def test_sftp_requests_become_operations() -> None:
    op = sftp.operation(sftp.parse_request(OPEN))
    assert op is not None and (op.verb, op.kind, op.objects) == ("write", Kind.WRITE, ("/tmp/up.txt",))
    assert op.flags == {"create", "truncate"} and op.text == "write /tmp/up.txt"
    write = sftp.parse_request(WRITE)
    assert sftp.operation(write) is None and (write.handle, write.size) == (b"h1", 300)
    rename = sftp.operation(sftp.parse_request(RENAME))
    assert rename is not None and (rename.verb, rename.objects) == ("rename", ("/a", "/b"))
    odd = sftp.operation(sftp.parse_request(_packet(sftp.T.EXTENDED, struct.pack(">I", 1) + _string(b"x@y"))))
    assert odd is not None and odd.kind is Kind.UNKNOWN and "unparsed" in odd.flags


def test_sftp_status_packet_round_trips_and_bad_packets_are_errors() -> None:
    status = sftp.parse_response(sftp.status_packet(9, sftp.Status.PERMISSION_DENIED, "gw: no"))
    assert (status.type, status.id, status.status, status.message) == (sftp.T.STATUS, 9, 3, "gw: no")
    framer = sftp.PacketFramer(max_packet=1024)
    framer.receive_data(struct.pack(">I", 5000))
    with pytest.raises(sftp.SftpProtocolError, match="5000 bytes"):
        framer.next_packet()
    with pytest.raises(sftp.SftpProtocolError, match="ends inside"):
        sftp.parse_request(_packet(sftp.T.OPEN, struct.pack(">I", 1) + struct.pack(">I", 99) + b"short"))


# -- keys ---------------------------------------------------------------------------------------------------


def _key(directory: Path, name: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)], check=True)
    return (directory / f"{name}.pub").read_text().strip()


def test_authorized_keys_format(tmp_path: Path) -> None:
    a, b = _key(tmp_path, "a"), _key(tmp_path, "b")
    entries = parse_authorized_keys(f"# keys\n{a} subject=alice groups=dba,agents expires=2999-01-01  # note\n"
                                    f"\n{b} subject=bob\n", "ak")
    alice = next(e for e in entries.values() if e.subject == "alice")
    assert alice.groups == ("dba", "agents") and alice.expires_at is not None and alice.line == 2
    for text, error in [(f"{a} group=dba subject=x", "ak:1: unknown option 'group'"),
                        (f"{a} groups=dba", "ak:1: subject=NAME is required"),
                        (f"{a} subject=x\n{a} subject=y", "ak:2: the same key is already on line 1"),
                        ("ssh-ed25519 notbase64 subject=x", "ak:1: not an SSH public key"),
                        (f"{a} subject=x expires=soon", "ak:1: expires='soon' is not an ISO date")]:
        with pytest.raises(KeyFileError, match=error):
            parse_authorized_keys(text, "ak")


def test_keys_and_certificates_map_to_identities(tmp_path: Path) -> None:
    from gw_ssh._asyncssh import asyncssh

    user = _key(tmp_path, "user")
    _key(tmp_path, "ca")
    (tmp_path / "ak").write_text(f"{user} subject=alice groups=ops expires=2000-01-01\n")
    (tmp_path / "ca_keys").write_text((tmp_path / "ca.pub").read_text())
    subprocess.run(["ssh-keygen", "-q", "-s", str(tmp_path / "ca"), "-I", "id-7", "-z", "42", "-n", "carol,ci",
                    "-V", "+1h", "-O", "extension:groups@gw=dba, agents", str(tmp_path / "user.pub")], check=True)
    keys = ClientKeys("web-1", tmp_path / "ak", tmp_path / "ca_keys", ("agents",))
    keys.load()
    blob = asyncssh.read_public_key(str(tmp_path / "user.pub")).public_data
    expired = keys.identify("anyone", blob)
    assert isinstance(expired, Refusal) and expired.reason == "key_expired" and expired.definitive
    cert = asyncssh.read_certificate(str(tmp_path / "user-cert.pub")).public_data
    login = keys.identify("ci", cert)
    assert isinstance(login, KeyLogin)
    assert (login.identity.subject, login.identity.groups, login.identity.provider) == ("ci", ("dba", "agents"),
                                                                                        "ssh-ca")
    assert login.identity.claims["key_id"] == "id-7" and login.identity.claims["serial"] == 42
    assert login.identity.expires_at is not None and login.identity.expires_at > time.time()
    wrong = keys.identify("root", cert)
    assert isinstance(wrong, Refusal) and wrong.reason == "certificate_principal"
    later = keys.identify("ci", cert, now=time.time() + 7200)
    assert isinstance(later, Refusal) and later.reason == "certificate_expired"
    (tmp_path / "ak").write_text("garbage line\n")  # an edited file is re-read; a broken one refuses keys
    time.sleep(0.01)
    broken = keys.identify("anyone", blob)
    assert isinstance(broken, Refusal) and broken.reason == "key_file_invalid"


# -- options ------------------------------------------------------------------------------------------------


BASE = {"name": "s", "protocol": "ssh", "listen": "127.0.0.1:0", "identity": "dev", "pipeline": "p",
        "host_key_file": "k", "upstream": {"host": "h", "user": "u", "key_file": "f", "known_hosts": "kh"}}


def test_listener_options_defaults_and_errors() -> None:
    opts = SSHListenerOptions.model_validate(BASE)
    assert (opts.shell, opts.sftp, opts.refused_exit_status, opts.upstream.port) == ("deny", "deny", 126, 22)
    for change, error in [({"upstream": {**BASE["upstream"], "key_env": "K"}}, "exactly one of"),  # type: ignore[dict-item]
                          ({"shell": "allow"}, "'record' or 'deny'"),
                          ({"user_ca_groups": ["x"]}, "user_ca_groups needs user_ca"),
                          ({"accept_env": ["A B"]}, "not an environment variable name")]:
        with pytest.raises(ValueError, match=error):
            SSHListenerOptions.model_validate({**BASE, **change})
