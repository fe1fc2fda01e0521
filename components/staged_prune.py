"""The staged, pinned Dockerfiles (components/image.py writes them, one directory per content under
`.acr-publish/pinned/<stack>/<image>/<hash>/`): kept out of build contexts (`staged_dir_problem`, which planning and
`cli.explain --stack` share) and pruned, so that they do not accumulate forever.

The rule: a directory goes when its Dockerfile (or, without one, the directory itself) was last written or reused
more than `KEEP_S` ago and this run does not use it. A plan that reuses a staged Dockerfile touches it, so a file
any plan (another stack's `pulumi up` on the same checkout included) took within `KEEP_S` stays; one `pulumi up`
builds long before that. A directory is first renamed aside, then checked again: one a plan touched in between is
put back. Each run examines at most `SCAN_LIMIT` entries and removes at most `REMOVE_LIMIT` directories; a failure to
remove one (permissions, a file held open elsewhere) leaves it for a later run and never fails the plan.
"""
from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from buildcontext.dockerignore import excludes_whole, ignore_file_for
from buildcontext.printable import escaped
from buildcontext.sensitive import dockerignore_escape
from components.config.schema import ImageSettings, Settings

PINNED_DIR = ".acr-publish/pinned"
KEEP_S = 7 * 24 * 3600.0
"""How long a staged Dockerfile stays after it was last written or reused."""
SCAN_LIMIT = 2000
"""Directory entries examined per run at most."""
REMOVE_LIMIT = 64
"""Staged directories removed per run at most."""
ASIDE_PREFIX = ".pruning-"


def _age_mark(directory: Path) -> float:
    """When the staged directory was last written or reused: its Dockerfile's mtime, else its own."""
    try:
        return (directory / "Dockerfile").stat().st_mtime
    except FileNotFoundError:
        return directory.stat().st_mtime


def _entries(pinned: Path) -> Iterator[Path]:
    """`<stack>/<image>/<hash>` directories (and `.pruning-*` leftovers of an interrupted prune), at most
    SCAN_LIMIT entries examined."""
    examined = 0

    def children(path: Path) -> list[Path]:
        nonlocal examined
        found: list[Path] = []
        try:
            with os.scandir(path) as listing:
                for entry in listing:
                    examined += 1
                    if examined > SCAN_LIMIT:
                        break
                    if entry.is_dir(follow_symlinks=False):
                        found.append(Path(entry.path))
        except OSError:
            pass
        return found

    for stack in children(pinned):
        for image in children(stack):
            yield from children(image)


def prune(pinned: Path, in_use: set[Path], now: float | None = None) -> list[Path]:
    """Remove the staged directories under `pinned` older than KEEP_S, except those in `in_use`; the removed ones."""
    cutoff = (time.time() if now is None else now) - KEEP_S
    removed: list[Path] = []
    keep = {Path(os.path.realpath(p)) for p in in_use}
    for directory in _entries(pinned):
        if len(removed) >= REMOVE_LIMIT:
            break
        try:
            if Path(os.path.realpath(directory)) in keep or _age_mark(directory) >= cutoff:
                continue
            aside = directory.with_name(f"{ASIDE_PREFIX}{secrets.token_hex(6)}")
            if directory.name.startswith(ASIDE_PREFIX):
                aside = directory  # left by an interrupted prune: old, no plan names it
            else:
                os.rename(directory, aside)
                if _age_mark(aside) >= cutoff:  # reused by a plan between the check and the rename: put back
                    try:
                        os.rename(aside, directory)
                        continue
                    except OSError:
                        pass  # that plan staged it anew meanwhile: the copy aside is not needed
            shutil.rmtree(aside)
            removed.append(directory)
        except OSError:
            continue  # left for a later run
    return removed


def staged_dir_problem(settings: Settings, image: ImageSettings) -> str | None:
    """The staged Dockerfiles' directory inside the image's context, and not excluded whole by the ignore file in
    effect there: the build would send them (and the next run's tag would count them). Decided from the paths,
    before anything is staged, so a first run is refused too."""
    context = Path(os.path.realpath(settings.path(image.context)))
    staged = Path(os.path.realpath(settings.path(PINNED_DIR.split("/")[0])))
    if not staged.is_relative_to(context) or staged == context:
        return None
    inside = staged.relative_to(context).as_posix()
    dockerfile = settings.path(image.dockerfile)
    if excludes_whole(context, dockerfile, inside):
        return None
    ignore = ignore_file_for(settings.path(image.context), dockerfile) or settings.path(image.context) / ".dockerignore"
    return (f"the context {escaped(image.context)} holds {escaped(inside)}/, where acr-publish stages the pinned "
            "Dockerfiles, and its ignore file does not exclude it, so the build would send them; add the line "
            f"{dockerignore_escape(inside)}/ to {escaped(os.path.relpath(ignore, settings.project_root))} (with no "
            "'!' exception re-including anything in it)")
