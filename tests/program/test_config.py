"""Stack configuration through the real __main__.py under mocks: a problem is reported before anything is declared,
and values reach the program as the engine hands them.
"""
from __future__ import annotations

import json
import os

import pulumi
import pytest

from components.config.problems import ConfigError
from components.promotion import PromotionError
from tests import harness
from tests.configcases import EE
from tests.harness import PROJECT_ROOT, StackMocks, TEST_SECRET, reported_error, run_stack, source_exports


def test_the_program_refuses_an_escape_before_declaring_anything(preflight_calls):
    records: list = []
    images = [{"name": "web", "context": os.path.relpath("/etc", PROJECT_ROOT), "target": "web"}]
    with pytest.raises(pulumi.RunError, match="outside the repository that holds the project") as err:
        run_stack("local", {"acr-publish:images": images}, records=records, as_engine=True)
    assert isinstance(reported_error(err.value), ConfigError)
    assert records == [] and not preflight_calls


def test_the_program_reports_a_long_component_as_a_config_error(preflight_calls):
    with pytest.raises(pulumi.RunError, match="is 300 bytes, and a file name is at most 255 bytes") as err:
        run_stack("local", {"acr-publish:images": [{"name": "web", "context": "a" * 300}]}, as_engine=True)
    assert isinstance(reported_error(err.value), ConfigError), "the engine would print a traceback otherwise"


def test_the_program_measures_the_decrypted_password(monkeypatch, preflight_calls):
    monkeypatch.setattr(harness, "TEST_SECRET", "abc")
    with pytest.raises(ConfigError) as err:
        run_stack("personal-example")
    assert err.value.problems == [
        "acr-publish:registryPassword (a secret, not shown) is invalid: it is shorter than ACR allows, and registry "
        "login passwords are 8-32 characters; set the password from Container Registry console > Access Credential "
        "with `pulumi config set --secret acr-publish:registryPassword <password> -s personal-example`"
    ]
    assert "abc" not in str(err.value) and not preflight_calls


def test_a_bad_port_is_refused_with_the_preflight_off(preflight_calls):
    records: list = []
    with pytest.raises(ConfigError, match="port 99999 is out of range"):
        run_stack("local", {"acr-publish:registry": {"edition": "local", "server": "127.0.0.1:99999"},
                            "acr-publish:preflight": False}, records=records)
    assert records == [] and not preflight_calls


def test_a_source_password_shorter_than_the_scrubbers_bound_is_refused(monkeypatch, preflight_calls):
    """sourcePassword goes into registry messages' scrubber like registryPassword: a 1-3 character one could be
    shown, so it is refused by the same bound, measured on the decrypted value and never printed."""
    monkeypatch.setattr(harness, "TEST_SECRET", "abc")
    with pytest.raises(ConfigError) as err:
        run_stack("local-release", {"acr-publish:sourceUsername": "u", "acr-publish:sourcePassword": {"secure": "x"}})
    assert any(p.startswith("acr-publish:sourcePassword (a secret, not shown) is invalid: it is shorter than "
                            "allowed; passwords here are 4-128 characters")
               for p in err.value.problems), err.value.problems
    assert "abc" not in str(err.value) and not preflight_calls


def test_the_program_reports_config_errors_before_declaring_anything(preflight_calls):
    with pytest.raises(ConfigError) as err:
        run_stack("dev", {"acr-publish:registry": {**EE, "visibility": "open"}, "alicloud:region": None})
    assert "visibility 'open'" in str(err.value) and "alicloud:region is missing" in str(err.value)
    assert not preflight_calls


def test_a_plaintext_password_is_refused(preflight_calls):
    with pytest.raises(ConfigError, match="registryPassword is stored in plain text.*--secret"):
        run_stack("personal-example", {"acr-publish:registryPassword": "hunter2-plain"})


def _staging_from(source_name: str):
    exports = source_exports("staging")
    return run_stack("staging", {"acr-publish:promoteFrom": source_name},
                     mocks=StackMocks(stacks={source_name: exports["dev"]}))


@pytest.mark.parametrize("source_name", ["2024", "true", "null", "1e3", "false"])
def test_a_quoted_stack_name_that_looks_like_json_is_a_stack_name(preflight_calls, source_name: str) -> None:
    run = _staging_from(source_name)
    assert run.of_type("pulumi-python:dynamic/acr-publish:Promotion"), f"promoteFrom {source_name!r} promoted nothing"


@pytest.mark.parametrize("user", ["1234567890", "null", "true", "[1]", "{}", "0x1f"])
def test_a_source_username_that_looks_like_json_is_the_user(preflight_calls, user: str) -> None:
    exports = source_exports("local-release")
    exports["local"] = json.loads(json.dumps(exports["local"]).replace("127.0.0.1:5000", "127.0.0.1:5999"))
    run_stack("local-release", {"acr-publish:sourceUsername": user, "acr-publish:sourcePassword": {"secure": "x"}},
              mocks=StackMocks(stacks=exports))
    endpoint = preflight_calls.sources[0][0]
    assert endpoint.username == user and endpoint.password == TEST_SECRET


def test_structured_keys_and_booleans_still_parse(preflight_calls) -> None:
    run = run_stack("local", {"acr-publish:preflight": "false", "acr-publish:protect": "true"})
    assert sorted(run.outputs["images"]) == ["web", "worker"]
    assert list(preflight_calls) == [], "preflight: false (handed over as the string false) turned the check off"


# --- login users ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [
    ("region", "not a region::x"), ("region", "cn-shanghai\n"), ("region", 42), ("region", None),
    ("instanceId", "cri-x"), ("instanceId", "cri-0123456789abcdef\n"), ("instanceId", None),
])
def test_an_enterprise_source_with_a_malformed_instance_export_declares_nothing(preflight_calls, key, value) -> None:
    exports = source_exports("staging")
    exports["dev"]["registryInstance"][key] = value
    records: list = []
    with pytest.raises(PromotionError, match=f"its export registryInstance {key}") as err:
        run_stack("staging", mocks=StackMocks(stacks=exports), records=records)
    assert records == [], f"declared {[r.urn for r in records]} for registryInstance.{key} {value!r}"
    assert preflight_calls.sources == [], "no source login was attempted"
    assert "pulumi up -s dev" in str(err.value)
