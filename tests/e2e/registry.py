"""Real registries for the e2e tests: Debian's `docker-registry` (distribution 2.8) on free loopback ports.

Owns `RegistryServer` (one `docker-registry serve` process with temporary storage, htpasswd (bcrypt) or Bearer
token auth, optional TLS from a test CA), `RegistryApi` (the registry HTTP API calls the tests assert with: tag
list, manifest digest) and the pytest fixtures built on them. Test modules import the fixtures they use:
`from tests.e2e.registry import basic_registry, registry_binary  # noqa: F401`.

Docker treats 127.0.0.0/8 registries as insecure by default, so the engine pushes to `basic_registry` over plain
HTTP without any daemon configuration.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import bcrypt
import pytest
import requests
import trustme
import urllib3
import yaml

from tests.e2e.immutable_proxy import ImmutableTagProxy
from tests.e2e.processes import stop_process
from tests.e2e.token_server import TokenServer

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0

# Manifest media types a registry may store under a tag; HEAD must accept all or distribution answers with a
# converted (or missing) manifest and the wrong digest.
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the caller retries if it is taken in between)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_registry_binary() -> str | None:
    return shutil.which("docker-registry") or (
        "/usr/bin/docker-registry" if os.path.exists("/usr/bin/docker-registry") else None
    )


def htpasswd_line(username: str, password: str) -> str:
    """One htpasswd entry as distribution's htpasswd auth reads it (bcrypt only; cost 4 keeps tests fast)."""
    return f"{username}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}"


@dataclass
class RegistryServer:
    """One `docker-registry serve CONFIG.yml` on 127.0.0.1 with storage under `workdir`.

    auth: "htpasswd" (the default; `username`/`password`, plus `extra_users`), "token" (needs `token_server`) or
    "none". tls: a `trustme.CA` whose leaf certificate (for `tls_names`) the registry serves; `ca_path` is the PEM
    to trust it. tls_self_signed: serve the CA's own self-signed certificate instead of a leaf it issued.
    """

    binary: str
    workdir: Path
    auth: str = "htpasswd"
    username: str = "pusher"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    extra_users: dict[str, str] = field(default_factory=dict)
    tls: trustme.CA | None = None
    tls_names: tuple[str, ...] = ("127.0.0.1",)
    tls_self_signed: bool = False
    token_server: TokenServer | None = None
    tag_immutability: bool = False
    access_log: bool = False
    """Write one line per request to the log (`log_text`), so a test can count requests."""
    host: str = "127.0.0.1"
    port: int = 0
    ca_path: Path | None = None
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _proxy: ImmutableTagProxy | None = field(default=None, repr=False)
    _log: Path | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # keep the password out of pytest's failure output
        return (f"RegistryServer(server={self.server!r}, auth={self.auth!r}, tls={self.tls is not None}, "
                f"tag_immutability={self.tag_immutability})")

    @property
    def server(self) -> str:
        """host:port, as acr-publish:registry.server takes it (the immutability proxy's, when there is one)."""
        return self._proxy.server if self._proxy is not None else f"{self.host}:{self.port}"

    @property
    def refused_overwrites(self) -> list[str]:
        """`<repository>:<tag>` of every push the immutability emulation refused."""
        return list(self._proxy.refused) if self._proxy is not None else []

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.server}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def api(self, username: str | None = None, password: str | None = None) -> "RegistryApi":
        """An HTTP API client logged in as `username` (default: the registry's own user)."""
        if username is None and self.auth != "none":
            username, password = self.username, self.password
        return RegistryApi(self.url, username, password, verify=str(self.ca_path) if self.ca_path else True)

    def list_tags(self, repository: str) -> list[str]:
        return self.api().list_tags(repository)

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        return self.api().manifest_digest(repository, reference)

    def log_text(self) -> str:
        return self._log.read_text(errors="replace") if self._log and self._log.exists() else ""

    # -- lifecycle
    def start(self) -> "RegistryServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        last_problem = ""
        for _attempt in range(3):  # free_port() can race with another process taking the port
            self.port = free_port()
            self._write_config()
            self._log = self.workdir / "registry.log"
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            with open(self._log, "wb") as log:
                self._process = subprocess.Popen(
                    [self.binary, "serve", str(self.workdir / "config.yml")],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                    start_new_session=True,
                )
            last_problem = self._wait_until_answering()
            if not last_problem:
                if self.tag_immutability:
                    self._proxy = ImmutableTagProxy(f"{self.host}:{self.port}", self.host).start()
                return self
            self.stop()
            if "address already in use" not in self.log_text():
                break
        raise RuntimeError(f"docker-registry did not start: {last_problem}\n--- registry log ---\n{self.log_text()}")

    def stop(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy.stop()
        process, self._process = self._process, None
        if process is None:
            return
        stop_process(process, STOP_TIMEOUT_S)

    def __enter__(self) -> "RegistryServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_config(self) -> None:
        if self.tag_immutability and self.tls is not None:
            raise ValueError("RegistryServer(tag_immutability=True) emulates ACR over plain HTTP only (no tls)")
        storage = self.workdir / "storage"
        storage.mkdir(exist_ok=True)
        config: dict = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": not self.access_log}},
            "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
            "http": {"addr": f"{self.host}:{self.port}", "secret": secrets.token_hex(16)},
        }
        if self.tls is not None:
            cert_path, key_path = self.workdir / "registry-cert.pem", self.workdir / "registry-key.pem"
            if self.tls_self_signed:
                self.tls.cert_pem.write_to_path(str(cert_path))
                self.tls.private_key_pem.write_to_path(str(key_path))
            else:
                leaf = self.tls.issue_cert(*self.tls_names)
                leaf.cert_chain_pems[0].write_to_path(str(cert_path))
                for extra in leaf.cert_chain_pems[1:]:
                    extra.write_to_path(str(cert_path), append=True)
                leaf.private_key_pem.write_to_path(str(key_path))
            self.ca_path = self.workdir / "ca.pem"
            self.tls.cert_pem.write_to_path(str(self.ca_path))
            config["http"]["tls"] = {"certificate": str(cert_path), "key": str(key_path)}
        if self.auth == "htpasswd":
            htpasswd = self.workdir / "htpasswd"
            users = {self.username: self.password, **self.extra_users}
            htpasswd.write_text("".join(htpasswd_line(u, p) + "\n" for u, p in users.items()))
            config["auth"] = {"htpasswd": {"realm": "acr-publish-test", "path": str(htpasswd)}}
        elif self.auth == "token":
            if self.token_server is None:
                raise ValueError("RegistryServer(auth='token') needs token_server")
            config["auth"] = {"token": {
                "realm": self.token_server.realm,
                "service": self.token_server.service,
                "issuer": self.token_server.issuer,
                "rootcertbundle": str(self.token_server.cert_path),
            }}
        elif self.auth != "none":
            raise ValueError(f"RegistryServer auth {self.auth!r} is not one of htpasswd, token, none")
        (self.workdir / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    def _wait_until_answering(self) -> str:
        """'' once GET /v2/ gets any HTTP answer, else why the registry is not up."""
        deadline = time.monotonic() + START_TIMEOUT_S
        problem = "no answer yet"
        direct = f"{self.scheme}://{self.host}:{self.port}"  # the registry itself, before any proxy
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return f"the process exited with {self._process.returncode if self._process else '?'}"
            try:
                # Readiness only: any HTTP answer counts, even with a certificate the client would not trust.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                    response = requests.get(f"{direct}/v2/", timeout=2, verify=False)
                if response.status_code in (200, 401):
                    return ""
                problem = f"GET /v2/ answered {response.status_code}"
            except requests.RequestException as exc:
                problem = str(exc)
            time.sleep(0.05)
        return f"no answer on {direct}/v2/ within {START_TIMEOUT_S}s ({problem})"


class RegistryApi:
    """The few registry HTTP API v2 calls the tests assert with, following Basic or Bearer challenges.

    Deliberately independent of components/preflight.py and registryclient/, so the tests do not check
    the product with itself.
    """

    def __init__(self, base_url: str, username: str | None, password: str | None, *, verify: bool | str = True):
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.password = password
        self.verify = verify
        self.session = requests.Session()

    def _get(self, method: str, path: str, scope: str, headers: dict[str, str] | None = None) -> requests.Response:
        url = f"{self.base_url}{path}"
        response = self.session.request(method, url, headers=headers, timeout=10, verify=self.verify)
        if response.status_code != 401 or not self.username:
            return response
        challenge = response.headers.get("WWW-Authenticate", "")
        auth = (self.username, self.password or "")
        if challenge.lower().startswith("basic"):
            return self.session.request(method, url, headers=headers, auth=auth, timeout=10, verify=self.verify)
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        token_response = self.session.get(
            params["realm"], params={"service": params.get("service", ""), "scope": scope},
            auth=auth, timeout=10, verify=self.verify,
        )
        token_response.raise_for_status()
        body = token_response.json()
        bearer = {"Authorization": f"Bearer {body.get('token') or body['access_token']}", **(headers or {})}
        return self.session.request(method, url, headers=bearer, timeout=10, verify=self.verify)

    def list_tags(self, repository: str) -> list[str]:
        """Tags of `repository` (sorted); [] when the repository does not exist yet (NAME_UNKNOWN)."""
        response = self._get("GET", f"/v2/{repository}/tags/list", f"repository:{repository}:pull")
        if response.status_code == 404:
            return []
        response.raise_for_status()
        return sorted(response.json().get("tags") or [])

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """`Docker-Content-Digest` of the manifest (index, list or image manifest) at a tag; None when absent."""
        response = self._get(
            "HEAD", f"/v2/{repository}/manifests/{reference}", f"repository:{repository}:pull",
            headers={"Accept": MANIFEST_ACCEPT},
        )
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]


# --- pytest fixtures -------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def registry_binary() -> str:
    """Path of Debian's docker-registry; fails under CI=true and skips elsewhere when it is missing."""
    binary = find_registry_binary()
    if binary is None:
        msg = ("docker-registry is not installed (Debian package docker-registry; .ci/provision-docker.sh "
               "installs it); the real-registry tests need it")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return binary


@pytest.fixture(scope="session")
def registry_ca() -> trustme.CA:
    """A throwaway CA for registries served over TLS; trust it through `RegistryServer.ca_path`."""
    return trustme.CA()


@pytest.fixture(scope="module")
def registry_factory(registry_binary: str, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[Callable[..., RegistryServer]]:
    """Start a RegistryServer with the given keyword options; every one started is stopped at module end."""
    started: list[RegistryServer] = []

    def start(**options: object) -> RegistryServer:
        server = RegistryServer(binary=registry_binary, workdir=tmp_path_factory.mktemp("registry"), **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def basic_registry(registry_factory: Callable[..., RegistryServer]) -> RegistryServer:
    """Plain-HTTP loopback registry with htpasswd auth (the local edition's shape)."""
    return registry_factory()


@pytest.fixture(scope="module")
def tls_registry(registry_factory: Callable[..., RegistryServer], registry_ca: trustme.CA) -> RegistryServer:
    """HTTPS registry whose certificate (for 127.0.0.1 only) is issued by `registry_ca`; htpasswd auth."""
    return registry_factory(tls=registry_ca)


@pytest.fixture(scope="module")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    """Bearer token service: 'pusher' may push and pull acme/*, 'reader' may only pull acme/*."""
    server = TokenServer(
        tmp_path_factory.mktemp("token-server"),
        users={"pusher": secrets.token_urlsafe(18), "reader": secrets.token_urlsafe(18)},
        grants={"pusher": {"acme/*": ("pull", "push")}, "reader": {"acme/*": ("pull",)}},
    )
    with server:
        yield server


@pytest.fixture(scope="module")
def token_registry(registry_factory: Callable[..., RegistryServer], token_server: TokenServer) -> RegistryServer:
    """Plain-HTTP loopback registry whose auth is `token_server`; its username/password are 'pusher''s."""
    return registry_factory(auth="token", token_server=token_server, username="pusher",
                            password=token_server.users["pusher"])
