"""Promotion under Pulumi mocks: the real `__main__.py` of the promoting stacks and their source checks.

The source stack's exports come from running its own stack file under the same mocks (tests/harness.py,
`source_exports`), so staging promotes what dev's program exports and prod what staging's exports. The copy itself
runs against real registries in tests/e2e/test_promote.py; the settings rules are
tests/unit/config/test_config_promotion.py, the resource's diff tests/unit/components/test_promotion.py.
"""
from __future__ import annotations

import json

import pytest

from components.promotion import PromotionError
from components.config.problems import ConfigError
from errors import AcrPublishError
from tests.harness import (
    ENTERPRISE_INVOKE, IMAGE, PROMOTION, STACKS, TEST_SECRET, TEST_TOKEN, StackMocks, reported_error, run_stack,
    source_exports,
)

PROMOTING = {"staging": "dev", "prod": "staging", "local-release": "local"}


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_exports_its_registry_instance(stack, preflight_calls):
    from components.config.stackfile import load_stack_file

    settings = load_stack_file(stack)
    instance = run_stack(stack).outputs["registryInstance"]
    edition = settings.registry.edition
    assert instance == {
        "edition": edition,
        "instanceId": settings.registry.instance_id if edition == "enterprise" else None,
        "region": "cn-hangzhou" if edition != "local" else None,
    }, stack


@pytest.mark.parametrize("stack", sorted(PROMOTING))
def test_promoting_stack_declares_one_promotion_per_image_and_no_build(stack, preflight_calls):
    source = source_exports(stack)[PROMOTING[stack]]
    run = run_stack(stack)
    assert not run.of_type(IMAGE), f"{stack}: a promoting stack declares no docker.Image"
    promotions = {r.name: r for r in run.of_type(PROMOTION)}
    assert set(promotions) == {f"{n}-promote" for n in source["images"]}
    for name, exported in source["images"].items():
        res = promotions[f"{name}-promote"]
        assert res.parent == run.urn_of(name), res.urn
        assert res.inputs["sourceRef"] == exported["ref"], res.urn
        assert res.inputs["sourceDigest"] == exported["ref"].split("@")[1]
        assert res.inputs["tag"] == exported["tag"], "the target tag is the source's content tag"
        assert f"{res.inputs['sourceServer']}/{res.inputs['sourceRepository']}" == exported["repository"]
        assert res.inputs["targetServer"] == run.outputs["registry"]
        out = run.outputs["images"][name]
        assert res.inputs["targetRepository"] == out["repository"].split("/", 1)[1]
        assert {"sourceAuth", "targetAuth"} <= res.secret_inputs, f"{res.urn}: credentials must be secret inputs"
        assert {"sourceAuth", "targetAuth"} <= set(res.additional_secret_outputs), res.urn
        assert "sourceRef" not in res.secret_inputs and "targetServer" not in res.secret_inputs
        assert out["tag"] == exported["tag"] and out["imageName"] == f"{out['repository']}:{out['tag']}"
        assert out["ref"] == f"{out['repository']}@{exported['ref'].split('@')[1]}", "ref = own repository@digest"
    assert run.secret_outputs == set()
    dumped = json.dumps(run.outputs)
    assert TEST_TOKEN not in dumped and TEST_SECRET not in dumped


@pytest.mark.parametrize("stack", sorted(PROMOTING))
def test_the_preflight_checks_push_to_the_promoted_repositories(stack, preflight_calls):
    run = run_stack(stack)
    [target] = preflight_calls
    assert target.check_push and target.login.server == run.outputs["registry"]
    assert set(target.repositories) == {o["repository"].split("/", 1)[1] for o in run.outputs["images"].values()}
    assert preflight_calls.published_calls == [], "a promotion asks the copy, not the build's published check"


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_each_promotion_waits_for_its_repository(stack, preflight_calls):
    run = run_stack(stack)
    for name in ("web", "worker"):
        repo = run.by_name(f"registry-{name}-repo")
        assert repo.urn in run.by_name(f"{name}-promote").dependencies, f"{name}-promote must wait for {repo.urn}"


def test_enterprise_source_logs_in_with_its_own_instance(preflight_calls):
    run = run_stack("staging")
    dev_instance = "cri-0123456789abcdef"
    assert (ENTERPRISE_INVOKE, {"ids": [dev_instance], "enableDetails": True}) in run.invokes
    web = run.by_name("web-promote")
    assert web.inputs["sourceAuth"] == {"username": "cr_temp_user", "password": TEST_TOKEN}
    assert web.inputs["sourceServer"] == "acme-0cdef-registry.cn-hangzhou.cr.aliyuncs.com"
    assert web.inputs["targetServer"] == run.outputs["registry"] != web.inputs["sourceServer"]
    checked = {(e.server, repo, digest) for e, repo, digest in preflight_calls.sources}
    assert (web.inputs["sourceServer"], web.inputs["sourceRepository"], web.inputs["sourceDigest"]) in checked
    assert not [r for r in run.resources if r.type.startswith("pulumi:providers:")], "same region: no provider"


def test_enterprise_source_in_another_region_uses_a_provider_for_that_region(preflight_calls):
    exports = source_exports("staging")
    exports["dev"]["registryInstance"]["region"] = "cn-shanghai"
    run = run_stack("staging", mocks=StackMocks(stacks=exports))
    providers = [r for r in run.resources if r.type == "pulumi:providers:alicloud"]
    assert len(providers) == 1 and providers[0].inputs["region"] == "cn-shanghai"


def test_same_host_source_uses_this_stacks_login(preflight_calls):
    run = run_stack("local-release")
    web = run.by_name("web-promote")
    assert web.inputs["sourceServer"] == web.inputs["targetServer"] == "127.0.0.1:5000"
    assert web.inputs["sourceRepository"] == "demo/web" and web.inputs["targetRepository"] == "release/web"
    assert web.inputs["sourceAuth"] == web.inputs["targetAuth"]


def test_local_source_on_another_host_takes_source_username_and_password(preflight_calls):
    exports = source_exports("local-release")
    exports["local"] = json.loads(json.dumps(exports["local"]).replace("127.0.0.1:5000", "127.0.0.1:5999"))
    run = run_stack("local-release", {"acr-publish:sourceUsername": "reader",
                                      "acr-publish:sourcePassword": {"secure": "x"}},
                    mocks=StackMocks(stacks=exports))
    web = run.by_name("web-promote")
    assert web.inputs["sourceServer"] == "127.0.0.1:5999"
    assert web.inputs["sourceAuth"] == {"username": "reader", "password": TEST_SECRET}
    assert "sourceAuth" in web.secret_inputs
    endpoint = preflight_calls.sources[0][0]
    assert endpoint.server == "127.0.0.1:5999" and endpoint.username == "reader"
    assert TEST_SECRET not in repr(endpoint), "the login's repr hides the password"


def test_omitted_images_promote_every_exported_image(preflight_calls):
    run = run_stack("staging", {"acr-publish:images": None})
    assert {r.name for r in run.of_type(PROMOTION)} == {"web-promote", "worker-promote"}
    assert run.by_name("registry-web-repo").inputs["summary"] == "web image"


def test_a_source_check_failure_declares_nothing(preflight_calls):
    from components.copy import CopyError

    preflight_calls.source_fail = CopyError("credentials rejected (401)")
    records: list = []
    with pytest.raises(PromotionError, match="credentials rejected.*temporary login of cri-0123456789abcdef"):
        run_stack("staging", records=records)
    assert records == [], [r.urn for r in records]


def test_an_unreachable_source_only_warns_in_preview(preflight_calls):
    from components.copy import CopyError

    preflight_calls.source_fail = CopyError("connection to 127.0.0.1:5000 refused", "unreachable")
    run = run_stack("local-release", preview=True)
    assert len(run.of_type(PROMOTION)) == 2
    assert any("refused" in w and "`pulumi up` needs the source reachable" in w for w in run.warnings), run.warnings
    with pytest.raises(PromotionError, match="refused"):
        run_stack("local-release")


def test_preflight_false_skips_the_source_check(preflight_calls):
    run = run_stack("local-release", {"acr-publish:preflight": "false"})
    assert preflight_calls.sources == [] and len(run.of_type(PROMOTION)) == 2


# --- the source stack's exports --------------------------------------------------------------------------------

def _run_with(exports: dict, overrides: dict | None = None, records: list | None = None, as_engine: bool = False):
    return run_stack("staging", overrides, mocks=StackMocks(stacks={"dev": exports}), records=records,
                     as_engine=as_engine)


def test_image_the_source_does_not_export_names_both_stacks(preflight_calls):
    exports = source_exports("staging")["dev"]
    del exports["images"]["worker"]
    records: list = []
    with pytest.raises(PromotionError) as err:
        _run_with(exports, records=records)
    text = str(err.value)
    assert "acr-publish:images[1].name 'worker'" in text and "'staging' promotes from stack 'dev'" in text
    assert "exports no image 'worker' (it exports web)" in text and "stacks/Pulumi.dev.yaml" in text
    assert records == []


def test_source_without_images_names_both_stacks_and_the_fix(preflight_calls):
    exports = source_exports("staging")["dev"]
    exports["images"] = {}
    with pytest.raises(PromotionError, match=r"'dev' exports no images: run `pulumi up -s dev` first"):
        _run_with(exports)


def test_a_source_with_secret_exports_is_refused(preflight_calls):
    exports = source_exports("staging")["dev"]
    exports["__secret_names__"] = ["images"]
    with pytest.raises(PromotionError, match="whose exports images are secret: acr-publish exports no secret"):
        _run_with(exports)


def test_source_without_registry_instance_says_to_rerun_it(preflight_calls):
    exports = source_exports("staging")["dev"]
    del exports["registryInstance"]
    with pytest.raises(PromotionError, match="exports no registryInstance: run `pulumi up -s dev`"):
        _run_with(exports)


def test_source_image_without_digest_ref_is_refused(preflight_calls):
    exports = source_exports("staging")["dev"]
    exports["images"]["web"]["ref"] = exports["images"]["web"]["imageName"]
    with pytest.raises(PromotionError, match="images.web .* has no digest-pinned ref"):
        _run_with(exports)


def test_source_username_with_an_enterprise_source_is_refused(preflight_calls):
    with pytest.raises(PromotionError, match="sourceUsername and acr-publish:sourcePassword are not used: an Ent"):
        run_stack("staging", {"acr-publish:sourceUsername": "u", "acr-publish:sourcePassword": {"secure": "x"}})


def test_classic_source_needs_a_personal_stack(preflight_calls):
    exports = source_exports("staging")["dev"]
    exports["registryInstance"] = {"edition": "personal", "instanceId": None, "region": "cn-hangzhou"}
    exports = json.loads(json.dumps(exports).replace("acme-0cdef-registry.cn-hangzhou.cr.aliyuncs.com",
                                                     "registry.cn-hangzhou.aliyuncs.com"))
    with pytest.raises(PromotionError, match="only a personal-edition stack has"):
        _run_with(exports)


def test_source_password_in_plain_text_is_refused(preflight_calls):
    with pytest.raises(ConfigError, match="acr-publish:sourcePassword is stored in plain text"):
        run_stack("local-release", {"acr-publish:sourceUsername": "u", "acr-publish:sourcePassword": "plain"})


# --- the error type, the source's exports and hosts ---------------------------------------------------------

def test_promotion_errors_are_run_errors_printed_without_a_traceback(preflight_calls):
    import pulumi

    assert issubclass(PromotionError, AcrPublishError)
    exports = source_exports("staging")["dev"]
    exports["images"] = {}
    with pytest.raises(pulumi.RunError) as err:
        _run_with(exports, as_engine=True)
    assert type(err.value) is pulumi.RunError and isinstance(reported_error(err.value), PromotionError)


PERSONAL = {"acr-publish:registry": {"edition": "personal", "endpoint": "public", "namespace": "acme-personal",
                                     "username": "deployer@example.com"},
            "acr-publish:registryPassword": {"secure": "x"}}


def _classic_source(host: str, region: str | None = "cn-hangzhou") -> dict:
    exports = source_exports("staging")["dev"]
    exports["registryInstance"] = {"edition": "personal", "instanceId": None, "region": region}
    return json.loads(json.dumps(exports).replace("acme-0cdef-registry.cn-hangzhou.cr.aliyuncs.com", host))


@pytest.mark.parametrize("host", ["registry.cn-hangzhou.aliyuncs.com", "registry-vpc.cn-hangzhou.aliyuncs.com"])
def test_a_classic_source_on_its_regions_classic_host_gets_this_stacks_login(host, preflight_calls):
    run = _run_with(_classic_source(host), PERSONAL)
    web = run.by_name("web-promote")
    assert web.inputs["sourceServer"] == host
    assert web.inputs["sourceAuth"] == {"username": "deployer@example.com", "password": TEST_SECRET}


@pytest.mark.parametrize("host,region", [("attacker.example.com", "cn-hangzhou"),
                                         ("registry.cn-shanghai.aliyuncs.com", "cn-hangzhou"),
                                         ("registry-vpc.cn-hangzhou.aliyuncs.com", None),
                                         ("registry-vpc.cn-hangzhou.aliyuncs.com", "cn-hangzhou.evil")])
def test_a_classic_source_elsewhere_never_gets_this_stacks_password(host, region, preflight_calls):
    records: list = []
    with pytest.raises(PromotionError) as err:
        _run_with(_classic_source(host, region), PERSONAL, records=records)
    text = str(err.value)
    assert "is not that region's classic registry host" in text and "'dev'" in text, text
    assert "account password is sent only to ACR's classic host" in text
    assert records == [] and preflight_calls.sources == [], "nothing declared, no login sent"
    assert TEST_SECRET not in text


@pytest.mark.parametrize("host", ["127.0.0.1:5999/x", "bad host", "127.0.0.1:99999", "https://127.0.0.1:5999"])
def test_a_local_source_host_must_be_a_registry_host(host, preflight_calls):
    exports = source_exports("local-release")
    exports["local"] = json.loads(json.dumps(exports["local"]).replace("127.0.0.1:5000", host))
    records: list = []
    rule = r"'local' \(acr-publish:promoteFrom\): its export registry .* is not a registry host\[:port\]"
    with pytest.raises(PromotionError, match=rule):
        run_stack("local-release", {"acr-publish:sourceUsername": "reader",
                                    "acr-publish:sourcePassword": {"secure": "x"}},
                  mocks=StackMocks(stacks=exports), records=records)
    assert records == [] and preflight_calls.sources == []


def _bad_export(field: str, value: str) -> str:
    exports = source_exports("staging")["dev"]
    exports["images"]["web"][field] = value
    records: list = []
    with pytest.raises(PromotionError) as err:
        _run_with(exports, records=records)
    assert records == [], [r.urn for r in records]
    text = str(err.value)
    assert "'staging' promotes from stack 'dev'" in text and "images.web" in text and "pulumi up -s dev" in text
    return text


def test_an_exported_ref_must_carry_a_sha256_digest(preflight_calls):
    repo = "acme-0cdef-registry.cn-hangzhou.cr.aliyuncs.com/acme-dev/web"
    for digest in ("sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha256:" + "a" * 64 + "/x"):
        text = _bad_export("ref", f"{repo}@{digest}")
        assert "is not sha256: and 64 lowercase hex digits" in text, text


@pytest.mark.parametrize("tag", ["-t", ".t", "t/x", "a" * 129, "t:x", ""])
def test_an_exported_tag_must_be_a_docker_tag(tag, preflight_calls):
    assert "is not a Docker tag" in _bad_export("tag", tag)


def test_an_exported_repository_must_be_on_the_exported_registry(preflight_calls):
    exports = source_exports("staging")["dev"]
    web = exports["images"]["web"]
    digest = web["ref"].split("@")[1]
    for repository, rule in [("attacker.example.com/acme-dev/web", "is not on the registry"),
                             (f"{exports['registry']}/Acme/web", "repository path 'Acme/web' is invalid")]:
        text = _bad_export("repository", repository)
        assert "digest-pinned ref" in text, "ref no longer on that repository: refused as before"
        exports2 = source_exports("staging")["dev"]
        exports2["images"]["web"].update(repository=repository, ref=f"{repository}@{digest}")
        with pytest.raises(PromotionError) as err:
            _run_with(exports2)
        assert rule in str(err.value), str(err.value)


def test_exported_image_names_are_checked_when_every_image_is_promoted(preflight_calls):
    exports = source_exports("staging")["dev"]
    exports["images"]["../Evil"] = exports["images"]["web"]
    with pytest.raises(PromotionError, match=r"'dev'.* names '../Evil', which is not an image name"):
        _run_with(exports, {"acr-publish:images": None})
