"""The program's straight sequence under mocks: login -> preflight -> content tags -> published check -> declare.

The registry checks are the recorder of tests/conftest.py (`preflight_calls`), scripted per test: under mocks no
registry can answer. What the real checks do against real registries is tested in tests/e2e (test_preflight.py,
test_registry_client.py, test_hostile_servers.py).
"""
from __future__ import annotations

import pytest

from registryclient import RegistryError
from tests.harness import IMAGE, TEST_SECRET, TEST_TOKEN, run_stack

EDITION_STACKS = {"local": "local", "enterprise": "dev", "personal": "personal-example"}
FAILURE_KINDS = ("unreachable", "tls", "auth", "forbidden", "config", "protocol")
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("edition", EDITION_STACKS)
@pytest.mark.parametrize("kind", FAILURE_KINDS)
@pytest.mark.parametrize("check", ["preflight", "published-tag check"])
def test_a_failing_check_declares_no_resource_at_all(preflight_calls, edition: str, kind: str, check: str) -> None:
    failure = RegistryError(f"{check} for 'x' failed: a {kind} problem", kind)
    if check == "preflight":
        preflight_calls.fail = failure
    else:
        preflight_calls.published_fail = failure
    records: list = []
    with pytest.raises(RegistryError, match=f"{check} for 'x' failed: a {kind} problem"):
        run_stack(EDITION_STACKS[edition], records=records)
    assert records == [], f"{edition}/{kind}: declared {[r.urn for r in records]} although the {check} failed"
    if check == "preflight":
        assert preflight_calls.published_calls == [], "no published check after a failed preflight"


@pytest.mark.parametrize("kind", [k for k in FAILURE_KINDS if k != "unreachable"])
def test_a_failing_preflight_fails_the_preview_too(preflight_calls, kind: str) -> None:
    preflight_calls.fail = RegistryError(f"a {kind} problem", kind)
    records: list = []
    with pytest.raises(RegistryError):
        run_stack("dev", preview=True, records=records)
    assert records == []


def test_an_unreachable_registry_in_preview_warns_and_shows_builds(preflight_calls) -> None:
    preflight_calls.fail = RegistryError("cannot resolve host", "unreachable")
    run = run_stack("dev", preview=True, stack_name="prod-eu")  # the shipped prod promotes; this one builds
    assert len(run.of_type(IMAGE)) == 2
    assert any("cannot say which content tags are already published" in w for w in run.warnings), run.warnings
    assert preflight_calls.published_calls == [], "an unreachable registry is not asked a second time"


def test_a_registry_that_becomes_unreachable_for_the_published_check_only_warns_in_preview(preflight_calls) -> None:
    preflight_calls.published_fail = RegistryError("timed out", "unreachable")
    run = run_stack("dev", preview=True)
    assert len(run.of_type(IMAGE)) == 2
    assert any("cannot say which content tags are already published" in w for w in run.warnings), run.warnings
    with pytest.raises(RegistryError, match="timed out"):
        run_stack("dev")


@pytest.mark.parametrize("edition", EDITION_STACKS)
def test_the_published_check_asks_each_image_tag_with_the_stack_credentials(preflight_calls, edition: str) -> None:
    stack = EDITION_STACKS[edition]
    run = run_stack(stack)
    [(target, asked)] = preflight_calls.published_calls
    [check] = preflight_calls
    assert target == check.login
    assert target.password == {"local": None, "enterprise": TEST_TOKEN, "personal": TEST_SECRET}[edition]
    for name, out in run.outputs["images"].items():
        repository_path = out["repository"].split("/", 1)[1]
        assert asked[name] == (repository_path, out["tag"]), name


@pytest.mark.parametrize("edition", EDITION_STACKS)
def test_a_published_tag_is_not_built_and_ref_is_the_registry_digest(preflight_calls, edition: str) -> None:
    stack = EDITION_STACKS[edition]
    first = run_stack(stack)
    web = first.outputs["images"]["web"]
    preflight_calls.published = {(web["repository"].split("/", 1)[1], web["tag"]): DIGEST}
    run = run_stack(stack)
    out = run.outputs["images"]["web"]
    assert out["ref"] == f"{web['repository']}@{DIGEST}"
    assert out["imageName"] == f"{web['repository']}:{web['tag']}" and out["tag"] == web["tag"]
    assert not [r.urn for r in run.of_type(IMAGE) if r.name == "web-image"], "a published tag must not be built"
    assert f"web: {web['tag']} is already in {web['repository']} ({DIGEST}); nothing to build" in run.infos
    others = [name for name in run.outputs["images"] if name != "web"]
    assert {r.name for r in run.of_type(IMAGE)} == {f"{n}-image" for n in others}, "unpublished images still build"
    # The repositories are still declared: the stack owns them whether or not it builds into them.
    assert {r.name for r in first.resources if r.type != IMAGE} == {r.name for r in run.resources if r.type != IMAGE}


def test_preflight_false_makes_no_registry_call_and_declares_builds(preflight_calls) -> None:
    preflight_calls.published = {("demo/web", "anything"): DIGEST}
    run = run_stack("local", {"acr-publish:preflight": "false"})
    assert preflight_calls == [] and preflight_calls.published_calls == []
    assert len(run.of_type(IMAGE)) == 2


def test_the_login_happens_before_anything_is_declared_for_enterprise(preflight_calls) -> None:
    """The Enterprise login is the synchronous instances invoke: its token reaches the preflight, and the build's
    registry password is the same token as a secret."""
    run = run_stack("dev")
    assert preflight_calls[0].login.password == TEST_TOKEN
    for img in run.of_type(IMAGE):
        assert "registry.password" in img.secret_inputs and img.inputs["registry"]["password"] == TEST_TOKEN
