"""The one place gw imports asyncssh, imported only once an SSH listener or SSH command is used.

asyncssh still references cryptography's deprecated DSA classes at import time; cryptography >= 47 warns
about each of them.  gw never offers or accepts DSA keys, so those warnings say nothing to a gw operator and
are silenced here (and only here) instead of reaching gw's stderr.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*DSA is deprecated", module=r"asyncssh(\.|$)")
    import asyncssh
    from asyncssh.packet import Boolean, String, UInt32
    from asyncssh.public_key import decode_ssh_certificate, decode_ssh_public_key

__all__ = ["Boolean", "String", "UInt32", "asyncssh", "decode_ssh_certificate", "decode_ssh_public_key"]
