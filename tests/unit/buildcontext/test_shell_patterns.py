"""`${NAME#…}`, `${NAME%…}`, `${NAME/…}` processed as BuildKit's shell lexer does (buildcontext/shell_pattern.py
through buildcontext/stage_args.expand). The expected values are what Docker 26's engine builds (shown by
tests/e2e/test_remote_inputs.py for URLs and FROM lines) and the cases of BuildKit's own lexer tests."""
from __future__ import annotations

import threading

import pytest

from buildcontext import shell_pattern
from buildcontext.plan import DockerfileProblem
from buildcontext.stage_args import WordFails, expand
from buildcontext.stages import read_plan

V = {"V": "aXbXc", "P": "/a/b/c.tar.gz", "R": "$0", "E": "", "N": "a\nb"}


@pytest.mark.parametrize("word, expected", [
    ("${V#*X}", "bXc"), ("${V##*X}", "c"), ("${V%X*}", "aXb"), ("${V%%X*}", "a"),
    ("${V/X/-}", "a-bXc"), ("${V//X/-}", "a-b-c"), ("${P##*/}", "c.tar.gz"), ("${P%.*}", "/a/b/c.tar"),
    ("${V:#a}", "XbXc"), ("${UNSET#a}", ""), ("${V##}", "aXbXc"),
    # the replacement keeps its escape characters; // expands `$0` (the match) as Go's ReplaceAllString does
    ("${V//X/\\/}", "a\\/b\\/c"), ("${V//X/$R}", "aXbXc"), ("${V/X/$R}", "a$0bXc"),
    ("${V//[X]/+}", "aXbXc"),  # no bracket expressions: `[X]` is literal
    ('${V##"*"}', ""),  # quotes are removed before the pattern is read: the `*` is a wildcard
    ("${V#'a'X}", "bXc"), ("${V//?/.}", "....."), ("${V//*/z}", "z"),
    ("${N#?}", "\nb"), ("${N#a?}", "a\nb"),  # `?` is any character but a line feed (Go's `.`)
    ("${V%\\?}", "aXbXc"),
])
def test_trims_and_replacements_give_what_buildkit_gives(word, expected):
    assert expand(word, V, 1) == expected


@pytest.mark.parametrize("word, env, expected", [
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x"),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx"),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y"),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y"),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a"),
    ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
     "/foo.*/*.txt - /foo..*.txt"),
    ("${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}", {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "R": "/"},
     "/foo/b/c.txt - /foo/c.txt"),
])
def test_buildkits_own_lexer_cases(word, env, expected):
    assert expand(word, env, 1) == expected


def test_the_escape_directive_character_stays_in_a_pattern_as_a_literal():
    assert expand("${V#a`X}", {"V": "a`Xb"}, 1, escape="`") == "b"


@pytest.mark.parametrize("word, reason", [
    ("${V:/a/b}", "unsupported modifier (:/)"), ("${V/a}", "missing '/' in ${}"), ("${V//}", "missing '/'"),
    ("${V/a/b", "missing '}'"), ("${V#a", "missing '}'"), ("${V#*\\}", "missing '}'"), ("${V^^}", "(^)"),
])
def test_forms_buildkit_fails_on_fail_the_plan(word, reason):
    with pytest.raises(WordFails) as err:
        expand(word, V, 3)
    assert reason in str(err.value) and err.value.line == 3


@pytest.mark.parametrize("word", ["${V#\\#x}", "${V/\\a/b}", "${V%'\\'}"])
def test_an_escape_buildkit_refuses_in_a_pattern_fails_the_plan(word):
    with pytest.raises(DockerfileProblem, match="BuildKit refuses its pattern"):
        expand(word, V, 1)


@pytest.mark.parametrize("word", ["${V#}", "${V%}", "${V:#}", "${V#$E}", "${V%${UNSET}}"])
def test_an_empty_trim_pattern_is_refused_as_it_crashes_the_engine(word):
    with pytest.raises(DockerfileProblem, match="crashes on it"):
        expand(word, V, 1)


def test_the_names_of_a_pattern_and_a_replacement_are_asked():
    asked: list[str] = []
    expand("${V#$A}${P/$B/$C}", {"V": "x", "A": "x"}, 1, asked=asked)
    assert sorted(asked) == ["A", "B", "C", "P", "V"]


def test_a_hostile_pattern_is_matched_in_bounded_steps_or_refused():
    """Backtracking regexps take exponential time on `*a*a*…b` against `aaa…`; the matcher visits each state once.
    Run in a thread with a generous bound that only turns a hang into a failure."""
    results: list[str] = []
    value = "a" * 3000
    worker = threading.Thread(target=lambda: results.extend([
        expand("${V#" + "*a" * 30 + "b}", {"V": value}, 1), expand("${V//" + "*a" * 30 + "b/x}", {"V": value}, 1)]))
    worker.start()
    worker.join(120)
    assert results == [value, value]
    with pytest.raises(DockerfileProblem, match="more than this plan matches"):
        expand("${V#*" + "a" * 3000 + "}", {"V": "a" * shell_pattern.MAX_STEPS}, 1)


def test_a_from_line_and_an_add_url_use_the_forms():
    text = ("ARG IMG=registry.test/app:1.2-debug\nFROM ${IMG%-debug} AS base\nARG U=http://h.test/a/b.tgz\n"
            "ADD ${U/.tgz/.tar.gz} /x\n")
    plan = read_plan(text.encode(), {}, None, "linux/amd64")
    assert [r.reference for r in plan.references] == ["registry.test/app:1.2"]
    assert [s.url for s in plan.sources] == ["http://h.test/a/b.tar.gz"]


def test_the_patterns_of_one_dockerfile_share_one_step_budget():
    """Each match fits MAX_STEPS, 30 of them do not: the plan is refused at the line past the budget."""
    pattern = "?" * 8 + "*b"
    text = "FROM scratch\nARG V\n" + "".join(f"ENV A{i}=${{V//{pattern}/x}}\n" for i in range(30))
    with pytest.raises(DockerfileProblem, match="the Dockerfile's patterns together are more than") as err:
        read_plan(text.encode(), {"V": "a" * 100_000}, None, "linux/amd64")
    assert 3 < err.value.line < 33 and "fix: use fewer or shorter patterns" in str(err.value)


def test_a_value_doubled_line_by_line_is_refused_past_the_word_limit():
    text = "FROM scratch\nARG A0=0123456789abcdef\n" + "".join(f"ARG A{i + 1}=${{A{i}}}${{A{i}}}\n" for i in range(60))
    with pytest.raises(DockerfileProblem, match="expands to more than 1048576 characters") as err:
        read_plan(text.encode(), {}, None, "linux/amd64")
    assert err.value.line == 2 + 17 and "fix: shorten the values it uses" in str(err.value)
    with pytest.raises(DockerfileProblem, match="its result is longer than 1048576 characters"):
        expand("${V//?/$W}", {"V": "v" * 2000, "W": "w" * 1000}, 1)
