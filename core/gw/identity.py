"""What an identity provider plugin implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from .model import Identity

if TYPE_CHECKING:
    from .runtime import Services


@dataclass(frozen=True, slots=True)
class Credential:
    """What a client presented.  ``kind`` is ``token`` (a bearer token or password carrying one) or
    ``publickey`` / ``certificate`` (SSH); ``username`` is what the client claimed to be."""

    kind: str
    secret: str | bytes
    username: str = ""


class ProviderOptions(BaseModel):
    """Base of a provider's options model: unknown keys are an error, so a misspelt key never goes unnoticed."""

    model_config = ConfigDict(extra="forbid")
    use: str


class IdentityProvider:
    """Turns a credential into an :class:`~gw.model.Identity` or raises
    :class:`~gw.errors.AuthenticationError` with a message the client can act on.

    Subclasses set ``name`` (what users write after ``use =``) and ``Options`` (a pydantic model).
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[ProviderOptions]] = ProviderOptions

    def __init__(self, instance_name: str, options: Any, services: Services) -> None:
        self.instance_name = instance_name
        self.options = options
        self.services = services

    async def open(self) -> None:
        """Called once when the gateway (or a CLI command) starts using this provider."""

    async def close(self) -> None:
        """Called once at shutdown."""

    async def check_ready(self) -> str | None:
        """Why this provider could not verify a credential now (no signing keys ...), or None (``/readyz``)."""
        return None

    def accepts(self, credential: Credential) -> bool:
        """Whether this provider understands this kind of credential (lets a listener try several)."""
        return credential.kind == "token"

    async def authenticate(self, credential: Credential) -> Identity:
        raise NotImplementedError

    def admit(self, identity: Identity) -> None:
        """Raise :class:`~gw.errors.AccessDenied` when this provider's own rules (``deny_subjects`` ...) now
        refuse an identity it issued earlier; core re-checks live sessions with it after a reload."""

    def issue_token(self, subject: str, groups: list[str], ttl_seconds: float,
                    extra_claims: dict[str, Any] | None = None) -> str:
        """Issue a token this provider accepts (dev providers only).  Others raise NotImplementedError."""
        raise NotImplementedError(f"identity provider {self.name!r} cannot issue tokens")
