"""Images: from validated settings to a content-tagged, digest-pinned `docker.Image` per repository.

`plan_builds` runs before any resource is declared: it walks every build context once, refuses sensitive files
and computes the content tag. `PublishedImage` then either declares the `docker.Image` that builds and pushes it
(after its repository), or, when the registry already holds that content tag, declares nothing that builds and
takes the digest the registry reported; either way it exposes the digest-pinned `ref` deployments must consume.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components import context as build_context
from components.registry import RegistryCredentials
from components.settings import ImageSettings, Settings


class BuildPlanError(Exception):
    """One or more images cannot be built safely; lists every problem."""


@dataclass(frozen=True)
class BuildPlan:
    """What one image's build will see, known before anything is declared."""

    image: ImageSettings
    tag: str
    file_count: int
    """Files and symlinks the build sees."""
    total_bytes: int


def plan_builds(settings: Settings) -> dict[str, BuildPlan]:
    """Walk each build context once: content tag plus the sensitive-file guard, for all images at once.

    Images sharing a context and Dockerfile (a stack's `web` and `worker`) share one ContextScan: one
    walk, one read of each changed file, one stat-cache load and write; only their build inputs
    (and so their digests) are per image.
    """
    plans: dict[str, BuildPlan] = {}
    problems: list[str] = []
    scans: dict[tuple[Path, Path], build_context.ContextScan] = {}
    try:
        for i, image in enumerate(settings.images):
            context, dockerfile = settings.path(image.context), settings.path(image.dockerfile)
            pair = (context, dockerfile)
            scan = scans.get(pair)
            if scan is None:
                scan = scans[pair] = build_context.ContextScan(context, dockerfile)
            try:
                report = build_context.check_context(
                    context,
                    dockerfile,
                    build_args=image.build_args,
                    target=image.target,
                    platform=image.platform,
                    allow_sensitive=image.allow_sensitive,
                    scan=scan,
                )
            except build_context.SensitiveFilesError as err:
                problems.append(f"acr-publish:images[{i}] ({image.name}): {err}")
                continue
            if report.allowed:
                # Deliberate, but never silent: the run says which sensitive files go into the image.
                paths = ", ".join(f"{f.path} ({f.reason})" for f in report.allowed)
                pulumi.log.warn(f"acr-publish:images[{i}] ({image.name}): allowSensitive sends {paths} into the image")
            plans[image.name] = BuildPlan(image, report.tag, report.file_count, report.total_bytes)
    finally:
        # Every image's state (refused ones too) is recorded in its scan; one cache write per context.
        for scan in scans.values():
            scan.save()
    if problems:
        raise BuildPlanError("\n".join(problems))
    return plans


@dataclass(frozen=True)
class PublishedImageArgs:
    """Inputs of PublishedImage."""

    plan: BuildPlan
    """The image's settings and content tag."""
    repository: str
    """Full repository reference without tag: <host>/<namespace>/<name>."""
    credentials: RegistryCredentials
    """Registry login; the password is a secret."""
    repository_resource: pulumi.Resource | None
    """The ACR repository the push must wait for (None for a local registry)."""
    published_digest: str | None = None
    """The digest the registry reported for the content tag when it already holds it (checked before anything was
    declared); None: not published, so the image is built and pushed."""


class PublishedImage(pulumi.ComponentResource):
    """One image under its content tag in its repository: built and pushed, or found already published."""

    repository: pulumi.Output[str]
    tag: pulumi.Output[str]
    image_name: pulumi.Output[str]
    ref: pulumi.Output[str]
    image: docker.Image | None
    """The build; None when the registry already holds the content tag."""

    def __init__(self, name: str, args: PublishedImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("acr-publish:index:PublishedImage", name, None, opts)
        plan = args.plan
        self.repository = pulumi.Output.from_input(args.repository)
        self.tag = pulumi.Output.from_input(plan.tag)
        full_name = f"{args.repository}:{plan.tag}"
        if args.published_digest is not None:
            # The registry holds this content tag already (pushed by an earlier run, another stack or machine):
            # rebuilding would re-push other bytes under it, refused by tag immutability or moving the tag.
            self.image = None
            self.image_name = pulumi.Output.from_input(full_name)
            self.ref = pulumi.Output.from_input(f"{args.repository}@{args.published_digest}")
            pulumi.log.info(f"{name}: {plan.tag} is already in {args.repository} ({args.published_digest}); "
                            "nothing to build", resource=self)
        else:
            self.image = self._build(name, args, full_name)
            self.image_name = self.image.image_name
            self.ref = self.image.repo_digest
        self.register_outputs({
            "repository": self.repository, "tag": self.tag, "imageName": self.image_name, "ref": self.ref,
        })

    def _build(self, name: str, args: PublishedImageArgs, full_name: str) -> docker.Image:
        img = args.plan.image
        build = docker.DockerBuildArgs(
            # Relative paths: the provider stores them in state, and absolute ones differ between machines.
            context=img.context,
            dockerfile=img.dockerfile,
            args=dict(img.build_args) or None,
            target=img.target,
            platform=img.platform,
            builder_version=docker.BuilderVersion.BUILDER_BUILD_KIT,
        )
        depends = [args.repository_resource] if args.repository_resource is not None else []
        creds = args.credentials
        return docker.Image(
            f"{name}-image",
            image_name=full_name,
            build=build,
            registry=docker.RegistryArgs(
                server=creds.server,
                username=creds.username,
                password=creds.password,
            ),
            skip_push=False,
            build_on_preview=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )
