"""End to end: `build.cacheFrom` through the pulumi-docker stand-in reuses a pushed image's layers.

A sample with a slow dependency stage and a small app layer (tests/e2e/layer_cache.py) is built with
`BUILDKIT_INLINE_CACHE=1` and pushed to a real registry; the engine is then emptied of the sample's images and
build cache (by id: other engineers share the engine), an app file changes, and the next build gets the pushed
image as `cacheFrom`, as the program hands it the image its stack published last. BuildKit must report the
dependency step CACHED, and must not without `cacheFrom` on the same emptied engine (the control that shows the
emptying works). The last test runs the real program twice: the second build gets the image its stack published
first as `cacheFrom`, pulled with the stack's credentials.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.e2e.base_image import base_image  # noqa: F401  (pytest fixtures are used by name)
from tests.e2e.docker_harness import DockerImageProvider, ImageProviderError, PullRecord, _Inputs
from tests.e2e.layer_cache import (
    DEP_STEP, all_cache_records, cache_ids, empty_engine, new_token, sample_records, step_cached, write_sample,
)
from tests.e2e.publishing import IMAGES, Publisher, copy_project, publisher  # noqa: F401
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401
from tests.harness import TEST_SECRET

STACK = "e2e-layer-cache"
USER = "pusher"


@pytest.fixture(scope="module")
def registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:  # noqa: F811
    return registry_factory(username=USER, password=TEST_SECRET)


class Sample:
    """The sample project and a stand-in whose images and cache records are removed at the end."""

    def __init__(self, root: Path, registry: RegistryServer, base: str, docker_cli: str):
        self.token = new_token()
        self.before = cache_ids(docker_cli)
        self.root, self.registry, self.base, self.docker_cli = root, registry, base, docker_cli
        write_sample(root / "sample", self.token, dep_seconds=2)
        self.repository = f"{registry.server}/cache/{self.token}"
        self.provider = DockerImageProvider(root / "state", docker_cli, project_root=root)

    def inputs(self, tag: str, cache_from: list[str] | None = None) -> dict:
        build = {"context": "sample", "dockerfile": "sample/Dockerfile", "platform": "linux/amd64",
                 "args": {"BASE_IMAGE": self.base, "BUILDKIT_INLINE_CACHE": "1"},
                 "builderVersion": "BuilderBuildKit"}
        if cache_from is not None:
            build["cacheFrom"] = {"images": cache_from}
        return {"imageName": f"{self.repository}:{tag}", "build": build, "skipPush": False,
                "registry": {"server": self.registry.server, "username": USER, "password": TEST_SECRET}}

    def up(self, tag: str, cache_from: list[str] | None = None) -> str:
        """One update of the image; returns the build's BuildKit log."""
        self.provider.apply(STACK, "app-image", _Inputs(self.inputs(tag, cache_from)))
        return self.provider.builds[-1].log

    def empty(self) -> None:
        empty_engine(self.docker_cli, self.token, sorted(self.provider.image_names) + self.provider.image_ids
                     + [p.image for p in self.provider.pulls], self.before)
        assert sample_records(self.docker_cli, self.token, self.before) == []


@pytest.fixture
def sample(tmp_path: Path, registry: RegistryServer, base_image: str, docker_engine: str  # noqa: F811
           ) -> Iterator[Sample]:
    made = Sample(tmp_path, registry, base_image, docker_engine)
    yield made
    made.empty()
    made.provider.close()


def test_second_build_reuses_the_cached_dependency_layer_on_an_emptied_engine(sample: Sample) -> None:
    first = sample.up("v1")
    assert step_cached(first, DEP_STEP) is False, first
    sample.empty()
    (sample.root / "sample" / "app" / "main.txt").write_text("version 2\n")

    without = sample.up("v2-without-cache")
    assert step_cached(without, DEP_STEP) is False, "the emptied engine still had the dependency layer"
    sample.empty()

    cached = sample.up("v2", cache_from=[f"{sample.repository}:v1"])

    assert sample.provider.pulls == [PullRecord(f"{sample.repository}:v1", True, "linux/amd64")]
    assert f"importing cache manifest from {sample.repository}:v1" in cached, cached
    assert step_cached(cached, DEP_STEP) is True, cached
    assert step_cached(cached, "COPY app/") is False, "the changed app file must be copied again"


def test_emptying_removes_the_records_rebuilt_from_an_inline_cache(sample: Sample) -> None:
    """A build with cacheFrom makes records described by the cache image's history, without the token
    (`COPY deps/requirements.txt ... # buildkit`): the emptying must find and remove them too."""
    sample.up("v1")
    sample.empty()
    (sample.root / "sample" / "app" / "main.txt").write_text("version 2\n")
    before_build = cache_ids(sample.docker_cli)

    sample.up("v2", cache_from=[f"{sample.repository}:v1"])
    made = [r for r in all_cache_records(sample.docker_cli) if r["ID"] not in before_build]
    from_history = [r["ID"] for r in made if r.get("Description", "").endswith("# buildkit")
                    and sample.token not in r["Description"]]
    assert from_history, f"the cached build made no record without the token: {made}"
    sample.empty()

    left = cache_ids(sample.docker_cli)
    assert [i for i in from_history if i in left] == [], "records rebuilt from the inline cache survived"


def test_a_failed_cache_pull_is_not_fatal(sample: Sample) -> None:
    missing = f"{sample.repository}:never-pushed"

    log = sample.up("v1", cache_from=[missing])

    assert [(p.image, p.ok) for p in sample.provider.pulls] == [(missing, False)]
    assert any("pulling cache image" in w and missing in w for w in sample.provider.warnings)
    assert TEST_SECRET not in " ".join(sample.provider.warnings)
    assert step_cached(log, DEP_STEP) is False
    assert sample.provider.pushes and sample.provider.pushes[-1].image_name == f"{sample.repository}:v1"


def test_with_only_a_username_the_cache_pull_is_skipped(sample: Sample) -> None:
    """The provider skips the cache pull (with a warning) when only one of username and password is set, where its
    push falls back to the host's credentials file; this engine's file has no login for the registry."""
    sample.up("v1")
    sample.empty()
    inputs = sample.inputs("v2", cache_from=[f"{sample.repository}:v1"])
    del inputs["registry"]["password"]

    with pytest.raises(ImageProviderError):  # the push, with the host's (empty) credentials, is refused
        sample.provider.apply(STACK, "app-image", _Inputs(inputs))

    [pull] = sample.provider.pulls
    assert (pull.image, pull.ok, pull.platform) == (f"{sample.repository}:v1", False, "linux/amd64")
    assert pull.reason == "skipped: password was not set, although username was", pull.reason
    assert any(f"not pulling cache image {sample.repository}:v1" in w for w in sample.provider.warnings)
    assert subprocess.run([sample.docker_cli, "image", "inspect", f"{sample.repository}:v1"],
                          capture_output=True, timeout=60).returncode != 0, "the cache image was pulled"
    assert step_cached(sample.provider.builds[-1].log, DEP_STEP) is False


def test_the_program_builds_with_the_image_its_stack_published_last(publisher: Publisher, tmp_path: Path) -> None:
    project, state, namespace = copy_project(tmp_path / "project"), tmp_path / "state", new_token()
    first = publisher.run(project, "e2e-cache", state, namespace=namespace)
    assert [b.cache_from for b in first.provider.builds] == [(), ()], "a first deployment has no cache source"
    index = project / "app" / "www" / "index.html"
    index.write_text(index.read_text() + "<!-- a new version -->\n")

    second = publisher.run(project, "e2e-cache", state, namespace=namespace)

    built = {b.resource: b for b in second.provider.builds}
    assert sorted(built) == [f"{n}-image" for n in IMAGES]
    for name in IMAGES:
        last = first.image(name)["imageName"]
        assert built[f"{name}-image"].cache_from == (last,)
        assert f"importing cache manifest from {last}" in built[f"{name}-image"].log
    # The registry wants a login; the engine's own config has none: the pulls used the stack's credentials.
    assert sorted((p.image, p.ok) for p in second.provider.pulls) == sorted(
        (first.image(n)["imageName"], True) for n in IMAGES)


def test_with_the_preflight_off_an_unchanged_stack_is_built_and_pushed_once(publisher: Publisher,
                                                                             tmp_path: Path) -> None:
    """No published check: each run declares every build; with nothing changed only the first may build and push
    (a second push of the same tag is what ACR's tag immutability refuses)."""
    project, state, namespace = copy_project(tmp_path / "project"), tmp_path / "state", new_token()
    off = {"acr-publish:preflight": "false"}

    runs = [publisher.run(project, "e2e-cache-no-preflight", state, namespace=namespace, config=off)
            for _ in range(3)]

    assert [sorted(b.resource for b in r.provider.builds) for r in runs] == [[f"{n}-image" for n in IMAGES], [], []]
    assert [len(r.provider.pushes) for r in runs] == [len(IMAGES), 0, 0]
    assert all(b.cache_from == () for r in runs for b in r.provider.builds)
    assert [r.provider.pulls for r in runs] == [[], [], []]
    assert runs[2].stack.outputs["images"] == runs[0].stack.outputs["images"]
