"""The sans-IO codec and response reader on their own: packets round-trip, input split at every byte gives the
same packets, 16 MB fragments reassemble both ways, and arbitrary bytes never raise anything but
ProtocolError."""

from __future__ import annotations

from typing import Any

import pytest
from gw_mysql.codec import CLOSED, MAX_FRAGMENT, NEED_DATA, Packet, PacketCodec, encode_packet, with_seq
from gw_mysql.constants import Capability as C
from gw_mysql.constants import Command as Com
from gw_mysql.errors import PacketTooLarge, ProtocolError, RemoteProtocolError
from gw_mysql.messages import (
    OK,
    ColumnDefinition,
    Err,
    Execute,
    Handshake,
    HandshakeResponse,
    decode_binary_row,
    decode_error,
    decode_text_row,
    encode_binary_row,
    encode_text_row,
    eof_packet,
)
from gw_mysql.results import Ev, ResponseReader
from hypothesis import given, settings
from hypothesis import strategies as st


def packets(codec: PacketCodec) -> list[Packet]:
    out = []
    while True:
        p = codec.next_packet()
        if p is NEED_DATA or p is CLOSED:
            return out
        assert isinstance(p, Packet)
        out.append(p)


payloads = st.lists(st.binary(max_size=300), min_size=1, max_size=6)


@given(payloads, st.integers(0, 255))
def test_round_trip_and_every_split(items: list[bytes], seq: int) -> None:
    wire = b"".join(encode_packet(p, (seq + i) & 0xFF) for i, p in enumerate(items))
    whole = PacketCodec()
    whole.receive_data(wire)
    expected = packets(whole)
    assert [p.payload for p in expected] == items
    assert b"".join(p.raw for p in expected) == wire
    for cut in range(len(wire) + 1):
        codec = PacketCodec()
        got = []
        for part in (wire[:cut], wire[cut:]):
            if part:
                codec.receive_data(part)
            got += packets(codec)
        assert got == expected


def test_every_single_byte_feed() -> None:
    wire = encode_packet(b"\x03select 1", 0) + encode_packet(b"", 1) + encode_packet(b"x" * 70000, 2)
    codec = PacketCodec()
    got = []
    for b in wire:
        codec.receive_data(bytes((b,)))
        got += packets(codec)
    assert [p.payload for p in got] == [b"\x03select 1", b"", b"x" * 70000]


@pytest.mark.parametrize("size", [MAX_FRAGMENT - 1, MAX_FRAGMENT, MAX_FRAGMENT + 1, 2 * MAX_FRAGMENT])
def test_16mb_fragments(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    wire = encode_packet(payload, 7)
    fragments = size // MAX_FRAGMENT + 1
    assert len(wire) == size + 4 * fragments
    codec = PacketCodec(max_packet_size=1 << 30)
    # in a few uneven chunks
    for i in range(0, len(wire), 5_000_001):
        codec.receive_data(wire[i:i + 5_000_001])
    (p,) = packets(codec)
    assert p.payload == payload and p.seq == 7 and p.fragments == fragments and p.next_seq == (7 + fragments) & 0xFF
    assert p.raw == wire
    # renumbering keeps the payload and restarts the sequence where asked
    codec = PacketCodec(max_packet_size=1 << 30)
    codec.receive_data(with_seq(p, 250))
    (q,) = packets(codec)
    assert q.payload == payload and q.seq == 250


def test_lying_lengths_and_sequence_games() -> None:
    codec = PacketCodec(max_packet_size=1024)
    codec.receive_data(b"\xff\xff\x00\x00")
    with pytest.raises(PacketTooLarge, match="max_packet_size of 1024"):
        codec.next_packet()
    # a continuation fragment with the wrong sequence id
    codec = PacketCodec(max_packet_size=1 << 30)
    codec.receive_data(b"\xff\xff\xff\x00" + b"a" * MAX_FRAGMENT + b"\x01\x00\x00\x05" + b"b")
    with pytest.raises(RemoteProtocolError, match="out of order"):
        codec.next_packet()
    # an unexpected sequence id where the protocol fixes it
    codec = PacketCodec()
    codec.expected_seq = 1
    codec.receive_data(encode_packet(b"x", 3))
    with pytest.raises(RemoteProtocolError, match="sent sequence id 3, expected 1"):
        codec.next_packet()
    # closed in the middle of a packet
    codec = PacketCodec()
    codec.receive_data(b"\x05\x00\x00\x00ab")
    codec.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a packet"):
        codec.next_packet()
    codec = PacketCodec()
    codec.receive_data(b"")
    assert codec.next_packet() is CLOSED


def test_property_tests_are_judged_without_a_deadline() -> None:
    """The repository's hypothesis profile (conftest.py): an example that runs slowly on a loaded machine is
    not a failure; what the examples assert is."""
    assert settings.default.deadline is None


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_garbage_only_raises_protocol_errors(data: bytes) -> None:
    codec = PacketCodec(max_packet_size=4096)
    codec.receive_data(data)
    codec.receive_data(b"")
    try:
        for p in packets(codec):
            for decode in (Handshake.decode, HandshakeResponse.decode, ColumnDefinition.decode,
                           lambda b: OK.decode(b, C.SESSION_TRACK | C.PROTOCOL_41), decode_error,
                           lambda b: decode_text_row(b, 3), lambda b: decode_binary_row(b, [3, 253, 12]),
                           lambda b: Execute.decode(b, 2, None)):
                try:
                    decode(p.payload)
                except ProtocolError:
                    pass
    except ProtocolError:
        pass


@given(st.text(max_size=20), st.integers(0, 2**32 - 1), st.binary(min_size=20, max_size=20),
       st.integers(0, 255), st.sampled_from(["mysql_native_password", "mysql_clear_password", "client_ed25519"]))
def test_handshake_round_trip(version: str, cid: int, scramble: bytes, collation: int, plugin: str) -> None:
    version = version.replace("\0", "")
    scramble = scramble.replace(b"\0", b"x")
    caps = int(C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.SSL | C.DEPRECATE_EOF)
    h = Handshake(version, cid, scramble, caps, collation, 2, plugin)
    assert Handshake.decode(h.encode()) == h


@given(st.text(max_size=20).map(lambda s: s.replace("\0", "")), st.binary(max_size=600),
       st.none() | st.text(max_size=10).map(lambda s: s.replace("\0", "")),
       st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=3))
def test_handshake_response_round_trip(user: str, auth: bytes, db: str | None, attrs: list[Any]) -> None:
    caps = int(C.PROTOCOL_41 | C.SECURE_CONNECTION | C.PLUGIN_AUTH | C.PLUGIN_AUTH_LENENC_CLIENT_DATA
               | C.CONNECT_ATTRS | (C.CONNECT_WITH_DB if db is not None else 0))
    r = HandshakeResponse(caps, 1 << 24, 45, user, auth, db, "mysql_clear_password", tuple(attrs))
    assert HandshakeResponse.decode(r.encode()) == r


@given(st.lists(st.none() | st.binary(max_size=300), max_size=8))
def test_text_rows(values: list[bytes | None]) -> None:
    assert decode_text_row(encode_text_row(values), len(values)) == values


@given(st.lists(st.tuples(st.sampled_from([1, 2, 3, 8, 4, 5, 253, 252, 12, 11]), st.booleans()), max_size=12))
def test_binary_rows(spec: list[tuple[int, bool]]) -> None:
    widths = {1: 1, 2: 2, 3: 4, 8: 8, 4: 4, 5: 8}
    types, values = [], []
    for t, null in spec:
        types.append(t)
        if null:
            values.append(None)
        elif t in widths:
            values.append(b"\x07" * widths[t])
        elif t in (12, 11):
            values.append(b"\x07" + b"\x01" * 7)
        else:
            values.append(b"text value")
    assert decode_binary_row(encode_binary_row(values, types), types) == values


def test_err_and_ok() -> None:
    e = Err(1227, "42000", "nope ü")
    assert decode_error(e.encode()) == e
    ok = OK(3, 7, 2, 1, b"Rows matched: 3")
    assert OK.decode(ok.encode(C.PROTOCOL_41), C.PROTOCOL_41) == ok


def _column(name: str) -> bytes:
    return ColumnDefinition("test", "t", "t", name, name, 45, 40, 253, 0, 0).encode()


@pytest.mark.parametrize("deprecate_eof", [False, True])
def test_response_reader_multi_results(deprecate_eof: bool) -> None:
    caps = int(C.PROTOCOL_41 | (C.DEPRECATE_EOF if deprecate_eof else 0))
    more = 0x0008 | 0x0002
    end = OK(0, 0, more, 0, header=0xFE).encode(caps) if deprecate_eof else eof_packet(more)
    answer = [b"\x02", _column("a"), _column("b")]
    if not deprecate_eof:
        answer.append(eof_packet(2))
    answer += [encode_text_row([b"1", None]), end, OK(5, 0, 2).encode(caps)]
    r = ResponseReader(Com.QUERY, caps)
    events = [r.feed(p) for p in answer]
    expected = [Ev.RESULT, Ev.COLUMN] + ([Ev.COLUMNS_DONE] if deprecate_eof else [Ev.COLUMN, Ev.COLUMNS_DONE])
    assert events == expected + [Ev.ROW, Ev.RESULT_DONE, Ev.OK]
    assert r.done and r.results == 2 and r.ok is not None and r.ok.affected_rows == 5
    with pytest.raises(RemoteProtocolError):
        r.feed(OK().encode())


def test_response_reader_prepare_and_error() -> None:
    caps = int(C.PROTOCOL_41 | C.DEPRECATE_EOF)
    r = ResponseReader(Com.STMT_PREPARE, caps)
    prep = b"\x00" + (5).to_bytes(4, "little") + (1).to_bytes(2, "little") + (2).to_bytes(2, "little") + b"\0\0\0"
    assert [r.feed(p) for p in (prep, _column("?"), _column("?"), _column("x"))] == [
        Ev.PREPARED, Ev.PARAM, Ev.PARAMS_DONE, Ev.COLUMNS_DONE]
    assert r.done and r.prepared is not None and r.prepared.statement_id == 5
    r = ResponseReader(Com.QUERY, caps)
    assert r.feed(b"\x01") is Ev.RESULT and r.feed(_column("a")) is Ev.COLUMNS_DONE
    assert r.feed(Err(1317, "70100", "interrupted").encode()) is Ev.ERROR and r.done
