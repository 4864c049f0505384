"""Options of ``use = "apikey"``; docs/plugins/apikey.md describes each key with an example."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from gw.config import Duration
from gw.identity import ProviderOptions
from pydantic import field_validator, model_validator

#: A prefix is what routes a credential to this provider, so it must be unmistakable: short, no dots (a JWT
#: has two), nothing a shell or a connection string would mangle.
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_-]{1,15}")
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: Below this a pepper adds nothing a guessable value would not also give an attacker.
MIN_PEPPER_BYTES = 16


class ApiKeyOptions(ProviderOptions):
    """Options of ``use = "apikey"``."""

    #: ``storage``: records in gw's storage backend (needs ``[storage]``); ``file``: a JSON file of hashed keys.
    #: Default: ``file`` when ``file`` is given, else ``storage``.
    store: Literal["storage", "file"] | None = None
    #: The key file (``store = "file"``), relative to the pipeline file.  Default: ``<data_dir>/apikeys.json``.
    file: str | None = None
    #: What every key of this provider starts with; a listener hands a credential to this provider only when it
    #: starts with it (so JWTs go to the jwt provider, keys here).
    prefix: str = "gwk_"
    #: Which keys are this provider's when several providers share one store.  Default: the provider's name.
    namespace: str | None = None
    #: Environment variable holding a server-side secret mixed into every key's verifier (HMAC-SHA256).
    pepper_env: str | None = None
    #: Lifetime of a key when ``gw keys create`` is given no ``--ttl``.
    default_ttl: Duration = timedelta(days=30)
    #: Longest lifetime ``gw keys create`` accepts: every key ends.
    max_ttl: Duration = timedelta(days=365)
    #: How often ``gw serve`` re-reads the keys of open sessions and ends those whose key was revoked or deleted
    #: (``"0s"``: never; new connections are always checked).
    revocation_check: Duration = timedelta(seconds=30)
    #: A key's ``last_used`` is written at most this often (one small write per key, not per connection);
    #: ``"0s"``: never.
    last_used_interval: Duration = timedelta(hours=1)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not _PREFIX.fullmatch(v):
            raise ValueError(f"prefix {v!r} must be 2-16 characters: a letter, then letters, digits, '_' or '-' "
                             "(e.g. \"gwk_\" or \"ci_\")")
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        if v is not None and not _NAMESPACE.fullmatch(v):
            raise ValueError(f"namespace {v!r} must be 1-64 letters, digits, '_', '-' or '.'")
        return v

    @field_validator("pepper_env")
    @classmethod
    def _pepper_env(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("pepper_env names an environment variable, e.g. \"GW_APIKEY_PEPPER\"")
        return v

    @field_validator("default_ttl", "max_ttl")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v.total_seconds() < 1:
            raise ValueError("must be at least one second, e.g. \"30d\"")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ApiKeyOptions:
        if self.store is None:
            self.store = "file" if self.file is not None else "storage"
        if self.store == "storage" and self.file is not None:
            raise ValueError("file is only read with store = \"file\"; remove one of them")
        if self.default_ttl > self.max_ttl:
            raise ValueError(f"default_ttl ({self.default_ttl}) is longer than max_ttl ({self.max_ttl})")
        return self
