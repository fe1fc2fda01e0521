"""Where the project is, and where a context or Dockerfile setting points.

`repository_root` is the git work tree holding the project; `locate` resolves a project-relative path (symlinks
followed) and refuses one that leaves that repository, is too long for a file system, or is not of the kind wanted.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from components.config.shown import shown, shown_path

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
"""The directory holding Pulumi.yaml."""
NAME_MAX = 255
"""Bytes in one path component on Linux (and most file systems Docker runs on)."""
PATH_MAX = 4096


def repository_root(project_root: Path) -> Path:
    """The repository that holds the project: the git work tree containing Pulumi.yaml (the nearest directory up
    with a `.git` directory holding HEAD, or a `.git` file whose gitdir exists, as a worktree or submodule has),
    else the project directory itself.

    Build contexts and Dockerfiles must resolve inside it, so a project in a monorepo subfolder may build from
    `../common/app`, while nothing can send or read files from elsewhere on the machine.
    """
    start = project_root.resolve()
    for directory in (start, *start.parents):
        if _is_git_marker(directory / ".git"):
            return directory
    return start


def _is_git_marker(git: Path) -> bool:
    """Whether `git` makes its directory a git work tree: a `.git` directory holding HEAD, or a `.git` file whose
    `gitdir:` line names an existing directory (relative to the file's directory, as git reads it). Any other
    `.git` (an empty file, a dangling gitdir, a stray one in /tmp) would widen the allowed root, so it counts for
    nothing."""
    try:
        mode = git.lstat().st_mode
        if stat.S_ISDIR(mode):
            return _is_git_directory(git)
        if not stat.S_ISREG(mode):
            return False
        with git.open("rb") as handle:
            first = handle.read(4096).split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    except OSError:
        return False
    if not first.startswith("gitdir:"):
        return False
    target = first[len("gitdir:"):].strip()
    return bool(target) and _is_git_directory(git.parent / target)


def _is_git_directory(path: Path) -> bool:
    """Git's own test of a repository directory (setup.c is_git_directory): a HEAD file, and objects/ and refs/
    directories (a worktree's gitdir has a commondir file pointing at the shared objects/ and refs/ instead)."""
    try:
        if not (path / "HEAD").is_file():
            return False
        common = path
        if (path / "commondir").is_file():
            common = path / (path / "commondir").read_text(encoding="utf-8", errors="replace").strip()
        return (common / "objects").is_dir() and (common / "refs").is_dir()
    except OSError:
        return False


class Located:
    """Where a context or Dockerfile setting points: its project-relative POSIX path and resolved location, or the
    rule it breaks (`missing` when nothing exists there)."""

    def __init__(self, relative: str | None = None, resolved: Path | None = None, rule: str | None = None,
                 missing: bool = False):
        self.relative, self.resolved, self.rule, self.missing = relative, resolved, rule, missing


def locate(value: Any, root: Path, repo: Path, *, want_dir: bool) -> Located:
    """Resolve a project-relative path (symlinks followed) and check it stays inside the repository `repo`.

    Checks lengths before touching the file system, so an over-long name is a rule broken, not an OSError.
    """
    kind = "directory" if want_dir else "file"
    if not isinstance(value, str) or not value.strip():
        return Located(rule="it must be a non-empty path relative to the project root")
    if "\0" in value:
        return Located(rule="it contains a NUL character, which no file name can hold; remove it")
    try:
        encoded = os.fsencode(value)
    except UnicodeEncodeError:
        return Located(rule="it is not valid text for a file name (an unpaired surrogate escape); retype the path")
    for part in value.split("/"):
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            return Located(rule=f"its component {shown(part)} is {size} bytes, and a file name is at most "
                                 f"{NAME_MAX} bytes, so nothing can exist there; shorten it")
    if len(encoded) > PATH_MAX:
        return Located(rule=f"it is {len(encoded)} bytes, and a path is at most {PATH_MAX} bytes; shorten it")
    p = Path(value)
    if p.is_absolute():
        return Located(rule="paths are relative to the project root so every machine computes the same tag; write "
                             "it relative, e.g. app")
    full = root / p
    try:
        resolved = full.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        return Located(rule=f"no {kind} {shown_path(full)} exists; paths are relative to the project root "
                             f"{shown_path(root)}", missing=True)
    except RuntimeError:  # Python 3.11's report of a symlink loop
        return Located(rule="it cannot be resolved: a symlink on the way loops; fix or remove the link")
    except OSError as err:
        return Located(rule=f"it cannot be resolved ({err.strerror or type(err).__name__}); check the path")
    if not resolved.is_relative_to(repo):
        lexical = Path(os.path.normpath(full))
        via = ", through a symlink on the way" if lexical.is_relative_to(repo) else ""
        return Located(rule=(
            f"it resolves to {shown_path(resolved)}, outside the repository that holds the project "
            f"({shown_path(repo)}){via}; the build would {'send' if want_dir else 'read'} files from elsewhere on "
            f"this machine; point it at a {kind} inside {shown_path(repo)}, or move what the build needs into the "
            "repository"
        ))
    try:
        mode = resolved.stat().st_mode
    except OSError as err:
        return Located(rule=f"{shown_path(resolved)} cannot be examined ({err.strerror or type(err).__name__})")
    ok = stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode)
    if not ok:
        actual = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        return Located(rule=f"{shown_path(resolved)} is {actual}, and it must be a {'directory' if want_dir else 'regular file'}")
    return Located(relative=p.as_posix(), resolved=resolved)
