"""Values the server quotes from rows in its error and warning texts, redacted when a session's pipeline masks
results (``Duplicate entry '123-45-6789' for key 'ssn'`` -> ``Duplicate entry '***' for key 'ssn'``).

The message keeps its shape and its error number, so an agent can still tell what went wrong and fix its
statement; the value it would have learnt from it is gone.  Detectors (through the pipeline's stream filter)
then run over the whole text, for values quoted in forms this list does not know.
"""

from __future__ import annotations

import re

REDACTED = "***"

#: Error texts (MySQL's and MariaDB's errmsg tables) that quote a value, with the value as group 1.
_QUOTING = (
    re.compile(r"(?s)(?<=Duplicate entry ')(.*)(?=' for key )"),  # 1062, 1586
    re.compile(r"(?s)(?<=value: ')(.*?)(?='(?: for (?:column|function)\b|\s*$))"),  # 1292, 1366, 1411 ...
    re.compile(r"(?s)(?<=Illegal )(?:\w+ ')(.*)(?=' value found)"),  # 1367
    re.compile(r"(?s)(?<=has no partition for value )(.*)$"),  # 1526
    re.compile(r"(?s)(?<=Incorrect string value: ')(.*?)(?=')"),  # 1366 (bytes shown as \xNN)
    re.compile(r"(?s)(?<=Truncated incorrect )\w+ value: '(.*)'"),  # 1292 as a warning
)


def redact_values(message: str) -> str:
    """``message`` with every row value it quotes replaced by ``***``."""
    out = message
    for pattern in _QUOTING:
        out = pattern.sub(lambda m: m.group(0).replace(m.group(1), REDACTED) if m.group(1) else m.group(0), out)
    return out
