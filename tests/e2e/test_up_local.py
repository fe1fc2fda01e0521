"""The main job's set-up with the real parts: `scripts/up-local.sh` starts Debian's docker-registry for real.

Runs the script against a temporary project copy, with the real Docker CLI and engine, the real docker-registry,
and a recording fake `pulumi` (what `pulumi up` does with the real engine is tests/e2e/test_engine_*.py's). The registry listens on a free port
(ACR_PUBLISH_LOCAL_REGISTRY_PORT) instead of 5000 so the test never meets a registry a developer runs.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.e2e.registry import registry_binary  # noqa: F401  (fixture: fails under CI, skips elsewhere)
from tests.unit.scripts.test_up_local import UpLocal, make_up_local, port_answers


def _pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie awaiting its reaper counts as stopped)."""
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def _push_blob(base: str, repository: str, content: bytes) -> str:
    """Monolithic blob upload (registry HTTP API v2); returns the digest."""
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    start = requests.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    location = location if location.startswith("http") else base + location
    put = requests.put(location, params={"digest": digest}, data=content,
                       headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert put.status_code == 201, put.text
    return digest


@pytest.fixture
def up_real(tmp_path: Path, docker_engine: str, registry_binary: str) -> Iterator[UpLocal]:  # noqa: F811
    run = make_up_local(tmp_path)
    run.add_fake_pulumi()
    run.env["ACR_PUBLISH_DOCKER_CLI"] = docker_engine
    run.env["PATH"] = os.pathsep.join([str(run.bin), os.path.dirname(registry_binary)])
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG"):  # reach the same engine as the fixture
        if name in os.environ:
            run.env[name] = os.environ[name]
    pid_file = run.project / ".registry-data" / "registry.pid"
    yield run
    pid = int(pid_file.read_text()) if pid_file.exists() else None
    run.run("--stop-registry")
    if pid is not None and _pid_alive(pid):  # the stop command failed: do not leak the registry
        os.kill(pid, 9)


def test_starts_debian_registry_reuses_it_and_stops_it(up_real: UpLocal) -> None:
    data = up_real.project / ".registry-data"
    base = f"http://127.0.0.1:{up_real.port}"

    first = up_real.run("--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "started docker-registry" in first.stdout and f"on 127.0.0.1:{up_real.port}" in first.stdout
    pid = int((data / "registry.pid").read_text())
    assert _pid_alive(pid)
    assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"docker-registry")
    assert requests.get(f"{base}/v2/", timeout=10).status_code == 200
    assert f"listening on 127.0.0.1:{up_real.port}" in (data / "registry.log").read_text(), "loopback only"

    # Storage lands in the project's .registry-data, in the layout registry:2 uses under /var/lib/registry.
    digest = _push_blob(base, "demo/web", b"acr-publish up-local e2e\n")
    blob = data / "docker" / "registry" / "v2" / "blobs" / "sha256" / digest[7:9] / digest[7:] / "data"
    assert blob.read_bytes() == b"acr-publish up-local e2e\n"

    calls = up_real.pulumi_calls()
    assert [c["argv"] for c in calls] == [
        ["stack", "select", "--create", "local", "--secrets-provider", "passphrase"],
        ["up", "--stack", "local", "--yes"],
    ]
    assert all(c["backend_url"] == f"file://{up_real.project / '.pulumi-state'}" for c in calls)

    second = up_real.run()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "reusing the registry that already answers" in second.stdout
    assert "started docker-registry" not in second.stdout
    assert int((data / "registry.pid").read_text()) == pid and _pid_alive(pid), "the same registry serves on"
    assert [c["argv"][0] for c in up_real.pulumi_calls()] == ["stack", "up", "stack", "up"]

    stop = up_real.run("--stop-registry")
    assert stop.returncode == 0, stop.stderr
    assert f"stopped docker-registry (pid {pid})" in stop.stdout
    assert not port_answers(up_real.port)
    assert not (data / "registry.pid").exists()
    assert blob.exists(), "stopping keeps the images"

    # A new run starts a fresh registry on the same storage: what was pushed is still served.
    third = up_real.run()
    assert third.returncode == 0, third.stdout + third.stderr
    assert "started docker-registry" in third.stdout
    head = requests.head(f"{base}/v2/demo/web/blobs/{digest}", timeout=10)
    assert head.status_code == 200 and head.headers["Docker-Content-Digest"] == digest
