"""End to end: the real `__main__.py` publishes the sample app to a real registry through a real Docker engine.

The local stack (stacks/Pulumi.local.yaml, pointed at a `docker-registry` with htpasswd auth on a free loopback port)
runs under Pulumi mocks in which `docker.Image` is carried out for real by tests/e2e/docker_harness.py, the stand-in
for the pulumi-docker provider; the registry preflight is the real one. Each run works on a temporary copy of the
project, so edits never touch the repository. Builds reuse BuildKit's cache, so only the first build of the session
does real work.
"""
from __future__ import annotations

import gc
import json
import secrets
import shutil
import subprocess
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import docker
import pytest
import requests
import yaml

from tests.e2e.base_image import base_image  # noqa: F401  (pytest fixtures are used by name)
from tests.e2e.docker_harness import DockerImageProvider
from tests.e2e.registry import (  # noqa: F401
    RegistryServer,
    registry_binary,
    registry_factory,
)
from tests.harness import PROJECT_ROOT, TEST_SECRET, StackMocks, StackRun, run_stack

PROJECT_FILES = ("__main__.py", "Pulumi.yaml", "components", "stacks", "app")
NAMESPACE = "demo"
IMAGES = ("web", "worker")
APP_ENV = "e2e"
USER = "pusher"
# A second account whose real password is not the stack's: logging in as it with the stack's secret is a wrong password.
OTHER_USER = "deployer"
APP_UID = 10001
WAIT_S = 30.0


# --- fixtures ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:
    """One htpasswd registry for the module; its user's password is the stack's secret (tests.harness.TEST_SECRET)."""
    return registry_factory(username=USER, password=TEST_SECRET,
                            extra_users={OTHER_USER: secrets.token_urlsafe(18)})


@pytest.fixture(scope="module")
def provider(docker_engine: str) -> Iterator[DockerImageProvider]:
    """The pulumi-docker stand-in; its state (what each stack last pushed) lives for the module."""
    images = DockerImageProvider(docker_cli=docker_engine)
    yield images
    images.remove_images()
    images.close()


def copy_project(dest: Path) -> Path:
    """A copy of what `pulumi up` needs (program, components, stacks, app) under `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, dest / name)
    return dest


def local_stack_overrides(server: str, base: str, username: str = USER) -> dict:
    """stacks/Pulumi.local.yaml pointed at `server` with a login, its images built FROM the local `base`."""
    config = yaml.safe_load((PROJECT_ROOT / "stacks" / "Pulumi.local.yaml").read_text())["config"]
    images = [
        {**image, "buildArgs": {**(image.get("buildArgs") or {}), "BASE_IMAGE": base, "APP_ENV": APP_ENV}}
        for image in config["acr-publish:images"]
    ]
    assert [i["name"] for i in images] == list(IMAGES), "the local stack's images changed; update IMAGES"
    return {
        "acr-publish:registry": {**config["acr-publish:registry"], "server": server, "username": username},
        # tests.harness hands `secure:` values to the program as the secret TEST_SECRET, the registry's password.
        "acr-publish:registryPassword": {"secure": "v1:e2e-registry-password"},
        "acr-publish:images": images,
    }


@dataclass
class Publisher:
    """Runs the local stack on a project copy against one registry, with one provider stand-in."""

    registry: RegistryServer
    provider: DockerImageProvider
    base: str

    def run(self, project: Path, stack_name: str, *, server: str | None = None, username: str = USER,
            preview: bool = False) -> StackRun:
        overrides = local_stack_overrides(server or self.registry.server, self.base, username)
        return run_stack("local", overrides, preview=preview, mocks=StackMocks(image_hook=self.provider),
                         project_root=project, stack_name=stack_name)

    def tags(self) -> dict[str, list[str]]:
        return {name: self.registry.list_tags(f"{NAMESPACE}/{name}") for name in IMAGES}


@dataclass
class Published:
    project: Path
    stack_name: str
    run: StackRun
    tags: dict[str, list[str]]


@pytest.fixture(scope="module")
def publisher(registry: RegistryServer, provider: DockerImageProvider, base_image: str) -> Publisher:  # noqa: F811
    return Publisher(registry, provider, base_image)


@pytest.fixture(scope="module")
def published(publisher: Publisher, tmp_path_factory: pytest.TempPathFactory) -> Published:
    """The first `pulumi up` of the module: both images built and pushed."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    run = publisher.run(project, "e2e-first")
    return Published(project, "e2e-first", run, publisher.tags())


def image_output(run: StackRun, name: str) -> dict:
    return run.outputs["images"][name]


def errors_of(call: Callable[[], object], *secrets_: str) -> tuple[str, str]:
    """(type name, message) of the exception `call` raises, after checking no secret is in its message or traceback.

    The exception class is named, not imported: each run imports the components of its own project copy.
    """
    with pytest.raises(Exception) as caught:
        call()
    error = caught.value
    rendered = "".join(traceback.format_exception(error))
    for secret in secrets_:
        assert secret not in str(error), "the error message shows a password"
        assert secret not in rendered, "the traceback shows a password"
    name, message = type(error).__name__, str(error)
    # The traceback's frames keep the failed run's Output futures alive (they hold the same exception); drop them and
    # collect now, so asyncio's "exception was never retrieved" report lands in this test's captured log rather
    # than on stderr at interpreter exit.
    error.__traceback__ = None
    del error, caught
    gc.collect()
    return name, message


# --- the published images ----------------------------------------------------------------------------------------

def test_each_image_is_built_with_exactly_its_inputs(published: Published, provider: DockerImageProvider,
                                                     base_image: str) -> None:  # noqa: F811
    builds = {b.resource: b for b in provider.builds if b.stack == published.stack_name}
    assert set(builds) == {f"{name}-image" for name in IMAGES}
    for name in IMAGES:
        build = builds[f"{name}-image"]
        assert build.context == published.project / "app"
        assert build.dockerfile == published.project / "app" / "Dockerfile"
        assert build.target == name
        assert build.platform == "linux/amd64"
        assert build.args == {"APP_ENV": APP_ENV, "BASE_IMAGE": base_image}
        assert build.image_name == image_output(published.run, name)["imageName"]
        assert not build.preview


def test_manifest_is_in_the_registry_at_the_content_tag_with_the_exported_digest(
        published: Published, registry: RegistryServer) -> None:
    assert published.run.outputs["registry"] == registry.server
    for name in IMAGES:
        out = image_output(published.run, name)
        repository = f"{registry.server}/{NAMESPACE}/{name}"
        assert out["repository"] == repository
        assert out["tag"].startswith("ctx-") and out["imageName"] == f"{repository}:{out['tag']}"
        assert published.tags[name] == [out["tag"]], f"{repository}: the registry holds {published.tags[name]}"
        digest = registry.manifest_digest(f"{NAMESPACE}/{name}", out["tag"])
        assert digest is not None and digest.startswith("sha256:")
        assert out["ref"] == f"{repository}@{digest}", f"exported ref {out['ref']} != registry digest {digest}"
    # web and worker are different targets: different images, even from one context.
    web_digest, worker_digest = (image_output(published.run, n)["ref"].split("@")[1] for n in IMAGES)
    assert web_digest != worker_digest


class Container:
    """One `docker run -d` of a pushed ref, pulled back from the registry first; removed on exit."""

    def __init__(self, docker_cli: str, registry: RegistryServer, image: dict, *run_args: str):
        self.cli, self.registry, self.run_args = docker_cli, registry, run_args
        self.image_name, self.ref = image["imageName"], image["ref"]
        self.id = ""

    def __enter__(self) -> "Container":
        client = docker.from_env()
        try:
            # Forget the locally built copy (its tag and the digest reference the push added), so what runs is what
            # the registry serves for the digest. Only these references are removed: other test sessions may share
            # the engine.
            for reference in (self.image_name, self.ref):
                try:
                    client.images.remove(reference)
                except docker.errors.ImageNotFound:
                    pass
            with pytest.raises(docker.errors.ImageNotFound):
                client.images.get(self.ref)
            client.images.pull(self.ref, auth_config={"username": self.registry.username,
                                                      "password": self.registry.password})
        finally:
            client.close()
        self.id = self.docker("run", "-d", *self.run_args, self.ref).strip()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.id:
            subprocess.run([self.cli, "rm", "--force", self.id], capture_output=True, timeout=60)
        # The pulled copy carries only its digest reference, which DockerImageProvider.remove_images does not know.
        subprocess.run([self.cli, "image", "rm", self.ref], capture_output=True, timeout=60)

    def docker(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def until(self, what: str, probe: Callable[[], object]) -> object:
        """Poll `probe` until it returns a truthy value; fail with the container's log after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = probe()
                if last:
                    return last
            except (requests.RequestException, AssertionError) as exc:
                last = exc
            time.sleep(0.2)
        logs = self.docker("logs", self.id, check=False)
        raise AssertionError(f"{self.ref}: {what} did not happen within {WAIT_S}s (last: {last!r}); logs:\n{logs}")

    def process_uid(self) -> str:
        status = self.docker("exec", self.id, "cat", "/proc/1/status")
        return next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))


def test_pushed_web_image_runs_and_answers(published: Published, registry: RegistryServer,
                                           docker_engine: str) -> None:
    with Container(docker_engine, registry, image_output(published.run, "web"), "-p", "127.0.0.1::8080") as web:
        port = web.docker("port", web.id, "8080/tcp").splitlines()[0].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        health = web.until("GET /healthz", lambda: requests.get(f"{base}/healthz", timeout=2))
        assert health.status_code == 200 and health.text.strip() == "ok"
        info = requests.get(f"{base}/cgi-bin/info", timeout=5)
        assert info.status_code == 200, info.text
        assert info.headers["Content-Type"].startswith("application/json")
        assert json.loads(info.text) == {"service": "web", "env": APP_ENV, "version": "0.0.0"}
        assert web.process_uid() == str(APP_UID), "httpd must not run as root"


def test_pushed_worker_image_starts(published: Published, registry: RegistryServer, docker_engine: str) -> None:
    with Container(docker_engine, registry, image_output(published.run, "worker")) as worker:
        worker.until("the first heartbeat",
                     lambda: worker.docker("exec", worker.id, "cat", "/tmp/heartbeat", check=False).strip())
        assert f"worker env={APP_ENV} " in worker.docker("logs", worker.id)
        assert worker.docker("inspect", "--format", "{{.State.Running}}", worker.id).strip() == "true"
        assert worker.process_uid() == str(APP_UID), "the worker must not run as root"


# --- what a later run does ---------------------------------------------------------------------------------------

def test_second_run_with_nothing_changed_pushes_nothing(published: Published, publisher: Publisher,
                                                        provider: DockerImageProvider) -> None:
    builds, pushes = len(provider.builds), len(provider.pushes)
    digests = {n: publisher.registry.manifest_digest(f"{NAMESPACE}/{n}", image_output(published.run, n)["tag"])
               for n in IMAGES}
    again = publisher.run(published.project, published.stack_name)
    for name in IMAGES:
        assert image_output(again, name) == image_output(published.run, name)
        assert image_output(again, name)["imageName"] in provider.unchanged[-len(IMAGES):]
        tag = image_output(again, name)["tag"]
        assert publisher.registry.manifest_digest(f"{NAMESPACE}/{name}", tag) == digests[name]
    assert provider.builds[builds:] == [] and provider.pushes[pushes:] == []
    assert publisher.tags() == published.tags


def baseline(publisher: Publisher, tmp_path: Path, stack_name: str) -> tuple[Path, StackRun]:
    """A fresh project copy published once under its own stack (cached build; same tags as `published`)."""
    project = copy_project(tmp_path / "project")
    return project, publisher.run(project, stack_name)


def test_changing_an_app_file_publishes_a_new_tag(published: Published, publisher: Publisher,
                                                  provider: DockerImageProvider, tmp_path: Path) -> None:
    project, before = baseline(publisher, tmp_path, "e2e-app-change")
    tags_before = publisher.tags()
    pushes = len(provider.pushes)
    index = project / "app" / "www" / "index.html"
    index.write_text(index.read_text() + "<!-- changed by the e2e suite -->\n")

    after = publisher.run(project, "e2e-app-change")

    pushed = [p.image_name for p in provider.pushes[pushes:]]
    for name in IMAGES:  # both images are built from app/, so both see the new file
        old, new = image_output(before, name), image_output(after, name)
        assert new["tag"] != old["tag"], f"{name}: editing www/index.html kept tag {old['tag']}"
        assert new["imageName"] in pushed
        assert publisher.tags()[name] == sorted(tags_before[name] + [new["tag"]])
        digest = publisher.registry.manifest_digest(f"{NAMESPACE}/{name}", new["tag"])
        assert new["ref"] == f"{new['repository']}@{digest}"
    assert len(pushed) == len(IMAGES)


def test_changing_an_ignored_file_publishes_nothing(published: Published, publisher: Publisher,
                                                    provider: DockerImageProvider, tmp_path: Path) -> None:
    # Another checkout of the same stack: the inputs are project-relative, so only content could make them differ.
    project = copy_project(tmp_path / "project")
    builds, pushes, unchanged = len(provider.builds), len(provider.pushes), len(provider.unchanged)
    tags_before = publisher.tags()
    readme = project / "app" / "README.md"
    ignore_lines = (project / "app" / ".dockerignore").read_text().split()
    assert "*" in ignore_lines, "the premise broke: app/.dockerignore no longer excludes README.md"
    readme.write_text(readme.read_text() + "\nA line the build never sees.\n")

    after = publisher.run(project, published.stack_name)

    for name in IMAGES:
        assert image_output(after, name) == image_output(published.run, name)
    assert sorted(provider.unchanged[unchanged:]) == sorted(image_output(after, n)["imageName"] for n in IMAGES)
    assert provider.builds[builds:] == [] and provider.pushes[pushes:] == []
    assert publisher.tags() == tags_before


@pytest.mark.parametrize(("relative", "content"), [
    ("www/.env", "ALIBABA_CLOUD_ACCESS_KEY_SECRET=fake-e2e-secret-not-real\n"),
    ("www/keys/deploy.pem", "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZSBrZXkgZm9yIHRoZSBlMmUgc3VpdGU=\n"
                            "-----END OPENSSH PRIVATE KEY-----\n"),
], ids=["dotenv", "private-key"])
def test_sensitive_file_in_the_context_is_refused_before_any_build(
        publisher: Publisher, provider: DockerImageProvider, tmp_path: Path, relative: str, content: str) -> None:
    project = copy_project(tmp_path / "project")
    secret_file = project / "app" / relative
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(content)
    tags_before = publisher.tags()
    builds = len(provider.builds)

    error, message = errors_of(lambda: publisher.run(project, "e2e-sensitive"))

    assert error == "BuildPlanError", message
    assert relative in message, f"the error does not name {relative}: {message}"
    assert "fake-e2e-secret-not-real" not in message
    assert provider.builds[builds:] == []
    assert publisher.tags() == tags_before


# --- the preflight stops a run before any build -----------------------------------------------------------------

@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_wrong_password_stops_the_run_at_the_preflight(published: Published, publisher: Publisher,
                                                       provider: DockerImageProvider, preview: bool) -> None:
    builds = len(provider.builds)
    other_password = publisher.registry.extra_users[OTHER_USER]

    error, message = errors_of(
        lambda: publisher.run(published.project, "e2e-wrong-password", username=OTHER_USER, preview=preview),
        TEST_SECRET, other_password,
    )

    assert error == "PreflightError", message
    assert "credentials rejected (401)" in message
    assert f"user '{OTHER_USER}'" in message and publisher.registry.server in message
    assert provider.builds[builds:] == []


def test_stopped_registry_stops_the_run_at_the_preflight(published: Published, publisher: Publisher,
                                                         provider: DockerImageProvider,
                                                         registry_factory: Callable[..., RegistryServer]) -> None:
    stopped = registry_factory(username=USER, password=TEST_SECRET)
    stopped.stop()
    builds = len(provider.builds)

    error, message = errors_of(lambda: publisher.run(published.project, "e2e-stopped", server=stopped.server),
                               TEST_SECRET)

    assert error == "PreflightError", message
    assert f"connection to {stopped.server} refused" in message
    assert "start the local registry" in message
    assert provider.builds[builds:] == []


def test_preview_builds_and_pushes_nothing(published: Published, publisher: Publisher,
                                           provider: DockerImageProvider) -> None:
    builds, pushes = len(provider.builds), len(provider.pushes)
    preview = publisher.run(published.project, "e2e-preview", preview=True)
    for name in IMAGES:
        assert image_output(preview, name)["tag"] == image_output(published.run, name)["tag"]
    assert provider.builds[builds:] == [] and provider.pushes[pushes:] == []
