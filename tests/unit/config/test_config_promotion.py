"""acr-publish:promoteFrom and the keys of a promoting stack: each rule with its message.
"""
from __future__ import annotations

import pytest

from components.config.problems import ConfigError
from components.config.validate import settings_from_values

EE = {"edition": "enterprise", "instanceId": "cri-1123456789abcdef", "namespace": "acme-staging"}


def _problems(values: dict, stack: str = "staging", **kw) -> list[str]:
    with pytest.raises(ConfigError) as err:
        settings_from_values(stack, {"registry": EE, **values}, region="cn-hangzhou", has_password=False, **kw)
    return err.value.problems


def test_promoting_stack_settings():
    s = settings_from_values("staging", {"registry": EE, "promoteFrom": "dev", "images": [
        {"name": "web", "summary": "Web", "tagImmutability": False}]}, region="cn-hangzhou", has_password=False)
    assert s.images == () and s.promotion.source_stack == "dev" and s.promotion.images_configured
    assert [(i.name, i.summary, i.tag_immutability) for i in s.promoted_images] == [("web", "Web", False)]
    s = settings_from_values("staging", {"registry": EE, "promoteFrom": "acme/acr-publish/dev"},
                             region="cn-hangzhou", has_password=False)
    assert s.promoted_images == () and not s.promotion.images_configured


def test_promoting_from_itself_is_refused():
    [p] = _problems({"promoteFrom": "staging"})
    assert p.startswith("acr-publish:promoteFrom 'staging' is this stack ('staging')") and "promoteFrom: dev" in p
    [p] = _problems({"promoteFrom": "org/acr-publish/staging"}, organization="org")
    assert "is this stack" in p
    settings_from_values("staging", {"registry": EE, "promoteFrom": "other-org/acr-publish/staging"},
                         region="cn-hangzhou", has_password=False, organization="org")


@pytest.mark.parametrize("value", ["a/b", "dev stack", "", "org/proj/st/x"])
def test_malformed_promote_from_is_refused(value):
    problems = _problems({"promoteFrom": value})
    assert any(p.startswith(f"acr-publish:promoteFrom {value!r} is invalid") for p in problems), problems


@pytest.mark.parametrize("key,value", [("context", "app"), ("dockerfile", "app/Dockerfile"), ("buildArgs", {"A": "b"}),
                                       ("target", "web"), ("platform", "linux/amd64"), ("allowSensitive", [])])
def test_build_keys_on_promoted_images_are_refused(key, value):
    [p] = _problems({"promoteFrom": "dev", "images": [{"name": "web", key: value}]})
    assert p.startswith(f"acr-publish:images[0].{key} is not used when the stack promotes (acr-publish:promoteFrom: "
                        "dev)") and f"remove {key}" in p


def test_promoted_image_rules():
    problems = _problems({"promoteFrom": "dev", "images": [{"name": "Web"}, {"summary": "x"}, {"name": "w2"},
                                                           {"name": "w2"}, {"name": "w3", "summry": "x"}]})
    assert any("acr-publish:images[0].name 'Web' is invalid" in p for p in problems)
    assert any("acr-publish:images[1].name is missing: name the image of 'dev'" in p for p in problems)
    assert any("acr-publish:images[3].name 'w2' is a duplicate" in p for p in problems)
    assert any("acr-publish:images[4].summry is not a known setting: did you mean 'summary'?" in p for p in problems)
    [p] = _problems({"promoteFrom": "dev", "images": []})
    assert "omit it to promote every image 'dev' exports" in p


def test_source_credentials_rules():
    images = {"images": [{"name": "web", "context": "app", "target": "web"}]}
    [p] = _problems({"sourceUsername": "u", **images})
    assert p.startswith("acr-publish:sourceUsername is only used with acr-publish:promoteFrom")
    [p] = _problems(images, has_source_password=True)
    assert p.startswith("acr-publish:sourcePassword is only used with acr-publish:promoteFrom")
    [p] = _problems({"promoteFrom": "dev", "sourceUsername": "u"})
    assert "sourcePassword is not" in p and "pulumi config set --secret acr-publish:sourcePassword" in p
    [p] = _problems({"promoteFrom": "dev"}, has_source_password=True)
    assert "sourceUsername is not" in p


# --- the provider's lifecycle (its methods, as the engine calls them through pulumi.dynamic) ------------------
