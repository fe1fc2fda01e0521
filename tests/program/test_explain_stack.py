"""`python -m cli.explain --stack S --image I` shows the tag the real program publishes for the shipped stacks,
and reads the history that run recorded (the same key: project, stack, image)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness import PROJECT_ROOT, run_stack


def explain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.explain", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, env=os.environ.copy(), timeout=120)


@pytest.mark.parametrize("stack,image", [("local", "web"), ("local", "worker"), ("dev", "web")])
def test_explain_prints_the_tag_the_stack_publishes(stack, image, preflight_calls, tmp_path, monkeypatch, capsys):
    # In process: the base image is resolved by tests/conftest.py's recorder (a subprocess would dial docker.io).
    from cli import explain as explain_cli

    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    tag = run_stack(stack).outputs["images"][image]["tag"]
    capsys.readouterr()
    assert explain_cli.main(["--stack", stack, "--image", image]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert f"tag         {tag}" in out
    assert f"unchanged since the last planned tag of image '{image}' of stack '{stack}'" in out, out


def test_a_promoting_stack_points_to_the_stack_that_builds():
    proc = explain("--stack", "staging", "--image", "web")
    assert proc.returncode == 2
    assert "stack 'staging' builds nothing: it promotes the images of stack 'dev'" in proc.stderr
    assert "--stack dev --image web" in proc.stderr
