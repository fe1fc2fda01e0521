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
