"""The sans-IO pieces fed byte fragments split at every position: the HTTP/1.1 codec interface, WebSocket
framing, the escaped-secret scrubber; and the pure request checks (targets, method overrides)."""

from __future__ import annotations

import json

import pytest
from gw_httpproxy.codec import (
    NEED_DATA,
    PAUSED,
    Data,
    EndOfMessage,
    ProtocolError,
    Request,
    Response,
    client_codec,
    server_codec,
)
from gw_httpproxy.overrides import FormOverrideScanner, OverrideRefused, requested_method
from gw_httpproxy.scrub import SecretForms, SecretScrubber, Unscrubbable, check_charset
from gw_httpproxy.targets import BadTarget, normalize_target
from gw_httpproxy.websocket import (
    Frame,
    FrameReader,
    Message,
    MessageAssembler,
    Opcode,
    WebSocketError,
    channel_split,
    close_payload,
    encode_frame,
    parse_close,
    unmask,
)
from hypothesis import given
from hypothesis import strategies as st

# -- HTTP/1.1 codec ------------------------------------------------------------------------------------------------

REQUEST = b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: x\r\n\r\n"


def _events(codec: object, pieces: list[bytes]) -> list[object]:
    """The events of the first message (body pieces joined), feeding ``pieces`` one after the other."""
    out: list[object] = []
    for piece in pieces:
        codec.receive_data(piece)  # type: ignore[attr-defined]
        while (event := codec.next_event()) not in (NEED_DATA, PAUSED):  # type: ignore[attr-defined]
            if type(event) is Data:
                if out and type(out[-1]) is Data:
                    out[-1] = Data(bytes(out[-1].data) + bytes(event.data))  # type: ignore[attr-defined]
                    continue
                event = Data(bytes(event.data))
            out.append(event)
            if type(event) is EndOfMessage:
                return out
    return out


def test_server_codec_same_events_at_every_split() -> None:
    whole = _events(server_codec(65536), [REQUEST])
    assert [type(e) for e in whole] == [Request, Data, EndOfMessage]
    request = whole[0]
    assert isinstance(request, Request)
    assert (request.method, request.target, request.http_version) == (b"POST", b"/a?b=1", b"1.1")
    for cut in range(1, len(REQUEST)):
        assert _events(server_codec(65536), [REQUEST[:cut], REQUEST[cut:]]) == whole, cut


def test_server_codec_answers_and_cycles() -> None:
    codec = server_codec(65536)
    codec.receive_data(REQUEST)
    assert type(codec.next_event()) is Request and codec.request_body_pending and codec.can_respond
    while type(codec.next_event()) is not EndOfMessage:
        pass
    out = codec.send_response(200, [(b"content-length", b"2")], b"OK") + codec.send_data(b"ok") + codec.send_end()
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\nok")
    assert not codec.can_respond and codec.start_next_cycle()
    assert codec.unprocessed.startswith(b"GET /next")


def test_server_codec_protocol_errors_carry_the_status_hint() -> None:
    codec = server_codec(1024)
    codec.receive_data(b"GET / HTTP/1.1\r\nX: " + b"a" * 2000)
    with pytest.raises(ProtocolError) as err:
        codec.next_event()
    assert err.value.status_hint == 431


def test_client_codec_response_split_everywhere() -> None:
    response = b"HTTP/1.1 404 Nope\r\nContent-Length: 3\r\nContent-Type: x/y\r\n\r\nabc"
    for cut in range(1, len(response)):
        codec = client_codec(65536)
        codec.send_request(b"GET", b"/", [(b"host", b"x")])
        codec.send_end()
        events = _events(codec, [response[:cut], response[cut:]])
        head = events[0]
        assert isinstance(head, Response) and (head.status, head.reason) == (404, b"Nope")
        assert events[1:] == [Data(b"abc"), EndOfMessage()]


# -- WebSocket framing ---------------------------------------------------------------------------------------------


@given(st.binary(max_size=70000), st.booleans(), st.data())
def test_frames_round_trip_at_any_split(payload: bytes, masked: bool, data: st.DataObject) -> None:
    raw = encode_frame(Opcode.BINARY, payload, masked=masked) + encode_frame(Opcode.PING, b"p", masked=masked)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=4)))
    reader = FrameReader(from_client=masked, max_payload=1 << 20)
    frames = []
    last = 0
    for cut in [*cuts, len(raw)]:
        reader.receive_data(raw[last:cut])
        last = cut
        while (frame := reader.next_frame()) is not None:
            frames.append(frame)
    assert frames == [Frame(Opcode.BINARY, payload), Frame(Opcode.PING, b"p")]


def test_unmask_is_the_rfc_xor() -> None:
    key = b"\x37\xfa\x21\x3d"
    assert unmask(b"Hello", key) == bytes(b ^ key[i % 4] for i, b in enumerate(b"Hello"))
    assert unmask(unmask(b"x" * 1001, key), key) == b"x" * 1001


@pytest.mark.parametrize("raw, code", [
    (bytes([0xC1, 0x00]), 1002),  # RSV1 (compression nobody negotiated)
    (bytes([0x83, 0x00]), 1002),  # reserved opcode
    (bytes([0x09, 0x00]), 1002),  # fragmented ping
    (bytes([0x89, 126, 0, 126]) + b"x" * 126, 1002),  # ping over 125 bytes
    (bytes([0x82, 0x80, 1, 2, 3, 4]), 1002),  # a masked server frame
    (bytes([0x82, 127]) + (1 << 63).to_bytes(8, "big"), 1002),
    (bytes([0x82, 127]) + (5000).to_bytes(8, "big"), 1009),  # over the bound
])
def test_malformed_frames_close_with_a_code(raw: bytes, code: int) -> None:
    reader = FrameReader(from_client=False, max_payload=4096)
    reader.receive_data(raw)
    with pytest.raises(WebSocketError) as err:
        reader.next_frame()
    assert err.value.code == code


def test_messages_assemble_across_fragments_with_control_frames_between() -> None:
    asm = MessageAssembler(max_message=10)
    assert asm.add(Frame(Opcode.TEXT, b"ab", fin=False)) is None
    ping = Frame(Opcode.PING, b"")
    assert asm.add(ping) is ping
    assert asm.add(Frame(Opcode.CONTINUATION, b"cd", fin=False)) is None
    assert asm.add(Frame(Opcode.CONTINUATION, b"e")) == Message(Opcode.TEXT, b"abcde")
    with pytest.raises(WebSocketError) as err:
        asm.add(Frame(Opcode.CONTINUATION, b"x"))
    assert err.value.code == 1002
    with pytest.raises(WebSocketError) as err:
        asm.add(Frame(Opcode.TEXT, "é".encode()[:1]))
    assert err.value.code == 1007
    big = MessageAssembler(max_message=4)
    big.add(Frame(Opcode.BINARY, b"abc", fin=False))
    with pytest.raises(WebSocketError) as err:
        big.add(Frame(Opcode.CONTINUATION, b"de"))
    assert err.value.code == 1009


def test_close_payloads_and_channels() -> None:
    assert parse_close(close_payload(1008, "é" * 100)) == (1008, "é" * 61)  # cut on a character boundary
    assert parse_close(b"") == (None, "")
    assert channel_split(b"\x01stdout") == (1, b"stdout")


# -- targets and overrides -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, reason", [
    (b"/a/..;/admin", "path_params"), (b"/admin;jsessionid=1", "path_params"), (b"/a%3bb", "path_params"),
    (b"/a%252fb", "double_encoding"), (b"/%252e%252e/x", "double_encoding"),
    (b"/x/%c0%af", "bad_request_target"), (b"/x%0d%0aSet-Cookie:x", "bad_request_target"),
    (b"/x%7f", "bad_request_target"),
])
def test_ambiguous_targets_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(BadTarget) as err:
        normalize_target(raw, allow_encoded_slash=False)
    assert err.value.reason == reason


def test_allowed_path_params_offer_both_paths_to_rules() -> None:
    target = normalize_target(b"/api/admin;v=2/users", allow_encoded_slash=False, allow_path_params=True)
    assert target.objects == ("/api/admin;v=2/users", "/api/admin/users")
    with pytest.raises(BadTarget):
        normalize_target(b"/api/%2e%2e;/x", allow_encoded_slash=False, allow_path_params=True)
    assert normalize_target(b"/100%25/x", allow_encoded_slash=False).path == "/100%25/x"


@pytest.mark.parametrize("headers, query, mode, expected", [
    ([], "", "refuse", None),
    ([], "a=1&method=x", "refuse", None),
    ([(b"x-http-method-override", b"delete")], "", "honour", "DELETE"),
    ([], "_method=patch", "honour", "PATCH"),
    ([], "x=1;%5Fmethod=PUT", "honour", "PUT"),
])
def test_method_overrides(headers: list[tuple[bytes, bytes]], query: str, mode: str, expected: str | None) -> None:
    assert requested_method(headers, query, mode=mode) == expected


@pytest.mark.parametrize("headers, query, mode", [
    ([(b"x-http-method", b"DELETE")], "", "refuse"),
    ([], "_%6Dethod=DELETE", "refuse"),
    ([(b"x-method-override", b"PUT"), (b"x-http-method", b"DELETE")], "", "honour"),
    ([(b"x-http-method-override", b"DELETE, GET")], "", "honour"),
    ([(b"x-original-url", b"/admin")], "", "honour"),
])
def test_method_overrides_refused(headers: list[tuple[bytes, bytes]], query: str, mode: str) -> None:
    with pytest.raises(OverrideRefused):
        requested_method(headers, query, mode=mode)


@given(st.binary(max_size=40), st.binary(max_size=40), st.integers(0, 60), st.sampled_from([
    b"&_Method=DELETE&", b"&" + b" " * 200 + b"_method=DELETE", b'Content-Disposition: form-data; name="_method"\r\n',
    b'{"x": 1, "\\u005Fmethod": "DELETE"}', b";%5fmethod=PUT"]))
def test_form_scanner_finds_a_split_field(prefix: bytes, suffix: bytes, cut: int, field: bytes) -> None:
    body = prefix + field + suffix
    cut = min(cut, len(body))
    scanner = FormOverrideScanner()
    assert scanner.feed(body[:cut]) or scanner.feed(body[cut:])


@pytest.mark.parametrize("body", [b"payment_method=card&shipping_method=post", b'{"payment_method": "card"}',
                                  b'Content-Disposition: form-data; name="delivery_method"\r\n'])
def test_form_scanner_ignores_fields_that_merely_end_in_method(body: bytes) -> None:
    assert not FormOverrideScanner().feed(body)


# -- the scrubber ----------------------------------------------------------------------------------------------------

SECRET = b"Bearer ab/cd+ef=gh"


@pytest.mark.parametrize("spelling", [
    "Bearer ab\\/cd+ef=gh", "\\u0042earer ab\\u002fcd+ef=gh", "Bearer%20ab%2Fcd%2Bef%3Dgh",
    "&#66;earer ab&#x2f;cd+ef=gh", "B\\u0065arer ab/cd+ef=gh",
])
@pytest.mark.parametrize("cut", [0, 5, 13, 27])
def test_escaped_spellings_are_blanked_at_any_split(spelling: str, cut: int) -> None:
    body = json.dumps({"auth": "x"}).replace('"x"', f'"{spelling}"').encode()
    scrubber = SecretScrubber(SecretForms([SECRET], escapes=True))
    cut = min(cut + 8, len(body))
    out = scrubber.feed(body[:cut]) + scrubber.feed(body[cut:]) + scrubber.finish()
    assert len(out) == len(body)
    decoded = json.loads(out)["auth"]
    import html
    from urllib.parse import unquote

    assert "ab/cd" not in html.unescape(unquote(decoded)), out


def test_escapes_are_not_searched_in_binary_bodies_and_clean_text_is_not_delayed() -> None:
    binary = SecretScrubber(SecretForms([SECRET], escapes=False))
    assert binary.feed(b"\\u0042earer ab/cd+ef=gh") == b"\\u0042earer ab/cd+ef=gh"
    text = SecretScrubber(SecretForms([SECRET], escapes=True))
    assert text.feed(b"plain text without escape characters\n") == b"plain text without escape characters\n"
    held = text.feed(b"50% done")
    assert held + text.finish() == b"50% done"


def test_charsets_the_secret_cannot_be_found_in() -> None:
    assert check_charset("") is None and check_charset("UTF-8") == "utf-8"
    for bad in ("utf-7", "x-nonsense", "hz", "rot13"):
        with pytest.raises(Unscrubbable):
            check_charset(bad)
