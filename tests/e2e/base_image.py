"""The sample app's base image, made locally: no registry is reachable to pull one from.

Owns `make_base_image` (a root file system around Debian's statically linked busybox, written as a tar with
`tarfile` and loaded with `docker import`) and the session fixture `base_image` that yields its name for the
Dockerfile's `BASE_IMAGE` build arg. BuildKit's docker driver resolves `FROM <that name>` from the engine's own
image store, so the build never contacts a registry.
"""
from __future__ import annotations

import io
import os
import platform
import secrets
import subprocess
import tarfile
from typing import Iterator

import pytest

BASE_REPOSITORY = "acr-publish-e2e/busybox"
BUSYBOX = "/bin/busybox"
# What app/Dockerfile, its health checks, the CGI script and worker.sh call, plus `id` for debugging by hand.
APPLETS = ("sh", "httpd", "wget", "date", "sleep", "cat", "test", "id", "printf", "echo", "env", "ls")
APP_UID = 10001
# `docker import` records the engine's architecture; the stacks build linux/amd64, so the engine must be amd64.
ENGINE_ARCHES = {"x86_64", "amd64"}


def is_static_elf(path: str) -> bool:
    """True when `path` is an ELF executable without a program interpreter (PT_INTERP), i.e. statically linked."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        is64 = head[4] == 2
        order = "little" if head[5] == 1 else "big"
        if is64:
            phoff, phentsize, phnum = (int.from_bytes(head[32:40], order), int.from_bytes(head[54:56], order),
                                       int.from_bytes(head[56:58], order))
        else:
            phoff, phentsize, phnum = (int.from_bytes(head[28:32], order), int.from_bytes(head[42:44], order),
                                       int.from_bytes(head[44:46], order))
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(int.from_bytes(table[i * phentsize:i * phentsize + 4], order) != 3 for i in range(phnum))


def root_filesystem_tar(busybox: str = BUSYBOX) -> bytes:
    """A minimal root file system: /bin/busybox with applet symlinks, /tmp (1777), /etc/passwd and /etc/group.

    Owners are numeric root and mtimes fixed, so the tar is the same on every machine with the same busybox.
    """
    applets = set(subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split())
    missing = [a for a in APPLETS if a not in applets]
    if missing:
        raise RuntimeError(f"{busybox} lacks the applets {missing} the sample app needs")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, 0, 0, 0
            info.linkname = link
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        for directory in ("bin", "etc", "srv"):
            add(directory, tarfile.DIRTYPE, 0o755)
        add("tmp", tarfile.DIRTYPE, 0o1777)  # the worker (uid 10001) writes its heartbeat there
        with open(busybox, "rb") as f:
            add("bin/busybox", tarfile.REGTYPE, 0o755, f.read())
        for applet in APPLETS:
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644,
            f"root:x:0:0:root:/root:/bin/sh\napp:x:{APP_UID}:{APP_UID}:app:/srv:/bin/sh\n".encode())
        add("etc/group", tarfile.REGTYPE, 0o644, f"root:x:0:\napp:x:{APP_UID}:\n".encode())
    return buffer.getvalue()


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
