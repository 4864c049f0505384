"""The sans-IO reader of the server's answer to one command (h11 is the model).

MySQL is half-duplex: a command goes out, the whole answer comes back.  What the answer looks like depends on
the command and on CLIENT_DEPRECATE_EOF (whether column definitions and rows end with an EOF packet or an OK
packet with the 0xFE header).  :class:`ResponseReader` follows the answer packet by packet and says what each
packet is, so a proxy can relay it, filter it or stop at the right place -- without doing I/O, so tests can
drive it byte by byte.
"""

from __future__ import annotations

import enum

from .constants import Capability as C
from .constants import Command as Com
from .constants import ServerStatus
from .errors import RemoteProtocolError
from .messages import OK, ColumnDefinition, PrepareOK, column_count, eof_status, is_terminator


class Ev(enum.Enum):
    OK = "ok"  # an OK packet (end of a command, or of one result of a multi-result answer)
    ERROR = "error"  # an ERR packet: ends the answer
    RESULT = "result"  # a result set starts (column count)
    COLUMN = "column"  # a column definition
    COLUMNS_DONE = "columns_done"  # the last column definition (DEPRECATE_EOF) or the EOF after them
    ROW = "row"
    RESULT_DONE = "result_done"  # the terminator of a result set
    LOCAL_INFILE = "local_infile"  # the server asks the client for a file (LOAD DATA LOCAL)
    PREPARED = "prepared"  # COM_STMT_PREPARE's answer header
    PARAM = "param"  # a parameter definition of a prepared statement
    PARAMS_DONE = "params_done"
    TEXT = "text"  # COM_STATISTICS' answer: one string


class _Phase(enum.Enum):
    FIRST = 1
    COLUMNS = 2
    COLUMNS_EOF = 3
    ROWS = 4
    PARAMS = 5
    PARAMS_EOF = 6
    DONE = 7


#: Commands whose answer is just OK or ERR.
_OK_ONLY = frozenset({Com.INIT_DB, Com.PING, Com.SET_OPTION, Com.RESET_CONNECTION, Com.STMT_RESET,
                      Com.REFRESH, Com.PROCESS_KILL, Com.CHANGE_USER, Com.CREATE_DB, Com.DROP_DB, Com.SHUTDOWN,
                      Com.DEBUG})


class ResponseReader:
    """Follows the answer to ``command`` (a :class:`~gw_mysql.constants.Command` number)."""

    def __init__(self, command: int, capabilities: int, *, cursor: bool = False, columns: bool = True) -> None:
        self.command = command
        #: Decode column definitions (a row filter or binary rows need them); relaying only counts them.
        self.decode_columns = columns
        self.capabilities = capabilities
        self.deprecate_eof = bool(capabilities & C.DEPRECATE_EOF)
        #: COM_STMT_EXECUTE with a cursor: the result set's rows come later, through COM_STMT_FETCH.
        self.cursor = cursor
        self.phase = _Phase.FIRST
        self.column_count = 0
        self.columns: list[ColumnDefinition] = []
        self.params: list[ColumnDefinition] = []
        self.prepared: PrepareOK | None = None
        self.ok: OK | None = None
        #: Status flags of the last terminator/OK (transaction state, more results ...).
        self.status = 0
        self.warnings = 0
        #: How many results (OK packets and result sets) this answer held so far.
        self.results = 0
        self._prepare_columns_left = 0
        self.seen_columns = 0
        if command == Com.FIELD_LIST:
            self.phase = _Phase.COLUMNS
            self.column_count = -1
        elif command == Com.STMT_FETCH:
            self.phase = _Phase.ROWS

    @property
    def done(self) -> bool:
        return self.phase is _Phase.DONE

    @property
    def more_results(self) -> bool:
        return bool(self.status & ServerStatus.MORE_RESULTS_EXISTS)

    def feed(self, payload: bytes) -> Ev:
        """Classify the next packet of the answer and advance."""
        if self.phase is _Phase.DONE:
            raise RemoteProtocolError("the server sent a packet after its answer was complete")
        first = payload[0] if payload else -1
        phase = self.phase
        if first == 0xFF and phase is not _Phase.COLUMNS and phase is not _Phase.PARAMS:
            self.phase = _Phase.DONE
            return Ev.ERROR
        if phase is _Phase.FIRST:
            return self._first(payload, first)
        if phase is _Phase.ROWS:
            if is_terminator(payload, self.deprecate_eof):
                self.status, self.warnings = eof_status(payload, self.deprecate_eof, self.capabilities)
                self._after_result()
                return Ev.RESULT_DONE
            return Ev.ROW
        if phase is _Phase.COLUMNS:
            if first == 0xFF:
                self.phase = _Phase.DONE
                return Ev.ERROR
            if self.column_count == -1 and is_terminator(payload, self.deprecate_eof):  # COM_FIELD_LIST
                self.status, self.warnings = eof_status(payload, self.deprecate_eof, self.capabilities)
                self.phase = _Phase.DONE
                return Ev.RESULT_DONE
            self.seen_columns += 1
            if self.decode_columns:
                self.columns.append(ColumnDefinition.decode(payload))
            if self.column_count != -1 and self.seen_columns == self.column_count:
                if self.deprecate_eof:
                    self._rows_or_done()
                    return Ev.COLUMNS_DONE
                self.phase = _Phase.COLUMNS_EOF
            return Ev.COLUMN
        if phase is _Phase.COLUMNS_EOF:
            if not is_terminator(payload, False):
                raise RemoteProtocolError("expected the EOF packet after the column definitions")
            self.status, self.warnings = eof_status(payload, False, self.capabilities)
            self._rows_or_done()
            return Ev.COLUMNS_DONE
        if phase is _Phase.PARAMS:
            self.params.append(ColumnDefinition.decode(payload))
            if len(self.params) == (self.prepared.params if self.prepared else 0):
                if self.deprecate_eof:
                    self._after_params()
                    return Ev.PARAMS_DONE
                self.phase = _Phase.PARAMS_EOF
            return Ev.PARAM
        if phase is _Phase.PARAMS_EOF:
            if not is_terminator(payload, False):
                raise RemoteProtocolError("expected the EOF packet after the parameter definitions")
            self._after_params()
            return Ev.PARAMS_DONE
        raise AssertionError(phase)

    def _first(self, payload: bytes, first: int) -> Ev:
        if self.command == Com.STATISTICS:
            self.phase = _Phase.DONE
            return Ev.TEXT
        if first == 0x00 and self.command == Com.STMT_PREPARE:
            self.prepared = PrepareOK.decode(payload)
            self._prepare_columns_left = self.prepared.columns
            if self.prepared.params:
                self.phase = _Phase.PARAMS
            else:
                self._after_params()
            return Ev.PREPARED
        if first == 0x00 or (first == 0xFE and self.command in _OK_ONLY):
            self.ok = OK.decode(payload, self.capabilities)
            self.status, self.warnings = self.ok.status, self.ok.warnings
            self.results += 1
            self.phase = _Phase.FIRST if self.more_results else _Phase.DONE
            return Ev.OK
        if self.command in _OK_ONLY:
            raise RemoteProtocolError(f"unexpected answer to command 0x{self.command:02x}")
        if first == 0xFB:
            return Ev.LOCAL_INFILE  # the server waits for the client's file; the answer continues after it
        self.column_count = column_count(payload)
        if self.column_count <= 0:
            raise RemoteProtocolError("a result set with no columns")
        self.columns = []
        self.seen_columns = 0
        self.phase = _Phase.COLUMNS
        return Ev.RESULT

    def _rows_or_done(self) -> None:
        if self.command == Com.STMT_PREPARE:
            self.phase = _Phase.DONE
            return
        if self.cursor and self.status & ServerStatus.CURSOR_EXISTS:
            # The rows stay on the server until COM_STMT_FETCH; the EOF after the columns ends this answer.
            self.results += 1
            self.phase = _Phase.DONE
            return
        self.phase = _Phase.ROWS

    def _after_result(self) -> None:
        self.results += 1
        self.phase = _Phase.FIRST if self.more_results and self.command != Com.STMT_FETCH else _Phase.DONE

    def _after_params(self) -> None:
        assert self.prepared is not None
        if self.prepared.columns:
            self.column_count = self.prepared.columns
            self.columns = []
            self.seen_columns = 0
            self.phase = _Phase.COLUMNS
        else:
            self.phase = _Phase.DONE

    def local_infile_answered(self) -> None:
        """The client side of LOAD DATA LOCAL was answered (gw sends an empty file): OK or ERR follows."""
        self.phase = _Phase.FIRST
