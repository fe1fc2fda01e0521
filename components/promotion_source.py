"""The source stack of a promotion: its exports (`registry`, `images`, `registryInstance`), read through a
`pulumi.StackReference` before anything is declared and checked against the images this stack promotes.

PromotionError lists every problem found, each with its fix; components/promotion.py raises it too (the source
login and the source check).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pulumi

from components.config.promotion import promoted_image_defaults
from components.config.registry_rules import is_instance_id, is_region, is_repository_name
from components.config.schema import PROJECT, PromotedImageSettings, Settings
from components.config.shown import shown
from errors import AcrPublishError
from registryclient.references import DIGEST, repository_path_problem, server_problem, tag_problem


class PromotionError(AcrPublishError):
    """The source stack's exports cannot be promoted as configured; lists every problem with the fix.

    Raised before anything is declared; `__main__.py` reports it, as every AcrPublishError, without a traceback.
    Errors of the copy itself are raised in the provider process: see components/copy.py for what the user sees
    there."""


@dataclass(frozen=True)
class SourceImage:
    """One image the source stack exports."""

    name: str
    repository: str
    """<host>/<path> of the source repository."""
    tag: str
    ref: str
    """<repository>@sha256:..."""

    @property
    def digest(self) -> str:
        return self.ref.rsplit("@", 1)[1]

    @property
    def path(self) -> str:
        """The repository path on its host (`namespace/name`)."""
        return self.repository.split("/", 1)[1]


@dataclass(frozen=True)
class SourceStack:
    """What this stack promotes from the source stack, validated."""

    stack: str
    registry: str
    """The source registry host."""
    instance: Mapping[str, Any]
    """The source's registryInstance export: {edition, instanceId, region}."""
    images: tuple[SourceImage, ...]
    repositories: tuple[PromotedImageSettings, ...]
    """This stack's repository settings per promoted image (configured, or the defaults)."""

def _read_exports(source: str) -> tuple[dict[str, Any], set[str]]:
    """The source stack's exports, read synchronously (as the SDK's own synchronous invokes wait) before anything
    is declared; and the names of the exports that are secret."""
    from pulumi.runtime.sync_await import _sync_await

    # As given: `dev` is resolved in this project and organization by the engine, as `pulumi stack select` does.
    reference = pulumi.StackReference(f"{PROJECT}-promote-source", stack_name=source)
    values: dict[str, Any] = {}
    secret: set[str] = set()
    for name in ("registry", "images", "registryInstance"):
        details = _sync_await(reference.get_output_details(name))
        if details.secret_value is not None:
            secret.add(name)
        values[name] = details.value if details.value is not None else details.secret_value
    return values, secret


def read_source(settings: Settings) -> SourceStack:
    """Read and check the source stack's exports against what this stack promotes; raise PromotionError."""
    assert settings.promotion is not None
    exports, secret = _read_exports(settings.promotion.source_stack)
    return check_exports(settings, exports, secret)


def check_exports(settings: Settings, exports: Mapping[str, Any], secret: set[str]) -> SourceStack:
    """The pure core of read_source: the exports as read, against the settings."""
    promotion = settings.promotion
    assert promotion is not None
    source, stack = promotion.source_stack, settings.stack
    where = f"stack {stack!r} promotes from stack {source!r} (acr-publish:promoteFrom)"
    problems: list[str] = []
    if secret:
        problems.append(f"{where}, whose exports {', '.join(sorted(secret))} are secret: acr-publish exports no "
                        f"secret; run `pulumi up -s {source}` with this version of the program")
    images_raw = exports.get("images")
    registry = exports.get("registry")
    instance = exports.get("registryInstance")
    if not images_raw or not isinstance(images_raw, Mapping):
        raise PromotionError(
            f"{where}, but {source!r} exports no images: run `pulumi up -s {source}` first (it must have published "
            f"its images), or point acr-publish:promoteFrom in stacks/Pulumi.{stack}.yaml at the stack that builds them"
        )
    if isinstance(registry, str) and (reason := server_problem(registry)):
        problems.append(f"{where}: its export registry {shown(registry)} is not a registry host[:port] ({reason}); "
                        f"run `pulumi up -s {source}` with this version of the program")
        registry = None
    elif not isinstance(registry, str) or not isinstance(instance, Mapping):
        problems.append(
            f"{where}, but {source!r} exports no {'registry' if not isinstance(registry, str) else 'registryInstance'}"
            f": run `pulumi up -s {source}` with this version of the program (it exports registryInstance since "
            "promotion exists), then run this stack again"
        )
    if isinstance(instance, Mapping):
        problems += _instance_problems(instance, where, source)
    if not settings.promoted_images:
        bad = [name for name in images_raw if not is_repository_name(name)]
        if bad:
            raise PromotionError(
                f"{where}, whose export images names {', '.join(shown(n) for n in sorted(map(str, bad)))}, which "
                "is not an image name (2-30 chars of a-z 0-9 - _ , starting and ending with a letter or digit): "
                f"fix acr-publish:images in stacks/Pulumi.{source}.yaml and run `pulumi up -s {source}`, or list "
                f"the images to promote in acr-publish:images of stacks/Pulumi.{stack}.yaml"
            )
    wanted = settings.promoted_images or tuple(
        promoted_image_defaults(name, settings.registry.edition, settings.stack) for name in sorted(images_raw)
    )
    images: list[SourceImage] = []
    for i, repo in enumerate(wanted):
        out = images_raw.get(repo.name)
        if out is None:
            problems.append(
                f"acr-publish:images[{i}].name {repo.name!r}: {where}, which exports no image {repo.name!r} (it "
                f"exports {', '.join(sorted(images_raw))}); remove it from stacks/Pulumi.{stack}.yaml or add it to "
                f"stacks/Pulumi.{source}.yaml"
            )
            continue
        image = _source_image(repo.name, out, registry if isinstance(registry, str) else None,
                              f"{where}: its export images.{repo.name}", source, problems)
        if image is not None:
            images.append(image)
    if problems:
        raise PromotionError("\n".join(problems))
    return SourceStack(stack=source, registry=str(registry), instance=dict(instance or {}), images=tuple(images),
                       repositories=tuple(wanted))


def _instance_problems(instance: Mapping[str, Any], where: str, source: str) -> list[str]:
    """What is wrong with an Enterprise source's registryInstance export, checked before anything is declared: its
    region names the provider of the instance lookup and its instanceId the instance, so both must be what settings
    accept for a stack. (A classic source's region is checked against its host in `source_login`, which declares
    nothing.)"""
    if instance.get("edition") != "enterprise":
        return []
    region, instance_id = instance.get("region"), instance.get("instanceId")
    found = []
    if not is_region(region):
        found.append(f"region {shown(region)} is not a region id such as cn-hangzhou")
    if not is_instance_id(instance_id):
        found.append(f"instanceId {shown(instance_id)} is not an instance id (cri-... or crpi-...)")
    if not found:
        return []
    return [f"{where}: its export registryInstance {'; '.join(found)}; run `pulumi up -s {source}` with this "
            "version of the program"]


def _source_image(name: str, out: Any, registry: str | None, where: str, source: str,
                  problems: list[str]) -> SourceImage | None:
    """One exported image, checked: a Docker tag, a `sha256:` digest ref on its repository, the repository a path on
    the exported registry host. None (and the problem listed) when any of it is off."""
    fix = f"run `pulumi up -s {source}` until it has published {name!r}"
    ref = out.get("ref") if isinstance(out, Mapping) else None
    repository = out.get("repository") if isinstance(out, Mapping) else None
    tag = out.get("tag") if isinstance(out, Mapping) else None
    if not (isinstance(ref, str) and isinstance(repository, str) and isinstance(tag, str)
            and ref.startswith(f"{repository}@sha256:") and "/" in repository):
        problems.append(f"{where} {shown(out)} has no digest-pinned ref (<repository>@sha256:...) with repository "
                        f"and tag; {fix}")
        return None
    found: list[str] = []
    digest = ref[len(repository) + 1:]
    if not DIGEST.fullmatch(digest):
        found.append(f"its ref's digest {shown(digest)} is not sha256: and 64 lowercase hex digits")
    if (reason := tag_problem(tag)) is not None:
        found.append(f"its tag {shown(tag)} is not a Docker tag ({reason})")
    host, path = repository.split("/", 1)
    if registry is not None and host.lower() != registry.lower():
        found.append(f"its repository {shown(repository)} is not on the registry {shown(registry)} it exports")
    if (reason := repository_path_problem(path)) is not None:
        found.append(f"its repository path {shown(path)} is invalid ({reason})")
    if found:
        problems.append(f"{where}: {'; '.join(found)}; {fix}")
        return None
    return SourceImage(name, repository, tag, ref)
