"""Images: from validated settings to a content-tagged, digest-pinned `docker.Image` per repository.

`plan_builds` runs before any resource is declared: it walks every build context once, refuses sensitive files
and computes the content tag. `PublishedImage` then either declares the `docker.Image` that builds and pushes it
(after its repository), or, when the registry already holds that content tag, declares nothing that builds and
takes the digest the registry reported; either way it exposes the digest-pinned `ref` deployments must consume.
`LastPublished` reads the stack's own last outputs (a StackReference to itself) so a build can use the image this
stack published last as BuildKit's registry cache (`build.cacheFrom`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker

from buildcontext import ContextScan, history
from components.registry import RegistryCredentials
from components.settings import ImageSettings, Settings


class BuildPlanError(Exception):
    """One or more images cannot be built safely; lists every problem."""


@dataclass(frozen=True)
class BuildPlan:
    """What one image's build will see, known before anything is declared."""

    image: ImageSettings
    tag: str
    secret_build_args: frozenset[str] = frozenset()
    """Build args allowSensitive accepts as sensitive: passed to docker.Image as Pulumi secrets."""


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
            try:
                scan = scans.get(pair)
                if scan is None:
                    scan = scans[pair] = ContextScan(*pair)
                report = scan.report(image.build_args, image.target, image.platform, image.allow_sensitive)
            except ValueError as err:  # SensitiveFilesError, or a context the engine cannot send (its reason)
                problems.append(f"acr-publish:images[{i}] ({image.name}): {err}")
                continue
            if report.allowed:
                # Deliberate, but never silent: the run says which sensitive files go into the image.
                paths = ", ".join(f"{f.path} ({f.reason})" for f in report.allowed)
                pulumi.log.warn(f"acr-publish:images[{i}] ({image.name}): allowSensitive sends {paths} into the image")
            history.record(history.HistoryKey(settings.project_root, settings.stack, image.name),
                           scan.state(image.build_args, image.target, image.platform), scan.manifest)
            secret_args = frozenset(f.path.removeprefix("buildArg:") for f in report.allowed if f.kind == "buildArg")
            plans[image.name] = BuildPlan(image, report.tag, secret_args)
    finally:
        for scan in scans.values():  # one stat-cache write per context, also when an image was refused
            scan.save()
    if problems:
        raise BuildPlanError("\n".join(problems))
    return plans


class LastPublished:
    """The images this stack published last: its own last `images` output, read through a StackReference to
    `<organization>/<project>/<stack>`, declared only once an image asks for it (only builds with cacheFrom do)."""

    def __init__(self) -> None:
        self.stack_name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
        self._images: pulumi.Output[Any] | None = None

    def images(self) -> pulumi.Output[Any]:
        if self._images is None:
            self._images = pulumi.StackReference(self.stack_name).get_output("images")
        return self._images

    def cache_source(self, name: str, repository: str) -> pulumi.Output[list[str] | None]:
        """[the imageName this stack published last for `name`], or None: on a first deployment (no outputs yet),
        and, saying so in one info line, when that output is missing or names another repository."""
        def pick(images: Any) -> list[str] | None:
            if images is None:
                return None  # first deployment: nothing was published yet, nothing to say
            last = images.get(name) if isinstance(images, dict) else None
            image_name = last.get("imageName") if isinstance(last, dict) else None
            if not isinstance(image_name, str) or not image_name:
                pulumi.log.info(f"{name}: the stack's last outputs name no image for it; building without a "
                                "registry cache")
                return None
            if not image_name.startswith(f"{repository}:"):
                pulumi.log.info(f"{name}: the image this stack published last ({image_name}) is not in {repository}; "
                                "building without a registry cache")
                return None
            return [image_name]

        return self.images().apply(pick)


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
    last_published: LastPublished | None = None
    """Where a build with `cacheFrom: true` finds its registry cache; None: build without one."""


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
        cache_from = None
        if img.cache_from and args.last_published is not None:
            cache_from = args.last_published.cache_source(name, args.repository).apply(
                lambda images: docker.CacheFromArgs(images=images) if images else None
            )
        build = docker.DockerBuildArgs(
            # Relative paths: the provider stores them in state, and absolute ones differ between machines.
            context=img.context,
            dockerfile=img.dockerfile,
            args={k: pulumi.Output.secret(v) if k in args.plan.secret_build_args else v
                  for k, v in img.build_args.items()} or None,
            target=img.target,
            platform=img.platform,
            builder_version=docker.BuilderVersion.BUILDER_BUILD_KIT,
            # The provider pulls each image with the stack's credentials before building (a failed pull is not
            # fatal); BuildKit reuses the layers whose inline cache metadata (BUILDKIT_INLINE_CACHE=1) match.
            cache_from=cache_from,
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
