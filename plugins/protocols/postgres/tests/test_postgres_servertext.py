"""Server text under a masking pipeline: quoted row values redacted, names the agent wrote kept, SQLSTATE and
message shape unchanged (unit level; the end-to-end corpus is tests/test_e2e_mask_corpus.py)."""

from __future__ import annotations

import pytest
from gw_postgres.messages import ErrorResponse, NotificationResponse, ParameterStatus
from gw_postgres.servertext import mask_error, mask_notification, mask_parameter, redact_values

SQL = "insert into people (id, name, ssn) select 1, null, ssn from people"


@pytest.mark.parametrize(("text", "expected"), [
    ('invalid input syntax for type integer: "536-22-8741"', 'invalid input syntax for type integer: "***"'),
    ("Key (ssn)=(478209153) already exists.", "Key (ssn)=(***) already exists."),
    ("Failing row contains (1, null, 478209153, (a,b)).", "Failing row contains (***)."),
    ('null value in column "name" of relation "people" violates not-null constraint',
     'null value in column "name" of relation "people" violates not-null constraint'),
    ('relation "536-22-8741" does not exist', 'relation "***" does not exist'),
    ("JSON data, line 1: 536-22-8741", "JSON data, line 1: ***"),
    ("Key (id)=(1) conflicts with existing key (id)=(2).", "Key (id)=(***) conflicts with existing key (id)=(***)."),
])
def test_redact_values(text: str, expected: str) -> None:
    assert redact_values(text, SQL) == expected


def test_error_keeps_code_and_shape() -> None:
    err = ErrorResponse.build("ERROR", "22P02", 'invalid input syntax for type integer: "478209153"')
    masked = mask_error(err, True, None, SQL)
    assert masked.code == "22P02" and masked.severity == "ERROR"
    assert masked.message == 'invalid input syntax for type integer: "***"'
    # not touching masked columns: only the detectors run
    assert mask_error(err, False, lambda t: t.replace("478209153", "###"), SQL).message.endswith('"###"')


def test_notifications_and_parameters() -> None:
    note = NotificationResponse(7, "ch", "478209153")
    assert mask_notification(note, True, None).payload == "***"
    assert mask_notification(note, False, None) is note
    assert mask_parameter(ParameterStatus("application_name", "478209153"), True, None).value == "***"
    kept = ParameterStatus("client_encoding", "UTF8")
    assert mask_parameter(kept, True, None) is kept
