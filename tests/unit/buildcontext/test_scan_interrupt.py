"""Ctrl-C while a large context is hashed: a real SIGINT to a subprocess (`cli.explain`, and the real __main__.py
under the test harness, reporting a pulumi.RunError as Pulumi's language host does: its message alone) ends it
within a generous bound, with one line and no traceback, and leaves the stat cache as the last finished run stored.

The context is 24 GiB of sparse files: nothing on disk, but every byte is read and hashed, which takes this machine
about a minute, so an interrupt that waited for the queued hashing would miss the bound by far."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from buildcontext import context_digest
from buildcontext.memo import StatCache, cache_file_for
from tests.harness import PROJECT_ROOT

BOUND = 10.0
"""Seconds from SIGINT to exit: generous against "a second or two", far below the minute the hashing takes."""
SPARSE = (8 << 30, 3)


def _big_context(ctx: Path) -> None:
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "small.txt").write_text("small\n")


def _add_sparse(ctx: Path) -> None:
    size, count = SPARSE
    for i in range(count):
        with open(ctx / f"huge{i}.bin", "wb") as f:
            f.truncate(size)


def _read_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def _interrupt_while_hashing(argv: list[str], cwd: Path) -> tuple[float, str, int]:
    """Start `argv`, wait until it has read 256 MiB (hashing is under way), SIGINT it: (seconds to exit, stderr +
    stdout, exit status)."""
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(cwd)})
    try:
        deadline = time.monotonic() + 120
        while _read_bytes(proc.pid) < 256 << 20:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "hashing never started"
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return time.monotonic() - sent, err + out, proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.timeout(300)
def test_explain_stops_within_moments_in_one_line_and_keeps_the_stat_cache(tmp_path) -> None:
    ctx = tmp_path / "ctx"
    _big_context(ctx)
    context_digest(ctx)  # a finished run stored the stat cache of the small context
    cache = cache_file_for(ctx, ctx / "Dockerfile")
    stored = cache.read_bytes()
    _add_sparse(ctx)
    took, output, status = _interrupt_while_hashing([sys.executable, "-m", "cli.explain", str(ctx)], PROJECT_ROOT)
    assert took < BOUND, f"{took:.1f} s after SIGINT:\n{output}"
    assert "Traceback" not in output and output.strip().count("\n") == 0, output
    assert output.startswith("interrupted (Ctrl-C) while reading the build context"), output
    assert status == 130
    assert cache.read_bytes() == stored, "the stat cache is the last finished run's"
    loaded = StatCache.load(ctx, ctx / "Dockerfile")
    assert loaded.problem is None and loaded.summary is not None
    assert not [p for p in cache.parent.iterdir() if p.name.startswith(".tmp-")]


_PROGRAM = """
import sys
from pathlib import Path

import pulumi

from tests.harness import run_stack

try:
    run_stack("local", {"acr-publish:preflight": "false",
                        "acr-publish:images": [{"name": "web", "context": "big"}]}, project_root=Path(sys.argv[1]))
except pulumi.RunError as err:  # Pulumi's language host prints a RunError as its message alone
    print(f"error: {err}", file=sys.stderr)
    sys.exit(1)
"""


@pytest.mark.timeout(300)
def test_the_program_stops_within_moments_with_one_line(tmp_path) -> None:
    project = tmp_path / "project" / "acr-publish"
    shutil.copytree(PROJECT_ROOT, project, ignore=shutil.ignore_patterns(
        "venv", ".git", "__pycache__", ".pytest_cache", ".hypothesis", "bench", ".local*", ".registry-data"))
    _big_context(project / "big")
    _add_sparse(project / "big")
    took, output, status = _interrupt_while_hashing([sys.executable, "-c", _PROGRAM, str(project)], project)
    assert took < BOUND, f"{took:.1f} s after SIGINT:\n{output}"
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert lines and lines[0].startswith("error: interrupted (Ctrl-C) while reading the build context"), output
    assert status == 1
