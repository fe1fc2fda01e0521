"""Contexts and Dockerfiles resolve, symlinks followed, inside the repository that holds the project; a path no file
system can hold is a rule broken, never an OSError.

Every tree is generated in a tmp dir (a monorepo-style git repository with the project in a subfolder, links to /etc,
over-long names); the pathological inputs run under a pytest-timeout bound, so a hang fails the test.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from components.config.paths import repository_root
from components.config.validate import settings_from_values
from tests.configcases import DOCKERFILE, EE, git_dir, one, problems, write


@pytest.fixture
def monorepo(tmp_path) -> Path:
    """repo/.git, the project in repo/infra (its own app/), a common context in repo/common/app; returns infra."""
    repo = tmp_path / "repo"
    git_dir(repo / ".git")
    project = repo / "infra"
    write(project / "Pulumi.yaml", "name: acr-publish\n")
    write(project / "app" / "Dockerfile", DOCKERFILE)
    write(repo / "common" / "app" / "Dockerfile", DOCKERFILE)
    write(tmp_path / "elsewhere" / "app" / "Dockerfile", DOCKERFILE)
    return project


def test_the_repository_is_the_git_work_tree_holding_the_project(monorepo):
    assert repository_root(monorepo) == monorepo.parent.resolve()


def test_a_worktree_git_file_marks_the_repository_too(monorepo, tmp_path):
    shutil.rmtree(monorepo.parent / ".git")
    git_dir(tmp_path / "main" / ".git")
    write(tmp_path / "main" / ".git" / "worktrees" / "x" / "HEAD", "ref: refs/heads/x\n")
    write(tmp_path / "main" / ".git" / "worktrees" / "x" / "commondir", "../..\n")
    write(monorepo.parent / ".git", f"gitdir: {tmp_path}/main/.git/worktrees/x\n")
    assert repository_root(monorepo) == monorepo.parent.resolve()
    assert problems(images=[{"name": "web", "context": "../common/app"}], root=monorepo) == []
    write(monorepo.parent / ".git", "gitdir: ../main/.git/worktrees/x\n")  # relative to the .git file, as git reads it
    assert repository_root(monorepo) == monorepo.parent.resolve()


@pytest.mark.parametrize("marker", ["empty file", "dangling gitdir", "not a gitdir", "directory without HEAD",
                                    "directory with only HEAD", "gitdir of the root", "symlink to a directory"])
def test_a_stray_git_entry_does_not_widen_the_repository(monorepo, tmp_path, marker):
    """An empty /tmp/.git (or a dangling worktree file) in some parent must not make everything below it the
    repository: the project alone is then the boundary, and ../elsewhere stays refused."""
    shutil.rmtree(monorepo.parent / ".git")
    outer = tmp_path / ".git"
    if marker == "empty file":
        write(outer, "")
    elif marker == "dangling gitdir":
        write(outer, "gitdir: /nonexistent/.git\n")
    elif marker == "not a gitdir":
        write(outer, "hello\n")
    elif marker == "directory without HEAD":
        outer.mkdir()
    elif marker == "directory with only HEAD":
        write(outer / "HEAD", "")
    elif marker == "gitdir of the root":
        write(outer, "gitdir: /\n")
    else:
        outer.symlink_to(git_dir(tmp_path / "real-git"))
    assert repository_root(monorepo) == monorepo.resolve(), marker
    msg = one(images=[{"name": "web", "context": "../../elsewhere/app"}], root=monorepo)
    assert "outside the repository that holds the project" in msg


def test_without_git_the_project_directory_is_the_boundary(monorepo):
    shutil.rmtree(monorepo.parent / ".git")
    assert repository_root(monorepo) == monorepo.resolve()
    msg = one(images=[{"name": "web", "context": "../common/app"}], root=monorepo)
    assert "outside the repository that holds the project" in msg and str(monorepo.resolve()) in msg


def test_a_monorepo_project_builds_from_a_sibling_folder(monorepo):
    s = settings_from_values("dev", {"registry": EE, "images": [
        {"name": "web", "context": "../common/app"},
        {"name": "api", "context": "app", "dockerfile": "../common/app/Dockerfile"},
    ]}, region="cn-hangzhou", has_password=False, project_root=monorepo)
    assert [(i.context, i.dockerfile) for i in s.images] == [
        ("../common/app", "../common/app/Dockerfile"), ("app", "../common/app/Dockerfile")]


def test_a_context_outside_the_repository_is_refused(monorepo):
    msg = one(images=[{"name": "web", "context": "../../elsewhere/app"}], root=monorepo)
    elsewhere = (monorepo.parent.parent / "elsewhere" / "app").resolve()
    assert msg.startswith("acr-publish:images[0].context '../../elsewhere/app' is invalid: "
                          f"it resolves to {elsewhere}, outside the repository that holds the project "
                          f"({monorepo.parent.resolve()})"), msg
    assert "through a symlink" not in msg and "point it at a directory inside" in msg


def test_a_context_symlink_to_etc_is_refused_before_anything_is_walked(monorepo):
    (monorepo / "some_link").symlink_to("/etc")
    msg = one(images=[{"name": "web", "context": "some_link"}], root=monorepo)
    assert "context 'some_link' is invalid: it resolves to /etc, outside the repository" in msg
    assert "through a symlink on the way" in msg and "move what the build needs into the repository" in msg


def test_a_link_on_the_way_counts_too(monorepo):
    (monorepo / "vendor").symlink_to(monorepo.parent.parent / "elsewhere")
    assert "through a symlink on the way" in one(images=[{"name": "web", "context": "vendor/app"}], root=monorepo)


def test_a_dockerfile_outside_the_repository_is_refused(monorepo):
    rel = os.path.relpath("/etc/passwd", monorepo)
    msg = one(images=[{"name": "web", "context": "app", "dockerfile": rel}], root=monorepo)
    assert msg.startswith(f"acr-publish:images[0].dockerfile {rel!r} is invalid: it resolves to /etc/passwd, "
                          "outside the repository"), msg
    assert "the build would read files from elsewhere" in msg


def test_a_default_dockerfile_linked_out_of_the_repository_is_refused(monorepo):
    (monorepo / "app" / "Dockerfile").unlink()
    (monorepo / "app" / "Dockerfile").symlink_to("/etc/passwd")
    msg = one(images=[{"name": "web", "context": "app"}], root=monorepo)
    assert "dockerfile is unset and the default 'app/Dockerfile' is invalid: it resolves to /etc/passwd" in msg


def test_links_that_stay_inside_the_repository_are_fine(monorepo):
    (monorepo / "current").symlink_to(monorepo.parent / "common" / "app")
    (monorepo / "app" / "Dockerfile.link").symlink_to("../../common/app/Dockerfile")
    assert problems(images=[{"name": "web", "context": "current", "dockerfile": "app/Dockerfile.link"}],
                       root=monorepo) == []


@pytest.mark.timeout(30)
def test_a_symlink_loop_is_a_message(monorepo):
    (monorepo / "loop").symlink_to(monorepo / "loop")
    assert "a symlink on the way loops" in one(images=[{"name": "web", "context": "loop"}], root=monorepo)


@pytest.mark.timeout(30)
def test_a_fifo_dockerfile_is_refused_without_opening_it(monorepo):
    os.mkfifo(monorepo / "app" / "Dockerfile.fifo")
    msg = one(images=[{"name": "web", "context": "app", "dockerfile": "app/Dockerfile.fifo", "target": "web"}],
               root=monorepo)
    assert "is not a regular file, and it must be a regular file" in msg


def test_a_directory_is_not_a_dockerfile_and_a_file_is_not_a_context(monorepo):
    found = problems(images=[{"name": "web", "context": "app/Dockerfile", "dockerfile": "app"}], root=monorepo)
    assert any("context 'app/Dockerfile' is invalid:" in p and "must be a directory" in p for p in found), found
    assert any("dockerfile 'app' is invalid:" in p and "is a directory" in p for p in found), found


@pytest.mark.timeout(30)
@pytest.mark.parametrize("key", ["context", "dockerfile"])
def test_a_path_component_over_255_bytes_is_a_rule_not_an_oserror(key):
    long = "a" * 300
    image = {"name": "web", "context": "app", key: f"app/{long}"}
    msg = one(images=[image])
    assert f"acr-publish:images[0].{key} " in msg and "is 300 bytes, and a file name is at most 255 bytes" in msg
    assert len(msg) < 1000, "the over-long value is shown shortened"


@pytest.mark.timeout(30)
def test_multibyte_names_are_measured_in_bytes():
    assert "is 258 bytes" in one(images=[{"name": "web", "context": "é" * 129}])


@pytest.mark.timeout(30)
def test_a_path_over_path_max_is_a_rule():
    assert "and a path is at most 4096 bytes" in one(images=[{"name": "web", "context": "/".join(["a" * 200] * 30)}])


@pytest.mark.parametrize("bad,rule", [("app\0x", "NUL character"), ("app/\ud800", "unpaired surrogate")])
def test_unrepresentable_paths_are_rules(bad, rule):
    assert rule in one(images=[{"name": "web", "context": bad}])


def test_undecodable_and_control_characters_in_paths_are_shown_escaped():
    msg = one(images=[{"name": "web", "context": "app/\udc80\x1b[2J"}])
    assert msg.encode("utf-8") and "\x1b" not in msg and "\\udc80\\x1b[2J" in msg, msg
