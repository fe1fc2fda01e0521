"""acr-publish: declare the stack's ACR namespace and repositories, and publish each image: built here, or promoted
(copied by digest) from the stack named by acr-publish:promoteFrom.

One straight sequence; nothing is declared until every check passed, and no check runs inside an `apply`:
settings -> registry login -> (promoting: the source stack's exports) -> registry preflight -> per image: base images
and remote sources pinned, content tag and sensitive-file guard, then "is this content tag already published?" (per
platform too), then every builder answers (promoting: the source login and each source digest) -> namespace,
repositories, builder providers and images (or promotions).
"""
import dataclasses

import pulumi

from components.builders import BuilderError, builder_for, builder_providers, check_builders
from components.copy import CopyError
from components.errors import leave_quietly_on_interrupt, reported_to_engine
from components.image import BuildPlanError, PublishedImage, PublishedImageArgs, layer_cache, plan_builds
from components.image_index import MultiPlatformImage, MultiPlatformImageArgs, builds_needed
from components.preflight import PreflightError
from components.promotion import (
    PromotedImage, PromotedImageArgs, PromotionError, check_sources, read_source, registry_instance, source_login,
)
from components.registry import (
    AcrRegistry, AcrRegistryArgs, RegistryLookupError, preflight, published_digests, registry_login, repository_paths,
)
from registryclient import RegistryError
from components.config.engine import load_settings, registry_password_value, source_password_value

# Every error raised for bad input or a failed check reaches the engine as a pulumi.RunError (components/errors.py),
# which it prints without a traceback.
with reported_to_engine(BuildPlanError, PreflightError, RegistryError, RegistryLookupError, CopyError, PromotionError,
                        BuilderError):
    settings, _ = load_settings()
    login = registry_login(settings, registry_password_value())
    if settings.promotion is not None:
        source = read_source(settings)
        # The repositories are the promoted images': those the source exports (or the configured subset).
        settings = dataclasses.replace(settings, images=source.repositories)
    # acr-publish:preflight: false turns off every registry call made before declaring; images are then all builds.
    reachable = preflight(login, settings) if settings.preflight else False
    if settings.promotion is None:
        plans = plan_builds(settings, login)
        # An image with platforms: its index's tag, and each platform's own tag, keyed (name, platform).
        tags = {name: plan.tag for name, plan in plans.items()}
        tags.update({(name, platform): tag for name, plan in plans.items()
                     for platform, tag in plan.platform_tags.items()})
        published = published_digests(login, settings, tags, reachable=reachable) if settings.preflight else {}
        building = builds_needed(settings, plans, published)
        check_builders(settings, building)
    else:
        source_registry = source_login(settings, source, login, source_password_value())
        if settings.preflight:
            check_sources(source, source_registry)

    registry = AcrRegistry(
        "registry",
        AcrRegistryArgs(
            registry=settings.registry,
            images=settings.images,
            login=login,
            protect=settings.protect,
            retain_on_delete=settings.retain_on_delete,
        ),
    )
    paths = repository_paths(settings.registry.namespace, settings.images)
    if settings.promotion is None:
        last_published = layer_cache(settings.preflight, plans)
        providers = builder_providers(settings, [platform for _, _, platform in building])
        images = {}
        for name, plan in plans.items():
            build = PublishedImageArgs(
                plan=plan,
                repository=f"{login.server}/{paths[name]}",
                credentials=registry.credentials,
                repository_resource=registry.repositories.get(name),
                published_digest=published.get(name),
                last_published=last_published,
                audit_login=login,
            )
            if not plan.platform_tags:
                images[name] = PublishedImage(name, build)
                continue
            images[name] = MultiPlatformImage(name, MultiPlatformImageArgs(
                build=build, repository_path=paths[name], allow_plain_http=login.allow_plain_http,
                published_children={p: published.get((name, p)) for p in plan.platform_tags},
                providers={p: providers[b.platform] for p in plan.platform_tags
                           if (b := builder_for(settings, p)) is not None and b.platform in providers},
            ))
    else:
        audit_of = {repo.name: repo.audit for repo in source.repositories}
        images = {
            image.name: PromotedImage(
                image.name,
                PromotedImageArgs(source=image, source_login=source_registry, target=login,
                                  repository_path=paths[image.name],
                                  repository_resource=registry.repositories.get(image.name),
                                  audit=audit_of[image.name]),
            )
            for image in source.images
        }

pulumi.export("registry", registry.server)
pulumi.export("registryInstance", registry_instance(settings))
pulumi.export(
    "images",
    {
        name: {"repository": img.repository, "tag": img.tag, "imageName": img.image_name, "ref": img.ref,
               "audit": img.audit.summary,
               # Each platform's build of a multi-platform image: its layer cache next time, and what to pull.
               **({"platforms": img.platforms} if isinstance(img, MultiPlatformImage) else {})}
        for name, img in images.items()
    },
)
leave_quietly_on_interrupt()
