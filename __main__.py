"""acr-publish: declare the stack's ACR namespace and repositories and publish each configured image."""
import pulumi

from components.image import PublishedImage, PublishedImageArgs, plan_builds
from components.promotion import (
    PromotedImage, TargetLogin, check_sources, read_source, registry_instance, source_login,
)
from components.registry import AcrRegistry, AcrRegistryArgs, classic_host, pick_enterprise_endpoint
from components.settings import load_settings, source_password


def plain(value):
    """The value of an Output known before anything is declared (config secrets, synchronous invokes)."""
    from pulumi.runtime.sync_await import _sync_await

    return None if value is None else _sync_await(pulumi.Output.from_input(value).future())


def target_login(settings, password) -> TargetLogin:
    reg = settings.registry
    if reg.edition == "enterprise":
        import pulumi_alicloud as alicloud

        found = alicloud.cs.get_registry_enterprise_instances(ids=[reg.instance_id], enable_details=True)
        host, user, token = pick_enterprise_endpoint(list(found.instances or []), reg.instance_id, settings.region,
                                                     reg.endpoint)
        return TargetLogin(host, user, token, False)
    if reg.edition == "personal":
        return TargetLogin(classic_host(settings.region, reg.endpoint), reg.username, plain(password), False)
    return TargetLogin(reg.server, reg.username, plain(password), True)


settings, registry_password = load_settings()

if settings.promotion is None:
    plans = plan_builds(settings)
    repositories = settings.images
else:
    plans = {}
    source = read_source(settings)
    target = target_login(settings, registry_password)
    login = source_login(settings, source, target, plain(source_password()))
    if settings.preflight:
        check_sources(source, login)
    repositories = source.repositories

registry = AcrRegistry(
    "registry",
    AcrRegistryArgs(
        registry=settings.registry,
        region=settings.region,
        images=repositories,
        password=registry_password,
        protect=settings.protect,
        retain_on_delete=settings.retain_on_delete,
        preflight=settings.preflight,
    ),
)

if settings.promotion is None:
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
else:
    images = {
        image.name: PromotedImage(image.name, image, login, target, registry.repository_paths[image.name],
                                  registry.repositories.get(image.name))
        for image in source.images
    }

pulumi.export("registry", registry.server)
pulumi.export("registryInstance", registry_instance(settings))
pulumi.export(
    "images",
    {
        name: {"repository": img.repository, "tag": img.tag, "imageName": img.image_name, "ref": img.ref}
        for name, img in images.items()
    },
)
