"""TLS material for tests: a trustme CA with server/client certificates, and self-signed certs with a chosen lifetime."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class TlsFiles:
    """PEM files on disk. `ca_file` verifies `cert_file`; `client_*` is a client certificate from the same CA."""

    ca_file: str
    cert_file: str
    key_file: str
    client_cert_file: str | None = None
    client_key_file: str | None = None

    def server_context(self, require_client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if require_client_cert:
            ctx.load_verify_locations(self.ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


def make_ca_files(directory: Path, hostnames: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> TlsFiles:
    """A fresh trustme CA plus a server certificate for `hostnames` and a client certificate."""
    import trustme

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*hostnames)
    client = ca.issue_cert("infrawatch-client@example.org")
    ca_file = directory / "ca.pem"
    cert_file = directory / "server.pem"
    key_file = directory / "server.key"
    ccert = directory / "client.pem"
    ckey = directory / "client.key"
    ca.cert_pem.write_to_path(str(ca_file))
    server.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
    client.private_key_pem.write_to_path(str(ckey))
    ccert.write_bytes(b"".join(b.bytes() for b in client.cert_chain_pems))
    for p in (key_file, ckey):
        p.chmod(0o644)  # readable by servers that drop privileges (redis, postgres, mysql users)
    return TlsFiles(str(ca_file), str(cert_file), str(key_file), str(ccert), str(ckey))


def make_self_signed(
    directory: Path,
    days_valid: float,
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1"),
    name: str = "selfsigned",
) -> TlsFiles:
    """A self-signed certificate expiring `days_valid` days from now (negative: already expired).

    The certificate is its own CA, so `ca_file` == `cert_file` verifies it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    sans: list[x509.GeneralName] = []
    for h in hostnames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    not_after = now + dt.timedelta(days=days_valid)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, not_after) - dt.timedelta(days=30))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / f"{name}.pem"
    key_file = directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o644)
    return TlsFiles(str(cert_file), str(cert_file), str(key_file))


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA-signed server certificate for localhost/127.0.0.1/::1 (and a client certificate)."""
    return make_ca_files(tmp_path_factory.mktemp("tls-ca"))


@pytest.fixture(scope="session")
def self_signed_5d(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for localhost/127.0.0.1 that expires in 5 days."""
    return make_self_signed(tmp_path_factory.mktemp("tls-5d"), 5.0, name="expires-5d")


@pytest.fixture(scope="session")
def self_signed_expired(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A self-signed certificate for localhost/127.0.0.1 that expired 3 days ago."""
    return make_self_signed(tmp_path_factory.mktemp("tls-expired"), -3.0, name="expired-3d")
