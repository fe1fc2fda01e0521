"""The real engine promotes: `local-release`-shaped stacks run the Promotion dynamic provider for real.

The source stack is published (tests/e2e/engine.py's manual flow, then `pulumi up`); a second stack with
`acr-publish:promoteFrom` reads it through a StackReference in the same file backend, and the engine starts the
dynamic provider through `pulumi-resource-pulumi-python` for `up`, `refresh` and `destroy`.
"""
from __future__ import annotations

import json
import subprocess
from typing import Callable

import pytest
import requests

from tests.e2e.base_image import base_image  # noqa: F401
from tests.e2e.engine import Workspace, changes, publish_by_hand, pulumi_engine, workspace  # noqa: F401
from tests.e2e.publishing import IMAGES, NAMESPACE, USER
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401
from tests.e2e.test_engine_publish import PASSWORD_KEY, _encodings, published_stack

RELEASE = "release"
PROMOTION = "pulumi-python:dynamic/acr-publish:Promotion"


@pytest.fixture
def registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:
    """A registry (and port) of the test's own."""
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

    # The promoted image runs when pulled back from the target by its ref.
    ref = promoted["worker"]["ref"]
    env = {"DOCKER_CONFIG": str(workspace.root / "docker-config"), "PATH": workspace.env["PATH"]}
    subprocess.run([docker_engine, "pull", ref], env=env, check=True, capture_output=True, timeout=300)
    try:
        run = subprocess.run([docker_engine, "run", "--rm", "--entrypoint", "sh", ref, "-c", "cat /srv/worker.sh"],
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and run.stdout.strip(), run.stderr
    finally:
        subprocess.run([docker_engine, "image", "rm", ref], env=env, capture_output=True, timeout=120)

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


SOURCE_USER, TARGET_USER = "pusher", "promoter"


@pytest.fixture
def target_registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:
    """A second registry, with a user of its own."""
    return registry_factory(username=TARGET_USER)


def cross_registry_stack(workspace: Workspace, target: RegistryServer, source: str, source_password: str) -> str:
    stack = workspace.new_stack({
        "acr-publish:registry": {"edition": "local", "server": target.server, "namespace": RELEASE,
                                 "username": TARGET_USER},
        "acr-publish:promoteFrom": source,
        "acr-publish:sourceUsername": SOURCE_USER,
    })
    workspace.set_secret(stack, PASSWORD_KEY, target.password)
    workspace.set_secret(stack, "acr-publish:sourcePassword", source_password)
    return stack


def declared(workspace: Workspace, stack: str) -> list[str]:
    """Types of the resources in the stack's state other than the stack itself and providers."""
    resources = json.loads(workspace.export(stack))["deployment"].get("resources") or []
    return [r["type"] for r in resources
            if r["type"] != "pulumi:pulumi:Stack" and not r["type"].startswith("pulumi:providers:")]


def test_cross_registry_promotion_and_a_new_source_digest_copies_again(
        workspace: Workspace, registry: RegistryServer, target_registry: RegistryServer, base_image: str,
        docker_engine: str):
    source, tags = published_stack(workspace, registry, base_image, docker_engine)
    workspace.up(source)[0].check()
    first = workspace.outputs(source)["images"]
    target = cross_registry_stack(workspace, target_registry, source, registry.password)
    outcome, summary = workspace.up(target)
    outcome.check()
    for name in IMAGES:
        digest = first[name]["ref"].split("@", 1)[1]
        assert target_registry.manifest_digest(f"{RELEASE}/{name}", tags[name]) == digest

    # A changed file in the shared context: the source publishes new digests, the promotion replaces both copies
    # (and each promoted image's layer audit, which belongs to the digest).
    page = workspace.project / "app" / "www" / "index.html"
    page.write_text(page.read_text() + "\n<!-- changed -->\n")
    new_tags = publish_by_hand(workspace, source, registry.server, registry.username, registry.password,
                               docker_engine)
    assert all(new_tags[name] != tags[name] for name in IMAGES)
    workspace.up(source)[0].check()
    second = workspace.outputs(source)["images"]
    outcome, summary = workspace.up(target)
    outcome.check()
    assert summary["resourceChanges"].get("replace", 0) == 2 * len(IMAGES), summary
    for name in IMAGES:
        assert target_registry.manifest_digest(f"{RELEASE}/{name}", new_tags[name]) == \
            second[name]["ref"].split("@", 1)[1]
        # The replaced promotion's delete removes nothing: the first copy is still there.
        assert target_registry.manifest_digest(f"{RELEASE}/{name}", tags[name]) == \
            first[name]["ref"].split("@", 1)[1]
    for text in (workspace.export(target), outcome.text):
        for secret in (registry.password, target_registry.password):
            for form in _encodings(secret):
                assert form not in text, "a registry password leaked (in some encoding)"


def test_a_target_tag_at_another_digest_is_refused_and_left_alone(
        workspace: Workspace, registry: RegistryServer, base_image: str, docker_engine: str):
    source, tags = published_stack(workspace, registry, base_image, docker_engine)
    workspace.up(source)[0].check()
    images = workspace.outputs(source)["images"]
    # Someone put the worker image under the tag the promotion of web will use.
    from components.copy import copy_image
    from registryclient.login import RegistryLogin

    endpoint = RegistryLogin(registry.server, registry.username, registry.password, True)
    worker_digest = images["worker"]["ref"].split("@", 1)[1]
    copy_image(endpoint, f"{NAMESPACE}/worker", worker_digest, endpoint, f"{RELEASE}/web", tags["web"])
    target = promoting_stack(workspace, registry, source)
    outcome, _ = workspace.up(target)
    assert outcome.returncode != 0
    assert f"{RELEASE}/web:{tags['web']} already exists at {worker_digest}" in outcome.text, outcome.text[-3000:]
    assert "never overwritten" in outcome.text
    assert registry.manifest_digest(f"{RELEASE}/web", tags["web"]) == worker_digest
    for form in _encodings(registry.password):
        assert form not in outcome.text


def test_bad_source_credentials_fail_before_anything_is_declared(
        workspace: Workspace, registry: RegistryServer, target_registry: RegistryServer, base_image: str,
        docker_engine: str):
    source, _ = published_stack(workspace, registry, base_image, docker_engine)
    workspace.up(source)[0].check()
    wrong = "wrong-" + registry.password
    target = cross_registry_stack(workspace, target_registry, source, wrong)
    outcome, _ = workspace.up(target)
    assert outcome.returncode != 0
    assert "acr-publish:sourceUsername" in outcome.text and "Traceback" not in outcome.text
    assert declared(workspace, target) == []
    for form in _encodings(wrong):
        assert form not in outcome.text
