"""End to end: an image for linux/amd64 and linux/arm64 under one tag, each platform built by a real Docker engine.

The program (the real `__main__.py`, under mocks) declares one `docker.Image` per platform, carried out by the
pulumi-docker stand-in (tests/e2e/docker_harness.py) on the engine of the image's `docker.Provider`: linux/arm64 on a
second dockerd (tests/e2e/second_engine.py: its own socket, data and exec roots, no bridge, in a network namespace
holding only loopback, so the one build for a platform this machine cannot run natively can send nothing off the
machine), linux/amd64 on the local engine. The image index is written by the real `ImageIndex` provider, serialized
by the SDK and served by a `python -m pulumi.dynamic` process as the engine serves it (tests/e2e/dynamic_engine.py).
The Dockerfile needs no emulation: FROM scratch, COPY (a static busybox, so the amd64 image has a command to run);
or FROM a two-platform base index by tag on a second loopback registry (the busybox root imported once per platform,
each with a layer of its own), which each platform's build takes its own manifest of.
With the real Pulumi engine, a stack exporting the index promotes it to a `local-release`-shaped stack.
"""
from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Callable, Iterator

import docker
import pytest
import requests

from tests.e2e.base_image import base_image  # noqa: F401
from tests.e2e.dynamic_engine import DynamicEngine, DynamicProviderProcess
from tests.e2e.engine import Workspace, changes, pulumi_engine, workspace  # noqa: F401
from tests.e2e.publishing import NAMESPACE, USER, Publisher, copy_project, publisher  # noqa: F401
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401
from registryclient import OCI_INDEX, RegistryClient
from scripts.local_base import root_filesystem_tar
from tests.e2e import second_engine
from tests.harness import IMAGE, IMAGE_INDEX, PROJECT_ROOT, TEST_SECRET, TEST_TOKEN

PLATFORMS = ["linux/amd64", "linux/arm64"]
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
COPY hello.txt /hello.txt
ENTRYPOINT ["/bin/busybox", "cat", "/hello.txt"]
"""


@pytest.fixture(scope="module")
def registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:
    return registry_factory(username=USER, password=TEST_SECRET, tag_immutability=True)


@pytest.fixture(scope="module")
def base_registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:
    """Where the bases live: another host than the stack's, read anonymously; its access log counts requests."""
    return registry_factory(auth="none", access_log=True)


@pytest.fixture(scope="module")
def arm_engine(registry: RegistryServer, base_registry: RegistryServer,
               docker_engine: str) -> Iterator[second_engine.SecondEngine]:
    ports = [int(r.server.rsplit(":", 1)[1]) for r in (registry, base_registry)]
    engine = second_engine.start(ports, PROJECT_ROOT)
    yield engine
    engine.stop()


def write_context(project: Path, text: str) -> None:
    context = project / "multi"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(DOCKERFILE)
    shutil.copy2("/bin/busybox", context / "busybox")
    (context / "hello.txt").write_text(text)


def multi_config(builder: str | None) -> dict:
    config = {"acr-publish:images": [{"name": "multi", "context": "multi", "platforms": PLATFORMS}]}
    if builder is not None:
        config["acr-publish:builders"] = {"linux/arm64": builder}
    return config


def read_index(registry: RegistryServer, reference: str, image: str = "multi") -> tuple[str, dict]:
    response = requests.get(f"{registry.url}/v2/{NAMESPACE}/{image}/manifests/{reference}",
                            auth=(registry.username, registry.password), timeout=30,
                            headers={"Accept": f"{DOCKER_LIST}, application/vnd.oci.image.index.v1+json"})
    assert response.status_code == 200, response.text
    return response.headers["Content-Type"], response.json()


def run_amd64(docker_cli: str, ref: str) -> str:
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
    try:
        repository, digest = ref.split("@")
        client.images.pull(repository, tag=digest, platform="linux/amd64",
                           auth_config={"username": USER, "password": TEST_SECRET})
        return subprocess.run([docker_cli, "run", "--rm", "--platform", "linux/amd64", ref], capture_output=True,
                              text=True, timeout=120, check=True).stdout
    finally:
        subprocess.run([docker_cli, "image", "rm", "-f", ref], capture_output=True, timeout=60)
        client.close()


@pytest.fixture(scope="module")
def indexes(tmp_path_factory) -> Iterator[Callable[[Path], DynamicEngine]]:
    processes: list[DynamicProviderProcess] = []

    def start(project: Path) -> DynamicEngine:
        process = DynamicProviderProcess(project).start()
        processes.append(process)
        return DynamicEngine(process)

    yield start
    for process in processes:
        process.stop()
        process.assert_printed_no_secret([TEST_SECRET, TEST_TOKEN])


def test_two_platforms_one_index_native_builder_rerun_and_change(
        publisher: Publisher, registry: RegistryServer, arm_engine, indexes, docker_engine: str, tmp_path: Path):
    # The index's provider process imports the project's modules (buildcontext/ included) from its own directory, as
    # the engine runs it: copy_project copies them.
    project = copy_project(tmp_path / "project")
    write_context(project, "hello from both platforms\n")
    state = tmp_path / "state"
    dynamic = indexes(project)

    def up():
        return publisher.run(project, "multi", state, config=multi_config(arm_engine.host), index_hook=dynamic)

    first = up()
    out = first.image("multi")
    builds = {b.platform: b for b in first.provider.builds if b.image_name.startswith(out["repository"])}
    assert sorted(builds) == PLATFORMS
    assert builds["linux/arm64"].host == arm_engine.host and builds["linux/amd64"].host is None
    # The index read back: a Docker manifest list of both platforms, at the digest the stack exports.
    media_type, index = read_index(registry, out["tag"])
    assert media_type == DOCKER_LIST
    digest = out["ref"].split("@", 1)[1]
    assert registry.manifest_digest(f"{NAMESPACE}/multi", out["tag"]) == digest
    listed = {(m["platform"]["os"] + "/" + m["platform"]["architecture"]): m["digest"] for m in index["manifests"]}
    assert listed == {p: out["platforms"][p]["ref"].split("@", 1)[1] for p in PLATFORMS}
    for platform in PLATFORMS:
        child_tag = out["platforms"][platform]["imageName"].rsplit(":", 1)[1]
        assert registry.manifest_digest(f"{NAMESPACE}/multi", child_tag) == listed[platform]
    # The arm64 build happened on the builder's engine, and only there.
    arm_name = out["platforms"]["linux/arm64"]["imageName"]
    inspected = arm_engine.docker("image", "inspect", "--format", "{{.Architecture}}", arm_name)
    assert inspected.returncode == 0 and inspected.stdout.strip() == "arm64", inspected.stderr
    assert subprocess.run([docker_engine, "image", "inspect", arm_name], capture_output=True,
                          timeout=60).returncode != 0, "the local engine must not hold the arm64 build"
    assert arm_engine.docker("image", "inspect", out["platforms"]["linux/amd64"]["imageName"]).returncode != 0
    assert arm_engine.network_links() == ["lo"], "the builder's namespace holds loopback only"
    assert run_amd64(docker_engine, out["ref"]) == "hello from both platforms\n"

    # A rerun: nothing built, pushed or written; the same ref.
    second = up()
    assert second.provider.builds == [] and second.provider.pushes == []
    assert second.stack.of_type(IMAGE) == [] and second.stack.of_type(IMAGE_INDEX) == []
    assert second.image("multi")["ref"] == out["ref"]

    # One changed file: both platforms rebuilt (on their engines), a new index under a new tag.
    (project / "multi" / "hello.txt").write_text("hello again\n")
    third = up()
    rebuilt = {b.platform: b.host for b in third.provider.builds}
    assert rebuilt == {"linux/amd64": None, "linux/arm64": arm_engine.host}
    changed = third.image("multi")
    assert changed["tag"] != out["tag"] and changed["ref"] != out["ref"]
    _, index = read_index(registry, changed["tag"])
    assert {m["digest"] for m in index["manifests"]} == {changed["platforms"][p]["ref"].split("@", 1)[1]
                                                          for p in PLATFORMS}
    assert run_amd64(docker_engine, changed["ref"]) == "hello again\n"
    assert registry.manifest_digest(f"{NAMESPACE}/multi", out["tag"]) == digest, "the old index is untouched"


def test_the_engine_promotes_the_index_with_its_children(
        workspace: Workspace, publisher: Publisher, registry: RegistryServer, arm_engine, indexes,
        docker_engine: str):
    # Published through the stand-in from the engine's own checkout, then `pulumi up` of that stack by the real
    # engine finds the index published and exports it; a local-release-shaped stack promotes it.
    write_context(workspace.project, "promoted on both platforms\n")
    published = publisher.run(workspace.project, "multi-src", workspace.root / "stand-in",
                              config=multi_config(arm_engine.host), index_hook=indexes(workspace.project))
    source_ref = published.image("multi")["ref"]
    source = workspace.new_stack({
        "acr-publish:registry": {"edition": "local", "server": registry.server, "namespace": NAMESPACE,
                                 "username": USER},
        "acr-publish:images": [{"name": "multi", "context": "multi", "platforms": PLATFORMS}],
    })
    workspace.set_secret(source, "acr-publish:registryPassword", registry.password)
    outcome, summary = workspace.up(source)
    outcome.check()
    assert IMAGE_INDEX not in outcome.stdout and "docker:index/image:Image" not in outcome.stdout
    exported = workspace.outputs(source)["images"]["multi"]
    assert exported["ref"] == source_ref and sorted(exported["platforms"]) == PLATFORMS

    target = workspace.new_stack({
        "acr-publish:registry": {"edition": "local", "server": registry.server, "namespace": "release",
                                 "username": USER},
        "acr-publish:promoteFrom": source,
    })
    workspace.set_secret(target, "acr-publish:registryPassword", registry.password)
    outcome, summary = workspace.up(target)
    outcome.check()
    promoted = workspace.outputs(target)["images"]["multi"]
    digest = source_ref.split("@", 1)[1]
    assert promoted["ref"] == f"{registry.server}/release/multi@{digest}", "promotion keeps the index digest"
    assert registry.manifest_digest("release/multi", exported["tag"]) == digest
    for platform in PLATFORMS:
        child = exported["platforms"][platform]["ref"].split("@", 1)[1]
        assert registry.manifest_digest("release/multi", child) == child, f"the {platform} child was copied"
    outcome, summary = workspace.up(target)
    outcome.check()
    assert changes(summary["resourceChanges"]) == {}, summary
    assert json.dumps(workspace.outputs(target)).count(TEST_SECRET) == 0


def import_base(docker_cli: str, platform: str, marker: str) -> str:
    """The busybox root file system plus /marker holding `marker`, imported for `platform` (`docker import
    --platform` needs no registry); its local name. Each marker gives the base a layer of its own."""
    buffer = io.BytesIO(root_filesystem_tar())
    with tarfile.open(fileobj=buffer, mode="a") as tar:
        data = marker.encode()
        info = tarfile.TarInfo("marker")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    name = f"acr-publish-e2e/base-{marker}:{secrets.token_hex(4)}"
    subprocess.run([docker_cli, "import", "--platform", platform, "-", name], input=buffer.getvalue(),
                   capture_output=True, check=True, timeout=120)
    return name


def layers(inspect: Callable[..., subprocess.CompletedProcess], name: str) -> list[str]:
    """The layer diff IDs of the image `name` in the engine `inspect` asks."""
    found = inspect("image", "inspect", "--format", "{{json .RootFS.Layers}}", name)
    assert found.returncode == 0, found.stderr
    return json.loads(found.stdout)


class BaseIndex:
    """A two-platform base index `<base registry>/base/multi:1`, its arm64 manifest movable."""

    REPOSITORY, TAG = "base/multi", "1"

    def __init__(self, registry: RegistryServer, docker_cli: str):
        self.registry, self.docker_cli = registry, docker_cli
        self.ref = f"{registry.server}/{self.REPOSITORY}:{self.TAG}"
        self.digests: dict[str, str] = {}
        self.layer: dict[str, str] = {}
        self.local: list[str] = []

    def local_docker(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.docker_cli, *args], capture_output=True, text=True, timeout=120)

    def put(self, platform: str, marker: str) -> None:
        """Push a base for `platform` (its own layer) and write the index over every platform's manifest."""
        local = import_base(self.docker_cli, platform, marker)
        self.local.append(local)
        [self.layer[platform]] = layers(self.local_docker, local)
        target = f"{self.registry.server}/{self.REPOSITORY}:{marker}"
        for step in (["tag", local, target], ["push", "-q", target], ["image", "rm", target]):
            done = self.local_docker(*step)
            assert done.returncode == 0, done.stderr
        self.digests[platform] = self.registry.manifest_digest(self.REPOSITORY, marker)
        with RegistryClient(self.registry.server, allow_plain_http=True) as client:
            entries = []
            for name, digest in self.digests.items():
                manifest = client.get_manifest(self.REPOSITORY, digest)
                os_name, arch = name.split("/")
                entries.append({"mediaType": manifest.media_type, "digest": digest, "size": len(manifest.content),
                                "platform": {"os": os_name, "architecture": arch}})
            client.put_manifest(self.REPOSITORY, self.TAG, OCI_INDEX, json.dumps(
                {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode())

    def tag_requests(self) -> int:
        """Manifest requests for the index's tag (builds pull by digest, so only plans ask for the tag)."""
        path = f"/v2/{self.REPOSITORY}/manifests/{self.TAG} "
        return sum(1 for line in self.registry.log_text().splitlines() if path in line)

    def remove(self) -> None:
        for name in self.local:
            self.local_docker("image", "rm", "-f", name)


def test_each_platform_builds_from_its_own_manifest_of_a_base_by_tag(
        publisher: Publisher, registry: RegistryServer, base_registry: RegistryServer, arm_engine, indexes,
        docker_engine: str, tmp_path: Path, monkeypatch):
    """`FROM <base>:<tag>` with two platforms: one request for the base's index serves both plans; each platform's
    build reads its own staged Dockerfile, pinned to its platform's manifest, and holds that manifest's layer, on its
    own engine; moving the arm64 manifest rebuilds arm64 only, under a new index tag, and explain names the move."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    base = BaseIndex(base_registry, docker_engine)
    try:
        base.put("linux/amd64", "amd64")
        base.put("linux/arm64", "arm64")
        project = copy_project(tmp_path / "project")
        (project / "based").mkdir()
        (project / "based" / "Dockerfile").write_text(f"FROM {base.ref}\nCOPY hello.txt /hello.txt\n")
        (project / "based" / "hello.txt").write_text("hello\n")
        images = [{"name": "based", "context": "based", "platforms": PLATFORMS}]
        (project / "stacks" / "Pulumi.based.yaml").write_text(json.dumps({"config": {
            "acr-publish:registry": {"edition": "local", "namespace": NAMESPACE}, "acr-publish:images": images}}))
        config = {"acr-publish:images": images, "acr-publish:builders": {"linux/arm64": arm_engine.host}}
        state, dynamic = tmp_path / "state", indexes(project)
        engines = {"linux/amd64": base.local_docker, "linux/arm64": arm_engine.docker}

        def up(expected: list[str]) -> tuple[dict, dict]:
            asked = base.tag_requests()
            run = publisher.run(project, "based", state, config=config, index_hook=dynamic)
            assert base.tag_requests() == asked + 1, "one request for the index, for both platforms"
            out = run.image("based")
            builds = {b.platform: b for b in run.provider.builds if b.image_name.startswith(out["repository"])}
            assert sorted(builds) == expected
            for platform, build in builds.items():
                assert build.host == (arm_engine.host if platform == "linux/arm64" else None)
                assert build.dockerfile.read_text() == \
                    f"FROM {base.ref}@{base.digests[platform]}\nCOPY hello.txt /hello.txt\n", platform
                assert layers(engines[platform], build.image_name)[0] == base.layer[platform], platform
            return out, builds

        first, builds = up(PLATFORMS)
        assert builds["linux/amd64"].dockerfile != builds["linux/arm64"].dockerfile
        old_arm64 = base.digests["linux/arm64"]
        base.put("linux/arm64", "arm64-moved")  # the base's index now lists another arm64 manifest
        second, _ = up(["linux/arm64"])
        tags = {p: {run["platforms"][p]["imageName"] for run in (first, second)} for p in PLATFORMS}
        assert len(tags["linux/amd64"]) == 1 and len(tags["linux/arm64"]) == 2, tags
        assert second["tag"] != first["tag"]
        _, index = read_index(registry, second["tag"], "based")
        assert {m["digest"] for m in index["manifests"]} == {second["platforms"][p]["ref"].split("@", 1)[1]
                                                              for p in PLATFORMS}

        def explain(platform: str) -> str:
            proc = subprocess.run([sys.executable, "-m", "cli.explain", "--stack", "based", "--image", "based",
                                   "--platform", platform], cwd=project, capture_output=True, text=True,
                                  env=os.environ.copy(), timeout=120)
            assert proc.returncode == 0, proc.stderr
            return proc.stdout

        moved = explain("linux/arm64")
        assert f"  FROM {base.ref}: {old_arm64} -> {base.digests['linux/arm64']}" in moved, moved
        assert f"FROM {base.ref}:" not in explain("linux/amd64")
    finally:
        base.remove()
