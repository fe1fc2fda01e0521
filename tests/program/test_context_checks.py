"""A context the program cannot use, through the real __main__.py under mocks: a cache directory inside it, a
file that cannot be read, a context that keeps changing, a Dockerfile ending in a lone continuation; each reaches the
engine as one message before anything is declared.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pulumi
import pytest

from tests.harness import NO_PREFLIGHT, reported_error, run_stack
from tests.unit.buildcontext.test_scan_errors import LONE_BACKSLASH, _refuse
from tests.unit.cli.test_explain import REFUSED


def test_the_program_refuses_before_declaring_anything(project, monkeypatch, preflight_calls) -> None:
    """The issue's case through the real __main__.py: the cache kept in the project to persist it with a CI cache."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(project / "app" / "www" / ".ci-cache"))
    records: list = []
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", NO_PREFLIGHT, project_root=project, records=records, as_engine=True)
    assert type(reported_error(err.value)).__name__ == "BuildPlanError", type(err.value.__context__).__mro__
    text = str(err.value)
    assert "acr-publish:images[0] (web): ACR_PUBLISH_CACHE_DIR=" in text and "acr-publish:images[1] (worker)" in text
    assert not records, [r.name for r in records]
    assert not (project / "app" / "www" / ".ci-cache").exists()


@pytest.mark.parametrize("where", [".ci-cache", "www/.ci-cache"])
def test_the_program_keeps_its_tags_with_the_cache_dir_excluded(project, monkeypatch, preflight_calls, where) -> None:
    """app/.dockerignore sends only www/ and worker.sh: a cache beside them is excluded already; one inside www/
    is once the line the refusal suggests is added."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(project / "app" / where))
    if where.startswith("www/"):
        with (project / "app" / ".dockerignore").open("a") as handle:
            handle.write(f"\n{where}\n")
    tags = set()
    for _ in range(3):
        run = run_stack("local", NO_PREFLIGHT, project_root=project)
        tags.add(tuple(sorted((n, i["tag"]) for n, i in run.outputs["images"].items())))
    assert len(tags) == 1, tags
    assert any((project / "app" / where / "history").iterdir())


def test_an_unreadable_file_reaches_the_engine_as_a_run_error(project, monkeypatch, preflight_calls) -> None:
    (project / "app" / "www" / "secret-ish.html").write_text("<p>x</p>\n")
    _refuse(monkeypatch, "secret-ish.html")
    records: list = []
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", NO_PREFLIGHT, project_root=project, records=records, as_engine=True)
    assert type(reported_error(err.value)).__name__ == "BuildPlanError", type(err.value.__context__).__mro__
    assert "acr-publish:images[0] (web): cannot read 'www/secret-ish.html'" in str(err.value)
    assert not records


def test_a_context_that_keeps_changing_reaches_the_engine_as_a_run_error(project, monkeypatch,
                                                                         preflight_calls) -> None:
    """Every scan's walk lists www/index.html and finds it gone when it opens it (as a file rewritten by
    delete-and-create on every save would be); the program runs the project copy's own modules, so the race is
    made at the os.open every module shares."""
    real_open = os.open

    def vanished(path, *args, **kwargs):
        if str(path).endswith("/www/index.html"):
            raise FileNotFoundError(2, "No such file or directory", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", vanished)
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", NO_PREFLIGHT, project_root=project, as_engine=True)
    assert type(reported_error(err.value)).__name__ == "BuildPlanError" and "kept changing" in str(err.value)


@pytest.mark.parametrize("text", LONE_BACKSLASH)
def test_a_dockerfile_ending_in_a_lone_continuation_is_a_config_error(project, preflight_calls, text) -> None:
    (project / "app" / "Dockerfile").write_text(text)
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", NO_PREFLIGHT, project_root=project, as_engine=True)
    assert type(reported_error(err.value)).__name__ == "ConfigError", type(err.value.__context__).__mro__
    assert "unknown instruction" in str(err.value)


DEEP_FROM = "FROM " + "${A:-" * 200 + "scratch" + "}" * 200 + " AS web\nFROM scratch AS worker\n"


def test_a_dockerfile_word_nested_too_deep_is_one_error_before_anything_is_declared(project, preflight_calls):
    (project / "app" / "Dockerfile").write_text(DEEP_FROM)
    records: list = []
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", NO_PREFLIGHT, project_root=project, records=records, as_engine=True)
    assert "line 1" in str(err.value) and "more than 64 levels deep" in str(err.value), str(err.value)
    assert not records, [r.name for r in records]


@pytest.mark.parametrize("args", [["--stack", "local", "--image", "web"], ["app", "--target", "web"]])
def test_explain_reports_a_word_nested_too_deep_in_one_line(project, args):
    """With a stack or a context path, explain reads the Dockerfile as the program does and says what it refuses
    in one line, printing no tag."""
    (project / "app" / "Dockerfile").write_text(DEEP_FROM)
    proc = subprocess.run([sys.executable, "-m", "cli.explain", *args], cwd=project, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(project)})
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert proc.stderr.count("\n") == 1 and "line 1" in proc.stderr and "levels deep" in proc.stderr, proc.stderr


@pytest.mark.parametrize("kind", REFUSED)
def test_each_dockerfile_refusal_explain_knows_is_the_programs_one_error(project, preflight_calls, kind):
    """The program's side of explain's refusals (tests/unit/cli/test_explain.py): through the real __main__.py,
    each is one BuildPlanError naming the line, before anything is declared."""
    text, line, needle = REFUSED[kind]
    (project / "app" / "Dockerfile").write_text(text + "FROM scratch AS worker\n")
    records: list = []
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", NO_PREFLIGHT, project_root=project, records=records, as_engine=True)
    assert type(reported_error(err.value)).__name__ == "BuildPlanError", type(err.value.__context__).__mro__
    said = [s for s in str(err.value).splitlines() if s.startswith("acr-publish:images[0] (web): ")]
    assert len(said) == 1 and f"app/Dockerfile {line}: " in said[0] and needle in said[0], str(err.value)
    assert not records, [r.name for r in records]
