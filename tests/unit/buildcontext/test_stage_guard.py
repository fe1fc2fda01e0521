"""The guard knows which stages ship: a credential-looking build arg or Dockerfile line is refused only when a stage
on the target's FROM chain (the stages whose instructions become the shipped image's history) uses it; used only by
a builder stage whose output is copied, it passes with one info line saying why and what still sees it."""
from __future__ import annotations

from pathlib import Path

import pytest

from buildcontext import ContextScan, SensitiveFilesError
from buildcontext.stages import read_plan

TOKEN = "npm_" + "Zq7Xw3Vb9K" * 3 + "r2T4y6"  # the shape of an npm token, assembled at run time
ARGS = {"NPM_TOKEN": TOKEN, "APP_ENV": "prod"}

BUILDER_ONLY = ("FROM scratch AS builder\nARG NPM_TOKEN\nCOPY . /src\n"
                "FROM scratch AS web\nCOPY --from=builder /src /app\n")
ON_CHAIN = ("FROM scratch AS base\nARG NPM_TOKEN\nCOPY . /src\n"
            "FROM base AS web\nCOPY . /app\n")


def context(tmp_path: Path, dockerfile: str) -> tuple[Path, Path]:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    df = tmp_path / "Dockerfile"  # outside the context: only its text can carry a credential
    df.write_text(dockerfile)
    return ctx, df


def report(tmp_path: Path, dockerfile: str, args: dict, target: str = "web"):
    ctx, df = context(tmp_path, dockerfile)
    plan = read_plan(df.read_bytes(), args, target, "linux/amd64")
    with ContextScan(ctx, df, cache=False) as scan:
        return scan.report(args, target, "linux/amd64", stages=plan)


def test_a_build_arg_declared_only_in_a_builder_stage_passes_with_one_info_line(tmp_path):
    result = report(tmp_path, BUILDER_ONLY, ARGS)
    assert result.off_chain_args == ("NPM_TOKEN",)
    [line] = result.off_chain
    assert "build arg NPM_TOKEN" in line and "only stage builder declares it" in line and "(web)" in line
    assert "build cache of that stage" in line and "as a secret" in line and TOKEN not in line


def test_a_build_arg_declared_on_the_from_chain_is_refused_with_advice_docker_image_can_follow(tmp_path):
    with pytest.raises(SensitiveFilesError) as err:
        report(tmp_path, ON_CHAIN, ARGS)
    msg = str(err.value)
    assert "buildArg:NPM_TOKEN" in msg and "COPY --from=<builder>" in msg
    assert "docker.Image passes no build secrets" in msg
    assert "mount=type=secret" not in msg and TOKEN not in msg


def test_the_same_dockerfile_refuses_when_the_target_is_the_builder(tmp_path):
    with pytest.raises(SensitiveFilesError):
        report(tmp_path, BUILDER_ONLY, ARGS, target="builder")


def test_a_credential_in_the_text_of_a_builder_stage_only_passes_with_one_info_line(tmp_path):
    text = f"FROM scratch AS builder\nRUN echo {TOKEN} > /t\nFROM scratch AS web\nCOPY --from=builder /t /t\n"
    result = report(tmp_path, text, {"APP_ENV": "prod"})
    [line] = result.off_chain
    assert "the Dockerfile's stage builder holds a credential" in line and "FROM chain (web)" in line
    assert TOKEN not in line


def test_a_credential_in_the_text_of_the_shipped_chain_is_refused(tmp_path):
    text = f"FROM scratch AS builder\nCOPY . /\nFROM builder AS web\nRUN echo {TOKEN} > /t\n"
    with pytest.raises(SensitiveFilesError) as err:
        report(tmp_path, text, {"APP_ENV": "prod"})
    assert "the Dockerfile" in str(err.value) and TOKEN not in str(err.value)


def test_a_global_arg_line_counts_as_shipped(tmp_path):
    text = f"ARG T={TOKEN}\nFROM scratch AS builder\nFROM scratch AS web\nCOPY --from=builder / /\n"
    with pytest.raises(SensitiveFilesError):
        report(tmp_path, text, {"APP_ENV": "prod"})


def test_a_dockerfile_sent_in_the_context_is_still_refused_as_a_file(tmp_path):
    """Only the history is off the chain: the Dockerfile itself, sent in the context, is still a file the build
    sees, so the file rule (and its .dockerignore fix) applies."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    text = f"FROM scratch AS builder\nRUN echo {TOKEN} > /t\nFROM scratch AS web\nCOPY . /\n"
    (ctx / "Dockerfile").write_text(text)
    plan = read_plan(text.encode(), {}, "web", "linux/amd64")
    with ContextScan(ctx, cache=False) as scan, pytest.raises(SensitiveFilesError) as err:
        scan.report({}, "web", "linux/amd64", stages=plan)
    assert "would send 1 sensitive path" in str(err.value) and "Dockerfile" in str(err.value)


ASSIGNED = "password=" + "Qm7#vL2x" + "9"  # a value the assignment rule judges a secret, whatever the arg's name


def test_an_arg_assigning_a_secret_is_refused_on_the_chain_and_passes_in_a_builder_stage(tmp_path):
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    builder = ("FROM scratch AS builder\nARG APP_CONFIG\nCOPY . /src\n"
               "FROM scratch AS web\nCOPY --from=builder /src /app\n")
    result = report(tmp_path / "off", builder, {"APP_CONFIG": ASSIGNED})
    assert result.off_chain_args == ("APP_CONFIG",) and ASSIGNED not in "".join(result.off_chain)
    with pytest.raises(SensitiveFilesError) as err:
        report(tmp_path / "on", builder.replace("AS web\n", "AS web\nARG APP_CONFIG\n"), {"APP_CONFIG": ASSIGNED})
    assert "buildArg:APP_CONFIG" in str(err.value) and ASSIGNED not in str(err.value)


def test_a_secret_assigned_in_a_builder_stage_line_only_passes_and_on_the_chain_is_refused(tmp_path):
    (tmp_path / "off").mkdir()
    (tmp_path / "on").mkdir()
    text = ("FROM scratch AS builder\nENV DB_PASSWORD=Zx9kq2mW1\nRUN x\n"
            "FROM scratch AS web\nCOPY --from=builder /t /t\n")
    result = report(tmp_path / "off", text, {})
    assert any("stage builder holds a credential" in line for line in result.off_chain)
    with pytest.raises(SensitiveFilesError):
        report(tmp_path / "on", text.replace("FROM scratch AS web", "FROM builder AS web"), {})
