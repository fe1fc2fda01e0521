"""One test per validation rule of components/settings.py, each with its message checked.

Messages must name the key path, the value given, the rule and the fix; all problems are reported at once.
"""
from __future__ import annotations

import pytest

from components.config.problems import ConfigError
from components.config.schema import AuditSettings, Settings
from components.config.stackfile import load_stack_file
from components.config.validate import settings_from_values
from tests.harness import STACKS, run_stack

EE = {"edition": "enterprise", "instanceId": "cri-0123456789abcdef", "namespace": "acme"}
WEB = {"name": "web", "context": "app", "target": "web"}


def problems(values=None, *, region="cn-hangzhou", has_password=False, stack="dev", registry=None, images=None,
             **top) -> list[str]:
    vals = dict(values or {})
    vals.setdefault("registry", registry if registry is not None else EE)
    vals.setdefault("images", images if images is not None else [WEB])
    vals.update(top)
    try:
        settings_from_values(stack, vals, region=region, has_password=has_password)
    except ConfigError as err:
        assert str(err).count("\n") == len(err.problems)
        return err.problems
    return []


def one(*args, **kwargs) -> str:
    found = problems(*args, **kwargs)
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stack_files_are_valid(stack):
    assert isinstance(load_stack_file(stack), Settings)


def test_the_classic_example_leaves_its_password_to_the_user():
    """No placeholder ciphertext (it could never decrypt): until the user sets it, the message says how."""
    with pytest.raises(ConfigError) as err:
        load_stack_file("personal-example", secrets_set=False)
    assert err.value.problems == [
        "acr-publish:registryPassword is missing: edition personal needs the registry login password; set it with "
        "`pulumi config set --secret acr-publish:registryPassword <password> -s personal-example`"
    ]


def test_valid_enterprise_defaults():
    s = settings_from_values("dev", {"registry": EE, "images": [WEB]}, region="cn-hangzhou", has_password=False)
    assert s.registry.endpoint == "public" and s.registry.visibility == "PRIVATE" and s.registry.create_namespace
    img = s.images[0]
    assert img.platform == "linux/amd64" and img.dockerfile == "app/Dockerfile" and img.summary == "web image"
    assert img.tag_immutability is True
    assert s.protect is False and s.retain_on_delete is True and s.preflight is True


def test_protect_defaults_to_true_for_prod_stacks():
    s = settings_from_values("prod-eu", {"registry": EE, "images": [WEB]}, region="cn-hangzhou", has_password=False)
    assert s.protect is True


def test_edition_value():
    msg = one(registry={**EE, "edition": "Enterprise"})
    assert "acr-publish:registry.edition 'Enterprise' is invalid" in msg and "try 'enterprise'" in msg


def test_edition_missing():
    assert "acr-publish:registry.edition is missing" in one(registry={"namespace": "acme"}, region=None) \
        or any("edition is missing" in p for p in problems(registry={"namespace": "acme"}))


def test_endpoint_value():
    msg = one(registry={**EE, "endpoint": "internal"})
    assert "acr-publish:registry.endpoint 'internal' is invalid: it must be one of public, vpc" in msg


def test_visibility_value():
    msg = one(registry={**EE, "visibility": "private"})
    assert "acr-publish:registry.visibility 'private' is invalid" in msg and "try 'PRIVATE'" in msg


@pytest.mark.parametrize("bad", ["cr-0123456789abcdef", "cri-ABCDEF0123456789", "cri-short", "0123456789"])
def test_instance_id_format(bad):
    msg = one(registry={**EE, "instanceId": bad})
    assert f"acr-publish:registry.instanceId {bad!r} is invalid" in msg and "cri-" in msg and "crpi-" in msg


def test_instance_id_required_for_enterprise():
    msg = one(registry={"edition": "enterprise", "namespace": "acme"})
    assert "acr-publish:registry.instanceId is missing" in msg


def test_crpi_instance_ids_are_accepted():
    assert problems(registry={**EE, "instanceId": "crpi-k3x9abcd1234efgh"}) == []


def test_region_required_outside_local():
    msg = one(region=None)
    assert "alicloud:region is missing" in msg and "cn-beijing" in msg and "pulumi config set alicloud:region" in msg


def test_region_format():
    assert "alicloud:region 'Hangzhou' is invalid" in one(region="Hangzhou")


def test_region_not_needed_for_local():
    assert problems(registry={"edition": "local"}, region=None) == []


@pytest.mark.parametrize("ns", ["A", "acme_", "-acme", "x" * 31, "ac me"])
def test_classic_namespace_rule(ns):
    msg = one(registry={"edition": "personal", "namespace": ns, "username": "u"}, has_password=True)
    assert f"acr-publish:registry.namespace {ns!r} is invalid" in msg and "2-30 chars" in msg and "try" in msg


@pytest.mark.parametrize("ns", ["a", ".acme", "acme.", "Acme", "x" * 121])
def test_enterprise_namespace_rule(ns):
    msg = one(registry={**EE, "namespace": ns})
    assert f"acr-publish:registry.namespace {ns!r} is invalid" in msg and "2-120 chars" in msg


def test_enterprise_namespace_allows_dots_and_long_names():
    assert problems(registry={**EE, "namespace": "team.platform-" + "x" * 100}) == []


def test_namespace_required_for_cloud_editions():
    assert "acr-publish:registry.namespace is missing" in one(registry={k: v for k, v in EE.items() if k != "namespace"})


@pytest.mark.parametrize("name", ["Web", "w", "web_-api", "-web", "x" * 31, "web/api"])
def test_repository_name_rule(name):
    msg = one(images=[{**WEB, "name": name}])
    assert f"acr-publish:images[0].name {name!r} is invalid: repository names are 2-30 chars" in msg and "try" in msg


def test_image_name_required():
    assert "acr-publish:images[0].name is missing" in one(images=[{"context": "app"}])


def test_unique_image_names():
    msg = one(images=[WEB, {**WEB}])
    assert "acr-publish:images[1].name 'web' is a duplicate of acr-publish:images[0].name" in msg


def test_images_required():
    assert "acr-publish:images is missing" in problems(images=None, values={"registry": EE, "images": None})[0]


def test_summary_length():
    msg = one(images=[{**WEB, "summary": "s" * 81}])
    assert "acr-publish:images[0].summary is 81 chars" in msg and "1-80" in msg


@pytest.mark.parametrize("platform", ["amd64", "linux", "Linux/AMD64", "linux/amd64/v8/x"])
def test_platform_format(platform):
    msg = one(images=[{**WEB, "platform": platform}])
    assert f"acr-publish:images[0].platform {platform!r} is invalid: it must be os/arch[/variant]" in msg


def test_platform_variant_is_accepted():
    assert problems(images=[{**WEB, "platform": "linux/arm64/v8"}]) == []


def test_context_must_exist():
    msg = one(images=[{**WEB, "context": "nope"}])
    assert "acr-publish:images[0].context 'nope' is invalid: no directory" in msg and "relative to the project root" in msg


def test_context_must_be_relative():
    assert "write it relative" in one(images=[{**WEB, "context": "/abs/app"}])


def test_context_required():
    assert "acr-publish:images[0].context is missing" in one(images=[{"name": "web"}])


def test_dockerfile_must_exist():
    msg = one(images=[{**WEB, "dockerfile": "app/Dockerfile.nope"}])
    assert "acr-publish:images[0].dockerfile 'app/Dockerfile.nope' is invalid: no file" in msg


def test_default_dockerfile_must_exist():
    msg = one(images=[{**WEB, "context": "app/www"}])
    assert "acr-publish:images[0].dockerfile is unset and the default 'app/www/Dockerfile' does not exist" in msg


def test_build_args_are_strings_and_their_values_are_never_printed():
    msg = one(images=[{**WEB, "buildArgs": {"API_TOKEN": 918273645}}])
    assert "acr-publish:images[0].buildArgs.API_TOKEN is a int, not a string: build args are strings; quote" in msg
    assert "918273645" not in msg, "a build arg value (possibly a secret) reached the message"


def test_build_args_must_be_a_map():
    msg = one(images=[{**WEB, "buildArgs": ["SECRET=abc123"]}])
    assert "acr-publish:images[0].buildArgs is a list, not a map" in msg and "abc123" not in msg


def test_build_arg_names():
    assert "buildArgs key '1X' is invalid" in one(images=[{**WEB, "buildArgs": {"1X": "a"}}])


def test_target_name():
    assert "acr-publish:images[0].target 'no stage' is invalid" in one(images=[{**WEB, "target": "no stage"}])


def test_password_required_for_personal_with_exact_command():
    msg = one(registry={"edition": "personal", "namespace": "acme", "username": "u"}, stack="personal-example")
    assert "acr-publish:registryPassword is missing" in msg
    assert "`pulumi config set --secret acr-publish:registryPassword <password> -s personal-example`" in msg


def test_username_required_for_personal():
    msg = one(registry={"edition": "personal", "namespace": "acme"}, has_password=True)
    assert "acr-publish:registry.username is missing" in msg


def test_tag_immutability_only_with_enterprise():
    msg = one(registry={"edition": "local"}, images=[{**WEB, "tagImmutability": True}])
    assert "acr-publish:images[0].tagImmutability True is not used by edition 'local'" in msg


def test_password_unused_for_enterprise():
    assert "acr-publish:registryPassword is not used by edition enterprise" in one(has_password=True)


def test_local_username_and_password_together():
    assert "must be set together" in one(registry={"edition": "local", "username": "dev"})


def test_server_only_for_local():
    assert "acr-publish:registry.server '1.2.3.4' is not used by edition 'enterprise'" in one(
        registry={**EE, "server": "1.2.3.4"})


def test_local_server_format():
    assert "acr-publish:registry.server 'http://x:5000' is invalid" in one(
        registry={"edition": "local", "server": "http://x:5000"})


@pytest.mark.parametrize("path,key,valid,expected", [
    ("acr-publish:registry", "namspace", EE, "acr-publish:registry.namspace is not a known setting: did you mean 'namespace'?"),
    ("acr-publish:images[0]", "dockerFile", None, "acr-publish:images[0].dockerFile is not a known setting: did you mean 'dockerfile'?"),
    ("acr-publish", "retainOnDelet", None, "acr-publish:retainOnDelet is not a known setting: did you mean 'retainOnDelete'?"),
])
def test_unknown_keys_suggest_the_closest(path, key, valid, expected):
    if path == "acr-publish:registry":
        found = problems(registry={**EE, key: "acme"})
    elif path.startswith("acr-publish:images"):
        found = problems(images=[{**WEB, key: "x"}])
    else:
        found = problems(**{key: True})
    assert expected in found


def test_booleans_are_checked():
    assert "acr-publish:protect 'yes' is invalid: it must be true or false" in one(protect="yes")


def test_every_problem_is_reported_at_once():
    found = problems(registry={**EE, "instanceId": "bad", "visibility": "secret"}, region=None,
                     images=[{**WEB, "name": "Web", "platform": "x"}, {"context": "nope"}])
    assert len(found) >= 6, found


def test_the_program_reports_config_errors_before_declaring_anything(preflight_calls):
    with pytest.raises(ConfigError) as err:
        run_stack("dev", {"acr-publish:registry": {**EE, "visibility": "open"}, "alicloud:region": None})
    assert "visibility 'open'" in str(err.value) and "alicloud:region is missing" in str(err.value)
    assert not preflight_calls


def test_a_plaintext_password_is_refused(preflight_calls):
    with pytest.raises(ConfigError, match="registryPassword is stored in plain text.*--secret"):
        run_stack("personal-example", {"acr-publish:registryPassword": "hunter2-plain"})


@pytest.mark.parametrize("bad,rule", [
    ("..", "it points outside the build context"),
    ("../etc", "it points outside the build context"),
    ("www/../..", "it points outside the build context"),
    (".", "it names the whole build context"),
    ("./", "it names the whole build context"),
    ("/etc/passwd", "it is an absolute path"),
    ("", "it must be a non-empty path"),
    ("  ", "it must be a non-empty path"),
])
def test_allow_sensitive_entries_are_checked_like_the_guard_does(bad, rule):
    msg = one(images=[{**WEB, "allowSensitive": ["www/.env", bad]}])
    assert msg.startswith(f"acr-publish:images[0].allowSensitive[1] {bad!r} is invalid: {rule}"), msg
    assert "; " in msg.split(rule, 1)[1], f"no fix given: {msg}"


def test_allow_sensitive_absolute_path_suggests_the_relative_one():
    assert "try 'www/.env'" in one(images=[{**WEB, "allowSensitive": ["/www/.env"]}])


def test_allow_sensitive_must_be_a_list_of_strings():
    assert "acr-publish:images[0].allowSensitive 'www/.env' is invalid: it must be a list" in one(
        images=[{**WEB, "allowSensitive": "www/.env"}])
    assert "acr-publish:images[0].allowSensitive[0] 3 is invalid: it must be a non-empty path" in one(
        images=[{**WEB, "allowSensitive": [3]}])


def test_valid_allow_sensitive_entries_are_kept():
    s = settings_from_values("dev", {"registry": EE, "images": [{**WEB, "allowSensitive": ["www/.env", "./keys/"]}]},
                             region="cn-hangzhou", has_password=False)
    assert s.images[0].allow_sensitive == ("www/.env", "./keys/")


# --- audit: per image (the layer audit's thresholds) ---------------------------------------------

def test_audit_defaults_report_only_except_sensitive_in_prod():
    dev = settings_from_values("dev", {"registry": EE, "images": [WEB]}, region="cn-hangzhou", has_password=False)
    assert dev.images[0].audit == AuditSettings(None, None, False, ())
    prod = settings_from_values("prod-eu", {"registry": EE, "images": [WEB]}, region="cn-hangzhou",
                                has_password=False)
    assert prod.images[0].audit.fail_on_sensitive is True


def test_audit_values_are_read():
    image = {**WEB, "audit": {"maxWastedBytes": 1048576, "maxWastedPercent": 12.5, "failOnSensitive": False,
                              "allowSensitive": ["/etc/ssl/private/", "./srv/key.pem"]}}
    s = settings_from_values("prod", {"registry": EE, "images": [image]}, region="cn-hangzhou", has_password=False)
    assert s.images[0].audit == AuditSettings(1048576, 12.5, False, ("etc/ssl/private", "srv/key.pem"))


@pytest.mark.parametrize("audit,expected", [
    ("yes", "acr-publish:images[0].audit 'yes' is invalid: it must be a map"),
    ({"maxWastedBytes": -1}, "acr-publish:images[0].audit.maxWastedBytes -1 is invalid: it must be a whole number"),
    ({"maxWastedBytes": "10MB"}, "acr-publish:images[0].audit.maxWastedBytes '10MB' is invalid"),
    ({"maxWastedBytes": True}, "acr-publish:images[0].audit.maxWastedBytes True is invalid"),
    ({"maxWastedPercent": 101}, "acr-publish:images[0].audit.maxWastedPercent 101 is invalid: it must be a number "
                                "from 0 to 100"),
    ({"failOnSensitive": "no"}, "acr-publish:images[0].audit.failOnSensitive"),
    ({"allowSensitive": "etc"}, "acr-publish:images[0].audit.allowSensitive 'etc' is invalid: it must be a list"),
    ({"allowSensitive": ["../x"]}, "acr-publish:images[0].audit.allowSensitive[0] '../x' is invalid: it points "
                                   "outside the image"),
    ({"allowSensitive": ["buildArg:TOKEN"]}, "acr-publish:images[0].audit.allowSensitive[0] 'buildArg:TOKEN' is "
                                             "invalid: build args are not in an image's layers"),
    ({"maxWastedPercnt": 5}, "acr-publish:images[0].audit.maxWastedPercnt is not a known setting"),
])
def test_audit_rules(audit, expected):
    message = one(images=[{**WEB, "audit": audit}])
    assert message.startswith(expected), message


def test_a_promoting_stack_takes_audit_per_image():
    values = {"registry": EE, "promoteFrom": "staging",
              "images": [{"name": "web", "audit": {"allowSensitive": ["etc/ssl/private/snakeoil.key"]}}]}
    s = settings_from_values("prod", values, region="cn-hangzhou", has_password=False)
    assert s.promoted_images[0].audit == AuditSettings(None, None, True, ("etc/ssl/private/snakeoil.key",))
    bad = {**values, "images": [{"name": "web", "audit": {"maxWastedPercent": -3}}]}
    assert "acr-publish:images[0].audit.maxWastedPercent -3 is invalid" in one(bad, stack="prod")
