"""acr-publish:registry and the stack keys its edition decides about: each rule with its message.

Editions (enterprise, personal, local) use and need different keys; passwords are judged by length only, never shown.
"""
from __future__ import annotations


import pytest

from tests.configcases import EE, PERSONAL, WEB, one, problems


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


def test_password_required_for_personal_with_exact_command():
    msg = one(registry={"edition": "personal", "namespace": "acme", "username": "u"}, stack="personal-example")
    assert "acr-publish:registryPassword is missing" in msg
    assert "`pulumi config set --secret acr-publish:registryPassword <password> -s personal-example`" in msg


def test_username_required_for_personal():
    msg = one(registry={"edition": "personal", "namespace": "acme"}, has_password=True)
    assert "acr-publish:registry.username is missing" in msg


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


LOCAL_USER = {"edition": "local", "username": "dev"}
PERSONAL_LENGTH_RULE = (
    "than ACR allows, and registry login passwords are 8-32 characters; set the password from Container Registry "
    "console > Access Credential with `pulumi config set --secret acr-publish:registryPassword <password> -s dev`")
LOCAL_LENGTH_RULE = (
    "than allowed; passwords here are 4-128 characters (shorter ones cannot be kept out of messages, and a "
    "registry's htpasswd login reads only the first 72 bytes); set one on the local registry and with "
    "`pulumi config set --secret acr-publish:registryPassword <password> -s dev`")


@pytest.mark.parametrize("registry,length,shortest,rule", [
    *[(PERSONAL, length, 8, PERSONAL_LENGTH_RULE) for length in (3, 7, 8, 32, 33)],
    *[(LOCAL_USER, length, 4, LOCAL_LENGTH_RULE) for length in (1, 3, 4, 128, 129, 200, 131_072)],
])
def test_passwords_are_judged_by_length_never_shown(registry, length, shortest, rule):
    """ACR's personal passwords are 8-32 characters. A local one is at least what the scrubber masks (it leaves
    shorter strings alone, as they would mangle ordinary words, so a 1-3 character password could be shown) and
    at most what it builds masks for (the registry's htpasswd login reads 72 bytes of it anyway)."""
    found = problems(registry=registry, has_password=True, password_length=length)
    longest = 32 if shortest == 8 else 128
    if shortest <= length <= longest:
        assert found == []
    else:
        side = "shorter" if length < shortest else "longer"
        assert found == [f"acr-publish:registryPassword (a secret, not shown) is invalid: it is {side} {rule}"]
        assert str(length) not in found[0].replace("8-32", "").replace("4-128", ""), "the length must not be shown"


def test_the_local_password_rule_is_the_scrubbers_bound():
    from registryclient import Scrubber
    from registryclient.scrub import MIN_SCRUB_LEN, WITHHELD
    from components.config.registry_rules import LOCAL_PASSWORD_MIN

    assert LOCAL_PASSWORD_MIN == MIN_SCRUB_LEN
    scrub = Scrubber()
    scrub.add("w" * LOCAL_PASSWORD_MIN)
    assert scrub("login wwww refused") == WITHHELD
    assert scrub("login www refused") == "login www refused"


@pytest.mark.parametrize("server,rule", [
    ("127.0.0.1:99999", "the port 99999 is out of range: ports are 1-65535"),
    ("127.0.0.1:0", "the port 0 is out of range: ports are 1-65535"),
    ("127.0.0.1:", "the port '' is not a number"),
    ("127.0.0.1:5k", "the port '5k' is not a number"),
    ("reg_istry:5000", "the host must be a name or address"),
    ("-registry", "the host must be a name or address"),
    ("a..b", "the host must be a name or address"),
    ("::1", "an IPv6 address must be written in brackets"),
    ("[::1", "must be closed by ']'"),
    ("[nope]:5000", "is not an IPv6 address"),
    ("[::1]x", "only ':port' may follow"),
    ("http://127.0.0.1:5000", "without a scheme or path"),
])
def test_local_server_is_host_and_a_usable_port(server, rule):
    msg = one(images=[WEB], registry={"edition": "local", "server": server})
    assert msg.startswith(f"acr-publish:registry.server {server!r} is invalid: ") and rule in msg, msg
    assert msg.count("e.g.") == 1 and ":80" not in msg


@pytest.mark.parametrize("server", ["127.0.0.1:5000", "localhost", "[::1]:5000", "registry.local:443", "10.0.0.1"])
def test_valid_local_servers(server):
    assert problems(images=[WEB], registry={"edition": "local", "server": server}) == []


@pytest.mark.parametrize("key,registry,fix", [
    ("server", {"edition": "local"}, "remove the key to use the default 127.0.0.1:5000"),
    ("namespace", {"edition": "local"}, "remove the key to push to <server>/<image> without a namespace"),
    ("namespace", EE, "name the namespace, e.g. namespace: acme"),
    ("username", {"edition": "local"}, "give the registry login user"),
    ("instanceId", EE, "copy the instance id"),
])
@pytest.mark.parametrize("empty", ["", "  "])
def test_empty_registry_strings_are_refused_not_defaults(key, registry, fix, empty):
    found = problems(images=[WEB], registry={**registry, key: empty})
    mine = [p for p in found if p.startswith(f"acr-publish:registry.{key} ")]
    assert mine == [p for p in mine if f"{empty!r} is invalid: it is empty; {fix}" in p] and len(mine) == 1, found
