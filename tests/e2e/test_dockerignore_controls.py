"""Control characters and edge spaces against the real engine:

* a `.dockerignore` pattern holding an ASCII control character (tab, CR, NUL, ESC, DEL...) and nothing non-ASCII
  makes Docker refuse the context; the engine here refuses exactly the same ignore files, with a message, and agrees
  on the file set of every one both accept;
* the `.dockerignore` line the sensitive-file guard suggests for a name with a leading or trailing space, a newline,
  a tab, CR, ESC, a backslash or a leading `#`/`!` excludes that file in the real engine and keeps its sibling."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from buildcontext.dockerignore import context_files
from buildcontext.printable import has_control
from buildcontext.sensitive import dockerignore_escape
from tests.e2e.oracle import Case, EngineBuildError, engine_files, materialize

TREE = {"ab": "1", "a\tb": "2", "keep": "3", "sub/x": "4"}
PATTERNS = [b"a\tb\n", b"a\rb\n", b"a\x00b\n", b"a\x1bb\n", b"a\x7fb\n", b"a\x0bb\n", b"!a\tb\n", b"x\x1cb\n",
            b"\ta\t\n",  # trimmed: nothing left inside
            b"a\tb\xc3\xa9\n",  # non-ASCII: sent percent-encoded, accepted
            b"a\xffb\tc\n",  # an invalid byte becomes U+FFFD: non-ASCII too
            b"# a\tb\n",  # a comment
            b"a?b\n", b"sub\n"]


def _ours(context: Path, dockerfile: Path) -> list[str] | None:
    try:
        return context_files(context, dockerfile)
    except ValueError as err:
        assert "control character" in str(err) and not has_control(str(err)), str(err)
        return None


def _engine(docker: str, context: Path, dockerfile: Path) -> list[str] | None:
    try:
        return engine_files(docker, context, dockerfile)
    except EngineBuildError as err:
        assert "non-printable ASCII characters" in str(err), str(err)
        return None


def test_patterns_with_control_characters_are_refused_exactly_where_docker_refuses(docker_engine, tmp_path) -> None:
    cases = []
    for i, pattern in enumerate(PATTERNS):
        cases.append(materialize(Case(f"c{i}", TREE, dockerignore=pattern), tmp_path / f"c{i}"))
    with ThreadPoolExecutor(3) as pool:
        engine = list(pool.map(lambda c: _engine(docker_engine, *c), cases))
    for pattern, (context, dockerfile), theirs in zip(PATTERNS, cases, engine):
        assert _ours(context, dockerfile) == theirs, pattern
    assert engine.count(None) >= 7, "the refusing cases refuse"


NAMES = [" lead", "trail ", "  both  ", "new\nline", "tab\there", "cr\r", "esc\x1b[31m", "back\\slash", "#hash",
         "!bang", "sub/ inner"]


@pytest.mark.parametrize("name", NAMES, ids=[ascii(n) for n in NAMES])
def test_the_suggested_line_excludes_the_file_in_the_real_engine(docker_engine, tmp_path, name) -> None:
    line = dockerignore_escape(name)
    assert not has_control(line) and line == line.strip(), line
    sibling = name.replace(name.strip()[0], "Z", 1) + "-sibling"
    context, dockerfile = materialize(Case("x", {name: "secret", sibling: "fine", "keep": "k"},
                                           dockerignore=line + "\n"), tmp_path)
    files = engine_files(docker_engine, context, dockerfile)
    assert name not in files and sibling in files and "keep" in files, (line, files)
    assert context_files(context, dockerfile) == files
