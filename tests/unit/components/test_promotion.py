"""The promotion resource without the program: when a copy is a change, what a delete removes, how a bad source
manifest is reported, and that the harness records the type the component registers.
"""
from __future__ import annotations

import json

import pytest

from components.promotion import PROMOTION_TYPE, PromotionProvider
from tests.harness import PROMOTION

OLD = {"sourceDigest": "sha256:" + "a" * 64, "targetServer": "h", "targetRepository": "ns/web", "tag": "t1",
       "sourceAuth": {"username": "u", "password": "p1"}, "targetAuth": {"username": "u", "password": "p1"},
       "digest": "sha256:" + "a" * 64}


def test_promotion_type_is_the_harness_type():
    assert PROMOTION_TYPE == PROMOTION


@pytest.mark.parametrize("key,value", [("sourceDigest", "sha256:" + "b" * 64), ("targetServer", "h2"),
                                       ("targetRepository", "ns/other"), ("tag", "t2")])
def test_a_new_source_digest_or_another_target_is_a_new_copy(key, value):
    result = PromotionProvider().diff("id", OLD, {**OLD, key: value})
    assert result.changes is True and result.replaces == [key] and result.delete_before_replace is False


def test_rotated_credentials_are_no_change():
    news = {**OLD, "sourceAuth": {"username": "u2", "password": "p2"}, "targetAuth": {"username": "u", "password": "x"}}
    result = PromotionProvider().diff("id", OLD, news)
    assert result.changes is False and result.replaces == []


def test_a_refreshed_tag_at_another_digest_copies_again():
    olds = {**OLD, "digest": "sha256:" + "c" * 64}
    assert PromotionProvider().diff("id", olds, OLD).replaces == ["sourceDigest"]


def test_delete_removes_nothing():
    # No registry is reachable here: a delete that talked to one would fail.
    assert PromotionProvider().delete("id", {**OLD, "targetServer": "127.0.0.1:9"}) is None


# --- malformed source manifests (the copy's parsing; the registry exchange is faked only here) -----------------

@pytest.mark.parametrize("body,rule", [
    (b"not json", "it is not JSON"),
    (b"[1, 2]", "it is a JSON list, not an object"),
    (json.dumps({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{"size": 1}]}).encode(),
     r"manifests\[0\] has no digest"),
    (json.dumps({"manifests": ["x"]}).encode(), r"manifests\[0\] has no digest"),
    (json.dumps({"manifests": {"digest": "x"}}).encode(), "`manifests` is missing or not a list"),
    (json.dumps({"config": {"size": 1}, "layers": []}).encode(), "its config has no digest"),
    (json.dumps({"config": "x", "layers": []}).encode(), "its config has no digest"),
    (json.dumps({"layers": [{"digest": "md5:x"}]}).encode(), r"layers\[0\] has no digest"),
    (json.dumps({"layers": "x"}).encode(), "`layers` is not a list"),
    (b'{"layers":' + b"[" * 5000 + b"]" * 5000 + b"}", "it is not JSON a copy reads: it is nested deeper than 64 levels"),  # no RecursionError
])
def test_a_malformed_source_manifest_is_a_copy_error(body, rule, monkeypatch):
    import hashlib

    from components import copy as copy_module
    from components.copy import CopyError
    from registryclient.login import RegistryLogin
    from registryclient import OCI_MANIFEST

    digest = "sha256:" + hashlib.sha256(body).hexdigest()

    class Manifest:
        media_type, content = OCI_MANIFEST, body

    Manifest.digest = digest
    if b"image.index" in body:
        Manifest.media_type = "application/vnd.oci.image.index.v1+json"

    class Registry:
        """The two calls the copy makes before parsing: the target tag (free) and the source manifest."""

        def manifest_digest(self, repository, reference):
            return None

        def get_manifest(self, repository, reference):
            assert reference == digest
            return Manifest

        def resolve(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(copy_module, "registry_client", lambda *args, **kwargs: Registry())
    with pytest.raises(CopyError, match=rule) as err:
        copy_module.copy_image(RegistryLogin("src.example", None, None), "ns/web", digest,
                               RegistryLogin("dst.example", None, None), "ns/web", "t")
    assert f"the source manifest src.example/ns/web@{digest} is malformed" in str(err.value)
