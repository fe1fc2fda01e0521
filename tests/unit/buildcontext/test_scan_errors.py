"""A context that changes or cannot be read while it is planned gives one message, never a traceback: a file or
directory that vanishes (or changes kind) between the walk and its read makes the scan start again, and a context
that keeps changing is one line; an unreadable file or directory is one line naming it; both reach the engine as a
build-plan problem of the image (a pulumi.RunError, printed without a traceback). A Dockerfile ending in a lone `\\`
with a target is a configuration problem for the program, `cli.explain` and `cli.ram`."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from buildcontext import ContextScan, context_digest, hashing
from buildcontext.context import ContextReadError


def _context(root: Path, n: int = 30) -> Path:
    ctx = root / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    for i in range(n):
        (ctx / ("sub" if i % 2 else "") / f"f{i}.txt").write_text(f"file {i}\n")
    return ctx


@pytest.mark.parametrize("victim", ["f0.txt", "sub/f1.txt"])
@pytest.mark.parametrize("how", ["delete", "fifo", "symlink", "directory"])
def test_a_file_that_changes_between_walk_and_read_is_rescanned(tmp_path, monkeypatch, victim, how) -> None:
    ctx = _context(tmp_path)
    real = hashing.hash_files
    calls = []

    def racing(misses, trust_before_ns):
        calls.append(1)
        if len(calls) == 1:  # the first scan's walk listed it; now it goes away or changes kind
            target = ctx / victim
            target.unlink()
            if how == "fifo":
                os.mkfifo(target)
            elif how == "symlink":
                target.symlink_to("elsewhere")
            elif how == "directory":
                target.mkdir()
        return real(misses, trust_before_ns)

    monkeypatch.setattr("buildcontext.context.hash_files", racing)
    got = context_digest(ctx, cache=False)
    assert len(calls) == 2, "one rescan"
    assert got == context_digest(ctx, cache=False), "the digest is the context's as it is now"


def test_a_directory_removed_during_the_walk_is_rescanned(tmp_path, monkeypatch) -> None:
    ctx = _context(tmp_path)
    real = os.scandir
    removed = []

    def racing(path):
        if isinstance(path, str) and Path(path).name == "sub" and not removed:
            removed.append(1)
            shutil.rmtree(path)
        return real(path)

    monkeypatch.setattr(os, "scandir", racing)
    got = context_digest(ctx, cache=False)
    assert removed and got == context_digest(ctx, cache=False)


def test_a_context_that_never_settles_is_one_line(tmp_path, monkeypatch) -> None:
    ctx = _context(tmp_path)
    real = hashing.hash_files

    def always_racing(misses, trust_before_ns):
        victim = next(path for rel, path, _ in misses if rel != "\0dockerfile")
        os.unlink(victim)  # listed by the walk, gone when read; back for the next walk
        try:
            return real(misses, trust_before_ns)
        finally:
            Path(victim).write_text("recreated\n")

    monkeypatch.setattr("buildcontext.context.hash_files", always_racing)
    with pytest.raises(ContextReadError) as err:
        ContextScan(ctx, cache=False)
    text = str(err.value)
    assert "kept changing while it was read" in text and ".dockerignore" in text and "\n" not in text, text


def test_files_created_and_deleted_during_planning_never_give_a_traceback(tmp_path) -> None:
    """The issue's case with a real writer: a thread creating and deleting files and directories in the context
    while it is scanned again and again; every scan gives a digest or the one-line error."""
    ctx = _context(tmp_path, n=400)
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            d = ctx / f"tmp{i % 7}"
            d.mkdir(exist_ok=True)
            for j in range(20):
                (d / f"t{j}").write_text("x" * (i % 50))
            shutil.rmtree(d, ignore_errors=True)
            (ctx / f"swap{i % 5}.tmp").write_text("y")
            (ctx / f"swap{(i + 2) % 5}.tmp").unlink(missing_ok=True)
            i += 1

    writer = threading.Thread(target=churn, daemon=True)
    writer.start()
    outcomes = []
    try:
        for _ in range(25):
            try:
                with ContextScan(ctx) as scan:
                    outcomes.append(scan.digest())
            except ContextReadError as err:
                assert "\n" not in str(err)
                outcomes.append("changing")
    finally:
        stop.set()
        writer.join(timeout=30)
    assert len(outcomes) == 25


def _refuse(monkeypatch, name: str) -> None:
    """Tests run as root, which reads anything whatever its mode: the open or listing is made to refuse."""
    real_open, real_scandir = os.open, os.scandir

    def opening(path, *args, **kwargs):
        if os.path.basename(path) == name:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    def scanning(path):
        if isinstance(path, str) and os.path.basename(path) == name:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "scandir", scanning)


@pytest.mark.parametrize("name", ["f0.txt", "sub", "f3.txt"])
def test_an_unreadable_file_or_directory_is_one_clear_error(tmp_path, monkeypatch, name) -> None:
    ctx = _context(tmp_path)
    (ctx / "f3.txt").write_bytes(b"\0" * (hashing.TREE_CHUNK + 10))  # a large file: read in chunks on the pool
    _refuse(monkeypatch, name)
    with pytest.raises(ContextReadError) as err:
        context_digest(ctx, cache=False)
    text = str(err.value)
    assert f"'{name}'" in text and "Permission denied" in text and "exclude it in .dockerignore" in text, text
    assert "\n" not in text and "[Errno" not in text, text


LONE_BACKSLASH = ["FROM scratch AS web\nCOPY . /\n\\", "FROM scratch AS web\n\\\n", "FROM scratch AS web\n  \\  \n",
                  "# escape=`\nFROM scratch AS web\n`"]


@pytest.mark.parametrize("cli", ["cli.explain --stack local --image web", "cli.ram local"])
@pytest.mark.parametrize("text", LONE_BACKSLASH[:2])
def test_the_clis_report_a_lone_continuation_in_one_line(project, cli, text) -> None:
    (project / "app" / "Dockerfile").write_text(text)
    proc = subprocess.run([sys.executable, "-m", *cli.split()], cwd=project, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(project)})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "unknown instruction" in proc.stderr, proc.stderr
