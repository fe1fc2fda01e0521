"""`python -m cli.audit` refusals that need no registry: each is one `error:` line, exit status 2, no traceback."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.harness import PROJECT_ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.audit", *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args,expected", [
    ((), "give an image reference"),
    (("web:1",), "is not <registry host[:port]>/<repository>:<tag>"),
    (("127.0.0.1:5000/demo/web",), "give the registry host, the repository and a tag or digest"),
    (("127.0.0.1:5000/demo/web@sha256:abc",), "is not <registry host[:port]>/<repository>:<tag>"),
    (("127.0.0.1:5000/demo/web:1", "--stack", "local", "--image", "web"), "give either an image reference"),
    (("--stack", "local"), "give either an image reference"),
    (("--stack", "dev", "--image", "web"), "publishes to an enterprise registry"),
    (("--stack", "local-release", "--image", "web"), "promotes its images; give the image reference"),
    (("--stack", "local", "--image", "nope"), "has no image 'nope' (its images: web, worker)"),
    (("--stack", "../x", "--image", "web"), "stack name '../x' is invalid"),
    (("127.0.0.1:5000/demo/web:1", "--max-wasted-bytes", "-1"), "--max-wasted-bytes -1 is not a number of 0"),
    (("127.0.0.1:5000/demo/web:1", "--max-wasted-percent", "nan"), "--max-wasted-percent nan is not a number of 0"),
    (("127.0.0.1:5000/demo/web:1", "--max-entries", "-5"), "--max-entries -5 is not a number of 0"),
])
def test_refusals(args, expected):
    proc = run(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr and proc.stderr.startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_progress_is_written_to_stderr_only_for_images_over_100_mb(capsys, monkeypatch):
    """The progress line: on stderr, for layers totalling more than 100 MB, at most once a second plus the end."""
    from cli import audit

    clock = iter([10.0, 10.2, 11.5, 11.6])
    monkeypatch.setattr(audit.time, "monotonic", lambda: next(clock))
    small = audit._Progress()
    small(50_000_000, audit.PROGRESS_FROM)
    assert capsys.readouterr() == ("", "")
    big = audit._Progress()
    total = 300_000_000
    for done in (10_000_000, 20_000_000, 150_000_000, total):
        big(done, total)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 3, lines  # 10.0 (first), 11.5 (a second later), the end; 10.2 is within the second
    assert lines[-1].startswith("audit: ") and lines[-1].endswith("(100%)"), lines
