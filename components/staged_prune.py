"""Pruning the staged, pinned Dockerfiles (components/image.py writes them, one directory per content under
`.acr-publish/pinned/<stack>/<image>/<hash>/`), so that they do not accumulate forever.

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
