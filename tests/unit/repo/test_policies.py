"""Each guardrail of policies/rules.py against passing and failing inputs, and the pack's real
pulumi_policy handlers (policies/__main__.py) driven with the SDK's own argument objects."""

from __future__ import annotations

import runpy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pulumi_policy import EnforcementLevel, PolicyResourceOptions, ResourceValidationArgs
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from policies import rules
from policies.rules import (
    CLASSIC_NAMESPACE,
    CLASSIC_REPO,
    DOCKER_IMAGE,
    ENTERPRISE_NAMESPACE,
    ENTERPRISE_REPO,
    ResourceInput,
)
from tests.harness import PROJECT_ROOT

ROOT = PROJECT_ROOT


def res(type_: str, props: dict, stack: str = "dev", protect: bool = False,
        secret_paths: set[str] | None = None, name: str = "r") -> ResourceInput:
    return ResourceInput(type=type_, name=name, stack=stack, props=props, protect=protect,
                         secret_paths=secret_paths)


def names(resource: ResourceInput) -> list[str]:
    return [v.policy for v in rules.evaluate([resource])]


# --- image references --------------------------------------------------------------------------

@pytest.mark.parametrize("reference, expected", [
    ("web", ("web", None, None)),
    ("web:v1", ("web", "v1", None)),
    ("127.0.0.1:5000/web", ("127.0.0.1:5000/web", None, None)),
    ("127.0.0.1:5000/web:abc123", ("127.0.0.1:5000/web", "abc123", None)),
    ("localhost:5000/acme/web@sha256:" + "a" * 64, ("localhost:5000/acme/web", None, "sha256:" + "a" * 64)),
    ("r.example:443/acme/web:v2@sha256:" + "b" * 64, ("r.example:443/acme/web", "v2", "sha256:" + "b" * 64)),
])
def test_split_image_reference(reference, expected):
    assert rules.split_image_reference(reference) == expected


@settings(max_examples=60, deadline=None)
@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5})?", fullmatch=True),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    path=st.lists(st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True), min_size=1, max_size=3),
    tag=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)),
)
def test_split_image_reference_never_mistakes_a_port_for_a_tag(host, port, path, tag):
    repository = (f"{host}:{port}" if port else host) + "/" + "/".join(path)
    reference = repository + (f":{tag}" if tag else "")
    assert rules.split_image_reference(reference) == (repository, tag, None)


# --- docker-image-tag-not-latest ---------------------------------------------------------------

@pytest.mark.parametrize("image_name", [
    "registry.cn-hangzhou.aliyuncs.com/acme/web:3f9a1c2b7d4e",
    "127.0.0.1:5000/web:3f9a1c2b7d4e",
    "127.0.0.1:5000/web:Latest-build",
])
def test_image_tag_passes(image_name):
    assert names(res(DOCKER_IMAGE, {"imageName": image_name})) == []


@pytest.mark.parametrize("image_name, fragment", [
    ("127.0.0.1:5000/web", "has no tag"),
    ("127.0.0.1:5000/acme/web:latest", "floating tag 'latest'"),
    ("acme/web@sha256:" + "c" * 64, "a digest alone cannot be pushed to"),
    ("acme/web:-bad", "invalid tag '-bad'"),
    ("", "has no imageName"),
])
def test_image_tag_fails(image_name, fragment):
    violations = rules.evaluate([res(DOCKER_IMAGE, {"imageName": image_name}, name="web")])
    assert [v.policy for v in violations] == ["docker-image-tag-not-latest"]
    assert fragment in violations[0].message and "'web'" in violations[0].message


# --- prod-repository-private / public-repository -------------------------------------------------

@pytest.mark.parametrize("type_", [ENTERPRISE_REPO, CLASSIC_REPO])
def test_prod_repository_private(type_):
    ok = {"repoType": "PRIVATE", "tagImmutability": True}
    assert "prod-repository-private" not in names(res(type_, ok, stack="prod", protect=True))
    for bad in ({"repoType": "PUBLIC", "tagImmutability": True}, {"tagImmutability": True}):
        assert "prod-repository-private" in names(res(type_, bad, stack="prod-eu", protect=True))
    # Outside prod a PUBLIC repository is allowed, with the advisory only.
    assert names(res(type_, {"repoType": "PUBLIC"}, stack="staging")) == ["public-repository"]


def test_public_repository_is_advisory_everywhere():
    violations = rules.evaluate([res(CLASSIC_REPO, {"repoType": "PUBLIC"}, stack="dev")])
    assert [(v.policy, v.enforcement) for v in violations] == [("public-repository", "advisory")]
    assert rules.evaluate([res(CLASSIC_REPO, {"repoType": "PRIVATE"}, stack="dev")]) == []


def test_prod_is_a_name_prefix():
    assert rules.is_prod_stack("prod") and rules.is_prod_stack("production")
    assert not rules.is_prod_stack("preprod") and not rules.is_prod_stack("staging")


# --- prod-enterprise-repository-tag-immutability -----------------------------------------------

def test_prod_tag_immutability():
    rule = "prod-enterprise-repository-tag-immutability"
    assert rule not in names(res(ENTERPRISE_REPO, {"repoType": "PRIVATE", "tagImmutability": True},
                                 stack="prod", protect=True))
    for props in ({"repoType": "PRIVATE", "tagImmutability": False}, {"repoType": "PRIVATE"}):
        assert names(res(ENTERPRISE_REPO, props, stack="prod", protect=True)) == [rule]
    # Not in prod, and never for the classic edition (it has no tag immutability).
    assert names(res(ENTERPRISE_REPO, {"repoType": "PRIVATE", "tagImmutability": False}, stack="dev")) == []
    assert rule not in names(res(CLASSIC_REPO, {"repoType": "PRIVATE"}, stack="prod", protect=True))


# --- namespace-no-auto-create --------------------------------------------------------------------

@pytest.mark.parametrize("type_", [ENTERPRISE_NAMESPACE, CLASSIC_NAMESPACE])
def test_namespace_no_auto_create(type_):
    assert names(res(type_, {"autoCreate": False})) == []
    assert names(res(type_, {})) == []  # the provider's documented default is false
    assert names(res(type_, {"autoCreate": True})) == ["namespace-no-auto-create"]


# --- prod-registry-resources-protected -----------------------------------------------------------

@pytest.mark.parametrize("type_", [ENTERPRISE_NAMESPACE, CLASSIC_NAMESPACE, ENTERPRISE_REPO, CLASSIC_REPO])
def test_prod_resources_protected(type_):
    props = {"autoCreate": False, "repoType": "PRIVATE", "tagImmutability": True}
    assert names(res(type_, props, stack="prod", protect=True)) == []
    assert names(res(type_, props, stack="prod", protect=False)) == ["prod-registry-resources-protected"]
    assert names(res(type_, props, stack="staging", protect=False)) == []


# --- docker-image-registry-password-secret -------------------------------------------------------

def test_registry_password_secret():
    props = {"imageName": "h/acme/web:abc", "registry": {"server": "h", "username": "u", "password": "p"}}
    assert names(res(DOCKER_IMAGE, props, secret_paths={"registry.password"})) == []
    assert names(res(DOCKER_IMAGE, props, secret_paths={"registry"})) == []
    assert names(res(DOCKER_IMAGE, props, secret_paths=set())) == ["docker-image-registry-password-secret"]
    # No password at all (a local registry without auth) has nothing to keep secret.
    assert names(res(DOCKER_IMAGE, {"imageName": "h/web:abc", "registry": {"server": "h"}}, secret_paths=set())) == []


def test_registry_password_rule_refuses_to_guess_without_secretness():
    props = {"imageName": "h/web:abc", "registry": {"server": "h", "password": "p"}}
    with pytest.raises(ValueError, match="secret_paths"):
        rules.evaluate([res(DOCKER_IMAGE, props, secret_paths=None)])


def test_stack_from_urn():
    assert rules.stack_from_urn("urn:pulumi:prod::acr-publish::docker:index/image:Image::web") == "prod"
    urn = "urn:pulumi:dev::acr-publish::acr-publish:index:AcrRegistry$alicloud:cr/repo:Repo::x"
    assert rules.stack_from_urn(urn) == "dev"
    with pytest.raises(ValueError):
        rules.stack_from_urn("dev")


# --- the pack itself (policies/__main__.py) -------------------------------------------------------

@pytest.fixture(scope="module")
def pack() -> dict:
    # Any run_name but "__main__" builds the policies without starting the pack's gRPC server.
    return runpy.run_path(str(ROOT / "policies" / "__main__.py"), run_name="acr_publish_policies")


def run_policy(policy, type_: str, props: dict, stack: str = "dev", protect: bool = False,
               name: str = "r") -> list[str]:
    urn = f"urn:pulumi:{stack}::acr-publish::{type_}::{name}"
    opts = PolicyResourceOptions(protect, [], None, [], None, [], None)
    args = ResourceValidationArgs(type_, unknown_checking_proxy(props), urn, name, opts, None, None)
    reported: list[str] = []
    policy.validate(args, lambda message, urn=None: reported.append(message))
    return reported


def test_pack_has_every_rule_with_its_enforcement(pack):
    by_name = {p.name: p for p in pack["POLICIES"]}
    assert list(by_name) == [r.name for r in rules.RULES]
    assert by_name["public-repository"].enforcement_level is EnforcementLevel.ADVISORY
    assert by_name["prod-promotes-not-builds"].enforcement_level is EnforcementLevel.ADVISORY
    mandatory = {n for n, p in by_name.items() if p.enforcement_level is EnforcementLevel.MANDATORY}
    assert mandatory == {r.name for r in rules.RULES} - {"public-repository", "prod-promotes-not-builds"}
    assert rules.PACK_NAME == "acr-publish-guardrails"
    assert 'name: python' in (ROOT / "policies" / "PulumiPolicy.yaml").read_text()


def test_pack_handlers_report_through_the_sdk(pack):
    by_name = {p.name: p for p in pack["POLICIES"]}
    tag = by_name["docker-image-tag-not-latest"]
    assert run_policy(tag, DOCKER_IMAGE, {"imageName": "127.0.0.1:5000/web"})
    assert run_policy(tag, DOCKER_IMAGE, {"imageName": "127.0.0.1:5000/web:0a1b2c"}) == []
    protected = by_name["prod-registry-resources-protected"]
    repo = {"repoType": "PRIVATE", "tagImmutability": True}
    assert run_policy(protected, ENTERPRISE_REPO, repo, stack="prod", protect=False)
    assert run_policy(protected, ENTERPRISE_REPO, repo, stack="prod", protect=True) == []
    # A policy ignores resource types it does not cover.
    assert run_policy(tag, CLASSIC_REPO, {"repoType": "PUBLIC"}) == []


def test_pack_password_policy_says_it_is_not_applicable(pack):
    policy = {p.name: p for p in pack["POLICIES"]}["docker-image-registry-password-secret"]
    props = {"imageName": "h/web:abc", "registry": {"server": "h", "password": "p"}}
    with pytest.raises(_NotApplicableError) as raised:
        run_policy(policy, DOCKER_IMAGE, props)
    assert "tests/program/test_policies_stacks.py" in raised.value.reason
    assert run_policy(policy, DOCKER_IMAGE, {"imageName": "h/web:abc", "registry": {"server": "h"}}) == []


def test_pack_lets_unknown_preview_values_surface_as_unknown(pack):
    # During preview the image name may depend on the registry host; the SDK turns this error into
    # an advisory "can't run policy during preview" instead of a false pass or failure.
    policy = {p.name: p for p in pack["POLICIES"]}["docker-image-tag-not-latest"]
    with pytest.raises(UnknownValueError):
        run_policy(policy, DOCKER_IMAGE, {"imageName": UNKNOWN_STRING_VALUE})


@pytest.mark.parametrize("stack", ["prod", "prod-eu", "production"])
def test_a_docker_image_in_prod_is_reported_as_advisory(stack):
    violations = rules.evaluate([res(DOCKER_IMAGE, {"imageName": "h/acme/web:0a1b"}, stack=stack, name="web-image")])
    assert [(v.policy, v.enforcement) for v in violations] == [("prod-promotes-not-builds", "advisory")]
    assert "acr-publish:promoteFrom" in violations[0].message and "'web-image'" in violations[0].message


@pytest.mark.parametrize("stack", ["dev", "staging", "preprod", "local"])
def test_a_docker_image_outside_prod_is_not_reported(stack):
    assert names(res(DOCKER_IMAGE, {"imageName": "h/acme/web:0a1b"}, stack=stack)) == []


# --- the pack as the engine calls it: the analyzer servicer's Analyze RPC ---------------------------

def analyze(policies, type_: str, props: dict, stack: str = "dev", protect: bool = False, name: str = "r"):
    """Send one resource through pulumi_policy's own gRPC servicer, the code path `pulumi preview` drives."""
    from google.protobuf import struct_pb2
    from pulumi.runtime import proto
    from pulumi_policy.policy import _PolicyAnalyzerServicer

    servicer = _PolicyAnalyzerServicer(rules.PACK_NAME, "0.1.0", list(policies), EnforcementLevel.MANDATORY)
    properties = struct_pb2.Struct()
    properties.update(props)
    request = proto.AnalyzeRequest(
        type=type_, properties=properties, urn=f"urn:pulumi:{stack}::acr-publish::{type_}::{name}", name=name,
        options=proto.AnalyzerResourceOptions(protect=protect),
    )
    return servicer.Analyze(request, None)


def test_engine_path_reports_violations_with_their_enforcement(pack):
    response = analyze(pack["POLICIES"], ENTERPRISE_REPO, {"repoType": "PUBLIC", "tagImmutability": False},
                       stack="prod", protect=False, name="registry-web-repo")
    by_policy = {d.policyName: d for d in response.diagnostics}
    assert set(by_policy) == {"prod-repository-private", "prod-enterprise-repository-tag-immutability",
                              "prod-registry-resources-protected", "public-repository"}
    from pulumi.runtime import proto
    assert by_policy["public-repository"].enforcementLevel == proto.ADVISORY
    assert by_policy["prod-repository-private"].enforcementLevel == proto.MANDATORY
    assert by_policy["prod-repository-private"].policyPackName == "acr-publish-guardrails"
    assert "registry-web-repo" in by_policy["prod-repository-private"].message
    clean = analyze(pack["POLICIES"], ENTERPRISE_REPO, {"repoType": "PRIVATE", "tagImmutability": True},
                    stack="prod", protect=True)
    assert list(clean.diagnostics) == []


def test_engine_path_hides_secretness_so_the_password_policy_is_not_applicable(pack):
    # The engine sends a secret wrapped in Pulumi's secret signature; the SDK unwraps it before any policy runs,
    # which is why the password rule cannot judge here (policies/README.md) and says so.
    from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY

    seen = {}

    def spy(args, report_violation):
        seen["password"] = args.props["registry"]["password"]

    from pulumi_policy import ResourceValidationPolicy

    policies = [*pack["POLICIES"], ResourceValidationPolicy("spy", "records what a policy sees", validate=spy)]
    secret = {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": "s3cr3t"}
    response = analyze(policies, DOCKER_IMAGE, {"imageName": "h/acme/web:0a1b", "registry": {
        "server": "h", "username": "u", "password": secret}})
    assert seen["password"] == "s3cr3t"  # plain text: nothing tells the policy it was a secret
    not_applicable = {n.policy_name: n.reason for n in response.not_applicable}
    assert "tests/program/test_policies_stacks.py" in not_applicable["docker-image-registry-password-secret"]
    assert list(response.diagnostics) == []


# --- the stack rule on the exported audit summary -------------------------------------------------

def test_audit_wasted_share_over_the_threshold_is_advisory(pack):
    from pulumi_policy import PolicyResource, StackValidationArgs

    [policy] = pack["STACK_POLICIES"]
    assert policy.name == "image-audit-wasted-share" and policy.enforcement_level is EnforcementLevel.ADVISORY
    opts = PolicyResourceOptions(False, [], None, [], None, [], None)

    def audit(name: str, summary) -> PolicyResource:
        urn = f"urn:pulumi:dev::acr-publish::acr-publish:index:PublishedImage${rules.IMAGE_AUDIT}::{name}"
        return PolicyResource(rules.IMAGE_AUDIT, {"summary": summary}, urn, name, opts, None, None, [], {})

    over = {"wastedBytes": 2_150_121, "wastedPercent": 30.15, "hiddenFiles": 10, "sensitive": 2}
    at = {**over, "wastedPercent": rules.AUDIT_WASTED_PERCENT_ADVISORY}
    other = PolicyResource(DOCKER_IMAGE, {"summary": over}, "urn:pulumi:dev::acr-publish::x::img", "img", opts,
                           None, None, [], {})
    reported: list[tuple[str, str]] = []
    policy.validate(StackValidationArgs([audit("web-audit", over), audit("worker-audit", at), other,
                                         audit("api-audit", None)]),
                    lambda message, urn=None: reported.append((message, urn)))
    assert len(reported) == 1, reported
    message, urn = reported[0]
    assert urn.endswith("::web-audit") and "30.1% of the bytes" in message and "2150121 bytes" in message
    assert "python -m cli.audit" in message
