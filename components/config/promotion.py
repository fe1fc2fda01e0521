"""acr-publish:promoteFrom and the images of a stack that copies what another stack published instead of building.

A promoted image takes only its repository settings and audit (PROMOTED_IMAGE_KEYS); the build keys are refused,
never silently ignored. The source login (sourceUsername, sourcePassword) is set together or not at all.
"""
from __future__ import annotations

from typing import Any, Mapping

from components.config.audit_rules import audit_settings
from components.config.image_rules import REPOSITORY_TABLE, check_repository_name, repository_values
from components.config.rules import Scope, walk
from components.config.schema import (
    IMAGE_KEYS, PROJECT, PROMOTED_IMAGE_KEYS, PromotedImageSettings, PromotionSettings,
)
from components.config.shown import STACK_NAME
from components.config.values import read_login_user, read_str, suggest


def split_stack_name(name: str) -> tuple[str | None, str | None, str]:
    """(organization, project, stack) of a StackReference name: `stack` or `organization/project/stack`."""
    parts = name.split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else (None, None, parts[-1])


def _unused_source_login(username: str | None, has_source_password: bool, stack: str, problems: list[str]) -> None:
    for key, given in (("sourceUsername", username is not None), ("sourcePassword", has_source_password)):
        if given:
            problems.append(
                f"acr-publish:{key} is only used with acr-publish:promoteFrom (the login of the registry images "
                f"are promoted from); remove it with `pulumi config rm acr-publish:{key} -s {stack}`"
            )


def _login_pair(username: str | None, has_source_password: bool, stack: str, problems: list[str]) -> None:
    if bool(username) != has_source_password and username is not None:
        problems.append(
            "acr-publish:sourceUsername is set but acr-publish:sourcePassword is not: set the source registry's "
            f"password with `pulumi config set --secret acr-publish:sourcePassword <password> -s {stack}`"
        )
    elif has_source_password and not username:
        problems.append(
            "acr-publish:sourcePassword is set but acr-publish:sourceUsername is not: set the user it belongs to with "
            f"`pulumi config set acr-publish:sourceUsername <user> -s {stack}`"
        )


def promotion_settings(values: Mapping[str, Any], stack: str, organization: str | None, has_source_password: bool,
                       problems: list[str]) -> PromotionSettings | None:
    """acr-publish:promoteFrom and its source login; None when the stack builds (or promoteFrom is refused)."""
    raw = values.get("promoteFrom")
    username = read_login_user("acr-publish:sourceUsername", values.get("sourceUsername"), problems)
    if raw is None:
        _unused_source_login(username, has_source_password, stack, problems)
        return None
    path = "acr-publish:promoteFrom"
    source = read_str(path, raw, problems)
    if source is None:
        return None
    parts = source.split("/")
    if len(parts) not in (1, 3) or not all(STACK_NAME.fullmatch(p) for p in parts):
        problems.append(
            f"{path} {source!r} is invalid: it must name a stack of this project (e.g. dev) or a fully qualified "
            "organization/project/stack (letters, digits, _ . - in each part)"
        )
        return None
    org, project, name = split_stack_name(source)
    same_project = project in (None, PROJECT)
    same_org = org is None or organization is None or org == organization
    if name == stack and same_project and same_org:
        problems.append(
            f"{path} {source!r} is this stack ({stack!r}): a stack cannot promote its own images; name the stack "
            f"that builds them, e.g. promoteFrom: dev in stacks/Pulumi.{stack}.yaml"
        )
    _login_pair(username, has_source_password, stack, problems)
    return PromotionSettings(source_stack=source, images_configured=values.get("images") is not None,
                             source_username=username, has_source_password=has_source_password)


def _build_keys(ipath: str, item: Mapping[str, Any], source: str, problems: list[str]) -> None:
    for key in item:
        if key in IMAGE_KEYS and key not in PROMOTED_IMAGE_KEYS:
            problems.append(
                f"{ipath}.{key} is not used when the stack promotes (acr-publish:promoteFrom: {source}): the "
                f"image is copied from {source!r} as it was built there, never rebuilt; remove {key} (only "
                f"{', '.join(PROMOTED_IMAGE_KEYS)} apply)"
            )
        elif key not in PROMOTED_IMAGE_KEYS:
            problems.append(f"{ipath}.{key} is not a known setting: {suggest(key, PROMOTED_IMAGE_KEYS)}")


def _repository(ipath: str, item: Mapping[str, Any], name: str, edition: str, stack: str,
                problems: list[str]) -> PromotedImageSettings:
    scope = Scope(ipath, item, edition, stack, problems, values={"name": name})
    summary, immut = repository_values(walk(REPOSITORY_TABLE, scope), name)
    audit = audit_settings(f"{ipath}.audit", item.get("audit"), stack, problems)
    return PromotedImageSettings(name=name, summary=summary, tag_immutability=immut, audit=audit)


def promoted_images_settings(raw: Any, edition: str, source: str, problems: list[str],
                             stack: str = "") -> tuple[PromotedImageSettings, ...]:
    """acr-publish:images of a promoting stack: optional; names (and repository settings) only."""
    path = "acr-publish:images"
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append(
            f"{path} {raw!r} is invalid: with acr-publish:promoteFrom it is a non-empty list of image names to "
            f"promote from {source!r}, e.g. images: [{{name: web}}], or omit it to promote every image {source!r} "
            "exports"
        )
        return ()
    images: list[PromotedImageSettings] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        ipath = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{ipath} {item!r} is invalid: each promoted image is a map with a name, e.g. name: web")
            continue
        _build_keys(ipath, item, source, problems)
        name = read_str(f"{ipath}.name", item.get("name"), problems)
        if not name:
            problems.append(f"{ipath}.name is missing: name the image of {source!r} to promote, e.g. name: web")
            continue
        check_repository_name(f"{ipath}.name", name, problems)
        if name in seen:
            problems.append(f"{ipath}.name {name!r} is a duplicate of {path}[{seen[name]}].name: list each image "
                            "once")
        seen.setdefault(name, i)
        images.append(_repository(ipath, item, name, edition, stack, problems))
    return tuple(images)


def promoted_image_defaults(name: str, edition: str, stack: str = "") -> PromotedImageSettings:
    """A source image promoted without an entry in acr-publish:images: the defaults a configured entry gets."""
    return _repository("", {}, name, edition, stack, [])
