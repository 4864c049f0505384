from __future__ import annotations

import pytest
from gw_sqlanalysis.encodings import encoding_changes, encoding_is_safe


@pytest.mark.parametrize("name", ["SJIS", "Shift_JIS", "shift-jis-2004", "BIG5", "GBK", "UHC", "GB18030", "JOHAB",
                                  "WIN932", "win936", "WIN949", "WIN950", "mskanji", "auto", "nonsense"])
def test_encodings_gw_cannot_lex(name: str) -> None:
    assert not encoding_is_safe(name)


@pytest.mark.parametrize("name", ["UTF8", "utf-8", "unicode", "SQL_ASCII", "LATIN1", "latin9", "ISO_8859_5",
                                  "WIN1252", "win866", "EUC_JP", "EUC_JIS_2004", "KOI8R", "MULE_INTERNAL"])
def test_encodings_gw_lexes(name: str) -> None:
    assert encoding_is_safe(name)


def test_what_a_text_sets_the_encoding_to() -> None:
    assert encoding_changes("set client_encoding = 'SJIS'") == ["SJIS"]
    assert encoding_changes("select 1; SET NAMES gbk") == ["gbk"]
    assert encoding_changes("set client_encoding to default; reset client_encoding; reset all") == []
    assert encoding_changes("select set_config('client_encoding', 'BIG5', false)") == ["BIG5"]
    assert encoding_changes("select set_config('application_name', 'client_encoding', false)") == []
    assert encoding_changes("select set_config($1, $2, false)") == [None]
    assert encoding_changes("set client_encoding = E'SJIS'") == [None]
    assert encoding_changes("select 'set client_encoding = sjis'") == []
