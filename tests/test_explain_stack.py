"""`python -m components.context explain --stack S --image I` shows the tag the program would publish."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness import PROJECT_ROOT, run_stack


def explain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "buildcontext.context", "explain", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, env=os.environ.copy(), timeout=120)


@pytest.mark.parametrize("stack,image", [("local", "web"), ("local", "worker"), ("dev", "web")])
def test_explain_prints_the_tag_the_stack_publishes(stack, image, preflight_calls):
    tag = run_stack(stack).outputs["images"][image]["tag"]
    proc = explain("--stack", stack, "--image", image)
    assert proc.returncode == 0, proc.stderr
    assert f"tag         {tag}" in proc.stdout


def test_unknown_image_names_the_stack_images():
    proc = explain("--stack", "local", "--image", "nope")
    assert proc.returncode == 2 and "stack 'local' has no image 'nope'; its images are web, worker" in proc.stderr


def test_context_and_stack_are_exclusive():
    proc = explain("app", "--stack", "local", "--image", "web")
    assert proc.returncode == 2 and "either a context path, or --stack and --image" in proc.stderr
