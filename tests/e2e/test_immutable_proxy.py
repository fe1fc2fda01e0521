"""The ACR tag-immutability emulation (tests/e2e/immutable_proxy.py) against a real docker-registry, over plain HTTP.

Any client is refused alike, so these tests push with `requests` (the registry HTTP API v2): a new tag passes, the
identical manifest again passes, another manifest under an existing tag is refused with ACR's message and leaves
the tag where it was, a push by digest and every pull pass.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

import pytest
import requests

from tests.e2e.immutable_proxy import ACR_IMMUTABLE_TAG_MESSAGE
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def immutable(registry_factory: Callable[..., RegistryServer]) -> RegistryServer:  # noqa: F811
    return registry_factory(tag_immutability=True)


def push_blob(session: requests.Session, base: str, repository: str, content: bytes, *, chunked: bool) -> dict:
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    start = session.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    assert location.startswith(base) or location.startswith("/"), f"Location escapes the proxy: {location}"
    location = location if location.startswith("http") else base + location
    if chunked:  # a streamed PATCH, as the Docker engine uploads layers
        patch = session.patch(location, data=iter([content[:3], content[3:]]), timeout=10,
                              headers={"Content-Type": "application/octet-stream"})
        assert patch.status_code == 202, patch.text
        location = patch.headers["Location"]
        location = location if location.startswith("http") else base + location
        put = session.put(location, params={"digest": digest}, timeout=10)
    else:
        put = session.put(location, params={"digest": digest}, data=content, timeout=10,
                          headers={"Content-Type": "application/octet-stream"})
    assert put.status_code == 201, put.text
    return {"mediaType": "application/octet-stream", "digest": digest, "size": len(content)}


def manifest(session: requests.Session, base: str, repository: str, layer: bytes) -> bytes:
    config = push_blob(session, base, repository, b"{}", chunked=False)
    config["mediaType"] = "application/vnd.oci.image.config.v1+json"
    layer_ref = push_blob(session, base, repository, layer, chunked=True)
    return json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPE, "config": config,
                       "layers": [layer_ref]}).encode()


def put_manifest(session: requests.Session, base: str, repository: str, reference: str,
                 body: bytes) -> requests.Response:
    return session.put(f"{base}/v2/{repository}/manifests/{reference}", data=body, timeout=10,
                       headers={"Content-Type": MANIFEST_TYPE})


def test_an_existing_tag_cannot_be_overwritten_with_other_content(immutable: RegistryServer) -> None:
    base, repository = immutable.url, "acme/web"
    session = requests.Session()
    session.auth = (immutable.username, immutable.password)
    first = manifest(session, base, repository, b"layer one")
    second = manifest(session, base, repository, b"layer two")
    first_digest = "sha256:" + hashlib.sha256(first).hexdigest()

    assert put_manifest(session, base, repository, "v1", first).status_code == 201
    assert put_manifest(session, base, repository, "v1", first).status_code == 201, "an identical push must pass"

    refused = put_manifest(session, base, repository, "v1", second)
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["message"] == ACR_IMMUTABLE_TAG_MESSAGE
    assert immutable.manifest_digest(repository, "v1") == first_digest, "the refused push moved the tag"
    assert immutable.refused_overwrites == [f"{repository}:v1"]

    # A push by digest names no tag; a new tag for the other content is fine; pulls go through.
    second_digest = "sha256:" + hashlib.sha256(second).hexdigest()
    assert put_manifest(session, base, repository, second_digest, second).status_code == 201
    assert put_manifest(session, base, repository, "v2", second).status_code == 201
    pulled = session.get(f"{base}/v2/{repository}/manifests/v1", headers={"Accept": MANIFEST_TYPE}, timeout=10)
    assert pulled.status_code == 200 and pulled.content == first
    assert immutable.list_tags(repository) == ["v1", "v2"]


def test_without_credentials_the_registry_still_decides(immutable: RegistryServer) -> None:
    """The proxy asks the registry with the pusher's own credentials: an anonymous push meets the 401, not a 400."""
    response = put_manifest(requests.Session(), immutable.url, "acme/web", "v1", b"{}")
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
