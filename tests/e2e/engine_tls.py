"""TLS material for a Docker engine's tcp:// listener, made fresh per test run with trustme.

`make_tls(directory)` writes a CA, a server certificate naming 127.0.0.1 and localhost (what `dockerd --tlsverify
--tlscacert --tlscert --tlskey` takes) and a client certificate signed by that CA, the client's side in Docker's
DOCKER_CERT_PATH layout (ca.pem, cert.pem, key.pem): the directory a builder's `certPath` names.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class EngineTLS:
    """Where the files are: the CA and server pair for dockerd, `client` for the builder's certPath."""

    ca: Path
    server_cert: Path
    server_key: Path
    client: Path


def make_ca(directory: Path) -> trustme.CA:
    """A new CA (each has its own name); its certificate is written to `directory`/ca.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return ca


def make_client(directory: Path, ca: trustme.CA, trusted_ca: Path) -> Path:
    """A client's certPath: cert.pem/key.pem signed by `ca`, and `trusted_ca` (the CA it checks the engine with)
    copied as ca.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    leaf = ca.issue_cert("builder-client.acr-publish.test")
    leaf.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(directory / "key.pem"))
    shutil.copyfile(trusted_ca, directory / "ca.pem")
    return directory


def make_tls(directory: Path) -> EngineTLS:
    """The engine's CA, its server certificate for 127.0.0.1 and localhost, and one client certPath."""
    ca = make_ca(directory / "ca")
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(directory / "server-cert.pem"))
    server.private_key_pem.write_to_path(str(directory / "server-key.pem"))
    client = make_client(directory / "client", ca, directory / "ca" / "ca.pem")
    return EngineTLS(directory / "ca" / "ca.pem", directory / "server-cert.pem", directory / "server-key.pem", client)
