"""A stack's `acr-publish:*` values -> `Settings`, every problem reported at once (the pure core: no engine needed).

Also the problems both readers of config find around the values: a near miss of the project's namespace
(`acr-publsh:images`) and a password stored in plain text.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Mapping

from components.config.builders import builder_settings
from components.config.image_rules import images_settings
from components.config.paths import PROJECT_ROOT
from components.config.problems import ConfigError
from components.config.promotion import promoted_images_settings, promotion_settings
from components.config.registry_rules import registry_settings
from components.config.schema import PROJECT, TOP_KEYS, PromotedImageSettings, Settings
from components.config.shown import shown_bare, shown_name
from components.config.values import read_bool, unknown_keys


def misspelled_project(keys: Any) -> list[str]:
    """Config keys whose namespace is a near miss of the project's (`acr-publsh:images`): Pulumi hands them to the
    program like any provider's key, so without this they would be ignored without a word."""
    found = []
    for key in keys:
        if not isinstance(key, str) or ":" not in key:
            continue
        namespace, _, name = key.partition(":")
        if namespace != PROJECT and difflib.SequenceMatcher(None, namespace.lower(), PROJECT).ratio() >= 0.8:
            found.append(f"{shown_bare(key)} is not a known setting: its namespace is not {PROJECT!r}; did you mean "
                         f"'{PROJECT}:{shown_bare(name)}'?")
    return found


def plaintext_password(stack: str, key: str = "registryPassword") -> str:
    return (f"acr-publish:{key} is stored in plain text in the stack file: it must be a secret; set it with "
            f"`pulumi config set --secret acr-publish:{key} <password> -s {shown_name(stack)}`")


def settings_from_values(
    stack: str,
    values: Mapping[str, Any],
    *,
    region: Any,
    has_password: bool,
    password_length: int | None = None,
    project_root: Path = PROJECT_ROOT,
    has_source_password: bool = False,
    organization: str | None = None,
) -> Settings:
    """Validate the `acr-publish:*` values of one stack (keys without the project prefix) into Settings.

    `password_length` is the registry password's length where the caller can know it (the engine hands the program
    the decrypted value); the password itself never comes here. Raises ConfigError listing every problem found.
    """
    problems: list[str] = []
    unknown_keys(PROJECT, {k: v for k, v in values.items() if k not in ("registryPassword", "sourcePassword")},
                 TOP_KEYS, problems, sep=":")
    length = (password_length if password_length is not None else -1) if has_password else None
    registry = registry_settings(values.get("registry"), stack, length, region, problems)
    promotion = promotion_settings(values, stack, organization, has_source_password, problems)
    if promotion is None:
        images = images_settings(values.get("images"), registry.edition, project_root, problems, stack)
        promoted: tuple[PromotedImageSettings, ...] = ()
    else:
        images = ()
        promoted = promoted_images_settings(values.get("images"), registry.edition, promotion.source_stack, problems,
                                            stack)
    protect = read_bool("acr-publish:protect", values.get("protect"), stack.startswith("prod"), problems)
    retain = read_bool("acr-publish:retainOnDelete", values.get("retainOnDelete"), True, problems)
    preflight = read_bool("acr-publish:preflight", values.get("preflight"), True, problems)
    builders = builder_settings(values.get("builders"), images, promotion, project_root, problems)
    if problems:
        raise ConfigError(stack, problems)
    return Settings(
        stack=stack, region=region if registry.edition != "local" else None, registry=registry, images=images,
        protect=protect, retain_on_delete=retain, preflight=preflight,
        project_root=project_root, promotion=promotion, promoted_images=promoted, builders=builders,
    )
