"""The frontend image a Dockerfile is read with (`# syntax=`, BUILDKIT_SYNTAX) in its plan and its pinned text."""
from __future__ import annotations

import pytest

from buildcontext import stage_args
from buildcontext.stages import read_plan

FE = "127.0.0.1:5000/frontend/dockerfile:1.7"
DIGEST = "sha256:" + "a" * 64


def frontends(text: str, build_args: dict | None = None, platform: str = "linux/amd64") -> list[tuple]:
    plan = read_plan(text.encode(), build_args or {}, None, platform)
    return [(r.line, r.instruction, r.reference) for r in plan.references if r.instruction != "FROM"]


@pytest.mark.parametrize("text, line", [
    (f"# syntax={FE}\nFROM scratch\n", 1),
    (f"#syntax={FE}\nFROM scratch\n", 1),
    (f"# SYNTAX = {FE}  \r\nFROM scratch\n", 1),  # the key is case-insensitive; spaces and CR around it dropped
    (f"# escape=`\n# syntax={FE}\nFROM scratch\n", 2),  # after another directive
    (f"#!/usr/bin/env docker-build\n# syntax={FE}\nFROM scratch\n", 2),  # a shebang line is skipped
    (f"\ufeff# syntax={FE}\nFROM scratch\n", 1),
    (f"// syntax={FE}\nFROM scratch\n", 1),  # DetectSyntax's second comment form
    (f"# syntax={FE} --frontend-opt x\nFROM scratch\n", 1),  # the image is the value up to its first space
])
def test_the_directive_is_found_where_buildkit_finds_it(text, line):
    assert frontends(text) == [(line, "# syntax", FE)]


@pytest.mark.parametrize("text", [
    f"# a comment\n# syntax={FE}\nFROM scratch\n",  # directives end at the first other line
    f"\n# syntax={FE}\nFROM scratch\n",
    f"FROM scratch\n# syntax={FE}\n",
    f"# unknown=1\n# syntax={FE}\nFROM scratch\n",
])
def test_a_syntax_line_after_the_directives_is_a_comment(text):
    assert frontends(text) == []


def test_the_frontend_is_resolved_for_the_build_hosts_platform_not_the_targets(monkeypatch):
    monkeypatch.setattr(stage_args.host_platform, "machine", lambda: "aarch64")
    plan = read_plan(f"# syntax={FE}\nFROM busybox\n".encode(), {}, None, "linux/amd64")
    syntax, base = plan.references
    assert (syntax.platform, base.platform) == ("linux/arm64", "linux/amd64")
    assert syntax.label == f"# syntax {FE}", "no platform in the label: it is always the build host's"


def test_the_build_arg_overrides_the_directive():
    text = f"# syntax={FE}\nFROM scratch\n"
    assert frontends(text, {"BUILDKIT_SYNTAX": " other/fe:1 --opt"}) == [(0, "BUILDKIT_SYNTAX", "other/fe:1")]


def test_pinned_text_writes_the_directive_with_the_digest_and_nothing_else():
    text = f"\ufeff# escape=\\\r\n  #  syntax = {FE} --opt x\r\nFROM busybox AS b\r\nFROM b\n"
    plan = read_plan(text.encode(), {}, None, "linux/amd64")
    syntax, base = plan.references
    pinned = plan.pinned_text({syntax: DIGEST}, {})
    assert pinned == text.replace(f"{FE} --opt", f"{FE}@{DIGEST} --opt")
    both = plan.pinned_text({syntax: DIGEST, base: DIGEST}, {})
    assert both.splitlines()[1:3] == [f"  #  syntax = {FE}@{DIGEST} --opt x", f"FROM busybox@{DIGEST} AS b"]


def test_a_pinned_directive_is_left_as_written():
    text = f"# syntax={FE}@{DIGEST}\nFROM scratch\n"
    plan = read_plan(text.encode(), {}, None, "linux/amd64")
    [syntax] = plan.references
    assert syntax.pinned and plan.pinned_text({syntax: DIGEST}, {}) == text
