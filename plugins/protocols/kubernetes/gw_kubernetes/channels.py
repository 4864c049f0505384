"""exec and attach streams: the Kubernetes channel protocol (``v5.channel.k8s.io``, ``v4.channel.k8s.io``) read
message by message on the WebSocket gw relays.

Every binary message starts with a channel byte.  From the API server: 1 stdout, 2 stderr, 3 the status (a
``metav1.Status`` JSON document: success, or the exit code in ``details.causes``).  From kubectl: 0 stdin,
4 terminal resize (``{"Width": W, "Height": H}``), 255 close of a stream (v5).  stdout and stderr pass the
pipeline's ``stdout`` / ``stderr`` filters (``pty`` with a terminal), so masking and recording apply as over SSH;
what kubectl types is seen on ``stdin`` / ``pty-input`` and resizes on ``pty-resize`` (the recording's asciicast
``r`` events).  Before the status message goes out, the output filters are finished, so what they held back
(a partial line) is sent first.

Whatever does not fit -- a text message, an unknown channel byte, a message without one -- closes the
WebSocket with a reason: gw relays only what it can read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gw.stage import StreamFilter
from gw_httpproxy.filtering import feed, finish, open_filter
from gw_httpproxy.websocket import PROTOCOL_ERROR, Frame, Message, Opcode, WebSocketError

if TYPE_CHECKING:
    from gw.pipeline import CommandRun

STDIN, STDOUT, STDERR, STATUS, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
TEXT = "text/plain"
#: The channel protocols gw relays; a WebSocket upgrade on exec/attach must offer at least one of them.
CHANNEL_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")


def _refuse_text() -> WebSocketError:
    return WebSocketError(PROTOCOL_ERROR, "gw: exec streams must be binary channel messages "
                          "(v5.channel.k8s.io / v4.channel.k8s.io)")


class ExecOutput:
    """:class:`gw_httpproxy.tunnel.MessageFilter` for what the API server sends."""

    def __init__(self, out: StreamFilter | None, err: StreamFilter | None, *, tty: bool) -> None:
        self.out = out
        self.err = err
        self.out_channel = "pty" if tty else "stdout"
        self.finished = False
        #: Merged into the command's outcome (``exit_code``, ``exec_status``).
        self.outcome_notes: dict[str, Any] = {}

    @classmethod
    def open(cls, run: CommandRun, *, tty: bool) -> ExecOutput:
        out = open_filter(run, "pty" if tty else "stdout", TEXT)
        err = open_filter(run, "stderr", TEXT)
        return cls(out, err, tty=tty)

    def _tails(self) -> list[Message]:
        if self.finished:
            return []
        self.finished = True
        out: list[Message] = []
        for channel, filt, name in ((STDOUT, self.out, self.out_channel), (STDERR, self.err, "stderr")):
            if filt is not None:
                tail = finish(filt, name)
                if tail:
                    out.append(Message(Opcode.BINARY, bytes([channel]) + tail))
        return out

    def message(self, message: Message) -> Sequence[Message]:
        if message.opcode is not Opcode.BINARY:
            raise _refuse_text()
        if not message.payload:
            raise WebSocketError(PROTOCOL_ERROR, "gw: a channel message without its channel byte")
        channel, data = message.payload[0], message.payload[1:]
        if channel in (STDOUT, STDERR):
            filt, name = (self.out, self.out_channel) if channel == STDOUT else (self.err, "stderr")
            if filt is None or not data:
                return (message,)
            if self.finished:
                raise WebSocketError(PROTOCOL_ERROR, "gw: output after the exec status")
            masked = feed(filt, data, name)
            return (Message(Opcode.BINARY, bytes([channel]) + masked),) if masked else ()
        if channel == STATUS:
            self._status(data)
            return (*self._tails(), message)
        raise WebSocketError(PROTOCOL_ERROR, f"gw: the API server sent the unknown channel {channel}")

    def _status(self, data: bytes) -> None:
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            self.outcome_notes["exec_status"] = "unreadable"
            return
        if not isinstance(doc, dict):
            return
        self.outcome_notes["exec_status"] = doc.get("status")
        if doc.get("status") == "Success":
            self.outcome_notes["exit_code"] = 0
            return
        causes = (doc.get("details") or {}).get("causes") or []
        for cause in causes if isinstance(causes, list) else []:
            if isinstance(cause, dict) and cause.get("reason") == "ExitCode":
                try:
                    self.outcome_notes["exit_code"] = int(cause.get("message", ""))
                except ValueError:
                    pass
        if doc.get("message"):
            self.outcome_notes["exec_message"] = str(doc["message"])[:500]

    def control(self, frame: Frame) -> Frame | None:
        return frame

    def finish(self) -> None:
        # The stream ended without a status message (the API server closed early): finish the filters so
        # recordings are complete; what they still held cannot be sent any more and is dropped.
        self._tails()


class ExecInput:
    """:class:`gw_httpproxy.tunnel.MessageObserver` for what kubectl sends (relayed unchanged)."""

    def __init__(self, stdin: StreamFilter | None, resize: StreamFilter | None, *, tty: bool) -> None:
        self.stdin = stdin
        self.resize = resize
        self.stdin_channel = "pty-input" if tty else "stdin"

    @classmethod
    def open(cls, run: CommandRun, *, tty: bool) -> ExecInput:
        stdin = open_filter(run, "pty-input" if tty else "stdin", TEXT)
        resize = open_filter(run, "pty-resize", "") if tty else None
        return cls(stdin, resize, tty=tty)

    def message(self, message: Message) -> None:
        if message.opcode is not Opcode.BINARY:
            raise _refuse_text()
        if not message.payload:
            raise WebSocketError(PROTOCOL_ERROR, "gw: a channel message without its channel byte")
        channel, data = message.payload[0], message.payload[1:]
        if channel == STDIN:
            if self.stdin is not None and data:
                feed(self.stdin, data, self.stdin_channel)
        elif channel == RESIZE:
            try:
                size = json.loads(data)
                cols, rows = int(size["Width"]), int(size["Height"])
            except (ValueError, KeyError, TypeError):
                raise WebSocketError(PROTOCOL_ERROR, "gw: a malformed terminal resize message") from None
            if self.resize is not None:
                feed(self.resize, f"{cols}x{rows}".encode(), "pty-resize")
        elif channel != CLOSE:
            raise WebSocketError(PROTOCOL_ERROR, f"gw: kubectl sent the unknown channel {channel}; only stdin (0), "
                                 "resize (4) and close (255) are relayed")

    def finish(self) -> None:
        for filt, name in ((self.stdin, self.stdin_channel), (self.resize, "pty-resize")):
            if filt is not None:
                finish(filt, name)
