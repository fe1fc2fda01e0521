"""The registry side of a stack: the registry login, the checks made with it, the ACR namespace, one repository
per image, and the push credentials.

Before anything is declared (plain synchronous code, never inside an `apply`): `registry_login` finds the host and
credentials (Enterprise: the synchronous instances invoke, whose temporary token lives in memory only; classic and
local: from config), `preflight` checks them against the registry (components/preflight.py), and
`published_digests` asks the registry which content tags it already holds. Then one component, `AcrRegistry`, hides
the three editions behind the same outputs: the registry host, each image's repository path (`<namespace>/<name>`)
and its declaring resource (so pushes wait for it), and `RegistryCredentials` whose password is always a Pulumi
secret.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import pulumi

from components import preflight as registry_preflight
from components.config.schema import ImageSettings, PromotedImageSettings, RegistrySettings, Settings
from errors import AcrPublishError
from registryclient.login import RegistryLogin
from registryclient import RegistryError

CLASSIC_RETIREMENT_WARNING = (
    "edition 'personal' uses the classic Container Registry Personal Edition API (2016-06-07), which Alibaba Cloud "
    "is retiring and pulumi-alicloud marks deprecated; create a Personal Edition instance (id crpi-...) and use "
    "edition 'enterprise' with that instanceId instead"
)


class RegistryLookupError(AcrPublishError):
    """The cloud does not know the configured registry instance."""


@dataclass(frozen=True)
class RegistryCredentials:
    """What `docker login` needs; password is a secret Output (a temporary token for Enterprise)."""

    server: pulumi.Output[str]
    username: pulumi.Output[str] | None
    password: pulumi.Output[str] | None


@dataclass(frozen=True)
class RepositorySettings:
    """One repository of the stack, named after the image it holds (built or promoted)."""

    name: str
    """The image's name: the repository's name in the namespace."""
    summary: str = ""
    """Repository summary (1-80 chars)."""
    tag_immutability: bool | None = None
    """Enterprise repositories only: existing tags can never be overwritten."""


def repository_settings(images: Iterable[ImageSettings | PromotedImageSettings]) -> tuple[RepositorySettings, ...]:
    """The repository of each image, built or promoted."""
    return tuple(RepositorySettings(image.name, image.summary, image.tag_immutability) for image in images)


@dataclass(frozen=True)
class AcrRegistryArgs:
    """Inputs of AcrRegistry."""

    registry: RegistrySettings
    """Validated acr-publish:registry settings."""
    repositories: tuple[RepositorySettings, ...]
    """One repository per image of the stack, with its summary and tag immutability."""
    login: RegistryLogin
    """The registry host and credentials from `registry_login`."""
    protect: bool = False
    """Protect namespace and repositories against deletion."""
    retain_on_delete: bool = True
    """Keep namespace and repositories in the cloud when removed from the stack."""


def classic_host(region: str, endpoint: str) -> str:
    """Classic Personal Edition registry host (ACR-FACTS.md)."""
    return f"registry-vpc.{region}.aliyuncs.com" if endpoint == "vpc" else f"registry.{region}.aliyuncs.com"


def pick_enterprise_endpoint(instances: list, instance_id: str, region: str, endpoint: str):
    """The host and temporary login of `instance_id` from get_registry_enterprise_instances; clear error if absent."""
    match = [i for i in instances if i.id == instance_id]
    if not match:
        found = ", ".join(sorted(i.id for i in instances)) or "none"
        raise RegistryLookupError(
            f"acr-publish:registry.instanceId {instance_id!r} was not found in region {region!r} (instances visible to "
            f"these credentials: {found}); check the id in the Container Registry console, alicloud:region, and that "
            "the credentials may call cr:ListInstance"
        )
    inst = match[0]
    hosts = list(inst.vpc_endpoints if endpoint == "vpc" else inst.public_endpoints)
    if not hosts:
        raise RegistryLookupError(
            f"instance {instance_id!r} in {region!r} has no {endpoint} endpoint: "
            + ("enable internet access for the instance (Container Registry console > Access Control) or set "
               "acr-publish:registry.endpoint to vpc" if endpoint == "public" else
               "add a VPC to the instance's access control, or set acr-publish:registry.endpoint to public")
        )
    return hosts[0], inst.temp_username, inst.authorization_token


def repository_paths(namespace: str | None, names: Iterable[str]) -> dict[str, str]:
    """Each image's repository path in the registry: `<namespace>/<name>`, or `<name>` without a namespace."""
    return {name: f"{namespace}/{name}" if namespace else name for name in names}


def registry_login(settings: Settings, password: str | None) -> RegistryLogin:
    """The host and credentials the stack pushes with; `password` is acr-publish:registryPassword's plain value.

    Enterprise: the instance's endpoint and a temporary login from the synchronous instances invoke (a cloud call,
    made in previews too); RegistryLookupError when the instance or its endpoint is missing. Classic: the regional
    host and the configured user. Local: the configured server and user.
    """
    reg = settings.registry
    if reg.edition == "enterprise":
        import pulumi_alicloud as alicloud

        found = alicloud.cs.get_registry_enterprise_instances(ids=[reg.instance_id], enable_details=True)
        host, username, token = pick_enterprise_endpoint(list(found.instances or []), reg.instance_id,
                                                         settings.region, reg.endpoint)
        return RegistryLogin(host, username, token, allow_plain_http=False)
    if reg.edition == "personal":
        return RegistryLogin(classic_host(settings.region, reg.endpoint), reg.username, password,
                             allow_plain_http=False)
    return RegistryLogin(reg.server, reg.username, password, allow_plain_http=True)


def preflight(login: RegistryLogin, paths: Mapping[str, str]) -> bool:
    """The registry preflight before anything is declared: reachable, login accepted, and on `up` push permission
    on every repository (`paths`: image name -> repository path); RegistryError otherwise. Returns whether the
    registry could be reached.

    A preview runs on read-only credentials, so it checks the login only; and it often runs where the registry cannot
    be reached (a VPC endpoint, an instance whose internet access allows only the deploy runner), so there an
    unreachable registry is a warning (and False): `pulumi up` still fails on it.
    """
    preview = pulumi.runtime.is_dry_run()
    target = registry_preflight.PreflightTarget(login, tuple(paths.values()), check_push=not preview)
    try:
        registry_preflight.check_registry(target)
    except RegistryError as err:
        if not (preview and err.kind == "unreachable"):
            raise
        pulumi.log.warn(f"{err} (preview goes on: `pulumi up` needs this registry reachable)")
        return False
    return True


def published_digests(login: RegistryLogin, paths: Mapping[str, str], tags: Mapping, *,
                      reachable: bool = True) -> dict:
    """For each image name in `tags` (name -> content tag): the digest the registry reports for that tag in the
    image's repository (`paths`: image name -> repository path), or None when it is not there (a repository that
    does not exist yet included). A key may also be a tuple whose first item is the image name (`(name, platform)`:
    another tag of the same repository).

    Any other failure raises RegistryError, except in a preview where the registry is unreachable (`reachable`
    False: the preflight found it so and warned; it is not asked again): then nothing can be said, every image is
    shown as a build, and the run says so.
    """
    wanted = {key: (paths[key[0] if isinstance(key, tuple) else key], tag) for key, tag in tags.items()}
    if reachable:
        try:
            return registry_preflight.check_published(login, wanted)
        except RegistryError as err:
            if not (pulumi.runtime.is_dry_run() and err.kind == "unreachable"):
                raise
    pulumi.log.warn("the registry cannot be reached from this preview, so it cannot say which content tags are "
                    "already published: the preview shows every image as a build (`pulumi up` asks again)")
    return {name: None for name in tags}


class AcrRegistry(pulumi.ComponentResource):
    """Namespace + repositories + credentials for one stack."""

    server: pulumi.Output[str]
    credentials: RegistryCredentials
    ready: pulumi.Output[bool]
    repository_paths: dict[str, str]
    repositories: dict[str, pulumi.Resource]

    def __init__(self, name: str, args: AcrRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("acr-publish:index:AcrRegistry", name, None, opts)
        reg = args.registry
        keep = pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.retain_on_delete)
        self.repositories = {}
        self.repository_paths = repository_paths(reg.namespace, [repo.name for repo in args.repositories])
        login = args.login
        self.server = pulumi.Output.from_input(login.server)
        self.credentials = RegistryCredentials(
            server=self.server,
            username=pulumi.Output.from_input(login.username) if login.username else None,
            password=pulumi.Output.secret(login.password) if login.password is not None else None,
        )

        if reg.edition == "enterprise":
            self._declare_enterprise(name, args, keep)
        elif reg.edition == "personal":
            pulumi.log.warn(CLASSIC_RETIREMENT_WARNING, resource=self)
            self._declare_classic(name, args, keep)
        self.register_outputs({"server": self.server, "repositories": self.repository_paths})

    def _declare_namespace_and_repositories(
        self, name: str, args: AcrRegistryArgs, keep: pulumi.ResourceOptions, *, namespace_type: type,
        repository_type: type, scope: dict, per_repository: dict[str, dict],
    ) -> None:
        """The namespace (unless adopted) and one repository per image; the classes differ per edition, the shape not.

        `scope` holds the arguments both resources take on this edition (the Enterprise instance id);
        `per_repository` the extra arguments of each image's repository.
        """
        reg = args.registry
        depends: list[pulumi.Resource] = []
        if reg.create_namespace:
            depends.append(namespace_type(
                f"{name}-namespace", name=reg.namespace, auto_create=False, default_visibility=reg.visibility,
                opts=keep, **scope,
            ))
        for repo in args.repositories:
            self.repositories[repo.name] = repository_type(
                f"{name}-{repo.name}-repo", namespace=reg.namespace, name=repo.name, repo_type=reg.visibility,
                summary=repo.summary,
                opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=depends)),
                **scope, **per_repository.get(repo.name, {}),
            )

    def _declare_enterprise(self, name: str, args: AcrRegistryArgs, keep: pulumi.ResourceOptions) -> None:
        import pulumi_alicloud as alicloud

        reg = args.registry
        self._declare_namespace_and_repositories(
            name, args, keep,
            namespace_type=alicloud.cs.RegistryEnterpriseNamespace,
            repository_type=alicloud.cs.RegistryEnterpriseRepo,
            scope={"instance_id": reg.instance_id},
            per_repository={repo.name: {"tag_immutability": repo.tag_immutability} for repo in args.repositories},
        )

    def _declare_classic(self, name: str, args: AcrRegistryArgs, keep: pulumi.ResourceOptions) -> None:
        import pulumi_alicloud as alicloud

        self._declare_namespace_and_repositories(
            name, args, keep, namespace_type=alicloud.cr.Namespace, repository_type=alicloud.cr.Repo,
            scope={}, per_repository={},
        )


def declare_registry(settings: Settings, login: RegistryLogin,
                     repositories: tuple[RepositorySettings, ...]) -> AcrRegistry:
    """The stack's AcrRegistry (named `registry`): its namespace and `repositories`, with the stack's protection."""
    return AcrRegistry("registry", AcrRegistryArgs(registry=settings.registry, repositories=repositories, login=login,
                                                   protect=settings.protect,
                                                   retain_on_delete=settings.retain_on_delete))
