"""A registry layer-cache sample and an engine emptied of it, for the cacheFrom e2e test and bench/cache_bench.py.

`write_sample` makes a build context whose Dockerfile has a slow dependency stage (it waits `dep_seconds`, standing
in for a package download or compile, and writes ~16 MB copied from the local busybox binary, so nothing is fetched)
and a small app layer. A `token` is in every stage name (so every BuildKit cache record of the sample says so in its
description) and in every file and command (cache keys ignore stage names: without it two samples would share
records). `empty_engine` removes the given images (by name and id) and exactly those cache records (by
id, children first): the engine then holds neither the stack's images nor their build cache, while the other
engineers' images and cache on the shared engine stay. `step_cached` reads BuildKit's plain progress output.
"""
from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

__all__ = ["DEP_STEP", "cache_records", "empty_engine", "new_token", "step_cached", "write_sample"]

# The dependency step's command, as BuildKit shows it in the progress output.
DEP_STEP = "RUN sleep"


def new_token() -> str:
    """A stage-name-safe token no other build on the engine uses."""
    return f"lc{secrets.token_hex(5)}"


def write_sample(dest: Path, token: str, dep_seconds: int) -> Path:
    """The sample context under `dest`: Dockerfile, deps/ (for the dependency stage), app/ (the changing part)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "Dockerfile").write_text(
        "ARG BASE_IMAGE\n"
        f"FROM ${{BASE_IMAGE}} AS deps-{token}\n"
        "COPY deps/requirements.txt /opt/deps/requirements.txt\n"
        "# The slow dependency layer: a wait standing in for a download or compile, then ~16 MB of files.\n"
        f"RUN sleep {int(dep_seconds)} && echo {token} > /opt/deps/build-id"
        " && for i in 1 2 3 4 5 6 7 8; do cat /bin/busybox > /opt/deps/lib$i.so; done\n"
        f"FROM deps-{token} AS app-{token}\n"
        "COPY app/ /srv/app/\n"
        'CMD ["cat", "/srv/app/main.txt"]\n'
    )
    (dest / "deps").mkdir(exist_ok=True)
    (dest / "deps" / "requirements.txt").write_text(f"slowlib==1.0  # {token}\n")
    (dest / "app").mkdir(exist_ok=True)
    (dest / "app" / "main.txt").write_text(f"version 1 of {token}\n")
    return dest


def _docker(docker_cli: str, *args: str, check: bool = True) -> str:
    proc = subprocess.run([docker_cli, *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def cache_records(docker_cli: str, token: str) -> list[dict[str, str]]:
    """The build cache records whose description names `token` (`docker buildx du --verbose`, one block each)."""
    records = []
    for block in _docker(docker_cli, "buildx", "du", "--verbose").strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if token in fields.get("Description", ""):
            records.append(fields)
    return records


def empty_engine(docker_cli: str, token: str, references: list[str]) -> None:
    """Remove `references` (image names or ids) and every build cache record of the sample's `token`.

    Records are pruned by id, a record before its parent (BuildKit keeps a parent while a child needs it);
    raises RuntimeError when a record survives.
    """
    for reference in references:
        _docker(docker_cli, "image", "rm", "--force", reference, check=False)
    records = cache_records(docker_cli, token)
    for _ in range(len(records) + 1):
        if not records:
            return
        parents = {r.get("Parent") for r in records}
        for record in records:
            if record["ID"] not in parents:
                _docker(docker_cli, "buildx", "prune", "--force", "--all", "--filter", f"id={record['ID']}")
        records = cache_records(docker_cli, token)
    if records:
        raise RuntimeError(f"build cache records of {token} survived pruning: {[r['ID'] for r in records]}")


def step_cached(log: str, step: str) -> bool | None:
    """Whether BuildKit reported the build step whose command contains `step` as CACHED; None if it never ran."""
    numbers = re.findall(rf"^#(\d+) \[[^\]]*\] {re.escape(step)}", log, flags=re.MULTILINE)
    if not numbers:
        return None
    return any(re.search(rf"^#{n} CACHED$", log, flags=re.MULTILINE) for n in numbers)
