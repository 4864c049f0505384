"""Makes jwt_testkit importable by this directory's tests (pytest runs with --import-mode=importlib, which
does not put test directories on sys.path) and registers its fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from jwt_testkit import idp, make_provider  # fixtures, registered by being imported here

__all__ = ["idp", "make_provider"]
