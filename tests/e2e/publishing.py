"""Running the local stack end to end: project checkouts, the stack's overrides and a `Publisher` of runs.

Owns what tests/e2e/test_publish.py and tests/e2e/test_no_rebuild.py share: `copy_project` (a copy of the working
tree's files, modes kept), `checkout` (the project's tracked files written as `git checkout` writes them under a
given umask, at any path: "another machine"), `local_stack_overrides` (stacks/Pulumi.local.yaml pointed at a test
registry and the locally made base image) and `Publisher`, which runs the real `__main__.py` under the mocks with a
fresh pulumi-docker stand-in per run (tests/e2e/docker_harness.py), sharing whatever state directory it is given.
The `publisher` fixture needs a module-scoped `registry` fixture from the test module that imports it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.e2e.docker_harness import DockerImageProvider
from tests.e2e.registry import RegistryServer
from tests.harness import IMAGE, ORGANIZATION, PROGRAM_FILES, PROJECT_ROOT, StackMocks, StackRun, run_stack

PROJECT_FILES = (*PROGRAM_FILES, "stacks")
NAMESPACE = "demo"
IMAGES = ("web", "worker")
APP_ENV = "e2e"
USER = "pusher"


def copy_project(dest: Path) -> Path:
    """A copy of what `pulumi up` needs (program, components, stacks, app) under `dest`, modes kept."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, dest / name)
    return dest


def _project_files(names: tuple[str, ...] = PROJECT_FILES) -> list[tuple[int, str]]:
    """(git mode, path) of every file under `names` git tracks or would track (new, not ignored)."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"git {' '.join(args)} failed in {PROJECT_ROOT} ({proc.stderr.strip()}); "
                               "the checkout tests need the project as a git work tree")
        return proc.stdout

    files: dict[str, int] = {}
    for line in git("ls-files", "--stage", "--", *names).splitlines():
        meta, path = line.split("\t", 1)
        files[path] = int(meta.split()[0], 8)
    for path in git("ls-files", "--others", "--exclude-standard", "--", *names).splitlines():
        st = os.lstat(PROJECT_ROOT / path)
        files[path] = 0o120000 if os.path.islink(PROJECT_ROOT / path) else (
            0o100755 if st.st_mode & 0o100 else 0o100644)
    return sorted((mode, path) for path, mode in files.items() if (PROJECT_ROOT / path).exists()
                  or os.path.islink(PROJECT_ROOT / path))


def checkout(dest: Path, umask: int, names: tuple[str, ...] = PROJECT_FILES) -> Path:
    """The project's files written under `dest` as `git checkout` writes them with `umask`.

    Regular files get 0666 & ~umask (0777 & ~umask when git records them executable), directories 0777 & ~umask,
    symlinks their target; contents come from the work tree (so uncommitted edits are tested too), modes only from
    git and the umask, never from the work tree. The process umask is not touched.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for mode, path in _project_files(names):
        target = dest / path
        missing = []
        parent = target.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            directory.mkdir()
            os.chmod(directory, 0o777 & ~umask)
        if mode == 0o120000:
            os.symlink(os.readlink(PROJECT_ROOT / path), target)
            continue
        target.write_bytes((PROJECT_ROOT / path).read_bytes())
        os.chmod(target, (0o777 if mode & 0o111 else 0o666) & ~umask)
    return dest


def local_stack_overrides(server: str, base: str, username: str = USER, namespace: str = NAMESPACE) -> dict:
    """stacks/Pulumi.local.yaml pointed at `server` with a login, its images built FROM the local `base`."""
    config = yaml.safe_load((PROJECT_ROOT / "stacks" / "Pulumi.local.yaml").read_text())["config"]
    # The base is an image of the local engine, in no registry: nothing can resolve it to a registry digest, so these
    # images leave their remote inputs out of the tag (tests/e2e/test_remote_inputs.py resolves bases in registries).
    images = [
        {**image, "buildArgs": {**(image.get("buildArgs") or {}), "BASE_IMAGE": base, "APP_ENV": APP_ENV},
         "remoteInputs": "ignore"}
        for image in config["acr-publish:images"]
    ]
    assert [i["name"] for i in images] == list(IMAGES), "the local stack's images changed; update IMAGES"
    return {
        "acr-publish:registry": {**config["acr-publish:registry"], "server": server, "username": username,
                                 "namespace": namespace},
        # tests.harness hands `secure:` values to the program as the secret TEST_SECRET, the registry's password.
        "acr-publish:registryPassword": {"secure": "v1:e2e-registry-password"},
        "acr-publish:images": images,
    }


@dataclass
class Run:
    """One `pulumi up` (or preview): the program's run and the provider stand-in that carried out its images."""

    stack: StackRun
    provider: DockerImageProvider

    def image(self, name: str) -> dict:
        return self.stack.outputs["images"][name]


@dataclass
class Publisher:
    """Runs the local stack on a project directory against one registry; each run gets its own stand-in."""

    registry: RegistryServer
    base: str
    docker_cli: str
    providers: list[DockerImageProvider] = field(default_factory=list)

    def run(self, project: Path, stack_name: str, state_dir: Path, *, server: str | None = None,
            username: str = USER, namespace: str = NAMESPACE, preview: bool = False,
            config: dict | None = None, index_hook=None) -> Run:
        """`pulumi up` (or `preview`) of stack `stack_name` from `project`, with the stand-in's state in `state_dir`.

        A fresh DockerImageProvider per run: only the state directory carries anything from one run to the next, as
        a backend does between two machines: the stand-in's resource state, and the stack's outputs, which a
        StackReference to the stack reads (`<stack>.outputs.json`). After a successful `up` the resources the
        program no longer declared leave the state (the engine's delete step; the provider's delete touches
        nothing) and its outputs are the stack's last outputs. `config` adds or replaces full config keys;
        `index_hook` carries out the image indexes (tests/e2e/dynamic_engine.py's DynamicEngine: the real provider).
        """
        provider = DockerImageProvider(state_dir, self.docker_cli)
        self.providers.append(provider)
        overrides = {**local_stack_overrides(server or self.registry.server, self.base, username, namespace),
                     **(config or {})}
        outputs_file = Path(state_dir) / f"{stack_name}.outputs.json"
        last = {f"{ORGANIZATION}/acr-publish/{stack_name}": json.loads(outputs_file.read_text())} \
            if outputs_file.exists() else {}
        stack = run_stack("local", overrides, preview=preview,
                          mocks=StackMocks(image_hook=provider, stacks=last, index_hook=index_hook),
                          project_root=project, stack_name=stack_name)
        if not preview:
            provider.end_run(stack_name, {r.name for r in stack.of_type(IMAGE)})
            outputs_file.parent.mkdir(parents=True, exist_ok=True)
            outputs_file.write_text(json.dumps(stack.outputs, sort_keys=True))
        return Run(stack, provider)

    def tags(self, namespace: str = NAMESPACE) -> dict[str, list[str]]:
        return {name: self.registry.list_tags(f"{namespace}/{name}") for name in IMAGES}

    def close(self) -> None:
        """Untag every image the runs built and close their engine clients."""
        for provider in self.providers:
            provider.remove_images()
            provider.close()


@pytest.fixture(scope="module")
def publisher(registry: RegistryServer, base_image: str, docker_engine: str) -> Iterator[Publisher]:
    """A Publisher for the module's `registry`; removes what its runs built at module end."""
    runs = Publisher(registry, base_image, docker_engine)
    yield runs
    runs.close()
