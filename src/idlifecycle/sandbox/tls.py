"""Self-signed TLS certificates for the local emulators (msal refuses plain-HTTP authorities).

`ensure_certificate(directory)` writes `cert.pem` / `key.pem` for 127.0.0.1 and localhost once and
reuses them afterwards; clients trust exactly that file (`verify=cert_path`), never the system store.
The same helper makes the key pairs that test app registrations sign client assertions with.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from idlifecycle.sandbox.files import write_atomically


@dataclass(frozen=True)
class CertificateFiles:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def make_key_and_certificate(common_name: str, *, hosts: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """A new RSA key and a self-signed certificate for it, both PEM (key unencrypted)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
    )
    if hosts:
        alt_names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    certificate = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def ensure_certificate(directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> CertificateFiles:
    """The emulator's server certificate in `directory`, created on first use (key mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = CertificateFiles(directory / "cert.pem", directory / "key.pem")
    if not (files.cert.exists() and files.key.exists()):
        key_pem, cert_pem = make_key_and_certificate("idlifecycle sandbox", hosts=hosts)
        write_private(files.key, key_pem)
        write_atomically(files.cert, cert_pem, mode=0o644)  # public, but never half-written
    return files


def write_private(path: Path, data: bytes) -> None:
    """Write a secret so that only the owner can ever read it (created 0600), whole or not at all."""
    write_atomically(path, data)


def sha1_thumbprint(cert_pem: bytes) -> str:
    """Hex SHA-1 thumbprint of a PEM certificate, as Entra shows it and msal expects it."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha1(der).hexdigest().upper()  # noqa: S324 - the thumbprint format is SHA-1 by definition
