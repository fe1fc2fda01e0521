"""A Docker registry token service for tests: the Bearer realm that a real `docker-registry` trusts.

It implements the token side of the Docker registry token specification (distribution docs, "Token Authentication
Specification"): `GET /token?service=...&scope=repository:<name>:<actions>&account=...` with HTTP Basic
credentials answers `{"token", "access_token", "expires_in", "issued_at"}`, a JWT signed with an ES256 key whose
self-signed certificate is the registry's `auth.token.rootcertbundle`. distribution 2.8 only accepts a JWT whose
header carries the signing chain (`x5c`) or a libtrust `kid`; this server sends `x5c`.

Like real token services it grants the intersection of what was asked and what the user may do (`grants`), so a
user without push permission gets a token without `push` and the registry itself refuses the push with
401 `insufficient_scope`; wrong credentials get 401 from the token endpoint.
"""
from __future__ import annotations

import base64
import datetime
import fnmatch
import json
import secrets
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Mapping
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN_LIFETIME_S = 300


class TokenServer:
    """Serve `/token` on a free loopback port; `realm`, `service`, `issuer`, `cert_path` configure the registry.

    users: {username: password}. grants: {username: {repository glob: actions}}, e.g.
    `{"pusher": {"acme/*": ("pull", "push")}, "reader": {"acme/*": ("pull",)}}`.
    `requests` records (account, scopes asked, access granted) of every token issued, for assertions.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        users: Mapping[str, str],
        grants: Mapping[str, Mapping[str, tuple[str, ...]]],
        service: str = "acr-publish-test-registry",
        issuer: str = "acr-publish-test-token-service",
    ) -> None:
        self.users = dict(users)
        self.grants = {user: dict(patterns) for user, patterns in grants.items()}
        self.service = service
        self.issuer = issuer
        self.issued: list[tuple[str, list[str], list[dict]]] = []
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._cert = _self_signed(self._key, issuer)
        workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path = workdir / "token-signing-cert.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()]
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "TokenServer is not started"
        return self._httpd.server_address[1]

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def start(self) -> "TokenServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                server._handle(self)

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="token-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "TokenServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the token endpoint
    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        if url.path != "/token":
            return _reply(request, 404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
        account = self._authenticate(request.headers.get("Authorization", ""))
        if account is None:
            return _reply(
                request, 401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]},
                {"WWW-Authenticate": 'Basic realm="acr-publish test token service"'},
            )
        query = parse_qs(url.query)
        if query.get("service", [self.service])[0] != self.service:
            return _reply(request, 400, {"errors": [{"code": "INVALID_SERVICE", "message": "unknown service"}]})
        scopes = [part for value in query.get("scope", []) for part in value.split()]
        access = [entry for entry in (self._grant(account, scope) for scope in scopes) if entry is not None]
        now = datetime.datetime.now(datetime.timezone.utc)
        claims = {
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            "iat": now,
            "nbf": now - datetime.timedelta(seconds=5),
            "exp": now + datetime.timedelta(seconds=TOKEN_LIFETIME_S),
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": self._x5c, "typ": "JWT"})
        self.issued.append((account, scopes, access))
        _reply(request, 200, {
            "token": token, "access_token": token, "expires_in": TOKEN_LIFETIME_S,
            "issued_at": now.isoformat().replace("+00:00", "Z"),
        })

    def _authenticate(self, header: str) -> str | None:
        if not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        expected = self.users.get(user)
        if expected is None or not secrets.compare_digest(expected, password):
            return None
        return user

    def _grant(self, account: str, scope: str) -> dict | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None
        allowed: set[str] = set()
        for pattern, granted in self.grants.get(account, {}).items():
            if fnmatch.fnmatchcase(name, pattern):
                allowed.update(granted)
        wanted = [action for action in actions.split(",") if action in allowed]
        return {"type": "repository", "name": name, "actions": wanted}


def _reply(request: BaseHTTPRequestHandler, status: int, body: dict, headers: Mapping[str, str] = {}) -> None:
    data = json.dumps(body).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    for name, value in headers.items():
        request.send_header(name, value)
    request.end_headers()
    request.wfile.write(data)


def _self_signed(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
