"""Promotion: copy the images another stack published, digest for digest, instead of building them again.

A stack with `acr-publish:promoteFrom: <stack>` builds nothing. `plan_promotion` runs every check before anything is
declared: the source stack's exports (components/promotion_source.py), this registry's preflight, the source
registry's login (`source_login`) and each source digest (`check_sources`). `declare_promoted` then declares one
`Promotion` resource per image, which copies `<source repository>@sha256:...` to `<this stack's repository>:<the
same content tag>` (components/copy.py does the registry work), so previews show the copy and state records it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import pulumi
import pulumi.dynamic as dynamic

from registryclient.login import RegistryLogin
from components.registry import (
    AcrRegistry, RepositorySettings, classic_host, preflight, repository_paths, repository_settings,
)
from components.audit import declare_audit
from components.config.registry_rules import is_region
from components.config.schema import PROJECT, AuditSettings, Settings
from components.config.shown import shown
from components.provider_errors import serve_messages_alone
from components.promotion_source import PromotionError, SourceImage, SourceStack, read_source

# Loaded by the provider process to unpickle the provider: its failures reach the engine as their message.
serve_messages_alone()

PROMOTION_TYPE = "pulumi-python:dynamic/acr-publish:Promotion"
SECRET_INPUTS = ("sourceAuth", "targetAuth")
# What makes a copy another copy: the bytes (source digest) or where they go. Credentials and the source's
# location do not: the same digest copied to the same target tag is the same result.
REPLACING_INPUTS = ("sourceDigest", "targetServer", "targetRepository", "tag")



def registry_instance(settings: Settings) -> dict[str, Any]:
    """The non-secret `registryInstance` export: how a promoting stack logs in to this stack's registry."""
    reg = settings.registry
    return {
        "edition": reg.edition,
        "instanceId": reg.instance_id if reg.edition == "enterprise" else None,
        "region": settings.region if reg.edition != "local" else None,
    }


# --- the resource ----------------------------------------------------------------------------------------------

def _endpoint(props: Mapping[str, Any], side: str) -> RegistryLogin:
    auth = props.get(f"{side}Auth") or {}
    return RegistryLogin(props[f"{side}Server"], auth.get("username") or None, auth.get("password") or None,
                         bool(props.get(f"{side}PlainHttp")))


class PromotionProvider(dynamic.ResourceProvider):
    """Create = copy (or find the copy already there); Read = the target tag's digest; Delete = nothing.

    Why a Python dynamic provider and not pulumi-command's `local.Command` running a copy command:
    - the semantics asked for are a resource's own lifecycle: `diff` (a new source digest or another target is a
      replacement, i.e. a new copy; changed credentials, such as the hourly Enterprise token, are no change), `read`
      (a refresh reads the target tag's digest, so a deleted tag drops the resource from state and the next `up`
      copies again), `delete` (nothing is removed from the registry). `local.Command` has no diff of its own beyond
      "any trigger changed", and no read: a refresh cannot notice a deleted tag;
    - no second plugin: the dynamic provider is part of the pinned Pulumi SDK (`python -u -m pulumi.dynamic` in the
      project's virtualenv), while pulumi-command is another provider plugin to install and pin on every runner;
    - credentials stay Pulumi secrets: inputs marked secret, also listed in `additional_secret_outputs`, so state
      holds them only encrypted; `local.Command` would store its environment in state and need its stdout scrubbed.
    tests/e2e/test_promote.py drives the provider as the engine serializes and runs it (tests/e2e/dynamic_engine.py).
    The instance holds no state and no credential: what is pickled is the class reference (tested).

    Errors of Create and Read are raised in the provider process: `pulumi up` shows an AcrPublishError as its message
    alone under the `…-promote` resource (components/provider_errors.py), which says what failed and the fix and
    holds no credential (components/copy.py says why).
    """

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        from components.audit import refuse_sensitive_source
        from components.copy import copy_image

        refuse_sensitive_source(props)  # before anything is copied
        report = copy_image(
            _endpoint(props, "source"), props["sourceRepository"], props["sourceDigest"],
            _endpoint(props, "target"), props["targetRepository"], props["tag"],
        )
        outs = dict(props)
        outs.update(digest=report.digest, ref=f"{props['targetServer']}/{props['targetRepository']}@{report.digest}",
                    copied=report.copied, blobs={"mounted": len(report.mounted), "streamed": len(report.streamed),
                                                 "present": len(report.present)})
        return dynamic.CreateResult(id_=f"{props['targetServer']}/{props['targetRepository']}:{props['tag']}",
                                    outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [key for key in REPLACING_INPUTS if olds.get(key) != news.get(key)]
        # A refresh that found the tag at another digest leaves `digest` != `sourceDigest`: copy again, which
        # refuses to overwrite that tag with a clear error.
        if olds.get("digest") not in (None, news.get("sourceDigest")) and "sourceDigest" not in changed:
            changed.append("sourceDigest")
        return dynamic.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        # diff never reports an in-place change (every difference replaces); nothing in the registry to update.
        return dynamic.UpdateResult(outs={**olds, **news})

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        from components.copy import target_digest

        digest = target_digest(_endpoint(props, "target"), props["targetRepository"], props["tag"])
        if digest is None:
            return dynamic.ReadResult(id_=None, outs={})  # the tag is gone: the resource leaves the state
        return dynamic.ReadResult(id_=id_, outs={**props, "digest": digest,
                                                 "ref": f"{props['targetServer']}/{props['targetRepository']}@{digest}"})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing is removed from the registry, as repositories are retained: the tag stays where it is."""


@dataclass(frozen=True)
class PromotionArgs:
    """Inputs of one Promotion."""

    source: SourceImage
    """The image as the source stack exports it."""
    source_server: str
    """The source registry host[:port]."""
    source_username: pulumi.Input[str] | None
    """The source login's user (None: no login)."""
    source_password: pulumi.Input[str] | None
    """The source login's password or temporary token: a secret."""
    source_plain_http: bool
    """Plain HTTP to the source (a loopback registry of the local edition only)."""
    target_server: pulumi.Input[str]
    """This stack's registry host[:port]."""
    target_repository: pulumi.Input[str]
    """The repository path on the target host (`namespace/name`)."""
    target_username: pulumi.Input[str] | None
    """This stack's login user (None: no login)."""
    target_password: pulumi.Input[str] | None
    """This stack's password or temporary token: a secret."""
    target_plain_http: bool
    """Plain HTTP to the target (a loopback registry of the local edition only)."""
    audit_allow: tuple[str, ...] = ()
    """Image paths this stack accepts as sensitive findings in the source (audit.allowSensitive)."""


class Promotion(dynamic.Resource, module="acr-publish", name="Promotion"):
    """One image copied from the source repository to this stack's repository under the same content tag."""

    digest: pulumi.Output[str]
    ref: pulumi.Output[str]

    def __init__(self, name: str, args: PromotionArgs, opts: pulumi.ResourceOptions | None = None):
        def auth(username, password):
            return pulumi.Output.secret({"username": username, "password": password})

        props = {
            "sourceServer": args.source_server,
            "sourceRepository": args.source.path,
            "sourceDigest": args.source.digest,
            "sourceRef": args.source.ref,
            "sourcePlainHttp": args.source_plain_http,
            "sourceAuth": auth(args.source_username, args.source_password),
            "targetServer": args.target_server,
            "targetRepository": args.target_repository,
            "targetPlainHttp": args.target_plain_http,
            "targetAuth": auth(args.target_username, args.target_password),
            "tag": args.source.tag,
            "auditAllow": list(args.audit_allow),
            "digest": None,
            "ref": None,
            "copied": None,
            "blobs": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_INPUTS)))
        super().__init__(PromotionProvider(), name, props, opts)


# --- the source registry's login ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceLogin:
    """How the promotion reads the source registry: the login (its password wrapped as a secret where it becomes a
    resource input) and where its credentials come from."""

    login: RegistryLogin
    how: str
    """Where the credentials come from, for messages: never the credentials themselves."""


def enterprise_login(instance_id: str, region: str, host: str, *, stack_region: str | None):
    """(username, token) of an Enterprise instance's temporary login, from the synchronous instances invoke; the
    source's own region through a provider for it when that is not this stack's region."""
    import pulumi_alicloud as alicloud

    opts = None
    if region != stack_region:
        provider = alicloud.Provider(f"{PROJECT}-promote-source-{region}", region=region)
        opts = pulumi.InvokeOptions(provider=provider)
    found = alicloud.cs.get_registry_enterprise_instances(ids=[instance_id], enable_details=True, opts=opts)
    match = [i for i in (found.instances or []) if i.id == instance_id]
    if not match:
        raise PromotionError(
            f"the promotion source's instance {instance_id!r} was not found in region {region!r} with this "
            "deployer's credentials: it needs cr:ListInstance and cr:GetAuthorizationToken there, and "
            "cr:PullRepository on the source repositories (`python -m cli.ram <stack>` renders them)"
        )
    inst = match[0]
    hosts = set(inst.public_endpoints or []) | set(inst.vpc_endpoints or [])
    if host not in hosts:
        raise PromotionError(
            f"the promotion source exports registry {host!r}, which is not an endpoint of instance {instance_id!r} "
            f"({', '.join(sorted(hosts)) or 'none'}); run `pulumi up` on the source stack again"
        )
    return inst.temp_username, inst.authorization_token


def source_login(settings: Settings, source: SourceStack, target: RegistryLogin,
                 source_password: str | None) -> SourceLogin:
    """The source registry's login, per the issue: the same login on the same host or for a classic Personal
    source; an Enterprise source's temporary login from its instance; a local source's sourceUsername/Password."""
    promotion = settings.promotion
    assert promotion is not None
    edition = source.instance.get("edition")
    stack = settings.stack
    config_login = promotion.source_username is not None

    def unused(reason: str) -> None:
        if config_login:
            raise PromotionError(
                f"acr-publish:sourceUsername and acr-publish:sourcePassword are not used: {reason}; remove them "
                f"with `pulumi config rm acr-publish:sourceUsername -s {stack}` (and sourcePassword)"
            )

    if source.registry.lower() == target.server.lower():
        unused(f"the source stack {source.stack!r} is on this stack's registry host {target.server}, so the "
               "promotion uses this stack's login")
        return SourceLogin(target, "this stack's login")
    if edition == "personal":
        unused("a classic Personal Edition source uses this stack's login (it is per account)")
        # This stack's account password goes to that host: only ACR's own classic host for the exported region.
        region = source.instance.get("region")
        hosts = {classic_host(region, endpoint) for endpoint in ("public", "vpc")} if is_region(region) else set()
        if source.registry.lower() not in hosts:
            raise PromotionError(
                f"stack {stack!r} promotes from stack {source.stack!r}, whose exports say it is a classic Personal "
                f"Edition registry in region {shown(region)} at {shown(source.registry)}, which is not that "
                f"region's classic registry host ({' or '.join(sorted(hosts)) or 'the region is not a region id'}): "
                "this stack's account password is sent only to ACR's classic host; run `pulumi up` on the source "
                "stack with this version of the program, or fix acr-publish:promoteFrom"
            )
        if settings.registry.edition != "personal":
            raise PromotionError(
                f"stack {stack!r} promotes from the classic Personal Edition registry {source.registry} of stack "
                f"{source.stack!r}: its login is the account's registry password, which only a personal-edition "
                "stack has (acr-publish:registry.username and acr-publish:registryPassword); promote from an "
                "Enterprise or crpi- instance instead"
            )
        return SourceLogin(RegistryLogin(source.registry, target.username, target.password), "this stack's login")
    if edition == "enterprise":
        unused("an Enterprise source's temporary login comes from its instance")
        instance_id, region = source.instance.get("instanceId"), source.instance.get("region")
        if not instance_id or not region:
            raise PromotionError(f"stack {source.stack!r} exports registryInstance {dict(source.instance)!r} "
                                 "without instanceId and region; run `pulumi up` on it again")
        username, token = enterprise_login(instance_id, region, source.registry, stack_region=settings.region)
        return SourceLogin(RegistryLogin(source.registry, username, token), f"the temporary login of {instance_id}")
    if edition == "local":
        from components.copy import is_loopback_server

        login = RegistryLogin(source.registry, promotion.source_username, source_password,
                              is_loopback_server(source.registry))
        return SourceLogin(login, "acr-publish:sourceUsername" if config_login else "no login (none configured)")
    raise PromotionError(f"stack {source.stack!r} exports registryInstance.edition {edition!r}, which is not "
                         "enterprise, personal or local; run `pulumi up` on it with this version of the program")


def check_sources(source: SourceStack, login: SourceLogin) -> None:
    """Before anything is declared: the source login is accepted and every promoted digest is there."""
    from components.copy import CHECK_BUDGET_S, CopyError, check_source

    preview = pulumi.runtime.is_dry_run()
    problems = []
    deadline = time.monotonic() + CHECK_BUDGET_S  # one budget for all of them, as the preflight has
    for image in source.images:
        try:
            check_source(login.login, image.path, image.digest, deadline=deadline)
        except CopyError as err:
            if preview and err.kind == "unreachable":
                # As the preflight: previews often run where a VPC endpoint cannot be reached; `up` fails on it.
                pulumi.log.warn(f"{image.name}: {err} (preview goes on: `pulumi up` needs the source reachable)")
                continue
            problems.append(f"{image.name}: {err} (credentials: {login.how})")
    if problems:
        raise PromotionError("\n".join(problems))


@dataclass(frozen=True)
class PromotedImageArgs:
    """Inputs of PromotedImage."""

    source: SourceImage
    """The image as the source stack exports it."""
    source_login: SourceLogin
    """The source registry's login, from `source_login`."""
    target: RegistryLogin
    """This stack's registry login, from `components.registry.registry_login`."""
    repository_path: str
    """This stack's repository for the image on its host (`namespace/name`)."""
    repository_resource: pulumi.Resource | None
    """The ACR repository the copy must wait for (None for a local registry)."""
    audit: AuditSettings = AuditSettings()
    """This stack's `audit:` for the image: the promotion gate's allowed paths and the ImageAudit's thresholds."""


class PromotedImage(pulumi.ComponentResource):
    """One image promoted from the source stack: the Promotion, and the exports of a built image."""

    repository: pulumi.Output[str]
    tag: pulumi.Output[str]
    image_name: pulumi.Output[str]
    ref: pulumi.Output[str]

    def __init__(self, name: str, args: PromotedImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("acr-publish:index:PromotedImage", name, None, opts)
        source, login, target, repository_path = args.source, args.source_login, args.target, args.repository_path
        secret = (lambda v: pulumi.Output.secret(v) if v is not None else None)
        depends = [args.repository_resource] if args.repository_resource is not None else []
        self.promotion = Promotion(
            f"{name}-promote",
            PromotionArgs(
                source=source, source_server=login.login.server, source_username=login.login.username,
                source_password=secret(login.login.password), source_plain_http=login.login.allow_plain_http,
                target_server=target.server, target_repository=repository_path, target_username=target.username,
                target_password=secret(target.password), target_plain_http=target.allow_plain_http,
                audit_allow=args.audit.allow_sensitive,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )
        self.repository = pulumi.Output.from_input(f"{target.server}/{repository_path}")
        self.tag = pulumi.Output.from_input(source.tag)
        self.image_name = pulumi.Output.concat(self.repository, ":", source.tag)
        # Only the digest: the ref carries no secret, though the resource has secret outputs.
        self.ref = pulumi.Output.unsecret(self.promotion.ref)
        self.audit = declare_audit(name, self, target, repository_path, self.ref, args.audit)
        self.register_outputs({"repository": self.repository, "tag": self.tag, "imageName": self.image_name,
                               "ref": self.ref})


# --- the promotion path of the program ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PromotionPlan:
    """What a promoting stack declares, every check passed: the source stack and its login, this stack's login."""

    source: SourceStack
    source_login: SourceLogin
    login: RegistryLogin
    """This stack's registry login."""
    repositories: tuple[RepositorySettings, ...]
    """This stack's repository per promoted image."""
    paths: dict[str, str]
    """Each promoted image's repository path on this stack's registry host."""


def plan_promotion(settings: Settings, login: RegistryLogin, source_password: str | None) -> PromotionPlan:
    """Every check of a promoting stack, before anything is declared: the source stack's exports, the registry
    preflight over the promoted images' repositories (unless acr-publish:preflight is false), the source login and
    (with the preflight) each source digest."""
    source = read_source(settings)
    # The repositories are the promoted images': those the source exports (or the configured subset).
    paths = repository_paths(settings.registry.namespace, [repo.name for repo in source.repositories])
    if settings.preflight:
        preflight(login, paths)
    source_registry = source_login(settings, source, login, source_password)
    if settings.preflight:
        check_sources(source, source_registry)
    return PromotionPlan(source=source, source_login=source_registry, login=login,
                         repositories=repository_settings(source.repositories), paths=paths)


def declare_promoted(plan: PromotionPlan, registry: AcrRegistry) -> dict[str, PromotedImage]:
    """One PromotedImage per image of the source stack, each waiting for its repository."""
    audit_of = {repo.name: repo.audit for repo in plan.source.repositories}
    return {
        image.name: PromotedImage(
            image.name,
            PromotedImageArgs(source=image, source_login=plan.source_login, target=plan.login,
                              repository_path=plan.paths[image.name],
                              repository_resource=registry.repositories.get(image.name),
                              audit=audit_of[image.name]),
        )
        for image in plan.source.images
    }
