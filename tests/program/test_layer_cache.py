"""The registry layer cache under mocks: which builds get `build.cacheFrom`, and the inline-cache build arg.

Every stack file is run with the real `__main__.py`; a StackReference to the stack itself (read, not registered)
returns what `StackMocks(stacks=...)` says the stack's last deployment left. The registry checks are the
recorder of tests/conftest.py (`preflight_calls`). That BuildKit really reuses the layers is tested in
tests/e2e/test_layer_cache.py and measured in bench/cache_bench.py.
"""
from __future__ import annotations

import pytest

from buildcontext import ContextScan
from components.config.problems import ConfigError
from components.config.validate import settings_from_values
from tests.harness import (
    IMAGE, ORGANIZATION, STACK_REFERENCE, STACKS, StackMocks, StackRun, run_stack, source_exports,
)

INLINE = {"BUILDKIT_INLINE_CACHE": "1"}
PROMOTING = [s for s in STACKS if source_exports(s)]
BUILDING = [s for s in STACKS if s not in PROMOTING]


def stack_name(stack: str) -> str:
    return f"{ORGANIZATION}/acr-publish/{stack}"


def builds(run: StackRun) -> dict[str, dict]:
    """The `build` input of each docker.Image, by image name (resource `<name>-image`)."""
    return {r.name.removesuffix("-image"): r.inputs["build"] for r in run.of_type(IMAGE)}


def last_outputs(run: StackRun, **overrides: dict | None) -> dict[str, dict]:
    """`run`'s outputs as its StackReference would read them next time, with image entries replaced or dropped."""
    images = {**run.outputs["images"], **overrides}
    return {stack_name(run.stack): {"images": {k: v for k, v in images.items() if v is not None}}}


@pytest.mark.parametrize("stack", BUILDING)
def test_a_first_deployment_builds_with_the_inline_cache_arg_and_no_cache_source(preflight_calls, stack: str) -> None:
    run = run_stack(stack)
    assert builds(run), f"{stack}: no image is built"
    for name, build in builds(run).items():
        assert build["args"].items() >= INLINE.items(), f"{stack}/{name}: args {build['args']}"
        assert "cacheFrom" not in build, f"{stack}/{name}: cacheFrom on a first deployment: {build['cacheFrom']}"
    [reference] = run.reads
    assert (reference.type, reference.name) == (STACK_REFERENCE, stack_name(stack))
    assert reference.inputs["name"] == stack_name(stack)
    assert not any("registry cache" in line for line in run.infos), "a first deployment has nothing to say"


@pytest.mark.parametrize("stack", BUILDING)
def test_a_later_build_caches_from_the_image_this_stack_published_last(preflight_calls, stack: str) -> None:
    first = run_stack(stack)
    previous = {name: {**out, "imageName": f"{out['repository']}:ctx-previous"}
                for name, out in first.outputs["images"].items()}

    again = run_stack(stack, mocks=StackMocks(stacks=last_outputs(first, **previous)))

    for name, build in builds(again).items():
        assert build["cacheFrom"] == {"images": [previous[name]["imageName"]]}, f"{stack}/{name}"
        assert build["args"].items() >= INLINE.items()


@pytest.mark.parametrize("stack", PROMOTING)
def test_promoted_images_get_no_cache_source_and_no_self_reference(preflight_calls, stack: str) -> None:
    run = run_stack(stack)
    assert run.of_type(IMAGE) == [], f"{stack}: a promoting stack builds nothing"
    assert stack_name(stack) not in [r.name for r in run.reads], f"{stack}: reads its own last outputs for no build"


def test_cache_from_false_turns_the_cache_off_for_that_image_only(preflight_calls) -> None:
    first = run_stack("local")
    images = [{"name": "web", "context": "app", "target": "web", "cacheFrom": False},
              {"name": "worker", "context": "app", "target": "worker"}]
    previous = {name: {**out, "imageName": f"{out['repository']}:ctx-previous"}
                for name, out in first.outputs["images"].items()}

    run = run_stack("local", {"acr-publish:images": images},
                    mocks=StackMocks(stacks=last_outputs(first, **previous)))

    assert "cacheFrom" not in builds(run)["web"]
    assert builds(run)["web"]["args"] == INLINE, "the inline cache arg does not depend on cacheFrom"
    assert builds(run)["worker"]["cacheFrom"] == {"images": [previous["worker"]["imageName"]]}


def test_cache_from_false_on_every_image_reads_no_stack_reference(preflight_calls) -> None:
    """What docs/operations.md offers a DIY backend on the legacy layout until `pulumi state upgrade`."""
    images = [{"name": "web", "context": "app", "target": "web", "cacheFrom": False},
              {"name": "worker", "context": "app", "target": "worker", "cacheFrom": False}]

    run = run_stack("local", {"acr-publish:images": images})

    assert builds(run) and all("cacheFrom" not in build for build in builds(run).values())
    assert run.reads == [], [r.name for r in run.reads]


def test_a_missing_or_foreign_last_image_builds_without_a_cache_and_says_so(preflight_calls) -> None:
    first = run_stack("local")
    web = first.outputs["images"]["web"]
    foreign = {**web, "imageName": "registry.example.com/other/web:ctx-previous"}

    run = run_stack("local", mocks=StackMocks(stacks=last_outputs(first, web=foreign, worker=None)))

    assert "cacheFrom" not in builds(run)["web"] and "cacheFrom" not in builds(run)["worker"]
    lines = [line for line in run.infos if "building without a registry cache" in line]
    assert len(lines) == 2, run.infos
    assert any(line.startswith("web: ") and "registry.example.com/other/web:ctx-previous" in line
               and f"is not {web['repository']}:<tag>" in line for line in lines), lines
    assert any(line.startswith("worker: ") and "name no image" in line for line in lines), lines


def test_with_the_preflight_off_a_rerun_declares_the_same_build_inputs(preflight_calls) -> None:
    """No published check: every run declares every build, so a cache source read from the last outputs would be
    the unchanged image's own name on the second run, a `build` change the provider rebuilds and re-pushes."""
    off = {"acr-publish:preflight": "false"}
    first = run_stack("local", off)

    again = run_stack("local", off, mocks=StackMocks(stacks=last_outputs(first)))

    assert builds(again) == builds(first), "an unchanged image's build inputs changed between two runs"
    assert all("cacheFrom" not in build for build in builds(again).values()), builds(again)
    assert again.reads == [], "nothing reads the stack's last outputs when no build can use them"
    lines = [line for line in again.infos if "registry cache" in line]
    assert len(lines) == 1 and "preflight is false" in lines[0] and "web, worker" in lines[0], again.infos


def test_the_image_being_built_is_never_its_own_cache_source(preflight_calls) -> None:
    """The last outputs name the very tag being built (the registry lost it, so the published check rebuilds)."""
    first = run_stack("local")

    again = run_stack("local", mocks=StackMocks(stacks=last_outputs(first)))

    assert builds(again) == builds(first)
    assert all("cacheFrom" not in build for build in builds(again).values()), builds(again)
    lines = [line for line in again.infos if "is the one being built" in line]
    assert sorted(line.split(":")[0] for line in lines) == ["web", "worker"], again.infos


@pytest.mark.parametrize("outputs", [{"registry": "127.0.0.1:5000"}, {"registry": "127.0.0.1:5000", "images": None}])
def test_last_outputs_without_images_build_without_a_cache_and_say_so(preflight_calls, outputs: dict) -> None:
    run = run_stack("local", mocks=StackMocks(stacks={stack_name("local"): outputs}))

    assert all("cacheFrom" not in build for build in builds(run).values()), builds(run)
    lines = [line for line in run.infos if "have no images; building without a registry cache" in line]
    assert sorted(line.split(":")[0] for line in lines) == ["web", "worker"], run.infos


@pytest.mark.parametrize("suffix", [":", ":ctx-previous@sha256:" + "ab" * 32, "@sha256:" + "ab" * 32,
                                    ":.hidden", ":a/b", ":" + "t" * 129, "-other:ctx-previous"])
def test_only_this_repository_with_a_valid_tag_is_a_cache_source(preflight_calls, suffix: str) -> None:
    first = run_stack("local")
    web = first.outputs["images"]["web"]
    odd = {**web, "imageName": web["repository"] + suffix}

    run = run_stack("local", mocks=StackMocks(stacks=last_outputs(first, web=odd)))

    assert "cacheFrom" not in builds(run)["web"], builds(run)["web"]
    assert any(line.startswith("web: ") and f"({odd['imageName']}) is not {web['repository']}:<tag>" in line
               for line in run.infos), run.infos


def test_a_valid_tag_of_this_repository_is_a_cache_source(preflight_calls) -> None:
    """The control of the test above: the longest valid tag, with _ . - in it, is accepted."""
    first = run_stack("local")
    web = first.outputs["images"]["web"]
    tag = "_" + "a.b-c" * 25 + "x" * 2
    assert len(tag) == 128
    previous = {**web, "imageName": f"{web['repository']}:{tag}"}

    run = run_stack("local", mocks=StackMocks(stacks=last_outputs(first, web=previous)))

    assert builds(run)["web"]["cacheFrom"] == {"images": [previous["imageName"]]}


def test_no_organization_builds_without_a_cache_and_says_so_once(preflight_calls) -> None:
    """pulumi.get_organization() returning None: Pulumi documents no default for it, so no name is made up."""
    run = run_stack("local", organization=None)

    assert builds(run) and all("cacheFrom" not in build for build in builds(run).values()), builds(run)
    assert run.reads == [], [r.name for r in run.reads]
    lines = [line for line in run.infos if "registry cache" in line]
    assert len(lines) == 1 and "get_organization() returned no organization" in lines[0], run.infos


def test_a_published_image_declares_no_build_and_reads_no_stack_reference(preflight_calls) -> None:
    first = run_stack("local")
    for out in first.outputs["images"].values():
        preflight_calls.published[(out["repository"].split("/", 1)[1], out["tag"])] = "sha256:" + "cd" * 32

    run = run_stack("local", mocks=StackMocks(stacks=last_outputs(first)))

    assert run.of_type(IMAGE) == [] and run.reads == []


def test_the_inline_cache_arg_is_part_of_the_tag(preflight_calls, remote_calls) -> None:
    base = "sha256:" + "ba" * 32
    remote_calls.digests["busybox:1.36.1-musl"] = base
    images = [{"name": "web", "context": "app", "target": "web", "buildArgs": {"APP_ENV": "local"}}]
    run = run_stack("local", {"acr-publish:images": images})
    settings = settings_from_values("local", {
        "registry": {"edition": "local", "namespace": "demo"}, "images": images,
    }, region=None, has_password=False)
    [web] = settings.images
    assert web.build_args == {"APP_ENV": "local", **INLINE}
    without = {k: v for k, v in web.build_args.items() if k not in INLINE}
    context, dockerfile = settings.path(web.context), settings.path(web.dockerfile)
    with ContextScan(context, dockerfile) as scan:
        remote = {"FROM busybox:1.36.1-musl": base}
        tag_with = scan.report(web.build_args, web.target, web.platform, remote=remote).tag
        tag_without = scan.report(without, web.target, web.platform, remote=remote).tag
    assert run.outputs["images"]["web"]["tag"] == tag_with != tag_without


@pytest.mark.parametrize(("item", "message"), [
    ({"cacheFrom": "sometimes"}, "acr-publish:images[0].cacheFrom 'sometimes' is invalid: it must be true or false"),
    ({"buildArgs": {"BUILDKIT_INLINE_CACHE": "0"}},
     "acr-publish:images[0].buildArgs.BUILDKIT_INLINE_CACHE is set by acr-publish"),
])
def test_cache_settings_are_validated(item: dict, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_values("local", {
            "registry": {"edition": "local", "namespace": "demo"},
            "images": [{"name": "web", "context": "app", **item}],
        }, region=None, has_password=False)
    assert message in str(error.value)
