"""registryclient/ against real registries: Debian's docker-registry (distribution 2.8), htpasswd and a
real Bearer token service, plain HTTP on loopback and TLS from a test CA.

What the promotion copy and the published-tag check rely on is exercised here for real: blobs up (monolithic and
chunked) and down (streamed, digest-checked), cross-repository mounts, manifests of all four media types put and
read back byte for byte with the digest the registry reports, tag lists, tokens per scope, and what counts as
"absent". The registry's own view is checked with tests/e2e/registry.py's independent RegistryApi.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

import pytest

from registryclient import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, RegistryClient, RegistryError
from registryclient.login import RegistryLogin
from tests.e2e.registry import (  # noqa: F401  (pytest fixtures are used by name)
    RegistryServer,
    basic_registry,
    registry_binary,
    registry_ca,
    registry_factory,
    tls_registry,
    token_registry,
    token_server,
)
from tests.e2e.token_server import TokenServer


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client_for(registry: RegistryServer, username: str | None = None, password: str | None = None
               ) -> RegistryClient:
    if username is None:
        username, password = registry.username, registry.password
    return RegistryClient(registry.server, username, password, allow_plain_http=True, timeout=10)


def push_image(client: RegistryClient, repository: str, tag: str, *, media_type: str = DOCKER_MANIFEST,
               layer: bytes | None = None) -> tuple[bytes, str, list[str]]:
    """A small image (config + one layer) pushed with the client; returns (manifest bytes, digest, blob digests)."""
    layer = layer if layer is not None else os.urandom(3000)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [
        sha(layer)]}}).encode()
    for blob in (config, layer):
        client.put_blob(repository, sha(blob), iter([blob]))
    config_type = ("application/vnd.oci.image.config.v1+json" if media_type == OCI_MANIFEST
                   else "application/vnd.docker.container.image.v1+json")
    layer_type = ("application/vnd.oci.image.layer.v1.tar" if media_type == OCI_MANIFEST
                  else "application/vnd.docker.image.rootfs.diff.tar")
    # Odd spacing and key order on purpose: the bytes must go up and come back unchanged, not re-serialized.
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media_type,
        "config": {"mediaType": config_type, "size": len(config), "digest": sha(config)},
        "layers": [{"mediaType": layer_type, "size": len(layer), "digest": sha(layer)}],
    }, indent=3).encode()
    digest = client.put_manifest(repository, tag, media_type, manifest)
    return manifest, digest, [sha(config), sha(layer)]


@pytest.mark.parametrize("media_type, repository", [(DOCKER_MANIFEST, "acme/rt-docker"), (OCI_MANIFEST, "acme/rt-oci")])
def test_manifest_round_trip_keeps_bytes_media_type_and_digest(basic_registry: RegistryServer, media_type: str,
                                                                repository: str) -> None:
    with client_for(basic_registry) as client:
        assert client.manifest_digest(repository, "v1") is None, "a repository that does not exist yet is absent"
        manifest, digest, _ = push_image(client, repository, "v1", media_type=media_type)
        assert digest == sha(manifest)
        assert client.manifest_digest(repository, "v1") == digest
        got = client.get_manifest(repository, "v1")
        assert (got.media_type, got.content, got.digest) == (media_type, manifest, digest)
        assert client.manifest_digest(repository, "v2") is None, "an unknown tag in an existing repository"
        assert client.list_tags(repository) == ["v1"]
    assert basic_registry.manifest_digest(repository, "v1") == digest


@pytest.mark.parametrize("index_type, child_type, repository", [
    (OCI_INDEX, OCI_MANIFEST, "acme/idx-oci"), (DOCKER_LIST, DOCKER_MANIFEST, "acme/idx-docker")])
def test_index_and_manifest_list_round_trip(basic_registry: RegistryServer, index_type: str, child_type: str,
                                            repository: str) -> None:
    with client_for(basic_registry) as client:
        child, child_digest, _ = push_image(client, repository, "amd64", media_type=child_type)
        index = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": [{
            "mediaType": child_type, "size": len(child), "digest": child_digest,
            "platform": {"architecture": "amd64", "os": "linux"},
        }]}).encode()
        digest = client.put_manifest(repository, "multi", index_type, index)
        got = client.get_manifest(repository, "multi")
        assert (got.media_type, got.content, got.digest) == (index_type, index, sha(index))
        assert client.manifest_digest(repository, "multi") == digest, "HEAD reports the index, not a child"
    assert basic_registry.manifest_digest(repository, "multi") == digest


def test_blobs_up_chunked_and_down_streamed(basic_registry: RegistryServer) -> None:
    data = os.urandom(5 * 1024 * 1024 + 17)
    pieces = [data[i:i + 1024 * 1024] for i in range(0, len(data), 1024 * 1024)]
    with client_for(basic_registry) as client:
        assert client.blob_size("acme/blobs", sha(data)) is None
        client.put_blob("acme/blobs", sha(data), iter(pieces), chunked=True)
        assert client.blob_size("acme/blobs", sha(data)) == len(data)
        chunks = list(client.get_blob("acme/blobs", sha(data), chunk_size=256 * 1024))
        assert b"".join(chunks) == data
        assert max(len(c) for c in chunks) <= 256 * 1024, "streamed in bounded chunks, never whole"
        small = os.urandom(999)
        client.put_blob("acme/blobs", sha(small), (small[i:i + 100] for i in range(0, 999, 100)))
        assert b"".join(client.get_blob("acme/blobs", sha(small))) == small


def test_a_blob_whose_digest_does_not_match_is_refused(basic_registry: RegistryServer) -> None:
    with client_for(basic_registry) as client, pytest.raises(RegistryError) as err:
        client.put_blob("acme/blobs", sha(b"what was promised"), iter([b"something else"]))
    assert err.value.status == 400 and basic_registry.password not in str(err.value)


def test_cross_repository_mount(basic_registry: RegistryServer) -> None:
    with client_for(basic_registry) as client:
        _, _, blobs = push_image(client, "acme/mount-src", "v1")
        for blob in blobs:
            assert client.mount_blob("acme/mount-dst", blob, "acme/mount-src") is True
            assert client.blob_exists("acme/mount-dst", blob)
        assert client.mount_blob("acme/mount-dst", sha(b"never pushed"), "acme/mount-src") is False


def test_tls_registry(tls_registry: RegistryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_registry.ca_path))
    with RegistryClient(tls_registry.server, tls_registry.username, tls_registry.password, timeout=10) as client:
        assert client.endpoint.scheme == "https"
        _, digest, _ = push_image(client, "acme/tls", "v1")
        assert client.manifest_digest("acme/tls", "v1") == digest


def test_bearer_tokens_are_asked_per_repository_scope_and_cached(token_registry: RegistryServer,
                                                                 token_server: TokenServer) -> None:
    before = len(token_server.issued)
    with client_for(token_registry) as client:
        client.login()
        _, digest, blobs = push_image(client, "acme/tok-a", "v1")
        assert client.manifest_digest("acme/tok-a", "v1") == digest
        assert client.mount_blob("acme/tok-b", blobs[1], "acme/tok-a")
        assert client.manifest_digest("acme/tok-b", "v1") is None
    issued = token_server.issued[before:]
    scopes = [sorted(s) for _, s, _ in issued]
    assert scopes[0] == [], "the login asks for no scope, as docker login does"
    assert ["repository:acme/tok-a:pull,push"] in scopes
    assert sorted(["repository:acme/tok-a:pull", "repository:acme/tok-b:pull,push"]) in scopes, (
        "a mount asks push on the target and pull on the source in one token")
    assert len(scopes) == len({tuple(s) for s in scopes}), f"each scope's token is asked once: {scopes}"


def test_a_repository_the_token_service_grants_nothing_on_counts_as_absent(
        registry_factory: Callable[..., RegistryServer], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Token services such as ACR's answer a repository that does not exist with a token granting nothing on it;
    distribution then answers 401 insufficient_scope. That is "not published", not a failure."""
    with TokenServer(tmp_path_factory.mktemp("grants"), users={"pusher": "pw-123456789"},
                     grants={"pusher": {"acme/*": ("pull", "push")}}) as tokens:
        registry = registry_factory(auth="token", token_server=tokens, username="pusher", password="pw-123456789")
        with client_for(registry) as client:
            assert client.manifest_digest("other/web", "v1") is None
            issued = tokens.issued[-1]
            assert issued[2] == [{"type": "repository", "name": "other/web", "actions": []}]


def test_a_registry_that_refuses_the_read_fails_instead_of_saying_absent(basic_registry: RegistryServer) -> None:
    with client_for(basic_registry, basic_registry.username, "wrong-password-123") as client:
        with pytest.raises(RegistryError) as err:
            client.manifest_digest("acme/web", "v1")
    assert err.value.kind == "auth" and "wrong-password-123" not in str(err.value)


def test_check_published_against_a_token_registry(token_registry: RegistryServer, token_server: TokenServer) -> None:
    """The program's published-tag check as it runs before declaring: one login asking pull on every repository."""
    from components.preflight import check_published
    from registryclient import RegistryError

    with client_for(token_registry) as client:
        _, digest, _ = push_image(client, "acme/pub-web", "ctx-1")
    login = RegistryLogin(token_registry.server, "pusher", token_registry.password, allow_plain_http=True)
    found = check_published(login, {"web": ("acme/pub-web", "ctx-1"), "again": ("acme/pub-web", "ctx-2"),
                                     "new": ("acme/pub-new", "ctx-1")})
    assert found == {"web": digest, "again": None, "new": None}
    assert sorted(token_server.issued[-1][1]) == ["repository:acme/pub-new:pull", "repository:acme/pub-web:pull"]
    wrong = RegistryLogin(token_registry.server, "pusher", "not-the-password", allow_plain_http=True)
    with pytest.raises(RegistryError) as err:
        check_published(wrong, {"web": ("acme/pub-web", "ctx-1")})
    assert err.value.kind == "auth" and str(err.value).startswith(
        f"published-tag check for '{token_registry.server}' failed: credentials rejected (401)")
