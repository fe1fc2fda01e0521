"""The registry side of a stack: the ACR namespace, one repository per image, and the push credentials.

One component, `AcrRegistry`, hides the three editions behind the same outputs: the registry host, each
image's repository path (`<namespace>/<name>`) and its declaring resource (so pushes wait for it), and
`RegistryCredentials` whose password is always a Pulumi secret.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.settings import ImageSettings, RegistrySettings

CLASSIC_RETIREMENT_WARNING = (
    "edition 'personal' uses the classic Container Registry Personal Edition API (2016-06-07), which Alibaba Cloud "
    "is retiring and pulumi-alicloud marks deprecated; create a Personal Edition instance (id crpi-...) and use "
    "edition 'enterprise' with that instanceId instead"
)


class RegistryLookupError(Exception):
    """The cloud does not know the configured registry instance."""


@dataclass(frozen=True)
class RegistryCredentials:
    """What `docker login` needs; password is a secret Output (a temporary token for Enterprise)."""

    server: pulumi.Output[str]
    username: pulumi.Output[str] | None
    password: pulumi.Output[str] | None


@dataclass(frozen=True)
class AcrRegistryArgs:
    """Inputs of AcrRegistry."""

    registry: RegistrySettings
    """Validated acr-publish:registry settings."""
    region: str | None
    """Alibaba Cloud region (None for the local edition)."""
    images: tuple[ImageSettings, ...]
    """The stack's images: one repository each, named after the image, with its summary and tag immutability."""
    password: pulumi.Output[str] | None = None
    """Secret registry password from config (personal; local optional)."""
    protect: bool = False
    """Protect namespace and repositories against deletion."""
    retain_on_delete: bool = True
    """Keep namespace and repositories in the cloud when removed from the stack."""
    preflight: bool = True
    """Check reachability and login of the registry before any image is built."""


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
        ns = reg.namespace
        self.repository_paths = {img.name: f"{ns}/{img.name}" if ns else img.name for img in args.images}

        if reg.edition == "enterprise":
            self._declare_enterprise(name, args, keep)
        elif reg.edition == "personal":
            pulumi.log.warn(CLASSIC_RETIREMENT_WARNING, resource=self)
            self._declare_classic(name, args, keep)
        else:
            self.server = pulumi.Output.from_input(reg.server)
            self.credentials = RegistryCredentials(
                server=self.server,
                username=pulumi.Output.from_input(reg.username) if reg.username else None,
                password=pulumi.Output.secret(args.password) if args.password is not None else None,
            )

        self.ready = self._preflight(args) if args.preflight else pulumi.Output.from_input(True)
        self.register_outputs({"server": self.server, "repositories": self.repository_paths})

    def _preflight(self, args: AcrRegistryArgs) -> pulumi.Output[bool]:
        """Resolves True once the registry answered and accepted the credentials; raises PreflightError otherwise.

        It runs as soon as server and credentials are known, in preview too (the Enterprise token comes from an
        invoke, which previews run), so a pull request's preview catches broken credentials. A preview runs on
        read-only credentials, so it checks the login only, not push permission; and a preview often runs where the
        registry cannot be reached (a VPC endpoint, or an instance whose internet access allows only the deploy
        runner), so there an unreachable registry is a warning: `pulumi up` still fails on it.
        """
        from components.preflight import PreflightError, PreflightTarget, check_registry

        repositories = tuple(self.repository_paths.values())
        allow_plain_http = args.registry.edition == "local"
        preview = pulumi.runtime.is_dry_run()
        creds = self.credentials

        def check(values: list) -> bool:
            server, username, password = values
            target = PreflightTarget(server, username, password, repositories, allow_plain_http,
                                     check_push=not preview)
            try:
                check_registry(target)
            except PreflightError as err:
                if not (preview and err.kind == "unreachable"):
                    raise
                pulumi.log.warn(f"{err} (preview goes on: `pulumi up` needs this registry reachable)", resource=self)
            return True

        # The result is a bare True: nothing secret leaks from it, so it must not taint what waits on it.
        return pulumi.Output.unsecret(pulumi.Output.all(creds.server, creds.username, creds.password).apply(check))

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
        for image in args.images:
            self.repositories[image.name] = repository_type(
                f"{name}-{image.name}-repo", namespace=reg.namespace, name=image.name, repo_type=reg.visibility,
                summary=image.summary,
                opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=depends)),
                **scope, **per_repository.get(image.name, {}),
            )

    def _declare_enterprise(self, name: str, args: AcrRegistryArgs, keep: pulumi.ResourceOptions) -> None:
        import pulumi_alicloud as alicloud

        reg = args.registry
        self._declare_namespace_and_repositories(
            name, args, keep,
            namespace_type=alicloud.cs.RegistryEnterpriseNamespace,
            repository_type=alicloud.cs.RegistryEnterpriseRepo,
            scope={"instance_id": reg.instance_id},
            per_repository={img.name: {"tag_immutability": img.tag_immutability} for img in args.images},
        )
        found = alicloud.cs.get_registry_enterprise_instances_output(
            ids=[reg.instance_id], enable_details=True, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        login = found.instances.apply(
            lambda insts: pick_enterprise_endpoint(list(insts or []), reg.instance_id, args.region, reg.endpoint)
        )
        # The host is not sensitive, even though it travels beside the token.
        self.server = pulumi.Output.unsecret(login.apply(lambda t: t[0]))
        self.credentials = RegistryCredentials(
            server=self.server,
            username=pulumi.Output.unsecret(login.apply(lambda t: t[1])),
            password=pulumi.Output.secret(login.apply(lambda t: t[2])),
        )

    def _declare_classic(self, name: str, args: AcrRegistryArgs, keep: pulumi.ResourceOptions) -> None:
        import pulumi_alicloud as alicloud

        reg = args.registry
        self._declare_namespace_and_repositories(
            name, args, keep, namespace_type=alicloud.cr.Namespace, repository_type=alicloud.cr.Repo,
            scope={}, per_repository={},
        )
        self.server = pulumi.Output.from_input(classic_host(args.region, reg.endpoint))
        self.credentials = RegistryCredentials(
            server=self.server,
            username=pulumi.Output.from_input(reg.username),
            password=pulumi.Output.secret(args.password),
        )
