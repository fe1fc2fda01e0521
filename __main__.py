"""acr-publish: declare the stack's ACR namespace and repositories and publish each configured image."""
import pulumi

from components.image import PublishedImage, PublishedImageArgs, plan_builds
from components.registry import AcrRegistry, AcrRegistryArgs
from components.settings import load_settings

settings, registry_password = load_settings()
plans = plan_builds(settings)

registry = AcrRegistry(
    "registry",
    AcrRegistryArgs(
        registry=settings.registry,
        region=settings.region,
        images=settings.images,
        password=registry_password,
        protect=settings.protect,
        retain_on_delete=settings.retain_on_delete,
        preflight=settings.preflight,
    ),
)

images = {
    name: PublishedImage(
        name,
        PublishedImageArgs(
            plan=plan,
            repository=pulumi.Output.concat(registry.server, "/", registry.repository_paths[name]),
            credentials=registry.credentials,
            repository_resource=registry.repositories.get(name),
            ready=registry.ready,
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
