"""The whole acr-publish-guardrails pack over every stack in stacks/, run by the real __main__.py under the
Pulumi mocks: the shipped stacks pass, deliberately bad variants fail with the expected policy names.

Two paths are checked for each run: the pure rules (policies/rules.py, with the secret input paths the mocks saw,
which is where the registry-password rule can judge) and the pack's real pulumi_policy handlers
(policies/__main__.py) fed the same resources through the policy SDK's own argument objects.
"""

from __future__ import annotations

import copy
import runpy

import pytest
import yaml
from pulumi_policy import PolicyResourceOptions, ResourceValidationArgs
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import unknown_checking_proxy

from policies import rules
from tests.harness import PROJECT_ROOT, STACKS, StackRun, run_stack

ROOT = PROJECT_ROOT


def as_inputs(run: StackRun) -> list[rules.ResourceInput]:
    return [
        rules.ResourceInput(type=r.type, name=r.name, stack=rules.stack_from_urn(r.urn), props=r.inputs,
                            protect=r.protect, secret_paths=frozenset(r.secret_inputs))
        for r in run.resources
    ]


@pytest.fixture(scope="module")
def pack_policies() -> list:
    return runpy.run_path(str(ROOT / "policies" / "__main__.py"), run_name="acr_publish_policies")["POLICIES"]


def through_the_sdk(policies: list, run: StackRun) -> set[tuple[str, str]]:
    """(policy, resource name) for every violation the pack's real handlers report."""
    found: set[tuple[str, str]] = set()
    for r in run.resources:
        opts = PolicyResourceOptions(r.protect, [], None, [], None, [], r.parent)
        args = ResourceValidationArgs(r.type, unknown_checking_proxy(copy.deepcopy(r.inputs)), r.urn, r.name,
                                      opts, None, None)
        for policy in policies:
            try:
                policy.validate(args, lambda message, urn=None, p=policy.name, n=r.name: found.add((p, n)))
            except _NotApplicableError:
                pass  # the password rule, judged from the mocks' secret paths instead
    return found


def mandatory(violations: list[rules.Violation]) -> list[rules.Violation]:
    return [v for v in violations if v.enforcement == "mandatory"]


def registry_config(stack: str, **changes) -> dict:
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return {**doc["config"]["acr-publish:registry"], **changes}


def images_config(stack: str, **changes) -> list[dict]:
    doc = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return [{**image, **changes} for image in doc["config"]["acr-publish:images"]]


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stack_passes_the_whole_pack(stack, preflight_calls, pack_policies):
    run = run_stack(stack)
    violations = rules.evaluate(as_inputs(run))
    assert violations == [], "\n".join(f"{v.policy} on {v.resource}: {v.message}" for v in violations)
    assert through_the_sdk(pack_policies, run) == set()


PROMOTING = [s for s in STACKS if "acr-publish:promoteFrom" in
             yaml.safe_load((ROOT / "stacks" / f"Pulumi.{s}.yaml").read_text())["config"]]
BUILDING = [s for s in STACKS if s not in PROMOTING]


@pytest.mark.parametrize("stack", STACKS)
def test_every_image_with_a_registry_password_gets_it_as_a_secret(stack, preflight_calls):
    run = run_stack(stack)
    edition = registry_config(stack)["edition"]
    with_password = [i for i in run.of_type(rules.DOCKER_IMAGE) if i.inputs.get("registry", {}).get("password")]
    if edition != "local" and stack not in PROMOTING:  # enterprise pushes with a temporary token, personal with the configured password
        assert with_password and len(with_password) == len(run.of_type(rules.DOCKER_IMAGE)), stack
    for image in with_password:
        assert "registry.password" in image.secret_inputs or "registry" in image.secret_inputs, image.urn
        # And the rule bites on this very resource once the secret marking is gone.
        stripped = rules.ResourceInput(type=image.type, name=image.name, stack=stack, props=image.inputs,
                                       secret_paths=frozenset())
        assert [v.policy for v in rules.evaluate([stripped])] == ["docker-image-registry-password-secret"]


def test_the_stacks_cover_every_edition():
    editions = {yaml.safe_load((ROOT / "stacks" / f"Pulumi.{s}.yaml").read_text())["config"]
                ["acr-publish:registry"]["edition"] for s in STACKS}
    assert {"enterprise", "personal", "local"} <= editions


def test_public_repositories_in_prod_fail(preflight_calls, pack_policies):
    run = run_stack("prod", {"acr-publish:registry": registry_config("prod", visibility="PUBLIC")})
    violations = rules.evaluate(as_inputs(run))
    names = {v.policy for v in mandatory(violations)}
    assert names == {"prod-repository-private"}
    repos = {r.name for r in run.of_type(rules.ENTERPRISE_REPO)}
    assert {v.resource for v in violations if v.policy == "prod-repository-private"} == repos
    assert {v.policy for v in violations if v.enforcement == "advisory"} == {"public-repository"}
    assert {p for p, _ in through_the_sdk(pack_policies, run)} == {"prod-repository-private", "public-repository"}


def test_public_repositories_outside_prod_only_advise(preflight_calls):
    run = run_stack("staging", {"acr-publish:registry": registry_config("staging", visibility="PUBLIC")})
    violations = rules.evaluate(as_inputs(run))
    assert mandatory(violations) == []
    assert {v.policy for v in violations} == {"public-repository"}


def test_unprotected_prod_fails(preflight_calls, pack_policies):
    run = run_stack("prod", {"acr-publish:protect": "false"})
    violations = mandatory(rules.evaluate(as_inputs(run)))
    assert {v.policy for v in violations} == {"prod-registry-resources-protected"}
    registry_resources = {r.name for r in run.resources if r.type in rules.NAMESPACE_TYPES | rules.REPO_TYPES}
    assert {v.resource for v in violations} == registry_resources
    assert {p for p, _ in through_the_sdk(pack_policies, run)} == {"prod-registry-resources-protected"}


def test_mutable_tags_in_prod_fail(preflight_calls, pack_policies):
    run = run_stack("prod", {"acr-publish:images": images_config("prod", tagImmutability=False)})
    violations = mandatory(rules.evaluate(as_inputs(run)))
    assert {v.policy for v in violations} == {"prod-enterprise-repository-tag-immutability"}
    assert len(violations) == len(run.of_type(rules.ENTERPRISE_REPO))
    assert {p for p, _ in through_the_sdk(pack_policies, run)} == {"prod-enterprise-repository-tag-immutability"}


def test_a_stack_named_prod_something_is_held_to_prod_rules(preflight_calls):
    # The dev stack file deployed as `prod-eu` (protect defaults on by name) with mutable tags and PUBLIC repos.
    run = run_stack("dev", {"acr-publish:registry": registry_config("dev", visibility="PUBLIC"),
                            "acr-publish:images": images_config("dev", tagImmutability=False)},
                    stack_name="prod-eu")
    names = {v.policy for v in mandatory(rules.evaluate(as_inputs(run)))}
    assert names == {"prod-repository-private", "prod-enterprise-repository-tag-immutability"}


def test_the_personal_edition_in_prod_is_checked_too(preflight_calls):
    run = run_stack("personal-example", {"acr-publish:registry": registry_config("personal-example",
                                                                                   visibility="PUBLIC"),
                                         "acr-publish:protect": "false"},
                    stack_name="prod-classic")
    violations = mandatory(rules.evaluate(as_inputs(run)))
    assert {v.policy for v in violations} == {"prod-repository-private", "prod-registry-resources-protected"}
    assert {r.type for r in run.resources} >= {rules.CLASSIC_NAMESPACE, rules.CLASSIC_REPO}


@pytest.fixture
def latest_tag(monkeypatch):
    """Every image of the program gets the floating tag 'latest' instead of its content tag.

    components/image.py takes the tag from `ContextScan.report(...).tag`, so the real context walk still runs and
    only the tag it hands back is replaced.
    """
    import dataclasses

    from buildcontext.context import ContextScan

    real = ContextScan.report

    def report(self, *args, **kwargs):
        return dataclasses.replace(real(self, *args, **kwargs), tag="latest")

    monkeypatch.setattr(ContextScan, "report", report)


@pytest.mark.parametrize("stack", BUILDING)
def test_an_image_tagged_latest_fails(stack, latest_tag, preflight_calls, pack_policies):
    run = run_stack(stack)
    images = run.of_type(rules.DOCKER_IMAGE)
    assert images, f"stack {stack} declares no docker.Image"
    for image in images:
        assert image.inputs["imageName"].endswith(":latest"), image.urn
    violations = rules.evaluate(as_inputs(run))
    assert {v.policy for v in violations} == {"docker-image-tag-not-latest"}
    assert {v.resource for v in violations} == {i.name for i in images}
    assert {p for p, _ in through_the_sdk(pack_policies, run)} == {"docker-image-tag-not-latest"}


NAMESPACE_CLASSES = {"prod": ("cs", "RegistryEnterpriseNamespace"), "personal-example": ("cr", "Namespace")}


@pytest.mark.parametrize("stack", sorted(NAMESPACE_CLASSES))
def test_a_namespace_with_auto_create_fails(stack, monkeypatch, preflight_calls, pack_policies):
    """The program's namespace declared with auto_create=True, whatever components/registry.py passes."""
    import pulumi_alicloud

    module, class_name = NAMESPACE_CLASSES[stack]
    namespace_class = getattr(getattr(pulumi_alicloud, module), class_name)
    real_init = namespace_class.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **{**kwargs, "auto_create": True})

    monkeypatch.setattr(namespace_class, "__init__", init)
    run = run_stack(stack)
    namespaces = [r for r in run.resources if r.type in rules.NAMESPACE_TYPES]
    assert namespaces, f"stack {stack} declares no namespace"
    assert all(n.inputs.get("autoCreate") is True for n in namespaces), [n.urn for n in namespaces]
    violations = rules.evaluate(as_inputs(run))
    assert {v.policy for v in violations} == {"namespace-no-auto-create"}
    assert {v.resource for v in violations} == {n.name for n in namespaces}
    assert {p for p, _ in through_the_sdk(pack_policies, run)} == {"namespace-no-auto-create"}


def test_a_prod_stack_that_builds_gets_the_advisory(preflight_calls, pack_policies):
    """The shipped prod promotes; the same program building in a stack named prod-eu is reported (advisory)."""
    run = run_stack("dev", stack_name="prod-eu")
    violations = rules.evaluate(as_inputs(run))
    images = {i.name for i in run.of_type(rules.DOCKER_IMAGE)}
    assert {(v.policy, v.enforcement) for v in violations} == {("prod-promotes-not-builds", "advisory")}
    assert {v.resource for v in violations if v.policy == "prod-promotes-not-builds"} == images
    assert ("prod-promotes-not-builds", "web-image") in through_the_sdk(pack_policies, run)
    assert not run_stack("prod").of_type(rules.DOCKER_IMAGE), "the shipped prod stack builds nothing"
