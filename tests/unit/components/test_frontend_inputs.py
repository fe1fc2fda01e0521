"""The frontend image (`# syntax=`, the BUILDKIT_SYNTAX build arg) through the real program under mocks: resolved
like a base by tests/conftest.py's `remote_calls` recorder (tests/e2e/test_remote_inputs.py resolves it against a
real registry)."""
from __future__ import annotations

from pathlib import Path

import pytest

from buildcontext.stage_args import host_platform_name
from tests.harness import IMAGE, NO_PREFLIGHT, run_stack

# On a host of its own: the recorder stands in for one reference per host (two on one host would dial it).
FE = "127.0.0.1:5999/frontend/dockerfile:1.7"
BASE = "busybox:1.36.1-musl"


def with_directive(project: Path, directive: str = f"# syntax={FE}\n") -> None:
    dockerfile = project / "app" / "Dockerfile"
    dockerfile.write_text(directive + dockerfile.read_text())


def images(**extra) -> dict:
    return {"acr-publish:images": [{"name": n, "context": "app", "target": n, "buildArgs": {"APP_ENV": "local"},
                                    **extra} for n in ("web", "worker")]}


def test_the_frontend_is_resolved_for_this_machine_pinned_and_in_the_tag(remote_calls, preflight_calls, project):
    with_directive(project)
    tags, staged = [], []
    for digest in ("1", "2"):
        remote_calls.digests[FE] = "sha256:" + digest * 64
        run = run_stack("local", {**NO_PREFLIGHT, **images(platform="linux/s390x")}, project_root=project)
        tags.append(run.outputs["images"]["web"]["tag"])
        staged.append((project / run.by_name("web-image").inputs["build"]["dockerfile"]).read_text())
    asked = [(r, p) for r, p, _ in remote_calls.references]
    assert asked.count((FE, host_platform_name())) == 2 and (BASE, "linux/s390x") in asked, asked
    assert (FE, "linux/s390x") not in asked, "the frontend runs on the build host, whatever the target"
    assert tags[0] != tags[1], "a moved frontend tag gives a new content tag"
    for digest, text in zip("12", staged):
        assert text.splitlines()[0] == f"# syntax={FE}@sha256:{digest * 64}", text


def test_pinned_mode_refuses_an_unpinned_frontend_with_its_line_and_fix(remote_calls, preflight_calls, project):
    with_directive(project)
    records: list = []
    with pytest.raises(Exception) as err:
        run_stack("local", {**NO_PREFLIGHT, **images(remoteInputs="pinned")}, project_root=project, records=records)
    msg = str(err.value)
    assert (f"acr-publish:images[0] (web): app/Dockerfile line 1: # syntax={FE} has no digest, and remoteInputs is "
            "pinned; fix: write it as <ref>@sha256:<digest>") in msg, msg
    assert remote_calls.references == [] and records == []


def test_a_pinned_frontend_costs_no_request_under_pinned(remote_calls, preflight_calls, project):
    digest = "sha256:" + "3" * 64
    with_directive(project, f"# syntax={FE}@{digest}\n")
    dockerfile = project / "app" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace(f"={BASE}\n", f"={BASE}@{digest}\n"))
    run = run_stack("local", {**NO_PREFLIGHT, **images(remoteInputs="pinned")}, project_root=project)
    assert remote_calls.references == []
    assert run.by_name("web-image").inputs["build"]["dockerfile"] == "app/Dockerfile", "nothing to pin"


def test_ignore_mode_asks_nothing_and_its_warning_names_the_frontend(remote_calls, preflight_calls, project):
    with_directive(project)
    run = run_stack("local", {**NO_PREFLIGHT, **images(remoteInputs="ignore")}, project_root=project)
    assert remote_calls.references == []
    assert all(r.inputs["build"]["dockerfile"] == "app/Dockerfile" for r in run.of_type(IMAGE))
    assert any("# syntax=" in w and "frontend image" in w for w in run.warnings), run.warnings


@pytest.mark.parametrize("mode", ["resolve", "pinned"])
def test_a_build_arg_frontend_without_a_digest_is_refused(mode, remote_calls, preflight_calls, project):
    records: list = []
    config = images(remoteInputs=mode)
    config["acr-publish:images"][0]["buildArgs"]["BUILDKIT_SYNTAX"] = FE
    with pytest.raises(Exception) as err:
        run_stack("local", {**NO_PREFLIGHT, **config}, project_root=project, records=records)
    msg = str(err.value)
    assert (f"acr-publish:images[0] (web): buildArgs.BUILDKIT_SYNTAX '{FE}' names the frontend image without a digest"
            f" (it overrides the Dockerfile's # syntax=), and remoteInputs is {mode}") in msg, msg
    assert "fix: write it as <ref>@sha256:<digest>, or remove it and write # syntax=<ref>" in msg, msg
    assert "images[1] (worker): buildArgs" not in msg and records == []
    assert FE not in [r for r, _, _ in remote_calls.references]


def test_a_build_arg_frontend_with_a_digest_is_in_the_tag_and_overrides_the_directive(remote_calls,
                                                                                      preflight_calls, project):
    with_directive(project)
    tags = []
    for digest in ("4", "5"):
        config = images()
        config["acr-publish:images"][0]["buildArgs"]["BUILDKIT_SYNTAX"] = f"{FE}@sha256:{digest * 64}"
        run = run_stack("local", {**NO_PREFLIGHT, **config}, project_root=project)
        tags.append(run.outputs["images"]["web"]["tag"])
        web = (project / run.by_name("web-image").inputs["build"]["dockerfile"]).read_text()
        assert web.splitlines()[0] == f"# syntax={FE}", "the build arg wins: the directive is not asked for"
        worker = (project / run.by_name("worker-image").inputs["build"]["dockerfile"]).read_text()
        assert worker.splitlines()[0].startswith(f"# syntax={FE}@sha256:")
    assert tags[0] != tags[1]
    assert [r for r, _, _ in remote_calls.references].count(FE) == 2, "worker's directive, once per run"

