"""The whole of a stack's configuration: defaults, unknown and misspelled keys, true/false values, and every problem
reported at once, one line each, before anything is declared.
"""
from __future__ import annotations


import pytest

from components.config.problems import ConfigError
from components.config.validate import settings_from_values
from tests.configcases import EE, LOCAL, PERSONAL, WEB, one, problems


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


def test_every_silent_acceptance_is_reported_at_once(tmp_path):
    found = problems(
        images=[{"name": "web", "context": "app", "target": "nosuchstage", "platform": "foo/bar", "allowSensitive": ""},
         {"name": "api", "context": "app", "target": "web", "platform": ""}],
        registry={"edition": "local", "server": "127.0.0.1:0", "namespace": ""})
    keys = sorted(p.split(" ", 1)[0] for p in found)
    assert keys == ["acr-publish:images[0].allowSensitive", "acr-publish:images[0].platform",
                    "acr-publish:images[0].target", "acr-publish:images[1].platform",
                    "acr-publish:registry.namespace", "acr-publish:registry.server"], found


def test_an_unknown_top_level_key_is_named_with_the_project_colon():
    assert "acr-publish:imagez is not a known setting: did you mean 'images'?" in problems(
        images=[WEB], **{"imagez": []})


@pytest.mark.parametrize("key,registry,image", [
    ("acr-publish:images[0].name", EE, {"name": 5}),
    ("acr-publish:registry.instanceId", {**EE, "instanceId": 5}, {}),
    ("acr-publish:registry.namespace", {**EE, "namespace": 5}, {}),
    ("acr-publish:registry.username", {**PERSONAL, "username": 5}, {}),
    ("acr-publish:registry.edition", {**EE, "edition": 5}, {}),
    ("acr-publish:images[0].context", EE, {"context": 5}),
])
def test_a_wrong_type_is_one_line_not_also_missing(key, registry, image):
    found = problems(images=[{**WEB, **image}], registry=registry, has_password=True)
    assert len([p for p in found if p.startswith(key + " ")]) == 1, found
    assert not any(f"{key} is missing" in p for p in found), found


def test_config_errors_escape_control_characters_of_the_stack_name():
    with pytest.raises(ConfigError) as err:
        settings_from_values("dev\x1b[2J", {"registry": LOCAL}, region=None, has_password=False)
    assert "\x1b" not in str(err.value) and r"stack 'dev\x1b[2J'" in str(err.value)
