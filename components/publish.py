"""The publish path of the program: every check of a stack that builds its images, then what it declares.

`plan_publish` runs the checks before anything is declared, in this order: the registry preflight, each image's
build plan (base images and remote sources pinned, content tag, sensitive-file guard), which content tags the
registry already holds (per platform too), and every builder a build needs. `declare_published` declares the
builder providers and one PublishedImage (or MultiPlatformImage) per image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.builders import builder_for, builder_providers, check_builders
from components.image import BuildPlan, PublishedImage, PublishedImageArgs, layer_cache, plan_builds
from components.image_index import MultiPlatformImage, MultiPlatformImageArgs, builds_needed
from components.registry import (
    AcrRegistry, RepositorySettings, preflight, published_digests, repository_paths, repository_settings,
)
from components.config.schema import Settings
from registryclient.login import RegistryLogin


@dataclass(frozen=True)
class PublishPlan:
    """What a building stack declares, every check passed."""

    builds: dict[str, BuildPlan]
    """Each image's build plan, by image name."""
    published: dict[Any, str | None]
    """The digest the registry holds for an image's tag (key: name) or a platform's (key: (name, platform)); None
    when it does not hold it. Empty when acr-publish:preflight is false."""
    building: list[tuple[int, str, str]]
    """(index in acr-publish:images, image name, platform) of every build this run declares."""
    login: RegistryLogin
    """This stack's registry login."""
    repositories: tuple[RepositorySettings, ...]
    """One repository per image."""
    paths: dict[str, str]
    """Each image's repository path on the registry host."""


def plan_publish(settings: Settings, login: RegistryLogin) -> PublishPlan:
    """Every check of a building stack, before anything is declared (acr-publish:preflight: false turns off every
    registry call: the images are then all builds)."""
    paths = repository_paths(settings.registry.namespace, [image.name for image in settings.images])
    reachable = preflight(login, paths) if settings.preflight else False
    plans = plan_builds(settings, login)
    # An image with platforms: its index's tag, and each platform's own tag, keyed (name, platform).
    tags: dict[Any, str] = {name: plan.tag for name, plan in plans.items()}
    tags.update({(name, platform): tag for name, plan in plans.items()
                 for platform, tag in plan.platform_tags.items()})
    published = published_digests(login, paths, tags, reachable=reachable) if settings.preflight else {}
    building = builds_needed(settings, plans, published)
    check_builders(settings, building)
    return PublishPlan(builds=plans, published=published, building=building, login=login,
                       repositories=repository_settings(settings.images), paths=paths)


def declare_published(settings: Settings, plan: PublishPlan,
                      registry: AcrRegistry) -> dict[str, PublishedImage | MultiPlatformImage]:
    """The builder providers the builds use, and each image: built unless its content tag is published."""
    login, paths, published = plan.login, plan.paths, plan.published
    last_published = layer_cache(settings.preflight, plan.builds)
    providers = builder_providers(settings, [platform for _, _, platform in plan.building])
    images: dict[str, PublishedImage | MultiPlatformImage] = {}
    for name, build_plan in plan.builds.items():
        build = PublishedImageArgs(
            plan=build_plan,
            repository=f"{login.server}/{paths[name]}",
            credentials=registry.credentials,
            repository_resource=registry.repositories.get(name),
            published_digest=published.get(name),
            last_published=last_published,
            audit_login=login,
        )
        if not build_plan.platform_tags:
            images[name] = PublishedImage(name, build)
            continue
        images[name] = MultiPlatformImage(name, MultiPlatformImageArgs(
            build=build, repository_path=paths[name], allow_plain_http=login.allow_plain_http,
            published_children={p: published.get((name, p)) for p in build_plan.platform_tags},
            providers={p: providers[b.platform] for p in build_plan.platform_tags
                       if (b := builder_for(settings, p)) is not None and b.platform in providers},
        ))
    return images
