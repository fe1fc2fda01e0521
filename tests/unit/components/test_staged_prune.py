"""Pruning the staged Dockerfiles: old ones go, fresh and in-use ones stay, a concurrent plan keeps what it builds
from (components/staged_prune.py; plan_builds prunes after staging)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from components import image as image_module
from components import staged_prune
from components.config.schema import ImageSettings, RegistrySettings, Settings

URL = "http://127.0.0.1:9/tool"
OLD = staged_prune.KEEP_S + 3600


def settings(root: Path, stack: str) -> Settings:
    return Settings(stack=stack, region=None, registry=RegistrySettings(edition="local", namespace=None,
                                                                        server="127.0.0.1:1"),
                    images=(ImageSettings(name="web", context="app", dockerfile="app/Dockerfile"),), protect=False,
                    retain_on_delete=False, preflight=False, project_root=root)


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "p" / "app").mkdir(parents=True)
    (tmp_path / "p" / "app" / "Dockerfile").write_text(f"FROM scratch\nADD {URL} /tool\n")
    return tmp_path / "p"


def staged_dir(root: Path, stack: str, image: str, name: str, age_s: float) -> Path:
    directory = root / staged_prune.PINNED_DIR / stack / image / name
    directory.mkdir(parents=True)
    (directory / "Dockerfile").write_text("FROM scratch\n")
    past = time.time() - age_s
    os.utime(directory / "Dockerfile", (past, past))
    return directory


def test_old_ones_go_fresh_and_in_use_ones_stay(tmp_path):
    pinned = tmp_path / "pinned"
    old = staged_dir(tmp_path, "a", "web", "1" * 16, OLD)
    fresh = staged_dir(tmp_path, "b", "web", "2" * 16, 60)
    used = staged_dir(tmp_path, "a", "web", "3" * 16, OLD)
    unfinished = tmp_path / staged_prune.PINNED_DIR / "a" / "worker" / ("4" * 16)
    unfinished.mkdir(parents=True)  # a write that never completed: no Dockerfile, judged by its own age
    os.utime(unfinished, (time.time() - OLD,) * 2)
    pinned = tmp_path / staged_prune.PINNED_DIR
    removed = staged_prune.prune(pinned, {used})
    assert sorted(removed) == sorted([old, unfinished])
    assert fresh.is_dir() and used.is_dir() and not old.exists() and not unfinished.exists()
    assert not [p for p in pinned.rglob(f"{staged_prune.ASIDE_PREFIX}*")], "nothing left aside"


def test_work_per_run_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(staged_prune, "REMOVE_LIMIT", 2)
    for n in range(5):
        staged_dir(tmp_path, "a", "web", f"{n:016x}", OLD)
    pinned = tmp_path / staged_prune.PINNED_DIR
    assert len(staged_prune.prune(pinned, set())) == 2
    assert len(list((pinned / "a" / "web").iterdir())) == 3
    monkeypatch.setattr(staged_prune, "SCAN_LIMIT", 3)  # stack, image, then one hash directory examined
    assert len(staged_prune.prune(pinned, set())) == 1


def test_one_reused_while_it_was_being_pruned_is_put_back(tmp_path, monkeypatch):
    """A plan touches the Dockerfile it reuses between the prune's age check and its rename: it is put back."""
    directory = staged_dir(tmp_path, "a", "web", "1" * 16, OLD)
    real_rename = os.rename

    def rename_after_a_plan_reused_it(src, dst):
        if Path(src) == directory:
            os.utime(directory / "Dockerfile")
        real_rename(src, dst)

    monkeypatch.setattr(staged_prune.os, "rename", rename_after_a_plan_reused_it)
    assert staged_prune.prune(tmp_path / staged_prune.PINNED_DIR, set()) == []
    assert (directory / "Dockerfile").read_text() == "FROM scratch\n"


def test_a_concurrent_plan_of_another_stack_keeps_what_a_plan_builds_from(root, remote_calls):
    remote_calls.checksums[URL] = "sha256:" + "a" * 64
    first = root / image_module.plan_builds(settings(root, "one"))["web"].dockerfile
    past = time.time() - OLD
    os.utime(first, (past, past))  # staged long ago ...
    assert root / image_module.plan_builds(settings(root, "one"))["web"].dockerfile == first
    # ... and reused now: touched, so another stack's plan (pruning) leaves it for this plan's build.
    abandoned = staged_dir(root, "gone", "web", "f" * 16, OLD)
    other = root / image_module.plan_builds(settings(root, "two"))["web"].dockerfile
    assert first.is_file() and other.is_file() and not abandoned.exists()


def test_this_runs_own_staged_dockerfile_is_never_pruned(root, remote_calls, monkeypatch):
    remote_calls.checksums[URL] = "sha256:" + "b" * 64
    monkeypatch.setattr(staged_prune, "KEEP_S", -60.0)  # every file counts as old: only "in use" keeps it
    staged = root / image_module.plan_builds(settings(root, "one"))["web"].dockerfile
    assert staged.is_file()
