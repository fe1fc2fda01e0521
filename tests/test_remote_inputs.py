"""Remote inputs through the real program under mocks, and the Dockerfile plan they come from.

The two network calls (a registry's manifest, a remote ADD source) are tests/conftest.py's `remote_calls` recorder
here; tests/e2e/test_remote_inputs.py makes them for real against `docker-registry` and a loopback server.
"""
from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from buildcontext.stages import DockerfileProblem, read_plan
from components.remote_inputs import ResolveFailure, credentials_for, locate, StackLogin
from components.settings import ConfigError, settings_from_values
from tests.harness import IMAGE, PROJECT_ROOT, TEST_SECRET, run_stack

NO_PREFLIGHT = {"acr-publish:preflight": "false"}
BASE = "busybox:1.36.1-musl"


@pytest.fixture
def project(tmp_path) -> Path:
    copy = tmp_path / "project" / "acr-publish"
    shutil.copytree(PROJECT_ROOT, copy, ignore=shutil.ignore_patterns(
        "venv", ".git", "__pycache__", ".pytest_cache", ".hypothesis", "bench", ".local*", ".registry-data",
        ".acr-publish"))
    return copy


def images(**extra) -> list[dict]:
    return [{"name": n, "context": "app", "target": n, "buildArgs": {"APP_ENV": "local"}, **extra}
            for n in ("web", "worker")]


# ---------------------------------------------------------------- the program

def test_each_distinct_base_is_resolved_once_per_run_also_without_the_preflight(remote_calls, preflight_calls):
    run = run_stack("local", NO_PREFLIGHT)
    assert [(r, p) for r, p, _ in remote_calls.references] == [(BASE, "linux/amd64")], "web and worker share it"
    assert preflight_calls == [], "acr-publish:preflight: false turns off the registry checks, not the resolution"
    assert len(run.of_type(IMAGE)) == 2


def test_a_moved_base_changes_every_tag_built_on_it(remote_calls, preflight_calls):
    remote_calls.digests[BASE] = "sha256:" + "1" * 64
    first = run_stack("local", NO_PREFLIGHT).outputs["images"]
    remote_calls.digests[BASE] = "sha256:" + "2" * 64
    second = run_stack("local", NO_PREFLIGHT).outputs["images"]
    assert all(first[n]["tag"] != second[n]["tag"] for n in ("web", "worker"))
    remote_calls.digests[BASE] = "sha256:" + "1" * 64
    assert run_stack("local", NO_PREFLIGHT).outputs["images"] == first


@pytest.mark.parametrize("kind,expected", [
    ("absent", "check the reference for a typo, or mirror the base into the stack's registry (127.0.0.1:5000)"),
    ("login", "give credentials for docker.io (`docker login docker.io`: the Docker config is read), pin the digest"),
    ("unreachable", "pin the digest (FROM <ref>@sha256:…) or mirror the base into the stack's registry "
                    "(127.0.0.1:5000), which this machine reaches"),
])
def test_a_base_that_cannot_be_resolved_declares_nothing(remote_calls, preflight_calls, kind, expected):
    remote_calls.fail[BASE] = ResolveFailure(f"a {kind} problem", kind)
    records: list = []
    with pytest.raises(Exception) as err:
        run_stack("local", records=records)
    msg = str(err.value)
    assert type(err.value).__name__ == "BuildPlanError"
    for i, name in enumerate(("web", "worker")):
        assert (f"acr-publish:images[{i}] ({name}): app/Dockerfile line 8: FROM {BASE} (host docker.io) cannot be "
                f"resolved for linux/amd64: a {kind} problem; fix: {expected}") in msg, msg
    assert records == [], f"declared {[r.urn for r in records]} although a base could not be resolved"


def test_the_stacks_login_goes_to_its_own_host_only(remote_calls, preflight_calls, project):
    """The personal (classic) stack logs in to registry.<region>.aliyuncs.com with its password: that login is handed
    to the resolution as the stack's, and credentials_for gives it only for that host."""
    run_stack("personal-example")
    [(_, _, login)] = {(r, p, s) for r, p, s in remote_calls.references}
    assert login.server == "registry.cn-hangzhou.aliyuncs.com" and login.password == TEST_SECRET
    assert credentials_for("registry.cn-hangzhou.aliyuncs.com", login).password == TEST_SECRET
    assert credentials_for("registry.cn-shanghai.aliyuncs.com", login).source != "the stack's login"
    assert TEST_SECRET not in repr(login)


def test_docker_config_credentials_are_used_for_other_hosts(tmp_path, monkeypatch):
    auth = base64.b64encode(b"mirror-user:mirror-pass").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"mirror.example.com": {"auth": auth},
                                                                "https://index.docker.io/v1/": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    stack = StackLogin("registry.example.com", "deployer", "stack-pass", False)
    found = credentials_for("mirror.example.com", stack)
    assert (found.username, found.password, found.source) == ("mirror-user", "mirror-pass", "the Docker config")
    assert credentials_for(locate("busybox").host, stack).username == "mirror-user"
    assert credentials_for("other.example.com", stack).source == "anonymous"
    assert credentials_for("REGISTRY.example.com", stack).password == "stack-pass"


def test_pinned_mode_names_each_unpinned_line_and_asks_nothing(remote_calls, preflight_calls, project):
    (project / "app" / "Dockerfile").write_text(
        (project / "app" / "Dockerfile").read_text() + "ADD https://example.invalid/x.tgz /x\n")
    records: list = []
    with pytest.raises(Exception) as err:
        run_stack("local", {**NO_PREFLIGHT, "acr-publish:images": images(remoteInputs="pinned")},
                  project_root=project, records=records)
    msg = str(err.value)
    assert (f"acr-publish:images[0] (web): app/Dockerfile line 8: FROM {BASE} has no digest, and remoteInputs is "
            "pinned; fix: write it as <ref>@sha256:<digest>") in msg, msg
    assert "ADD https://example.invalid/x.tgz is not pinned" in msg and "ADD --checksum=sha256:" in msg, msg
    assert remote_calls.references == [] and remote_calls.urls == [] and records == []


def test_ignore_mode_asks_nothing_pins_nothing_and_warns(remote_calls, preflight_calls):
    run = run_stack("local", {**NO_PREFLIGHT, "acr-publish:images": images(remoteInputs="ignore")})
    assert remote_calls.references == []
    assert all(r.inputs["build"]["dockerfile"] == "app/Dockerfile" for r in run.of_type(IMAGE))
    assert any("remoteInputs is ignore" in w and "never rebuilds" in w for w in run.warnings), run.warnings


def test_remote_inputs_setting_is_validated():
    with pytest.raises(ConfigError) as err:
        settings_from_values("local", {"registry": {"edition": "local"}, "images": [
            {"name": "web", "context": "app", "remoteInputs": "Pinned"},
            {"name": "worker", "context": "app", "remoteInputs": True}]}, region=None, has_password=False)
    assert err.value.problems == [
        "acr-publish:images[0].remoteInputs 'Pinned' is invalid: it must be one of resolve, pinned, ignore; try "
        "'pinned'",
        "acr-publish:images[1].remoteInputs True is invalid: it must be one of resolve, pinned, ignore"]


def test_a_remote_add_source_enters_the_tag(remote_calls, preflight_calls, project):
    url = "https://files.example.invalid/tool.tgz"
    (project / "app" / "Dockerfile").write_text(
        (project / "app" / "Dockerfile").read_text().replace("WORKDIR /srv\n", f"WORKDIR /srv\nADD {url} /tool\n"))
    tags = []
    for content in ("a", "b"):
        remote_calls.checksums[url] = "sha256:" + content * 64
        tags.append(run_stack("local", NO_PREFLIGHT, project_root=project).outputs["images"]["web"]["tag"])
    assert tags[0] != tags[1] and remote_calls.urls == [url, url], "once per run, shared by web and worker"
    staged = (project / ".acr-publish" / "pinned" / "local" / "web" / "Dockerfile").read_text()
    assert f"ADD --checksum=sha256:{'b' * 64} {url} /tool\n" in staged


# ---------------------------------------------------------------- the Dockerfile plan

def test_global_args_build_args_and_substitution_forms():
    text = (b"ARG REG=mirror.example.com\nARG NAME\nARG TAG=1\n"
            b"FROM ${REG}/${NAME:-base}:${TAG} AS a\n"
            b"FROM ${REG:+other.example.com/}lib/x${TAG+-set} AS b\n"
            b"FROM $REG/y:$TAG\n")
    plan = read_plan(text, {"TAG": "2"}, None, "linux/amd64")
    assert [r.reference for r in plan.references] == ["mirror.example.com/y:2"], "only the last stage is needed"
    plan = read_plan(text.replace(b"FROM $REG/y:$TAG\n", b"FROM a\nCOPY --from=b / /\n"), {"TAG": "2"}, None,
                     "linux/amd64")
    assert [r.reference for r in plan.references] == ["mirror.example.com/base:2", "other.example.com/lib/x-set"]
    assert plan.chain == (2, 0) and plan.needed == (0, 1, 2)


def test_undeclared_build_args_do_not_reach_from_and_unknown_forms_are_refused():
    plan = read_plan(b"FROM ${BASE:-busybox}\n", {"BASE": "alpine"}, None, "linux/amd64")
    assert plan.references[0].reference == "busybox", "a build arg reaches FROM only through a global ARG"
    with pytest.raises(DockerfileProblem) as err:
        read_plan(b"ARG A=x\nFROM ${A/x/y}\n", {}, None, "linux/amd64")
    assert err.value.line == 2


def test_platform_args_and_from_platform():
    plan = read_plan(b"FROM --platform=$BUILDPLATFORM tool AS t\nFROM base-${TARGETARCH}\nCOPY --from=t / /\n",
                     {}, None, "linux/arm64")
    tool, base = plan.references
    assert base.reference == "base-arm64" and base.platform == "linux/arm64" and base.label == "FROM base-arm64"
    assert tool.platform.startswith("linux/") and tool.label.startswith("FROM tool")


def test_scratch_stage_references_and_pinned_references():
    digest = "sha256:" + "c" * 64
    plan = read_plan(f"FROM scratch AS a\nFROM x@{digest} AS b\nFROM a\nCOPY --from=b / /\n".encode(), {}, None,
                     "linux/amd64")
    assert [(r.reference, r.pinned) for r in plan.references] == [(f"x@{digest}", True)]
    assert plan.chain == (2, 0)
