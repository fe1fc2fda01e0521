"""acr-publish: declare the stack's ACR namespace and repositories and publish each configured image.

One straight sequence; nothing is declared until every check passed, and no check runs inside an `apply`:
settings -> registry login -> registry preflight -> per image: content tag and sensitive-file guard, then "is this
content tag already published?" -> namespace, repositories and images.
"""
import pulumi

from components.image import LastPublished, PublishedImage, PublishedImageArgs, plan_builds
from components.registry import (
    AcrRegistry, AcrRegistryArgs, preflight, published_digests, registry_login, repository_paths,
)
from components.settings import load_settings, registry_password_value

settings, _ = load_settings()
login = registry_login(settings, registry_password_value())
# acr-publish:preflight: false turns off every registry call made before declaring; images are then all builds.
reachable = preflight(login, settings) if settings.preflight else False
plans = plan_builds(settings)
published = (published_digests(login, settings, {name: plan.tag for name, plan in plans.items()},
                               reachable=reachable)
             if settings.preflight else {})

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
last_published = LastPublished()
images = {
    name: PublishedImage(
        name,
        PublishedImageArgs(
            plan=plan,
            repository=f"{login.server}/{paths[name]}",
            credentials=registry.credentials,
            repository_resource=registry.repositories.get(name),
            published_digest=published.get(name),
            last_published=last_published,
        ),
    )
    for name, plan in plans.items()
}

pulumi.export("registry", registry.server)
pulumi.export(
    "images",
    {
        name: {"repository": img.repository, "tag": img.tag, "imageName": img.image_name, "ref": img.ref}
        for name, img in images.items()
    },
)
