"""Images: from validated settings to a content-tagged, digest-pinned `docker.Image` per repository.

`plan_builds` runs before any resource is declared: it walks every build context once, refuses sensitive files
and computes the content tag. `PublishedImage` then declares the `docker.Image` that builds and pushes it, gated
on the registry preflight and on its repository, and exposes the digest-pinned `ref` deployments must consume.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker

from buildcontext import ContextScan, SensitiveFilesError, history
from components.registry import RegistryCredentials
from components.settings import ImageSettings, Settings


class BuildPlanError(Exception):
    """One or more images cannot be built safely; lists every problem."""


@dataclass(frozen=True)
class BuildPlan:
    """What one image's build will see, known before anything is declared."""

    image: ImageSettings
    tag: str


def plan_builds(settings: Settings) -> dict[str, BuildPlan]:
    """Scan each build context once: content tag plus the sensitive-file guard, for all images at once.

    Images sharing a context and Dockerfile (a stack's `web` and `worker`) share one ContextScan: one
    walk, one read of each changed file, one stat-cache load and write; only their build inputs (and so
    their digests) are per image. Each planned image is recorded in the explain history under
    (project, stack, image), which `python -m cli.explain --stack S --image I` reads.
    """
    plans: dict[str, BuildPlan] = {}
    problems: list[str] = []
    scans: dict[tuple[Path, Path], ContextScan] = {}
    try:
        for i, image in enumerate(settings.images):
            pair = (settings.path(image.context), settings.path(image.dockerfile))
            scan = scans.get(pair)
            if scan is None:
                scan = scans[pair] = ContextScan(*pair)
            try:
                report = scan.report(image.build_args, image.target, image.platform, image.allow_sensitive)
            except SensitiveFilesError as err:
                problems.append(f"acr-publish:images[{i}] ({image.name}): {err}")
                continue
            if report.allowed:
                # Deliberate, but never silent: the run says which sensitive files go into the image.
                paths = ", ".join(f"{f.path} ({f.reason})" for f in report.allowed)
                pulumi.log.warn(f"acr-publish:images[{i}] ({image.name}): allowSensitive sends {paths} into the image")
            history.record(history.HistoryKey(settings.project_root, settings.stack, image.name),
                           scan.state(image.build_args, image.target, image.platform), scan.manifest)
            plans[image.name] = BuildPlan(image, report.tag)
    finally:
        for scan in scans.values():  # one stat-cache write per context, also when an image was refused
            scan.save()
    if problems:
        raise BuildPlanError("\n".join(problems))
    return plans


@dataclass(frozen=True)
class PublishedImageArgs:
    """Inputs of PublishedImage."""

    plan: BuildPlan
    """The image's settings and content tag."""
    repository: pulumi.Input[str]
    """Full repository reference without tag: <host>/<namespace>/<name>."""
    credentials: RegistryCredentials
    """Registry login; the password is a secret."""
    repository_resource: pulumi.Resource | None
    """The ACR repository the push must wait for (None for a local registry)."""
    ready: pulumi.Input[bool]
    """Resolves once the registry preflight passed; the build waits for it."""


class PublishedImage(pulumi.ComponentResource):
    """One image built from its context and pushed to its repository under its content tag."""

    repository: pulumi.Output[str]
    tag: pulumi.Output[str]
    image_name: pulumi.Output[str]
    ref: pulumi.Output[str]

    def __init__(self, name: str, args: PublishedImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("acr-publish:index:PublishedImage", name, None, opts)
        plan = args.plan
        img = plan.image
        self.repository = pulumi.Output.from_input(args.repository)
        self.tag = pulumi.Output.from_input(plan.tag)
        full_name = pulumi.Output.concat(self.repository, ":", plan.tag)
        # The image name only resolves after the preflight, so no build starts against a registry that would refuse
        # the push. `ready` carries no secret, so the name stays plain.
        gated_name = pulumi.Output.all(pulumi.Output.unsecret(pulumi.Output.from_input(args.ready)), full_name).apply(
            lambda pair: pair[1]
        )
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
        self.image = docker.Image(
            f"{name}-image",
            image_name=gated_name,
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
        self.image_name = self.image.image_name
        self.ref = self.image.repo_digest
        self.register_outputs({
            "repository": self.repository, "tag": self.tag, "imageName": self.image_name, "ref": self.ref,
        })

