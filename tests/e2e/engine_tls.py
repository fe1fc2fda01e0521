"""TLS material for a Docker engine's tcp:// listener, made fresh per test run with the `cryptography` package.

`make_tls(directory)` writes a CA, a server certificate naming 127.0.0.1 and localhost (what `dockerd --tlsverify
--tlscacert --tlscert --tlskey` takes) and a client certificate signed by that CA, the client's side in Docker's
DOCKER_CERT_PATH layout (ca.pem, cert.pem, key.pem): the directory a builder's `certPath` names. Keys are P-256,
certificates valid for a day: nothing here outlives the tests.
"""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class EngineTLS:
    """Where the files are: `server` for dockerd, `client` for the builder's certPath (ca.pem, cert.pem, key.pem)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _certificate(subject: str, key, issuer: x509.Name | None, issuer_key, *, ca: bool = False,
                 usage: ExtendedKeyUsageOID | None = None, names: list[x509.GeneralName] = ()) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(certificate: x509.Certificate, path: Path) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def make_ca(directory: Path, name: str = "acr-publish test CA") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA; its certificate is written to `directory`/ca.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    key = _key()
    certificate = _certificate(name, key, None, key, ca=True)
    _write_cert(certificate, directory / "ca.pem")
    return certificate, key


def make_client(directory: Path, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
                trusted_ca: Path) -> Path:
    """A client's certPath: cert.pem/key.pem signed by `ca`, and `trusted_ca` (the CA it checks the engine with)
    copied as ca.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    key = _key()
    _write_cert(_certificate("acr-publish builder client", key, ca[0].subject, ca[1],
                             usage=ExtendedKeyUsageOID.CLIENT_AUTH), directory / "cert.pem")
    _write_key(key, directory / "key.pem")
    if trusted_ca != directory / "ca.pem":
        (directory / "ca.pem").write_bytes(trusted_ca.read_bytes())
    return directory


def make_tls(directory: Path) -> EngineTLS:
    """The engine's CA, its server certificate for 127.0.0.1 and localhost, and one client certPath."""
    ca = make_ca(directory / "ca")
    server_key = _key()
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server = _certificate("127.0.0.1", server_key, ca[0].subject, ca[1], usage=ExtendedKeyUsageOID.SERVER_AUTH,
                          names=names)
    _write_cert(server, directory / "server-cert.pem")
    _write_key(server_key, directory / "server-key.pem")
    client = make_client(directory / "client", ca, directory / "ca" / "ca.pem")
    return EngineTLS(directory / "ca" / "ca.pem", directory / "server-cert.pem", directory / "server-key.pem", client)
