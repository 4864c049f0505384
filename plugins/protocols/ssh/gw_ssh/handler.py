"""The ``ssh`` protocol handler: gw's host key, the upstream target, client authentication, then a
:class:`~gw_ssh.session.ConnectionSession` per client.

Core accepts the TCP connection on trio; the handler hands the socket to the listener's asyncio thread
(:mod:`gw_ssh.bridge`), where asyncssh runs the SSH transport, and serves everything else on trio.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING, Any

import trio
from gw.errors import ConfigError
from gw.model import Command, ObjectSyntax, Session
from gw.protocol import ProtocolHandler
from gw_shellanalysis import ShellContext

from .auth import ClientAuth
from .commands import classify
from .events import HandshakeError
from .options import SSHListenerOptions

if TYPE_CHECKING:
    from gw.runtime import ListenerRuntime

    from .bridge import UpstreamConnection, UpstreamTarget

# The modules that import asyncssh (bridge, keys, session) are imported when a listener is built, not when
# the plugin is loaded: `gw --help` or a pipeline without an SSH listener never imports asyncssh.

log = logging.getLogger("gw.ssh")


class SSHHandler(ProtocolHandler):
    """One ``protocol = "ssh"`` listener."""

    name = "ssh"
    Options = SSHListenerOptions
    #: Keys and the upstream are loaded at start; a reload that changes them is refused (restart gw serve).
    restart_keys = frozenset({"host_key_file", "upstream", "authorized_keys", "user_ca", "user_ca_groups",
                              "user_ca_groups_extension"})

    def __init__(self, listener: ListenerRuntime) -> None:
        from .bridge import Bridge
        from .keys import ClientKeys

        super().__init__(listener)
        opts = self.opts
        services = listener.services
        self.bridge = Bridge(listener.name)
        self.keys = ClientKeys(
            listener.name,
            services.resolve_path(opts.authorized_keys) if opts.authorized_keys else None,
            services.resolve_path(opts.user_ca) if opts.user_ca else None,
            tuple(opts.user_ca_groups), opts.user_ca_groups_extension)
        self.host_key: Any = None
        self._target: UpstreamTarget | None = None
        self._account_checked = False
        self._detectors: list[Any] | None = None

    @property
    def opts(self) -> SSHListenerOptions:
        """The listener's current options (``shell``, ``sftp`` ... follow a reload; keys and the upstream are
        read once, at start)."""
        return self.listener.options  # type: ignore[return-value]

    @property
    def options(self) -> SSHListenerOptions:
        return self.opts

    @property
    def target(self) -> UpstreamTarget:
        assert self._target is not None, "the ssh listener is not open"
        return self._target

    def describe_upstream(self) -> str:
        up = self.opts.upstream
        return f"{up.user}@{up.host}:{up.port}"

    def upstream_address(self) -> tuple[str, int] | None:
        """Where ``/readyz`` checks that the SSH host accepts connections."""
        return self.opts.upstream.host, self.opts.upstream.port

    def redact(self, text: str) -> str:
        """``text`` with what the installed detectors find replaced by ``***`` (for the log: an SSH user name
        is the client's text, like a command)."""
        if self._detectors is None:
            try:
                self._detectors = list(self.listener.services.detectors("all"))
            except Exception:  # noqa: BLE001 -- no detector plugin: nothing to redact with
                self._detectors = []
        spans = sorted({s for d in self._detectors for s in d.find(text)})
        out, pos = [], 0
        for start, end in spans:
            if start >= pos:
                out.append(text[pos:start] + "***")
                pos = end
        return "".join(out) + text[pos:]

    def warnings(self) -> list[str]:
        out = []
        if self.opts.shell == "record":
            out.append(f"listener {self.listener.name!r}: shell = \"record\" lets agents type command lines into "
                       "interactive shells, and typed lines are recorded but never decided by guard or approve "
                       "rules; set shell = \"deny\" where every command must pass the exec rules")
        return out

    def classify(self, text: str, *, session: Session) -> Command:
        """For ``gw policy explain``: the line as gw reads it, without the target (so relative paths are
        under any directory and symbolic links are not followed)."""
        c = classify(text, ShellContext(user=self.opts.upstream.user,
                                        interactive_programs=frozenset(self.opts.interactive_programs)))
        attributes: dict[str, object] = {"verbs": list(c.verbs)}
        if c.reasons:
            attributes["unknown"] = list(c.reasons)
        return Command(session, 0, text, "shell", c.kind, c.verb, c.objects, c.flags, attributes=attributes,
                       verbs=c.verbs, object_syntax=ObjectSyntax.PATH)

    async def check_upstream_account(self, upstream: UpstreamConnection, home: str) -> None:
        """Once per listener, at the first session: warn when the target account can let an agent log in
        around gw (it can edit its own authorized_keys) or runs everything as root."""
        if self._account_checked:
            return
        self._account_checked = True
        user = self.opts.upstream.user
        owner = await upstream.stat_owner(home)
        if owner is not None and owner[1] == 0 and user == "root":
            log.warning("listener %s: the target account is root: every command an agent sends runs with full "
                        "privileges on %s; use a restricted account (docs/plugins/ssh.md, hardening the target)",
                        self.listener.name, self.describe_upstream())
        for path in (f"{home.rstrip('/')}/.ssh", f"{home.rstrip('/')}/.ssh/authorized_keys"):
            stat = await upstream.stat_owner(path)
            if stat is None:
                continue
            mode, uid = stat
            if (owner is not None and uid == owner[1] and owner[1] != 0) or mode & 0o022:
                log.warning("listener %s: %s on the target is writable by the account gw logs in as (%s): an "
                            "agent with a shell could add its own key there and log in around gw. Make the "
                            "account's keys root-owned (sshd: AuthorizedKeysFile /etc/ssh/authorized_keys/%%u) -- "
                            "see docs/plugins/ssh.md, hardening the target", self.listener.name, path, user)
                break

    # -- lifetime -------------------------------------------------------------------------------------------
    def _config_error(self, key: str, message: str) -> ConfigError:
        config = self.listener.services.config
        index = next((i for i, t in enumerate(config.raw.get("listeners", [])) if t.get("name") == self.listener.name),
                     0)
        return ConfigError(message, file=str(config.path), path=f"listeners[{index}].{key}")

    async def open(self) -> None:
        from .bridge import UpstreamTarget
        from .keys import KeyFileError, load_host_key, load_known_hosts, load_private_key

        services = self.listener.services
        opts = self.opts
        up = opts.upstream
        host_key_path = services.resolve_path(opts.host_key_file)
        try:
            self.host_key = load_host_key(host_key_path)
        except KeyFileError as e:
            hint = ""
            if not host_key_path.exists():
                hint = (f"; create it with: gw ssh keygen -c {services.config.path} --listener "
                        f"{self.listener.name}")
            raise self._config_error("host_key_file", f"{e}{hint}") from None
        passphrase = None
        if up.key_passphrase_env:
            passphrase = os.environ.get(up.key_passphrase_env)
            if passphrase is None:
                raise self._config_error("upstream.key_passphrase_env", f"environment variable "
                                         f"${up.key_passphrase_env} is not set; it holds the passphrase of gw's key "
                                         "for the target")
        key_data = None
        if up.key_env:
            key_data = os.environ.get(up.key_env)
            if not key_data:
                raise self._config_error("upstream.key_env", f"environment variable ${up.key_env} is not set; it "
                                         "holds gw's private key for the target")
        key_file = services.resolve_path(up.key_file) if up.key_file else None
        where = "upstream.key_file" if up.key_file else "upstream.key_env"
        try:
            key = load_private_key(file=key_file, data=key_data, passphrase=passphrase, what="gw's key for the target")
        except KeyFileError as e:
            raise self._config_error(where, str(e)) from None
        known_hosts_path = services.resolve_path(up.known_hosts)
        try:
            known_hosts = load_known_hosts(known_hosts_path)
        except KeyFileError as e:
            raise self._config_error("upstream.known_hosts", str(e)) from None
        try:
            self.keys.load()
        except KeyFileError as e:
            raise self._config_error(e.option or "authorized_keys", str(e)) from None
        self._target = UpstreamTarget(up.host, up.port, up.user, key, known_hosts, str(known_hosts_path),
                                      up.connect_timeout.total_seconds(), up.keepalive_interval.total_seconds())
        await self.bridge.start()

    async def close(self) -> None:
        await self.bridge.stop()

    # -- one connection -------------------------------------------------------------------------------------
    async def handle(self, stream: trio.SocketStream, client_address: str) -> None:
        from .bridge import accept
        from .session import ConnectionSession

        sock = _take_socket(stream)
        auth = ClientAuth(self, client_address)
        timeout = self.listener.handshake_timeout
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(timeout + 5):
                    conn = await accept(self.bridge, sock, host_key=self.host_key, auth=auth, nursery=nursery,
                                        max_sessions=self.opts.max_sessions,
                                        max_auth_attempts=self.opts.max_auth_attempts, login_timeout=timeout)
            except (HandshakeError, trio.TooSlowError) as e:
                why = str(e) if isinstance(e, HandshakeError) else f"timed out after {timeout:g}s"
                if auth.attempted:
                    log.info("listener %s: %s (user %r) did not log in: %s", self.listener.name, client_address,
                             self.redact(auth.username), why)
                await auth.handshake_failed(why)
                return
            try:
                await ConnectionSession(self, conn, client_address).run()
            finally:
                conn.close()


def _take_socket(stream: trio.SocketStream) -> socket.socket:
    """Move the accepted connection from trio to the bridge: the trio socket lets go of the file descriptor
    (core's later ``aclose`` is then a no-op) and asyncssh owns it from here on."""
    fd = stream.socket.detach()
    return socket.socket(fileno=fd)

