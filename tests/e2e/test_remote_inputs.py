"""End to end: base images and remote ADD sources pinned at plan time against real registries and a real server.

Registries are Debian's `docker-registry` on loopback holding the locally imported busybox base
(tests/e2e/base_image.py) pushed under tags; a "moved" base is the same base with one more LABEL, pushed under the
same tag. The plan is `plan_builds` (components/image.py), the same call the program makes before declaring anything; the pinned build is
`docker buildx build` of the staged Dockerfile it writes, on the real engine. Requests are counted in the registry's
own access log and by the loopback HTTP server.
"""
from __future__ import annotations

import hashlib
import http.server
import json
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import docker
import pytest

from buildcontext import ContextScan, history
from cli import explain
from components import image as image_module
from components import remote_inputs
from registryclient.login import RegistryLogin
from registryclient import OCI_INDEX, OCI_MANIFEST, RegistryClient, RegistryError
from components.config.schema import ImageSettings, RegistrySettings, Settings
from tests.e2e.base_image import base_image  # noqa: F401
from tests.e2e.conftest import DOCKER_CLI
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401

BASE_REPO = "base/busybox"


def push(client: docker.DockerClient, local: str, registry: RegistryServer, repository: str, tag: str) -> str:
    """Push the local image `local` as <registry>/<repository>:<tag>; its manifest digest."""
    target = f"{registry.server}/{repository}"
    client.images.get(local).tag(target, tag)
    auth = None if registry.auth == "none" else {"username": registry.username, "password": registry.password}
    for event in client.images.push(target, tag=tag, stream=True, decode=True, auth_config=auth):
        assert "error" not in event, event
    digest = registry.manifest_digest(repository, tag)
    assert digest
    return digest


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def moved_base(engine, base_image: str) -> Iterator[str]:  # noqa: F811
    """The base with one more LABEL: what a base tag points to after it moved."""
    name = f"{base_image}-moved"
    subprocess.run([DOCKER_CLI, "build", "-q", "-t", name, "-"], input=f"FROM {base_image}\nLABEL moved=yes\n".encode(),
                   check=True, capture_output=True, timeout=300)
    yield name
    subprocess.run([DOCKER_CLI, "image", "rm", "-f", name], capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def open_registry(registry_factory) -> RegistryServer:  # noqa: F811
    return registry_factory(auth="none", access_log=True)


def make_project(root: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    (root / "app").mkdir(parents=True, exist_ok=True)
    (root / "app" / "Dockerfile").write_text(dockerfile)
    for rel, text in (files or {"hello.txt": "hello\n"}).items():
        (root / "app" / rel).write_text(text)
    return root


def settings_for(root: Path, *, stack: str = "e2e", server: str = "127.0.0.1:1", **image: object) -> Settings:
    img = ImageSettings(name="web", context="app", dockerfile="app/Dockerfile",
                        build_args={"BUILDKIT_INLINE_CACHE": "1", **image.pop("build_args", {})}, **image)
    return Settings(stack=stack, region=None, registry=RegistrySettings(edition="local", namespace=None, server=server),
                    images=(img,), protect=False, retain_on_delete=False, preflight=False, project_root=root)


def manifest_requests(registry: RegistryServer, repository: str) -> int:
    return sum(1 for line in registry.log_text().splitlines() if f"/v2/{repository}/manifests/" in line)


def test_a_moved_base_changes_the_tag_and_explain_names_it(tmp_path, engine, base_image, moved_base,  # noqa: F811
                                                           open_registry, monkeypatch):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    old = push(engine, base_image, open_registry, BASE_REPO, "moving")
    ref = f"{open_registry.server}/{BASE_REPO}:moving"
    root = make_project(tmp_path / "p", f"FROM {ref}\nCOPY hello.txt /hello.txt\n")
    settings = settings_for(root)
    first = image_module.plan_builds(settings)["web"]
    assert image_module.plan_builds(settings)["web"].tag == first.tag, "an unmoved base keeps the tag"
    new = push(engine, moved_base, open_registry, BASE_REPO, "moving")
    assert new != old
    second = image_module.plan_builds(settings)["web"]
    assert second.tag != first.tag
    staged = (root / second.dockerfile).read_text()
    assert staged == f"FROM {ref}@{new}\nCOPY hello.txt /hello.txt\n"
    # explain says why the tag moved: nothing in the context, the base.
    key = history.HistoryKey(root, "e2e", "web")
    with ContextScan(root / "app") as scan:
        state = scan.state(settings.images[0].build_args, None, "linux/amd64", {f"FROM {ref}": new})
        lines = explain._history_lines(key, history.load(key), state, scan.manifest())
    assert state.tag == second.tag
    assert f"  FROM {ref}: {old} -> {new}" in lines, lines
    assert not any(line.startswith("  changed  ") for line in lines), lines


def test_a_pinned_from_makes_no_request(tmp_path, engine, base_image, open_registry, monkeypatch):  # noqa: F811
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    digest = push(engine, base_image, open_registry, "base/pinned", "v1")
    ref = f"{open_registry.server}/base/pinned:v1@{digest}"
    root = make_project(tmp_path / "p", f"FROM {ref}\nCOPY hello.txt /hello.txt\n")
    before = manifest_requests(open_registry, "base/pinned")
    assert before >= 1, "the registry log counts manifest requests (the push made some)"
    for mode in ("resolve", "pinned"):
        plan = image_module.plan_builds(settings_for(root, remote_inputs=mode))["web"]
        assert plan.dockerfile is None, "nothing to pin: the configured Dockerfile is built"
    assert manifest_requests(open_registry, "base/pinned") == before


def test_arg_substitution_multi_stage_and_scratch(tmp_path, engine, base_image, moved_base,  # noqa: F811
                                                  open_registry, monkeypatch):
    """A global ARG names the base (overridden by a build arg), a builder stage FROM another base is needed through
    COPY --from, an unused stage's base is never asked, and the target FROM scratch has no base."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    a = push(engine, base_image, open_registry, "base/a", "1")
    b = push(engine, moved_base, open_registry, "base/b", "1")
    server = open_registry.server
    dockerfile = (f"ARG REG={server}\nARG FLAVOUR=a\n"
                  "FROM ${REG}/base/${FLAVOUR}:1 AS build\nRUN echo built > /out\n"
                  f"FROM {server}/base/never-asked:1 AS unused\n"
                  "FROM scratch AS web\nCOPY --from=build /out /out\n")
    root = make_project(tmp_path / "p", dockerfile)
    before = manifest_requests(open_registry, "base/never-asked")
    plan_a = image_module.plan_builds(settings_for(root, target="web"))["web"]
    plan_b = image_module.plan_builds(settings_for(root, target="web", build_args={"FLAVOUR": "b"}))["web"]
    assert plan_a.tag != plan_b.tag
    assert f"FROM {server}/base/b:1@{b} AS build" in (root / plan_b.dockerfile).read_text()
    assert manifest_requests(open_registry, "base/never-asked") == before, "a stage the target does not need"
    assert a != b


def test_platform_follows_the_index(tmp_path, engine, base_image, moved_base, open_registry,  # noqa: F811
                                    monkeypatch):
    """An index is followed to the manifest of the image's platform, and `FROM --platform=` picks its own."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    amd64 = push(engine, base_image, open_registry, "base/multi", "amd64")
    other = push(engine, moved_base, open_registry, "base/multi", "other")
    with RegistryClient(open_registry.server, allow_plain_http=True) as client:
        sizes = {d: len(client.get_manifest("base/multi", d).content) for d in (amd64, other)}
        media = {d: client.get_manifest("base/multi", d).media_type for d in (amd64, other)}
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": media[amd64], "digest": amd64, "size": sizes[amd64],
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": media[other], "digest": other, "size": sizes[other],
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}]}).encode()
        client.put_manifest("base/multi", "1", OCI_INDEX, index)
    ref = f"{open_registry.server}/base/multi:1"
    root = make_project(tmp_path / "p", f"FROM {ref}\nCOPY hello.txt /\nFROM --platform=linux/arm64 {ref} AS tool\n"
                                        "FROM scratch\nCOPY --from=tool /bin/busybox /x\n")
    plan = image_module.plan_builds(settings_for(root))["web"]
    text = (root / plan.dockerfile).read_text()
    assert f"FROM --platform=linux/arm64 {ref}@{other} AS tool" in text, text
    root2 = make_project(tmp_path / "q", f"FROM {ref}\nCOPY hello.txt /\n")
    staged = image_module.plan_builds(settings_for(root2))["web"].dockerfile
    assert f"FROM {ref}@{amd64}" in (root2 / staged).read_text()
    with pytest.raises(image_module.BuildPlanError, match=r"its index has no manifest for linux/s390x \(it has "
                                                          r"linux/amd64, linux/arm64/v8\)"):
        image_module.plan_builds(settings_for(root2, platform="linux/s390x"))
    assert OCI_MANIFEST  # the media types the index names are the registry's own



def _put_index(registry: RegistryServer, repository: str, tag: str, entries: list[tuple[str, dict]]) -> None:
    with RegistryClient(registry.server, allow_plain_http=True) as client:
        manifests = [(client.get_manifest(repository, d), d, p) for d, p in entries]
        client.put_manifest(repository, tag, OCI_INDEX, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": [{"mediaType": m.media_type, "digest": d, "size": len(m.content),
                                           "platform": p} for m, d, p in manifests]}).encode())


def test_an_index_entry_is_picked_as_buildkit_picks_it(tmp_path, engine, base_image, moved_base, open_registry,
                                                       monkeypatch):  # noqa: F811
    """linux/arm is arm/v7 and an arm/v6 entry listed first is only its fallback (containerd's platforms.Only, as
    BuildKit orders an index): the plan pins the manifest the engine itself pulls for --platform linux/arm."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    six = push(engine, base_image, open_registry, "base/arm", "six")
    seven = push(engine, moved_base, open_registry, "base/arm", "seven")
    _put_index(open_registry, "base/arm", "1", [
        (six, {"os": "unknown", "architecture": "unknown"}), (six, {"os": "linux", "architecture": "amd64"}),
        (seven, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
        (six, {"os": "linux", "architecture": "arm", "variant": "v6"}),
        (seven, {"os": "linux", "architecture": "arm", "variant": "v7"})])
    _put_index(open_registry, "base/arm", "no-v7", [(seven, {"os": "linux", "architecture": "arm", "variant": "v5"}),
                                                    (six, {"os": "linux", "architecture": "arm", "variant": "v6"})])
    ref = f"{open_registry.server}/base/arm"
    root = make_project(tmp_path / "p", f"FROM --platform=linux/arm {ref}:1 AS tool\nFROM {ref}:no-v7\n"
                                        "COPY --from=tool /bin/busybox /x\n")
    staged = (root / image_module.plan_builds(settings_for(root, platform="linux/arm/v7"))["web"].dockerfile)
    assert staged.read_text().splitlines()[:2] == [f"FROM --platform=linux/arm {ref}:1@{seven} AS tool",
                                                   f"FROM {ref}:no-v7@{six}"], staged.read_text()
    single = make_project(tmp_path / "q", f"FROM {ref}:1\nCOPY hello.txt /\n")
    before = len(open_registry.log_text().splitlines())
    build = subprocess.run([DOCKER_CLI, "buildx", "build", "--platform", "linux/arm", "-f",
                            str(single / "app" / "Dockerfile"), "--no-cache", "--output", "type=tar,dest=/dev/null",
                            str(single / "app")], capture_output=True, timeout=300)
    assert build.returncode == 0, build.stderr.decode()[-2000:]
    pulled = {d for d in (six, seven) for line in open_registry.log_text().splitlines()[before:]
              if f"/v2/base/arm/manifests/{d}" in line}
    assert pulled == {seven}, "BuildKit pulls the arm/v7 entry for linux/arm, as the plan pins it"

def test_an_index_without_one_of_the_images_platforms_fails_that_platform_only(
        tmp_path, engine, base_image, open_registry, monkeypatch):  # noqa: F811
    """An image with platforms: the base's index is asked once for both, and only the platform it lacks fails,
    named with the platforms the index has."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    amd64 = push(engine, base_image, open_registry, "base/one-platform", "amd64")
    with RegistryClient(open_registry.server, allow_plain_http=True) as client:
        manifest = client.get_manifest("base/one-platform", amd64)
        client.put_manifest("base/one-platform", "1", OCI_INDEX, json.dumps({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                {"mediaType": manifest.media_type, "digest": amd64, "size": len(manifest.content),
                 "platform": {"os": "linux", "architecture": "amd64"}}]}).encode())
    ref = f"{open_registry.server}/base/one-platform:1"
    root = make_project(tmp_path / "p", f"FROM {ref}\nCOPY hello.txt /\n")
    before = manifest_requests(open_registry, "base/one-platform")
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings_for(root, platform="linux/amd64", platforms=("linux/amd64", "linux/arm64")))
    assert manifest_requests(open_registry, "base/one-platform") == before + 1
    message = str(err.value)
    assert f"line 1: FROM {ref} (host {open_registry.server}) cannot be resolved for linux/arm64: its index has no " \
        "manifest for linux/arm64 (it has linux/amd64)" in message, message
    assert "for linux/amd64" not in message and len(message.splitlines()) == 1, message


def test_the_build_uses_the_digest_the_tag_names(tmp_path, engine, base_image, moved_base,  # noqa: F811
                                                 open_registry, monkeypatch):
    """A base moved between plan and build: the staged Dockerfile still builds on the digest the tag names (the
    configured one, unpinned, would take the moved base)."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    push(engine, base_image, open_registry, "base/racing", "latest")
    ref = f"{open_registry.server}/base/racing:latest"
    root = make_project(tmp_path / "p", f"FROM {ref}\nCOPY hello.txt /hello.txt\n")
    plan = image_module.plan_builds(settings_for(root))["web"]
    push(engine, moved_base, open_registry, "base/racing", "latest")  # the base moves after planning

    def built_labels(dockerfile: Path) -> dict:
        name = f"acr-publish-e2e/pinned:{secrets.token_hex(4)}"
        subprocess.run([DOCKER_CLI, "buildx", "build", "--platform", "linux/amd64", "-f", str(dockerfile), "-t", name,
                        "--load", str(root / "app")], check=True, capture_output=True, timeout=300)
        try:
            return engine.images.get(name).labels or {}
        finally:
            engine.images.remove(name, force=True)

    assert "moved" not in built_labels(root / plan.dockerfile), "the pinned build used the planned base"
    assert built_labels(root / "app" / "Dockerfile").get("moved") == "yes", "unpinned, the moved base is taken"


class _Files(http.server.BaseHTTPRequestHandler):
    body = b"one\n"
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def serving(handler: type, host: str = "127.0.0.1") -> Iterator[tuple[str, type]]:
    """`handler` served on a loopback port of `host` for one test: yields the base URL and the handler class."""
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{host}:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.fixture
def file_server() -> Iterator[tuple[str, type[_Files]]]:
    yield from serving(type("Files", (_Files,), {"body": b"one\n", "hits": []}))


def test_a_remote_add_source_is_hashed_and_pinned(tmp_path, file_server, monkeypatch):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    base_url, handler = file_server
    handler.body = f"one {secrets.token_hex(8)}\n".encode()  # bytes no earlier build stored
    url = f"{base_url}/file-{secrets.token_hex(4)}.txt"
    root = make_project(tmp_path / "p", f"FROM scratch\nADD {url} /file.txt\n")
    first = image_module.plan_builds(settings_for(root))["web"]
    assert len(handler.hits) == 1
    checksum = "sha256:" + hashlib.sha256(handler.body).hexdigest()
    assert (root / first.dockerfile).read_text() == f"FROM scratch\nADD --checksum={checksum} {url} /file.txt\n"
    build = [DOCKER_CLI, "buildx", "build", "--platform", "linux/amd64", "-f", str(root / first.dockerfile),
             "--output", "type=tar,dest=/dev/null", str(root / "app")]
    planned = handler.body
    handler.body = b"two\n"  # the served file changes after planning, before the build
    proc = subprocess.run(build, capture_output=True, timeout=300, text=True)
    assert proc.returncode != 0 and "checksum" in (proc.stdout + proc.stderr).lower(), \
        "a source changed since planning fails the pinned build instead of landing under the planned tag"
    handler.body = planned
    subprocess.run(build, check=True, capture_output=True, timeout=300)  # served as planned, the build passes
    handler.body = b"two\n"
    second = image_module.plan_builds(settings_for(root))["web"]
    assert second.tag != first.tag, "a changed source changes the tag"
    hits = len(handler.hits)
    (root / "app" / "Dockerfile").write_text(f"FROM scratch\nADD --checksum={checksum} {url} /f\n")
    image_module.plan_builds(settings_for(root))
    assert len(handler.hits) == hits, "an ADD with --checksum makes no request"


def test_the_stacks_own_login_reaches_its_own_registry_and_no_other(tmp_path, engine, base_image,  # noqa: F811
                                                                     registry_factory, monkeypatch):  # noqa: F811
    """The stack's registry (htpasswd) holds the base: resolved with the stack's login. A second registry that
    would accept the very same user and password is asked anonymously, so it refuses: the login never went there."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    own = registry_factory(auth="htpasswd")
    other = registry_factory(auth="htpasswd", username=own.username, password=own.password)
    push(engine, base_image, own, "mirror/busybox", "1")
    push(engine, base_image, other, "mirror/busybox", "1")
    login = RegistryLogin(own.server, own.username, own.password, allow_plain_http=True)
    root = make_project(tmp_path / "p", f"FROM {own.server}/mirror/busybox:1\nCOPY hello.txt /\n")
    plan = image_module.plan_builds(settings_for(root, server=own.server), login)["web"]
    assert plan.dockerfile is not None
    root2 = make_project(tmp_path / "q", f"FROM {other.server}/mirror/busybox:1\nCOPY hello.txt /\n")
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings_for(root2, server=own.server), login)
    msg = str(err.value)
    assert f"app/Dockerfile line 1: FROM {other.server}/mirror/busybox:1 (host {other.server})" in msg, msg
    assert "credentials: anonymous" in msg and f"docker login {other.server}" in msg, msg
    assert own.password not in msg


@pytest.mark.parametrize("case", ["absent", "unreachable"])
def test_a_base_that_cannot_be_resolved_fails_the_plan_with_line_reference_host_and_fix(
        tmp_path, open_registry, monkeypatch, case):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    server = open_registry.server if case == "absent" else "127.0.0.1:9"
    root = make_project(tmp_path / "p", f"FROM scratch AS x\nFROM {server}/no/such:1\nCOPY hello.txt /\n")
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings_for(root))
    msg = str(err.value)
    assert f"acr-publish:images[0] (web): app/Dockerfile line 2: FROM {server}/no/such:1 (host {server})" in msg, msg
    assert ("does not exist" in msg and "check the reference for a typo" in msg if case == "absent"
            else "refused" in msg and "pin the digest" in msg and "mirror the base" in msg), msg
    assert not (root / ".acr-publish").exists(), "nothing staged for a failed plan"


class _Recording(http.server.BaseHTTPRequestHandler):
    """Serves `body` (or a redirect to `redirect`), dripping a byte per `drip` seconds when set; records each
    request's path and Authorization header."""

    protocol_version = "HTTP/1.1"
    body = b"one\n"
    redirect: str | None = None
    drip = 0.0
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.redirect:
            self.send_response(302)
            self.send_header("Location", self.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body) if not self.drip else 10_000_000))
        self.end_headers()
        if not self.drip:
            self.wfile.write(self.body)
            return
        try:
            for _ in range(120):  # bounded: at most two minutes of drip
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(self.drip)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recording_server() -> Iterator[tuple[str, type[_Recording]]]:
    yield from serving(type("Recording", (_Recording,), {"seen": []}))


def test_a_remote_source_is_fetched_without_any_credential(tmp_path, recording_server, monkeypatch):
    """Neither ~/.netrc nor user info in the URL or in a redirect's Location reaches an ADD host."""
    base, handler = recording_server
    host_port = base.removeprefix("http://")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login netrcuser password netrcPASSWORD1\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert remote_inputs.fetch_checksum(f"{base}/f", time.monotonic() + 30) == \
        "sha256:" + hashlib.sha256(b"one\n").hexdigest()
    assert handler.seen == [("/f", None)]
    with pytest.raises(remote_inputs.ResolveFailure) as err:
        remote_inputs.fetch_checksum(f"http://u:s3cretTOKEN@{host_port}/f", time.monotonic() + 30)
    assert "s3cretTOKEN" not in str(err.value) and len(handler.seen) == 1, "user info: refused, not fetched"
    handler.redirect = f"http://u:s3cretTOKEN@{host_port}/final"
    with pytest.raises(remote_inputs.ResolveFailure) as err:
        remote_inputs.fetch_checksum(f"{base}/moved", time.monotonic() + 30)
    assert "user info" in str(err.value) and "s3cretTOKEN" not in str(err.value)
    assert [path for path, _ in handler.seen] == ["/f", "/moved"], "the redirect with user info is not followed"


def test_a_dripping_source_is_cut_off_at_the_deadline(recording_server):
    """A byte a second keeps each read within its socket timeout: only the deadline's watchdog ends the fetch."""
    base, handler = recording_server
    handler.drip = 0.5
    outcome: list[BaseException | str] = []

    def fetch() -> None:
        try:
            outcome.append(remote_inputs.fetch_checksum(f"{base}/big", time.monotonic() + 3))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    thread.join(40)  # generous: turns a hang into a failure
    assert not thread.is_alive(), "the fetch outlived its deadline"
    [failure] = outcome
    assert isinstance(failure, remote_inputs.ResolveFailure) and failure.kind == "unreachable"
    assert "the remote-input time limit of 3s ran out" in str(failure), failure


def test_a_silent_registry_is_reported_with_the_limit_that_ended_it():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: [accepted.append(listener.accept()[0]) for _ in range(2)], daemon=True)
    thread.start()
    server = f"127.0.0.1:{listener.getsockname()[1]}"
    client = RegistryClient(server, None, None, allow_plain_http=True, timeout=1.0, deadline=time.monotonic() + 60,
                            limit_name="remote-input time limit", anonymous=True)
    try:
        with pytest.raises(RegistryError) as err:
            client.login(prove=False)
    finally:
        client.close()
        for conn in accepted:
            conn.close()
        listener.close()
    assert "did not answer GET /v2/ within 1s (the time limit of one exchange)" in str(err.value), err.value
    assert "60s" not in str(err.value)


def test_a_refused_stack_login_names_the_stacks_login_in_its_fix(tmp_path, registry_factory, monkeypatch):  # noqa: F811
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    own = registry_factory(auth="htpasswd")
    login = RegistryLogin(own.server, own.username, "wrong-password-9", allow_plain_http=True)
    root = make_project(tmp_path / "p", f"FROM {own.server}/mirror/busybox:1\nCOPY hello.txt /\n")
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings_for(root, server=own.server), login)
    msg = str(err.value)
    assert "credentials: the stack's login" in msg and f"check the credentials for {own.server} (the stack's login)" \
        in msg, msg
    assert "Docker config" not in msg, msg


def _buildkit_fetches(root: Path, handler: type[_Recording], platform: str = "linux/arm64",
                      build_args: dict[str, str] | None = None) -> list[str]:
    """The paths the real BuildKit asks the server for when it builds app/Dockerfile (FROM scratch)."""
    handler.seen.clear()
    args = [f"--build-arg={k}={v}" for k, v in (build_args or {}).items()]
    subprocess.run([DOCKER_CLI, "buildx", "build", "--platform", platform, "-f", str(root / "app" / "Dockerfile"),
                    *args, "--no-cache", "--output", "type=tar,dest=/dev/null", str(root / "app")],
                   check=True, capture_output=True, timeout=300)
    return sorted({path for path, _ in handler.seen})


def test_source_substitution_matches_buildkit_or_is_refused(tmp_path, recording_server, monkeypatch):
    """Platform ARGs reach a stage only when it declares them, as in BuildKit; ENV, an ARG set after an ENV and a
    FROM parent's ARG give the plan the URL BuildKit fetches."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    base, handler = recording_server
    tag = secrets.token_hex(4)
    for n, declare in enumerate(("", "ARG TARGETARCH\n")):
        root = make_project(tmp_path / f"p{n}", f"FROM scratch\n{declare}ADD {base}/t-{tag}-$TARGETARCH /t\n")
        built = _buildkit_fetches(root, handler)
        handler.seen.clear()
        image_module.plan_builds(settings_for(root, platform="linux/arm64"))
        assert sorted({p for p, _ in handler.seen}) == built == [f"/t-{tag}-{'arm64' if declare else ''}"]
    for n, text in enumerate((f"FROM scratch\nENV V={tag}\nADD {base}/e-$V /e\n",
                              f"FROM scratch\nENV U={base}/u-{tag}\nADD $U /u\n",
                              f"FROM scratch\nENV V=env\nARG V={tag}\nADD {base}/a-$V /e\n",
                              f"FROM scratch AS p\nARG V={tag}\nFROM p\nADD {base}/p-$V /e\n")):
        root = make_project(tmp_path / f"e{n}", text)
        built = _buildkit_fetches(root, handler)
        assert tag in built[0], "BuildKit substitutes ENV, an ARG set after it, a FROM parent's ARG"
        handler.seen.clear()
        image_module.plan_builds(settings_for(root, platform="linux/arm64"))
        assert sorted({p for p, _ in handler.seen}) == built, text


@pytest.mark.parametrize("text, build_args", [
    ('FROM scratch\nARG V="{tag} 1"\nADD {base}/dq-$V /f\n', {}),
    ("FROM scratch\nARG V='{tag}-$X'\nADD {base}/sq-$V /f\n", {}),
    ("FROM scratch\nENV V=\"{tag}\" W='$V'\\ x\nADD \"{base}/env-$V-$W\" /f\n", {}),
    ('FROM scratch\nARG V={tag}\nADD {base}/esc-\\$V-"a\\"b\\$V\\d"-a\\\\b-$V /f\n', {}),
    ("FROM scratch\nARG V\nARG E=\nARG W={tag}\n"
     "ADD {base}/def-${{V:-d}}-${{V-u}}-${{E:-e}}-${{E-f}}-${{W:+\"s$W\"}}-${{W+p}}-${{V:+x}}-${{V+y}} /f\n", {}),
    ("FROM scratch\nARG V\nADD {base}/ba-$V /f\n", {"V": '"{tag}"'}),
    ("FROM scratch\nARG V\nADD {base}/bs-${{V:-'-'}} /f\n", {"V": "'{tag}'$X"}),
    ('ARG B="scr"\nARG V=\'{tag}\'\nFROM "${{B}}atch"\nARG V\nADD {base}/from-$V /f\n', {}),
    ('ARG V="{tag}"\nFROM scratch AS s\nFROM "s"\nARG V\nADD [\"{base}/json-$V-\'q\'\", \"/f\"]\n', {}),
    ("FROM scratch\nENV P={tag}\nENV P=b Q=$P\nADD {base}/env-line-$Q-$P /f\n", {}),
    ("\ufeff# escape=`\nFROM scratch\nARG V={tag}\nADD {base}/bom-`\\$V-$V /f\n", {}),
    (" # escape=`\nFROM scratch\nARG V={tag}\nADD {base}/ws-`\\$V-$V /f\n", {}),
    ("FROM scratch\nARG P={tag}\nARG P=b Q=$P\nADD {base}/arg-line-$Q-$P /f\n", {}),
    ("FROM scratch\nARG V=x{tag}.tgz\nARG P=/a/b*/c\n"
     "ADD {base}/tr-${{V#x}}-${{V%.*}}-${{V/./_}}-${{P//\\//_}}-${{P##*/}}-${{P#*/}}-${{P%%/*}}-${{V:#?}} /f\n", {}),
    ("FROM scratch\nARG V\nARG R\nADD {base}/rp-${{V//a?/-}}-${{V/a*/_}}-${{V//b/$R}}-${{V/\\**/z}} /f\n",
     {"V": "{tag}ab*ab", "R": "$0$0"}),
    ("ARG B=scratch-debug\nFROM ${{B%-debug}}\nARG V=/{tag}/\nADD {base}/from-trim${{V%/}} /f\n", {}),
])
def test_quoted_and_escaped_words_give_the_plan_the_url_buildkit_fetches(text, build_args, tmp_path,
                                                                         recording_server, monkeypatch):
    """Quotes ('...' literal, "..." expanded), escapes, the :- / - / :+ / + forms, quotes in a build arg's value
    (taken as given), in ARG and ENV values, in FROM and in the JSON form: the plan hashes the URL BuildKit fetches
    (spaces and quotes included, as each client encodes them)."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    base, handler = recording_server
    tag = secrets.token_hex(4)
    text = text.format(tag=tag, base=base)
    build_args = {k: v.format(tag=tag) for k, v in build_args.items()}
    root = make_project(tmp_path / "p", text)
    built = _buildkit_fetches(root, handler, "linux/amd64", build_args)
    assert len(built) == 1 and tag in built[0], built
    handler.seen.clear()
    image_module.plan_builds(settings_for(root, build_args=build_args))
    assert sorted({p for p, _ in handler.seen}) == built, text


def test_a_url_the_two_clients_encode_differently_is_refused_not_fetched(tmp_path, recording_server, monkeypatch):
    """A quote and a space in one path: Go's client (BuildKit) percent-encodes the quote, requests does not; the
    plan would hash another path than the build fetches, so it refuses the line, naming no substituted value."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    base, handler = recording_server
    tag = secrets.token_hex(4)
    root = make_project(tmp_path / "p", f"FROM scratch\nARG V\nADD {base}/q-$V /f\n")
    assert _buildkit_fetches(root, handler, "linux/amd64", {"V": f"'{tag}' x"}) == [f"/q-%27{tag}%27%20x"]
    handler.seen.clear()
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings_for(root, build_args={"V": f"'{tag}' x"}))
    assert "app/Dockerfile line 3: ADD " + base + "/q-$V expands to a URL with characters that BuildKit's client" \
        in str(err.value) and tag not in str(err.value), err.value
    assert handler.seen == []


@pytest.mark.parametrize("line, engine_says", [
    ("COPY --from=$S /s /s", "invalid reference format"),
    ("COPY --from=${S} /s /s", "invalid reference format"),
    ("RUN --mount=type=bind,from=$S,target=/m true", "'from' doesn't support variable expansion"),
])
def test_a_variable_in_a_from_is_never_expanded_by_buildkit_and_is_refused_by_the_plan(line, engine_says, tmp_path,
                                                                                       recording_server):
    """Docker 26's BuildKit expands no variable in COPY --from or RUN --mount from=: the build fails (also with the
    ARG naming a stage that exists). The plan refuses the line with its fix and asks nothing."""
    base, handler = recording_server
    root = make_project(tmp_path / "p", f"FROM scratch AS s\nADD {base}/s /s\nFROM scratch\nARG S=s\n{line}\n")
    handler.seen.clear()
    build = subprocess.run([DOCKER_CLI, "buildx", "build", "--platform", "linux/amd64", "--no-cache", "--output",
                            "type=tar,dest=/dev/null", str(root / "app")], capture_output=True, timeout=300, text=True)
    assert build.returncode != 0 and engine_says in build.stdout + build.stderr, build.stderr[-2000:]
    handler.seen.clear()
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings_for(root))
    assert "app/Dockerfile line 5: " in str(err.value) and "BuildKit expands no variable in a --from" in \
        str(err.value) and "fix: name the stage or image literally" in str(err.value), err.value
    assert handler.seen == [], "nothing fetched"


def test_a_checksum_from_a_build_arg_is_expanded_by_buildkit_and_pins_the_source(tmp_path, recording_server,
                                                                                  monkeypatch):
    """Docker 26's BuildKit expands ARGs in ADD --checksum: the right value builds, a wrong one fails its check, and
    an empty one checks nothing. The plan takes the expanded value as the pin (no request) and refuses the empty
    one."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    base, handler = recording_server
    handler.body = f"sum {secrets.token_hex(8)}\n".encode()
    good = "sha256:" + hashlib.sha256(handler.body).hexdigest()
    root = make_project(tmp_path / "p", f"FROM scratch\nARG SUM\nADD --checksum=$SUM {base}/f /f\n")

    def build(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([DOCKER_CLI, "buildx", "build", "--platform", "linux/amd64", "--no-cache", *args,
                               "--output", "type=tar,dest=/dev/null", str(root / "app")],
                              capture_output=True, timeout=300, text=True)

    assert build("--build-arg", f"SUM={good}").returncode == 0
    wrong = build("--build-arg", "SUM=sha256:" + "0" * 64)
    assert wrong.returncode != 0 and "digest mismatch" in wrong.stdout + wrong.stderr, "BuildKit checks the value"
    assert build().returncode == 0, "BuildKit verifies nothing when the checksum expands to nothing"
    handler.seen.clear()
    plan = image_module.plan_builds(settings_for(root, build_args={"SUM": good}))["web"]
    assert handler.seen == [] and plan.dockerfile is None, "pinned by the expanded checksum: nothing fetched"
    other = image_module.plan_builds(settings_for(root, build_args={"SUM": "sha256:" + "1" * 64}))["web"]
    assert other.tag != plan.tag
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings_for(root))
    assert "app/Dockerfile line 3: ADD --checksum=$SUM expands to nothing" in str(err.value), err.value
    assert handler.seen == []


def test_a_base_images_env_is_overridden_by_an_arg_with_a_value_and_refused_otherwise(
        tmp_path, engine, base_image, open_registry, recording_server, monkeypatch):  # noqa: F811
    """A base whose config sets ENV SRC, on a loopback registry: BuildKit (Docker 26) takes a stage's ARG SRC with a
    value over it, so the plan hashes the URL BuildKit fetches; an ARG SRC without one leaves the image's value,
    which the plan does not read: refused with its line, nothing fetched."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    base, handler = recording_server
    local = f"{base_image}-env"
    subprocess.run([DOCKER_CLI, "build", "-q", "-t", local, "-"], input=f"FROM {base_image}\nENV SRC=image\n".encode(),
                   check=True, capture_output=True, timeout=300)
    try:
        push(engine, local, open_registry, "base/with-env", "v1")
    finally:
        subprocess.run([DOCKER_CLI, "image", "rm", "-f", local], capture_output=True, timeout=60)
    ref = f"{open_registry.server}/base/with-env:v1"
    tag = secrets.token_hex(4)
    root = make_project(tmp_path / "a", f"FROM {ref}\nARG SRC={tag}\nADD {base}/$SRC /f\n")
    built = _buildkit_fetches(root, handler, "linux/amd64")
    assert built == [f"/{tag}"], "the ARG's value, not the image's ENV"
    handler.seen.clear()
    image_module.plan_builds(settings_for(root, server=open_registry.server))
    assert sorted({p for p, _ in handler.seen}) == built
    root = make_project(tmp_path / "b", f"FROM {ref}\nARG SRC\nADD {base}/$SRC /f\n")
    assert _buildkit_fetches(root, handler, "linux/amd64") == ["/image"], "an ARG without a value: the image's ENV"
    handler.seen.clear()
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings_for(root, server=open_registry.server))
    assert "app/Dockerfile line 3: ADD" in str(err.value) and "declares without a value" in str(err.value)
    assert handler.seen == []


def test_a_base_registry_that_cannot_be_reached_is_named_by_the_from_line_not_the_stack(monkeypatch, tmp_path):
    """A FROM host other than the stack's: the advice points at the FROM reference and mirroring, never at the
    stack's registry setting or `make up`."""
    import socket
    import time

    from components.remote_inputs import ResolveFailure, resolve_platforms

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stack = RegistryLogin("registry.example.com", "deployer", "stack-pass", False)
    failure = resolve_platforms(f"127.0.0.1:{port}/mirror/base:1", ("linux/amd64",), stack,
                                time.monotonic() + 10)["linux/amd64"]
    assert isinstance(failure, ResolveFailure), failure
    text = str(failure)
    assert "start that registry or fix the port in the Dockerfile's FROM reference" in text, text
    assert "acr-publish:registry.server" not in text and "make up" not in text, text


def test_a_moved_frontend_tag_changes_the_tag_and_explain_names_it(  # noqa: F811
        tmp_path, engine, base_image, moved_base, open_registry, monkeypatch):
    """`# syntax=` on a loopback registry: resolved for this machine's platform (an index's entry for the build
    host, not the image's platform), pinned in the staged Dockerfile, in the tag, named by explain when it moves,
    refused without a digest under pinned. Resolved only: no build runs (busybox is no frontend)."""
    from buildcontext.stage_args import host_platform_name

    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    host_os, host_arch = host_platform_name().split("/")[:2]
    other_arch = "s390x" if host_arch != "s390x" else "amd64"
    native = push(engine, base_image, open_registry, "frontend/dockerfile", "native")
    foreign = push(engine, moved_base, open_registry, "frontend/dockerfile", "foreign")
    _put_index(open_registry, "frontend/dockerfile", "1", [
        (foreign, {"os": "linux", "architecture": other_arch}), (native, {"os": host_os, "architecture": host_arch})])
    ref = f"{open_registry.server}/frontend/dockerfile:1"
    root = make_project(tmp_path / "p", f"# syntax={ref}\nFROM scratch\nCOPY hello.txt /hello.txt\n")
    settings = settings_for(root, platform=f"linux/{other_arch}")
    first = image_module.plan_builds(settings)["web"]
    staged = (root / first.dockerfile).read_text()
    assert staged == f"# syntax={ref}@{native}\nFROM scratch\nCOPY hello.txt /hello.txt\n", staged
    moved = push(engine, moved_base, open_registry, "frontend/dockerfile", "1")
    second = image_module.plan_builds(settings)["web"]
    assert second.tag != first.tag
    assert (root / second.dockerfile).read_text().splitlines()[0] == f"# syntax={ref}@{moved}"
    key = history.HistoryKey(root, "e2e", "web")
    with ContextScan(root / "app") as scan:
        state = scan.state(settings.images[0].build_args, None, f"linux/{other_arch}", {f"# syntax {ref}": moved})
        lines = explain._history_lines(key, history.load(key), state, scan.manifest())
    assert state.tag == second.tag
    assert f"  # syntax {ref}: {native} -> {moved}" in lines, lines
    assert not any(line.startswith("  changed  ") for line in lines), lines
    with pytest.raises(image_module.BuildPlanError, match=rf"app/Dockerfile line 1: # syntax={ref} has no digest, "
                                                          r"and remoteInputs is pinned; fix: write it as"):
        image_module.plan_builds(settings_for(root, remote_inputs="pinned"))
    absent = make_project(tmp_path / "q", f"# syntax={open_registry.server}/frontend/absent:1\nFROM scratch\n")
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings_for(absent))
    assert (f"line 1: # syntax={open_registry.server}/frontend/absent:1 (host {open_registry.server}) cannot be "
            f"resolved for {host_platform_name()}") in str(err.value), str(err.value)
    assert "check the reference for a typo, or mirror the frontend image into the stack's registry" in str(err.value)
