"""A stand-in for the pulumi-docker provider's `docker:index/image:Image`, carried out for real.

The provider plugin cannot be built on these machines (docs/engine.md: its Go module is not served), so the e2e tests
of building run the real `__main__.py` under Pulumi mocks (tests/harness.py) with a `DockerImageProvider` as
`StackMocks(image_hook=...)`,
and the tests that need no program call it directly (or through `python -m tests.e2e.docker_harness`, a separate
process). It follows what the provider's source does (its provider.go and image.go) against the real Docker engine
and a real registry.

What it cannot reproduce (read this before trusting a green e2e run):
- the Pulumi engine: the stand-in runs Check, Diff and Create/Update itself for every declared image, in
  registration order; a resource the program stopped declaring is deleted only when the caller says the run ended
  (`end_run`), as the engine's delete step would; no refresh, no import, no `ignoreChanges` (which the engine applies
  before Check, where the recomputed `contextDigest` would win anyway), no diff display; images of different
  engines (`docker.Provider` hosts) are carried out concurrently, as the engine runs steps that do not depend on
  each other in parallel (`pulumi up --parallel`, 4 per CPU by default), images of one engine one at a time;
- the state file (`<state_dir>/<stack>.json`) keeps, per resource, its id, outputs and inputs like the engine's
  checkpoint, but without `registry.password` (the engine keeps `__inputs` encrypted as a secret; the diff never
  reads the password, and a test file must not hold it in plain text);
- the build: `docker buildx build --load` (BuildKit, docker driver) on the context directory, not the provider's tar
  of the context sent to the Engine API `/build` with its own session; the files and the Dockerfile the build sees
  are the same (the CLI applies the same ignore file), their owners are not (the provider's tar says 0:0,
  BuildKit's file sync sends the real ones, which a `COPY` without `--chown` replaces by 0:0 anyway). Secrets, ssh,
  network and add-hosts options are refused, not ignored; one platform per build, as the provider builds (a
  multi-platform image is one resource per platform); a `docker.Provider`'s `host` and `certPath` are carried out
  as the provider's client does (unix://; tcp:// with certPath: TLS verifying the engine against ca.pem and
  presenting cert.pem/key.pem; ssh:// through the `ssh` client and `docker system dial-stdio`): the build's docker
  CLI gets DOCKER_HOST (with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH for a certPath), the push's Docker SDK
  client the same engine (docker.tls.TLSConfig; use_ssh_client for ssh://); its other options (caMaterial,
  sshOpts, registryAuth...) are refused;
- `build.cacheFrom`: like the provider, each image is pulled first for the build's platform (`build.platform`,
  the pull's Platform) with the stack's registry credentials (a failed pull is a warning, not an error; with only
  one of username and password set the pull is skipped with a warning) and handed to the build as a cache source
  (`--cache-from <image>`, the same daemon path as the Engine API's CacheFrom: BuildKit reads the inline cache of
  the image the pull tagged locally). What differs: the provider also gives its BuildKit session the stack's
  credentials, so when the pull failed its build can still read the cache from the registry; the stand-in's buildx
  session has only ~/.docker/config.json, so after a failed pull of a private image the build runs without that
  cache. The provider treats `cacheFrom: {images: null}` as no cache; the stand-in's Check refuses a `cacheFrom`
  without `images` (the program never sends one: no cache source means no `cacheFrom` at all). The pull's platform
  is passed, but nothing here shows that it matters: this engine is amd64 and builds only linux/amd64, and Docker
  26's pull of a single-platform image does not refuse another platform (tried with an arm64 `docker import`);
  the wording of the skip warning is the stand-in's, not the provider's;
- `build.contextDigest`: the provider's fsutil walk calls its hash for every non-directory the walk sends, so a fifo
  would block its Check and a socket fails it; this stand-in walks with buildcontext/dockerignore.py (oracle-checked
  against BuildKit), which yields the same files, symlinks and special files, and fails Check on a fifo, socket or
  device without opening it (the provider's would hang on a fifo). The ignore file is chosen as the facts say (`<dockerfile>.dockerignore` if present, else
  `<context>/.dockerignore`); the provider.go version read names `<context>/<basename of dockerfile>.dockerignore`
  for a Dockerfile not called `Dockerfile`, without the fallback: the two agree for every stack in this project
  (`<context>/Dockerfile`);
- registry errors are the engine's wording as the Docker SDK reports it, prefixed with the resource; the provider
  adds its own prefix (`docker:index/image:Image resource '...': ...`).

What it does, the provider's way:
- Check: defaults (`build.context` ".", `build.dockerfile` `<context>/Dockerfile`, `build.platform`
  `linux/<architecture of this host>` with an info line); a missing Dockerfile is an error; `build.contextDigest`
  is computed as the provider computes it (the Dockerfile first under the name `Dockerfile` with mode `----------`,
  then every file and symlink the walk sends in fsutil's order: its relative path, Go's `os.FileMode.String()` of
  its lstat mode, the sha256 of its content, or for a symlink of the path `filepath.EvalSymlinks` resolves it to,
  relative or absolute as the context path is; directories skipped) and written into the inputs, overwriting what
  the program set; a dangling symlink or an unreadable file fails Check. Relative paths are resolved against the
  run's project root, where the provider resolves them against its working directory (the program's);
- Diff against the inputs in the state: every change is an update, never a replace; `registry` counts only
  `server`; any `build` change, `contextDigest` included, rebuilds and pushes even when `imageName` is unchanged;
- Create/Update: build, then push `imageName` with the registry credentials in the push's auth config only (both
  username and password set; otherwise the engine's own ~/.docker/config.json, with the provider's warning); no
  login call, no check whether the tag exists; a refused push fails the update with the registry's message;
- outputs: `imageName`, `baseImageName`, `registryServer`, `context` (as given), `dockerfile` (relative to the
  context), `platform` and `repoDigest` (`<repository>@<digest the push reported>`; the local image id with
  `skipPush` or in a preview that builds; unknown in a preview with `buildOnPreview: false`); id = `imageName`;
- delete touches nothing: no tag or image is removed from the registry or the engine.

Every Check, cache pull, build, push and delete is recorded (`checks`, `pulls`, `builds`, `pushes`, `deletes`,
`unchanged`), so tests can assert what a run did.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import fcntl
import hashlib
import json
import os
import platform as host_platform
import posixpath
import stat as stat_module
import subprocess
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import docker
import pulumi
from pulumi.runtime import rpc

from buildcontext import dockerignore

__all__ = ["BuildRecord", "CheckRecord", "DockerImageProvider", "ImageProviderError", "PullRecord", "PushRecord",
           "context_digest", "eval_symlinks", "go_file_mode"]

IMAGE_TYPE = "docker:index/image:Image"
BUILD_TIMEOUT_S = 300
DEFAULT_DOCKERFILE = "Dockerfile"
# The `build` inputs this stand-in carries out; any other one would be ignored silently, so it is refused instead.
SUPPORTED_BUILD_KEYS = frozenset({"context", "dockerfile", "args", "target", "platform", "builderVersion",
                                  "contextDigest", "cacheFrom"})
SUPPORTED_KEYS = frozenset({"imageName", "build", "registry", "skipPush", "buildOnPreview"})
# Go's runtime.GOARCH for the machine names Python reports.
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
           "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


class ImageProviderError(Exception):
    """Check, a build or a push failed; the text names the resource and the reason, never a password."""


# --- the provider's context hash ---------------------------------------------------------------------------------

# Go's io/fs FileMode type bits, most significant first, with the letters FileMode.String() prints for them.
_GO_MODE_LETTERS = "dalTLDpSugct?"
_GO_DIR, _GO_SYMLINK, _GO_DEVICE, _GO_PIPE, _GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
_GO_SETUID, _GO_SETGID, _GO_CHARDEV, _GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20


def _go_mode(st_mode: int) -> int:
    """Go's os.FileMode for a Unix st_mode (os.fillFileStatFromSys)."""
    mode = st_mode & 0o777
    kind = stat_module.S_IFMT(st_mode)
    mode |= {stat_module.S_IFBLK: _GO_DEVICE, stat_module.S_IFCHR: _GO_DEVICE | _GO_CHARDEV,
             stat_module.S_IFDIR: _GO_DIR, stat_module.S_IFIFO: _GO_PIPE, stat_module.S_IFLNK: _GO_SYMLINK,
             stat_module.S_IFSOCK: _GO_SOCKET}.get(kind, 0)
    if st_mode & stat_module.S_ISUID:
        mode |= _GO_SETUID
    if st_mode & stat_module.S_ISGID:
        mode |= _GO_SETGID
    if st_mode & stat_module.S_ISVTX:
        mode |= _GO_STICKY
    return mode


def go_file_mode(st_mode: int | None) -> str:
    """Go's `os.FileMode.String()` of an lstat mode: `-rw-r--r--`, `Lrwxrwxrwx`, `drwxr-xr-x`, `urwxr-xr-x`...

    None stands for Go's FileMode(0) (`----------`), the mode the provider hashes the Dockerfile with.
    """
    mode = 0 if st_mode is None else _go_mode(st_mode)
    letters = "".join(c for i, c in enumerate(_GO_MODE_LETTERS) if mode & (1 << (31 - i))) or "-"
    return letters + "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))


def eval_symlinks(path: str, base: str) -> str:
    """Go's `filepath.EvalSymlinks(path)` (Unix) with the working directory `base` for a relative `path`.

    The result is relative when `path` is and no link on the way is absolute, as in Go; the lexical `..` handling
    and the 255-link limit are Go's. Raises OSError (e.g. FileNotFoundError for a dangling link) as Go fails.
    """
    def lstat(p: str) -> os.stat_result:
        return os.lstat(p if os.path.isabs(p) else os.path.join(base, p))

    vol_len = 1 if path.startswith("/") else 0
    vol = path[:vol_len]
    dest = vol
    links = 0
    start = end = vol_len
    while start < len(path):
        while start < len(path) and path[start] == "/":
            start += 1
        end = start
        while end < len(path) and path[end] != "/":
            end += 1
        component = path[start:end]
        if end == start:
            break
        if component == ".":
            start = end
            continue
        if component == "..":
            r = dest.rfind("/", vol_len)
            if r < vol_len or dest[r + 1:] == "..":
                dest = (dest + "/" if len(dest) > vol_len else dest) + ".."
            else:
                dest = dest[:r]
            start = end
            continue
        if dest and not dest.endswith("/"):
            dest += "/"
        dest += component
        st = lstat(dest)
        if not stat_module.S_ISLNK(st.st_mode):
            if not stat_module.S_ISDIR(st.st_mode) and end < len(path):
                raise NotADirectoryError(20, "not a directory", dest)
            start = end
            continue
        links += 1
        if links > 255:
            raise OSError(40, "EvalSymlinks: too many links", path)
        link = os.readlink(dest if os.path.isabs(dest) else os.path.join(base, dest))
        path = link + path[end:]
        if link.startswith("/"):
            dest, vol, vol_len, end = "/", "/", 1, 1
        else:
            r = dest.rfind("/", vol_len)
            dest = vol if r < vol_len else dest[:r]
            end = 0
        start = end
    return posixpath.normpath(dest) if dest else "."


def _sha256_file(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def context_digest(context: str, dockerfile: str, base: Path) -> str:
    """`build.contextDigest` as the provider's Check computes it, for paths as given (relative ones against `base`).

    Raises ImageProviderError where the provider's Check fails: a dangling symlink, an unreadable file or ignore file.
    """
    base_dir = Path(base)
    abs_context = base_dir / context
    abs_dockerfile = base_dir / dockerfile
    accumulator = hashlib.sha256()

    def add(rel: str, mode: str, content_hash: bytes) -> None:
        accumulator.update(os.fsencode(posixpath.normpath(rel)) + mode.encode() + content_hash + b"\0")

    try:
        dockerfile_hash = _sha256_file(abs_dockerfile)
    except OSError as exc:
        raise ImageProviderError(f"error hashing dockerfile {dockerfile!r}: could not open file {dockerfile}: "
                                 f"{exc.strerror}") from None
    add(DEFAULT_DOCKERFILE, go_file_mode(None), dockerfile_hash)
    try:
        entries = list(dockerignore.walk_context(abs_context, abs_dockerfile))
    except (OSError, ValueError) as exc:
        raise ImageProviderError(f"unable to hash build context: {exc}") from None
    # fsutil walks each directory in lexical order, depth first: sort by path components, not by the whole string.
    for entry in sorted(entries, key=lambda e: e.rel.split("/")):
        file_path = posixpath.join(context, entry.rel)
        mode = entry.stat.st_mode
        if not (stat_module.S_ISLNK(mode) or stat_module.S_ISREG(mode)):
            # The provider opens it to hash it: a fifo blocks its Check, a socket fails it, a device never ends.
            # The stand-in never opens one: it fails Check, saying what the provider would do.
            raise ImageProviderError(f"unable to hash build context: {entry.rel!r} is a {_special_kind(mode)}, which "
                                     "the provider's Check would open to hash (a fifo blocks it, a socket fails it)")
        try:
            if stat_module.S_ISLNK(mode):
                resolved = eval_symlinks(file_path, str(base_dir))
                content_hash = hashlib.sha256(os.fsencode(posixpath.normpath(resolved))).digest()
            else:
                content_hash = _sha256_file(base_dir / file_path)
        except OSError as exc:
            what = "could not evaluate symlink at" if stat_module.S_ISLNK(entry.stat.st_mode) else \
                "could not open file"
            raise ImageProviderError(f"unable to hash build context: error while hashing {entry.rel!r}: {what} "
                                     f"{file_path}: {exc.strerror}") from None
        add(entry.rel, go_file_mode(entry.stat.st_mode), content_hash)
    return accumulator.hexdigest()


def _special_kind(mode: int) -> str:
    return ("fifo" if stat_module.S_ISFIFO(mode) else "socket" if stat_module.S_ISSOCK(mode)
            else "character device" if stat_module.S_ISCHR(mode) else "block device" if stat_module.S_ISBLK(mode)
            else f"file of mode {mode:o}")


def host_platform_default() -> str:
    machine = host_platform.machine().lower()
    if machine not in _GOARCH:
        raise ImageProviderError(f"the stand-in does not know Go's GOARCH for machine {machine!r}; add it to _GOARCH")
    return f"linux/{_GOARCH[machine]}"


# --- records -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckRecord:
    """One Check: the digest it computed and the Diff's verdict ("create", "update", "same")."""

    stack: str
    resource: str
    context_digest: str
    action: str
    changed: tuple[str, ...]


@dataclass(frozen=True)
class BuildRecord:
    """One `docker buildx build` the stand-in ran."""

    stack: str
    resource: str
    image_name: str
    context: Path
    dockerfile: Path
    args: dict[str, str]
    target: str | None
    platform: str | None
    preview: bool
    cache_from: tuple[str, ...] = ()
    log: str = field(default="", repr=False)
    """BuildKit's plain progress output (`#7 CACHED`, `importing cache manifest from ...`)."""
    host: str | None = None
    """The Docker engine the build ran on: the `host` of the resource's docker.Provider; None: the local engine."""


@dataclass(frozen=True)
class PullRecord:
    """One pull of a `build.cacheFrom` image before a build; a failed one is not fatal, as in the provider."""

    image: str
    ok: bool
    platform: str
    """The platform the pull asked for: the build's (`build.platform`, defaulted by Check)."""
    reason: str = ""


@dataclass(frozen=True)
class PushRecord:
    """One push that the registry accepted, with the manifest digest it reported."""

    stack: str
    resource: str
    image_name: str
    digest: str
    host: str | None = None
    """The Docker engine that pushed (the build's)."""


# --- state ---------------------------------------------------------------------------------------------------------

class StateFile:
    """The engine's checkpoint for one stack's docker.Image resources: `<state_dir>/<stack>.json`.

    Shared by every DockerImageProvider (and process) given the same directory: another checkout or machine that
    uses the same backend. A recreated stack is an empty directory (or a removed file).
    """

    def __init__(self, state_dir: Path, stack: str):
        if not stack or "/" in stack or stack.startswith("."):
            raise ValueError(f"stack name {stack!r} cannot name a state file")
        self.path = Path(state_dir) / f"{stack}.json"

    @contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The resources map, locked against other processes; written back atomically on a clean exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            resources = json.loads(self.path.read_text())["resources"] if self.path.exists() else {}
            before = copy.deepcopy(resources)
            yield resources
            if resources != before:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps({"resources": resources}, indent=1, sort_keys=True))
                os.replace(tmp, self.path)

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())["resources"] if self.path.exists() else {}


def _stored_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """Inputs as the state file keeps them: without the registry password (see the module docstring)."""
    stored = copy.deepcopy(inputs)
    if isinstance(stored.get("registry"), dict):
        stored["registry"].pop("password", None)
    return stored


def diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The provider's Diff: top-level input keys that changed; `registry` counts only a change of `server`."""
    changed = []
    for key in sorted(set(old) | set(new)):
        if key not in old or key not in new:
            changed.append(key)
        elif key == "registry" and isinstance(old[key], dict) and isinstance(new[key], dict):
            if old[key].get("server") != new[key].get("server"):
                changed.append(key)
        elif old[key] != new[key]:
            changed.append(key)
    return changed


# --- the provider ----------------------------------------------------------------------------------------------

@dataclass
class DockerImageProvider:
    """`image_hook` for tests.harness.StackMocks: Check, Diff and Create/Update of each declared image, for real.

    state_dir: where the per-stack state files live (see StateFile).
    docker_cli: the engine's own docker CLI with buildx (tests/e2e/conftest.py `docker_engine`).
    project_root: the working directory relative paths are resolved against; None means the process's working
    directory at the time of the call (run_stack runs the program in its project root, as the provider runs
    beside the program).
    """

    state_dir: Path
    docker_cli: str = "/usr/bin/docker"
    project_root: Path | None = None
    checks: list[CheckRecord] = field(default_factory=list)
    builds: list[BuildRecord] = field(default_factory=list)
    pushes: list[PushRecord] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    """imageName of every resource whose Diff found no change (nothing built or pushed)."""
    infos: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    pulls: list[PullRecord] = field(default_factory=list)
    image_ids: list[str] = field(default_factory=list)
    """The local image id of every build (a rebuild under the same name leaves the previous one untagged)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Guards `_engine_locks` and the engine clients."""
    _engine_locks: dict[str | None, threading.Lock] = field(default_factory=dict, repr=False)
    _applying: threading.local = field(default_factory=threading.local, repr=False)
    """`host`: the engine of the resource this thread applies (its provider's host); None: the local engine."""
    provider_hosts: dict[str, str | None] = field(default_factory=dict)
    """Id of each `docker.Provider` the program declared -> its `host` (None: the provider's default engine)."""
    cert_paths: dict[str, str] = field(default_factory=dict)
    """`host` -> the `certPath` its docker.Provider gave (tcp:// with TLS)."""

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self._engine: docker.DockerClient | None = None
        self._engines: dict[str, docker.DockerClient] = {}

    @property
    def _host(self) -> str | None:
        """The engine of the resource this thread applies (its provider's host); None: the local engine."""
        return getattr(self._applying, "host", None)

    @property
    def _client(self) -> docker.DockerClient:
        """The engine client of the resource being applied, made on first use (Check and Diff need no engine)."""
        host = self._host
        with self._lock:
            if host is not None:
                if host not in self._engines:
                    self._engines[host] = self._remote_client(host)
                return self._engines[host]
            if self._engine is None:
                self._engine = docker.from_env(timeout=BUILD_TIMEOUT_S)
            return self._engine

    def _remote_client(self, host: str) -> docker.DockerClient:
        """The provider's client for a `host`: TLS from its certPath (ca.pem verifies the engine, which must name
        the host; cert.pem/key.pem are this client), the ssh client for ssh://."""
        cert_path = self.cert_paths.get(host)
        if cert_path is not None:
            tls = docker.tls.TLSConfig(client_cert=(f"{cert_path}/cert.pem", f"{cert_path}/key.pem"),
                                       ca_cert=f"{cert_path}/ca.pem", verify=True)
            client = docker.DockerClient(base_url=host, tls=tls, timeout=BUILD_TIMEOUT_S,
                                         version=docker.constants.MINIMUM_DOCKER_API_VERSION)
            # requests lets REQUESTS_CA_BUNDLE replace the client's CA; the provider's Go client trusts ca.pem only.
            client.api.trust_env = False
            client.api._version = client.api._retrieve_server_version()
            return client
        return docker.DockerClient(base_url=host, timeout=BUILD_TIMEOUT_S, use_ssh_client=host.startswith("ssh://"))

    def _cli_env(self) -> dict[str, str]:
        """The build's docker CLI environment: the provider's engine, as the docker CLI reads it."""
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        if self._host is not None:
            env["DOCKER_HOST"] = self._host  # the docker CLI (and its buildx) talks to the provider's engine
            if self._host in self.cert_paths:
                env.update(DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=self.cert_paths[self._host])
        return env

    def register_provider(self, args: pulumi.runtime.MockResourceArgs) -> str:
        """A `docker.Provider` registration: the images that name it build and push on its `host` (with its
        `certPath`), as the provider's own client does; any other provider option is refused."""
        inputs = _reveal(dict(args.inputs))
        unsupported = sorted(k for k, v in inputs.items()
                             if k not in ("host", "certPath") and v not in (None, "", [], {}))
        if unsupported:
            raise ImageProviderError(f"{args.name}: the stand-in carries out a docker.Provider's host and certPath "
                                     f"only, not {unsupported}; extend tests/e2e/docker_harness.py")
        host, cert_path = inputs.get("host") or None, inputs.get("certPath") or None
        if cert_path is not None and not str(host or "").startswith("tcp://"):
            raise ImageProviderError(f"{args.name}: certPath {cert_path!r} is for a tcp:// host, not {host!r}")
        provider_id = f"{args.name}-provider-id"
        self.provider_hosts[provider_id] = host
        if cert_path is not None:
            self.cert_paths[host] = cert_path
        return provider_id

    # -- what tests use
    @property
    def image_names(self) -> set[str]:
        """Every image name this provider built (to remove them when the tests are done)."""
        return {b.image_name for b in self.builds}

    def remove_images(self) -> None:
        """Remove every image built here (by name, then by id), so the engine's store does not fill up."""
        pulled = sorted({p.image for p in self.pulls if p.ok})
        for reference in sorted(self.image_names) + pulled + self.image_ids:
            subprocess.run([self.docker_cli, "image", "rm", "--force", reference], capture_output=True, timeout=60)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        for engine in self._engines.values():
            engine.close()

    def state(self, stack: str) -> dict[str, Any]:
        """The stack's stored resources: {name: {"id", "inputs", "outputs"}}."""
        return StateFile(self.state_dir, stack).read()

    # -- the hook
    def __call__(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ != IMAGE_TYPE:
            raise ValueError(f"DockerImageProvider handles {IMAGE_TYPE} only, got {args.typ}")
        # Registrations arrive from several threads: one image at a time per engine, engines side by side.
        provider_id = args.provider.rsplit("::", 1)[-1] if args.provider else None
        if provider_id is not None and provider_id not in self.provider_hosts \
                and not provider_id.startswith("default"):
            raise ImageProviderError(f"{args.name}: its provider {args.provider} was never registered")
        host = self.provider_hosts.get(provider_id) if provider_id else None
        with self._lock:
            engine_lock = self._engine_locks.setdefault(host, threading.Lock())
        with engine_lock:
            self._applying.host = host
            try:
                return self.apply(pulumi.get_stack(), args.name, _Inputs(_reveal(dict(args.inputs))),
                                  preview=pulumi.runtime.is_dry_run())
            finally:
                self._applying.host = None

    def apply(self, stack: str, resource: str, wrapped: "_Inputs", *, preview: bool = False
              ) -> tuple[str, dict[str, Any]]:
        """Check, Diff, then Create/Update (or nothing) for one resource; returns (id, outputs)."""
        base = self.project_root or Path.cwd()
        inputs = self.check(resource, wrapped.values, base)
        state = StateFile(self.state_dir, stack)
        with state.locked() as resources:  # the state is locked to read and to write, not during the build
            previous = copy.deepcopy(resources.get(resource))
        changed = diff(previous["inputs"], _stored_inputs(inputs)) if previous else []
        action = "create" if previous is None else ("update" if changed else "same")
        self.checks.append(CheckRecord(stack, resource, inputs["build"]["contextDigest"], action, tuple(changed)))
        if action == "same":
            self.unchanged.append(inputs["imageName"])
            return previous["id"], previous["outputs"]
        outputs = self._create_or_update(stack, resource, inputs, base, preview)
        if not preview:
            with state.locked() as resources:
                resources[resource] = {"id": inputs["imageName"], "inputs": _stored_inputs(inputs),
                                       "outputs": outputs}
        return inputs["imageName"], outputs

    def end_run(self, stack: str, declared: set[str]) -> None:
        """The engine's delete step after a successful `up`: resources no longer declared leave the state.

        The provider's Delete does nothing, so no tag or image is removed anywhere.
        """
        with StateFile(self.state_dir, stack).locked() as resources:
            for name in sorted(set(resources) - set(declared)):
                del resources[name]
                self.deletes.append((stack, name))

    # -- Check
    def check(self, resource: str, inputs: dict[str, Any], base: Path) -> dict[str, Any]:
        """The provider's Check: defaults, the Dockerfile must exist, `contextDigest` (overwritten), platform."""
        unknown = set(inputs) - SUPPORTED_KEYS
        build = dict(inputs.get("build") or {})
        unknown_build = set(build) - SUPPORTED_BUILD_KEYS
        if unknown or unknown_build:
            raise ImageProviderError(
                f"{resource}: the docker.Image stand-in does not reproduce the inputs "
                f"{sorted(unknown) + sorted('build.' + k for k in unknown_build)}; extend tests/e2e/docker_harness.py"
            )
        if not inputs.get("build"):
            raise ImageProviderError(f"{resource}: no build input; the stand-in only builds images, as the program does")
        context = build.get("context") or "."
        dockerfile = build.get("dockerfile") or posixpath.join(context, DEFAULT_DOCKERFILE)
        if not (base / dockerfile).exists():
            problem = f"stat {dockerfile}: no such file or directory"
            if os.path.isabs(dockerfile):
                raise ImageProviderError(f"{resource}: could not open dockerfile at absolute path {dockerfile}: "
                                         f"{problem}")
            if (base / context / dockerfile).exists():
                raise ImageProviderError(f"{resource}: could not open dockerfile at relative path {dockerfile}. "
                                         f"Try setting `dockerfile` to {posixpath.join(context, dockerfile)!r}")
            raise ImageProviderError(f"{resource}: could not open dockerfile at relative path {dockerfile}: {problem}")
        cache_from = build.get("cacheFrom")
        if cache_from is not None:
            images = cache_from.get("images") if isinstance(cache_from, dict) else None
            if images is None:
                raise ImageProviderError(f"{resource}: if you want to use cacheFrom, you must have `images` set")
            for image in images:
                # The provider's Check wants every cache image fully qualified (a registry host in the name).
                first = str(image).split("/", 1)[0]
                if "/" not in str(image) or not ("." in first or ":" in first or first == "localhost"):
                    raise ImageProviderError(f"{resource}: build.cacheFrom image {image!r} is not fully qualified "
                                             "(<registry host>/<repository>:<tag>)")
        try:
            digest = context_digest(context, dockerfile, base)
        except ImageProviderError as exc:
            raise ImageProviderError(f"{resource}: {exc}") from None
        checked = _skip_nulls(inputs)
        checked["build"]["contextDigest"] = digest
        if not checked["build"].get("platform"):
            checked["build"]["platform"] = host_platform_default()
            self.infos.append(f"{resource}: Building your image for {checked['build']['platform']} architecture.")
        return checked

    # -- Create / Update
    def _create_or_update(self, stack: str, resource: str, inputs: dict[str, Any], base: Path,
                          preview: bool) -> dict[str, Any]:
        image_name = inputs["imageName"]
        build = inputs["build"]
        registry = dict(inputs.get("registry") or {})
        context = build.get("context") or "."
        dockerfile = build.get("dockerfile") or posixpath.join(context, DEFAULT_DOCKERFILE)
        outputs: dict[str, Any] = {
            "imageName": image_name,
            "baseImageName": image_name,
            "registryServer": registry.get("server"),
            "context": context,
            "dockerfile": os.path.relpath(os.path.abspath(base / dockerfile), os.path.abspath(base / context)),
            "platform": build["platform"],
        }
        if preview and not inputs.get("buildOnPreview"):
            return outputs  # repoDigest stays unknown, as the provider leaves it in a preview without a build
        login = _Login.of(registry)
        cache_from = tuple((build.get("cacheFrom") or {}).get("images") or ())
        for image in cache_from:
            self._pull_cache(resource, image, login, build["platform"])
        image_id = self._build(stack, resource, image_name, build, base, preview, cache_from)
        if preview or inputs.get("skipPush"):
            outputs["repoDigest"] = image_id
            return outputs
        digest = self._push(resource, image_name, login)
        self.pushes.append(PushRecord(stack, resource, image_name, digest, self._host))
        outputs["repoDigest"] = f"{_repository(image_name)}@{digest}"
        return outputs

    def _build(self, stack: str, resource: str, image_name: str, build: dict, base: Path, preview: bool,
               cache_from: tuple[str, ...] = ()) -> str:
        builder = build.get("builderVersion", "BuilderBuildKit")
        if builder != "BuilderBuildKit":
            raise ImageProviderError(f"{resource}: build.builderVersion {builder!r} is not reproduced (BuildKit only)")
        context = (base / (build.get("context") or ".")).resolve()
        dockerfile = (base / (build.get("dockerfile") or posixpath.join(build.get("context") or ".",
                                                                         DEFAULT_DOCKERFILE))).resolve()
        args = {str(k): str(v) for k, v in (build.get("args") or {}).items()}
        command = [self.docker_cli, "buildx", "build", "--progress", "plain", "--file", str(dockerfile),
                   "--tag", image_name, "--load", "--platform", build["platform"]]
        if build.get("target"):
            command += ["--target", build["target"]]
        for name, value in sorted(args.items()):
            command += ["--build-arg", f"{name}={value}"]
        for image in cache_from:
            # The provider's Engine-API CacheFrom: the daemon's BuildKit reads the inline cache of the image the
            # pull above tagged locally (or asks the registry, see the module docstring).
            command += ["--cache-from", image]
        command.append(str(context))
        record = BuildRecord(stack, resource, image_name, context, dockerfile, args, build.get("target"),
                             build.get("platform"), preview, cache_from, host=self._host)
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                                  env=self._cli_env())
        except subprocess.TimeoutExpired as exc:
            self.builds.append(record)
            raise ImageProviderError(f"{resource}: building {image_name} took longer than {BUILD_TIMEOUT_S}s") from exc
        self.builds.append(dataclasses.replace(record, log=proc.stderr))
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
            raise ImageProviderError(f"{resource}: docker buildx build of {image_name} failed:\n{tail}")
        image_id = self._client.images.get(image_name).id
        self.image_ids.append(image_id)
        return image_id

    def _auth(self, resource: str, login: "_Login") -> dict | None:
        """The provider's auth config (X-Registry-Auth) when username and password are both set; no `docker login`,
        nothing written to disk. Otherwise None: the engine's own ~/.docker/config.json, with the provider's warning."""
        if login.username and login.password:
            return {"username": login.username, "password": login.password, "serveraddress": login.server}
        if login.username or login.password:
            missing = "password" if login.username else "username"
            other = "username" if login.username else "password"
            self.warnings.append(f"{resource}: {missing} was not set, although {other} was; "
                                 "using host credentials file")
        return None

    def _pull_cache(self, resource: str, image: str, login: "_Login", platform: str) -> None:
        """Pull one cache image for the build's `platform` with the stack's credentials, as the provider does; a
        failure is recorded and the build goes on. With only one of username and password set the provider skips
        the pull (with a warning) instead of falling back to the host's credentials file as its push does."""
        if bool(login.username) != bool(login.password):
            missing = "password" if login.username else "username"
            reason = f"{missing} was not set, although {'username' if login.username else 'password'} was"
            self.pulls.append(PullRecord(image, False, platform, f"skipped: {reason}"))
            self.warnings.append(f"{resource}: not pulling cache image {image}: {reason}")
            return
        repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
        try:
            self._client.images.pull(repository, tag=tag, auth_config=self._auth(resource, login), platform=platform)
        except docker.errors.APIError as exc:
            reason = _scrub(str(exc.explanation or exc), login.password)
            self.pulls.append(PullRecord(image, False, platform, reason))
            self.warnings.append(f"{resource}: pulling cache image {image} failed: {reason}")
            return
        self.pulls.append(PullRecord(image, True, platform))

    def _push(self, resource: str, image_name: str, login: "_Login") -> str:
        repository, tag = image_name.rsplit(":", 1)
        password = login.password
        auth = self._auth(resource, login)
        digest = None
        for event in self._client.images.push(repository, tag=tag, auth_config=auth, stream=True, decode=True):
            if "error" in event or "errorDetail" in event:
                reason = (event.get("errorDetail") or {}).get("message") or event.get("error")
                raise ImageProviderError(f"{resource}: pushing {image_name} failed: {_scrub(str(reason), password)}")
            aux = event.get("aux") or {}
            if aux.get("Digest"):
                digest = aux["Digest"]
        if not digest or not digest.startswith("sha256:"):
            raise ImageProviderError(f"{resource}: pushing {image_name} reported no manifest digest")
        return digest


def _repository(image_name: str) -> str:
    return image_name.rsplit(":", 1)[0] if ":" in image_name.rsplit("/", 1)[-1] else image_name


class _Inputs:
    """The resource's inputs, secrets revealed; its repr hides them (pytest prints the arguments of failing frames)."""

    def __init__(self, values: dict[str, Any]):
        self.values = values

    def __repr__(self) -> str:
        return f"<docker.Image inputs: {sorted(self.values)}>"


@dataclass(frozen=True)
class _Login:
    server: str | None
    username: str | None
    password: str | None = field(repr=False)

    @classmethod
    def of(cls, registry: dict) -> "_Login":
        return cls(registry.get("server"), registry.get("username"), registry.get("password"))


def _reveal(value: Any) -> Any:
    """Plain values from inputs that may hold Pulumi secrets ({sig: secret, value: ...}), as a provider sees them."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _reveal(value.get("value"))
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_reveal(v) for v in value]
    return value


def _skip_nulls(value: Any) -> Any:
    """A deep copy without null properties, as the provider unmarshals its inputs (SkipNulls)."""
    if isinstance(value, dict):
        return {k: _skip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_skip_nulls(v) for v in value]
    return value


def _scrub(text: str | None, secret: str | None) -> str:
    text = text or ""
    return text.replace(secret, "***") if secret else text


# --- a separate process ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """`python -m tests.e2e.docker_harness --state-dir D --stack S --resource R --cwd P`: one `up` of one image.

    Reads the resource's inputs as JSON on stdin (so no password lands in a file or the process list) and prints
    {"id", "outputs", "action", "builds", "pushes"} as JSON; exits 1 with the error on stderr when Check, the build
    or the push fails.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.docker_harness")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--stack", required=True)
    parser.add_argument("--resource", required=True)
    parser.add_argument("--cwd", type=Path, required=True)
    parser.add_argument("--docker-cli", default="/usr/bin/docker")
    options = parser.parse_args(argv)
    provider = DockerImageProvider(options.state_dir, options.docker_cli, project_root=options.cwd)
    try:
        resource_id, outputs = provider.apply(options.stack, options.resource, _Inputs(json.load(sys.stdin)))
    except ImageProviderError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        provider.close()
    print(json.dumps({"id": resource_id, "outputs": outputs, "action": provider.checks[-1].action,
                      "builds": len(provider.builds), "pushes": len(provider.pushes)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
