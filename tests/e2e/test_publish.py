"""End to end: the real `__main__.py` publishes the sample app to a real registry through a real Docker engine.

The local stack (stacks/Pulumi.local.yaml, pointed at a `docker-registry` with htpasswd auth on a free loopback port,
behind the ACR tag-immutability emulation of tests/e2e/immutable_proxy.py) runs under Pulumi mocks in which
`docker.Image` is carried out for real by tests/e2e/docker_harness.py, the stand-in for the pulumi-docker provider,
with its state in a file; the registry preflight is the real one. Each run works on a temporary copy of the project,
so edits never touch the repository. Builds reuse BuildKit's cache, so only the first build of the session does
real work.
"""
from __future__ import annotations

import gc
import json
import secrets
import subprocess
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import docker
import pytest
import requests

from tests.e2e.base_image import base_image  # noqa: F401  (pytest fixtures are used by name)
from tests.e2e.publishing import (  # noqa: F401  (publisher: a fixture)
    APP_ENV, IMAGES, NAMESPACE, USER, Publisher, Run, copy_project, publisher,
)
from tests.e2e.registry import (  # noqa: F401
    RegistryServer,
    registry_binary,
    registry_factory,
)
from tests.harness import TEST_SECRET

# A second account whose real password is not the stack's: logging in as it with the stack's secret is a wrong password.
OTHER_USER = "deployer"
APP_UID = 10001
WAIT_S = 30.0


# --- fixtures ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:
    """One htpasswd registry with ACR tag immutability; its user's password is the stack's secret (TEST_SECRET)."""
    return registry_factory(username=USER, password=TEST_SECRET, tag_immutability=True,
                            extra_users={OTHER_USER: secrets.token_urlsafe(18)})


@dataclass
class Published:
    project: Path
    stack_name: str
    state_dir: Path
    run: Run
    tags: dict[str, list[str]]


@pytest.fixture(scope="module")
def published(publisher: Publisher, tmp_path_factory: pytest.TempPathFactory) -> Published:
    """The first `pulumi up` of the module: both images built and pushed."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    state_dir = tmp_path_factory.mktemp("state")
    run = publisher.run(project, "e2e-first", state_dir)
    return Published(project, "e2e-first", state_dir, run, publisher.tags())


def image_output(run: Run, name: str) -> dict:
    return run.image(name)


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

def test_each_image_is_built_with_exactly_its_inputs(published: Published, base_image: str) -> None:  # noqa: F811
    builds = {b.resource: b for b in published.run.provider.builds}
    assert len(builds) == len(published.run.provider.builds), "an image was built twice"
    assert set(builds) == {f"{name}-image" for name in IMAGES}
    for name in IMAGES:
        build = builds[f"{name}-image"]
        assert build.context == published.project / "app"
        assert build.dockerfile == published.project / "app" / "Dockerfile"
        assert build.target == name
        assert build.platform == "linux/amd64"
        assert build.args == {"APP_ENV": APP_ENV, "BASE_IMAGE": base_image, "BUILDKIT_INLINE_CACHE": "1"}
        assert build.image_name == image_output(published.run, name)["imageName"]
        assert not build.preview


def test_manifest_is_in_the_registry_at_the_content_tag_with_the_exported_digest(
        published: Published, registry: RegistryServer) -> None:
    assert published.run.stack.outputs["registry"] == registry.server
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

def test_second_run_with_nothing_changed_pushes_nothing(published: Published, publisher: Publisher) -> None:
    digests = {n: publisher.registry.manifest_digest(f"{NAMESPACE}/{n}", image_output(published.run, n)["tag"])
               for n in IMAGES}
    again = publisher.run(published.project, published.stack_name, published.state_dir)
    for name in IMAGES:
        assert image_output(again, name) == image_output(published.run, name)
        tag = image_output(again, name)["tag"]
        assert publisher.registry.manifest_digest(f"{NAMESPACE}/{name}", tag) == digests[name]
    assert again.provider.builds == [] and again.provider.pushes == []
    assert publisher.tags() == published.tags


def baseline(publisher: Publisher, tmp_path: Path, stack_name: str) -> tuple[Path, Path, Run]:
    """A fresh project copy published once under its own stack and state (same tags as `published`)."""
    project = copy_project(tmp_path / "project")
    return project, tmp_path / "state", publisher.run(project, stack_name, tmp_path / "state")


def test_changing_an_app_file_publishes_a_new_tag(published: Published, publisher: Publisher,
                                                  tmp_path: Path) -> None:
    project, state_dir, before = baseline(publisher, tmp_path, "e2e-app-change")
    tags_before = publisher.tags()
    index = project / "app" / "www" / "index.html"
    index.write_text(index.read_text() + "<!-- changed by the e2e suite -->\n")

    after = publisher.run(project, "e2e-app-change", state_dir)

    pushed = [p.image_name for p in after.provider.pushes]
    for name in IMAGES:  # both images are built from app/, so both see the new file
        old, new = image_output(before, name), image_output(after, name)
        assert new["tag"] != old["tag"], f"{name}: editing www/index.html kept tag {old['tag']}"
        assert new["imageName"] in pushed
        assert publisher.tags()[name] == sorted(tags_before[name] + [new["tag"]])
        digest = publisher.registry.manifest_digest(f"{NAMESPACE}/{name}", new["tag"])
        assert new["ref"] == f"{new['repository']}@{digest}"
    assert len(pushed) == len(IMAGES) and len(after.provider.builds) == len(IMAGES)


def test_changing_an_ignored_file_publishes_nothing(published: Published, publisher: Publisher,
                                                    tmp_path: Path) -> None:
    # Another copy of the same stack's project, modes kept, sharing its state: only the ignored file differs.
    project = copy_project(tmp_path / "project")
    tags_before = publisher.tags()
    readme = project / "app" / "README.md"
    ignore_lines = (project / "app" / ".dockerignore").read_text().split()
    assert "*" in ignore_lines, "the premise broke: app/.dockerignore no longer excludes README.md"
    readme.write_text(readme.read_text() + "\nA line the build never sees.\n")

    after = publisher.run(project, published.stack_name, published.state_dir)

    for name in IMAGES:
        assert image_output(after, name) == image_output(published.run, name)
    assert after.provider.builds == [] and after.provider.pushes == []
    assert publisher.tags() == tags_before


@pytest.mark.parametrize(("relative", "content"), [
    ("www/.env", "ALIBABA_CLOUD_ACCESS_KEY_SECRET=fake-e2e-secret-not-real\n"),
    ("www/keys/deploy.pem", "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZSBrZXkgZm9yIHRoZSBlMmUgc3VpdGU=\n"
                            "-----END OPENSSH PRIVATE KEY-----\n"),
], ids=["dotenv", "private-key"])
def test_sensitive_file_in_the_context_is_refused_before_any_build(
        publisher: Publisher, tmp_path: Path, relative: str, content: str) -> None:
    project = copy_project(tmp_path / "project")
    secret_file = project / "app" / relative
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(content)
    tags_before = publisher.tags()

    error, message = errors_of(lambda: publisher.run(project, "e2e-sensitive", tmp_path / "state"))

    assert error == "BuildPlanError", message
    assert relative in message, f"the error does not name {relative}: {message}"
    assert "fake-e2e-secret-not-real" not in message
    assert publisher.providers[-1].builds == []
    assert publisher.tags() == tags_before


# --- the preflight stops a run before any build -----------------------------------------------------------------

@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_wrong_password_stops_the_run_at_the_preflight(published: Published, publisher: Publisher,
                                                       tmp_path: Path, preview: bool) -> None:
    other_password = publisher.registry.extra_users[OTHER_USER]

    error, message = errors_of(
        lambda: publisher.run(published.project, "e2e-wrong-password", tmp_path, username=OTHER_USER,
                              preview=preview),
        TEST_SECRET, other_password,
    )

    assert error == "RegistryError", message
    assert "credentials rejected (401)" in message
    assert f"user '{OTHER_USER}'" in message and publisher.registry.server in message
    assert publisher.providers[-1].builds == []


def test_stopped_registry_stops_the_run_at_the_preflight(published: Published, publisher: Publisher,
                                                         tmp_path: Path,
                                                         registry_factory: Callable[..., RegistryServer]) -> None:
    stopped = registry_factory(username=USER, password=TEST_SECRET)
    stopped.stop()

    error, message = errors_of(lambda: publisher.run(published.project, "e2e-stopped", tmp_path,
                                                     server=stopped.server),
                               TEST_SECRET)

    assert error == "RegistryError", message
    assert f"connection to {stopped.server} refused" in message
    assert "start the local registry" in message
    assert publisher.providers[-1].builds == []


def test_preview_builds_and_pushes_nothing(published: Published, publisher: Publisher, tmp_path: Path) -> None:
    preview = publisher.run(published.project, "e2e-preview", tmp_path, preview=True)
    for name in IMAGES:
        assert image_output(preview, name)["tag"] == image_output(published.run, name)["tag"]
    assert preview.provider.builds == [] and preview.provider.pushes == []
    assert preview.provider.state("e2e-preview") == {}, "a preview wrote the stack's state"
