"""A small PKI made fresh for a test session, and a folder of web config files using it."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PASSWORD = "correct horse battery staple"
# Cost 4 keeps the suite fast; the code treats every cost alike.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
PROMTOOL = shutil.which("promtool")


@dataclass
class Issued:
    cert_pem: bytes
    key_pem: bytes
    serial: int


@dataclass
class Pki:
    ca: Issued
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey

    def issue(self, name: str, *, server: bool) -> Issued:
        return _issue(name, self.ca_cert, self.ca_key, server=server)


def key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _builder(
    name: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def make_ca(name: str) -> Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    issued = Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem(key), cert.serial_number)
    return Pki(issued, cert, key)


def _issue(
    name: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *, server: bool
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(name, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem(key), cert.serial_number)


@dataclass
class Files:
    """A folder holding a web config and the PEM files it names."""

    dir: Path
    pki: Pki

    @property
    def config(self) -> Path:
        return self.dir / "web.yml"

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.dir / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        _bump(path)
        return path

    def server_cert(self, issued: Issued | None = None, prefix: str = "server") -> Issued:
        issued = issued or self.pki.issue("exporter", server=True)
        self.write(f"{prefix}.crt", issued.cert_pem)
        self.write(f"{prefix}.key", issued.key_pem)
        return issued

    def config_text(self, text: str, *, valid: bool = True) -> Path:
        self.write("web.yml", text)
        if valid:
            _check_with_promtool(self.config)
        return self.config


def _bump(path: Path) -> None:
    """Move the mtime forward: filesystems with coarse clocks might otherwise not show a change."""
    st = path.stat()
    later = max(st.st_mtime_ns, time.time_ns()) + 1_000_000_000
    os.utime(path, ns=(later, later))


def _check_with_promtool(path: Path) -> None:
    """The real exporter-toolkit (inside promtool) must accept what we call valid."""
    if PROMTOOL is None:
        return
    done = subprocess.run(
        [PROMTOOL, "check", "web-config", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


TLS_CONFIG = """\
tls_server_config:
  cert_file: server.crt
  key_file: server.key
"""
