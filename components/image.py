"""Images: from validated settings to a content-tagged, digest-pinned `docker.Image` per repository.

`plan_builds` runs before any resource is declared: it walks every build context once, refuses sensitive files
and computes the content tag. `PublishedImage` then either declares the `docker.Image` that builds and pushes it
(after its repository), or, when the registry already holds that content tag, declares nothing that builds and
takes the digest the registry reported; either way it exposes the digest-pinned `ref` deployments must consume.
`LastPublished` reads the stack's own last outputs (a StackReference to itself) so a build can use the image this
stack published last as BuildKit's registry cache (`build.cacheFrom`).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pulumi
import pulumi_docker as docker

from buildcontext import ContextScan, history, stages
from buildcontext.printable import escaped
from components import remote_inputs, staged_prune
from components.audit import declare_audit
from components.image_plans import image_label, read_image_plans
from components.platforms import history_name, index_tag
from components.registry import RegistryCredentials
from errors import AcrPublishError
from registryclient.login import RegistryLogin
from components.config.schema import ImageSettings, Settings, image_platforms
from registryclient.references import TAG


class BuildPlanError(AcrPublishError):
    """One or more images cannot be built safely; lists every problem."""


@dataclass(frozen=True)
class BuildPlan:
    """What one image's build will see, known before anything is declared."""

    image: ImageSettings
    tag: str
    secret_build_args: frozenset[str] = frozenset()
    """Build args passed to docker.Image as Pulumi secrets: those allowSensitive accepts, and credential-looking ones
    only stages off the target's FROM chain use."""
    dockerfile: str | None = None
    """The Dockerfile the build uses (project-relative): the staged copy pinned to the digests the tag names, or
    None for the configured one (nothing to pin, or remoteInputs: ignore). None for an image with `platforms`."""
    platform_tags: Mapping[str, str] = field(default_factory=dict)
    """An image with `platforms`: each platform's content tag, in the configured order (`tag` is then the index's
    tag, components/platforms.py); empty for a one-platform image."""
    platform_dockerfiles: Mapping[str, str | None] = field(default_factory=dict)
    """An image with `platforms`: each platform's Dockerfile as `dockerfile` says, pinned to that platform's remote
    inputs (a base by tag is another manifest per platform); empty for a one-platform image."""

    def dockerfile_for(self, platform: str | None) -> str | None:
        """The staged Dockerfile of the build for `platform` (None: the image's one platform), or None."""
        return self.platform_dockerfiles.get(platform) if platform is not None else self.dockerfile

    @property
    def staged(self) -> set[str]:
        """Every staged Dockerfile this plan's builds read."""
        return {p for p in (self.dockerfile, *self.platform_dockerfiles.values()) if p is not None}


"""Where the staged, pinned Dockerfiles are written, relative to the project root (ignored by git)."""


def _read_plans(settings: Settings, problems: list[str]) -> dict[str, dict[str, remote_inputs.ImageInputs] | None]:
    """Image name -> its Dockerfile read per platform (components/image_plans.py), None when unreadable."""
    return {image.name: read_image_plans(image_label(i, image), image, settings.path(image.dockerfile), problems)
            for i, image in enumerate(settings.images)}


def _stage_pinned(settings: Settings, image: ImageSettings, plan: stages.DockerfilePlan,
                  resolved: remote_inputs.ResolvedInputs) -> str | None:
    """Write the Dockerfile pinned to `resolved` next to the stack's other staged Dockerfiles; its project-relative
    path, or None when nothing needs pinning. The path names its content (`<image>/<sha256 of the text and ignore
    file, 16 hex>/Dockerfile`) and each file is written once, by rename of a complete temporary file: a plan made
    meanwhile (a concurrent preview) writes its own directory and never changes the one this plan's build reads.
    BuildKit reads `<Dockerfile>.dockerignore` before the context's `.dockerignore`, so the configured Dockerfile's
    own ignore file is staged beside it."""
    if not resolved.digests and not resolved.checksums:
        return None
    text = plan.pinned_text(resolved.digests, resolved.checksums).encode("utf-8", errors="surrogateescape")
    own_ignore = settings.path(image.dockerfile + ".dockerignore")
    ignore = own_ignore.read_bytes() if own_ignore.is_file() else None
    name = hashlib.sha256(text + b"\0" + (b"-" if ignore is None else b"+" + ignore)).hexdigest()[:16]
    relative = f"{staged_prune.PINNED_DIR}/{settings.stack}/{image.name}/{name}/Dockerfile"
    path = settings.path(relative)
    attempts = 3
    while True:
        attempts -= 1
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if ignore is not None:
                _write_once(Path(f"{path}.dockerignore"), ignore)
            _write_once(path, text)  # last: a Dockerfile present means its directory is complete
            return relative
        except FileNotFoundError:
            # A concurrent prune (components/staged_prune.py) moved the directory aside meanwhile: stage it anew.
            if not attempts:
                raise


def _write_once(path: Path, data: bytes) -> None:
    """`path` with `data`, unless it exists (its name is its content): written whole to a temporary file, then
    renamed, so no reader ever sees part of it. An existing one is touched: reused now, it is not pruned."""
    try:
        os.utime(path)
        return
    except FileNotFoundError:
        pass
    fd, temporary = tempfile.mkstemp(prefix=".staging-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _context_scans(settings: Settings, problems: list[str],
                   scans: dict[tuple[Path, Path], ContextScan]) -> dict[str, ContextScan]:
    """Image name -> its ContextScan, one per (context, Dockerfile) pair in `scans`, shared by the images naming it.

    An image whose staged directory or context is refused is left out, its problem in `problems`."""
    image_scans: dict[str, ContextScan] = {}
    for i, image in enumerate(settings.images):
        pair = (settings.path(image.context), settings.path(image.dockerfile))
        staged_problem = staged_prune.staged_dir_problem(settings, image)
        if staged_problem is not None:
            problems.append(f"{image_label(i, image)}: {staged_problem}")
        try:  # scanned even so: every problem of the context is reported in one run
            scan = scans.get(pair)
            if scan is None:
                scan = scans[pair] = ContextScan(*pair)
            if staged_problem is None:
                image_scans[image.name] = scan
        except ValueError as err:  # a context the engine cannot send (its reason)
            problems.append(f"{image_label(i, image)}: {err}")
    return image_scans


def _warn_remote_inputs(image: ImageSettings, label: str,
                        inputs: Mapping[str, remote_inputs.ImageInputs] | None) -> None:
    """Say what the content tag does not cover: everything remote (`ignore`), or unpinned git sources (each line
    once, whichever platforms fetch it)."""
    if image.remote_inputs == "ignore":
        pulumi.log.warn(remote_inputs.ignored_warning(label))
    elif inputs is not None:
        warnings = [w for each in inputs.values() for w in remote_inputs.unpinned_git_warnings(each)]
        for warning in dict.fromkeys(warnings):
            pulumi.log.warn(warning)


def _plan_image(settings: Settings, image: ImageSettings, label: str, scan: ContextScan,
                inputs: Mapping[str, remote_inputs.ImageInputs] | None,
                resolved: Mapping[tuple[str, str], remote_inputs.ResolvedInputs],
                problems: list[str]) -> BuildPlan | None:
    """One image's plan: per platform, a content tag over that platform's remote inputs, recorded in the explain
    history, and the Dockerfile pinned to them; None when the sensitive-file guard refuses it (its problem in
    `problems`)."""
    # One report per platform: the platform is a build input, so each build has its own content tag.
    reports = {}
    try:
        for platform in image_platforms(image):
            plan = inputs[platform].plan if inputs is not None else None
            remote = resolved.get((label, platform))
            labels = remote.labels if remote is not None else {}
            report = scan.report(image.build_args, image.target, platform, image.allow_sensitive, labels, plan)
            reports[platform] = (report, plan, remote, labels)
    except ValueError as err:  # SensitiveFilesError
        problems.append(f"{label}: {err}")
        return None
    if report.allowed:
        # Deliberate, but never silent: the run says which sensitive files go into the image.
        paths = ", ".join(f"{escaped(f.path)} ({escaped(f.reason)})" for f in report.allowed)
        pulumi.log.warn(f"{label}: allowSensitive sends {paths} into the image")
    for note in dict.fromkeys(n for r, *_ in reports.values() for n in r.off_chain):
        pulumi.log.info(f"{label}: {escaped(note)}")
    secret = frozenset(f.path.removeprefix("buildArg:") for r, *_ in reports.values() for f in r.allowed
                       if f.kind == "buildArg") | frozenset(a for r, *_ in reports.values() for a in r.off_chain_args)
    staged: dict[str, str | None] = {}
    for platform, (report, plan, remote, labels) in reports.items():
        history.record(history.HistoryKey(settings.project_root, settings.stack,
                                          history_name(image.name, platform, bool(image.platforms))),
                       scan.state(image.build_args, image.target, platform, labels), scan.manifest)
        staged[platform] = (_stage_pinned(settings, image, plan, remote)
                            if remote is not None and plan is not None and not problems else None)
    platform_tags = {platform: entry[0].tag for platform, entry in reports.items()}
    if image.platforms:
        return BuildPlan(image, index_tag(platform_tags), secret, None, platform_tags, staged)
    return BuildPlan(image, report.tag, secret, staged[image.platform])


def plan_builds(settings: Settings, login: RegistryLogin | None = None) -> dict[str, BuildPlan]:
    """Scan each build context once and pin what each build pulls in: content tag plus the sensitive-file guard,
    for all images at once.

    The remote inputs (components/remote_inputs.py: base images and remote ADD sources of the stages each target
    needs) are resolved concurrently while the contexts are scanned; `login` (from components/registry.py)
    is the stack's own registry login, used for its host only. Images sharing a context and Dockerfile (a stack's
    `web` and `worker`) share one ContextScan: one walk, one read of each changed file, one stat-cache load and
    write; only their build inputs (and so their digests) are per image. Each planned image is recorded in the
    explain history under (project, stack, image), which `python -m cli.explain --stack S --image I` reads.
    """
    plans: dict[str, BuildPlan] = {}
    problems: list[str] = []
    scans: dict[tuple[Path, Path], ContextScan] = {}
    dockerfiles = _read_plans(settings, problems)
    waiting = remote_inputs.resolve_all([i for p in dockerfiles.values() if p is not None for i in p.values()], login)
    resolved: dict[tuple[str, str], remote_inputs.ResolvedInputs] = {}
    try:
        image_scans = _context_scans(settings, problems, scans)
        try:
            resolved = waiting.result()
        except remote_inputs.RemoteInputError as err:
            problems.append(str(err))
        for i, image in enumerate(settings.images):
            scan = image_scans.get(image.name)
            if scan is None:
                continue
            label = image_label(i, image)
            inputs = dockerfiles.get(image.name)
            _warn_remote_inputs(image, label, inputs)
            if image.remote_inputs != "ignore" and inputs is not None and \
                    any((label, platform) not in resolved for platform in inputs):
                continue  # its problem is listed
            planned = _plan_image(settings, image, label, scan, inputs, resolved, problems)
            if planned is not None:
                plans[image.name] = planned
    finally:
        for scan in scans.values():  # one stat-cache write per context, also when an image was refused
            scan.save()
    if problems:
        raise BuildPlanError("\n".join(problems))
    staged_prune.prune(settings.path(staged_prune.PINNED_DIR), {settings.path(staged).parent for p in plans.values()
                                                   for staged in p.staged})
    return plans




class LastPublished:
    """The images this stack published last: its own last outputs, read through a StackReference to
    `<organization>/<project>/<stack>`, declared only once an image asks for it (only builds with cacheFrom do).

    Pulumi documents no organization for a program it hands None: the name cannot be formed then, so every image
    builds without a registry cache, said once in an info line, and nothing is read."""

    def __init__(self) -> None:
        organization = pulumi.get_organization()
        self.stack_name = (f"{organization}/{pulumi.get_project()}/{pulumi.get_stack()}"
                           if organization else None)
        self._outputs: pulumi.Output[Any] | None = None
        self._said_no_organization = False

    def outputs(self) -> pulumi.Output[Any]:
        if self._outputs is None:
            self._outputs = pulumi.StackReference(self.stack_name).outputs
        return self._outputs

    def cache_source(self, name: str, repository: str, image_name: str,
                     platform: str | None = None) -> pulumi.Output[list[str] | None] | None:
        """[the imageName this stack published last for `name`], or None: on a first deployment (no outputs yet)
        and, saying so in one info line, when the outputs have no `images`, name no image for `name`, name one that
        is not `<repository>:<tag>`, or name `image_name` itself (the image being built: using it would change the
        build inputs of an unchanged image). None (not an Output) when the stack's name is unknown. With `platform`,
        the image is that platform's build of `name` (`images.<name>.platforms.<platform>` of the outputs)."""
        if self.stack_name is None:
            if not self._said_no_organization:
                self._said_no_organization = True
                pulumi.log.info("pulumi.get_organization() returned no organization, so the stack's own last "
                                "outputs (<organization>/<project>/<stack>) cannot be read; building without a "
                                "registry cache")
            return None

        def pick(outputs: Any) -> list[str] | None:
            if not outputs:
                return None  # first deployment: nothing was published yet, nothing to say
            images = outputs.get("images") if isinstance(outputs, dict) else None
            if not isinstance(images, dict):
                pulumi.log.info(f"{name}: the stack's last outputs have no images; building without a registry "
                                "cache")
                return None
            last = images.get(name)
            if platform is not None:
                last = last.get("platforms") if isinstance(last, dict) else None
                last = last.get(platform) if isinstance(last, dict) else None
            previous = last.get("imageName") if isinstance(last, dict) else None
            if not isinstance(previous, str) or not previous:
                pulumi.log.info(f"{name}: the stack's last outputs name no image for it; building without a "
                                "registry cache")
                return None
            prefix = f"{repository}:"
            if not (previous.startswith(prefix) and TAG.fullmatch(previous[len(prefix):])):
                pulumi.log.info(f"{name}: the image this stack published last ({previous}) is not "
                                f"{repository}:<tag>; building without a registry cache")
                return None
            if previous == image_name:
                pulumi.log.info(f"{name}: the image this stack published last is the one being built ({previous});"
                                " building without a registry cache")
                return None
            return [previous]

        return self.outputs().apply(pick)


def layer_cache(preflight: bool, plans: dict[str, BuildPlan]) -> LastPublished | None:
    """Where builds find their registry cache: None (with one info line when an image wants the cache) when the
    preflight is off. Without its published check every run declares every build, and a cache source read from
    the last outputs would be the unchanged image's own name on the second run: a `build` change, so a rebuild
    and re-push of the same tag (refused under tag immutability)."""
    if preflight:
        return LastPublished()
    wanting = sorted(name for name, plan in plans.items() if plan.image.cache_from)
    if wanting:
        pulumi.log.info(f"acr-publish:preflight is false: {', '.join(wanting)} build without a registry cache "
                        "(the layer cache needs the preflight's published check)")
    return None


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
    audit_login: RegistryLogin | None = None
    """The login the layer audit reads the published digest with (components/audit.py); None: no audit."""


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
        self.audit = None
        if args.audit_login is not None:
            self.audit = declare_audit(name, self, args.audit_login, args.repository.split("/", 1)[1], self.ref,
                                       plan.image.audit)
        self.register_outputs({
            "repository": self.repository, "tag": self.tag, "imageName": self.image_name, "ref": self.ref,
        })

    def _build(self, name: str, args: PublishedImageArgs, full_name: str) -> docker.Image:
        return declare_build(self, name, args, full_name)


def declare_build(parent: pulumi.Resource, name: str, args: PublishedImageArgs, full_name: str, *,
                  platform: str | None = None, provider: pulumi.ProviderResource | None = None) -> docker.Image:
    """The `docker.Image` `<name>-image` that builds and pushes `full_name`: for the image's platform, or for
    `platform` (one build of a multi-platform image, components/image_index.py), on `provider`'s Docker engine when
    one is given (a builder of acr-publish:builders), else on the local engine."""
    img = args.plan.image
    cache_from = None
    if img.cache_from and args.last_published is not None:
        source = args.last_published.cache_source(name if platform is None else img.name, args.repository,
                                                   full_name, platform)
        if source is not None:
            cache_from = source.apply(lambda images: docker.CacheFromArgs(images=images) if images else None)
    build = docker.DockerBuildArgs(
        # Relative paths: the provider stores them in state, and absolute ones differ between machines.
        context=img.context,
        # The staged Dockerfile pinned to the digests the content tag names (remote inputs), when there is one:
        # a base moved since planning then fails the build instead of landing under this tag.
        dockerfile=args.plan.dockerfile_for(platform) or img.dockerfile,
        args={k: pulumi.Output.secret(v) if k in args.plan.secret_build_args else v
              for k, v in img.build_args.items()} or None,
        target=img.target,
        platform=platform or img.platform,
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
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends, provider=provider),
    )
