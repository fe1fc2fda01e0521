"""Pulumi.yaml's config schema against every stack file, with the rules the Pulumi CLI applies before a run.

The CLI (sdk/go/common/workspace, mergeConfig) makes a project-namespaced key declared without a default required in
every stack, requires `secure:` values for keys declared `secret: true`, and checks stack values against declared
types. A schema that broke one of these would stop `pulumi up` before the program runs, so it is checked here.
"""
from __future__ import annotations

import pytest
import yaml

from components.config import schema
from components.config.validate import settings_from_values
from tests.harness import PROJECT_ROOT, STACKS

PROJECT = yaml.safe_load((PROJECT_ROOT / "Pulumi.yaml").read_text())
SCHEMA = PROJECT.get("config") or {}
TYPES = {"boolean": bool, "string": str, "integer": int}


def test_project_settings():
    assert PROJECT["name"] == schema.PROJECT
    assert PROJECT["stackConfigDir"] == "stacks"
    assert PROJECT["runtime"]["name"] == "python"
    assert PROJECT["runtime"]["options"]["virtualenv"] == "venv"


def test_schema_keys_are_project_keys_with_type_default_and_description():
    assert SCHEMA, "Pulumi.yaml declares no config schema"
    for key, spec in SCHEMA.items():
        assert key.startswith(f"{schema.PROJECT}:") and key.split(":", 1)[1] in schema.TOP_KEYS, key
        assert spec.get("type") in TYPES, key
        assert spec.get("description"), key
        # Without a default the CLI would require the key in every stack.
        assert "default" in spec, f"{key} has no default: Pulumi would make it required in every stack"
        assert isinstance(spec["default"], TYPES[spec["type"]]), key
        assert not spec.get("secret"), f"{key}: a secret key cannot carry a plaintext default"


def test_schema_defaults_match_the_programs_defaults():
    s = settings_from_values(
        "dev", {"registry": {"edition": "local"}, "images": [{"name": "web", "context": "app", "target": "web"}]},
        region=None, has_password=False)
    assert SCHEMA["acr-publish:retainOnDelete"]["default"] is s.retain_on_delete
    assert SCHEMA["acr-publish:preflight"]["default"] is s.preflight


@pytest.mark.parametrize("stack", STACKS)
def test_stack_values_satisfy_the_schema(stack):
    config = yaml.safe_load((PROJECT_ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    for key, spec in SCHEMA.items():
        if key not in config:
            continue
        value = config[key]
        if spec.get("secret"):
            assert isinstance(value, dict) and "secure" in value, f"{stack}: {key} must be a secret"
        else:
            assert isinstance(value, TYPES[spec["type"]]), f"{stack}: {key}={value!r} is not {spec['type']}"
