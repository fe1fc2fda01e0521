"""The promotion copy: one image, by digest, from a source repository to a target repository and tag.

Carried out with the project's registry client (registryclient/); no Docker engine. In order: the target tag
(already at the digest: nothing to do; at another digest: `CopyError`, never an overwrite); the source manifest by
digest, its bytes checked against it (an index is copied with each child, children first); the blobs the target
lacks, mounted across repositories on the same host, else streamed GET -> PUT in 1 MiB chunks by a few workers;
the target tag read again right before the manifest PUT, and read back after it and again SETTLE_S later. What the
registry API leaves open (no conditional PUT) and what closes it is in docs/design.md ("Promotion").

A malformed source manifest is a `CopyError` naming the manifest, never a KeyError. This module runs in the
promotion's dynamic provider process, which reports a `CopyError` as its message alone (components/provider_errors.py);
the message names both repositories and what to change, never a credential.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from boundedjson import PastBounds, parse_json
from components.stack_advice import SOURCE_ADVICE, STACK_ADVICE
from errors import AcrPublishError
from registryclient import DOCKER_LIST, OCI_INDEX, RegistryClient, RegistryError
from registryclient.client import MANIFEST_LIMIT
from registryclient.endpoint import parse_server
from registryclient.login import RegistryLogin
from registryclient.references import DIGEST, is_loopback

BLOB_WORKERS = 4
COPY_TIMEOUT_S = 60.0
"""Per socket operation, and for the head (status line and headers) of each answer in all: a registry silent this
long, or this slow to say what it answers, has stopped answering."""
COPY_BUDGET_S = 3600.0
"""The whole copy of one image, every exchange with both registries included; past it every socket is shut down.
Besides it, every body read must keep the registry client's pace floor (64 KiB a minute), so a trickled layer
fails within a minute or two, not at this bound."""
SETTLE_S = 3.0
"""After a copy's manifest PUT and its read back, the tag is read once more this much later: a concurrent push of
another digest whose PUT was still on its way (sent before ours landed, landing after our read back) is noticed if
it lands within this time. Later ones are not: see the module doc for what closes that."""
CHECK_BUDGET_S = 30.0
"""The source checks of a promoting stack together (login and one HEAD per image), and a refresh's read of one
target tag."""
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
INDEX_DEPTH_MAX = 8
"""Image indexes nested deeper than this are refused (an index of platform images is 1 deep; attestations and
artifact indexes add one or two): a chain of indexes cannot make the copy recurse without end."""


class CopyError(AcrPublishError):
    """The copy cannot be done as asked; the text names both repositories and what to change, never a secret.

    `kind` is the registry client's kind of failure when a registry exchange failed ("unreachable", "auth", ...;
    see RegistryError), else "copy"."""

    default_kind = "copy"

    def __init__(self, message: str, kind: str = "copy"):
        super().__init__(message, kind)


def registry_client(login: RegistryLogin, deadline: float, budget: float,
                    limit_name: str = "promotion time limit", *, source: bool = False) -> RegistryClient:
    """A client for `login` whose every exchange ends by `deadline` (a time.monotonic() value), `budget` seconds
    after the conversation it belongs to began; `source`: the promotion's source registry (its advice names the
    source stack, not this stack's registry settings)."""
    return RegistryClient(login.server, login.username, login.password,
                          allow_plain_http=login.allow_plain_http and is_loopback_server(login.server),
                          timeout=COPY_TIMEOUT_S, deadline=deadline, budget=budget,
                          label=f"promotion, registry '{login.server}'", limit_name=limit_name,
                          advice=SOURCE_ADVICE if source else STACK_ADVICE)


def is_loopback_server(server: str) -> bool:
    """Whether `server` (host[:port]) names this machine."""
    try:
        return is_loopback(parse_server(server, allow_plain_http=True).host)
    except RegistryError:
        return False


@dataclass
class CopyReport:
    """What one copy did."""

    digest: str
    """The manifest (or index) digest copied."""
    copied: bool
    """False when the target tag was already at the digest."""
    manifests: int = 0
    """Manifests put: the image's, or an index's and each child's."""
    mounted: list[str] = field(default_factory=list)
    """Blobs the target registry linked from the source repository (same host: no byte read)."""
    streamed: list[str] = field(default_factory=list)
    """Blobs read from the source and written to the target."""
    present: list[str] = field(default_factory=list)
    """Blobs the target already had."""


def target_digest(target: RegistryLogin, repository: str, tag: str, *, budget: float = CHECK_BUDGET_S) -> str | None:
    """The digest the target tag is at now; None when the tag (or the repository) does not exist."""
    with registry_client(target, time.monotonic() + budget, budget, "refresh time limit") as client:
        try:
            client.resolve()
            return client.manifest_digest(repository, tag)
        except RegistryError as err:
            hint = ""
            if err.kind == "auth":
                # Read (refresh) has only the credentials stored at the last copy.
                hint = ("; a refresh reads the tag with the login stored in the state by the last `pulumi up` "
                        "that copied this image (a rerun that copies nothing keeps that login), and an Enterprise "
                        "stack's temporary login expires an hour after it was issued: refresh within the hour "
                        "after the last `pulumi up` that copied, or leave the promotions out of the refresh "
                        "(`pulumi refresh --exclude <urn>`; `pulumi stack --show-urns` lists them)")
            raise CopyError(f"reading {target.server}/{repository}:{tag} failed: {err}{hint}", err.kind) from None


def check_source(source: RegistryLogin, repository: str, digest: str, *, deadline: float) -> None:
    """Prove the source login and that the digest is there (pull scope), before anything is declared; every
    exchange ends by `deadline` (a time.monotonic() value; see CHECK_BUDGET_S)."""
    with registry_client(source, deadline, CHECK_BUDGET_S, "source check time limit", source=True) as client:
        try:
            client.resolve()
            found = client.manifest_digest(repository, digest)
        except RegistryError as err:
            raise CopyError(f"the promotion source {source.server}/{repository}@{digest} cannot be read: {err}",
                            err.kind) from None
    if found is None:
        raise CopyError(
            f"the promotion source {source.server}/{repository}@{digest} does not exist: the source stack's export "
            "names a digest its registry does not hold (deleted?); run `pulumi up` on the source stack"
        )


def copy_image(source: RegistryLogin, source_repository: str, digest: str, target: RegistryLogin,
               target_repository: str, tag: str, *, budget: float = COPY_BUDGET_S) -> CopyReport:
    """Copy `<source>/<source_repository>@<digest>` to `<target>/<target_repository>:<tag>` within `budget` seconds;
    see the module doc."""
    where = f"{source.server}/{source_repository}@{digest} -> {target.server}/{target_repository}:{tag}"
    try:
        return _Copy(source, source_repository, target, target_repository, budget).run(digest, tag)
    except RegistryError as err:
        raise CopyError(f"promotion {where} failed: {err}", err.kind) from None


class _Copy:
    def __init__(self, source: RegistryLogin, source_repository: str, target: RegistryLogin, target_repository: str,
                 budget: float):
        self.source, self.target = source, target
        self.source_repository, self.target_repository = source_repository, target_repository
        self.same_host = source.server.lower() == target.server.lower()
        self.deadline, self.budget = time.monotonic() + budget, budget
        self.src = registry_client(source, self.deadline, budget, source=True)
        self.dst = registry_client(target, self.deadline, budget)
        self.local = threading.local()
        self.lock = threading.Lock()
        self.workers: list[RegistryClient] = []

    def run(self, digest: str, tag: str) -> CopyReport:
        try:
            return self._run(digest, tag)
        finally:
            for client in [self.src, self.dst, *self.workers]:
                client.close()

    def _run(self, digest: str, tag: str) -> CopyReport:
        report = CopyReport(digest=digest, copied=False)
        self.src.resolve()
        self.dst.resolve()
        if self._tag_taken(tag, digest) == digest:
            return report
        self._copy_manifest(digest, tag, report, top=True)
        report.copied = True
        return report

    def _tag_taken(self, tag: str, digest: str, *, during: bool = False) -> str | None:
        """The digest the target tag is at (None: free); a CopyError when it is at another digest than `digest`."""
        existing = self.dst.manifest_digest(self.target_repository, tag)
        if existing is not None and existing != digest:
            when = " (pushed while this promotion copied the blobs)" if during else ""
            raise CopyError(
                f"{self.target.server}/{self.target_repository}:{tag} already exists at {existing}{when}, not at "
                f"the promoted digest {digest}: a promoted tag is never overwritten. Find out who pushed that tag; "
                "to promote anyway, delete the tag in the target repository (or promote into another repository)"
            )
        return existing

    def _parse(self, digest: str, content: bytes, media_type: str) -> tuple[list[str], list[str]]:
        """(child manifests, blobs) of a manifest's bytes; a CopyError naming the manifest when they are malformed."""
        where = f"the source manifest {self.source.server}/{self.source_repository}@{digest}"

        def malformed(what: str) -> CopyError:
            return CopyError(f"{where} is malformed: {what}; it cannot be copied (push the image again to the "
                             "source with docker, then `pulumi up` the source stack)")

        def digest_of(entry: object, what: str) -> str:
            value = entry.get("digest") if isinstance(entry, dict) else None
            if not isinstance(value, str) or not DIGEST.fullmatch(value):
                raise malformed(f"{what} has no digest of the form sha256:<64 hex digits>")
            return value

        try:
            body = parse_json(content, limit=MANIFEST_LIMIT)
        except PastBounds as err:
            raise malformed(f"it is not JSON a copy reads: it is {err}") from None
        except ValueError:
            raise malformed("it is not JSON") from None
        if not isinstance(body, dict):
            raise malformed(f"it is a JSON {type(body).__name__}, not an object")
        if media_type in INDEX_TYPES or "manifests" in body:
            children = body.get("manifests")
            if not isinstance(children, list):
                raise malformed("its `manifests` is missing or not a list")
            return [digest_of(child, f"manifests[{i}]") for i, child in enumerate(children)], []
        blobs = [digest_of(body["config"], "its config")] if body.get("config") is not None else []
        layers = body.get("layers") or []
        if not isinstance(layers, list):
            raise malformed("its `layers` is not a list")
        # Foreign layers (with `urls`) live outside the registry and are not copied, as docker does not.
        blobs += [digest_of(layer, f"layers[{i}]") for i, layer in enumerate(layers)
                  if not (isinstance(layer, dict) and layer.get("urls"))]
        return [], blobs

    def _copy_manifest(self, digest: str, reference: str, report: CopyReport, *, top: bool, depth: int = 0) -> None:
        if depth > INDEX_DEPTH_MAX:
            raise CopyError(
                f"the source manifest {self.source.server}/{self.source_repository}@{digest} is an image index nested "
                f"more than {INDEX_DEPTH_MAX} indexes deep (an index of platform images is 1 deep); it is not "
                "copied: push an image whose index holds the platform images directly")
        manifest = self.src.get_manifest(self.source_repository, digest)
        if manifest.digest != digest:
            raise CopyError(f"{self.source.server}/{self.source_repository}@{digest} has bytes of digest "
                            f"{manifest.digest}")
        children, blobs = self._parse(digest, manifest.content, manifest.media_type)
        for child_digest in children:
            if self.dst.manifest_digest(self.target_repository, child_digest) is None:
                self._copy_manifest(child_digest, child_digest, report, top=False, depth=depth + 1)
        unique = list(dict.fromkeys(blobs))
        if unique:
            with ThreadPoolExecutor(max_workers=min(BLOB_WORKERS, len(unique))) as pool:
                for kind, blob in pool.map(self._copy_blob, unique):
                    getattr(report, kind).append(blob)
        if top:
            # The tag may have been pushed while the blobs were copied: read it again right before the PUT.
            self._tag_taken(reference, digest, during=True)
        stored = self.dst.put_manifest(self.target_repository, reference, manifest.media_type, manifest.content)
        report.manifests += 1
        if stored != digest:
            raise CopyError(f"{self.target.server}/{self.target_repository} stored the manifest as {stored}, not "
                            f"{digest}")
        if top:
            self._tag_held(reference, digest)
            time.sleep(SETTLE_S)
            self._tag_held(reference, digest)

    def _tag_held(self, reference: str, digest: str) -> None:
        """The tag is still at `digest` after our PUT; a CopyError naming the digest that won otherwise."""
        found = self.dst.manifest_digest(self.target_repository, reference)
        if found != digest:
            raise CopyError(f"after the copy {self.target.server}/{self.target_repository}:{reference} is at "
                            f"{found}, not the source digest {digest}: another push to that tag landed at the "
                            "same time as this promotion's, and the tag names its bytes now; find out who pushes "
                            "it. Tag immutability (tagImmutability: true) makes the registry refuse the second "
                            "push, and one deployment per stack at a time keeps a stack from racing itself")

    def _clients(self) -> tuple[RegistryClient, RegistryClient]:
        pair = getattr(self.local, "pair", None)
        if pair is None:
            pair = self.local.pair = (registry_client(self.source, self.deadline, self.budget, source=True),
                                      registry_client(self.target, self.deadline, self.budget))
            with self.lock:
                self.workers.extend(pair)
        return pair

    def _copy_blob(self, digest: str) -> tuple[str, str]:
        src, dst = self._clients()
        if dst.blob_exists(self.target_repository, digest):
            return "present", digest
        if self.same_host and dst.mount_blob(self.target_repository, digest, self.source_repository):
            return "mounted", digest
        dst.put_blob(self.target_repository, digest, src.get_blob(self.source_repository, digest))
        return "streamed", digest
