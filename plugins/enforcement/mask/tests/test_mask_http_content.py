"""The stream side for HTTP: content types parsed strictly (and refused when gw cannot read them), CSV by its
header row, response headers by name, labelled values in text, charsets, WebSocket messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from gw_mask import MaskUnavailable
from gw_mask.content import Unmaskable, parse_media_type
from gw_mask.fields import name_candidates, rule_for
from gw_mask.patterns import ColumnPattern
from gw_mask.strategies import Redact

Build = Callable[[str], Any]
RULES = 'columns = ["ssn", "*.card_number", "email"], detectors = ["us_ssn", "credit_card", "email"]'


def run(filt: Any, chunks: list[bytes]) -> bytes:
    return b"".join(filt.feed(c) for c in chunks) + filt.finish()


def splits(data: bytes) -> list[list[bytes]]:
    return [[data]] + [[data[:i], data[i:]] for i in range(1, len(data))]


@pytest.mark.parametrize("value, media, params", [
    ("application/json", "application/json", ()),
    ("Application/JSON ; Charset=UTF-8", "application/json", (("charset", "UTF-8"),)),
    ('text/csv; header="present"; charset=utf-8;', "text/csv", (("header", "present"), ("charset", "utf-8"))),
])
def test_media_types_parse(value: str, media: str, params: tuple[tuple[str, str], ...]) -> None:
    parsed = parse_media_type(value)
    assert (parsed.media, parsed.params) == (media, params)


@pytest.mark.parametrize("value", ["application/json,text/plain", "application/json; charset",
                                   "json", "application/json; a=1; a=2", "text/plain; charset=\"x", ""])
def test_malformed_media_types_are_unmaskable(value: str) -> None:
    with pytest.raises(Unmaskable):
        parse_media_type(value)


def test_names_match_column_rules_by_word_runs() -> None:
    assert "ssn" in name_candidates("X-Customer-Ssn") and "customer_ssn" in name_candidates("Customer SSN")
    rules = [(ColumnPattern("ssn"), Redact()), (ColumnPattern("*.card_number"), Redact())]
    assert rule_for("X-Customer-Ssn", rules) and rule_for("X-Card-Number", rules)
    assert rule_for("ssn_last4", rules), "a name containing a masked column's name is masked (fail closed)"
    assert rule_for("X-Request-Id", rules) is None and rule_for("Content-Security-Policy", rules) is None


def test_csv_masks_columns_named_in_its_header_at_any_split(mask_stage: Build, new_command: Any) -> None:
    body = b'id,name,SSN,note\r\n7,"Ann, Jr.",234567890,"card 4111 1111 1111 1111\nsecond line"\r\n8,Bob,,ok\r\n'
    expected = b'id,name,SSN,note\r\n7,"Ann, Jr.",***,"card *** \nsecond line"\r\n8,Bob,,ok\r\n'
    for chunks in splits(body):
        filt = mask_stage(RULES).stream(new_command(), "response-body", "text/csv")
        out = run(filt, chunks)
        assert b"234567890" not in out and b"4111" not in out
        assert out == expected or out.replace(b"*** \n", b"***\n") == expected.replace(b"*** \n", b"***\n")


def test_csv_rows_of_the_wrong_width_are_masked_whole(mask_stage: Build, new_command: Any) -> None:
    body = b"id,name,ssn\n7,Smith, Ann,234567890\n8,Bob,234567890\n"
    out = run(mask_stage('columns = ["ssn"]').stream(new_command(), "response-body", "text/csv"), [body])
    assert out == b"id,name,ssn\n***,***,***,***\n8,Bob,***\n"


@pytest.mark.parametrize("body, expected", [
    (b"id,ssn\r7,234567890\r8,1\r", b"id,ssn\r7,***\r8,***\r"),  # old Mac line ends
    (b"\n\nid,ssn\n7,234567890\n", b"\n\nid,ssn\n7,***\n"),  # blank lines before the header
    (b"# customers export\nid,ssn\n7,234567890\n", b"# customers export\n***,***\n***,***\n"),  # a preamble
])
def test_csv_that_does_not_line_up_fails_closed(mask_stage: Build, new_command: Any, body: bytes,
                                               expected: bytes) -> None:
    for chunks in splits(body):
        out = run(mask_stage('columns = ["ssn"]').stream(new_command(), "response-body", "text/csv"), chunks)
        assert out == expected, chunks


def test_csv_in_another_charset_and_with_a_bom(mask_stage: Build, new_command: Any) -> None:
    body = "\ufeffname;ssn\r\nJürgen;234567890\r\n".encode("utf-16")
    out = run(mask_stage(RULES).stream(new_command(), "response-body", "text/csv; charset=utf-16"),
              [body[:7], body[7:]])
    assert out.decode("utf-16") == "\ufeffname;ssn\r\nJürgen;***\r\n"


def test_response_headers_by_name_and_detectors(mask_stage: Build, new_command: Any) -> None:
    pairs = [["x-customer-ssn", "234567890"], ["x-trace", "t-1"], ["set-cookie", "owner=ann@example.com"],
             ["x-card-number", "4111111111111111"]]
    filt = mask_stage(RULES).stream(new_command(), "response-headers", "application/vnd.gw.header-list+json")
    out = json.loads(run(filt, [json.dumps(pairs).encode()]))
    assert out == [["x-customer-ssn", "***"], ["x-trace", "t-1"], ["set-cookie", "owner=***"],
                   ["x-card-number", "***"]]
    filt = mask_stage(RULES).stream(new_command(), "response-headers", "application/vnd.gw.header-list+json")
    location = json.loads(run(filt, [b'[["location", "/customers?ssn=234567890&x=1"]]']))
    assert location == [["location", "/customers?ssn=***&x=1"]]
    null = mask_stage('strategy = "null", columns = ["ssn"]').stream(new_command(), "response-headers", "x/y")
    assert json.loads(run(null, [b'[["x-ssn", "1"]]'])) == [["x-ssn", ""]]


@pytest.mark.parametrize("text, masked", [
    ("ssn: 234567890\n", "ssn: ***\n"),
    ("<ssn>234567890</ssn>", "<ssn>***</ssn>"),
    ('<c ssn="234567890" name="Ann"/>', '<c ssn="***" name="Ann"/>'),
    ("name=Ann&customer_ssn=234567890&x=1", "name=Ann&customer_ssn=***&x=1"),
    ('data: {"ssn": "234567890", "n": 1}\n', 'data: {"ssn": "***", "n": 1}\n'),
    ('{"ssn": ["234567890"]}', '{"ssn": ["***"]}'),
    ("Card Number => 5500000000000004;", "Card Number => ***;"),
    ("nothing labelled 234567890 here\n", "nothing labelled 234567890 here\n"),
])
def test_labelled_values_in_text(mask_stage: Build, new_command: Any, text: str, masked: str) -> None:
    stage = mask_stage('columns = ["ssn", "*.card_number"]')
    for chunks in splits(text.encode()):
        out = run(stage.stream(new_command(), "response-body", "application/xml"), chunks)
        assert out == masked.encode()


def test_terminal_output_keeps_its_lenient_reading(mask_stage: Build, new_command: Any) -> None:
    stage = mask_stage('columns = ["ssn"]')
    assert stage.stream(new_command(), "stdout", "text/plain") is None, "no label rules on terminals"
    out = run(mask_stage(RULES).stream(new_command(), "stdout", ""), [b"a\x00b 123-45-6789\n"])
    assert out == b"a\x00b ***\n"


def test_http_text_with_nul_characters_is_refused(mask_stage: Build, new_command: Any) -> None:
    filt = mask_stage(RULES).stream(new_command(), "response-body", "text/plain")
    with pytest.raises(MaskUnavailable, match="NUL"):
        run(filt, ["ssn: 234567890\n".encode("utf-16-le")])
    sniffed = mask_stage(RULES).stream(new_command(), "response-body", "text/plain")
    assert run(sniffed, ["ssn: 234567890\n".encode("utf-16")]).decode("utf-16") == "ssn: ***\n"


@pytest.mark.parametrize("content_type", ["text/plain; charset=utf-7", "text/plain; charset=x-nope",
                                          "application/json; charset=iso-2022-jp", "multipart/mixed; boundary=x",
                                          "application/msgpack", "text/csv; header=absent"])
def test_content_gw_cannot_read_is_refused_naming_the_option(mask_stage: Build, new_command: Any,
                                                            content_type: str) -> None:
    with pytest.raises(MaskUnavailable, match="pass_through_types"):
        mask_stage(RULES).stream(new_command(), "response-body", content_type)


def test_json_in_a_declared_charset_is_reencoded_in_it(mask_stage: Build, new_command: Any) -> None:
    doc = json.dumps({"ssn": "234567890", "name": "Jürgen"}, ensure_ascii=False)
    filt = mask_stage(RULES).stream(new_command(), "response-body", "application/json; charset=utf-16")
    out = json.loads(run(filt, [doc.encode("utf-16")]).decode("utf-16"))
    assert out == {"ssn": "***", "name": "Jürgen"}
    lines = mask_stage(RULES).stream(new_command(), "response-body", "application/x-ndjson; charset=utf-32")
    data = (doc + "\n" + doc + "\n").encode("utf-32")
    assert run(lines, [data[:9], data[9:]]).decode("utf-32").count('"ssn":"***"') == 2


def test_watch_streams_are_masked_line_by_line(mask_stage: Build, new_command: Any) -> None:
    filt = mask_stage(RULES).stream(new_command(), "response-body", "application/json;stream=watch")
    event = json.dumps({"type": "ADDED", "object": {"ssn": "234567890"}}).encode() + b"\n"
    assert b'"ssn":"***"' in filt.feed(event), "each event leaves as soon as it is complete"


def test_websocket_messages(mask_stage: Build, new_command: Any) -> None:
    stage = mask_stage(RULES)
    text = stage.stream(new_command(), "ws-server", "text/plain; charset=utf-8")
    assert json.loads(text.feed(b'{"ssn": "234567890", "n": [1]}')) == {"ssn": "***", "n": [1]}
    assert text.feed(b"ssn: 234567890 and 4111 1111 1111 1111") == b"ssn: *** and ***"
    assert text.feed(b"{not json, ssn=234567890") == b"{not json, ssn=***"
    assert text.feed(b"partial without newline 123-45-6789") == b"partial without newline ***"
    with pytest.raises(MaskUnavailable):
        stage.stream(new_command(), "ws-server", "application/octet-stream")
    allowed = mask_stage(RULES + ', pass_through_types = ["application/octet-stream"]')
    assert allowed.stream(new_command(), "ws-server", "application/octet-stream") is None
