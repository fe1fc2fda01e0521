"""What a build pulls in from outside its context, pinned before anything is declared: each base image (FROM, and
the image of a `COPY --from` / `RUN --mount from=`) resolved to the digest of the manifest for the image's platform,
the frontend image (`# syntax=`) for the build host's, and each remote `ADD <url>` fetched and hashed.

Per image, by `remoteInputs` (components/config/image_rules.py): `resolve` (default) asks the registries and servers;
`pinned` asks nothing and refuses every reference without a digest and every http(s) source without `--checksum`
(and every git source without a full commit); `ignore` asks nothing and pins nothing (said in a warning). A pinned
input costs no request; every other distinct reference (one manifest request for all its platforms) and URL is asked
once per run, concurrently, in threads beside the plan's context scans.
Credentials: the stack's own login for its registry host only; elsewhere components/docker_config.py's, or none.

The result per image and platform (an image with `platforms` has a Dockerfile plan per platform), `ResolvedInputs`,
names each input by label (`FROM <ref>`, with `(<platform>)` when not that platform; `# syntax <ref>`; `ADD <url>`);
that mapping is part of the platform's content tag, and `pinned_text` (the staged Dockerfile its build uses) names
exactly those digests, so a base that moves between planning and building is not taken."""
from __future__ import annotations

import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import requests

from boundedjson import PastBounds, parse_json
from buildcontext.stages import DockerfilePlan, ExternalReference, RemoteSource
from components.docker_config import DOCKER_HUB, DOCKER_HUB_API, docker_config_credentials
from components.docker_rules import normal_parts, platform_preference
from components.remote_sources import TIMEOUT_S, ResolveFailure, fetch_checksum
from components.stack_advice import BASE_ADVICE, STACK_ADVICE
from errors import AcrPublishError
from registryclient import DOCKER_LIST, OCI_INDEX, RegistryClient, RegistryError
from registryclient.client import MANIFEST_LIMIT
from registryclient.login import RegistryLogin
from registryclient.references import is_loopback

BUDGET_S = 120.0
"""The whole resolution of one run: no request starts after it."""
WORKERS = 8


class RemoteInputError(AcrPublishError):
    """A base image or remote source cannot be pinned; lists every problem (line, reference, host, fix)."""


@dataclass(frozen=True)
class Location:
    """Where a reference lives: registry host (as the registry client takes it), repository, tag or digest."""

    host: str
    repository: str
    reference: str

    @property
    def shown_host(self) -> str:
        return DOCKER_HUB if self.host == DOCKER_HUB_API else self.host


def locate(reference: str) -> Location:
    """Docker's normalization of an image reference: a first component with '.', ':' or 'localhost' is a host,
    otherwise Docker Hub (`library/` for one-component names); the tag defaults to `latest`."""
    name, at, digest = reference.partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = DOCKER_HUB, name
    tag = "latest"
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
    if host in (DOCKER_HUB, "index.docker.io"):
        host = DOCKER_HUB_API
        if "/" not in path:
            path = f"library/{path}"
    return Location(host, path, digest if at else tag)


@dataclass(frozen=True)
class Credentials:
    """The login picked for one host, and where it came from."""

    login: RegistryLogin
    """The host, the account picked for it (None for anonymous) and whether plain HTTP may be used there."""
    source: str
    """How messages name them: "the stack's login", "the Docker config", "anonymous"."""


def credentials_for(host: str, stack: RegistryLogin | None) -> Credentials:
    """The stack's login for its own host only; else the Docker config's for `host`; else anonymous. Plain HTTP
    as the stack's login allows on its host, else only for a loopback host."""
    if stack is not None and host.lower() == stack.server.lower():
        return Credentials(RegistryLogin(host, stack.username, stack.password, stack.allow_plain_http),
                           "the stack's login")
    plain = is_loopback(host.rsplit(":", 1)[0])
    found = docker_config_credentials(host)
    if found is not None:
        return Credentials(RegistryLogin(host, found[0], found[1], plain), "the Docker config")
    return Credentials(RegistryLogin(host, None, None, plain), "anonymous")


def _index_entry_digest(entries: list, wanted: str) -> str | None:
    """The digest of the index entry BuildKit pulls for `wanted`: containerd's platforms.Only ordering (the
    platform, then what it can also run, components/docker_rules.py platform_preference), the first entry in index
    order for the best platform any entry has; None when none can run on it."""
    normal: list[tuple[tuple[str, str, str], str]] = []
    for entry in entries:
        plat = entry.get("platform") if isinstance(entry, dict) else None
        fields = [plat.get(k, "") for k in ("os", "architecture", "variant")] if isinstance(plat, dict) else None
        if fields and all(isinstance(f, str) for f in fields) and isinstance(entry.get("digest"), str):
            normal.append((normal_parts(*fields), entry["digest"]))
    for candidate in platform_preference(wanted):
        found = next((digest for parts, digest in normal if parts == candidate), None)
        if found is not None:
            return found
    return None


def registry_client(host: str, stack: RegistryLogin | None, deadline: float) -> tuple[RegistryClient, Credentials]:
    """A client for `host` with the credentials `credentials_for` picks (one per host and run: one login)."""
    creds = credentials_for(host, stack)
    shown = DOCKER_HUB if host == DOCKER_HUB_API else host
    own = stack is not None and host.lower() == stack.server.lower()
    client = RegistryClient.of(creds.login, timeout=TIMEOUT_S, deadline=deadline, label=shown, anonymous=True,
                               limit_name="remote-input time limit", advice=STACK_ADVICE if own else BASE_ADVICE)
    return client, creds


def resolve_platforms(reference: str, platforms: Sequence[str], stack: RegistryLogin | None, deadline: float,
                      client: tuple[RegistryClient, Credentials] | None = None) -> dict[str, str | ResolveFailure]:
    """Platform -> the digest of the manifest `reference` names for it, or the ResolveFailure: one manifest request
    for all of `platforms` (an index is read once and followed to each platform's entry). `client`: a client of
    `registry_client` for the reference's host, reused across its references (closed by the caller); without one,
    one is made and closed here."""
    where = locate(reference)
    own_client = client is None
    client, creds = registry_client(where.host, stack, deadline) if client is None else client
    try:
        with _as_failure(creds):
            return _platform_digests(client, where, platforms)
    except ResolveFailure as failure:
        return dict.fromkeys(platforms, failure)
    finally:
        if own_client:
            client.close()


@contextlib.contextmanager
def _as_failure(creds: Credentials) -> Iterator[None]:
    """A RegistryError raised inside, as the ResolveFailure whose kind picks the fix (naming whose credentials)."""
    try:
        yield
    except RegistryError as err:
        kind = "absent" if err.kind == "absent" or err.status == 404 else err.kind
        if creds.source == "anonymous" and kind in ("auth", "forbidden"):
            kind = "login"
        raise ResolveFailure(f"{err} (credentials: {creds.source})", kind, creds.source) from None


def _platform_digests(client: RegistryClient, where: Location,
                      platforms: Sequence[str]) -> dict[str, str | ResolveFailure]:
    """The manifest digest of `where` for each of `platforms`: the manifest's own, or an index's entry for the
    platform (a ResolveFailure for a platform the index lacks)."""
    if not client.logged_in:
        client.login(prove=False)  # the manifest request shows a refused login itself
    manifest = client.get_manifest(where.repository, where.reference)
    if manifest.media_type not in (OCI_INDEX, DOCKER_LIST):
        return dict.fromkeys(platforms, manifest.digest)
    try:
        doc = parse_json(manifest.content, limit=MANIFEST_LIMIT)
    except PastBounds as err:
        raise ResolveFailure(f"its index is not JSON a resolution reads: it is {err}", "protocol") from None
    except ValueError:
        raise ResolveFailure("its index is not JSON", "protocol") from None
    entries = doc.get("manifests") if isinstance(doc, dict) else None
    entries = entries if isinstance(entries, list) else []
    offered = sorted({"/".join(p for p in (e["platform"].get("os"), e["platform"].get("architecture"),
                                             e["platform"].get("variant")) if p)
                      for e in entries if isinstance(e, dict) and isinstance(e.get("platform"), dict)})
    found: dict[str, str | ResolveFailure] = {}
    for platform in platforms:
        digest = _index_entry_digest(entries, platform)
        found[platform] = digest if digest is not None else ResolveFailure(
            f"its index has no manifest for {platform} (it has {', '.join(offered) or 'none'})", "platform")
    return found


@dataclass
class ImageInputs:
    """One image's Dockerfile plan and where messages place it."""

    label: str
    """`acr-publish:images[i] (name)`."""
    dockerfile: str
    """The Dockerfile's project-relative path."""
    mode: str
    plan: DockerfilePlan
    platform: str
    """The platform `plan` was read for (one of an image's `platforms`, or its one `platform`)."""


@dataclass(frozen=True)
class ResolvedInputs:
    """One image's pinned remote inputs."""

    labels: Mapping[str, str] = field(default_factory=dict)
    """Label (`FROM <ref>`, `(<platform>)` added when not the image's; `ADD <url>`) -> digest: what the tag covers."""
    digests: Mapping[ExternalReference, str] = field(default_factory=dict)
    checksums: Mapping[RemoteSource, str] = field(default_factory=dict)


_FIXES = {
    "absent": "check the reference for a typo, or mirror the base into the stack's registry{server}",
    "login": ("give credentials for {host} (`docker login {host}`: the Docker config is read), pin the digest "
              "(FROM <ref>@sha256:…), or mirror the base into the stack's registry{server}"),
    "auth": ("check the credentials for {host} ({source}), pin the digest (FROM <ref>@sha256:…), or mirror the base "
             "into the stack's registry{server}"),
    "forbidden": ("give an account that may pull from {host}, pin the digest (FROM <ref>@sha256:…), or mirror the "
                  "base into the stack's registry{server}"),
    "platform": "set the image's platform to one the index has, or name a base built for it",
}
_DEFAULT_FIX = ("pin the digest (FROM <ref>@sha256:…) or mirror the base into the stack's registry{server}, which "
                "this machine reaches")
_SOURCE_FIXES = {
    "large": "pin it with ADD --checksum=sha256:<digest> (no request is then made)",
    "redirect": ("pin it with ADD --checksum=sha256:<digest> (no request is then made), or write the URL the "
                 "redirect should lead to"),
}
_DEFAULT_SOURCE_FIX = ("make the URL reachable from this machine, or pin it with ADD --checksum=sha256:<digest> (no "
                       "request is then made)")


def _shown(ref: ExternalReference) -> str:
    """A reference as messages name it: `# syntax=<ref>` for the directive, `<instruction> <ref>` otherwise."""
    return f"# syntax={ref.reference}" if ref.instruction == "# syntax" else f"{ref.instruction} {ref.reference}"


def _where(image: ImageInputs, line: int) -> str:
    return f"{image.label}: {image.dockerfile} line {line}"


def syntax_arg_problem(image: ImageInputs, ref: ExternalReference) -> str:
    """A BUILDKIT_SYNTAX build arg without a digest: acr-publish pins by rewriting the staged Dockerfile, and the
    build arg (passed to docker.Image as configured, a content-tag input itself) overrides any directive there, so
    the build could not be held to a resolved digest."""
    return (f"{image.label}: buildArgs.{ref.instruction} {ref.reference!r} names the frontend image without a digest "
            f"(it overrides the Dockerfile's # syntax=), and remoteInputs is {image.mode}: the build arg reaches "
            "the build as configured, so acr-publish cannot hold the build to a resolved digest; fix: write it as "
            "<ref>@sha256:<digest>, or remove it and write # syntax=<ref> as the Dockerfile's first line (resolved "
            "and pinned there), or set remoteInputs: ignore")


def pinned_problems(image: ImageInputs) -> list[str]:
    """Under `remoteInputs: pinned`: every needed reference without a digest and every remote source without a
    checksum (or full commit), each with its fix."""
    problems = []
    for ref in image.plan.references:
        if not ref.pinned and ref.line == 0:
            problems.append(syntax_arg_problem(image, ref))
        elif not ref.pinned:
            problems.append(f"{_where(image, ref.line)}: {_shown(ref)} has no digest, and "
                            "remoteInputs is pinned; fix: write it as <ref>@sha256:<digest> (`docker buildx "
                            f"imagetools inspect {ref.reference}` shows it), or set remoteInputs: resolve")
    for source in image.plan.sources:
        if not source.pinned:
            fix = ("ADD --checksum=sha256:<digest of the file>" if source.kind == "http"
                   else "name a full commit hash after '#' (e.g. #<40 hex digits>)")
            problems.append(f"{_where(image, source.line)}: ADD {source.shown} is not pinned, and remoteInputs is "
                            f"pinned; fix: {fix}, or set remoteInputs: resolve")
    return problems


def unpinned_git_warnings(image: ImageInputs) -> list[str]:
    return [f"{_where(image, s.line)}: ADD {s.shown} names no full commit hash, so the content tag does not cover what "
            "it fetches (a moved branch or tag never rebuilds); name a commit after '#'"
            for s in image.plan.sources if s.kind == "git" and not s.pinned]


def _wanted(images: list[ImageInputs], problems: list[str]) -> tuple[dict[tuple[str, str], None], dict[str, None]]:
    """The distinct unpinned references (reference, platform) and unhashed URLs to ask for, in order; what needs no
    request (refused plan lines, `pinned` images) goes to `problems`."""
    wanted_refs: dict[tuple[str, str], None] = {}
    wanted_urls: dict[str, None] = {}
    for image in images:
        # What the plan cannot compute as BuildKit would (buildcontext/stages.py): never asked for, never guessed.
        problems += [f"{_where(image, line)}: {problem}" for line, problem in image.plan.refused]
        if image.mode == "pinned":
            problems += pinned_problems(image)
            continue
        for ref in image.plan.references:
            if not ref.pinned and ref.line == 0:
                problems.append(syntax_arg_problem(image, ref))
            elif not ref.pinned:
                wanted_refs[(ref.reference, ref.platform)] = None
        for source in image.plan.sources:
            if source.kind == "http" and source.checksum is None:
                wanted_urls[source.url] = None
    return wanted_refs, wanted_urls


def log_in(client: RegistryClient, creds: Credentials) -> None:
    """The one login of a host's client, before its references are asked for side by side (a network call, like
    `resolve_platforms` and `fetch_checksum`); a refused login shows in the first manifest request, as with one."""
    with _as_failure(creds):
        client.login(prove=False)


def _resolve_host(host: str, keys: list[tuple[str, str]], stack: RegistryLogin | None,
                  deadline: float) -> dict[tuple[str, str], str | ResolveFailure]:
    """Every reference of one registry host through one client: one login, then the references in parallel (the
    client is thread-safe), each one manifest request for all the platforms it is asked for; a failed login is
    every reference's failure."""
    results: dict[tuple[str, str], str | ResolveFailure] = {}
    platforms: dict[str, list[str]] = {}
    for reference, platform in keys:
        platforms.setdefault(reference, []).append(platform)
    client, creds = registry_client(host, stack, deadline)

    def one(reference: str) -> None:
        found = resolve_platforms(reference, platforms[reference], stack, deadline, client=(client, creds))
        results.update({(reference, platform): digest for platform, digest in found.items()})

    try:
        if len(platforms) == 1:
            one(next(iter(platforms)))
            return results
        try:
            log_in(client, creds)
        except ResolveFailure as failure:
            return dict.fromkeys(keys, failure)
        each_beside([partial(one, reference) for reference in platforms])
    finally:
        client.close()
    return results


def _resolved_references(image: ImageInputs, ref_results: dict[tuple[str, str], str | ResolveFailure],
                         server: str, problems: list[str]) -> tuple[dict[str, str], dict[ExternalReference, str]]:
    """One image's reference labels and resolved digests; each reference that failed goes to `problems`."""
    labels: dict[str, str] = {}
    digests: dict[ExternalReference, str] = {}
    for ref in image.plan.references:
        if ref.pinned:
            labels[ref.label] = ref.reference.rsplit("@", 1)[1]
            continue
        if image.mode == "pinned" or ref.line == 0:
            continue  # listed by pinned_problems, or syntax_arg_problem
        try:
            digest = ref_results[(ref.reference, ref.platform)]
            if isinstance(digest, ResolveFailure):
                raise digest
        except ResolveFailure as failure:
            where = locate(ref.reference)
            fix = _FIXES.get(failure.kind, _DEFAULT_FIX).format(
                host=where.shown_host, server=server, source=failure.source)
            if ref.instruction == "# syntax":
                fix = fix.replace("FROM <ref>", "# syntax=<ref>").replace("the base", "the frontend image")
            problems.append(f"{_where(image, ref.line)}: {_shown(ref)} (host "
                            f"{where.shown_host}) cannot be resolved for {ref.platform}: {failure}; fix: {fix}")
            continue
        labels[ref.label] = digest
        digests[ref] = digest
    return labels, digests


def _resolved_sources(image: ImageInputs, url_results: Mapping[str, str | ResolveFailure], labels: dict[str, str],
                      problems: list[str]) -> dict[RemoteSource, str]:
    """One image's remote-source labels (added to `labels`) and fetched checksums; each failure goes to `problems`."""
    checksums: dict[RemoteSource, str] = {}
    for source in image.plan.sources:
        if source.kind == "git":
            if source.pinned:
                labels[source.label] = source.checksum or source.url.partition("#")[2].partition(":")[0]
            continue
        if source.checksum is not None:
            labels[source.label] = source.checksum
            continue
        if image.mode == "pinned":
            continue
        checksum = url_results[source.url]
        if isinstance(checksum, ResolveFailure):
            failure = checksum
            host = requests.utils.urlparse(source.url).hostname or "?"
            fix = _SOURCE_FIXES.get(failure.kind, _DEFAULT_SOURCE_FIX)
            problems.append(f"{_where(image, source.line)}: ADD {source.shown} (host {host}) cannot be "
                            f"hashed: {failure}; fix: {fix}")
            continue
        labels[source.label] = checksum
        checksums[source] = checksum
    return checksums


def _checksum(url: str, deadline: float) -> str | ResolveFailure:
    try:
        return fetch_checksum(url, deadline)
    except ResolveFailure as failure:
        return failure


def each_beside(tasks: Sequence[Callable[[], Any]]) -> list[Any]:
    """Every task's answer, in order: the first in this thread, the others in threads beside it (up to WORKERS)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(tasks) - 1))) as pool:
        others = [pool.submit(task) for task in tasks[1:]]
        first = [tasks[0]()] if tasks else []
        return first + [future.result() for future in others]


def _ask(by_host: Mapping[str, list[tuple[str, str]]], urls: Sequence[str], stack: RegistryLogin | None,
         deadline: float) -> tuple[dict[tuple[str, str], str | ResolveFailure], dict[str, str | ResolveFailure]]:
    """Every request of a run: one task per registry host (one client, so one login, then its
    references) and one per URL, all in parallel; (reference, platform) -> digest and URL -> checksum, or the
    ResolveFailure."""
    answers = each_beside([partial(_resolve_host, host, keys, stack, deadline) for host, keys in by_host.items()]
                          + [partial(_checksum, url, deadline) for url in urls])
    refs: dict[tuple[str, str], str | ResolveFailure] = {}
    for found in answers[:len(by_host)]:
        refs.update(found)
    return refs, dict(zip(urls, answers[len(by_host):]))


class Resolution:
    """The remote inputs of a plan being resolved in threads beside it (the context scans run meanwhile): `result()`
    waits for them."""

    def __init__(self, images: Iterable[ImageInputs], stack: RegistryLogin | None) -> None:
        self.images = [i for i in images if i.mode != "ignore"]
        self.stack = stack
        self.problems: list[str] = []
        wanted_refs, wanted_urls = _wanted(self.images, self.problems)
        by_host: dict[str, list[tuple[str, str]]] = {}
        for key in wanted_refs:
            by_host.setdefault(locate(key[0]).host, []).append(key)
        self.asked: concurrent.futures.Future | None = None
        if by_host or wanted_urls:
            pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
            self.asked = pool.submit(_ask, by_host, list(wanted_urls), stack, time.monotonic() + BUDGET_S)
            pool.shutdown(wait=False)

    def result(self) -> dict[tuple[str, str], ResolvedInputs]:
        """(image label, platform) -> ResolvedInputs, or RemoteInputError listing every problem (each once)."""
        refs, urls = self.asked.result() if self.asked is not None else ({}, {})
        out: dict[tuple[str, str], ResolvedInputs] = {}
        server = f" ({self.stack.server})" if self.stack is not None else ""
        for image in self.images:
            labels, digests = _resolved_references(image, refs, server, self.problems)
            checksums = _resolved_sources(image, urls, labels, self.problems)
            out[(image.label, image.platform)] = ResolvedInputs(labels, digests, checksums)
        if self.problems:
            raise RemoteInputError("\n".join(dict.fromkeys(self.problems)))
        return out


def resolve_all(images: Iterable[ImageInputs], stack: RegistryLogin | None) -> Resolution:
    """Start resolving every image's unpinned references and sources (each distinct one once, all concurrently)
    and return the Resolution to wait for. `images` in `ignore` mode are left out; `pinned` ones
    are checked without a request."""
    return Resolution(images, stack)


def ignored_warning(label: str) -> str:
    return (f"{label}: remoteInputs is ignore, so the content tag does not cover what FROM, # syntax= and ADD <url> "
            "resolve to: a base image, frontend image or remote source that moves under the same name never rebuilds "
            "this image")
