"""``gw tls selfsigned``: a self-signed certificate and key for a TLS listener.

kubectl sends its bearer token only over TLS, so a ``kubernetes`` listener needs a certificate; for a lab or a
single machine a self-signed one, which the kubeconfig then trusts as its CA (``gw kubeconfig`` embeds it),
is enough.  The certificate is its own CA (``BasicConstraints ca=true``) and names every ``--host`` as a
subject alternative name (IP addresses as IP entries), since Go's TLS stack ignores the common name.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def selfsigned(hosts: Sequence[str], *, days: int = 365) -> tuple[bytes, bytes]:
    """``(certificate PEM, private key PEM)`` for ``hosts`` (the first one is also the common name)."""
    if not hosts:
        raise ValueError("name at least one host (--host 127.0.0.1 --host gw.example.internal)")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in dict.fromkeys(hosts)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=False,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_selfsigned(cert_path: Path, key_path: Path, hosts: Sequence[str], *, days: int = 365) -> None:
    """Write the pair; the key file is created readable by its owner only."""
    cert_pem, key_pem = selfsigned(hosts, days=days)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    cert_path.write_bytes(cert_pem)
