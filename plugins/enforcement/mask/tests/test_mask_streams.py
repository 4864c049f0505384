"""Byte streams: SSH output and HTTP bodies, split across reads anywhere; JSON documents; refusals."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from gw_mask import MaskUnavailable
from gw_mask.streams import open_tail

Build = Callable[[str], Any]

DETECT = 'detectors = ["us_ssn", "credit_card", "email", "iban", "phone"]'
OUTPUT = ("id  name   ssn          card                 mail\n"
          "1   Ann    123-45-6789  4111 1111 1111 1111  ann@example.com\n"
          "2   Jürgen 219-09-9998  5555555555554444     jürgen@exämple.de\n"
          "iban DE89 3704 0044 0532 0130 00 phone +44 20 7946 0958 ref 4111 1111 1111 1112\n"
          "tail without newline 371449635398431").encode()
MASKED = ("id  name   ssn          card                 mail\n"
          "1   Ann    ***  ***  ***\n"
          "2   Jürgen ***  ***     ***\n"
          "iban *** phone *** ref 4111 1111 1111 1112\n"
          "tail without newline ***").encode()
RAW_VALUES = [b"123-45-6789", b"4111 1111 1111 1111", b"ann@example.com", b"219-09-9998", b"5555555555554444",
              "jürgen@exämple.de".encode(), b"DE89 3704 0044 0532 0130 00", b"+44 20 7946 0958",
              b"371449635398431"]


def run(filt: Any, chunks: list[bytes]) -> bytes:
    return b"".join(filt.feed(c) for c in chunks) + filt.finish()


@pytest.mark.parametrize("channel", ["stdout", "pty"])
def test_a_value_split_at_every_byte_position_is_still_masked(mask_stage: Build, new_command: Any,
                                                              channel: str) -> None:
    stage = mask_stage(DETECT)
    for cut in range(len(OUTPUT) + 1):
        out = run(stage.stream(new_command(), channel, ""), [OUTPUT[:cut], OUTPUT[cut:]])
        assert out == MASKED, f"split at byte {cut}"


def test_three_way_splits_and_byte_at_a_time(mask_stage: Build, new_command: Any) -> None:
    stage = mask_stage(DETECT)
    assert run(stage.stream(new_command(), "stdout", ""), [bytes([b]) for b in OUTPUT]) == MASKED
    assert run(stage.stream(new_command(), "pty", ""), [bytes([b]) for b in OUTPUT]) == MASKED
    for a in range(0, len(OUTPUT), 7):
        for b in range(a, len(OUTPUT), 11):
            chunks = [OUTPUT[:a], OUTPUT[a:b], OUTPUT[b:]]
            assert run(stage.stream(new_command(), "stderr", "text/plain"), chunks) == MASKED


def test_counts_of_a_stream(mask_stage: Build, new_command: Any) -> None:
    stage = mask_stage(DETECT)
    cmd = new_command()
    run(stage.stream(cmd, "stdout", ""), [OUTPUT])
    assert stage.counts(cmd).as_note() == {
        "columns": 0, "detected": {"us_ssn": 2, "credit_card": 3, "email": 2, "iban": 1, "phone": 1}}


def test_line_mode_holds_lines_and_releases_them_whole(mask_stage: Build, new_command: Any) -> None:
    filt = mask_stage(DETECT).stream(new_command(), "stdout", "")
    assert filt.feed(b"first line\nsecond 4111 1111") == b"first line\n"
    assert filt.feed(b" 1111 1111 and more\nthird") == b"second *** and more\n"
    assert filt.finish() == b"third"


def test_overlong_lines_are_flushed_keeping_a_possible_value_whole(mask_stage: Build, new_command: Any) -> None:
    filt = mask_stage(DETECT + ", max_line = 1024").stream(new_command(), "stdout", "")
    text = b"x" * 3000 + b", card 4111 1111"  # no newline: more than max_line is pending
    assert filt.feed(text) == b"x" * 3000 + b", "  # released, except the run that may start a card
    assert filt.feed(b" 1111 1111 end") == b""
    assert filt.finish() == b"card *** end"
    run_on = mask_stage(DETECT + ", max_line = 1024").stream(new_command(), "stdout", "")
    assert run_on.feed(b"y" * 3000) == b"y" * (3000 - 1024)  # at most 1 KiB is held back


def test_interactive_channels_do_not_wait_for_line_ends(mask_stage: Build, new_command: Any) -> None:
    """A shell prompt has no newline; what cannot begin a value is released at once, and what can (an
    e-mail address may begin with any word) when more output shows it does not."""
    filt = mask_stage(DETECT).stream(new_command(), "pty", "")
    assert filt.feed(b"deploy@web-1:~$ ") == b"deploy@web-1:~$ "
    assert filt.feed(b"l") == b""
    assert filt.feed(b"") == b""  # idle, but "l" may begin an e-mail address
    assert filt.feed(b"s -la\r\n") == b"ls -la\r\n"
    # output split inside a value: held back until the value is complete
    assert filt.feed(b"card: 4111 11") == b"card: "
    assert filt.feed(b"11 1111 1111\r\n$ ") == b"***\r\n$ "
    assert filt.feed(b"mail: ann") == b"mail: "
    assert filt.feed(b"@example.com\r\n") == b"***\r\n"
    assert filt.finish() == b""


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _pty(stage: Any, new_command: Any, clock: _Clock, channel: str = "pty") -> Any:
    from gw_mask.streams import TextStream

    filt = stage.stream(new_command(), channel, "")
    assert isinstance(filt, TextStream)
    filt._clock = clock  # a clock the test moves (no timed test)
    return filt


def test_a_pause_never_releases_the_beginning_of_a_value(mask_stage: Build, new_command: Any) -> None:
    """``printf '078-05-'; sleep 1; printf '1120'`` on a terminal: the first part could begin an SSN, so it is
    held while the stream is idle, and after PTY_HOLD it is released masked, never in clear."""
    from gw_mask.streams import PTY_HOLD

    clock = _Clock()
    stage = mask_stage('detectors = ["us_ssn", "credit_card"]')
    filt = _pty(stage, new_command, clock)
    assert filt.feed(b"$ printf ...\r\nvalue: 078-05-") == b"$ printf ...\r\nvalue: "
    for _ in range(5):
        clock.now += PTY_HOLD / 10
        assert filt.feed(b"") == b""
    clock.now += PTY_HOLD
    assert filt.feed(b"") == b"***"
    assert filt.feed(b"1120\r\n") == b"1120\r\n"
    # complete before the limit: masked as a whole
    assert filt.feed(b"078-05-") == b""
    clock.now += PTY_HOLD / 2
    assert filt.feed(b"") == b""
    assert filt.feed(b"1120\r\n$ ") == b"***\r\n$ "
    assert b"078" not in filt.finish()


def test_idle_releases_what_cannot_begin_a_value(mask_stage: Build, new_command: Any) -> None:
    """A prompt without a newline, or scp's acknowledgement byte, is released when the stream goes idle --
    on a line-buffered channel too -- while a possible value stays held until its line ends."""
    clock = _Clock()
    stage = mask_stage('detectors = ["us_ssn", "credit_card"]')
    out = _pty(stage, new_command, clock, channel="stdout")
    assert out.feed(b"Continue? [y/N] ") == b""
    assert out.feed(b"") == b"Continue? [y/N] "
    assert out.feed(b"\x00") == b""
    assert out.feed(b"") == b"\x00"
    assert out.feed(b"card 4111 1111") == b""
    clock.now += 100
    assert out.feed(b"") == b"card "  # line-buffered channels never release a possible value on a pause
    assert out.feed(b" 1111 1111\n") == b"***\n"
    assert out.finish() == b""


def test_a_value_is_never_cut_where_another_detector_could_begin(mask_stage: Build, new_command: Any) -> None:
    clock = _Clock()
    stage = mask_stage('detectors = ["us_ssn", "credit_card"]')
    filt = _pty(stage, new_command, clock)
    out = filt.feed(b"id 123-45-6789 4") + filt.feed(b"") + filt.finish()
    assert b"6789" not in out and b"123-45" not in out


def test_open_tail() -> None:
    assert open_tail("user@host:~$ ") == 0
    assert open_tail("paid 4111 1111") == len("paid 4111 1111")
    assert open_tail("a,  4111") == 4
    assert open_tail("x" * 5000) == 1024


def test_non_utf8_and_declared_charsets_survive(mask_stage: Build, new_command: Any) -> None:
    stage = mask_stage(DETECT)
    raw = b"\xff\xfe binary-ish 4111111111111111 \x80\n"
    assert run(stage.stream(new_command(), "stdout", ""), [raw]) == b"\xff\xfe binary-ish *** \x80\n"
    latin = "Müller: 123-45-6789\n".encode("latin-1")
    out = run(stage.stream(new_command(), "response-body", "text/plain; charset=ISO-8859-1"), [latin])
    assert out == "Müller: ***\n".encode("latin-1")


# -- JSON ---------------------------------------------------------------------------------------------------------

DOC = {
    "customers": [
        {"name": "Ann", "ssn": "123-45-6789", "email": "ann@example.com",
         "profile": {"tax": {"ssn": "219-09-9998"}, "note": "card 4111 1111 1111 1111 on file"}},
        {"name": "Bob", "ssn": None, "email": "bob@example.com", "cards": [{"card_number": 4111111111111111}]},
    ],
    "meta": {"owner": {"email": "owner@example.com", "phone": "+1 (415) 555-2671"},
             "refs": ["DE89 3704 0044 0532 0130 00", "ok", 12, 4111111111111111, True]},
    "carol@example.com": {"visits": 3},
    "ref": "order 4111 1111 1111 1112",
}


def masked_doc(stage: Any, new_command: Any, doc: Any = DOC, chunks: int = 1) -> Any:
    body = json.dumps(doc).encode()
    filt = stage.stream(new_command(), "response-body", "application/json; charset=utf-8")
    size = max(1, len(body) // chunks)
    return json.loads(run(filt, [body[i:i + size] for i in range(0, len(body), size)]))


def test_json_keys_at_any_nesting_and_detectors_on_every_string(mask_stage: Build, canonical: str,
                                                                new_command: Any) -> None:
    stage = mask_stage(canonical[len('{ use = "mask", '):-2])
    out = masked_doc(stage, new_command, chunks=7)
    ann, bob = out["customers"]
    assert (ann["ssn"], ann["profile"]["tax"]["ssn"], ann["email"]) == ("***", "***", "***")
    assert ann["profile"]["note"] == "card *** on file"
    assert bob["ssn"] is None and bob["email"] == "***"
    assert bob["cards"][0]["card_number"] is None  # a number under a masked key becomes null, not "***"
    assert out["meta"]["owner"]["email"] == "***"  # detector (owner is not under "customers")
    assert out["meta"]["refs"] == ["***", "ok", 12, None, True]  # a card stored as a JSON number
    assert out["***"] == {"visits": 3}  # maps keyed by e-mail address
    assert out["ref"] == "order 4111 1111 1111 1112"  # Luhn-invalid: untouched
    assert out["meta"]["owner"]["phone"] == "+1 (415) 555-2671"  # phone not configured


@pytest.mark.parametrize("path, reaches", [
    ("customers[*].email", ["ann", "bob"]),
    ("customers.email", ["ann", "bob"]),  # lists are transparent to key steps
    ("customers[0].email", ["ann"]),
    ("$.customers[*].email", ["ann", "bob"]),
    ("$.email", []),  # anchored at the root
    ("**.owner.email", ["owner"]),
    ("$.meta.*.email", ["owner"]),
    ("EMAIL", ["ann", "bob", "owner"]),  # case-insensitive
    ("e?ail", ["ann", "bob", "owner"]),
])
def test_json_path_globs(mask_stage: Build, new_command: Any, path: str, reaches: list[str]) -> None:
    out = masked_doc(mask_stage(f'json_paths = ["{path}"]'), new_command)
    emails = {"ann": out["customers"][0]["email"], "bob": out["customers"][1]["email"],
              "owner": out["meta"]["owner"]["email"]}
    assert sorted(k for k, v in emails.items() if v == "***") == sorted(reaches)


def test_a_path_to_a_container_masks_everything_inside(mask_stage: Build, new_command: Any) -> None:
    out = masked_doc(mask_stage('json_paths = [{ path = "profile", strategy = "partial" }]'), new_command)
    assert out["customers"][0]["profile"] == {"tax": {"ssn": "***-**-9998"},
                                              "note": "**** **** **** **** **** ** file"}


def test_a_json_body_split_at_every_byte_position(mask_stage: Build, canonical: str, new_command: Any) -> None:
    stage = mask_stage(canonical[len('{ use = "mask", '):-2])
    body = json.dumps({"a": [{"ssn": "123-45-6789", "note": "jürgen@exämple.de"}]}, ensure_ascii=False).encode()
    expected = b'{"a":[{"ssn":"***","note":"***"}]}'
    for cut in range(len(body) + 1):
        assert run(stage.stream(new_command(), "response-body", "application/json"),
                   [body[:cut], body[cut:]]) == expected


def test_an_untouched_json_body_passes_byte_for_byte(mask_stage: Build, canonical: str,
                                                     new_command: Any) -> None:
    stage = mask_stage(canonical[len('{ use = "mask", '):-2])
    body = b'{ "b": 1.10,\n  "a": "x" }'
    assert run(stage.stream(new_command(), "response-body", "application/json"), [body]) == body
    assert run(stage.stream(new_command(), "response-body", "application/json"), [b""]) == b""


def test_oversize_json_is_refused_never_passed_unmasked(mask_stage: Build, new_command: Any) -> None:
    filt = mask_stage('columns = ["ssn"], max_body = 100').stream(new_command(), "response-body",
                                                                  "application/json")
    assert filt.feed(b'{"ssn": "123-45-6789", "pad": "') == b""
    with pytest.raises(MaskUnavailable) as err:
        filt.feed(b"x" * 100 + b'"}')
    message = str(err.value)
    assert "larger than the mask stage's max_body (100 bytes)" in message and "123-45-6789" not in message


@pytest.mark.parametrize("body", [b'{"ssn": "123-45-6789"', b"\x1f\x8b\x08\x00gzipped", b"<html>oops</html>",
                                  b'{"n": 1e999}'])
def test_unparseable_json_is_refused(mask_stage: Build, new_command: Any, body: bytes) -> None:
    filt = mask_stage('columns = ["ssn"]').stream(new_command(), "response-body", "application/problem+json")
    assert filt.feed(body) == b""
    with pytest.raises(MaskUnavailable) as err:
        filt.finish()
    assert "declares JSON but is" in str(err.value) and "123-45-6789" not in str(err.value)


def test_json_lines_are_masked_line_by_line(mask_stage: Build, new_command: Any) -> None:
    filt = mask_stage('columns = ["ssn"]').stream(new_command(), "response-body", "application/x-ndjson")
    assert filt.feed(b'{"ssn": "1"}\n{"ss') == b'{"ssn":"***"}\n'
    assert filt.feed(b'n": "2", "k": 3}\n\n') == b'{"ssn":"***","k":3}\n\n'
    assert filt.feed(b'{"ok": true}') == b""
    assert filt.finish() == b'{"ok": true}'
    bad = mask_stage('columns = ["ssn"]').stream(new_command(), "response-body", "application/x-ndjson")
    with pytest.raises(MaskUnavailable):
        bad.feed(b"not json\n")


# -- which streams get a filter -----------------------------------------------------------------------------------

@pytest.mark.parametrize("options, channel, content_type, kind", [
    (DETECT, "stdout", "", "TextStream"),
    (DETECT, "pty", "", "TextStream"),
    (DETECT, "response-body", "text/html; charset=utf-8", "TextStream"),
    (DETECT, "response-body", "application/xml", "TextStream"),
    (DETECT, "response-body", "application/json", "JsonBody"),
    (DETECT, "response-body", "application/vnd.api+json", "JsonBody"),
    (DETECT, "response-body", "image/png", "refused"),  # gw cannot parse it: refused while masking applies
    (DETECT, "response-body", "application/octet-stream", "refused"),
    (DETECT, "response-body", "application/zip", "refused"),
    (DETECT + ', pass_through_types = ["image/*"]', "response-body", "image/png", None),
    ('columns = ["ssn"]', "response-body", "text/plain", "TextStream"),  # labelled values (ssn: ...)
    ('columns = ["ssn"]', "response-body", "text/csv", "CsvStream"),
    ('columns = ["ssn"]', "response-headers", "application/vnd.gw.header-list+json", "HeaderMasker"),
    ('columns = ["ssn"]', "ws-server", "text/plain; charset=utf-8", "MessageMasker"),
    ('columns = ["ssn"]', "ws-server", "application/octet-stream", "refused"),
    ("strategy = \"redact\"", "response-body", "application/octet-stream", None),  # no rule: nothing applies
    ('columns = ["ssn"]', "response-body", "application/json", "JsonBody"),
    ('json_paths = ["a.b"]', "response-body", "application/jsonl", "JsonLines"),
    ('columns = ["ssn"]', "stdout", "", None),
    (DETECT, "request-body", "application/json", None),  # what the agent sends is never rewritten
    (DETECT, "stdin", "", None),
    (DETECT, "pty-input", "", None),
    (DETECT, "ws-server", "", "TextStream"),  # WebSocket frames from upstream: observed, masked for recording
    (DETECT, "pty-resize", "", None),
])
def test_which_streams_are_filtered(mask_stage: Build, new_command: Any, options: str, channel: str,
                                    content_type: str, kind: str | None) -> None:
    if kind == "refused":
        with pytest.raises(MaskUnavailable, match="pass_through_types"):
            mask_stage(options).stream(new_command(), channel, content_type)
        return
    filt = mask_stage(options).stream(new_command(), channel, content_type)
    assert (type(filt).__name__ if filt is not None else None) == kind


def test_raw_values_never_leave_a_filter(mask_stage: Build, new_command: Any) -> None:
    out = run(mask_stage(DETECT).stream(new_command(), "stdout", ""), [OUTPUT])
    assert not [v for v in RAW_VALUES if v in out]
