"""The pulumi-docker stand-in's Check and Diff against the provider's behaviour it reproduces.

These need no engine: they pin what makes the stand-in rebuild where the real provider rebuilds (full mode strings,
resolved symlink paths, the Dockerfile under a fixed name) and where it must not (mtimes, ignored files, rotating
credentials), and the Check failures the provider has. The mode strings are Go's documented `os.FileMode.String()`
output, so they are checked against Go's format, not against the stand-in itself.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.docker_harness import (
    DockerImageProvider,
    ImageProviderError,
    StateFile,
    _Inputs,
    _stored_inputs,
    context_digest,
    diff,
    go_file_mode,
)
from tests.harness import PROJECT_ROOT


@pytest.mark.parametrize(("mode", "expected"), [
    (0o100644, "-rw-r--r--"),
    (0o100664, "-rw-rw-r--"),
    (0o100755, "-rwxr-xr-x"),
    (0o120777, "Lrwxrwxrwx"),
    (0o040755, "drwxr-xr-x"),
    (0o041777, "dtrwxrwxrwx"),
    (0o104755, "urwxr-xr-x"),
    (0o102755, "grwxr-xr-x"),
    (0o010644, "prw-r--r--"),
    (0o140755, "Srwxr-xr-x"),
    (0o020620, "Dcrw--w----"),
    (0o060660, "Drw-rw----"),
    (None, "----------"),
])
def test_mode_strings_are_go_file_mode_strings(mode: int | None, expected: str) -> None:
    assert go_file_mode(mode) == expected


def make_context(root: Path) -> Path:
    (root / "app" / "www").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (root / "app" / ".dockerignore").write_text("notes.txt\n")
    (root / "app" / "www" / "index.html").write_text("<p>hi</p>\n")
    (root / "app" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "app" / "run.sh", 0o755)
    for path in (root / "app" / "www" / "index.html", root / "app" / "Dockerfile", root / "app" / ".dockerignore"):
        os.chmod(path, 0o644)
    return root


def digest_of(root: Path, context: str = "app", dockerfile: str = "app/Dockerfile") -> str:
    return context_digest(context, dockerfile, root)


def test_group_write_bit_changes_the_digest(tmp_path: Path) -> None:
    root = make_context(tmp_path)
    before = digest_of(root)
    os.chmod(root / "app" / "www" / "index.html", 0o664)
    assert digest_of(root) != before


def test_mtime_ignored_file_and_location_do_not_change_the_digest(tmp_path: Path) -> None:
    root = make_context(tmp_path / "one")
    before = digest_of(root)
    os.utime(root / "app" / "www" / "index.html", (1, 1))
    (root / "app" / "notes.txt").write_text("ignored\n")
    assert digest_of(root) == before
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(root, moved, symlinks=True)
    assert digest_of(moved) == before


def test_symlinks_hash_the_resolved_path_relative_or_absolute_as_the_context_path(tmp_path: Path) -> None:
    one = make_context(tmp_path / "one")
    os.symlink("www/index.html", one / "app" / "link")
    two = tmp_path / "two"
    shutil.copytree(one, two, symlinks=True)
    # A relative context path resolves the link to a relative path: the same at any location...
    assert digest_of(one) == digest_of(two)
    # ...an absolute one to an absolute path, which differs between two checkouts.
    assert digest_of(one, str(one / "app"), str(one / "app" / "Dockerfile")) != \
        digest_of(two, str(two / "app"), str(two / "app" / "Dockerfile"))
    os.remove(two / "app" / "link")
    os.symlink("run.sh", two / "app" / "link")
    assert digest_of(one) != digest_of(two), "retargeting a link must change the digest"


def test_the_dockerfile_counts_by_content_under_a_fixed_name(tmp_path: Path) -> None:
    root = make_context(tmp_path)
    (root / "build").mkdir()
    (root / "build" / "Web.Dockerfile").write_text("FROM scratch\n")
    (root / "other").mkdir()
    (root / "other" / "Dockerfile").write_text("FROM scratch\n")
    assert digest_of(root, dockerfile="build/Web.Dockerfile") == digest_of(root, dockerfile="other/Dockerfile")
    (root / "other" / "Dockerfile").write_text("FROM scratch\nLABEL x=y\n")
    assert digest_of(root, dockerfile="build/Web.Dockerfile") != digest_of(root, dockerfile="other/Dockerfile")


def inputs(**build: object) -> dict:
    return {"imageName": "127.0.0.1:5000/demo/web:ctx-1",
            "build": {"context": "app", "dockerfile": "app/Dockerfile", "contextDigest": "from-the-program",
                      "args": None, **build},
            "registry": {"server": "127.0.0.1:5000", "username": "u", "password": "p"}}


def test_check_overwrites_the_digest_and_defaults_the_platform_to_the_host(tmp_path: Path) -> None:
    root = make_context(tmp_path)
    provider = DockerImageProvider(tmp_path / "state")
    checked = provider.check("web-image", inputs(), root)
    assert checked["build"]["contextDigest"] == digest_of(root)
    assert "args" not in checked["build"], "null inputs are skipped, as the provider unmarshals them"
    machine = os.uname().machine
    assert checked["build"]["platform"] == {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}.get(machine, machine)
    assert provider.infos and "Building your image for" in provider.infos[0]
    assert provider.check("web-image", inputs(platform="linux/arm64"), root)["build"]["platform"] == "linux/arm64"


@pytest.mark.parametrize(("change", "fails"), [
    ("missing-dockerfile", "could not open dockerfile at relative path app/Dockerfile"),
    ("dangling-symlink", "could not evaluate symlink at app/www/gone"),
])
def test_check_fails_where_the_provider_fails(tmp_path: Path, change: str, fails: str) -> None:
    root = make_context(tmp_path)
    if change == "missing-dockerfile":
        os.remove(root / "app" / "Dockerfile")
    else:
        os.symlink("nowhere.html", root / "app" / "www" / "gone")
    with pytest.raises(ImageProviderError, match="web-image: .*" + fails.replace(".", r"\.")):
        DockerImageProvider(tmp_path / "state").check("web-image", inputs(), root)


def _without_dac_override() -> None:
    """preexec_fn: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so even root's child
    cannot read a mode-000 file (prctl PR_CAPBSET_DROP; root regains only what the bounding set keeps at exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.mark.timeout(60)
def test_check_fails_on_a_fifo_without_opening_it(tmp_path: Path) -> None:
    """The provider's Check would open a fifo to hash it and block; the stand-in fails instead, never hanging."""
    root = make_context(tmp_path)
    os.mkfifo(root / "app" / "pipe")
    with pytest.raises(ImageProviderError, match="'pipe' is a fifo"):
        digest_of(root)


def test_check_fails_on_an_unreadable_file(tmp_path: Path) -> None:
    root = make_context(tmp_path)
    os.chmod(root / "app" / "www" / "index.html", 0o000)
    script = ("import sys; from tests.e2e.docker_harness import context_digest, ImageProviderError\n"
              "try: context_digest('app', 'app/Dockerfile', sys.argv[1])\n"
              "except ImageProviderError as e: print(e); sys.exit(3)\n")
    # As root the file would stay readable; the hash runs in a child that lost the capabilities to read it anyway.
    proc = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True, timeout=120,
                          cwd=PROJECT_ROOT, preexec_fn=_without_dac_override if os.geteuid() == 0 else None)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "could not open file app/www/index.html: Permission denied" in proc.stdout


def test_diff_counts_only_the_registry_server_and_every_build_change() -> None:
    old = inputs(contextDigest="a", platform="linux/amd64")
    rotated = json.loads(json.dumps(old))
    rotated["registry"].update(username="other", password="rotated")
    assert diff(old, rotated) == []
    moved = json.loads(json.dumps(old))
    moved["registry"]["server"] = "127.0.0.1:5001"
    assert diff(old, moved) == ["registry"]
    assert diff(old, inputs(contextDigest="b", platform="linux/amd64")) == ["build"]


def test_state_persists_per_stack_without_the_password(tmp_path: Path) -> None:
    root = make_context(tmp_path)
    provider = DockerImageProvider(tmp_path / "state")
    checked = provider.check("web-image", inputs(platform="linux/amd64"), root)
    # Record a resource the way apply() does after an update, without building (this module needs no engine).
    with StateFile(tmp_path / "state", "dev").locked() as resources:
        resources["web-image"] = {"id": checked["imageName"], "inputs": _stored_inputs(checked), "outputs": {}}
    text = (tmp_path / "state" / "dev.json").read_text()
    assert '"password"' not in text and "from-the-program" not in text
    other = DockerImageProvider(tmp_path / "state", project_root=root)
    assert other.apply("dev", "web-image", _Inputs(inputs(platform="linux/amd64"))) == (checked["imageName"], {})
    assert other.checks[-1].action == "same" and other.builds == []
    assert DockerImageProvider(tmp_path / "state").state("prod") == {}, "another stack shares nothing"
    os.chmod(root / "app" / "run.sh", 0o775)
    stored = other.state("dev")["web-image"]["inputs"]
    assert diff(stored, _stored_inputs(other.check("web-image", inputs(platform="linux/amd64"), root))) == ["build"]
