"""The real engine promotes: `local-release`-shaped stacks run the Promotion dynamic provider for real.

The source stack is published (tests/e2e/engine.py's manual flow, then `pulumi up`); a second stack with
`acr-publish:promoteFrom` reads it through a StackReference in the same file backend, and the engine starts the
dynamic provider through `pulumi-resource-pulumi-python` for `up`, `refresh` and `destroy`.
"""
from __future__ import annotations

import json
from typing import Callable

import pytest
import requests

from tests.e2e.base_image import base_image  # noqa: F401
from tests.e2e.engine import Workspace, changes, pulumi_engine, workspace  # noqa: F401
from tests.e2e.publishing import IMAGES, NAMESPACE, USER
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401
from tests.e2e.test_engine_publish import PASSWORD_KEY, _encodings, published_stack

RELEASE = "release"
PROMOTION = "pulumi-python:dynamic/acr-publish:Promotion"


@pytest.fixture(scope="module")
def registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:
    return registry_factory(username=USER)


def promoting_stack(workspace: Workspace, registry: RegistryServer, source: str) -> str:
    stack = workspace.new_stack({
        "acr-publish:registry": {"edition": "local", "server": registry.server, "namespace": RELEASE,
                                 "username": USER},
        "acr-publish:promoteFrom": source,
    })
    workspace.set_secret(stack, PASSWORD_KEY, registry.password)
    return stack


def delete_tag(registry: RegistryServer, repository: str, digest: str) -> None:
    response = requests.delete(f"{registry.url}/v2/{repository}/manifests/{digest}",
                               auth=(registry.username, registry.password), timeout=30)
    assert response.status_code == 202, response.text


def test_promotion_copies_reruns_as_no_change_refreshes_and_destroys_nothing(
        workspace: Workspace, registry: RegistryServer, base_image: str, docker_engine: str):
    source, tags = published_stack(workspace, registry, base_image, docker_engine)
    workspace.up(source)[0].check()
    source_images = workspace.outputs(source)["images"]
    target = promoting_stack(workspace, registry, source)

    outcome, summary = workspace.up(target)
    outcome.check()
    assert summary["resourceChanges"].get("create", 0) >= len(IMAGES)
    assert outcome.stdout.count(f'"type":"{PROMOTION}"') > 0
    promoted = workspace.outputs(target)["images"]
    for name in IMAGES:
        digest = source_images[name]["ref"].split("@", 1)[1]
        assert registry.manifest_digest(f"{RELEASE}/{name}", tags[name]) == digest
        assert promoted[name]["ref"] == f"{registry.server}/{RELEASE}/{name}@{digest}"

    # Nothing changed: the preview and the up say so.
    outcome, document = workspace.preview(target)
    outcome.check()
    assert changes(document["changeSummary"]) == {}, document["changeSummary"]
    outcome, summary = workspace.up(target)
    assert changes(summary["resourceChanges"]) == {}, summary

    # A deleted target tag: refresh drops that promotion from the state, the next up copies it again.
    digest = source_images["web"]["ref"].split("@", 1)[1]
    delete_tag(registry, f"{RELEASE}/web", digest)
    outcome, summary = workspace.refresh(target)
    outcome.check()
    assert summary["resourceChanges"].get("delete", 0) == 1, summary
    outcome, summary = workspace.up(target)
    outcome.check()
    assert changes(summary["resourceChanges"]) == {"create": 1}, summary
    assert registry.manifest_digest(f"{RELEASE}/web", tags["web"]) == digest

    # Secrets: the login the promotions carry is in no export or output, in any encoding.
    for text in (workspace.export(target), json.dumps(workspace.outputs(target)), outcome.text):
        for form in _encodings(registry.password):
            assert form not in text, "the registry password leaked (in some encoding)"

    # destroy removes the stack's resources, never an image from the registry.
    outcome, summary = workspace.destroy(target)
    outcome.check()
    assert summary["resourceChanges"].get("delete", 0) >= len(IMAGES)
    for name in IMAGES:
        assert tags[name] in registry.list_tags(f"{RELEASE}/{name}")
        assert tags[name] in registry.list_tags(f"{NAMESPACE}/{name}")
