"""Remote inputs through the real program under mocks, and the Dockerfile plan they come from.

The two network calls (a registry's manifest, a remote ADD source) are tests/conftest.py's `remote_calls` recorder
here; tests/e2e/test_remote_inputs.py makes them for real against `docker-registry` and a loopback server.
"""
from __future__ import annotations

import base64
import os
import json
from pathlib import Path

import pytest

from buildcontext.plan import parse_commands
from buildcontext.stages import DockerfileProblem, read_plan
from components.remote_inputs import ResolveFailure, credentials_for, locate
from registryclient.login import RegistryLogin
from components.config.problems import ConfigError
from components.config.validate import settings_from_values
from tests.harness import IMAGE, NO_PREFLIGHT, TEST_SECRET, run_stack

BASE = "busybox:1.36.1-musl"


def images(**extra) -> list[dict]:
    return [{"name": n, "context": "app", "target": n, "buildArgs": {"APP_ENV": "local"}, **extra}
            for n in ("web", "worker")]


# ---------------------------------------------------------------- the program
# The local stack's images with the Dockerfile's default base (the shipped stack builds FROM a base in its own
# registry): a base on another host, found through the Docker config or anonymously.
ON_DOCKER_HUB = {"acr-publish:images": images()}

def test_each_distinct_base_is_resolved_once_per_run_also_without_the_preflight(remote_calls, preflight_calls):
    run = run_stack("local", {**NO_PREFLIGHT, **ON_DOCKER_HUB})
    assert [(r, p) for r, p, _ in remote_calls.references] == [(BASE, "linux/amd64")], "web and worker share it"
    assert preflight_calls == [], "acr-publish:preflight: false turns off the registry checks, not the resolution"
    assert len(run.of_type(IMAGE)) == 2


def test_under_the_recorder_no_reference_dials_out_also_two_on_one_host(remote_calls, preflight_calls, project,
                                                                       monkeypatch):
    """Two references on one host share a client that logs in first: that login is the recorder's too, so a test
    never looks a public host up (a lookup would leave the machine)."""
    import socket

    dialled: list = []

    def no_lookup(host, *args, **kwargs):
        dialled.append(host)
        raise OSError("a test looked a host up")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    (project / "app" / "Dockerfile").write_text("FROM busybox:1 AS web\nCOPY --from=alpine:3 / /\n")
    run_stack("local", {**NO_PREFLIGHT, "acr-publish:images": [{"name": "web", "context": "app"}]},
              project_root=project)
    assert sorted(r for r, _, _ in remote_calls.references) == ["alpine:3", "busybox:1"] and dialled == []


def test_a_moved_base_changes_every_tag_built_on_it(remote_calls, preflight_calls):
    remote_calls.digests[BASE] = "sha256:" + "1" * 64
    first = run_stack("local", {**NO_PREFLIGHT, **ON_DOCKER_HUB}).outputs["images"]
    remote_calls.digests[BASE] = "sha256:" + "2" * 64
    second = run_stack("local", {**NO_PREFLIGHT, **ON_DOCKER_HUB}).outputs["images"]
    assert all(first[n]["tag"] != second[n]["tag"] for n in ("web", "worker"))
    remote_calls.digests[BASE] = "sha256:" + "1" * 64
    assert run_stack("local", {**NO_PREFLIGHT, **ON_DOCKER_HUB}).outputs["images"] == first


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
        run_stack("local", ON_DOCKER_HUB, records=records)
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
    assert credentials_for("registry.cn-hangzhou.aliyuncs.com", login).login.password == TEST_SECRET
    assert credentials_for("registry.cn-shanghai.aliyuncs.com", login).source != "the stack's login"
    assert TEST_SECRET not in repr(login)


def test_docker_config_credentials_are_used_for_other_hosts(tmp_path, monkeypatch):
    auth = base64.b64encode(b"mirror-user:mirror-pass").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"mirror.example.com": {"auth": auth},
                                                                "https://index.docker.io/v1/": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    stack = RegistryLogin("registry.example.com", "deployer", "stack-pass", False)
    found = credentials_for("mirror.example.com", stack)
    assert (found.login.username, found.login.password, found.source) == ("mirror-user", "mirror-pass",
                                                                           "the Docker config")
    assert credentials_for(locate("busybox").host, stack).login.username == "mirror-user"
    assert credentials_for("other.example.com", stack).source == "anonymous"
    assert credentials_for("REGISTRY.example.com", stack).login.password == "stack-pass"
    assert "mirror-pass" not in repr(found) and "stack-pass" not in repr(credentials_for("REGISTRY.example.com", stack))


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
    tags, staged = [], []
    for content in ("a", "b"):
        remote_calls.checksums[url] = "sha256:" + content * 64
        run = run_stack("local", NO_PREFLIGHT, project_root=project)
        tags.append(run.outputs["images"]["web"]["tag"])
        staged.append(run.by_name("web-image").inputs["build"]["dockerfile"])
    assert tags[0] != tags[1] and remote_calls.urls == [url, url], "once per run, shared by web and worker"
    assert staged[0] != staged[1], "each plan's pins in their own file: the first plan's build still reads its own"
    for content, path in zip("ab", staged):
        assert f"ADD --checksum=sha256:{content * 64} {url} /tool\n" in (project / path).read_text()


def test_a_checksum_from_a_build_arg_pins_the_source_without_a_request(remote_calls, preflight_calls, project):
    """BuildKit expands ARGs in ADD --checksum (Docker 26's built-in frontend; tests/e2e/test_remote_inputs.py shows
    it on the engine): the source is pinned by the expanded value, asked for by nobody, and the value is the tag's."""
    url = "https://files.example.invalid/tool.tgz"
    (project / "ctx").mkdir()
    (project / "ctx" / "Dockerfile").write_text(
        f"ARG TOOL_SUM\nFROM scratch\nARG TOOL_SUM\nADD --checksum=${{TOOL_SUM}} {url} /tool\n")
    tags = []
    for content in "ab":
        run = run_stack("local", {**NO_PREFLIGHT, "acr-publish:images": [
            {"name": "web", "context": "ctx", "buildArgs": {"TOOL_SUM": "sha256:" + content * 64}}]},
            project_root=project)
        tags.append(run.outputs["images"]["web"]["tag"])
        staged = (project / run.by_name("web-image").inputs["build"]["dockerfile"]).read_text()
        assert "ADD --checksum=${TOOL_SUM} " in staged, "the build expands it as the plan did"
    assert remote_calls.urls == [] and tags[0] != tags[1]
    plan = read_plan(f"FROM scratch\nARG SUM=sha256:{'c' * 64}\nADD --checksum=$SUM {url} /t\n".encode(), {}, None,
                     "linux/amd64")
    assert [(s.checksum, s.pinned) for s in plan.sources] == [("sha256:" + "c" * 64, True)], "the ARG's default"


@pytest.mark.parametrize("arg,says", [
    ("ARG SUM", "expands to nothing"),
    ("ARG SUM=md5:0123", "expands to a value that is not sha256:<64 hex digits>"),
])
def test_a_checksum_variable_that_is_no_checksum_is_refused_with_its_line(arg, says, remote_calls, project):
    (project / "ctx").mkdir()
    (project / "ctx" / "Dockerfile").write_text(f"FROM scratch\n{arg}\nADD --checksum=$SUM http://127.0.0.1:9/t /t\n")
    records: list = []
    with pytest.raises(Exception) as err:
        run_stack("local", {**NO_PREFLIGHT, "acr-publish:images": [{"name": "web", "context": "ctx"}]},
                  project_root=project, records=records)
    msg = str(err.value)
    assert f"ctx/Dockerfile line 3: ADD --checksum=$SUM {says}" in msg, msg
    assert "fix: give the variable the file's sha256:<digest>" in msg and "md5:0123" not in msg
    assert remote_calls.urls == [] and records == []


def test_a_checksum_from_the_base_images_environment_is_refused():
    [(line, problem)] = _refused("FROM busybox\nADD --checksum=$SUM http://127.0.0.1:9/t /t\n")
    assert line == 2 and problem.startswith("ADD --checksum=$SUM uses $SUM, which this stage does not declare")


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
    plan = read_plan(b"ARG A=x\nFROM ${A/x/y}\n", {}, None, "linux/amd64")
    assert plan.references[0].reference == "y"
    with pytest.raises(DockerfileProblem) as err:
        read_plan(b"ARG A=x\nFROM ${A^^}\n", {}, None, "linux/amd64")
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



def _digest_of(reference: str) -> str:
    return "sha256:" + {"r/a:1": "1", "r/a:1.0": "2", "r/c:1": "3"}[reference] * 64


def test_every_from_value_on_a_line_is_pinned_exactly_by_its_position():
    """Two mounts of one image, a reference that is a prefix of another, and the same text among the command's
    words: each flag's value is replaced as a whole, and nothing else on the line."""
    text = ("FROM r/a:1\n"
            "RUN --mount=type=bind,from=r/c:1,target=/x --mount=type=bind,from=r/c:1,target=/y cat /y/m\n"
            "RUN --mount=type=bind,from=r/a:1.0,target=/x --mount=from=r/a:1,target=/y echo from=r/a:1\n"
            "COPY --from=r/a:1.0 --chown=1 /a /b\n")
    plan = read_plan(text.encode(), {}, None, "linux/amd64")
    staged = plan.pinned_text({r: _digest_of(r.reference) for r in plan.references}, {})
    one, two, three = (_digest_of(r) for r in ("r/a:1", "r/a:1.0", "r/c:1"))
    assert staged == (f"FROM r/a:1@{one}\n"
                      f"RUN --mount=type=bind,from=r/c:1@{three},target=/x --mount=type=bind,from=r/c:1@{three},"
                      "target=/y cat /y/m\n"
                      f"RUN --mount=type=bind,from=r/a:1.0@{two},target=/x --mount=from=r/a:1@{one},target=/y "
                      "echo from=r/a:1\n"
                      f"COPY --from=r/a:1.0@{two} --chown=1 /a /b\n")


@pytest.mark.parametrize("inside", ["\r", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"])
def test_the_pin_lands_on_the_line_buildkit_numbers_whatever_a_comment_holds(inside):
    """BuildKit's lines end at `\\n` only: a comment holding another line break of Unicode's is one line, and the
    FROM after it is the one pinned (else the build would pull by tag under a tag naming the digest)."""
    text = f"# note{inside}here\nFROM r/a:1 AS base\nRUN true\n"
    plan = read_plan(text.encode(), {}, None, "linux/amd64")
    staged = plan.pinned_text({r: _digest_of(r.reference) for r in plan.references}, {})
    assert staged == f"# note{inside}here\nFROM r/a:1@{_digest_of('r/a:1')} AS base\nRUN true\n"


def test_the_staged_dockerfile_keeps_every_byte_that_is_no_utf8():
    data = b"FROM r/a:1\nLABEL a=caf\xe9 b=\xff\xfe\nRUN true\n"
    plan = read_plan(data, {}, None, "linux/amd64")
    staged = plan.pinned_text({r: _digest_of(r.reference) for r in plan.references}, {})
    assert staged.encode("utf-8", errors="surrogateescape") == data.replace(
        b"FROM r/a:1\n", f"FROM r/a:1@{_digest_of('r/a:1')}\n".encode())


def test_a_from_flag_that_cannot_be_pinned_in_place_is_refused():
    plan = read_plan(b"FROM scratch\nRUN --network=none \\\n --mount=from=r/c:1,target=/x true\n", {}, None,
                     "linux/amd64")
    with pytest.raises(DockerfileProblem, match="cannot pin RUN --mount r/c:1: the instruction.s flags continue past its first line"):
        plan.pinned_text({r: _digest_of(r.reference) for r in plan.references}, {})


def test_a_quoted_from_is_read_and_pinned_as_buildkits_parser_reads_it():
    """BuildKit's parser removes a flag's quotes (`--from="r/a:1"` is `--from=r/a:1`; Docker 26 builds it so):
    the pinned text, parsed again, names the digests, a quoted CSV mount field kept whole."""
    text = ('FROM scratch\nCOPY --from="r/a:1" /a /b\nCOPY --from=\'r/a:1\' --chown=1 /a /c\n'
            "RUN --mount='type=bind,from=r/c:1,\"target=/x,y\"' true\n")
    plan = read_plan(text.encode(), {}, None, "linux/amd64")
    staged = plan.pinned_text({r: _digest_of(r.reference) for r in plan.references}, {})
    one, three = _digest_of("r/a:1"), _digest_of("r/c:1")
    flags = [c.flags for c in parse_commands(staged)[1:]]
    assert flags == [(f"--from=r/a:1@{one}",), (f"--from=r/a:1@{one}", "--chown=1"),
                     (f'--mount=type=bind,from=r/c:1@{three},"target=/x,y"',)]


# ---------------------------------------------------------------- what the plan cannot compute is refused

def _refused(text: str, platform: str = "linux/amd64") -> list[tuple[int, str]]:
    return list(read_plan(text.encode(), {}, None, platform).refused)


def test_env_and_arg_set_one_environment_in_order_as_buildkit_does():
    """Within a stage (and from its FROM parents) ENV and ARGs with a value set one environment, the last one
    winning (tests/e2e/test_remote_inputs.py compares with the engine's fetches); what the base image's
    environment may set is refused with its line, never fetched with a guessed value."""
    def urls(text: str, build_args: dict | None = None) -> list[str]:
        plan = read_plan(text.encode(), build_args or {}, None, "linux/amd64")
        assert plan.refused == (), plan.refused
        return [s.url for s in plan.sources]

    assert urls("FROM scratch\nENV U=http://127.0.0.1:9/f\nADD $U /f\n") == ["http://127.0.0.1:9/f"]
    assert urls("FROM scratch\nARG V=a\nENV U=http://127.0.0.1:9/${V}.txt\nADD $U /f\n") == ["http://127.0.0.1:9/a.txt"]
    assert urls("FROM busybox\nENV S=b\nARG S=a\nADD http://127.0.0.1:9/$S /f\n") == ["http://127.0.0.1:9/a"]
    assert urls("FROM scratch\nARG S=a\nENV S=b\nADD http://127.0.0.1:9/$S /f\n") == ["http://127.0.0.1:9/b"]
    assert urls("FROM scratch AS p\nARG S=a\nFROM p\nADD http://127.0.0.1:9/$S /f\n") == ["http://127.0.0.1:9/a"], \
        "a FROM parent's ARG values reach the child"
    assert urls("FROM busybox AS p\nENV S=b\nFROM p\nARG S\nADD http://127.0.0.1:9/$S /f\n", {"S": "c"}) == \
        ["http://127.0.0.1:9/c"]
    [(line, problem)] = _refused("FROM busybox\nADD http://127.0.0.1:9/f-${VERSION} /f\n")
    assert line == 2 and "does not declare" in problem and "ARG VERSION=<value>" in problem
    [(line, problem)] = _refused("FROM busybox\nARG VERSION\nADD http://127.0.0.1:9/f-${VERSION} /f\n")
    assert line == 3 and "which this stage declares without a value: BuildKit takes it from the base image's" in problem
    [(line, problem)] = _refused("FROM busybox AS p\nENV P=$HOME/x\nFROM p\nADD http://127.0.0.1:9/$P /f\n")
    assert line == 4 and "uses $P, which line 2 sets to a value this plan cannot compute" in problem, problem
    assert urls("FROM scratch\nENV S=\"x\" T='$S'\\ u\nADD http://127.0.0.1:9/$S-$T /f\n") == \
        ["http://127.0.0.1:9/x-$S u"], "quoted ENV values are computed as BuildKit processes them"
    assert urls("FROM scratch\nENV P=a\nENV P=b Q=$P\nADD http://127.0.0.1:9/$Q-$P /f\n") == \
        ["http://127.0.0.1:9/a-b"], "every word of one ENV line is expanded with the values from before the line"
    assert urls("FROM scratch\nARG P=a\nARG P=b Q=$P\nADD http://127.0.0.1:9/$Q-$P /f\n") == \
        ["http://127.0.0.1:9/a-b"], "so is every default of one ARG line"


def test_platform_args_reach_a_stage_only_when_it_declares_them():
    undeclared = read_plan(b"FROM scratch\nADD http://127.0.0.1:9/t-$TARGETARCH /t\n", {}, None, "linux/arm64")
    assert [s.url for s in undeclared.sources] == ["http://127.0.0.1:9/t-"], "BuildKit: empty when not declared"
    declared = read_plan(b"FROM scratch\nARG TARGETARCH\nADD http://127.0.0.1:9/t-$TARGETARCH /t\n", {}, None,
                         "linux/arm64")
    assert [s.url for s in declared.sources] == ["http://127.0.0.1:9/t-arm64"]


def test_several_remote_sources_in_one_add_are_refused():
    [(line, problem)] = _refused("FROM scratch\nADD http://127.0.0.1:9/a http://127.0.0.1:9/b /d/\n")
    assert line == 2 and "2 remote sources" in problem and "fix: one ADD per URL" in problem


@pytest.mark.parametrize("path", ["/d/../x", "/./x", "/d/..", "/a/./b?q=1"])
def test_a_url_path_with_dot_segments_is_refused_unless_pinned(path):
    """BuildKit's client fetches such a path as written, requests resolves it first: never hashed, refused with
    the fix; a --checksum pins it without a request."""
    [(line, problem)] = _refused(f"FROM scratch\nADD http://127.0.0.1:9{path} /f\n")
    assert line == 2 and f"ADD http://127.0.0.1:9{path} has a '.' or '..' segment in its URL's path" in problem
    assert "fix: write the path without them, or pin it with ADD --checksum=sha256:<digest>" in problem
    plan = read_plan(f"FROM scratch\nADD --checksum=sha256:{'c' * 64} http://127.0.0.1:9{path} /f\n".encode(), {},
                     None, "linux/amd64")
    assert plan.refused == () and [s.pinned for s in plan.sources] == [True]


@pytest.mark.parametrize("url, kind", [
    ("https://127.0.0.1:9/r.git?x=1", "git"), ("https://127.0.0.1:9/r.git#main", "git"),
    ("HTTPS://127.0.0.1:9/r.git", "git"), ("https://127.0.0.1:9/r%2Egit", "git"), ("git@127.0.0.1:r", "git"),
    ("ssh://127.0.0.1/r", "git"), ("https://127.0.0.1:9/r.git/f", "http"), ("https://127.0.0.1:9/r.gitx", "http"),
])
def test_a_git_source_is_detected_as_buildkit_detects_it(url, kind):
    """dockerfile2llb takes a source for git when gitutil.ParseGitRef does: http(s) when the URL's path, without
    its query, ends in .git."""
    plan = read_plan(f"FROM scratch\nADD {url} /f\n".encode(), {}, None, "linux/amd64")
    assert [s.kind for s in plan.sources] == [kind], plan


@pytest.mark.parametrize("text, says", [
    ("FROM busybox AS a\nCOPY --from=later /x /x\nFROM busybox AS later\n", "BuildKit refuses it"),
    ("FROM scratch\nCOPY --from=1 /x /x\nFROM scratch\n", "BuildKit refuses it"),
    ("FROM scratch AS s\nCOPY --from=$S /x /x\nFROM scratch\n",
     "COPY --from=$S: BuildKit expands no variable in a --from (it takes it as an image name"),
    ("FROM scratch AS s\nRUN --mount=type=bind,from=${S},target=/m true\nFROM scratch\n",
     "RUN --mount=...,from=${S}: BuildKit expands no variable in a --from (it refuses a variable there)"),
])
def test_copy_from_a_later_stage_or_a_variable_is_refused_without_a_request(text, says, remote_calls, project):
    """Also in a stage the target does not need, as Docker 26's BuildKit refuses these before building; a `$` in a
    --from is never expanded by BuildKit (tests/e2e/test_remote_inputs.py shows it on the engine)."""
    with pytest.raises(DockerfileProblem) as err:
        read_plan(text.encode(), {"S": "s"}, "a" if "AS a" in text else None, "linux/amd64")
    assert err.value.line == 2 and says in str(err.value), err.value
    if "$" in text:
        assert "fix: name the stage or image literally, or a stage built on it (FROM <image> AS <name>" in \
            str(err.value)
    (project / "ctx").mkdir()
    (project / "ctx" / "Dockerfile").write_text(text)
    with pytest.raises(Exception) as raised:
        run_stack("local", {**NO_PREFLIGHT, "acr-publish:images": [
            {"name": "web", "context": "ctx", **({"target": "a"} if "AS a" in text else {})}]}, project_root=project)
    assert type(raised.value).__name__ == "BuildPlanError" and "line 2" in str(raised.value)
    assert remote_calls.references == [], "nothing is looked up on Docker Hub"


# ---------------------------------------------------------------- credentials in a source URL

TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
FETCH_STAGE = ("FROM scratch AS fetch\nARG GITHUB_TOKEN\n{add} /tool\n"
               "FROM scratch\nCOPY --from=fetch /tool /tool\n")


def _files_holding(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("add", [
    "ADD http://x:${GITHUB_TOKEN}@127.0.0.1:9/tool",
    "ADD https://x:${GITHUB_TOKEN}@git.example.invalid/org/tool.git#main",
])
def test_a_source_url_with_user_info_is_refused_unfetched_and_never_shown(add, remote_calls, project, tmp_path):
    """A credential build arg the stage guard allows (only a builder stage declares it) substituted into a URL:
    never fetched, and neither the message, the warnings nor any file written holds it."""
    (project / "ctx").mkdir()
    (project / "ctx" / "Dockerfile").write_text(FETCH_STAGE.format(add=add))
    warnings: list[str] = []
    with pytest.raises(Exception) as err:
        run_stack("local", {**NO_PREFLIGHT, "acr-publish:images": [
            {"name": "web", "context": "ctx", "buildArgs": {"GITHUB_TOKEN": TOKEN}}]}, project_root=project,
            warnings=warnings)
    msg = str(err.value)
    assert f"ctx/Dockerfile line 3: {add} holds user info" in msg, msg
    assert "pin it with ADD --checksum=sha256:<digest>" in msg and "remoteInputs: ignore" in msg
    assert TOKEN not in msg + "".join(warnings)
    assert remote_calls.urls == []
    assert _files_holding(project, TOKEN) == [] and _files_holding(tmp_path, TOKEN) == []


def test_a_pinned_source_with_user_info_is_labelled_without_it(remote_calls, project, tmp_path):
    checksum = "sha256:" + "d" * 64
    (project / "ctx").mkdir()
    (project / "ctx" / "Dockerfile").write_text(FETCH_STAGE.format(
        add=f"ADD --checksum={checksum} http://x:${{GITHUB_TOKEN}}@127.0.0.1:9/tool"))
    run = run_stack("local", {**NO_PREFLIGHT, "acr-publish:images": [
        {"name": "web", "context": "ctx", "buildArgs": {"GITHUB_TOKEN": TOKEN}}]}, project_root=project)
    assert run.outputs["images"]["web"]["tag"] and remote_calls.urls == []
    plan = read_plan((project / "ctx" / "Dockerfile").read_bytes(), {"GITHUB_TOKEN": TOKEN}, None, "linux/amd64")
    assert [s.label for s in plan.sources] == ["ADD http://127.0.0.1:9/tool"]
    cache = Path(os.environ["XDG_CACHE_HOME"])
    assert _files_holding(project, TOKEN) == [] and _files_holding(cache, TOKEN) == []


# ---------------------------------------------------------------- where the pinned Dockerfile is staged

def _root_context_settings(root: Path):
    from components.config.schema import ImageSettings, RegistrySettings, Settings

    img = ImageSettings(name="web", context=".", dockerfile="Dockerfile")
    return Settings(stack="s", region=None, registry=RegistrySettings(edition="local", namespace=None,
                                                                        server="127.0.0.1:1"),
                    images=(img,), protect=False, retain_on_delete=False, preflight=False, project_root=root)


def test_a_context_holding_the_staging_directory_is_refused_on_the_first_run(remote_calls, tmp_path, monkeypatch):
    """Decided from the paths: on the first run `.acr-publish/` does not exist yet, and the build would send it."""
    from components import image as image_module

    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "p"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM scratch\nADD http://127.0.0.1:9/tool /tool\n")
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(_root_context_settings(root))
    assert ("acr-publish:images[0] (web): the context . holds .acr-publish/, where acr-publish stages the pinned "
            "Dockerfiles") in str(err.value)
    assert "add the line .acr-publish/ to .dockerignore" in str(err.value)
    assert not (root / ".acr-publish").exists()
    (root / ".dockerignore").write_text(".acr-publish/\n!.acr-publish/keep\n")
    with pytest.raises(image_module.BuildPlanError):
        image_module.plan_builds(_root_context_settings(root)), "an exception re-includes part of it"
    (root / ".dockerignore").write_text(".acr-publish/\n")
    plan = image_module.plan_builds(_root_context_settings(root))["web"]
    assert (root / plan.dockerfile).is_file()


def test_a_second_plan_never_rewrites_the_first_plans_staged_dockerfile(remote_calls, tmp_path, monkeypatch):
    from components import image as image_module

    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "p"
    (root / "app").mkdir(parents=True)
    (root / "app" / "Dockerfile").write_text("FROM scratch\nADD http://127.0.0.1:9/tool /tool\n")
    (root / "app" / "Dockerfile.dockerignore").write_text("*.tmp\n")
    settings = _root_context_settings(root)
    settings = type(settings)(**{**settings.__dict__, "images": (type(settings.images[0])(
        name="web", context="app", dockerfile="app/Dockerfile"),)})
    remote_calls.checksums["http://127.0.0.1:9/tool"] = "sha256:" + "a" * 64
    first = image_module.plan_builds(settings)["web"]
    staged = (root / first.dockerfile).read_bytes()
    remote_calls.checksums["http://127.0.0.1:9/tool"] = "sha256:" + "b" * 64
    second = image_module.plan_builds(settings)["web"]  # a concurrent preview between the first plan and its build
    assert second.dockerfile != first.dockerfile and second.tag != first.tag
    assert (root / first.dockerfile).read_bytes() == staged and b"a" * 64 in staged
    assert (root / (first.dockerfile + ".dockerignore")).read_text() == "*.tmp\n"
    assert image_module.plan_builds(settings)["web"].dockerfile == second.dockerfile, "same content, same path"
    assert not [p for p in (root / ".acr-publish").rglob(".staging-*")], "no temporary file left behind"


def test_an_empty_trim_pattern_is_refused_under_ignore_too(remote_calls, preflight_calls, project):
    """It crashes Docker 26's engine wherever BuildKit expands it: no remoteInputs mode lets it reach a build."""
    (project / "ctx").mkdir()
    (project / "ctx" / "Dockerfile").write_text("FROM scratch\nARG V=x\nLABEL a=${V%}\n")
    records: list = []
    with pytest.raises(Exception) as raised:
        run_stack("local", {**NO_PREFLIGHT, "acr-publish:images": [
            {"name": "web", "context": "ctx", "remoteInputs": "ignore"}]}, project_root=project, records=records)
    assert type(raised.value).__name__ == "BuildPlanError", raised.value
    assert "line 3" in str(raised.value) and "crashes on it" in str(raised.value), raised.value
    assert records == [] and remote_calls.references == []
