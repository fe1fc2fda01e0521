"""Fixtures shared by the tests that need a real Docker engine or registry.

Under CI=true a missing engine is a failure, never a skip: CI provisions the engine itself
(.ci/provision-docker.sh), so its absence there is a broken pipeline, not an optional feature.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

# The machine image may put another docker client earlier on PATH; the engine's own client is /usr/bin/docker.
DOCKER_CLI = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else (shutil.which("docker") or "docker")


def _engine_problem() -> str | None:
    try:
        proc = subprocess.run(
            [DOCKER_CLI, "buildx", "version"], capture_output=True, text=True, timeout=30
        )
        if proc.returncode != 0:
            return f"docker buildx is not available: {proc.stderr.strip()}"
        proc = subprocess.run(
            [DOCKER_CLI, "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker CLI unusable: {exc}"
    if proc.returncode != 0:
        return f"no Docker engine answers: {proc.stderr.strip()}"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """Path of the docker CLI talking to a live engine with buildx; fails under CI when absent."""
    problem = _engine_problem()
    if problem:
        msg = f"{problem} (run .ci/provision-docker.sh to install and start the engine)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return DOCKER_CLI


@pytest.fixture
def remote_calls():
    """The end-to-end tests resolve base images and remote sources for real (tests/conftest.py scripts them for the
    unit tests): nothing is replaced here."""
    return None
