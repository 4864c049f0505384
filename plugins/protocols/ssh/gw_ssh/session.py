"""One authenticated client connection: gw's login to the target, the gw session, and its channels.

Each session channel the client opens (exec, shell, sftp) is served by its own task (see
:mod:`gw_ssh.channels`) on its own channel of the one upstream connection.  Beside them run the terminator
(token expiry, ``session_max``, revocation, shutdown: ``SessionRuntime.wait_terminated``) and a watch on the
upstream connection.  When the client's connection goes, whatever still runs for it is cancelled and each
command completes as ``cancelled``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from gw.model import Command, OutcomeStatus, SessionEnd
from gw.pipeline import CommandRun, SessionRuntime
from gw_shellanalysis import ShellContext

from .auth import Login
from .bridge import ClientConnection, ServerChannel, UpstreamConnection, connect_upstream
from .channels import CommandRelay, SftpRelay, StderrNotices
from .commands import Plan, classify, only_trees, program_names, resolve, transfer_program, with_contents
from .events import ChannelClosedError, ChannelEvent, Closed, Data, SessionRequest, UpstreamError

if TYPE_CHECKING:
    from .handler import SSHHandler

log = logging.getLogger("gw.ssh")

#: Exit status when gw cannot run anything for the client (target unreachable, session ended): what ssh itself
#: uses for connection-level errors.
UNAVAILABLE = 255
#: Bytes of client input gw buffers while a command waits for its decision (an approval can take minutes).
EARLY_INPUT_LIMIT = 256 * 1024

_UNASKED = object()
#: Command lines up to this many characters are analysed on the event loop, longer ones in a worker thread.
ANALYSE_INLINE = 2048



class ConnectionSession:
    """Serves one client connection from its upstream login to its end."""

    def __init__(self, handler: SSHHandler, conn: ClientConnection, client_address: str) -> None:
        self.handler = handler
        self.listener = handler.listener
        self.options = handler.opts
        self.conn = conn
        self.login: Login = conn.identity
        self.client_address = client_address
        self.upstream: UpstreamConnection | None = None
        self._sr: SessionRuntime | None = None
        #: Open channels and what they run (``pending``, ``exec``, ``shell``, ``sftp``).
        self.channels: dict[ServerChannel, str] = {}
        self.end_reason = "client_closed"
        #: Once set, new channels are refused with this message (the session is ending).
        self.closing: str | None = None
        self._home: object = _UNASKED

    @property
    def sr(self) -> SessionRuntime:
        assert self._sr is not None
        return self._sr

    # -- lifetime -------------------------------------------------------------------------------------------
    async def run(self) -> None:
        target = self.handler.target
        try:
            with trio.fail_after(target.connect_timeout + 2):
                self.upstream = await connect_upstream(self.handler.bridge, target)
        except (UpstreamError, trio.TooSlowError) as e:
            reason = e.reason if isinstance(e, UpstreamError) else "upstream_unavailable"
            message = str(e) if isinstance(e, UpstreamError) else (
                f"the target {target.host}:{target.port} did not answer in time; try again later or tell the "
                "gateway operator")
            log.warning("listener %s: %s (%s): %s", self.listener.name, self.client_address,
                        self.login.identity.subject, message)
            await self.listener.refused(client_address=self.client_address, claimed_user=self.conn.username,
                                        reason=reason, message=message)
            await self._answer_first_channel(f"gw: {message}")
            return
        attributes = {"upstream_user": target.user, "auth": self.login.method}
        if self.login.key:
            attributes["key"] = self.login.key
        if self.conn.client_version:
            attributes["client_version"] = self.conn.client_version
        try:
            self._sr = await self.listener.start_session(
                self.login.identity, client_address=self.client_address, claimed_user=self.conn.username,
                upstream=target.describe(), attributes=attributes)
        except BaseException:
            self.upstream.close()
            raise
        try:
            async with trio.open_nursery() as watchers:
                watchers.start_soon(self._terminator)
                watchers.start_soon(self._watch_upstream)
                async with trio.open_nursery() as channels:
                    while (chan := await self.conn.next_channel()) is not None:
                        channels.start_soon(self._serve_channel, chan)
                    # The client's connection is gone: stop whatever still runs for it.
                    channels.cancel_scope.cancel()
                watchers.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                self.upstream.close()
                self.conn.close()
                await self.sr.end(self.end_reason)

    async def _answer_first_channel(self, message: str) -> None:
        """Before any session exists: tell the client why on the first channel it opens, then disconnect."""
        with trio.move_on_after(self.listener.handshake_timeout):
            chan = await self.conn.next_channel()
            if chan is not None:
                request = await self.first_request(chan)
                if request is not None:
                    await self.refuse(chan, message, UNAVAILABLE)
                    with trio.move_on_after(1):  # the client closes the ended channel once it has the message
                        while not isinstance(await chan.receive(), Closed):
                            pass
        self.conn.close()

    async def _terminator(self) -> None:
        reason = await self.sr.wait_terminated()
        message = reason.message
        self.closing = message
        if reason is SessionEnd.SHUTDOWN:
            # Drain: commands and transfers in flight may finish; interactive shells never do.
            while any(kind not in ("shell", "pending") for kind in self.channels.values()):
                await trio.sleep(0.05)
        self.end_reason = reason
        log.info("session %s of %s ends: %s", self.sr.session.id, self.sr.session.identity.subject, reason)
        await self.end_channels(f"gw: {message}")
        await self._disconnect_after_channels()

    async def _watch_upstream(self) -> None:
        assert self.upstream is not None
        lost = await self.upstream.wait_lost()
        target = self.handler.target
        self.end_reason = f"upstream_closed: {lost}" if lost else "upstream_closed"
        self.closing = f"the connection to the target {target.host}:{target.port} was lost; reconnect to continue"
        # The channels report the loss themselves (each gets exit status 255).
        await self._disconnect_after_channels()

    async def _disconnect_after_channels(self) -> None:
        """Give the channels up to a second to end (each leaves ``channels`` when its relay returns), then
        disconnect the client."""
        with trio.move_on_after(1):
            while self.channels:
                await trio.sleep(0.05)
        self.conn.close()

    def cancel_reason(self) -> str:
        """Why a command in flight did not finish (for its outcome)."""
        if self.closing:
            return f"session ended: {self.end_reason}"
        return "the client disconnected before the command ended"

    async def end_channels(self, message: str) -> None:
        """End every open channel with ``message`` on its stderr and exit status 255, before the client is
        disconnected.  A client that is disconnected straight after a line may never print it (OpenSSH reads the
        disconnect and exits before it writes out what it received with it); ended channels let the client
        drain its output and close them itself.  What the client sends meanwhile reaches nothing."""
        async with trio.open_nursery() as nursery:
            for chan in list(self.channels):
                chan.mute()
                nursery.start_soon(self.refuse, chan, message, UNAVAILABLE)

    # -- channels -------------------------------------------------------------------------------------------
    async def _serve_channel(self, chan: ServerChannel) -> None:
        self.channels[chan] = "pending"
        try:
            request = await self.first_request(chan)
            if request is None:
                return
            for notice in request.notices:
                await chan.send(notice.encode() + b"\n", stderr=True)
            if self.closing:
                await self.refuse(chan, f"gw: {self.closing}", UNAVAILABLE)
                return
            name = self.listener.name
            if request.kind == "exec":
                self.channels[chan] = "exec"
                await CommandRelay(self, chan, request).run()
            elif request.kind == "shell":
                if self.options.shell == "deny":
                    await self._config_refusal(chan, "shell", f"gw: interactive shells are not allowed on listener "
                                               f"{name!r} (shell = \"deny\"); run each command as "
                                               "ssh HOST 'COMMAND' instead")
                    return
                self.channels[chan] = "shell"
                await CommandRelay(self, chan, request).run()
            elif request.subsystem == "sftp":
                if self.options.sftp == "deny":
                    await self._config_refusal(chan, "sftp", f"gw: sftp is not allowed on listener {name!r} "
                                               "(sftp = \"deny\"); transfer files another way or ask the "
                                               "gateway operator")
                    return
                self.channels[chan] = "sftp"
                await SftpRelay(self, chan, request).run()
            else:
                await self._config_refusal(chan, f"subsystem {request.subsystem}",
                                           f"gw: the subsystem {request.subsystem!r} is not available through "
                                           "gw; only sftp is relayed")
        except ChannelClosedError:
            pass
        finally:
            self.channels.pop(chan, None)
            chan.close()

    async def first_request(self, chan: ServerChannel) -> SessionRequest | None:
        while True:
            event = await chan.receive()
            if isinstance(event, SessionRequest):
                return event
            if isinstance(event, Closed):
                return None

    async def _config_refusal(self, chan: ServerChannel, what: str, message: str) -> None:
        log.info("listener %s: refused %s for %s (session %s): listener configuration", self.listener.name,
                 what, self.login.identity.subject, self.sr.session.id)
        await self.refuse(chan, message, self.options.refused_exit_status)

    async def refuse(self, chan: ServerChannel, message: str, status: int) -> None:
        """Tell the client why on its stderr, end the channel with ``status``."""
        with trio.move_on_after(2):
            try:
                await chan.send(message.rstrip("\n").encode("utf-8", "replace") + b"\n", stderr=True)
            except ChannelClosedError:
                return
            await chan.exit(status)

    # -- what commands touch --------------------------------------------------------------------------------
    async def home(self) -> str | None:
        """The upstream account's home directory (asked once per connection; None if the target cannot say)."""
        if self._home is _UNASKED:
            assert self.upstream is not None
            try:
                self._home = await self.upstream.home()
            except UpstreamError:
                return None  # asked again next time; relative paths are under any directory meanwhile
            if self._home is None:
                log.warning("listener %s: the target %s does not tell gw its home directory (no sftp subsystem?); "
                            "relative paths in commands match path rules under any directory",
                            self.listener.name, self.handler.target.describe())
            else:
                await self.handler.check_upstream_account(self.upstream, self._home)
        return self._home if isinstance(self._home, str) else None

    def context(self, home: str | None) -> ShellContext:
        return ShellContext(cwd=home, home=home, user=self.handler.target.user,
                            interactive_programs=frozenset(self.options.interactive_programs))

    async def plan(self, text: str) -> Plan:
        """Read an exec command line and ask the target where its paths lead."""
        home = await self.home()
        if len(text) > ANALYSE_INLINE:
            # a long line takes milliseconds to read: not on the event loop every session shares
            analysis = await trio.to_thread.run_sync(classify, text, self.context(home))
        else:
            analysis = classify(text, self.context(home))
        transfer = transfer_program(text, analysis)
        objects = analysis.objects
        if transfer:
            objects = with_contents(objects)
        assert self.upstream is not None
        objects = await resolve(await only_trees(objects, self.upstream), self.upstream, analysis.physical)
        return Plan(analysis, objects, transfer, await program_names(analysis, self.upstream))

    async def resolve_objects(self, objects: tuple[str, ...], physical: tuple[str, ...] = ()) -> tuple[str, ...]:
        assert self.upstream is not None
        return await resolve(await only_trees(objects, self.upstream), self.upstream, physical)

    async def decide(self, chan: ServerChannel, cmd: Command, gone_reason: str
                     ) -> tuple[CommandRun | None, list[ChannelEvent]]:
        """Run the pipeline's decision while watching the channel: input that arrives meanwhile is kept (up to
        :data:`EARLY_INPUT_LIMIT`) and returned; if the client closes the channel, the decision is abandoned
        (an approval hold is cancelled), the command is recorded as cancelled (``gone_reason``) and the run is
        None."""
        early: list[ChannelEvent] = []
        gone = False
        run: CommandRun | None = None

        async with trio.open_nursery() as nursery:
            async def watch() -> None:
                nonlocal gone
                size = 0
                while size < EARLY_INPUT_LIMIT:
                    event = await chan.receive()
                    early.append(event)
                    if isinstance(event, Data):
                        size += len(event.data)
                    elif isinstance(event, Closed):
                        gone = True
                        context.client_left()
                        nursery.cancel_scope.cancel()
                        return
                await trio.sleep_forever()

            context = StderrNotices(chan, self)
            nursery.start_soon(watch)
            run = await self.sr.decide(cmd, context)
            nursery.cancel_scope.cancel()
        if gone and run is not None:  # the verdict came as the client left: nobody waits for it
            await run.abandon(OutcomeStatus.CANCELLED, gone_reason)
            run = None
        return run, early
