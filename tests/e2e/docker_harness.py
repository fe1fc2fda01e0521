"""A stand-in for the pulumi-docker provider's `docker:index/image:Image`, carried out for real.

The pulumi-docker provider plugin (and the Pulumi CLI that would run it) cannot be installed on these machines, so
the end-to-end suite runs the real `__main__.py` under Pulumi mocks (tests/harness.py) and passes an instance of
`DockerImageProvider` as `StackMocks(image_hook=...)`. For every `docker.Image` the program declares it does, against
the real Docker engine and registry, what the provider (v4+, `docker.Image` with `build`) does on `pulumi up`:

Reproduced:
- build with exactly the resource's inputs: `build.context`, `build.dockerfile`, `build.args`, `build.target`,
  `build.platform`, with BuildKit (`builderVersion: BuilderBuildKit`), through `docker buildx build --load`
  (the Docker SDK for Python drives only the classic builder); the image is tagged as `imageName`. Paths are
  resolved against the run's project root, as the provider resolves them against the program's working directory.
  A `build` input this stand-in does not know is an error, never silently ignored;
- log in to the `registry` input's server with its username and password (the engine checks them, like the
  provider's registry login), and push `imageName` with those credentials; the credentials travel in the API call
  only, never into a docker config file, a log or an exception;
- return the real `repoDigest` (`<repository>@sha256:...`, the manifest digest the registry reported for the push),
  plus `imageName`, `baseImageName`, `registryServer`, `context`, `dockerfile` and `platform`;
- `skipPush: true` builds without pushing; in a preview nothing is pushed, and nothing is built unless
  `buildOnPreview` is true; the outputs that need a build (`repoDigest`) are then left unknown;
- the provider's input diff, per stack and resource name: when every input equals the inputs of the last
  successful update of the same resource in the same stack, the previous outputs are returned and nothing is built
  or pushed, as `pulumi up` does for an unchanged resource. Because the program puts the content tag in
  `imageName`, a change to what the build sees is a change of inputs.

Not reproduced:
- the engine's own state, its diff display, replace/delete semantics and state persistence (the "state" here is an
  in-memory map that lives as long as the `DockerImageProvider` object);
- the provider's own build-context hash (its `contextDigest`), its cache-from/cache-to, secrets, ssh, network and
  add-hosts build options (refused if present), and multi-platform builds.

Every build and push is recorded (`builds`, `pushes`, `unchanged`) so tests can assert what a run did.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pulumi
from pulumi.runtime import rpc

__all__ = ["BuildRecord", "DockerImageProvider", "ImageProviderError", "PushRecord"]

IMAGE_TYPE = "docker:index/image:Image"
BUILD_TIMEOUT_S = 300
# The `build` inputs this stand-in carries out; any other one would be ignored silently, so it is refused instead.
SUPPORTED_BUILD_KEYS = frozenset({"context", "dockerfile", "args", "target", "platform", "builderVersion"})
SUPPORTED_KEYS = frozenset({"imageName", "build", "registry", "skipPush", "buildOnPreview"})


class ImageProviderError(Exception):
    """A build or push failed; the text names the image and the engine's reason, never a password."""


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


@dataclass(frozen=True)
class PushRecord:
    """One push the stand-in did, with the manifest digest the registry reported."""

    stack: str
    resource: str
    image_name: str
    digest: str


@dataclass
class DockerImageProvider:
    """`image_hook` for tests.harness.StackMocks: builds and pushes each declared image for real.

    docker_cli: the engine's own docker CLI with buildx (tests/e2e/conftest.py `docker_engine`).
    project_root: where `build.context` and `build.dockerfile` are resolved; None (the default) means the working
    directory at the time of the update, as for the provider, which runs beside the program (run_stack runs the
    program in its project root).
    """

    docker_cli: str = "/usr/bin/docker"
    project_root: Path | None = None
    builds: list[BuildRecord] = field(default_factory=list)
    pushes: list[PushRecord] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    """imageName of every resource whose inputs had not changed since the last update (nothing done)."""
    _state: dict[tuple[str, str], tuple[str, dict]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._client = docker.from_env(timeout=BUILD_TIMEOUT_S)

    # -- what tests use
    @property
    def image_names(self) -> set[str]:
        """Every image name this provider built (to remove them when the tests are done)."""
        return {b.image_name for b in self.builds}

    def remove_images(self) -> None:
        """Untag every image built here, so the engine's store does not fill up with test images."""
        for name in sorted(self.image_names):
            subprocess.run([self.docker_cli, "image", "rm", "--force", name], capture_output=True, timeout=60)

    def close(self) -> None:
        self._client.close()

    # -- the hook
    def __call__(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        if args.typ != IMAGE_TYPE:
            raise ValueError(f"DockerImageProvider handles {IMAGE_TYPE} only, got {args.typ}")
        # Resource registrations may arrive from several threads; builds of one run happen one at a time, as the
        # tests assert on their order and a shared engine gains nothing from parallel BuildKit solves here.
        with self._lock:
            return self._update(args.name, _Inputs(_reveal(dict(args.inputs))))

    def _update(self, resource: str, wrapped: "_Inputs") -> dict[str, Any]:
        inputs = wrapped.values
        unknown = set(inputs) - SUPPORTED_KEYS
        build = dict(inputs.get("build") or {})
        unknown_build = set(build) - SUPPORTED_BUILD_KEYS
        if unknown or unknown_build:
            raise ImageProviderError(
                f"{resource}: the docker.Image stand-in does not reproduce the inputs "
                f"{sorted(unknown) + sorted('build.' + k for k in unknown_build)}; extend tests/e2e/docker_harness.py"
            )
        if not build:
            raise ImageProviderError(f"{resource}: no build input; the stand-in only builds images, as the program does")
        image_name = inputs["imageName"]
        stack = pulumi.get_stack()
        preview = pulumi.runtime.is_dry_run()
        # The provider's diff ignores registry.username and registry.password (a rotating token must not force a
        # rebuild); only registry.server counts. A hash, not the JSON itself, all the same.
        diffed = {**inputs, "registry": {"server": (inputs.get("registry") or {}).get("server")}}
        fingerprint = hashlib.sha256(json.dumps(diffed, sort_keys=True, default=str).encode()).hexdigest()
        key = (stack, resource)

        previous = self._state.get(key)
        if previous is not None and previous[0] == fingerprint:
            self.unchanged.append(image_name)
            return copy.deepcopy(previous[1])

        repository = image_name.rsplit(":", 1)[0] if ":" in image_name.rsplit("/", 1)[-1] else image_name
        registry = dict(inputs.get("registry") or {})
        outputs: dict[str, Any] = {
            "imageName": image_name,
            "baseImageName": image_name,
            "registryServer": registry.get("server"),
            "context": build.get("context"),
            "dockerfile": build.get("dockerfile"),
            "platform": build.get("platform"),
        }
        if preview and not inputs.get("buildOnPreview"):
            return outputs  # repoDigest stays unknown, as the provider leaves it in a preview without a build
        self._build(stack, resource, image_name, build, preview)
        if preview or inputs.get("skipPush"):
            return outputs
        digest = self._push(image_name, _Login.of(registry))
        self.pushes.append(PushRecord(stack, resource, image_name, digest))
        outputs["repoDigest"] = f"{repository}@{digest}"
        self._state[key] = (fingerprint, copy.deepcopy(outputs))
        return outputs

    def _build(self, stack: str, resource: str, image_name: str, build: dict, preview: bool) -> None:
        builder = build.get("builderVersion", "BuilderBuildKit")
        if builder != "BuilderBuildKit":
            raise ImageProviderError(f"{resource}: build.builderVersion {builder!r} is not reproduced (BuildKit only)")
        root = self.project_root or Path.cwd()
        context = (root / build["context"]).resolve()
        dockerfile = (root / build.get("dockerfile", f"{build['context']}/Dockerfile")).resolve()
        args = {str(k): str(v) for k, v in (build.get("args") or {}).items()}
        command = [self.docker_cli, "buildx", "build", "--progress", "plain", "--file", str(dockerfile),
                   "--tag", image_name, "--load"]
        if build.get("platform"):
            command += ["--platform", build["platform"]]
        if build.get("target"):
            command += ["--target", build["target"]]
        for name, value in sorted(args.items()):
            command += ["--build-arg", f"{name}={value}"]
        command.append(str(context))
        self.builds.append(BuildRecord(stack, resource, image_name, context, dockerfile, args, build.get("target"),
                                       build.get("platform"), preview))
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
                                  env={**os.environ, "DOCKER_BUILDKIT": "1"})
        except subprocess.TimeoutExpired as exc:
            raise ImageProviderError(f"{resource}: building {image_name} took longer than {BUILD_TIMEOUT_S}s") from exc
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-25:])
            raise ImageProviderError(f"{resource}: docker buildx build of {image_name} failed:\n{tail}")

    def _push(self, image_name: str, login: "_Login") -> str:
        repository, tag = image_name.rsplit(":", 1)
        password = login.password
        auth = None
        if login.username:
            auth = {"username": login.username, "password": password or "", "serveraddress": login.server}
            try:
                # The engine checks the credentials against the registry, as the provider's login does.
                self._client.login(username=login.username, password=password or "", registry=login.server,
                                   reauth=True)
            except docker.errors.APIError as exc:
                raise ImageProviderError(
                    f"docker login to {login.server} as {login.username!r} failed: "
                    f"{_scrub(exc.explanation, password)}"
                ) from None
        digest = None
        for event in self._client.images.push(repository, tag=tag, auth_config=auth, stream=True, decode=True):
            if "error" in event or "errorDetail" in event:
                reason = (event.get("errorDetail") or {}).get("message") or event.get("error")
                raise ImageProviderError(f"pushing {image_name} failed: {_scrub(str(reason), password)}")
            aux = event.get("aux") or {}
            if aux.get("Digest"):
                digest = aux["Digest"]
        if not digest or not digest.startswith("sha256:"):
            raise ImageProviderError(f"pushing {image_name} reported no manifest digest")
        return digest


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


def _scrub(text: str | None, secret: str | None) -> str:
    text = text or ""
    return text.replace(secret, "***") if secret else text
