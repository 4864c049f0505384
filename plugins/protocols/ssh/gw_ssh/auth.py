"""Client authentication (trio side): identity tokens through the listener's identity providers, public keys
and certificates through :class:`~gw_ssh.keys.ClientKeys`, admission by the listener's rules, refusals audited.

One :class:`ClientAuth` per connection answers the bridge's questions (:class:`gw_ssh.events.Authenticator`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gw.errors import AccessDenied, AuthenticationError
from gw.identity import Credential
from gw.model import Identity

from .events import AuthAnswer, Refusal

if TYPE_CHECKING:
    from .handler import SSHHandler

log = logging.getLogger("gw.ssh")


@dataclass(frozen=True, slots=True)
class Login:
    """How a client got in: its identity, the method (``token``, ``publickey``, ``certificate``) and the key's
    fingerprint for key methods."""

    identity: Identity
    method: str
    key: str = ""


def _for_client(message: str) -> str:
    return message if message.startswith("gw") else f"gw: {message}"


class ClientAuth:
    """Answers one connection's authentication attempts."""

    def __init__(self, handler: SSHHandler, client_address: str) -> None:
        self.listener = handler.listener
        self.keys = handler.keys
        self.client_address = client_address
        self.public_keys = handler.keys.enabled
        self.attempted = False
        #: Something was audited for this connection already (a refused token, an expired certificate ...).
        self.audited = False
        #: The last non-definitive refusal (an unknown key), audited if the client never gets in.
        self.last_refusal: Refusal | None = None
        self.username = ""

    async def password(self, username: str, password: str) -> AuthAnswer:
        """A password or keyboard-interactive answer: the identity token."""
        self.attempted, self.username = True, username
        try:
            identity = await self.listener.authenticate(Credential("token", password, username=username),
                                                        client_address=self.client_address,
                                                        claimed_user=username)
        except AuthenticationError as e:
            self.audited = True
            return AuthAnswer(False, banner=_for_client(str(e)))
        return AuthAnswer(True, identity=Login(identity, "token"))

    async def public_key(self, username: str, key_blob: bytes) -> AuthAnswer:
        """A public key or certificate the client offers (asyncssh checks the signature afterwards)."""
        self.attempted, self.username = True, username
        result = self.keys.identify(username, key_blob)
        if isinstance(result, Refusal):
            if result.definitive:
                await self._refuse(result.reason, result.message)
                return AuthAnswer(False, banner=_for_client(result.message))
            self.last_refusal = result
            return AuthAnswer(False, banner=_for_client(result.message), counts=False)
        try:
            self.listener.admit(result.identity)
        except AccessDenied as e:
            await self._refuse(e.reason, str(e))
            return AuthAnswer(False, banner=_for_client(str(e)))
        return AuthAnswer(True, identity=Login(result.identity, result.method, result.fingerprint))

    async def handshake_failed(self, why: str) -> None:
        """The client never got in.  Audit it unless a refusal was audited already or it never tried."""
        if self.audited:
            return
        if not self.attempted:
            log.debug("listener %s: %s left before authenticating (%s)", self.listener.name,
                      self.client_address, why)
            return
        refusal = self.last_refusal
        if refusal is not None:
            await self._refuse(refusal.reason, refusal.message)
        else:
            await self._refuse("handshake_failed", f"the SSH authentication did not complete ({why})")

    async def _refuse(self, reason: str, message: str) -> None:
        self.audited = True
        await self.listener.refused(client_address=self.client_address, claimed_user=self.username,
                                    reason=reason, message=message)
