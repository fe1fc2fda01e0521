"""Ask the real engine which files a build context sends.

A case is a small tree plus ignore files. `materialize` writes it to disk; `engine_files` builds
`FROM scratch` + `COPY . /ctx/` with BuildKit (`docker buildx build --output type=tar`) and lists the
regular files and symlinks under `ctx/` in the exported file system; `engine_tree` lists its
directories too. A build spends most of its
time waiting on the engine, so callers may run several at once from a small thread pool.
"""
from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

COPY_ALL_DOCKERFILE = "FROM scratch\nCOPY . /ctx/\n"


@dataclass(frozen=True)
class Link:
    """A symbolic link to `target` (written verbatim, may dangle or point to a directory)."""

    target: str


@dataclass(frozen=True)
class EmptyDir:
    """An empty directory."""


Node = str | bytes | Link | EmptyDir


@dataclass(frozen=True)
class Case:
    """One oracle case.

    tree: relative POSIX path -> file content (str/bytes), Link or EmptyDir; parents are created.
      A name may hold surrogate escapes (os.fsdecode) for bytes that are not valid UTF-8.
    dockerignore: content of <context>/.dockerignore (None: no such file; bytes are written as is).
    dockerfile: None puts the Dockerfile OUTSIDE the context (passed with -f); a relative path
      puts it inside the context at that path (its content is always COPY_ALL_DOCKERFILE).
    dockerfile_ignore: content of <Dockerfile>.dockerignore next to the Dockerfile (None: absent).
    """

    id: str
    tree: Mapping[str, Node]
    dockerignore: str | bytes | None = None
    dockerfile: str | None = None
    dockerfile_ignore: str | None = None
    dockerfile_name: str = "Dockerfile"
    note: str = field(default="", compare=False)


def materialize(case: Case, workdir: Path) -> tuple[Path, Path]:
    """Write the case under `workdir`; return (context, dockerfile)."""
    context = workdir / "ctx"
    context.mkdir(parents=True)
    for rel, node in case.tree.items():
        path = context / rel
        if isinstance(node, EmptyDir):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(node, Link):
            os.symlink(node.target, path)
        elif isinstance(node, bytes):
            path.write_bytes(node)
        else:
            path.write_text(node, encoding="utf-8")
    if isinstance(case.dockerignore, bytes):
        (context / ".dockerignore").write_bytes(case.dockerignore)
    elif case.dockerignore is not None:
        (context / ".dockerignore").write_text(case.dockerignore, encoding="utf-8")
    if case.dockerfile is None:
        dockerfile = workdir / "df" / case.dockerfile_name
    else:
        dockerfile = context / case.dockerfile
    dockerfile.parent.mkdir(parents=True, exist_ok=True)
    dockerfile.write_text(COPY_ALL_DOCKERFILE, encoding="utf-8")
    if case.dockerfile_ignore is not None:
        dockerfile.with_name(dockerfile.name + ".dockerignore").write_text(
            case.dockerfile_ignore, encoding="utf-8")
    return context, dockerfile


class EngineBuildError(RuntimeError):
    """The engine refused the build (for example a malformed .dockerignore pattern)."""


@dataclass(frozen=True)
class EngineTree:
    """What the engine copied under `ctx/`: sorted relative paths (directories without a trailing '/')."""

    files: list[str]
    """Regular files and symlinks."""
    dirs: list[str]
    """Directories (the context root itself excluded)."""


def engine_tree(docker: str, context: Path, dockerfile: Path) -> EngineTree:
    """The files, symlinks and directories (relative to the context) the engine copies."""
    with tempfile.TemporaryDirectory(prefix="oracle-out-") as out:
        tar_path = Path(out) / "fs.tar"
        proc = subprocess.run(
            [docker, "buildx", "build", "-q", "-f", str(dockerfile),
             "--output", f"type=tar,dest={tar_path}", str(context)],
            capture_output=True, text=True, timeout=180,
            # no attestations or git lookups (the context is a temp dir); plain progress keeps stderr readable
            env={**os.environ, "BUILDX_NO_DEFAULT_ATTESTATIONS": "1", "BUILDX_GIT_INFO": "0",
                 "BUILDKIT_PROGRESS": "plain"},
        )
        if proc.returncode != 0:
            raise EngineBuildError(
                f"docker buildx build of {context} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        files, dirs = [], []
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                # "./ctx/a/" and "ctx/a" name the same directory; strip the leading "./" only, so a
                # name starting with a dot keeps it
                name = member.name.removeprefix("./").rstrip("/")
                if not name.startswith("ctx/"):
                    continue
                if member.isfile() or member.issym() or member.islnk():
                    files.append(name[len("ctx/"):])
                elif member.isdir():
                    dirs.append(name[len("ctx/"):])
        return EngineTree(sorted(files), sorted(dirs))


def engine_files(docker: str, context: Path, dockerfile: Path) -> list[str]:
    """Sorted paths (relative to the context) of the regular files and symlinks the engine copies."""
    return engine_tree(docker, context, dockerfile).files
