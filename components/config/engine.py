"""The only module that reads `pulumi.Config`: the running stack's values, validated, and the two password values.

The engine hands structured keys (STRUCTURED_KEYS) as JSON text and every other value as the string the stack file
holds; passwords are only measured here (their length rules), never kept or shown.
"""
from __future__ import annotations

from typing import Any

from boundedjson import parse_json
from components.config.problems import ConfigError
from components.config.registry_rules import local_password_problem
from components.config.schema import PROJECT, STRUCTURED_KEYS
from components.config.validate import misspelled_project, plaintext_password, settings_from_values

STRUCTURED_VALUE_LIMIT = 1 << 20
"""Characters of a structured key's JSON: far beyond any stack file's list of images."""


def _decode(key: str, value: Any) -> Any:
    """A config value as the program takes it: JSON text parsed for a structured key, anything else as given."""
    if key in STRUCTURED_KEYS and isinstance(value, str):
        try:
            return parse_json(value, limit=STRUCTURED_VALUE_LIMIT)
        except ValueError:  # not JSON, or past the parser's bounds: a string to validate
            return value
    return value


def load_settings():
    """Read and validate the running stack's configuration from the Pulumi engine.

    Returns (settings, registry_password) where registry_password is a secret Output or None; a promoting stack's
    acr-publish:sourcePassword is read where the source login is assembled (`source_password_value`). Every
    configuration problem is raised in one ConfigError.
    """
    import pulumi
    from pulumi.runtime import config as runtime_config

    stack = pulumi.get_stack()
    cfg = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    prefix = f"{PROJECT}:"
    all_config = runtime_config.CONFIG.get()
    for key, raw in all_config.items():
        if key.startswith(prefix):
            values[key[len(prefix):]] = _decode(key[len(prefix):], raw)
    for env_key, raw in runtime_config.get_config_env().items():
        if env_key.startswith(prefix):
            values.setdefault(env_key[len(prefix):], _decode(env_key[len(prefix):], raw))
    password = cfg.get_secret("registryPassword")
    source_password = cfg.get_secret("sourcePassword")
    # The plaintext is only measured (ACR's length rule), never kept or shown.
    plain = runtime_config.get_config(f"{PROJECT}:registryPassword")
    password_length = len(plain) if isinstance(plain, str) else None
    del plain
    problems_extra = misspelled_project(all_config)
    source_plain = runtime_config.get_config(f"{PROJECT}:sourcePassword")
    if isinstance(source_plain, str) and (problem := local_password_problem(
            "sourcePassword", len(source_plain), "give the source registry a password within that range")):
        problems_extra.append(problem)
    del source_plain
    for key, value in (("registryPassword", password), ("sourcePassword", source_password)):
        if value is not None and not runtime_config.is_config_secret(f"{PROJECT}:{key}"):
            problems_extra.append(plaintext_password(stack, key))
    region = pulumi.Config("alicloud").get("region")
    try:
        settings = settings_from_values(stack, values, region=region, has_password=password is not None,
                                        password_length=password_length,
                                        has_source_password=source_password is not None,
                                        organization=pulumi.get_organization())
    except ConfigError as err:
        raise ConfigError(stack, err.problems + problems_extra) from None
    if problems_extra:
        raise ConfigError(stack, problems_extra)
    return settings, password


def source_password_value() -> str | None:
    """The plain value of the secret acr-publish:sourcePassword (validated by load_settings), for the source login
    and check before anything is declared; everything declared gets it as a secret."""
    import pulumi

    return pulumi.Config(PROJECT).get("sourcePassword")


def registry_password_value() -> str | None:
    """The plain value of the secret acr-publish:registryPassword, for the registry login and checks that run
    before anything is declared; it stays in memory (everything declared gets the secret Output)."""
    import pulumi

    return pulumi.Config(PROJECT).get("registryPassword")
