"""gw-mask: the ``mask`` stage and the built-in detectors (``us_ssn``, ``credit_card``, ``email``, ``iban``,
``phone``).

Results are rewritten in flight -- one row at a time for tabular results, line by line or document by
document for byte streams -- so agents (and the ``record`` stage, and everything gw persists) only ever see
masked values.  Detectors are registered through the ``gw_register_detectors`` hook like any third party's,
and the stage looks them up by name.  See docs/plugins/mask.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gw import hookimpl

from .detectors import BUILTIN_DETECTORS, CreditCard, Email, Iban, Phone, UsSsn
from .masking import MaskCounts
from .stage import MaskOptions, MaskStage
from .streams import MaskUnavailable

__all__ = [
    "CreditCard",
    "Email",
    "Iban",
    "MaskCounts",
    "MaskOptions",
    "MaskStage",
    "MaskUnavailable",
    "Phone",
    "UsSsn",
]


@hookimpl
def gw_register_stages(register: Callable[[type[Any]], None]) -> None:
    register(MaskStage)


@hookimpl
def gw_register_detectors(register: Callable[[Any], None]) -> None:
    for detector in BUILTIN_DETECTORS:
        register(detector)
