"""A registry layer-cache sample and an engine emptied of it, for the cacheFrom e2e test and bench/cache_bench.py.

`write_sample` makes a build context whose Dockerfile has a slow dependency stage (it waits `dep_seconds`, standing
in for a package download or compile, and writes ~16 MB copied from the local busybox binary, so nothing is fetched)
and a small app layer. A `token` is in every stage name (so the records its builds make say so in their description;
records rebuilt from an image's inline cache are described by the image's history instead, see `sample_records`)
and in every file and command (cache keys ignore stage names: without it two samples would share
records). `empty_engine` removes the given images (by name and id) and the cache records the sample made
(`sample_records`: new since a snapshot taken before the test built, naming the token or linked to one that
does; by id, children first): the engine then holds neither the stack's images nor their build cache, while the
other engineers' images and cache on the shared engine stay. `step_cached` reads BuildKit's plain progress output.
"""
from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

__all__ = ["DEP_STEP", "all_cache_records", "cache_ids", "cache_records", "empty_engine", "new_token",
           "sample_records", "step_cached", "write_sample"]

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


def all_cache_records(docker_cli: str) -> list[dict[str, str]]:
    """Every build cache record of the engine (`docker buildx du --verbose`, one block each), as its fields."""
    records = []
    for block in _docker(docker_cli, "buildx", "du", "--verbose").strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "ID" in fields:
            records.append(fields)
    return records


def cache_ids(docker_cli: str) -> frozenset[str]:
    """The ids of the engine's build cache records now: taken before a test builds, for `empty_engine`."""
    return frozenset(r["ID"] for r in all_cache_records(docker_cli))


def cache_records(docker_cli: str, token: str) -> list[dict[str, str]]:
    """The build cache records whose description names `token`."""
    return [r for r in all_cache_records(docker_cli) if token in r.get("Description", "")]


def sample_records(docker_cli: str, token: str, before: frozenset[str]) -> list[dict[str, str]]:
    """The records the sample's builds made: new since `before`, and naming `token` or linked to one that does
    through `Parent` (either way, transitively, among the new records only).

    A record rebuilt from an image's inline cache is described by the image's history
    (`COPY deps/requirements.txt ... # buildkit`), without the token, and is the parent or child of one that names
    it. New records linked to none are not the sample's to remove: other sessions build on this engine at the same
    time (their records appear in the same window), and the context transfers (`local source for context`) carry no
    description or parent that says whose they are; they hold the context's files, never a layer.
    """
    new = {r["ID"]: r for r in all_cache_records(docker_cli) if r["ID"] not in before}
    ours = {i for i, r in new.items() if token in r.get("Description", "")}
    grown = True
    while grown:
        linked = {i for i, r in new.items() if i not in ours and (r.get("Parent") in ours or any(
            new[o].get("Parent") == i for o in ours))}
        ours |= linked
        grown = bool(linked)
    return [new[i] for i in sorted(ours)]


def empty_engine(docker_cli: str, token: str, references: list[str], before: frozenset[str]) -> None:
    """Remove `references` (image names or ids) and every build cache record the sample made since `before`
    (`sample_records`), by id only: never a prune of the shared engine.

    A record goes before its parent (BuildKit keeps a parent while a child needs it); raises RuntimeError when
    one of those records, or a new record linked to them, survives.
    """
    for reference in references:
        _docker(docker_cli, "image", "rm", "--force", reference, check=False)
    targets = {r["ID"]: r for r in sample_records(docker_cli, token, before)}
    for _ in range(len(targets) + 1):
        present = {r["ID"]: r for r in all_cache_records(docker_cli)}
        left = {i: r for i, r in targets.items() if i in present}
        if not left:
            break
        parents = {present[i].get("Parent") for i in left}
        for record_id in left:
            if record_id not in parents:
                _docker(docker_cli, "buildx", "prune", "--force", "--all", "--filter", f"id={record_id}")
    survivors = sorted({i for i in targets if i in cache_ids(docker_cli)}
                       | {r["ID"] for r in sample_records(docker_cli, token, before)})
    if survivors:
        raise RuntimeError(f"build cache records of {token} survived pruning: {survivors}")


def step_cached(log: str, step: str) -> bool | None:
    """Whether BuildKit reported the build step whose command contains `step` as CACHED; None if it never ran."""
    numbers = re.findall(rf"^#(\d+) \[[^\]]*\] {re.escape(step)}", log, flags=re.MULTILINE)
    if not numbers:
        return None
    return any(re.search(rf"^#{n} CACHED$", log, flags=re.MULTILINE) for n in numbers)
