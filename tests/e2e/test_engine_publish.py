"""The real engine runs the local stack against a registry that holds its images.

`pulumi up` of the real CLI, Python language host and program (tests/e2e/engine.py), on a checkout of the project
with its own file backend: the program finds every content tag in the registry, declares no `docker.Image`, exports
the registry's digests; the next preview and up change nothing, also from another checkout of the same commit under
umask 002, from a recreated (empty) stack and from a second stack; the images run when pulled back; a config error
and a failed preflight are printed without a traceback and leave the state as it was; the registry password set with
`pulumi config set --secret` appears in no export, output or CLI output, in any encoding.
"""
from __future__ import annotations

import re
import shutil
import json
import subprocess
from typing import Callable

import pytest

from tests.e2e.base_image import base_image  # noqa: F401
from tests.e2e.dynamic_engine import secret_forms
from tests.e2e.engine import Workspace, changes, publish_by_hand, pulumi_engine, workspace  # noqa: F401
from tests.e2e.publishing import IMAGES, NAMESPACE, USER, local_stack_overrides
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401

PASSWORD_KEY = "acr-publish:registryPassword"
LOOPBACK = re.compile(r'inet_addr\("127\.|inet_pton\(AF_INET6, "(::1|::ffff:127\.[0-9.]+)"')
"""A connect() target on loopback, as strace prints it (IPv4, IPv6 and IPv4-mapped IPv6)."""


@pytest.fixture
def registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:
    """A registry (and port) of the test's own."""
    return registry_factory(username=USER)


def stack_config(registry: RegistryServer, base: str, namespace: str = NAMESPACE) -> dict:
    config = local_stack_overrides(registry.server, base, USER, namespace)
    del config[PASSWORD_KEY]  # set with `pulumi config set --secret`, as a user does
    return config


def published_stack(workspace: Workspace, registry: RegistryServer, base: str, docker_cli: str,
                    namespace: str = NAMESPACE) -> tuple[str, dict[str, str]]:
    stack = workspace.new_stack(stack_config(registry, base, namespace))
    workspace.set_secret(stack, PASSWORD_KEY, registry.password)
    tags = publish_by_hand(workspace, stack, registry.server, registry.username, registry.password, docker_cli)
    return stack, tags


def assert_no_change(workspace: Workspace, stack: str) -> None:
    outcome, document = workspace.preview(stack)
    outcome.check()
    assert changes(document["changeSummary"]) == {}, document["changeSummary"]
    outcome, summary = workspace.up(stack)
    outcome.check()
    assert summary["result"] == "succeeded" and changes(summary["resourceChanges"]) == {}, summary


def test_published_images_are_exported_at_their_registry_digests_and_rerun_as_no_change(
        workspace: Workspace, registry: RegistryServer, base_image: str, docker_engine: str):
    stack, tags = published_stack(workspace, registry, base_image, docker_engine)
    outcome, summary = workspace.up(stack)
    outcome.check()
    assert summary["result"] == "succeeded"
    # The components and the stack are created; no docker.Image is declared (nothing to build).
    assert "docker:index/image:Image" not in outcome.stdout
    images = workspace.outputs(stack)["images"]
    assert sorted(images) == sorted(IMAGES)
    for name in IMAGES:
        repository = f"{registry.server}/{NAMESPACE}/{name}"
        digest = registry.manifest_digest(f"{NAMESPACE}/{name}", tags[name])
        assert images[name]["tag"] == tags[name]
        assert images[name]["ref"] == f"{repository}@{digest}", images[name]
    assert_no_change(workspace, stack)
    assert [entry["kind"] for entry in workspace.history(stack)] == ["update", "update"]


def test_the_published_images_run_when_pulled_back_by_ref(
        workspace: Workspace, registry: RegistryServer, base_image: str, docker_engine: str, tmp_path):
    stack, _ = published_stack(workspace, registry, base_image, docker_engine)
    workspace.up(stack)[0].check()
    ref = workspace.outputs(stack)["images"]["worker"]["ref"]
    env = {"DOCKER_CONFIG": str(workspace.root / "docker-config"), "PATH": workspace.env["PATH"]}
    subprocess.run([docker_engine, "pull", ref], env=env, check=True, capture_output=True, timeout=300)
    try:
        run = subprocess.run([docker_engine, "run", "--rm", "--entrypoint", "sh", ref, "-c", "cat /srv/worker.sh"],
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip(), "the worker image holds an empty worker.sh"
    finally:
        subprocess.run([docker_engine, "image", "rm", ref], env=env, capture_output=True, timeout=120)


def test_another_checkout_a_recreated_stack_and_a_second_stack_change_nothing(
        workspace: Workspace, registry: RegistryServer, base_image: str, docker_engine: str):
    stack, tags = published_stack(workspace, registry, base_image, docker_engine)
    workspace.up(stack)[0].check()
    first = workspace.outputs(stack)["images"]

    # Another checkout of the same commit: another absolute path, umask 002, a group-writable file.
    other = workspace.sibling("checkout-b", umask=0o002)
    config_file = other.project / "app" / "worker.sh"
    config_file.chmod(config_file.stat().st_mode | 0o020)  # chmod g+w
    other.write_config(stack, stack_config(registry, base_image))
    other.set_secret(stack, PASSWORD_KEY, registry.password)
    assert {name: other.explain_tag(stack, name) for name in IMAGES} == tags
    assert_no_change(other, stack)

    # The same stack removed and created again (empty state), and a second stack on the same repositories.
    workspace.pulumi("stack", "rm", "--yes", "--force", stack).check()
    workspace.new_stack(stack_config(registry, base_image), name=stack)
    workspace.set_secret(stack, PASSWORD_KEY, registry.password)
    second = workspace.new_stack(stack_config(registry, base_image))
    workspace.set_secret(second, PASSWORD_KEY, registry.password)
    for name in (stack, second):
        outcome, summary = workspace.up(name)
        outcome.check()
        assert "docker:index/image:Image" not in outcome.stdout
        assert workspace.outputs(name)["images"] == first


def _encodings(secret: str, users: tuple[str, ...] = ("pusher", "promoter")) -> list[str]:
    """The forms a leaked secret takes in text: raw, URL-encoded, base64 (standard and URL-safe, at every alignment),
    hex, JSON-escaped, and the same for `user:secret` (a Basic credential)."""
    forms = {form.decode() for form in secret_forms(secret)}
    forms |= {secret.encode().hex(), json.dumps(secret)[1:-1]}
    for user in users:
        forms |= {form.decode() for form in secret_forms(f"{user}:{secret}")}
    return sorted(forms)


def test_the_registry_password_is_in_no_export_output_or_cli_output(
        workspace: Workspace, registry: RegistryServer, base_image: str, docker_engine: str):
    stack, _ = published_stack(workspace, registry, base_image, docker_engine)
    seen = [workspace.up(stack)[0].check().text, workspace.preview(stack, "--diff")[0].check().text,
            workspace.export(stack), json.dumps(workspace.outputs(stack)),
            (workspace.project / "stacks" / f"Pulumi.{stack}.yaml").read_text()]
    for text in seen:
        for form in _encodings(registry.password):
            assert form not in text, "the registry password leaked (in some encoding)"


def test_a_config_error_is_one_message_without_traceback_and_changes_no_state(
        workspace: Workspace, registry: RegistryServer, base_image: str, docker_engine: str):
    stack, _ = published_stack(workspace, registry, base_image, docker_engine)
    workspace.up(stack)[0].check()
    before = json.loads(workspace.export(stack))["deployment"]["resources"]
    config = stack_config(registry, base_image)
    config["acr-publish:images"][0]["name"] = "Web"
    workspace.write_config(stack, config)
    outcome, summary = workspace.up(stack)
    assert outcome.returncode != 0
    assert "acr-publish:images[0].name 'Web'" in outcome.text
    assert "Traceback" not in outcome.text
    assert json.loads(workspace.export(stack))["deployment"]["resources"] == before


def test_a_failed_preflight_is_one_message_without_traceback_and_changes_no_state(
        workspace: Workspace, registry: RegistryServer, base_image: str, docker_engine: str):
    stack, _ = published_stack(workspace, registry, base_image, docker_engine)
    workspace.up(stack)[0].check()
    before = json.loads(workspace.export(stack))["deployment"]["resources"]
    workspace.set_secret(stack, PASSWORD_KEY, "not-the-password-" + registry.password[:4])
    outcome, _ = workspace.up(stack)
    assert outcome.returncode != 0
    assert "Traceback" not in outcome.text
    assert registry.server in outcome.text and "credentials rejected (401)" in outcome.text, outcome.text[-3000:]
    assert json.loads(workspace.export(stack))["deployment"]["resources"] == before



def test_the_engine_connects_to_nothing_but_loopback(
        workspace: Workspace, registry: RegistryServer, base_image: str, docker_engine: str):
    """`pulumi version`, `pulumi plugin ls` and a whole `pulumi up`, traced: every connect() of the CLI, the language
    host, the program and the dynamic-provider script goes to a Unix socket or to 127.0.0.1 (the engine's own gRPC,
    the registry); none to another address and none to a DNS server."""
    stack, _ = published_stack(workspace, registry, base_image, docker_engine)
    trace = workspace.root / "connect.trace"
    strace = shutil.which("strace")
    assert strace, "strace is needed to trace the engine's connections (apt-get install strace)"
    for args in (["version"], ["plugin", "ls"], ["up", "--yes", "--stack", stack, "--non-interactive"]):
        proc = subprocess.run([strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace), "pulumi", *args],
                              cwd=workspace.project, env=workspace.env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        calls = [line for line in trace.read_text().splitlines() if "connect(" in line]
        inet = [line for line in calls if "AF_INET" in line]
        outside = [line for line in inet if not LOOPBACK.search(line)]
        assert outside == [], f"pulumi {' '.join(args)} connected outside loopback:\n" + "\n".join(outside[:5])
        assert not [line for line in inet if "htons(53)" in line], "a DNS lookup was attempted"
    assert any("127.0.0.1" in line for line in calls), "the trace saw none of up's loopback connections"


def test_an_image_that_needs_a_build_stops_at_the_missing_docker_provider_without_a_traceback(
        workspace: Workspace, registry: RegistryServer, base_image: str):
    """Nothing published yet: the program declares the docker.Image, and the engine, which has no docker provider
    here (docs/engine.md), stops the run with its plugin message; the program leaves without a traceback."""
    stack = workspace.new_stack(stack_config(registry, base_image))
    workspace.set_secret(stack, PASSWORD_KEY, registry.password)
    outcome, _ = workspace.up(stack)
    assert outcome.returncode != 0
    assert "no resource plugin 'pulumi-resource-docker' found" in outcome.text, outcome.text[-3000:]
    assert "Traceback" not in outcome.text and "KeyboardInterrupt" not in outcome.text, outcome.text[-3000:]
