"""Multi-platform images: one build per platform, and the image index that lists them under the image's tag.

`MultiPlatformImage` is what `PublishedImage` is for one platform, for an image with `platforms`: per platform, the
build under that platform's own content tag (on the `docker.Provider` of the platform's builder, else the local
engine; a platform tag the registry holds is never rebuilt), then an `ImageIndex` (a dynamic-provider resource, as
`Promotion` is) that writes the index over the children's digests under the image's content tag through the
registry client; `ref` is the index's digest. `write_index` reads every child back and checks its platform before
writing, and never rewrites a tag (an `IndexWriteError` names the tag and the fix). docs/multi-platform.md has the
rules; errors of Create and Read reach the engine as their message alone (components/provider_errors.py).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import pulumi
import pulumi.dynamic as dynamic

from boundedjson import PastBounds, parse_json
from components.audit import declare_audit
from components.copy import CHECK_BUDGET_S, COPY_BUDGET_S
from components.docker_rules import platform_parts
from components.platforms import CHILD_TYPES, Child, index_manifest, listed_children, platform_slug
from components.provider_errors import serve_messages_alone
from components.stack_advice import STACK_ADVICE
from errors import AcrPublishError
from registryclient import RegistryClient, RegistryError
from registryclient.client import MANIFEST_LIMIT

# Loaded by the provider process to unpickle the provider: its failures reach the engine as their message.
serve_messages_alone()

INDEX_TYPE = "pulumi-python:dynamic/acr-publish:ImageIndex"
INDEX_TIMEOUT_S = 60.0
"""Per socket operation, and for the head of each answer; the whole conversation has a budget besides: a write
the copy's (components/copy.py COPY_BUDGET_S), a read (refresh) the short CHECK_BUDGET_S."""
CONFIG_LIMIT = 1 << 20
"""An image config is a few KB; a larger "config" is not one, and is not read whole."""
# What makes an index another index: its children or where it goes; credentials never do.
REPLACING_INPUTS = ("server", "repository", "tag", "children")


def builds_needed(settings: Any, plans: Mapping[str, Any], published: Mapping[Any, str | None]
                  ) -> list[tuple[int, str, str]]:
    """(index in acr-publish:images, image name, platform) of every build this run declares: nothing of an image
    whose tag (for several platforms: whose index) is published, and no platform whose own tag is."""
    found = []
    for i, image in enumerate(settings.images):
        if published.get(image.name) is not None:
            continue
        platform_tags = plans[image.name].platform_tags
        for platform in platform_tags or (image.platform,):
            if not platform_tags or published.get((image.name, platform)) is None:
                found.append((i, image.name, platform))
    return found


class IndexWriteError(AcrPublishError):
    """The index cannot be written as asked; names the repository, the tag and what to change, never a secret."""


def _loopback(server: str) -> bool:
    from components.copy import is_loopback_server

    return is_loopback_server(server)


def _client(server: str, username: str | None, password: str | None, allow_plain_http: bool, budget: float,
            limit_name: str) -> RegistryClient:
    """A client whose every exchange ends within `budget` seconds of now, all of them together."""
    return RegistryClient(server, username, password, allow_plain_http=allow_plain_http and _loopback(server),
                          timeout=INDEX_TIMEOUT_S, deadline=time.monotonic() + budget, budget=budget,
                          label=f"image index, registry '{server}'", limit_name=limit_name, advice=STACK_ADVICE)


def _json(client: RegistryClient, data: bytes, limit: int, what: str) -> Any:
    try:
        return parse_json(data, limit=limit)
    except PastBounds as err:
        raise IndexWriteError(f"{what} in {client.server} is not JSON an index is written over: it is {err}; "
                              "rebuild that platform's image") from None
    except ValueError:
        raise IndexWriteError(f"{what} in {client.server} is not JSON; rebuild that platform's image") from None


def _config_platform(client: RegistryClient, repository: str, manifest: bytes) -> tuple[str, str, str | None]:
    body = _json(client, manifest, MANIFEST_LIMIT, f"a child manifest of {repository}")
    config = body.get("config") if isinstance(body, dict) else None
    digest = config.get("digest") if isinstance(config, dict) else None
    if not isinstance(digest, str) or not isinstance(config.get("size"), int) or config["size"] > CONFIG_LIMIT:
        raise IndexWriteError(f"a child manifest in {client.server}/{repository} has no image config of at most "
                              f"{CONFIG_LIMIT} bytes")
    data = b"".join(client.get_blob(repository, digest))
    image = _json(client, data, CONFIG_LIMIT, f"the image config {repository}@{digest}")
    if not isinstance(image, dict):
        raise IndexWriteError(f"the image config {digest} in {client.server}/{repository} is not a JSON object")
    variant = image.get("variant") or None
    return str(image.get("os")), str(image.get("architecture")), variant


def write_index(server: str, username: str | None, password: str | None, allow_plain_http: bool, repository: str,
                tag: str, children: list[Mapping[str, str]], *, budget: float = COPY_BUDGET_S) -> tuple[str, bool]:
    """Write the index over `children` ([{platform, digest}]) under `<server>/<repository>:<tag>` within `budget`
    seconds; (its digest, whether this call wrote it). See the module docstring for what is checked and what is
    never overwritten."""
    where = f"{server}/{repository}:{tag}"
    try:
        with _client(server, username, password, allow_plain_http, budget, "image index time limit") as client:
            entries = []
            for child in children:
                platform, digest = child["platform"], child["digest"]
                manifest = client.get_manifest(repository, digest)
                if manifest.media_type not in CHILD_TYPES:
                    raise IndexWriteError(
                        f"{server}/{repository}@{digest}, the {platform} build of {where}, is a {manifest.media_type}, "
                        "not an image manifest: an index lists one image per platform (a build that pushes an index "
                        "of its own, e.g. with provenance attestations, cannot be listed); rebuild it as one image")
                found = _config_platform(client, repository, manifest.content)
                wanted = platform_parts(platform)
                if found[:2] != wanted[:2] or (wanted[2] and found[2] and found[2] != wanted[2]):
                    raise IndexWriteError(
                        f"{server}/{repository}@{digest} is listed as {platform} in {where}, but its image config "
                        f"says {'/'.join(p for p in found if p)}: the builder built another platform than asked; "
                        f"check acr-publish:builders.{platform} and rebuild")
                entries.append(Child(platform, digest, manifest.media_type, len(manifest.content)))
            media_type, content = index_manifest(entries)
            digest = "sha256:" + hashlib.sha256(content).hexdigest()
            existing = client.manifest_digest(repository, tag)
            if existing == digest:
                return digest, False
            if existing is not None:
                if _same_children(client.get_manifest(repository, tag).content, entries):
                    return existing, False  # another machine wrote this index: a published index is never rewritten
                raise IndexWriteError(
                    f"{where} already exists at {existing}, which is not an index of these builds: a published tag "
                    "is never overwritten. Find out who pushed it; delete that tag to publish this index")
            stored = client.put_manifest(repository, tag, media_type, content)
            after = client.manifest_digest(repository, tag)
            if stored != digest or after != digest:
                raise IndexWriteError(f"after writing the index {digest}, {where} is at {after}: another push to that "
                                      "tag landed at the same time; find out who pushes it")
            return digest, True
    except RegistryError as err:
        raise IndexWriteError(f"writing the image index {where} failed: {err}") from None


def _same_children(content: bytes, entries: list[Child]) -> bool:
    try:
        listed = listed_children(parse_json(content, limit=MANIFEST_LIMIT))
    except ValueError:
        return False
    if listed is None:
        return False
    found = {(p.get("os"), p.get("architecture"), p.get("variant")): d for p, d in listed if isinstance(p, dict)}
    return found == {platform_parts(c.platform): c.digest for c in entries}


class ImageIndexProvider(dynamic.ResourceProvider):
    """Create = write the index (or find it there); Read = the tag's digest; Delete = nothing."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        auth = props.get("auth") or {}
        digest, written = write_index(props["server"], auth.get("username") or None, auth.get("password") or None,
                                      bool(props.get("plainHttp")), props["repository"], props["tag"],
                                      props["children"])
        outs = {**props, "digest": digest, "written": written,
                "ref": f"{props['server']}/{props['repository']}@{digest}"}
        return dynamic.CreateResult(id_=f"{props['server']}/{props['repository']}:{props['tag']}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [key for key in REPLACING_INPUTS if olds.get(key) != news.get(key)]
        return dynamic.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        return dynamic.UpdateResult(outs={**olds, **news})  # every change replaces (diff); nothing to update

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        auth = props.get("auth") or {}
        try:
            with _client(props["server"], auth.get("username") or None, auth.get("password") or None,
                         bool(props.get("plainHttp")), CHECK_BUDGET_S, "refresh time limit") as client:
                digest = client.manifest_digest(props["repository"], props["tag"])
        except RegistryError as err:
            raise IndexWriteError(f"reading {props['server']}/{props['repository']}:{props['tag']} failed: "
                                  f"{err}") from None
        if digest is None:
            return dynamic.ReadResult(id_=None, outs={})
        return dynamic.ReadResult(id_=id_, outs={**props, "digest": digest,
                                                 "ref": f"{props['server']}/{props['repository']}@{digest}"})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing is removed from the registry, as for every published image."""


@dataclass(frozen=True)
class ImageIndexArgs:
    """Inputs of one ImageIndex."""

    server: pulumi.Input[str]
    repository: str
    """The repository path on the host (`namespace/name`)."""
    tag: str
    children: list[pulumi.Input[dict]]
    """[{platform, digest}] in the configured platform order."""
    username: pulumi.Input[str] | None
    password: pulumi.Input[str] | None
    """A secret."""
    allow_plain_http: bool


class ImageIndex(dynamic.Resource, module="acr-publish", name="ImageIndex"):
    """The image index of one image's platforms under its content tag."""

    digest: pulumi.Output[str]
    ref: pulumi.Output[str]

    def __init__(self, name: str, args: ImageIndexArgs, opts: pulumi.ResourceOptions | None = None):
        props = {
            "server": args.server, "repository": args.repository, "tag": args.tag, "children": args.children,
            "plainHttp": args.allow_plain_http,
            "auth": pulumi.Output.secret({"username": args.username, "password": args.password}),
            "digest": None, "ref": None, "written": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["auth"]))
        super().__init__(ImageIndexProvider(), name, props, opts)


@dataclass(frozen=True)
class MultiPlatformImageArgs:
    """Inputs of MultiPlatformImage."""

    build: Any
    """components.image.PublishedImageArgs of the image (its plan has `platform_tags`)."""
    repository_path: str
    """The repository path on the host (`namespace/name`)."""
    allow_plain_http: bool
    """Plain HTTP to the registry (a loopback registry of the local edition only)."""
    published_children: Mapping[str, str | None] = field(default_factory=dict)
    """platform -> the digest the registry holds under that platform's content tag, or None: build it."""
    providers: Mapping[str, pulumi.ProviderResource] = field(default_factory=dict)
    """platform -> the docker.Provider of its builder; a platform not listed builds on the local engine."""


class MultiPlatformImage(pulumi.ComponentResource):
    """One image for several platforms under its content tag: the builds, and the index over them."""

    repository: pulumi.Output[str]
    tag: pulumi.Output[str]
    image_name: pulumi.Output[str]
    ref: pulumi.Output[str]
    platforms: dict[str, dict[str, pulumi.Output[str]]]
    """platform -> {imageName, ref} of that platform's build."""
    images: dict[str, Any]
    """platform -> its docker.Image, for the platforms built in this run."""
    index: ImageIndex | None

    def __init__(self, name: str, args: MultiPlatformImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("acr-publish:index:MultiPlatformImage", name, None, opts)
        from components.image import declare_build

        build = args.build
        plan, repository = build.plan, build.repository
        self.repository = pulumi.Output.from_input(repository)
        self.tag = pulumi.Output.from_input(plan.tag)
        self.image_name = pulumi.Output.from_input(f"{repository}:{plan.tag}")
        self.platforms, self.images, self.index = {}, {}, None
        children: list[pulumi.Output[dict]] = []
        for platform, child_tag in plan.platform_tags.items():
            child_name = f"{repository}:{child_tag}"
            published = args.published_children.get(platform)
            if published is not None:
                ref = pulumi.Output.from_input(f"{repository}@{published}")
            elif build.published_digest is not None:
                # The index is published, so this build is in the registry by digest (the index lists it), though
                # its own tag is gone: a published index is never rewritten, nor is any of its children rebuilt.
                pulumi.log.warn(f"{name}: {child_name} is no longer in the registry, but the published index "
                                f"{plan.tag} still lists that build; nothing is rebuilt", resource=self)
                self.platforms[platform] = {"imageName": pulumi.Output.from_input(child_name), "ref": None}
                continue
            else:
                image = declare_build(self, f"{name}-{platform_slug(platform)}", build, child_name,
                                      platform=platform, provider=args.providers.get(platform))
                self.images[platform] = image
                ref = image.repo_digest
            self.platforms[platform] = {"imageName": pulumi.Output.from_input(child_name), "ref": ref}
            children.append(ref.apply(lambda r, p=platform: {"platform": p, "digest": r.rsplit("@", 1)[1]}))
        if build.published_digest is not None:
            # The index is published: its children are too (it lists them), so nothing above was built.
            self.ref = pulumi.Output.from_input(f"{repository}@{build.published_digest}")
            pulumi.log.info(f"{name}: {plan.tag} is already in {repository} ({build.published_digest}); nothing to "
                            "build", resource=self)
        else:
            creds = build.credentials
            depends = [build.repository_resource] if build.repository_resource is not None else []
            self.index = ImageIndex(
                f"{name}-index",
                ImageIndexArgs(server=creds.server, repository=args.repository_path, tag=plan.tag,
                               children=children, username=creds.username, password=creds.password,
                               allow_plain_http=args.allow_plain_http),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[*depends, *self.images.values()]),
            )
            self.ref = pulumi.Output.unsecret(self.index.ref)
        self.audit = None
        if build.audit_login is not None:
            # One audit of the index: each platform's manifest is audited (components/audit.py).
            self.audit = declare_audit(name, self, build.audit_login, args.repository_path, self.ref,
                                       plan.image.audit)
        self.register_outputs({"repository": self.repository, "tag": self.tag, "imageName": self.image_name,
                               "ref": self.ref, "platforms": self.platforms})
