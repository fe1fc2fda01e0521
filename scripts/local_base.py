"""The sample app's base image, made on this machine from Debian's statically linked busybox.

Owns the root file system (`root_filesystem_tar`: /bin/busybox with the applets the sample app calls, /tmp, a
passwd and group holding the app's user) and `is_static_elf`. `make up` loads it with `docker import` and pushes it
into the local registry as the local stack's base (MIRROR_IMAGE), so the stack builds and resolves its base on this
machine: no registry elsewhere is asked. The e2e tests load the same tar into the engine (tests/e2e/base_image.py).

Standard library only: scripts/up_local.py imports it before the project's virtualenv has its packages.
"""
from __future__ import annotations

import io
import subprocess
import tarfile

BUSYBOX = "/bin/busybox"
# What app/Dockerfile, its health checks, the CGI script and worker.sh call, plus `id` for debugging by hand.
APPLETS = ("sh", "httpd", "wget", "date", "sleep", "cat", "test", "id", "printf", "echo", "env", "ls")
APP_UID = 10001
MIRROR_REPOSITORY = "mirror/busybox"
MIRROR_TAG = "static"
"""stacks/Pulumi.local.yaml builds FROM 127.0.0.1:5000/mirror/busybox:static (its BASE_IMAGE build arg)."""


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
    applets = set(subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True,
                                 timeout=30).stdout.split())
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
