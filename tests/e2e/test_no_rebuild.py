"""End to end: a published content tag is never rebuilt or re-pushed, from any checkout, stack or state.

Real engine, real `docker-registry` behind the ACR tag-immutability emulation (tests/e2e/immutable_proxy.py), and
the pulumi-docker stand-in (tests/e2e/docker_harness.py), whose Check hashes the context the provider's way (full
mode strings), so it rebuilds whatever the real provider would rebuild. Checkout A is the project's files written
under umask 022 at one path, checkout B the same files under umask 002 at another path, with one file `chmod g+w`:
the same commit on another machine. Each test publishes to a namespace of its own, so A really builds and pushes.

The program-level tests hold once the program asks the registry whether the content tag is already published
before declaring anything (then no docker.Image is declared, `ref` is `<repository>@<digest the registry
reports>`, and the run says `web: <tag> is already in <repository> (sha256:…); nothing to build`). Without that
check they fail the way `pulumi up` fails with the real provider: the stand-in rebuilds B and the push is refused.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.e2e.base_image import base_image  # noqa: F401  (pytest fixtures are used by name)
from tests.e2e.docker_harness import DockerImageProvider, ImageProviderError, _Inputs
from tests.e2e.immutable_proxy import ACR_IMMUTABLE_TAG_MESSAGE
from tests.e2e.publishing import APP_ENV, IMAGES, USER, Publisher, Run, checkout, publisher  # noqa: F401
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401
from tests.harness import PROJECT_ROOT, TEST_SECRET

STACK = "e2e-no-rebuild"
# The one file checkout B also changes by hand (`chmod g+w`); COPY keeps modes, so the built layer differs.
CHMOD_FILE = "app/www/index.html"


@pytest.fixture(scope="module")
def registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:  # noqa: F811
    return registry_factory(username=USER, password=TEST_SECRET, tag_immutability=True)


@dataclass
class Checkouts:
    a: Path
    b: Path
    namespace: str


@pytest.fixture
def checkouts(tmp_path: Path) -> Checkouts:
    """A (umask 022) and B (umask 002, one file chmod g+w) of the same files, at two absolute paths."""
    a = checkout(tmp_path / "machine-a" / "acr-publish", 0o022)
    b = checkout(tmp_path / "machine-b" / "work" / "checkout", 0o002)
    os.chmod(b / CHMOD_FILE, os.stat(b / CHMOD_FILE).st_mode | stat.S_IWGRP)
    assert stat.S_IMODE(os.stat(a / CHMOD_FILE).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(b / CHMOD_FILE).st_mode) == 0o664
    assert stat.S_IMODE(os.stat(b / "app" / "worker.sh").st_mode) == 0o775
    return Checkouts(a, b, f"nr{secrets.token_hex(4)}")


def refused_in(registry: RegistryServer, namespace: str) -> list[str]:
    """The overwrites the immutability emulation refused in `namespace` (each test has its own)."""
    return [r for r in registry.refused_overwrites if r.startswith(f"{namespace}/")]


def digests(registry: RegistryServer, namespace: str, run: Run) -> dict[str, str | None]:
    return {name: registry.manifest_digest(f"{namespace}/{name}", run.image(name)["tag"]) for name in IMAGES}


def publish_a(publisher: Publisher, checkouts: Checkouts, state_dir: Path, stack: str = STACK) -> Run:
    """The first `up` from checkout A: both images built and pushed (the namespace is new)."""
    run = publisher.run(checkouts.a, stack, state_dir, namespace=checkouts.namespace)
    assert sorted(b.resource for b in run.provider.builds) == [f"{n}-image" for n in IMAGES]
    assert len(run.provider.pushes) == len(IMAGES)
    return run


def assert_nothing_done(publisher: Publisher, checkouts: Checkouts, first: Run, again: Run) -> None:
    """`again` built and pushed nothing, kept every ref, moved no tag, and said so once per image."""
    assert again.provider.builds == [], f"rebuilt: {[b.image_name for b in again.provider.builds]}"
    assert again.provider.pushes == [], f"re-pushed: {[p.image_name for p in again.provider.pushes]}"
    assert refused_in(publisher.registry, checkouts.namespace) == []
    registry_digests = digests(publisher.registry, checkouts.namespace, first)
    log = "\n".join(again.stack.infos + again.stack.warnings)
    for name in IMAGES:
        before, after = first.image(name), again.image(name)
        assert after["tag"] == before["tag"] and after["imageName"] == before["imageName"]
        assert after["ref"] == before["ref"], f"{name}: ref moved from {before['ref']} to {after['ref']}"
        assert before["ref"] == f"{before['repository']}@{registry_digests[name]}"
        said = re.findall(rf"{name}: {re.escape(before['tag'])} is already in (\S+) \((sha256:[0-9a-f]{{64}})\); "
                          r"nothing to build", log)
        assert len(said) == 1, f"{name}: expected one 'already in ... nothing to build' line, log was:\n{log}"
        assert said[0][0].endswith(f"{checkouts.namespace}/{name}") and said[0][1] == registry_digests[name]
    assert publisher.tags(checkouts.namespace) == {n: [first.image(n)["tag"]] for n in IMAGES}


# --- the stand-in alone reproduces the failure -------------------------------------------------------------------

def image_inputs(registry: RegistryServer, namespace: str, base: str, tag: str) -> dict:
    """The inputs the program gives its `web` docker.Image (components/image.py), with a fixed tag."""
    return {
        "imageName": f"{registry.server}/{namespace}/web:{tag}",
        "build": {"context": "app", "dockerfile": "app/Dockerfile", "target": "web", "platform": "linux/amd64",
                  "args": {"APP_ENV": APP_ENV, "BASE_IMAGE": base}, "builderVersion": "BuilderBuildKit",
                  # What the program would put here is overwritten by Check, as the provider does.
                  "contextDigest": "set-by-the-program"},
        "registry": {"server": registry.server, "username": USER, "password": TEST_SECRET},
        "skipPush": False,
        "buildOnPreview": False,
    }


def standin_process(state_dir: Path, cwd: Path, inputs: dict, docker_cli: str) -> subprocess.CompletedProcess:
    """One `up` of the image by the stand-in in a process of its own (the inputs go on stdin, never in a file)."""
    return subprocess.run(
        [sys.executable, "-m", "tests.e2e.docker_harness", "--state-dir", str(state_dir), "--stack", STACK,
         "--resource", "web-image", "--cwd", str(cwd), "--docker-cli", docker_cli],
        input=json.dumps(inputs), capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT,
    )


def test_standin_alone_rebuilds_checkout_b_and_its_push_is_refused(
        checkouts: Checkouts, registry: RegistryServer, base_image: str, docker_engine: str,  # noqa: F811
        tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    inputs = image_inputs(registry, checkouts.namespace, base_image, f"ctx-standin-{secrets.token_hex(4)}")

    first = standin_process(state_dir, checkouts.a, inputs, docker_engine)
    assert first.returncode == 0, first.stderr
    built_in_a = subprocess.run([docker_engine, "image", "inspect", "--format", "{{.Id}}", inputs["imageName"]],
                                capture_output=True, text=True, timeout=60).stdout.strip()
    try:
        standin_alone_checks(checkouts, registry, docker_engine, state_dir, inputs, first)
    finally:  # the image the other process built (B's rebuild takes its name over)
        subprocess.run([docker_engine, "image", "rm", "--force", built_in_a], capture_output=True, timeout=60)


def standin_alone_checks(checkouts: Checkouts, registry: RegistryServer, docker_engine: str, state_dir: Path,
                         inputs: dict, first: subprocess.CompletedProcess) -> None:
    repository, tag = inputs["imageName"].rsplit(":", 1)
    path = f"{checkouts.namespace}/web"
    assert TEST_SECRET not in first.stdout + first.stderr
    created = json.loads(first.stdout)
    assert (created["action"], created["builds"], created["pushes"]) == ("create", 1, 1)
    assert created["id"] == inputs["imageName"]
    published = registry.manifest_digest(path, tag)
    assert created["outputs"]["repoDigest"] == f"{repository}@{published}"
    assert created["outputs"]["dockerfile"] == "Dockerfile" and created["outputs"]["platform"] == "linux/amd64"
    stored = json.loads((state_dir / f"{STACK}.json").read_text())
    assert TEST_SECRET not in json.dumps(stored), "the state file holds the registry password"
    digest_a = stored["resources"]["web-image"]["inputs"]["build"]["contextDigest"]
    assert re.fullmatch(r"[0-9a-f]{64}", digest_a)

    # The same checkout again, from another process: the Diff finds nothing, nothing is built.
    again = DockerImageProvider(state_dir, docker_engine, project_root=checkouts.a)
    try:
        assert again.apply(STACK, "web-image", _Inputs(inputs)) == (created["id"], created["outputs"])
        assert again.builds == [] and again.pushes == [] and again.checks[-1].action == "same"
    finally:
        again.close()

    # Checkout B on another machine, sharing the state: other modes, so another contextDigest, so an update that
    # rebuilds the same imageName; the rebuilt layers differ (COPY keeps the modes), and the push is refused.
    other = DockerImageProvider(state_dir, docker_engine, project_root=checkouts.b)
    try:
        with pytest.raises(ImageProviderError) as refused:
            other.apply(STACK, "web-image", _Inputs(inputs))
        check = other.checks[-1]
        assert check.action == "update" and check.changed == ("build",), check
        assert check.context_digest != digest_a
        assert [b.image_name for b in other.builds] == [inputs["imageName"]]
        assert other.pushes == []
    finally:
        other.remove_images()
        other.close()
    assert ACR_IMMUTABLE_TAG_MESSAGE in str(refused.value), refused.value
    assert TEST_SECRET not in str(refused.value)
    assert refused_in(registry, checkouts.namespace) == [f"{path}:{tag}"]
    assert registry.manifest_digest(path, tag) == published, "the refused push moved the tag"
    assert json.loads((state_dir / f"{STACK}.json").read_text()) == stored, "a failed update changed the state"

    # The engine's delete step when the program stops declaring the image: the state forgets it, the registry
    # keeps the tag (the provider's delete does nothing).
    gone = DockerImageProvider(state_dir, docker_engine)
    gone.end_run(STACK, set())
    assert gone.deletes == [(STACK, "web-image")] and gone.state(STACK) == {}
    assert registry.manifest_digest(path, tag) == published


def test_standin_skip_push_builds_and_reports_the_local_image_id(
        checkouts: Checkouts, registry: RegistryServer, base_image: str, docker_engine: str,  # noqa: F811
        tmp_path: Path) -> None:
    inputs = {**image_inputs(registry, checkouts.namespace, base_image, "ctx-skip-push"), "skipPush": True}
    provider = DockerImageProvider(tmp_path / "state", docker_engine, project_root=checkouts.a)
    try:
        resource_id, outputs = provider.apply(STACK, "web-image", _Inputs(inputs))
        assert resource_id == inputs["imageName"] and provider.pushes == []
        assert outputs["repoDigest"] == provider.image_ids[-1] and outputs["repoDigest"].startswith("sha256:")
    finally:
        provider.remove_images()
        provider.close()
    assert registry.list_tags(f"{checkouts.namespace}/web") == []


# --- the program never rebuilds a published tag ---------------------------------------------------------------

def test_checkout_b_sharing_a_state_builds_and_pushes_nothing(
        publisher: Publisher, checkouts: Checkouts, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = publish_a(publisher, checkouts, state_dir)

    again = publisher.run(checkouts.b, STACK, state_dir, namespace=checkouts.namespace)

    assert_nothing_done(publisher, checkouts, first, again)


@pytest.mark.parametrize("state", ["recreated-stack", "second-stack"])
def test_checkout_b_with_an_empty_state_builds_and_pushes_nothing(
        publisher: Publisher, checkouts: Checkouts, tmp_path: Path, state: str) -> None:
    first = publish_a(publisher, checkouts, tmp_path / "state-a")
    # A recreated stack: same name, its state lost. A second stack: another name and state, the same repositories.
    stack = STACK if state == "recreated-stack" else f"{STACK}-second"

    again = publisher.run(checkouts.b, stack, tmp_path / "state-empty", namespace=checkouts.namespace)

    assert_nothing_done(publisher, checkouts, first, again)


def test_a_changed_file_builds_and_pushes_once_then_nothing(
        publisher: Publisher, checkouts: Checkouts, tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = publish_a(publisher, checkouts, state_dir)
    index = checkouts.b / "app" / "www" / "index.html"
    index.write_text(index.read_text() + "<!-- changed on machine B -->\n")

    changed = publisher.run(checkouts.b, STACK, state_dir, namespace=checkouts.namespace)

    # Both images COPY www/, so each gets exactly one build and one push, under a new tag with a new ref.
    assert sorted(b.resource for b in changed.provider.builds) == [f"{n}-image" for n in IMAGES]
    assert sorted(p.resource for p in changed.provider.pushes) == [f"{n}-image" for n in IMAGES]
    assert refused_in(publisher.registry, checkouts.namespace) == []
    registry_digests = digests(publisher.registry, checkouts.namespace, changed)
    for name in IMAGES:
        old, new = first.image(name), changed.image(name)
        assert new["tag"] != old["tag"] and new["ref"] != old["ref"]
        assert new["ref"] == f"{new['repository']}@{registry_digests[name]}"
        assert publisher.tags(checkouts.namespace)[name] == sorted([old["tag"], new["tag"]])

    rerun = publisher.run(checkouts.b, STACK, state_dir, namespace=checkouts.namespace)

    assert rerun.provider.builds == [] and rerun.provider.pushes == []
    for name in IMAGES:
        assert rerun.image(name) == changed.image(name)
    assert digests(publisher.registry, checkouts.namespace, rerun) == registry_digests
