"""Key material (synchronous, no event loop): gw's host key, the upstream key and known_hosts, and identities
from the client's public key (``authorized_keys``) or SSH user certificate (``user_ca``).

asyncssh's key parsing is used here as a library of pure functions; no asyncio code runs in this module.

The ``authorized_keys`` file maps keys to identities, one key per line::

    # gw authorized keys
    ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... alice@laptop subject=alice groups=dba,agents
    ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ... subject=ci-bot groups=agents expires=2026-12-31   # rotate

``KEYTYPE BASE64`` first; then ``name=value`` options: ``subject`` (required), ``groups`` (comma-separated) and
``expires`` (an ISO date or time, UTC unless it says otherwise; the key is refused from then on).  Other words
(without ``=``) are a comment, as is everything after ``#``.  Any other ``name=value`` is an error, so a typo
such as ``group=dba`` never silently drops a group.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gw.model import Identity

from ._asyncssh import asyncssh, decode_ssh_certificate, decode_ssh_public_key
from .events import Refusal

log = logging.getLogger("gw.ssh")

PROVIDER_KEYS = "ssh-keys"
PROVIDER_CA = "ssh-ca"
_FOREVER = 2**64 - 1
_OPTIONS = ("subject", "groups", "expires")


class KeyFileError(Exception):
    """A key file is missing, unreadable or malformed; ``str()`` names the file (and line) and the fix.
    ``option`` is the listener key that names the file, when known."""

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


# ---------------------------------------------------------------------------------------------------------------
# gw's host key
# ---------------------------------------------------------------------------------------------------------------


def generate_host_key(path: Path, *, comment: str, force: bool = False) -> str:
    """Write a new ed25519 host key to ``path`` (mode 0600) and ``path.pub``; return the public key line."""
    if path.exists() and not force:
        raise KeyFileError(f"{path} already exists; clients trust the key it holds. Keep it, or pass --force to "
                           "replace it (clients will then see a changed host key)")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key.export_private_key())
    finally:
        os.close(fd)
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    public = key.export_public_key().decode("ascii").strip()
    path.with_name(path.name + ".pub").write_text(public + "\n", encoding="ascii")
    return public


def load_host_key(path: Path) -> Any:
    """gw's host key; refuses a key other users can read (as sshd does)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"host key file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"host key file {path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
                           f"restrict it with: chmod 600 {path}")
    try:
        return asyncssh.read_private_key(str(path))
    except (OSError, asyncssh.KeyImportError, ValueError) as e:
        raise KeyFileError(f"cannot read the host key {path}: {e}") from None


# ---------------------------------------------------------------------------------------------------------------
# The upstream side
# ---------------------------------------------------------------------------------------------------------------


def load_private_key(*, file: Path | None, data: str | None, passphrase: str | None, what: str) -> Any:
    """gw's key for the target, from a file or from the text of an environment variable."""
    try:
        if file is not None:
            return asyncssh.read_private_key(str(file), passphrase)
        assert data is not None
        return asyncssh.import_private_key(data.strip() + "\n", passphrase)
    except FileNotFoundError:
        raise KeyFileError(f"{what}: {file} does not exist") from None
    except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError, ValueError) as e:
        # Never echo key material: the exception text of a parse error may quote the input.
        detail = e.strerror if isinstance(e, OSError) else type(e).__name__
        hint = " (is it encrypted? set upstream.key_passphrase_env)" if passphrase is None else ""
        raise KeyFileError(f"{what}: not a usable private key ({detail}){hint}") from None


def load_known_hosts(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"known_hosts file {path} does not exist; gw verifies the target's host key "
                           "against it (add the target's key, e.g. from ssh-keyscan on a trusted network)") from None
    except OSError as e:
        raise KeyFileError(f"cannot read known_hosts file {path}: {e.strerror}") from None
    try:
        return asyncssh.import_known_hosts(text)
    except (ValueError, asyncssh.KeyImportError) as e:
        raise KeyFileError(f"known_hosts file {path} is malformed: {e}") from None


# ---------------------------------------------------------------------------------------------------------------
# Client keys and certificates -> identities
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyEntry:
    subject: str
    groups: tuple[str, ...]
    expires_at: float | None
    fingerprint: str
    line: int


@dataclass(frozen=True, slots=True)
class KeyLogin:
    identity: Identity
    method: str  # "publickey" or "certificate"
    fingerprint: str


def _parse_time(value: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"expires={value!r} is not an ISO date or time such as 2026-12-31 or "
                         "2026-12-31T18:00:00Z") from None
    return moment.timestamp()


def parse_authorized_keys(text: str, source: str) -> dict[bytes, KeyEntry]:
    """Parse the authorized-keys format of this module's docstring; errors name ``source:line``."""
    entries: dict[bytes, KeyEntry] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        where = f"{source}:{lineno}"
        words = line.split()
        if len(words) < 2:
            raise KeyFileError(f"{where}: expected KEYTYPE KEY subject=NAME [groups=G1,G2] [expires=DATE]")
        try:
            key = asyncssh.import_public_key(f"{words[0]} {words[1]}")
        except (asyncssh.KeyImportError, ValueError) as e:
            raise KeyFileError(f"{where}: not an SSH public key ({e}); lines start with the key type and the "
                               "base64 key, as in a .pub file") from None
        if b"-cert-" in words[0].encode():
            raise KeyFileError(f"{where}: a certificate does not belong in authorized_keys; trust its CA with "
                               "user_ca instead")
        options: dict[str, str] = {}
        for word in words[2:]:
            name, sep, value = word.partition("=")
            if not sep:
                continue  # a comment word (alice@laptop)
            if name not in _OPTIONS:
                raise KeyFileError(f"{where}: unknown option {name!r} (known: {', '.join(_OPTIONS)})")
            if name in options:
                raise KeyFileError(f"{where}: {name}= is given twice")
            options[name] = value
        subject = options.get("subject", "")
        if not subject:
            raise KeyFileError(f"{where}: subject=NAME is required (the identity this key stands for)")
        groups = tuple(g for g in options.get("groups", "").split(",") if g)
        try:
            expires = _parse_time(options["expires"]) if "expires" in options else None
        except ValueError as e:
            raise KeyFileError(f"{where}: {e}") from None
        blob = key.public_data
        if blob in entries:
            raise KeyFileError(f"{where}: the same key is already on line {entries[blob].line}")
        entries[blob] = KeyEntry(subject, groups, expires, key.get_fingerprint(), lineno)
    return entries


def parse_certificate_authorities(text: str, source: str) -> dict[bytes, str]:
    """CA public keys, one per line (``ssh-ed25519 AAAA... comment``; an OpenSSH ``@cert-authority`` or
    ``cert-authority`` prefix is tolerated); returns key blob -> fingerprint."""
    cas: dict[bytes, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] in ("@cert-authority", "cert-authority"):
            words = words[1:]
        try:
            key = asyncssh.import_public_key(" ".join(words[:2]))
        except (asyncssh.KeyImportError, ValueError, IndexError) as e:
            raise KeyFileError(f"{source}:{lineno}: not an SSH public key ({e})") from None
        cas[key.public_data] = key.get_fingerprint()
    if not cas:
        raise KeyFileError(f"{source}: no certificate authority key in the file")
    return cas


@dataclass
class _Watched:
    """A file re-read when its modification time or size changes."""

    path: Path
    signature: tuple[float, int] | None = None
    error: str | None = None

    def changed(self) -> bool:
        try:
            st = self.path.stat()
            sig = (st.st_mtime, st.st_size)
        except OSError:
            sig = None
        if sig == self.signature:
            return False
        self.signature = sig
        return True


@dataclass
class ClientKeys:
    """A listener's ``authorized_keys`` and ``user_ca``, re-read when the files change.

    A file that becomes invalid is not half-used: its keys (or CAs) are refused until it is fixed, and the
    error is logged."""

    listener: str
    authorized_keys: Path | None
    user_ca: Path | None
    ca_groups: tuple[str, ...] = ()
    groups_extension: str = "groups@gw"
    _keys: dict[bytes, KeyEntry] = field(default_factory=dict)
    _cas: dict[bytes, str] = field(default_factory=dict)
    _watch: dict[str, _Watched] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.authorized_keys is not None or self.user_ca is not None

    def load(self) -> None:
        """Read the files; raises :class:`KeyFileError` (start-up: a bad file stops the gateway)."""
        for name, path in (("authorized_keys", self.authorized_keys), ("user_ca", self.user_ca)):
            if path is not None:
                self._watch[name] = _Watched(path)
                self._watch[name].changed()
                try:
                    self._read(name, strict=True)
                except KeyFileError as e:
                    raise KeyFileError(str(e), option=name) from None

    def _read(self, name: str, *, strict: bool) -> None:
        watched = self._watch[name]
        try:
            try:
                text = watched.path.read_text(encoding="utf-8")
            except OSError as e:
                raise KeyFileError(f"cannot read {name} file {watched.path}: {e.strerror}") from None
            if name == "authorized_keys":
                self._keys = parse_authorized_keys(text, str(watched.path))
            else:
                self._cas = parse_certificate_authorities(text, str(watched.path))
            watched.error = None
        except KeyFileError as e:
            if strict:
                raise
            watched.error = str(e)
            if name == "authorized_keys":
                self._keys = {}
            else:
                self._cas = {}
            log.error("listener %s: %s; refusing these keys until the file is fixed", self.listener, e)

    def _refresh(self) -> None:
        for name, watched in self._watch.items():
            if watched.changed():
                self._read(name, strict=False)

    def identify(self, username: str, blob: bytes, *, now: float | None = None) -> KeyLogin | Refusal:
        """The identity a public key or certificate blob stands for, or why it is refused."""
        self._refresh()
        now = time.time() if now is None else now
        if _algorithm(blob).endswith(b"-cert-v01@openssh.com"):
            return self._certificate(username, blob, now)
        return self._public_key(blob, now)

    def _public_key(self, blob: bytes, now: float) -> KeyLogin | Refusal:
        try:
            key = decode_ssh_public_key(blob)
        except asyncssh.KeyImportError as e:
            return Refusal("invalid_key", f"gw: the public key offered is not valid ({e})")
        fingerprint = key.get_fingerprint()
        watched = self._watch.get("authorized_keys")
        if watched is None:
            return Refusal("unknown_key", f"gw: listener {self.listener!r} does not accept public keys "
                                          f"({fingerprint}); log in with your identity token as the password")
        if watched.error:
            return Refusal("key_file_invalid", "gw cannot check public keys right now (its authorized_keys file "
                                               "is invalid); log in with your identity token or tell the gateway "
                                               "operator")
        entry = self._keys.get(blob)
        if entry is None:
            return Refusal("unknown_key", f"gw: key {fingerprint} is not in the authorized_keys of listener "
                                          f"{self.listener!r}; log in with your identity token, or ask the "
                                          "gateway operator to add your key")
        if entry.expires_at is not None and now >= entry.expires_at:
            return Refusal("key_expired", f"gw: key {fingerprint} (subject {entry.subject}) expired at "
                                          f"{_utc(entry.expires_at)}; ask the gateway operator for a new entry",
                           definitive=True)
        identity = Identity(entry.subject, entry.groups, {"key": fingerprint}, PROVIDER_KEYS, entry.expires_at)
        return KeyLogin(identity, "publickey", fingerprint)

    def _certificate(self, username: str, blob: bytes, now: float) -> KeyLogin | Refusal:
        watched = self._watch.get("user_ca")
        if watched is None:
            return Refusal("certificate_not_accepted", f"gw: listener {self.listener!r} does not accept SSH "
                                                       "certificates; log in with your identity token")
        if watched.error:
            return Refusal("key_file_invalid", "gw cannot check certificates right now (its user_ca file is "
                                               "invalid); log in with your identity token or tell the gateway "
                                               "operator")
        try:
            cert: Any = decode_ssh_certificate(blob)
            if cert.is_x509_chain:
                raise ValueError("X.509 certificates are not supported; use an OpenSSH user certificate")
            fields = _certificate_fields(cert)
        except (asyncssh.KeyImportError, ValueError, struct.error) as e:
            return Refusal("invalid_certificate", f"gw: your SSH certificate is not valid ({e})", definitive=True)
        label = f"certificate {fields.key_id!r} (serial {fields.serial})"
        ca = self._cas.get(cert.signing_key.public_data)
        if ca is None:
            return Refusal("unknown_ca", f"gw: {label} is signed by CA {cert.signing_key.get_fingerprint()}, which "
                                         f"listener {self.listener!r} does not trust", definitive=True)
        if fields.cert_type != 1:
            return Refusal("invalid_certificate", f"gw: {label} is a host certificate, not a user certificate",
                           definitive=True)
        if now < fields.valid_after:
            return Refusal("certificate_not_yet_valid", f"gw: {label} is not valid before "
                                                        f"{_utc(fields.valid_after)}", definitive=True)
        if fields.valid_before != _FOREVER and now >= fields.valid_before:
            return Refusal("certificate_expired", f"gw: {label} expired at {_utc(fields.valid_before)}; get a "
                                                  "fresh certificate from your CA and reconnect", definitive=True)
        if not cert.principals:
            return Refusal("certificate_no_principal", f"gw: {label} names no principals; gw takes the identity "
                                                       "from the principal, so the CA must set one (-n NAME)",
                           definitive=True)
        if username not in cert.principals:
            return Refusal("certificate_principal", f"gw: {label} is valid for {', '.join(cert.principals)}, not "
                                                    f"{username!r}; connect as one of them (ssh "
                                                    f"{cert.principals[0]}@...)", definitive=True)
        groups = fields.extensions.get(self.groups_extension)
        group_list = tuple(g.strip() for g in groups.split(",") if g.strip()) if groups is not None \
            else self.ca_groups
        expires = None if fields.valid_before == _FOREVER else float(fields.valid_before)
        claims = {"key_id": fields.key_id, "serial": fields.serial, "principals": list(cert.principals), "ca": ca,
                  "key": cert.key.get_fingerprint()}
        identity = Identity(username, group_list, claims, PROVIDER_CA, expires)
        return KeyLogin(identity, "certificate", cert.key.get_fingerprint())


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _algorithm(blob: bytes) -> bytes:
    if len(blob) < 4:
        return b""
    (n,) = struct.unpack_from(">I", blob)
    return blob[4:4 + n]


@dataclass(frozen=True, slots=True)
class _CertFields:
    serial: int
    cert_type: int
    key_id: str
    valid_after: int
    valid_before: int
    extensions: dict[str, str]


def _certificate_fields(cert: Any) -> _CertFields:
    """The fields of an OpenSSH certificate that asyncssh keeps private or drops (serial, key id, validity,
    and extensions it does not know, such as the groups extension).  Layout: PROTOCOL.certkeys."""
    data: bytes = cert.public_data

    def string(pos: int) -> tuple[bytes, int]:
        (n,) = struct.unpack_from(">I", data, pos)
        end = pos + 4 + n
        if end > len(data):
            raise ValueError("truncated certificate")
        return data[pos + 4:end], end

    _, pos = string(0)  # certificate type name
    _, pos = string(pos)  # nonce
    key_blob: bytes = cert.key.public_data
    (alg_len,) = struct.unpack_from(">I", key_blob)
    pos += len(key_blob) - 4 - alg_len  # the key's own fields, encoded as in its public key blob
    serial, cert_type = struct.unpack_from(">QI", data, pos)
    pos += 12
    key_id, pos = string(pos)
    _, pos = string(pos)  # principals (asyncssh decoded them)
    valid_after, valid_before = struct.unpack_from(">QQ", data, pos)
    pos += 16
    _, pos = string(pos)  # critical options (asyncssh enforces them)
    raw_extensions, pos = string(pos)
    extensions: dict[str, str] = {}
    epos = 0
    while epos < len(raw_extensions):
        (n,) = struct.unpack_from(">I", raw_extensions, epos)
        name = raw_extensions[epos + 4:epos + 4 + n].decode("utf-8", "replace")
        epos += 4 + n
        (m,) = struct.unpack_from(">I", raw_extensions, epos)
        value = raw_extensions[epos + 4:epos + 4 + m]
        epos += 4 + m
        # ssh-keygen -O extension:NAME=VALUE stores VALUE as an SSH string inside the extension data.
        if len(value) >= 4 and struct.unpack_from(">I", value)[0] == len(value) - 4:
            value = value[4:]
        extensions[name] = value.decode("utf-8", "replace")
    return _CertFields(int(serial), int(cert_type), key_id.decode("utf-8", "replace"), int(valid_after),
                       int(valid_before), extensions)
