"""The sample app's base image, made locally: no registry is reachable to pull one from.

Owns `make_base_image` (the root file system of scripts/local_base.py, around Debian's statically linked busybox,
loaded with `docker import`) and the session fixture `base_image` that yields its name for the
Dockerfile's `BASE_IMAGE` build arg. BuildKit's docker driver resolves `FROM <that name>` from the engine's own
image store, so the build never contacts a registry.
"""
from __future__ import annotations

import os
import platform
import secrets
import subprocess
from typing import Iterator

import pytest

from scripts.local_base import BUSYBOX, is_static_elf, root_filesystem_tar

BASE_REPOSITORY = "acr-publish-e2e/busybox"
# `docker import` records the engine's architecture; the stacks build linux/amd64, so the engine must be amd64.
ENGINE_ARCHES = {"x86_64", "amd64"}


def session_image_name() -> str:
    """A name no other test session on this engine uses: sessions may run at the same time and remove theirs."""
    return f"{BASE_REPOSITORY}:session-{os.getpid()}-{secrets.token_hex(3)}"


def make_base_image(docker_cli: str, name: str) -> str:
    """`docker import` the busybox root file system as `name`; returns `name`."""
    subprocess.run(
        [docker_cli, "import", "--change", "CMD [\"sh\"]", "-", name],
        input=root_filesystem_tar(), capture_output=True, check=True, timeout=120,
    )
    return name


def _base_image_problem(docker_cli: str) -> str | None:
    if not os.path.exists(BUSYBOX):
        return f"{BUSYBOX} is missing: install Debian's busybox-static (.ci/provision-docker.sh does)"
    if not is_static_elf(BUSYBOX):
        return f"{BUSYBOX} is dynamically linked and would not run inside an empty image: install busybox-static"
    arch = subprocess.run([docker_cli, "info", "--format", "{{.Architecture}}"], capture_output=True, text=True,
                          timeout=30).stdout.strip()
    if arch not in ENGINE_ARCHES:
        return (f"the Docker engine runs on {arch or 'an unknown architecture'} ({platform.machine()} here); the "
                "stacks build linux/amd64 and the base image is made from this machine's busybox, so the e2e suite "
                "needs an amd64 engine")
    return None


@pytest.fixture(scope="session")
def base_image(docker_engine: str) -> Iterator[str]:
    """Name of the locally made base image (for BASE_IMAGE); removed again at the end of the session."""
    problem = _base_image_problem(docker_engine)
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    name = make_base_image(docker_engine, session_image_name())
    yield name
    subprocess.run([docker_engine, "image", "rm", name], capture_output=True, timeout=60)


__all__ = ["BASE_REPOSITORY", "base_image", "is_static_elf", "make_base_image", "root_filesystem_tar",
           "session_image_name"]
