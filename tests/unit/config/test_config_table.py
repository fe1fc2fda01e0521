"""The rule tables themselves: every row is exercised by a failing value, every edition that needs a key says it is
missing, every edition that does not use one says so. A row dropped or changed in a table fails here by name.
"""
from __future__ import annotations

import pytest

from components.config.image_rules import IMAGE_TABLE
from components.config.registry_rules import EDITION, PASSWORD_KEY, REGION_KEY, REGISTRY_TABLE
from components.config.schema import EDITIONS, IMAGE_KEYS, REGISTRY_KEYS
from tests.configcases import EE, LOCAL, PERSONAL, WEB, problems

TABLES = {"registry": (EDITION, *REGISTRY_TABLE), "image": IMAGE_TABLE}
BASE = {"enterprise": EE, "personal": PERSONAL, "local": LOCAL}
"""A valid registry of each edition (personal with a password of a valid length)."""


def image(**values) -> dict:
    return {"images": [{**WEB, **values}]}


def registry(of: str, **values) -> dict:
    """A valid registry of edition `of` with `values` set (None: the key removed)."""
    base = {k: v for k, v in BASE[of].items() if values.get(k, "") is not None}
    return {"registry": {**base, **{k: v for k, v in values.items() if v is not None}}}


FAILING = {
    "edition": (registry("enterprise", edition="Enterprise"), "acr-publish:registry.edition 'Enterprise' is invalid"),
    "instanceId": (registry("enterprise", instanceId="cri-short"), "acr-publish:registry.instanceId 'cri-short' is invalid"),
    "endpoint": (registry("enterprise", endpoint="internal"), "acr-publish:registry.endpoint 'internal' is invalid"),
    "namespace": (registry("enterprise", namespace="-acme"), "acr-publish:registry.namespace '-acme' is invalid"),
    "createNamespace": (registry("enterprise", createNamespace="maybe"),
                        "acr-publish:registry.createNamespace 'maybe' is invalid: it must be true or false"),
    "visibility": (registry("enterprise", visibility="open"), "acr-publish:registry.visibility 'open' is invalid"),
    "server": (registry("local", server="http://x:5000"), "acr-publish:registry.server 'http://x:5000' is invalid"),
    "username": (registry("local", username="a:b"), "acr-publish:registry.username 'a:b' is invalid"),
    PASSWORD_KEY: ({**registry("personal"), "password_length": 3},
                   "acr-publish:registryPassword (a secret, not shown) is invalid: it is shorter than ACR allows"),
    REGION_KEY: ({"region": "Hangzhou"}, "alicloud:region 'Hangzhou' is invalid"),
    "name": (image(name="Web"), "acr-publish:images[0].name 'Web' is invalid"),
    "context": (image(context="/app"), "acr-publish:images[0].context '/app' is invalid"),
    "dockerfile": (image(dockerfile="nope/Dockerfile"), "acr-publish:images[0].dockerfile 'nope/Dockerfile' is invalid"),
    "platform": (image(platform="amd64"), "acr-publish:images[0].platform 'amd64' is invalid"),
    "platforms": (image(platforms=["linux/amd64", "linux/x86_64"]),
                  "acr-publish:images[0].platforms[1] 'linux/x86_64' is invalid: it is the platform"),
    "target": (image(target="1web"), "acr-publish:images[0].target '1web' is invalid"),
    "buildArgs": (image(buildArgs="A=1"), "acr-publish:images[0].buildArgs is a str, not a map"),
    "cacheFrom": (image(cacheFrom="sometimes"), "acr-publish:images[0].cacheFrom 'sometimes' is invalid"),
    "remoteInputs": (image(remoteInputs="Pinned"), "acr-publish:images[0].remoteInputs 'Pinned' is invalid"),
    "audit": (image(audit="strict"), "acr-publish:images[0].audit 'strict' is invalid"),
    "summary": (image(summary="x" * 81), "acr-publish:images[0].summary is 81 chars"),
    "tagImmutability": (image(tagImmutability="maybe"), "acr-publish:images[0].tagImmutability 'maybe' is invalid"),
    "allowSensitive": (image(allowSensitive="www/.env"), "acr-publish:images[0].allowSensitive 'www/.env' is invalid"),
}
"""Per table key: values that break its rule (passed to tests.configcases.problems) and the start of the message."""
VALID = {"instanceId": "cri-0123456789abcdef", "endpoint": "vpc", "createNamespace": False,
         "server": "127.0.0.1:5000", "username": "deployer", "tagImmutability": True}
"""A valid value of each key some edition does not use."""


def rows():
    return [rule for table in TABLES.values() for rule in table]


def run(case: dict) -> list[str]:
    case = dict(case)
    if case.get("registry", {}).get("edition") in ("personal", "local") or "password_length" in case:
        case.setdefault("has_password", case.get("registry", {}).get("edition") != "local"
                        or "username" in case.get("registry", {}))
        case.setdefault("password_length", 12)
    return problems(**case)


def test_every_row_has_a_failing_value_case():
    assert sorted(FAILING) == sorted(rule.key for rule in rows())


def test_no_other_edition_needs_or_refuses_a_key():
    for rule in rows():
        assert {e for e in EDITIONS if rule.needed_by(e)} == set(NEEDED.get(rule.key, ())), rule.key
        refused = rule.applies_to is not None or rule.not_used is not None
        assert {e for e in EDITIONS if refused and not rule.used_by(e)} == set(NOT_USED.get(rule.key, ())), rule.key


def test_the_tables_hold_every_key_of_their_maps():
    assert {r.key for r in TABLES["registry"] if ":" not in r.key} == set(REGISTRY_KEYS)
    assert {r.key for r in TABLES["image"]} == set(IMAGE_KEYS)


@pytest.mark.parametrize("key", sorted(FAILING))
def test_a_failing_value_breaks_its_rows_rule(key):
    case, expected = FAILING[key]
    found = run(case)
    assert any(p.startswith(expected) for p in found), (key, found)


@pytest.mark.parametrize("rule", [r for r in rows() if r.kind in ("string", "user")], ids=lambda r: r.key)
def test_an_empty_string_is_refused_with_the_rows_fix(rule):
    edition = "local" if "local" in rule.editions and rule.editions != EDITIONS else "enterprise"
    case = registry(edition, **{rule.key: " "}) if rule in TABLES["registry"] else image(**{rule.key: " "})
    found = run(case)
    assert any(f".{rule.key} ' ' is invalid: it is empty; " in p for p in found), (rule.key, found)


NEEDED = {"edition": EDITIONS, "instanceId": ("enterprise",), "namespace": ("enterprise", "personal"),
          "username": ("personal",), PASSWORD_KEY: ("personal",), REGION_KEY: ("enterprise", "personal"),
          "name": EDITIONS, "context": EDITIONS}
"""The editions that need each key: written out here, not read from the tables, so a row that loses one fails."""
NOT_USED = {"instanceId": ("personal", "local"), "endpoint": ("local",), "createNamespace": ("local",),
            "server": ("enterprise", "personal"), "username": ("enterprise",), PASSWORD_KEY: ("enterprise",),
            "tagImmutability": ("personal", "local")}
"""The editions that refuse each key as not used by them (written out, as NEEDED)."""
RULES = {rule.key: rule for rule in rows()}


def _cases(spec: dict):
    return [pytest.param(RULES[key], edition, id=f"{key}-{edition}") for key, editions in spec.items()
            for edition in editions]


@pytest.mark.parametrize("rule,edition", _cases(NEEDED))
def test_a_key_an_edition_needs_is_missing_when_absent(rule, edition):
    case: dict = registry(edition)
    if rule.key == PASSWORD_KEY:
        case["has_password"] = False
    elif rule.key == REGION_KEY:
        case["region"] = None
    elif rule in TABLES["registry"]:
        case = registry(edition, **{rule.key: None})
    else:
        case["images"] = [{k: v for k, v in WEB.items() if k != rule.key}]
    found = problems(**{"has_password": edition == "personal", **case})
    assert any(p.startswith(f"{'' if ':' in rule.key else 'acr-publish:'}") and f"{rule.key} is missing: " in p
               for p in found), (rule.key, edition, found)


@pytest.mark.parametrize("rule,edition", _cases(NOT_USED))
def test_a_key_an_edition_does_not_use_is_refused_there(rule, edition):
    case: dict = registry(edition)
    if rule.key == PASSWORD_KEY:
        case.update(has_password=True, password_length=12)
    elif rule in TABLES["registry"]:
        case = registry(edition, **{rule.key: VALID[rule.key]})
    else:
        case["images"] = [{**WEB, rule.key: VALID[rule.key]}]
    found = problems(**case)
    assert any(f"{rule.key} " in p and f"is not used by edition {edition}" in p.replace("'", "") for p in found), \
        (rule.key, edition, found)
