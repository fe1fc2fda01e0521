"""The real __main__.py, run per stack file under recording mocks: resources, options, outputs and secrets."""
from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from tests.harness import (
    ENTERPRISE_INVOKE, IMAGE, PROMOTION, STACKS, TEST_SECRET, TEST_TOKEN, PROJECT_ROOT, StackMocks, run_stack,
)

COMPONENT_REGISTRY = "acr-publish:index:AcrRegistry"
COMPONENT_IMAGE = "acr-publish:index:PublishedImage"
EE_NS = "alicloud:cs/registryEnterpriseNamespace:RegistryEnterpriseNamespace"
EE_REPO = "alicloud:cs/registryEnterpriseRepo:RegistryEnterpriseRepo"
CR_NS = "alicloud:cr/namespace:Namespace"
CR_REPO = "alicloud:cr/repo:Repo"
DIGEST_REF = re.compile(r"^(?P<repo>[^@]+)@sha256:[0-9a-f]{64}$")
PROMOTED_IMAGE = "acr-publish:index:PromotedImage"
PROMOTING = [s for s in STACKS if "acr-publish:promoteFrom" in
             (yaml.safe_load((PROJECT_ROOT / "stacks" / f"Pulumi.{s}.yaml").read_text())["config"])]
BUILDING = [s for s in STACKS if s not in PROMOTING]


def test_every_stack_file_is_covered():
    assert {"local", "local-release", "dev", "staging", "prod", "personal-example"} <= set(STACKS)


@pytest.mark.parametrize("stack", STACKS)
def test_stack_exports_digest_pinned_refs_and_no_secret(stack, preflight_calls):
    run = run_stack(stack)
    assert set(run.outputs) == {"registry", "registryInstance", "images"}
    assert run.secret_outputs == set(), f"{stack}: exports must hold no secret"
    dumped = json.dumps(run.outputs)
    assert TEST_SECRET not in dumped and TEST_TOKEN not in dumped, f"{stack}: a credential leaked into the exports"
    images = run.outputs["images"]
    assert images, f"{stack}: no image exported"
    for name, out in images.items():
        assert set(out) == {"repository", "tag", "imageName", "ref", "audit"}
        assert out["repository"].startswith(run.outputs["registry"] + "/"), out
        assert out["repository"].endswith("/" + name)
        assert out["imageName"] == f"{out['repository']}:{out['tag']}"
        assert out["tag"] != "latest" and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", out["tag"])
        m = DIGEST_REF.match(out["ref"])
        assert m and m.group("repo") == out["repository"], f"{stack}/{name}: ref {out['ref']!r} is not digest-pinned"


@pytest.mark.parametrize("stack", BUILDING)
def test_each_image_waits_for_its_repository_after_one_preflight(stack, preflight_calls):
    run = run_stack(stack)
    repos = {r.inputs["name"]: r for r in run.resources if r.type in (EE_REPO, CR_REPO)}
    for img in run.of_type(IMAGE):
        name = img.name.removesuffix("-image")
        parent = run.by_name(name)
        assert img.parent == parent.urn and parent.type == COMPONENT_IMAGE, img.urn
        if name in repos:
            assert repos[name].urn in img.dependencies, f"{img.urn} must depend on {repos[name].urn}"
        build = img.inputs["build"]
        assert build["platform"] == "linux/amd64", img.urn
        assert not build["context"].startswith("/"), f"{img.urn}: context must be project-relative"
        assert img.inputs["registry"]["server"] == run.outputs["registry"]
    assert len(preflight_calls) == 1, f"{stack}: one preflight per registry"


def test_local_stack_declares_no_alicloud_resource_or_provider(preflight_calls):
    run = run_stack("local")
    assert not [r.urn for r in run.resources if r.type.startswith(("alicloud:", "pulumi:providers:alicloud"))]
    assert not [t for t, _ in run.invokes if t.startswith("alicloud:")]
    assert {r.type for r in run.resources} == {COMPONENT_REGISTRY, COMPONENT_IMAGE, IMAGE, AUDIT}
    assert run.outputs["registry"] == "127.0.0.1:5000"
    assert run.outputs["images"]["web"]["repository"] == "127.0.0.1:5000/demo/web"
    assert len(run.of_type(IMAGE)) == 2, "the local stack publishes web and worker"
    target = preflight_calls[0]
    assert target.login.server == "127.0.0.1:5000" and target.login.allow_plain_http is True
    assert set(target.repositories) == {"demo/web", "demo/worker"}


def test_local_stack_without_namespace_pushes_to_server_root(preflight_calls):
    run = run_stack("local", {"acr-publish:registry": {"edition": "local"}})
    assert run.outputs["images"]["web"]["repository"] == "127.0.0.1:5000/web"


def test_enterprise_stack_resources(preflight_calls):
    run = run_stack("dev")
    registry = run.by_name("registry")
    assert registry.type == COMPONENT_REGISTRY
    ns = run.by_name("registry-namespace")
    assert ns.type == EE_NS and ns.parent == registry.urn
    assert ns.inputs == {"instanceId": "cri-0123456789abcdef", "name": "acme-dev", "autoCreate": False,
                         "defaultVisibility": "PRIVATE"}
    for image in ("web", "worker"):
        repo = run.by_name(f"registry-{image}-repo")
        assert repo.type == EE_REPO and repo.parent == registry.urn
        assert repo.inputs["instanceId"] == "cri-0123456789abcdef"
        assert repo.inputs["namespace"] == "acme-dev" and repo.inputs["name"] == image
        assert repo.inputs["repoType"] == "PRIVATE" and repo.inputs["tagImmutability"] is True
        assert ns.urn in repo.dependencies, f"{repo.urn} must wait for the namespace"
    assert run.by_name("registry-web-repo").inputs["summary"] == "Sample web service (dev)"
    assert (ENTERPRISE_INVOKE, {"ids": ["cri-0123456789abcdef"], "enableDetails": True}) in run.invokes
    assert run.outputs["registry"] == "acme-0cdef-registry.cn-hangzhou.cr.aliyuncs.com"


def test_enterprise_token_is_a_secret_registry_password(preflight_calls):
    run = run_stack("dev")
    for img in run.of_type(IMAGE):
        assert "registry.password" in img.secret_inputs, f"{img.urn}: registry.password must be a secret"
        assert img.inputs["registry"]["password"] == TEST_TOKEN
        assert img.inputs["registry"]["username"] == "cr_temp_user"
        assert "imageName" not in img.secret_inputs and "registry.server" not in img.secret_inputs
    assert preflight_calls[0].login.password == TEST_TOKEN and preflight_calls[0].login.allow_plain_http is False


def test_prod_uses_vpc_endpoint_and_protects_and_retains(preflight_calls):
    run = run_stack("prod")
    assert run.outputs["registry"].endswith("-registry-vpc.cn-hangzhou.cr.aliyuncs.com")
    for r in run.resources:
        if r.type.startswith("alicloud:"):
            assert r.protect and r.retain_on_delete, f"{r.urn} must be protected and retained in prod"


@pytest.mark.parametrize("stack", ["dev", "staging", "local"])
def test_non_prod_stacks_are_retained_but_not_protected(stack, preflight_calls):
    run = run_stack(stack)
    for r in run.resources:
        if r.type.startswith("alicloud:"):
            assert not r.protect and r.retain_on_delete, r.urn


def test_protect_default_follows_the_stack_name(preflight_calls):
    run = run_stack("dev", stack_name="prod-eu")
    assert all(r.protect for r in run.resources if r.type.startswith("alicloud:"))


def test_retain_on_delete_can_be_turned_off_explicitly(preflight_calls):
    run = run_stack("dev", {"acr-publish:retainOnDelete": "false"})
    assert not any(r.retain_on_delete for r in run.resources if r.type.startswith("alicloud:"))


def test_adopting_an_existing_namespace_declares_none(preflight_calls):
    run = run_stack("dev", {"acr-publish:registry": {
        "edition": "enterprise", "instanceId": "cri-0123456789abcdef", "namespace": "shared", "createNamespace": False,
    }})
    assert not run.of_type(EE_NS)
    assert {r.inputs["namespace"] for r in run.of_type(EE_REPO)} == {"shared"}


def test_public_visibility_reaches_namespace_and_repositories(preflight_calls):
    run = run_stack("dev", {"acr-publish:registry": {
        "edition": "enterprise", "instanceId": "cri-0123456789abcdef", "namespace": "acme-dev", "visibility": "PUBLIC",
    }})
    assert run.by_name("registry-namespace").inputs["defaultVisibility"] == "PUBLIC"
    assert {r.inputs["repoType"] for r in run.of_type(EE_REPO)} == {"PUBLIC"}


def test_unknown_enterprise_instance_is_a_clear_error(preflight_calls):
    mocks = StackMocks(instances=[])
    with pytest.raises(Exception) as err:
        run_stack("dev", mocks=mocks)
    text = str(err.value)
    assert "cri-0123456789abcdef" in text and "cn-hangzhou" in text and "acr-publish:registry.instanceId" in text
    assert not preflight_calls, "no preflight without a registry"


def test_enterprise_instance_without_public_endpoint_names_the_fix(preflight_calls):
    from tests.harness import _enterprise_instance

    inst = _enterprise_instance("cri-0123456789abcdef")
    inst["publicEndpoints"] = []
    with pytest.raises(Exception, match="no public endpoint.*endpoint to vpc"):
        run_stack("dev", mocks=StackMocks(instances=[inst]))


def test_personal_stack_resources_credentials_and_warning(preflight_calls):
    run = run_stack("personal-example")
    ns = run.by_name("registry-namespace")
    assert ns.type == CR_NS and ns.inputs == {"name": "acme-personal", "autoCreate": False,
                                              "defaultVisibility": "PRIVATE"}
    repo = run.by_name("registry-web-repo")
    assert repo.type == CR_REPO and repo.inputs["namespace"] == "acme-personal" and repo.inputs["repoType"] == "PRIVATE"
    assert "tagImmutability" not in repo.inputs
    assert run.outputs["registry"] == "registry.cn-hangzhou.aliyuncs.com"
    img = run.by_name("web-image")
    assert img.inputs["registry"]["username"] == "deployer@example.com"
    assert "registry.password" in img.secret_inputs and img.inputs["registry"]["password"] == TEST_SECRET
    assert any("retiring" in w and "crpi-" in w for w in run.warnings), run.warnings


def test_personal_vpc_endpoint_host(preflight_calls):
    run = run_stack("personal-example", {"acr-publish:registry": {
        "edition": "personal", "namespace": "acme-personal", "username": "u", "endpoint": "vpc"}})
    assert run.outputs["registry"] == "registry-vpc.cn-hangzhou.aliyuncs.com"


def test_preflight_failure_stops_before_any_image_is_declared(preflight_calls):
    from registryclient import RegistryError

    preflight_calls.fail = RegistryError("registry 127.0.0.1:5000 refused the connection", "unreachable")
    records: list = []
    with pytest.raises(RegistryError, match="refused"):
        run_stack("local", records=records)
    # The preflight runs before the first resource: nothing at all is declared (tests/program/test_sequence.py: every edition
    # and failure kind).
    assert records == [], "a resource was declared although the preflight failed"


def test_up_checks_push_permission_and_preview_only_the_login(preflight_calls):
    run_stack("dev")
    run_stack("dev", preview=True)
    assert [t.check_push for t in preflight_calls] == [True, False]


def test_unreachable_registry_only_warns_in_preview(preflight_calls):
    from registryclient import RegistryError

    preflight_calls.fail = RegistryError("cannot resolve host 'acme-registry-vpc...'", "unreachable")
    run = run_stack("dev", preview=True, stack_name="prod-eu")
    assert len(run.of_type(IMAGE)) == 2
    assert any("cannot resolve host" in w and "pulumi up" in w for w in run.warnings), run.warnings
    with pytest.raises(RegistryError):
        run_stack("dev", stack_name="prod-eu")


def test_rejected_credentials_fail_the_preview(preflight_calls):
    from registryclient import RegistryError

    preflight_calls.fail = RegistryError("credentials rejected (401)", "auth")
    records: list = []
    with pytest.raises(RegistryError, match="rejected"):
        run_stack("dev", preview=True, records=records)
    assert not [r.urn for r in records if r.type == IMAGE]


def test_preflight_can_be_turned_off(preflight_calls):
    run = run_stack("local", {"acr-publish:preflight": "false"})
    assert preflight_calls == [] and len(run.of_type(IMAGE)) == 2


def test_preview_declares_the_same_resources_without_build_on_preview(preflight_calls):
    run = run_stack("dev", preview=True)
    for img in run.of_type(IMAGE):
        assert img.inputs["buildOnPreview"] is False and img.inputs["skipPush"] is False, img.urn
    assert preflight_calls, "the preflight runs in preview too"


def test_tag_ignores_mtimes_and_the_project_location(tmp_path, preflight_calls):
    first = run_stack("local", {"acr-publish:preflight": "false"})
    copy = tmp_path / "elsewhere" / "acr-publish"
    shutil.copytree(PROJECT_ROOT, copy, ignore=shutil.ignore_patterns(
        "venv", ".git", "__pycache__", ".pytest_cache", ".hypothesis", "bench", ".local*", ".registry-data"))
    for path in (copy / "app").rglob("*"):
        path.touch()
    second = run_stack("local", {"acr-publish:preflight": "false"}, project_root=copy)
    assert {n: o["tag"] for n, o in first.outputs["images"].items()} == \
        {n: o["tag"] for n, o in second.outputs["images"].items()}
    (copy / "app" / "www" / "index.html").write_text("changed\n")
    third = run_stack("local", {"acr-publish:preflight": "false"}, project_root=copy)
    assert third.outputs["images"]["web"]["tag"] != first.outputs["images"]["web"]["tag"]


def test_build_args_and_target_change_the_tag(preflight_calls):
    base = run_stack("local", {"acr-publish:preflight": "false"})
    other = run_stack("local", {"acr-publish:preflight": "false", "acr-publish:images": [
        {"name": "web", "context": "app", "target": "web", "buildArgs": {"APP_ENV": "other"}},
        {"name": "worker", "context": "app", "target": "web", "buildArgs": {"APP_ENV": "local"}},
    ]})
    assert base.outputs["images"]["web"]["tag"] != other.outputs["images"]["web"]["tag"]
    assert base.outputs["images"]["worker"]["tag"] != other.outputs["images"]["worker"]["tag"]


def _shape(run) -> set[tuple[str, str, str]]:
    names = {r.urn: r.name for r in run.resources}
    return {(r.type, r.name, names.get(r.parent, "<stack>")) for r in run.resources}


AUDIT = "pulumi-python:dynamic/acr-publish:ImageAudit"
_AUDITS = {(AUDIT, f"{n}-audit", n) for n in ("web", "worker")}
_IMAGES = {(COMPONENT_IMAGE, n, "<stack>") for n in ("web", "worker")} | {(IMAGE, f"{n}-image", n)
                                                                          for n in ("web", "worker")} | _AUDITS
_ENTERPRISE = _IMAGES | {(COMPONENT_REGISTRY, "registry", "<stack>"), (EE_NS, "registry-namespace", "registry"),
                         (EE_REPO, "registry-web-repo", "registry"), (EE_REPO, "registry-worker-repo", "registry")}
_PROMOTIONS = {(PROMOTED_IMAGE, n, "<stack>") for n in ("web", "worker")} | {(PROMOTION, f"{n}-promote", n)
                                                                              for n in ("web", "worker")} | _AUDITS
_ENTERPRISE_PROMOTING = (_ENTERPRISE - _IMAGES) | _PROMOTIONS
EXPECTED_SHAPE = {
    "local": _IMAGES | {(COMPONENT_REGISTRY, "registry", "<stack>")},
    "local-release": _PROMOTIONS | {(COMPONENT_REGISTRY, "registry", "<stack>")},
    "dev": _ENTERPRISE,
    "staging": _ENTERPRISE_PROMOTING,
    "prod": _ENTERPRISE_PROMOTING,
    "personal-example": {(COMPONENT_REGISTRY, "registry", "<stack>"), (CR_NS, "registry-namespace", "registry"),
                         (CR_REPO, "registry-web-repo", "registry"), (COMPONENT_IMAGE, "web", "<stack>"),
                         (IMAGE, "web-image", "web"), (AUDIT, "web-audit", "web")},
}


@pytest.mark.parametrize("stack", STACKS)
def test_exact_resource_set_per_stack(stack, preflight_calls):
    assert _shape(run_stack(stack)) == EXPECTED_SHAPE[stack]


@pytest.mark.parametrize("stack", STACKS)
def test_each_image_builds_exactly_its_configured_inputs(stack, preflight_calls, remote_calls):
    from components.config.stackfile import load_stack_file

    settings = load_stack_file(stack)
    resolved = "sha256:" + "5e" * 32
    # The Dockerfile's default base, or the one a stack gives (the local stack's base in its own registry).
    bases = {image.build_args.get("BASE_IMAGE", "busybox:1.36.1-musl") for image in settings.images}
    for base in bases:
        remote_calls.digests[base] = resolved
    run = run_stack(stack)
    for image in settings.images:
        build = run.by_name(f"{image.name}-image").inputs["build"]
        base = image.build_args.get("BASE_IMAGE", "busybox:1.36.1-musl")
        # The configured Dockerfile, staged with its base pinned to the digest the content tag names.
        staged = build["dockerfile"]
        assert {(ref, plat) for ref, plat, _login in remote_calls.references} == {(base, image.platform)}
        original = (PROJECT_ROOT / image.dockerfile).read_text()
        pinned = original.replace("FROM ${BASE_IMAGE} AS base", f"FROM {base}@{resolved} AS base")
        assert (PROJECT_ROOT / staged).read_text() == pinned
        # The staged path names its content: another plan's pins land in another directory.
        assert re.fullmatch(rf"\.acr-publish/pinned/{run.stack}/{image.name}/[0-9a-f]{{16}}/Dockerfile", staged)
        expected = {"context": image.context, "dockerfile": staged, "platform": image.platform,
                    "builderVersion": "BuilderBuildKit"}
        if image.target:
            expected["target"] = image.target
        if image.build_args:
            expected["args"] = dict(image.build_args)
        assert build == expected, f"{stack}/{image.name}"


def test_personal_example_is_retained_not_protected(preflight_calls):
    run = run_stack("personal-example")
    cloud = [r for r in run.resources if r.type.startswith("alicloud:")]
    assert cloud and all(r.retain_on_delete and not r.protect for r in cloud)


@pytest.mark.parametrize("stack", STACKS)
def test_each_image_gets_an_audit_of_its_published_digest_with_a_secret_login(stack, preflight_calls):
    from components.config.stackfile import load_stack_file

    settings = load_stack_file(stack)
    run = run_stack(stack)
    audits = run.of_type(AUDIT)
    assert {a.name for a in audits} == {f"{n}-audit" for n in run.outputs["images"]}, stack
    for audit in audits:
        name = audit.name.removesuffix("-audit")
        out = run.outputs["images"][name]
        assert audit.parent == run.by_name(name).urn, audit.urn
        assert audit.inputs["digest"] == out["ref"].rsplit("@", 1)[1], audit.urn
        assert f"{run.outputs['registry']}/{audit.inputs['repository']}" == out["repository"], audit.urn
        assert "auth" in audit.secret_inputs and "auth" in audit.additional_secret_outputs, audit.urn
        configured = {i.name: i.audit for i in (settings.images or settings.promoted_images)}
        expected = configured.get(name)
        fail = expected.fail_on_sensitive if expected is not None else stack.startswith("prod")
        assert audit.inputs["settings"]["failOnSensitive"] is fail, audit.urn
        assert "audit" in out, f"{stack}/{name}: the audit summary is exported beside ref"


def test_a_promotion_carries_the_stacks_allowed_sensitive_paths(preflight_calls):
    images = [{"name": "web", "audit": {"allowSensitive": ["etc/ssl/private/snakeoil.key"]}}, {"name": "worker"}]
    run = run_stack("local-release", {"acr-publish:images": images})
    allow = {p.name: p.inputs["auditAllow"] for p in run.of_type(PROMOTION)}
    assert allow == {"web-promote": ["etc/ssl/private/snakeoil.key"], "worker-promote": []}
