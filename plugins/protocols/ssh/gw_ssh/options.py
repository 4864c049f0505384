"""The listener table of ``protocol = "ssh"`` (every key is documented in docs/plugins/ssh.md)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from gw.config import Duration
from gw.protocol import ListenerOptions
from gw.types import Port, StrictModel
from pydantic import Field, field_validator, model_validator

#: Environment variables a client may pass to the target by default (what sshd's usual AcceptEnv allows).
DEFAULT_ACCEPT_ENV = ["LANG", "LC_*"]
#: Variables never passed, whatever ``accept_env`` says: each changes which program runs or makes the shell
#: or a program load or run code (the dynamic loader, shell start-up files and prompts).
NEVER_PASSED_ENV = re.compile(r"^(LD_.*|BASH_ENV|ENV|PATH|PROMPT_COMMAND|BASH_FUNC_.*|PS[0-4]|SHELLOPTS|BASHOPTS|"
                              r"IFS|CDPATH|GLOBIGNORE|BASH_XTRACEFD|BASH_LOADABLES_PATH|EXECIGNORE|GCONV_PATH|"
                              r"GLIBC_TUNABLES|MALLOC_.*|PYTHON.*|PERL5?.*|RUBY.*|NODE_OPTIONS|LESSOPEN|"
                              r"LESSCLOSE|PAGER|EDITOR|VISUAL|GIT_.*|HOME|SHELL|TMPDIR)$")
_ENV_GLOB = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\*?$")
_EXTENSION = re.compile(r"^[\x21-\x7e]+$")


_Strict = StrictModel


class UpstreamOptions(_Strict):
    """The target host gw logs in to, with a key the agent never sees."""

    host: str = Field(min_length=1)
    port: Port = 22
    #: The account on the target that every session of this listener uses.
    user: str = Field(min_length=1)
    #: Private key file (OpenSSH or PEM format), relative to the pipeline file.
    key_file: str | None = None
    #: Environment variable holding the private key itself (for secret stores that inject variables).
    key_env: str | None = None
    #: Environment variable holding the passphrase of an encrypted private key.
    key_passphrase_env: str | None = None
    #: OpenSSH known_hosts file listing the target's host key(s).  Required: gw never trusts an unknown key.
    known_hosts: str = Field(min_length=1)
    #: Limit on connecting, verifying and logging in to the target.
    connect_timeout: Duration = timedelta(seconds=10)
    #: Keepalive probes on the upstream connection, so a dead target is noticed (0 turns them off).
    keepalive_interval: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _one_key(self) -> UpstreamOptions:
        if (self.key_file is None) == (self.key_env is None):
            raise ValueError("set exactly one of upstream.key_file (a private key file) or upstream.key_env "
                             "(an environment variable holding the private key)")
        return self


class SSHListenerOptions(ListenerOptions):
    upstream: UpstreamOptions
    #: gw's own host key (ed25519 private key, mode 0600), relative to the pipeline file; create it with
    #: ``gw ssh keygen``.
    host_key_file: str = Field(min_length=1)
    #: Interactive shells: ``"record"`` relays them (recorded by a record stage), ``"deny"`` refuses them.
    shell: Literal["record", "deny"] = "deny"
    #: The sftp subsystem: ``"allow"`` relays it with every file operation checked and audited.
    sftp: Literal["allow", "deny"] = "deny"
    #: Public keys mapped to identities (format in docs/plugins/ssh.md); relative to the pipeline file.
    authorized_keys: str | None = None
    #: File of trusted certificate authority public keys for SSH user certificates.
    user_ca: str | None = None
    #: Groups of certificate identities whose certificate carries no ``user_ca_groups_extension``.
    user_ca_groups: list[str] = Field(default_factory=list)
    #: Certificate extension holding the identity's groups (comma-separated), set by the CA when signing.
    user_ca_groups_extension: str = "groups@gw"
    #: Failed authentication attempts after which gw disconnects the client.
    max_auth_attempts: int = Field(6, ge=1, le=100)
    #: Sessions (channels: exec, shell, sftp) one connection may have open at once (sshd's MaxSessions).
    max_sessions: int = Field(10, ge=1, le=1000)
    #: Environment variables a client may pass to the target (names, or prefixes ending in ``*``).
    accept_env: list[str] = Field(default_factory=lambda: list(DEFAULT_ACCEPT_ENV))
    #: Exit status a client gets when gw refuses a command (the reason is written to its stderr).
    refused_exit_status: int = Field(126, ge=1, le=255)
    #: Further programs refused on this listener when ``shell = "deny"`` (beside shells, interpreters reading
    #: their input, pagers, editors ...: docs/plugins/ssh.md).
    interactive_programs: list[str] = Field(default_factory=list)

    @field_validator("accept_env")
    @classmethod
    def _env_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _ENV_GLOB.match(name):
                raise ValueError(f"{name!r} is not an environment variable name (or a prefix ending in *)")
            if NEVER_PASSED_ENV.match(name) or NEVER_PASSED_ENV.match(name.rstrip("*")):
                raise ValueError(f"{name!r} is never passed to the target: it changes which program runs or makes "
                                 "the shell load code (LD_*, BASH_ENV, ENV, PATH, PROMPT_COMMAND ...); remove it")
        return v

    @field_validator("interactive_programs")
    @classmethod
    def _programs(cls, v: list[str]) -> list[str]:
        for name in v:
            if not name or "/" in name or any(c.isspace() for c in name):
                raise ValueError(f"{name!r} is not a program name (a name such as \"mytool\", without a path)")
        return v

    @field_validator("user_ca_groups_extension")
    @classmethod
    def _extension(cls, v: str) -> str:
        if not _EXTENSION.match(v):
            raise ValueError("a certificate extension name is printable ASCII without spaces, e.g. groups@gw")
        return v

    @model_validator(mode="after")
    def _ca_groups(self) -> SSHListenerOptions:
        if self.user_ca is None and self.user_ca_groups:
            raise ValueError("user_ca_groups needs user_ca (the certificate authority file)")
        return self
