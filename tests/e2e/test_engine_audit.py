"""The real engine runs each image's `ImageAudit`: once per digest, its summary exported beside `ref`.

`pulumi up` of the real CLI, language host and dynamic-provider process (tests/e2e/engine.py) on the local stack
whose images a registry already holds (as tests/e2e/test_engine_publish.py sets it up). The registry's access log
counts the layer-blob reads: the first `up` audits every image (its layers read once), the next `up` changes nothing
and reads no blob; a changed `audit:` threshold is an update judged on the stored findings, also without a blob read.
"""
from __future__ import annotations

import re
from typing import Callable

import pytest

from tests.e2e.base_image import base_image  # noqa: F401
from tests.e2e.engine import Workspace, changes, publish_by_hand, pulumi_engine, workspace  # noqa: F401
from tests.e2e.publishing import IMAGES, NAMESPACE, USER, local_stack_overrides
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401

PASSWORD_KEY = "acr-publish:registryPassword"
BLOB_GET = re.compile(r'"GET /v2/' + NAMESPACE + r'/[a-z-]+/blobs/sha256:')


@pytest.fixture
def registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:
    return registry_factory(username=USER, access_log=True)


def blob_reads(registry: RegistryServer) -> int:
    return len(BLOB_GET.findall(registry.log_text()))


def test_the_engine_audits_each_digest_once_and_exports_the_summary(
        workspace: Workspace, registry: RegistryServer, base_image: str, docker_engine: str):
    config = local_stack_overrides(registry.server, base_image, USER, NAMESPACE)
    del config[PASSWORD_KEY]
    stack = workspace.new_stack(config)
    workspace.set_secret(stack, PASSWORD_KEY, registry.password)
    publish_by_hand(workspace, stack, registry.server, registry.username, registry.password, docker_engine)
    before = blob_reads(registry)
    outcome, summary = workspace.up(stack)
    outcome.check()
    assert summary["result"] == "succeeded"
    assert summary["resourceChanges"].get("create", 0) >= len(IMAGES)
    first = blob_reads(registry) - before
    assert first > 0, "the audits read the images' blobs"
    images = workspace.outputs(stack)["images"]
    for name in IMAGES:
        audit = images[name]["audit"]
        assert set(audit) == {"wastedBytes", "wastedPercent", "hiddenFiles", "sensitive"}, audit
        assert audit["sensitive"] == 0 and audit["wastedBytes"] >= 0, (name, audit)
    assert registry.password not in outcome.text

    outcome, summary = workspace.up(stack)
    outcome.check()
    assert changes(summary["resourceChanges"]) == {}, summary
    assert blob_reads(registry) - before == first, "an unchanged run read layers again"

    stricter = {**config, "acr-publish:images": [
        {**image, "audit": {"maxWastedPercent": 100, "failOnSensitive": True}} for image in config["acr-publish:images"]]}
    workspace.write_config(stack, stricter)
    workspace.set_secret(stack, PASSWORD_KEY, registry.password)  # write_config replaced the config map
    outcome, summary = workspace.up(stack)
    outcome.check()
    assert changes(summary["resourceChanges"]) == {"update": len(IMAGES)}, summary
    assert blob_reads(registry) - before == first, "a threshold change read layers"
