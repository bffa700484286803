"""
A throwaway certificate authority and server certificate for TLS tests.
"""

from __future__ import annotations

import datetime
import ipaddress
import os

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@attrs.frozen
class TLSFiles:
    """PEM files in one directory: ``ca`` (trusted root), ``cert``, ``key``."""

    directory: str
    ca: str
    cert: str
    key: str
    ca_dir: str


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_tls_files(directory: str, hostname: str = "localhost", rsa_key: bool = False) -> TLSFiles:
    """
    Write a CA and a server certificate for ``hostname`` and 127.0.0.1,
    signed by that CA, into ``directory``; ``ca_dir`` holds only the CA, as
    Twisted's ``trustRoots=`` wants a directory.  The server's key is EC
    P-256, or RSA with ``rsa_key`` (the only kind a static-RSA suite can use).
    """
    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA")).issuer_name(_name("test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    if rsa_key:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostname)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_dir = os.path.join(directory, "ca")
    os.makedirs(ca_dir, exist_ok=True)
    paths = {
        "ca": (os.path.join(ca_dir, "ca.pem"), ca_cert.public_bytes(serialization.Encoding.PEM)),
        "cert": (os.path.join(directory, "cert.pem"), cert.public_bytes(serialization.Encoding.PEM)),
        "key": (os.path.join(directory, "key.pem"), _pem_key(key)),
    }
    for path, content in paths.values():
        with open(path, "wb") as f:
            f.write(content)
    return TLSFiles(directory, paths["ca"][0], paths["cert"][0], paths["key"][0], ca_dir)
