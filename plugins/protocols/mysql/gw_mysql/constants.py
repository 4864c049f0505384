"""Numbers of the MySQL client/server protocol (capability flags, commands, column types, status flags),
as MySQL and MariaDB define them."""

from __future__ import annotations

import enum


class Capability(enum.IntFlag):
    """Capability flags exchanged in the handshake (the lower 32 bits; MariaDB's extended ones are not used:
    gw always sets ``LONG_PASSWORD``, which tells MariaDB clients the server is not MariaDB-extended)."""

    LONG_PASSWORD = 1 << 0
    FOUND_ROWS = 1 << 1
    LONG_FLAG = 1 << 2
    CONNECT_WITH_DB = 1 << 3
    NO_SCHEMA = 1 << 4
    COMPRESS = 1 << 5
    ODBC = 1 << 6
    LOCAL_FILES = 1 << 7
    IGNORE_SPACE = 1 << 8
    PROTOCOL_41 = 1 << 9
    INTERACTIVE = 1 << 10
    SSL = 1 << 11
    IGNORE_SIGPIPE = 1 << 12
    TRANSACTIONS = 1 << 13
    RESERVED = 1 << 14
    SECURE_CONNECTION = 1 << 15
    MULTI_STATEMENTS = 1 << 16
    MULTI_RESULTS = 1 << 17
    PS_MULTI_RESULTS = 1 << 18
    PLUGIN_AUTH = 1 << 19
    CONNECT_ATTRS = 1 << 20
    PLUGIN_AUTH_LENENC_CLIENT_DATA = 1 << 21
    CAN_HANDLE_EXPIRED_PASSWORDS = 1 << 22
    SESSION_TRACK = 1 << 23
    DEPRECATE_EOF = 1 << 24
    OPTIONAL_RESULTSET_METADATA = 1 << 25
    ZSTD_COMPRESSION = 1 << 26
    QUERY_ATTRIBUTES = 1 << 27
    MULTI_FACTOR_AUTHENTICATION = 1 << 28
    CAPABILITY_EXTENSION = 1 << 29
    SSL_VERIFY_SERVER_CERT = 1 << 30
    REMEMBER_OPTIONS = 1 << 31


C = Capability

#: What gw itself can speak on both sides.  Everything else is removed from what it offers clients and from
#: what it asks of the upstream: compression (gw must read every byte), LOCAL INFILE (the server could ask
#: the client for any file), NO_SCHEMA (the server would ignore the ``db.`` of ``db.table``, so a statement would
#: touch another table than the one it names), session tracking, query attributes, optional metadata,
#: multi-factor auth.
GW_CAPABILITIES = (
    C.LONG_PASSWORD | C.FOUND_ROWS | C.LONG_FLAG | C.CONNECT_WITH_DB | C.ODBC | C.IGNORE_SPACE
    | C.PROTOCOL_41 | C.INTERACTIVE | C.IGNORE_SIGPIPE | C.TRANSACTIONS | C.RESERVED | C.SECURE_CONNECTION
    | C.MULTI_STATEMENTS | C.MULTI_RESULTS | C.PS_MULTI_RESULTS | C.PLUGIN_AUTH | C.CONNECT_ATTRS
    | C.PLUGIN_AUTH_LENENC_CLIENT_DATA | C.CAN_HANDLE_EXPIRED_PASSWORDS | C.DEPRECATE_EOF
)
#: Without these gw cannot talk to a client at all (pre-4.1 clients).
REQUIRED_CLIENT_CAPABILITIES = C.PROTOCOL_41 | C.SECURE_CONNECTION


class Command(enum.IntEnum):
    SLEEP = 0x00
    QUIT = 0x01
    INIT_DB = 0x02
    QUERY = 0x03
    FIELD_LIST = 0x04
    CREATE_DB = 0x05
    DROP_DB = 0x06
    REFRESH = 0x07
    SHUTDOWN = 0x08
    STATISTICS = 0x09
    PROCESS_INFO = 0x0A
    CONNECT = 0x0B
    PROCESS_KILL = 0x0C
    DEBUG = 0x0D
    PING = 0x0E
    TIME = 0x0F
    DELAYED_INSERT = 0x10
    CHANGE_USER = 0x11
    BINLOG_DUMP = 0x12
    TABLE_DUMP = 0x13
    CONNECT_OUT = 0x14
    REGISTER_SLAVE = 0x15
    STMT_PREPARE = 0x16
    STMT_EXECUTE = 0x17
    STMT_SEND_LONG_DATA = 0x18
    STMT_CLOSE = 0x19
    STMT_RESET = 0x1A
    SET_OPTION = 0x1B
    STMT_FETCH = 0x1C
    DAEMON = 0x1D
    BINLOG_DUMP_GTID = 0x1E
    RESET_CONNECTION = 0x1F
    CLONE = 0x20
    SUBSCRIBE_GROUP_REPLICATION_STREAM = 0x21
    STMT_BULK_EXECUTE = 0xFA


class ServerStatus(enum.IntFlag):
    IN_TRANS = 0x0001
    AUTOCOMMIT = 0x0002
    MORE_RESULTS_EXISTS = 0x0008
    NO_GOOD_INDEX_USED = 0x0010
    NO_INDEX_USED = 0x0020
    CURSOR_EXISTS = 0x0040
    LAST_ROW_SENT = 0x0080
    DB_DROPPED = 0x0100
    NO_BACKSLASH_ESCAPES = 0x0200
    METADATA_CHANGED = 0x0400
    QUERY_WAS_SLOW = 0x0800
    PS_OUT_PARAMS = 0x1000
    IN_TRANS_READONLY = 0x2000
    SESSION_STATE_CHANGED = 0x4000


class FieldType(enum.IntEnum):
    DECIMAL = 0
    TINY = 1
    SHORT = 2
    LONG = 3
    FLOAT = 4
    DOUBLE = 5
    NULL = 6
    TIMESTAMP = 7
    LONGLONG = 8
    INT24 = 9
    DATE = 10
    TIME = 11
    DATETIME = 12
    YEAR = 13
    NEWDATE = 14
    VARCHAR = 15
    BIT = 16
    TIMESTAMP2 = 17
    DATETIME2 = 18
    TIME2 = 19
    VECTOR = 242
    JSON = 245
    NEWDECIMAL = 246
    ENUM = 247
    SET = 248
    TINY_BLOB = 249
    MEDIUM_BLOB = 250
    LONG_BLOB = 251
    BLOB = 252
    VAR_STRING = 253
    STRING = 254
    GEOMETRY = 255


class ColumnFlag(enum.IntFlag):
    NOT_NULL = 1
    PRI_KEY = 2
    UNIQUE_KEY = 4
    MULTIPLE_KEY = 8
    BLOB = 16
    UNSIGNED = 32
    ZEROFILL = 64
    BINARY = 128
    ENUM = 256
    AUTO_INCREMENT = 512
    TIMESTAMP = 1024
    SET = 2048


#: Collation id of the ``binary`` character set: a column of a string type with it holds bytes, not text.
BINARY_COLLATION = 63
#: utf8mb4_general_ci: what gw announces in its greeting.
DEFAULT_COLLATION = 45
#: ``mysql_clear_password``: the only client authentication method in which gw sees the password itself.
CLEAR_PASSWORD = "mysql_clear_password"
