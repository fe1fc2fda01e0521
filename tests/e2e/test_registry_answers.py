"""What the registry client makes of answers registries (or proxies in front of them) really send: compressed
bodies, digests a HEAD misreports, answers HTTP cannot parse, and tokens no header can carry.

Servers are sockets on 127.0.0.1 (tests/e2e/test_hostile_servers.py's HostileServer).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import socket
import zlib

import pytest

from components.preflight import PreflightTarget, check_published, check_registry
from registryclient import RegistryError
from registryclient import MANIFEST_LIMIT, OCI_MANIFEST, RegistryClient, RegistryError
from registryclient.login import RegistryLogin
from tests.e2e.test_hostile_servers import HostileServer, hostile  # noqa: F401

USER, PASSWORD = "pusher", "s3cret-Pa55word"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
    "mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 2},
    "layers": []}).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
BLOB = bytes(range(256)) * 4096
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def _send(conn: socket.socket, status: str, body: bytes = b"", headers: str = "") -> None:
    conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body)


def encode(data: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(data)
    if encoding == "deflate":
        return zlib.compress(data)
    return data


def compressing_registry(encoding: str, *, token: bytes | None = None):
    """A Bearer registry whose token service and registry answers are all sent with `encoding`, whatever the client
    asked for (a compressing proxy)."""

    def handle(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        path = head.split(b" ", 2)[1].decode()
        method = head.split(b" ", 1)[0]
        ce = f"Content-Encoding: {encoding}\r\n"
        if path.startswith("/token"):
            body = token if token is not None else json.dumps({"token": "tok-" + "a" * 40}).encode()
            return _send(conn, "200 OK", encode(body, encoding), ce + "Content-Type: application/json\r\n")
        authorized = b"authorization: bearer" in head.lower()
        if not authorized:
            challenge = (f'WWW-Authenticate: Bearer realm="http://{server.server}/token",service="t"\r\n'
                         "Docker-Distribution-API-Version: registry/2.0\r\n")
            return _send(conn, "401 Unauthorized", encode(b'{"errors":[]}', encoding), ce + challenge)
        if path == "/v2/":
            return _send(conn, "200 OK", encode(b"{}", encoding), ce)
        if "/manifests/" in path:
            headers = f"Content-Type: {OCI_MANIFEST}\r\nDocker-Content-Digest: {MANIFEST_DIGEST}\r\n"
            if method == b"HEAD":
                return _send(conn, "200 OK", b"", headers)
            return _send(conn, "200 OK", encode(MANIFEST, encoding), ce + headers)
        if "/blobs/" in path:
            return _send(conn, "200 OK", encode(BLOB, encoding), ce)
        return _send(conn, "404 Not Found")

    return handle


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "identity"])
def test_a_compressing_proxy_does_not_break_login_manifests_or_blobs(hostile, encoding: str) -> None:  # noqa: F811
    server = hostile(compressing_registry(encoding))
    with RegistryClient(server.server, USER, PASSWORD, allow_plain_http=True, timeout=10) as client:
        client.login(["repository:acme/web:pull"])
        manifest = client.get_manifest("acme/web", "v1")
        assert manifest.content == MANIFEST and manifest.digest == MANIFEST_DIGEST
        assert client.manifest_digest("acme/web", "v1") == MANIFEST_DIGEST
        assert b"".join(client.get_blob("acme/web", BLOB_DIGEST, chunk_size=4096)) == BLOB
    assert all(b"accept-encoding: identity" in r.lower() for r in server.requests), server.requests[0]


def test_a_decompression_bomb_stops_at_the_bound(hostile) -> None:  # noqa: F811
    bomb = gzip.compress(b" " * (64 * MANIFEST_LIMIT))  # 256 MiB of spaces in about 250 KiB

    def handle(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        if head.startswith(b"GET /v2/ "):
            return _send(conn, "200 OK", b"{}")
        _send(conn, "200 OK", bomb, f"Content-Encoding: gzip\r\nContent-Type: {OCI_MANIFEST}\r\n")

    server = hostile(handle)
    with RegistryClient(server.server, allow_plain_http=True, timeout=10) as client:
        with pytest.raises(RegistryError, match=f"larger than {MANIFEST_LIMIT} bytes"):
            client.get_manifest("acme/web", "v1")


@pytest.mark.parametrize("encoding,rule", [("br", "does not decode"), ("gzip, gzip", "does not decode"),
                                           ("gzip-corrupt", "is corrupt")])
def test_an_encoding_that_cannot_be_decoded_is_named(hostile, encoding: str, rule: str) -> None:  # noqa: F811
    def handle(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        if head.startswith(b"GET /v2/ "):
            return _send(conn, "200 OK", b"{}")
        body = b"\x1f\x8b\x08\x00garbage-not-deflate" if encoding == "gzip-corrupt" else MANIFEST
        _send(conn, "200 OK", body, f"Content-Encoding: {encoding.split('-')[0]}\r\nContent-Type: {OCI_MANIFEST}\r\n")

    server = hostile(handle)
    with RegistryClient(server.server, allow_plain_http=True, timeout=10) as client:
        with pytest.raises(RegistryError, match=rule) as err:
            client.get_manifest("acme/web", "v1")
    assert err.value.kind == "protocol"


# --- digests a HEAD misreports ---------------------------------------------------------------------------------

def lying_head(claim: str):
    def handle(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        if head.startswith(b"GET /v2/ "):
            return _send(conn, "200 OK", b"{}")
        if head.startswith(b"HEAD "):
            return _send(conn, "200 OK", b"", f"Docker-Content-Digest: {claim}\r\nContent-Type: {OCI_MANIFEST}\r\n")
        _send(conn, "200 OK", MANIFEST, f"Content-Type: {OCI_MANIFEST}\r\n")

    return handle


@pytest.mark.parametrize("claim", ["sha256:" + "ab" * 32, "sha256:" + "0" * 64, "sha512:" + "ab" * 64])
def test_a_head_that_misreports_the_digest_never_becomes_an_answer(hostile, claim: str) -> None:  # noqa: F811
    server = hostile(lying_head(claim))
    with RegistryClient(server.server, allow_plain_http=True, timeout=10) as client:
        with pytest.raises(RegistryError, match=f"bytes have digest {MANIFEST_DIGEST}"):
            client.manifest_digest("acme/web", "v1")
    with pytest.raises(RegistryError, match="misreports digests"):
        check_published(RegistryLogin(server.server, None, None, allow_plain_http=True),
                        {"web": ("acme/web", "v1")}, timeout=10)


def test_a_head_without_a_digest_is_answered_with_the_digest_of_the_bytes(hostile) -> None:  # noqa: F811
    server = hostile(lying_head(""))
    with RegistryClient(server.server, allow_plain_http=True, timeout=10) as client:
        assert client.manifest_digest("acme/web", "v1") == MANIFEST_DIGEST


def test_a_manifest_by_digest_must_have_that_digest(hostile) -> None:  # noqa: F811
    other = "sha256:" + "cd" * 32
    server = hostile(lying_head(other))
    with RegistryClient(server.server, allow_plain_http=True, timeout=10) as client:
        with pytest.raises(RegistryError, match=f"answered acme/web@{other} with manifest bytes of digest"):
            client.get_manifest("acme/web", other)


# --- answers HTTP cannot parse, and tokens no header can carry ---------------------------------------------------

MALFORMED = {
    "short body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",
    "bad chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "cut chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n{}",
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_answer_is_called_malformed_not_unreachable(hostile, name: str) -> None:  # noqa: F811
    def handle(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        conn.sendall(MALFORMED[name])
        conn.shutdown(socket.SHUT_WR)

    server = hostile(handle)
    with RegistryClient(server.server, allow_plain_http=True, timeout=5) as client:
        with pytest.raises(RegistryError) as err:
            client.login()
    assert err.value.kind == "protocol", str(err.value)
    assert "nothing answers there" not in str(err.value) and "cannot connect" not in str(err.value), str(err.value)


@pytest.mark.parametrize("token", ["tökén-ü-0123456789", "令牌令牌令牌令牌", "tok en with spaces", "tok\u0085en-12345"])
def test_a_token_no_header_can_carry_is_named_as_such(hostile, token: str) -> None:  # noqa: F811
    server = hostile(compressing_registry("identity", token=json.dumps({"token": token}).encode()))
    with RegistryClient(server.server, USER, PASSWORD, allow_plain_http=True, timeout=10) as client:
        with pytest.raises(RegistryError, match="other than visible ASCII") as err:
            client.login(["repository:acme/web:pull"])
    assert "unusable location" not in str(err.value)
    assert token not in str(err.value) and PASSWORD not in str(err.value)


# --- the mask never spells a password out by the words around it ----------------------------------------------

def _rejecting(conn: socket.socket, head: bytes, server: HostileServer) -> None:
    challenge = 'WWW-Authenticate: Basic realm="registry"\r\nDocker-Distribution-API-Version: registry/2.0\r\n'
    _send(conn, "401 Unauthorized", b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
          challenge)


@pytest.mark.parametrize("weak", ["password", "registry", "credentials", "rejected", "configured", "preflight"])
def test_a_password_that_is_a_word_of_the_message_is_not_revealed_by_the_mask(
        hostile, weak: str) -> None:  # noqa: F811
    """The message for a rejected login is the same whatever the password: the program's own words are never
    masked, so no gap in them names the password."""
    server = hostile(_rejecting)
    messages = []
    for password in (weak, "Zq7-unrelated-Secret"):
        with pytest.raises(RegistryError) as err:
            check_registry(PreflightTarget(RegistryLogin(server.server, USER, password, allow_plain_http=True),
                                           ("acme/web",)),
                           timeout=10)
        messages.append(str(err.value))
    assert messages[0] == messages[1], messages
    assert "***" not in messages[0]


# --- image indexes nested without end ----------------------------------------------------------------------------

def _index_chain(depth: int) -> tuple[str, dict[str, bytes]]:
    """(top digest, {digest: bytes}) of `depth` image indexes, each holding the next, over a leaf that is a JSON list
    (malformed: reaching it proves the chain was followed that far)."""
    leaf = b"[]"
    digest = "sha256:" + hashlib.sha256(leaf).hexdigest()
    blobs = {digest: leaf}
    for _ in range(depth):
        body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": 2}]}).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        blobs[digest] = body
    return digest, blobs


def _serving(manifests: dict[str, bytes]):
    def handle(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        path = head.split(b" ", 2)[1].decode()
        if path == "/v2/":
            return _send(conn, "200 OK", b"{}")
        reference = path.rsplit("/", 1)[-1]
        if path.startswith("/v2/src/") and reference in manifests:
            body = manifests[reference]
            media = "application/vnd.oci.image.index.v1+json" if b"manifests" in body else OCI_MANIFEST
            return _send(conn, "200 OK", b"" if head.startswith(b"HEAD") else body, f"Content-Type: {media}\r\n")
        return _send(conn, "404 Not Found")

    return handle


@pytest.mark.parametrize("depth", [9, 40, 1100])
def test_indexes_nested_past_the_bound_are_one_clear_error(hostile, depth: int) -> None:  # noqa: F811
    from components.copy import INDEX_DEPTH_MAX, CopyError, copy_image
    from registryclient.login import RegistryLogin

    top, manifests = _index_chain(depth)
    server = hostile(_serving(manifests)).server
    endpoint = RegistryLogin(server, None, None, True)
    with pytest.raises(CopyError) as err:
        copy_image(endpoint, "src/app", top, endpoint, "dst/app", "v1", budget=60)
    assert f"nested more than {INDEX_DEPTH_MAX} indexes deep" in str(err.value), str(err.value)[:300]


@pytest.mark.parametrize("depth", [1, 8])
def test_indexes_nested_within_the_bound_are_followed(hostile, depth: int) -> None:  # noqa: F811
    from components.copy import CopyError, copy_image
    from registryclient.login import RegistryLogin

    top, manifests = _index_chain(depth)
    server = hostile(_serving(manifests)).server
    endpoint = RegistryLogin(server, None, None, True)
    with pytest.raises(CopyError, match="it is a JSON list, not an object"):
        copy_image(endpoint, "src/app", top, endpoint, "dst/app", "v1", budget=60)
