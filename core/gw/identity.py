"""What an identity provider plugin implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from .errors import AccessDenied
from .model import Identity
from .services import Services
from .types import StrictModel


@dataclass(frozen=True, slots=True)
class Credential:
    """What a client presented.  ``kind`` is ``token`` (a bearer token or password carrying one) or
    ``publickey`` / ``certificate`` (SSH); ``username`` is what the client claimed to be."""

    kind: str
    secret: str | bytes
    username: str = ""


class ProviderOptions(StrictModel):
    """Base of a provider's options model: unknown keys are an error, so a misspelt key never goes unnoticed.
    Every provider has the revocation keys (:meth:`IdentityProvider.admit` applies them)."""

    use: str
    #: Subjects refused even with a valid credential (revocation without touching the issuer).
    deny_subjects: list[str] = Field(default_factory=list)
    #: Groups whose members are refused even with a valid credential.
    deny_groups: list[str] = Field(default_factory=list)


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
        """Raise :class:`~gw.errors.AccessDenied` when this provider's rules now refuse an identity it issued
        earlier.  Core calls it for every new session and re-checks live sessions with it after a reload.
        The default applies ``deny_subjects`` / ``deny_groups``; a provider with rules of its own extends it
        (and calls ``super().admit``)."""
        deny_subjects = getattr(self.options, "deny_subjects", ())
        deny_groups = getattr(self.options, "deny_groups", ())
        if identity.subject in deny_subjects:
            raise AccessDenied(f"subject {identity.subject!r} is denied by identity provider "
                               f"{self.instance_name!r}; ask the gateway operator", reason="denied_subject")
        denied = [g for g in identity.groups if g in deny_groups]
        if denied:
            raise AccessDenied(f"group {denied[0]!r} is denied by identity provider {self.instance_name!r}; "
                               "ask the gateway operator", reason="denied_group")

    def issue_token(self, subject: str, groups: list[str], ttl_seconds: float,
                    extra_claims: dict[str, Any] | None = None) -> str:
        """Issue a token this provider accepts (dev providers only).  Others raise NotImplementedError."""
        raise NotImplementedError(f"identity provider {self.name!r} cannot issue tokens")
