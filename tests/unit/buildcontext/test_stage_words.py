"""A Dockerfile's words processed as Docker 26's BuildKit processes them (buildcontext/stage_args.py `expand`), and
the plan built from them. Each expected value is what the engine fetched or built for the same word
(tests/e2e/test_remote_inputs.py compares the plan with the engine's fetches for the quoting and default forms)."""
from __future__ import annotations

import pytest

from buildcontext.plan import DockerfileProblem, encoded_differently
from buildcontext.stage_args import EmptyTrimPattern, UnsetVariable, WordFails, escape_character, expand
from buildcontext.stages import read_plan

VALUES = {"V": "1.2", "EMPTY": "", "GLOBAL_NO_VALUE": None, "A": "a"}


@pytest.mark.parametrize("word, expected", [
    ('"1.2"', "1.2"),
    ("'1.$V'", "1.$V"),  # single quotes: literal
    ('"$V"', "1.2"),  # double quotes: expanded
    ("a\"b c\"'$A'\\ d", "ab c$A d"),
    ('"a\\"b\\$c\\d"', 'a"b$c\\d'),  # inside "...", the escape escapes only " $ and itself
    ("a\\\\b", "a\\b"),
    ("x-\\$V", "x-$V"),
    ("x\\", "x"),  # an escape character ending the word is dropped
    ("a$", "a$"),
    ("$%", "$%"),
    ("$1-$@-$?-x", "---x"),  # digits and special parameters are names (unset)
    ("$1V", "V"),
    ("${V}-$V", "1.2-1.2"),
    ("$Vx", ""),
    ("${A:+\"a b\"}", "a b"),  # the word of a modifier is processed too
    ("${UNSET:-'$V'}", "$V"),
    ("${UNSET:-${A}x}", "ax"),
    ("${UNSET:-\\}}", "}"),
    ("${UNSET:-'}'}", "}"),
    ("$\u00e9t\u00e9", ""),  # names are letters of any script
])
def test_quotes_escapes_and_names(word, expected):
    assert expand(word, VALUES, 1) == expected


@pytest.mark.parametrize("name, minus, colon_minus, plus, colon_plus", [
    ("V", "1.2", "1.2", "w", "w"),
    ("EMPTY", "", "w", "w", ""),
    ("GLOBAL_NO_VALUE", "", "w", "w", ""),  # a global ARG without a value is set and empty for FROM, as in BuildKit
    ("UNSET", "w", "w", "", ""),
])
def test_the_dash_and_plus_modifiers_with_and_without_colon(name, minus, colon_minus, plus, colon_plus):
    got = [expand(f"${{{name}{op}w}}", VALUES, 1) for op in ("-", ":-", "+", ":+")]
    assert got == [minus, colon_minus, plus, colon_plus]


def test_the_question_modifier_fails_on_unset_and_with_colon_on_empty():
    assert expand("${V?}", VALUES, 1) == "1.2" and expand("${EMPTY?}", VALUES, 1) == ""
    for word, says in (("${UNSET?}", "UNSET: is not allowed to be unset"),
                       ("${EMPTY:?}", "EMPTY: is not allowed to be empty"),
                       ("${A:-${UNSET?}}", "UNSET: is not allowed to be unset")):  # processed though unused
        with pytest.raises(UnsetVariable) as err:
            expand(word, VALUES, 7)
        assert err.value.line == 7 and says in str(err.value), word


@pytest.mark.parametrize("word, reason", [
    ('"1.2', "looking for matching double-quote"),
    ("'1.2", "looking for matching single-quote"),
    ("${}", "bad substitution"),
    ("${:-x}", "bad substitution"),
    ("${A", "unsupported modifier"),
    ("${A:x}", "unsupported modifier (:x)"),
    ("${A!x}", "unsupported modifier (!)"),
    ("${A:-x", "missing '}'"),
    ('${A:+"a}', "missing '}'"),
])
def test_what_buildkit_fails_to_process_fails_the_plan_with_its_line(word, reason):
    with pytest.raises(WordFails) as err:
        expand(word, VALUES, 4)
    assert err.value.line == 4 and reason in str(err.value) and "BuildKit fails to process it" in str(err.value)


def test_only_the_names_the_result_depends_on_are_asked():
    asked: list[str] = []
    expand("${A:-$B}${UNSET:-$C}${A:+$D}${UNSET:+$E}'$F'", VALUES, 1, asked=asked)
    assert sorted(asked) == ["A", "C", "D", "UNSET"]


def test_the_escape_directive_sets_the_escape_character():
    assert expand("`$V\\x", VALUES, 1, "`") == "$V\\x"
    assert expand('"`"`$V"', VALUES, 1, "`") == '"$V'


@pytest.mark.parametrize("data, escape", [
    (b"# escape=`\nFROM a\n", "`"),
    (b"\xef\xbb\xbf# escape=`\nFROM a\n", "`"),  # after a UTF-8 byte order mark
    (b"  \t# escape=`\r\nFROM a\n", "`"),  # leading whitespace, CRLF
    (b"# syntax=docker/dockerfile:1\n#ESCAPE = `  \nFROM a\n", "`"),  # a second directive line
    (b"\n# escape=`\nFROM a\n", "\\"),  # a blank line ends the directives
    (b"# a comment\n# escape=`\nFROM a\n", "\\"),  # so does a comment that is no directive
    (b"FROM a\n# escape=`\n", "\\"),
])
def test_the_escape_directive_is_read_as_buildkits_parser_reads_it(data, escape):
    assert escape_character(data) == escape


# ---------------------------------------------------------------- the plan

def _urls(text: str, build_args: dict | None = None) -> list[str]:
    plan = read_plan(text.encode(), build_args or {}, None, "linux/amd64")
    assert plan.refused == (), plan.refused
    return [s.url for s in plan.sources]


def test_the_plan_processes_arg_env_add_and_from_words():
    u = "http://127.0.0.1:9"
    assert _urls(f'FROM scratch\nARG V="1.2"\nADD {u}/app-$V.tgz /\n') == [f"{u}/app-1.2.tgz"]
    assert _urls(f"FROM scratch\nARG V='$X'\nADD {u}/app-$V /\n") == [f"{u}/app-$X"]
    assert _urls(f'ARG V="1.2"\nFROM scratch\nARG V\nADD "{u}/g-$V" /\n') == [f"{u}/g-1.2"]
    assert _urls(f"FROM scratch\nENV V=\"a b\" W=${{V:+'x'}}\nADD {u}/e-$V-$W /\n") == [f"{u}/e-a b-"], \
        "W is expanded before the line sets V"
    assert _urls(f"FROM scratch\nARG V\nADD {u}/b-$V /\n", {"V": '"1.2"'}) == [f'{u}/b-"1.2"'], \
        "a build arg's value is taken as given, quotes included"
    assert _urls(f'FROM scratch\nARG V=1\nADD ["{u}/j-$V-\'q\'", "/f"]\n') == [f"{u}/j-1-q"], "JSON form too"
    plan = read_plan(b'ARG B="busy"\nARG G\nFROM ${B}box${G-x}:"1"\n', {}, None, "linux/amd64")
    assert [r.reference for r in plan.references] == ["busybox:1"]


def test_an_expansion_failure_counts_only_in_a_needed_stage():
    """BuildKit expands a stage's instructions only when it builds the stage, and ignores a failing global ARG
    default (taking it as empty); every FROM line is expanded."""
    unneeded = "FROM scratch AS x\nADD http://127.0.0.1:9/${U?} /f\nENV A=\"x\nFROM scratch\n"
    assert read_plan(unneeded.encode(), {}, None, "linux/amd64").sources == ()
    with pytest.raises(UnsetVariable) as err:
        read_plan(unneeded.encode(), {}, "x", "linux/amd64")
    assert err.value.line == 2
    assert _urls('ARG A="x\nFROM scratch\nARG A\nADD http://127.0.0.1:9/g-${A-unset} /f\n') == \
        ["http://127.0.0.1:9/g-"]
    with pytest.raises(WordFails) as err:
        read_plan(b'FROM "scratch AS x\nFROM scratch\n', {}, None, "linux/amd64")
    assert err.value.line == 1


def test_a_question_modifier_on_what_the_base_image_may_set_is_refused_not_failed():
    plan = read_plan(b"FROM busybox\nADD http://127.0.0.1:9/${U?} /f\n", {}, None, "linux/amd64")
    [(line, problem)] = plan.refused
    assert line == 2 and "uses $U, which this stage does not declare" in problem


def test_an_empty_from_is_the_context_and_a_quoted_one_is_taken_without_its_quotes():
    plan = read_plan(b'FROM scratch AS s\nFROM scratch\nCOPY --from= /x /x\nCOPY --from="s" /y /y\n', {}, None,
                     "linux/amd64")
    assert plan.stages[1].depends == frozenset({0}) and plan.references == ()


@pytest.mark.parametrize("url, odd", [
    ("http://h/app-1.2.tgz?x=1&y=a,b", ()),
    ("http://h/a%20b/it's(1)", ()),  # Go sends a path of these characters as written, requests too
    ("http://h/a b", ()),  # both percent-encode the space alone
    ("http://h/'1' 2", ("'",)),  # with the space, Go encodes the quotes too, requests does not
    ("http://h/a%7e", ("%7e",)),
    ("http://h/%41", ("%41",)),  # requests decodes an encoded unreserved character, Go sends it as written
    ("http://h/p?q=a b", (" ",)),  # Go sends a query as written
])
def test_urls_the_two_clients_encode_differently(url, odd):
    assert encoded_differently(url) == odd


def test_a_source_url_encoded_differently_is_refused_unless_pinned():
    text = "FROM scratch\nARG V\nADD {checksum}http://127.0.0.1:9/$V /f\n"
    plan = read_plan(text.format(checksum="").encode(), {"V": "'secret' x"}, None, "linux/amd64")
    [(line, problem)] = plan.refused
    assert line == 3 and "ADD http://127.0.0.1:9/$V expands to a URL with characters that" in problem
    assert "secret" not in problem and plan.sources == ()
    pinned = read_plan(text.format(checksum="--checksum=sha256:" + "a" * 64 + " ").encode(), {"V": "'s' x"}, None,
                       "linux/amd64")
    assert pinned.refused == () and [s.url for s in pinned.sources] == ["http://127.0.0.1:9/'s' x"]


def test_a_checksum_flag_is_processed_as_a_word_too():
    """Docker 26 checked `--checksum=sha256\\:<d>` against <d>: the escape is processed, as in every word."""
    digest = "sha256:" + "a" * 64
    plan = read_plan(f"FROM scratch\nADD --checksum={digest.replace(':', chr(92) + ':')} http://h/x /f\n".encode(),
                     {}, None, "linux/amd64")
    assert [s.checksum for s in plan.sources] == [digest]


@pytest.mark.parametrize("mount, stage", [
    ('type=bind,"from=b",target=/m', "b"),  # a quoted field
    ('type=bind,from=b,"target=/a,from=c"', "b"),  # a comma and from= inside a quoted field are its text
    ("type=bind,from=c,from=b", "b"),  # the last one counts
    ("type=bind, from=c,FROM=b", "b"),  # keys are lowercased, not trimmed: ' from' is another key
])
def test_a_mount_is_read_as_csv_as_buildkit_reads_it(mount, stage):
    text = f"FROM scratch AS b\nFROM scratch AS c\nFROM scratch\nRUN --mount='{mount}' true\n"
    plan = read_plan(text.encode(), {}, None, "linux/amd64")
    assert plan.stages[2].depends == frozenset({0 if stage == "b" else 1})


@pytest.mark.parametrize("mount, reason", [
    ('type=bind,from=b"x"', 'bare "'), ('"type=bind"x,from=b', 'extraneous or missing "'),
    ('type=bind,"from=b', 'extraneous or missing "'),
])
def test_a_mount_buildkits_csv_reader_refuses_fails_the_plan(mount, reason):
    text = f"FROM scratch AS b\nFROM scratch\nRUN --mount='{mount}' true\n"
    with pytest.raises(DockerfileProblem, match=reason) as err:
        read_plan(text.encode(), {}, None, "linux/amd64")
    assert err.value.line == 3


def test_a_numeric_mount_from_is_refused_where_the_stage_is_built():
    """BuildKit counts stages by number for COPY --from only: a mount's from=1 is the image docker.io/library/1,
    which it would pull (not built here: a public lookup). COPY --from=0 still names stage 0."""
    text = "FROM scratch AS b\nFROM scratch AS c\nCOPY --from=0 /x /x\nRUN --mount=type=bind,from=0,target=/x true\n"
    with pytest.raises(DockerfileProblem) as err:
        read_plan(text.encode(), {}, None, "linux/amd64")
    assert err.value.line == 4
    assert "only COPY --from counts stages by number" in str(err.value)
    assert "fix: name the stage (FROM <image> AS <name>) and write from=<name>" in str(err.value)
    plan = read_plan(text.encode(), {}, "b", "linux/amd64")
    assert plan.needed == (0,) and plan.references == ()


@pytest.mark.parametrize("line", [
    "LABEL a=${V#}", "LABEL ${V%}=x", "WORKDIR /w${V#}", "USER ${V%}", "EXPOSE ${V#}", "VOLUME /v${V#$E}",
    "STOPSIGNAL ${V%}", "ENV A=${V#}", "ARG A=${V%}", "COPY --chown=${V#} a /a", "ADD --chmod=${V%} a /a",
    "COPY a /a${V#}", "RUN --mount=type=bind,target=/m${V#} true",
])
def test_an_empty_trim_pattern_is_refused_wherever_buildkit_expands_it_in_every_stage(line):
    """BuildKit's lexer panics on it (Docker 26), taking the engine down: refused with its line in a stage the
    target does not need too."""
    text = f"FROM scratch AS unused\nARG V=x\n{line}\nFROM scratch\n"
    with pytest.raises(EmptyTrimPattern) as err:
        read_plan(text.encode(), {}, None, "linux/amd64")
    assert err.value.line == 3 and "crashes on it" in str(err.value) and "fix: give" in str(err.value)


@pytest.mark.parametrize("line", ["RUN echo ${V#}", "CMD echo ${V%}", "ENTRYPOINT echo ${V#}", "LABEL a=${V##}",
                                  "LABEL a=${V#${E:-x}}", "ONBUILD LABEL a=${V#}", "HEALTHCHECK CMD echo ${V%}"])
def test_what_buildkit_does_not_expand_or_expands_safely_is_not_refused(line):
    text = f"FROM scratch AS unused\nARG V=x\n{line}\nFROM scratch\n"
    assert read_plan(text.encode(), {}, None, "linux/amd64").needed == (1,)


def _nested(levels: int, inner: str = "scratch") -> str:
    return "${A:-" * levels + inner + "}" * levels


def test_substitutions_nested_up_to_the_bound_expand_and_deeper_ones_are_refused_with_their_line():
    """Each `${...}` level is a few Python frames: past MAX_NESTING the word is refused with its line, never a
    RecursionError, however deep (the bound holds far below any interpreter's stack)."""
    from buildcontext.stage_args import MAX_NESTING

    assert expand(_nested(MAX_NESTING, "x"), {}, 3) == "x"
    for levels in (MAX_NESTING + 1, 200, 5000):
        with pytest.raises(DockerfileProblem) as err:
            expand(_nested(levels), {}, 3)
        assert err.value.line == 3 and f"more than {MAX_NESTING} levels deep" in str(err.value), str(err.value)
        assert "fix: " in str(err.value) and len(str(err.value)) < 400


@pytest.mark.parametrize("text, line", [
    (f"FROM {_nested(200)} AS web\n", 1),
    (f"ARG V={_nested(400)}\nFROM scratch AS web\n", 1),  # a global ARG's default: refused, not taken as empty
    (f"FROM scratch AS web\nARG V={_nested(400)}\n", 2),
    (f'FROM scratch AS web\nENV V="{_nested(300)}"\n', 2),
])
def test_a_word_nested_past_the_bound_fails_the_plan_with_its_line(text, line):
    with pytest.raises(DockerfileProblem) as err:
        read_plan(text.encode(), {}, "web", "linux/amd64")
    assert not isinstance(err.value, WordFails) and err.value.line == line and "levels deep" in str(err.value)
