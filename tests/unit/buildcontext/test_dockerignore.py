"""Unit tests for buildcontext.dockerignore (no Docker needed).

Three sources of truth:
* moby/patternmatcher's own test tables (TestMatches, TestMatch, TestCompile, the ignorefile
  ReadAll test), transcribed row by row;
* the findings of the engine oracle (tests/e2e/test_context_oracle.py), where the Docker SDK for
  Python disagrees with BuildKit: each divergence SDK-n named in buildcontext/dockerignore.py's
  docstring has a test here of what this module sends (what BuildKit sends); what the SDK would send
  instead is a comment, not an assertion (these tests test this project, not the SDK);
* plain walk properties (pruning, symlinks, errors, which directories are sent).
"""
from __future__ import annotations

import os
import posixpath
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from buildcontext.dockerignore import (
    ContextEntry,
    MatchInfo,
    Pattern,
    PatternMatcher,
    context_dirs,
    context_files,
    ignore_file_for,
    parse_ignore_file,
    read_patterns,
    walk_context,
)
from tests.harness import PROJECT_ROOT

REPO = PROJECT_ROOT
FAIL, EXACT, INEXACT = "fail", "exact", "inexact"

# patternmatcher_test.go TestMatches `tests` (Unix rows, including the two non-Windows extras).
MATCHES_TABLE = [
    ("**", "file", EXACT),
    ("**", "file/", EXACT),
    ("**/", "file", EXACT),
    ("**/", "file/", EXACT),
    ("**", "/", EXACT),
    ("**/", "/", EXACT),
    ("**", "dir/file", EXACT),
    ("**/", "dir/file", EXACT),
    ("**", "dir/file/", EXACT),
    ("**/", "dir/file/", EXACT),
    ("**/**", "dir/file", EXACT),
    ("**/**", "dir/file/", EXACT),
    ("dir/**", "dir/file", EXACT),
    ("dir/**", "dir/file/", EXACT),
    ("dir/**", "dir/dir2/file", EXACT),
    ("dir/**", "dir/dir2/file/", EXACT),
    ("**/dir", "dir", EXACT),
    ("**/dir", "dir/file", INEXACT),
    ("**/dir2/*", "dir/dir2/file", EXACT),
    ("**/dir2/*", "dir/dir2/file/", INEXACT),
    ("**/dir2/**", "dir/dir2/dir3/file", EXACT),
    ("**/dir2/**", "dir/dir2/dir3/file/", EXACT),
    ("**file", "file", EXACT),
    ("**file", "dir/file", EXACT),
    ("**/file", "dir/file", EXACT),
    ("**file", "dir/dir/file", EXACT),
    ("**/file", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file", EXACT),
    ("**/file*", "dir/dir/file.txt", EXACT),
    ("**/file*txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt", "dir/dir/file.txt", EXACT),
    ("**/file*.txt*", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt", "dir/dir/file.txt", EXACT),
    ("**/**/*.txt2", "dir/dir/file.txt", FAIL),
    ("**/*.txt", "file.txt", EXACT),
    ("**/**/*.txt", "file.txt", EXACT),
    ("a**/*.txt", "a/file.txt", EXACT),
    ("a**/*.txt", "a/dir/file.txt", EXACT),
    ("a**/*.txt", "a/dir/dir/file.txt", EXACT),
    ("a/*.txt", "a/dir/file.txt", FAIL),
    ("a/*.txt", "a/file.txt", EXACT),
    ("a/*.txt**", "a/file.txt", EXACT),
    ("a[b-d]e", "ae", FAIL),
    ("a[b-d]e", "ace", EXACT),
    ("a[b-d]e", "aae", FAIL),
    ("a[^b-d]e", "aze", EXACT),
    (".*", ".foo", EXACT),
    (".*", "foo", FAIL),
    ("abc.def", "abcdef", FAIL),
    ("abc.def", "abc.def", EXACT),
    ("abc.def", "abcZdef", FAIL),
    ("abc?def", "abcZdef", EXACT),
    ("abc?def", "abcdef", FAIL),
    ("**/foo/bar", "foo/bar", EXACT),
    ("**/foo/bar", "dir/foo/bar", EXACT),
    ("**/foo/bar", "dir/dir2/foo/bar", EXACT),
    ("abc/**", "abc", FAIL),
    ("abc/**", "abc/def", EXACT),
    ("abc/**", "abc/def/ghi", EXACT),
    ("**/.foo", ".foo", EXACT),
    ("**/.foo", "bar.foo", FAIL),
    ("a(b)c/def", "a(b)c/def", EXACT),
    ("a(b)c/def", "a(b)c/xyz", FAIL),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", EXACT),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", EXACT),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", EXACT),
    ("a\\\\", "a\\", EXACT),
    ("a\\*b", "a*b", EXACT),
]

# TestMatches `multiPatternTests`.
MULTI_TABLE = [
    (["**", "!util/docker/web"], "util/docker/web/foo", FAIL),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", EXACT),
    (["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", FAIL),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", FAIL),
]


def _ids(rows):
    return [f"{r[0]!s}~{r[1]}" for r in rows]


def _with_parent_results(pm: PatternMatcher, text: str) -> bool:
    """The walk's way (TestMatches/MatchesUsingParentResults): feed each parent's results down."""
    parent = posixpath.dirname(text)
    info = MatchInfo()
    if parent:
        parts = parent.split("/")
        for i in range(len(parts)):
            _, info = pm.matches_using_parent_results("/".join(parts[: i + 1]), info)
    return pm.matches_using_parent_results(text, info)[0]


def _matches_exact(pm: PatternMatcher, path: str) -> bool:
    """patternmatcher.MatchesExact (no parent matching; the walk never needs it, so PatternMatcher has no such
    method): the compiled patterns' own `match`, last match wins. Keeps the MatchesExact rows of moby's tables."""
    matched = False
    for pattern in pm.patterns:
        if pattern.exclusion == matched and pattern.match(path):
            matched = not pattern.exclusion
    return matched


def _matches_or_parent(pm: PatternMatcher, path: str) -> bool:
    """patternmatcher.MatchesOrParentMatches: what matches_using_parent_results decides without parent results."""
    return pm.matches_using_parent_results(path)[0]


@pytest.mark.parametrize("pattern,text,kind", MATCHES_TABLE, ids=_ids(MATCHES_TABLE))
def test_patternmatcher_table_single(pattern, text, kind):
    pm = PatternMatcher([pattern])
    assert _matches_exact(pm, text) is (kind == EXACT), "MatchesExact"
    assert _matches_or_parent(pm, text) is (kind != FAIL), "MatchesOrParentMatches"
    assert _with_parent_results(pm, text) is (kind != FAIL), "MatchesUsingParentResults"
    assert pm.matches_using_parent_results(text)[0] is (kind != FAIL), "...NoContext"


@pytest.mark.parametrize("patterns,text,kind", MULTI_TABLE, ids=_ids(MULTI_TABLE))
def test_patternmatcher_table_multi(patterns, text, kind):
    pm = PatternMatcher(patterns)
    assert _matches_or_parent(pm, text) is (kind != FAIL)
    assert _with_parent_results(pm, text) is (kind != FAIL)
    assert pm.matches_using_parent_results(text)[0] is (kind != FAIL)


# TestMatch: Go's filepath.Match table, through patternmatcher (parent prefixes count too).
GO_MATCH_TABLE = [
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*", "abc", True), ("a*", "ab/c", True), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False), ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^b-d]", "abc", False), ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True), ("a\\*b", "ab", False), ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False), ("a[^a][^a][^a]b", "a☺b", False), ("[a-ζ]*", "α", True),
    ("*[a-ζ]", "A", False), ("a?b", "a/b", False), ("a*b", "a/b", False), ("[\\]a]", "]", True),
    ("[\\-]", "-", True), ("[x\\-]", "x", True), ("[x\\-]", "-", True), ("[x\\-]", "z", False),
    ("[\\-x]", "x", True), ("[\\-x]", "-", True), ("[\\-x]", "a", False), ("*x", "xxx", True),
]
GO_BAD_PATTERNS = ["[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a["]


@pytest.mark.parametrize("pattern,name,expected", GO_MATCH_TABLE, ids=_ids(GO_MATCH_TABLE))
def test_go_filepath_match_table(pattern, name, expected):
    assert _matches_or_parent(PatternMatcher([pattern]), name) is expected


@pytest.mark.parametrize("pattern", GO_BAD_PATTERNS)
def test_go_bad_patterns_rejected_up_front(pattern):
    with pytest.raises(ValueError, match="malformed"):
        PatternMatcher([pattern])


def test_malformed_regexp_fails_only_when_evaluated():
    """TestMatchesOrParentMatchesMalformedPatternDoesNotPanicOnRepeatedCall: `[Local-Only]` passes
    filepath.Match's check (its first chunk) but `l-O` is no valid range for the regexp engine."""
    pm = PatternMatcher(["[Local-Only]/"])
    for _ in range(2):
        with pytest.raises(ValueError, match="Local-Only"):
            _matches_or_parent(pm, "x")


def test_lazy_error_in_exception_never_evaluated(tmp_path):
    """Go compiles lazily: an exception no path reaches cannot fail the build (oracle-verified)."""
    (tmp_path / "x").write_text("x")
    (tmp_path / ".dockerignore").write_text("y\n!a*/[x\n")
    assert context_files(tmp_path) == [".dockerignore", "x"]
    (tmp_path / ".dockerignore").write_text("x\n!a*/[x\n")
    with pytest.raises(ValueError, match=r"a\*/\[x"):
        context_files(tmp_path)


def test_trailing_backslash_in_later_chunk_escapes_the_end_anchor():
    """filepath.Match stops at the first failing chunk, so `[a-x]*/x../\\` passes New; Go then
    appends `$` to a lone backslash: a literal dollar with no end anchor (oracle-verified)."""
    pm = PatternMatcher(["[a-x]*/x../\\"])
    (compiled,) = pm.patterns
    assert compiled.go_regex == "^[a-x][^/]*/x\\.\\./\\$"
    assert _matches_exact(pm, "ab/x../$")
    assert _matches_exact(pm, "ab/x../$x")
    assert not _matches_exact(pm, "ab/x../y")


@pytest.mark.parametrize("pattern,path,expected", [
    ("a\\d", "a1", True), ("a\\d", "ad", False), ("\\x41*", "A1", True), ("\\x{42}*", "B2", True),
    ("\\103*", "C3", True), ("[\\x44-\\x45]?", "E4", True), ("\\Qa*\\E*", "a*x", False),
    ("\\Qa*\\E*", "a[^/]*x", True), ("[[:digit:]]x", "1x", True), ("[[:digit:]]x", "ax", False),
    ("\\pL\\d", "é1", True), ("\\pL\\d", "11", False), ("\\p{Greek}", "α", True), ("[[:^digit:]]x", "_x", True),
    ("[[:^digit:]]x", "1x", False), ("\\Q\\C\\E*", "\\C", True),
])
def test_re2_escapes_reach_the_regexp_engine(pattern, path, expected):
    """patternmatcher passes `\\` + the next character to Go's regexp engine (oracle-verified)."""
    assert _matches_exact(PatternMatcher([pattern]), path) is expected


@pytest.mark.parametrize("pattern", ["x\\1", "C*\\e", "x{1001}*", "\\xZZ*", "\\C*", "[\\C]*"])
def test_re2_rejected_expressions_fail_when_evaluated(pattern):
    pm = PatternMatcher([pattern])  # filepath.Match accepts them
    with pytest.raises(ValueError, match="not a valid pattern"):
        _matches_exact(pm, "x")


COMPILE_TABLE = [
    ("*", "regexp", "^[^/]*$"), ("file*", "regexp", "^file[^/]*$"), ("*file", "regexp", "^[^/]*file$"),
    ("a*/b", "regexp", "^a[^/]*/b$"), ("**", "suffix", None), ("**/**", "regexp", "^(.*/)?.*$"),
    ("dir/**", "prefix", None), ("**/dir", "suffix", None),
    ("**/dir2/*", "regexp", "^(.*/)?dir2/[^/]*$"), ("**/dir2/**", "regexp", "^(.*/)?dir2/.*$"),
    ("**file", "suffix", None), ("**/file*txt", "regexp", "^(.*/)?file[^/]*txt$"),
    ("**/**/*.txt", "regexp", "^(.*/)?(.*/)?[^/]*\\.txt$"), ("a[b-d]e", "regexp", "^a[b-d]e$"),
    (".*", "regexp", "^\\.[^/]*$"), ("abc.def", "exact", None), ("abc?def", "regexp", "^abc[^/]def$"),
    ("**/foo/bar", "suffix", None), ("a(b)c/def", "exact", None), ("a.|)$(}+{bc", "exact", None),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", "exact", None),
]


@pytest.mark.parametrize("pattern,kind,regex", COMPILE_TABLE, ids=[r[0] for r in COMPILE_TABLE])
def test_compile_table(pattern, kind, regex):
    (compiled,) = PatternMatcher([pattern]).patterns
    assert compiled.kind == kind
    assert compiled.go_regex == regex


def test_single_bang_is_an_error():
    with pytest.raises(ValueError, match='illegal exclusion pattern "!"'):
        PatternMatcher(["!"])


def test_clean_patterns_and_exception_flag():
    pm = PatternMatcher(["docs", "config", ""])
    assert [p.cleaned for p in pm.patterns] == ["docs", "config"]
    assert not pm.exclusions
    assert PatternMatcher(["docs", "  !docs/README.md"]).exclusions
    assert PatternMatcher(["docs", "!docs/README.md  "]).exclusions


def test_no_patterns_match_nothing():
    assert _matches_or_parent(PatternMatcher([]), "any/path/there") is False


def test_ignorefile_readall_table():
    content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! "
    assert parse_ignore_file(content) == [
        "test1", "test2", "a/file/here", "lastfile", "!inverted/abs/path", "!", "!"]


def test_ignorefile_cleaning_details():
    assert parse_ignore_file("\ufeffa\r\n./b/\n/../c\n../d\nx//y/./z\n\x1cw\n") == [
        "a", "b", "c", "../d", "x/y/z", "\x1cw"]
    assert parse_ignore_file("  # not a comment\n#comment\n") == ["# not a comment"]


# ----------------------------------------------------------------------------------------------
# Divergences from the Docker SDK for Python (each verified against the engine by the oracle case
# named in the test). "SDK:" comments say what docker.APIClient.build would send for a local path
# (docker.utils.build.exclude_paths, docker 7.2.0), for the reader; nothing here runs the SDK.
# ----------------------------------------------------------------------------------------------

def _tree(root: Path, files: dict[str, str], dockerignore: str | None = None) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    if dockerignore is not None:
        (root / ".dockerignore").write_text(dockerignore)
    return root


def test_sdk_1_case_sensitivity(tmp_path):  # oracle: case-sensitive
    root = _tree(tmp_path, {"README.md": "", "readme.md": ""}, "README.md\n")
    assert context_files(root) == [".dockerignore", "readme.md"]
    # SDK: [".dockerignore"]


def test_sdk_2_caret_negates_and_bang_is_literal(tmp_path):  # oracle: negated-class-caret, bang-in-class
    root = _tree(tmp_path, {"a.txt": "", "b.txt": "", "!.txt": "", "^.txt": ""}, "[^a].txt\n")
    assert context_files(root) == [".dockerignore", "a.txt"]
    # SDK: ["!.txt", ".dockerignore", "b.txt"]
    (root / ".dockerignore").write_text("[!a].txt\n")
    assert context_files(root) == [".dockerignore", "^.txt", "b.txt"]
    # SDK: [".dockerignore", "a.txt"]


def test_sdk_3_ignored_dockerignore_and_dockerfile_are_not_sent(tmp_path):  # oracle: dockerfile-inside-ignored
    root = _tree(tmp_path, {"Dockerfile": "FROM scratch\n", "app.py": ""}, ".dockerignore\nDockerfile\n")
    assert context_files(root) == ["app.py"]
    # SDK: [".dockerignore", "Dockerfile", "app.py"]


def test_sdk_4_deep_parent_after_exception_enters_dir(tmp_path):  # oracle: property test family
    root = _tree(tmp_path, {"x/y/name/keep": "", "x/y/name/other": "", "x/z": ""},
                 "**/name\n!x/y/name/keep\n")
    assert context_files(root) == [".dockerignore", "x/y/name/keep", "x/z"]
    # SDK: [".dockerignore", "x/y/name/keep", "x/y/name/other", "x/z"]


def test_sdk_5_exceptions_below_doublestar(tmp_path):  # oracle: reinclude-under-doublestar
    root = _tree(tmp_path, {"a/cache/keep": "", "a/cache/junk": "", "b": ""},
                 "**/cache\n!**/cache/keep\n")
    assert context_files(root) == [".dockerignore", "a/cache/keep", "b"]
    # SDK: [".dockerignore", "b"]
    (root / ".dockerignore").write_text("a\n!*/cache/keep\n")
    assert context_files(root) == [".dockerignore", "a/cache/keep", "b"]
    # SDK: [".dockerignore", "b"]


def test_sdk_6_backslash_escapes(tmp_path):  # oracle: escaped-star
    root = _tree(tmp_path, {"a*b": "", "axb": ""}, "a\\*b\n")
    assert context_files(root) == [".dockerignore", "axb"]
    # SDK: [".dockerignore", "a*b", "axb"]


def test_sdk_7_glued_doublestar_is_a_suffix_match(tmp_path):  # oracle: doublestar-glued-suffix
    root = _tree(tmp_path, {"keep": "", "xkeep": "", "d/mykeep": "", "other": ""}, "**keep\n")
    assert context_files(root) == [".dockerignore", "other"]
    # SDK: [".dockerignore", "d/mykeep", "other", "xkeep"]


def test_sdk_8_leading_dotdot_never_matches(tmp_path):  # oracle: dotdot-leading-never-matches
    root = _tree(tmp_path, {"a": "", "b": ""}, "../a\n")
    assert context_files(root) == [".dockerignore", "a", "b"]
    # SDK: [".dockerignore", "b"]


def test_sdk_9_only_first_column_hash_is_a_comment_and_bom_is_stripped(tmp_path):  # oracle: hash-..., utf8-bom
    root = _tree(tmp_path, {"# notes": "", "a": "", "b": ""}, "  # notes\n")
    assert context_files(root) == [".dockerignore", "a", "b"]
    # SDK: ["# notes", ".dockerignore", "a", "b"]
    (root / ".dockerignore").write_text("\ufeffa\n")
    assert context_files(root) == ["# notes", ".dockerignore", "b"]
    # SDK: ["# notes", ".dockerignore", "a", "b"]


def test_sdk_10_parent_results_not_parent_prefixes(tmp_path):  # oracle: exception-of-parent-after-child
    root = _tree(tmp_path, {"a/b/x": "", "a/c": ""}, "a/b\n!a\n")
    assert context_files(root) == [".dockerignore", "a/c"]
    # SDK: [".dockerignore", "a/b/x", "a/c"]


def test_sdk_11_pipe_and_braces_reach_the_regexp_engine(tmp_path):  # oracle: pipe-is-alternation, ...
    root = _tree(tmp_path, {"ab": "", "x": ""}, "a|*\n")
    assert context_files(root) == []
    # SDK: [".dockerignore", "ab", "x"]
    (root / ".dockerignore").write_text("x{2}*\n")
    (root / "xx").write_text("")
    assert context_files(root) == [".dockerignore", "ab", "x"]


def test_sdk_12_dockerfile_specific_ignore_file(tmp_path):  # oracle: dockerfile-outside-specific-ignore
    root = _tree(tmp_path / "ctx", {"a": "", "b": ""}, "a\n")
    dockerfile = tmp_path / "df" / "web.Dockerfile"
    dockerfile.parent.mkdir()
    dockerfile.write_text("FROM scratch\n")
    dockerfile.with_name("web.Dockerfile.dockerignore").write_text("b\n")
    assert ignore_file_for(root, dockerfile) == dockerfile.with_name("web.Dockerfile.dockerignore")
    assert context_files(root, dockerfile) == [".dockerignore", "a"]
    assert context_files(root) == [".dockerignore", "b"]
    # SDK: [".dockerignore", "b"]


def test_bytes_that_are_not_utf8(tmp_path):
    """Patterns reach the walker as JSON (stray bytes become U+FFFD); Go's regexp engine reads a
    stray byte of a file name as U+FFFD too (oracle: non-utf8-names-*)."""
    for name in (b"caf\xe9", b"caf\xe8", "caf\ufffd".encode(), b"cafe"):
        (tmp_path / os.fsdecode(name)).write_bytes(b"")
    (tmp_path / ".dockerignore").write_bytes(b"caf\xe9\n")
    assert read_patterns(tmp_path) == ["caf\ufffd"]
    assert context_files(tmp_path) == [".dockerignore", "cafe", "caf\udce8", "caf\udce9"]
    (tmp_path / ".dockerignore").write_bytes(b"caf\xe9*\n")
    assert context_files(tmp_path) == [".dockerignore", "cafe"]


# ----------------------------------------------------------------------------------------------
# The walk
# ----------------------------------------------------------------------------------------------

def test_context_must_be_a_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        context_files(tmp_path / "missing")
    with pytest.raises(ValueError, match="does not exist"):
        walk_context(tmp_path / "missing")  # at the call, not at the first next()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is not a directory"):
        context_files(tmp_path / "file")


def test_entries_carry_lstat_and_absolute_path(tmp_path):
    _tree(tmp_path, {"src/app.py": "print()"})
    (tmp_path / "link").symlink_to("src")
    entries = {e.rel: e for e in walk_context(tmp_path)}
    assert set(entries) == {"src/app.py", "link"}
    assert isinstance(entries["link"], ContextEntry)
    assert entries["link"].abspath == str(tmp_path / "link")
    assert os.path.islink(entries["link"].abspath)
    assert entries["link"].stat.st_ino == os.lstat(tmp_path / "link").st_ino
    assert entries["src/app.py"].stat.st_size == len("print()")


def test_excluded_directory_is_pruned_without_listing(tmp_path, monkeypatch):
    _tree(tmp_path, {"node_modules/m/index.js": "", "docs/a.md": "", "app.py": ""},
          "node_modules\ndocs\n!docs/a.md\n")
    listed = []
    real_scandir = os.scandir

    def spy(path):
        listed.append(Path(path).relative_to(tmp_path).as_posix())
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    assert context_files(tmp_path) == [".dockerignore", "app.py", "docs/a.md"]
    assert "node_modules" not in listed  # nothing inside can come back
    assert "docs" in listed  # the literal exception lies below it


def test_wildcard_exception_forces_descent(tmp_path, monkeypatch):
    _tree(tmp_path, {"node_modules/m/keep": "", "node_modules/m/junk": ""}, "node_modules\n!*/*/keep\n")
    assert context_files(tmp_path) == [".dockerignore", "node_modules/m/keep"]


def test_read_patterns_prefers_dockerfile_specific_file(tmp_path):
    _tree(tmp_path, {"Dockerfile": "FROM scratch\n"}, "# c\na\n")
    assert read_patterns(tmp_path) == ["a"]
    (tmp_path / "Dockerfile.dockerignore").write_text("b/\n")
    assert read_patterns(tmp_path) == ["b"]
    assert read_patterns(tmp_path, tmp_path / "Dockerfile") == ["b"]
    assert read_patterns(tmp_path, tmp_path / "Other.Dockerfile") == ["a"]


def test_unreadable_directory_errors_unless_excluded(tmp_path, monkeypatch):
    """fsutil ignores a permission error only below an excluded directory. (os.scandir is made to
    refuse: tests often run as root, which reads any directory whatever its mode.)"""
    _tree(tmp_path, {"locked/x": "", "ok": ""})
    real_scandir = os.scandir

    def refusing(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    with pytest.raises(PermissionError, match="'locked'.*exclude it in .dockerignore"):
        context_files(tmp_path)
    (tmp_path / ".dockerignore").write_text("locked\n!locked/x\n")
    assert context_files(tmp_path) == [".dockerignore", "ok"]


# ----------------------------------------------------------------------------------------------
# Directories (the oracle checks them against the engine; these pin the walk's own mechanics)
# ----------------------------------------------------------------------------------------------

def test_every_directory_without_patterns_even_empty(tmp_path):
    _tree(tmp_path, {"a/b/c.txt": "", "d/e": ""})
    (tmp_path / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "dlink").symlink_to("a")  # a link to a directory is a link, not a directory
    assert context_dirs(tmp_path) == ["a", "a/b", "d", "empty", "empty/deeper"]
    assert "dlink" in context_files(tmp_path)


def test_walk_context_yields_files_only_and_fills_dirs_when_asked(tmp_path):
    _tree(tmp_path, {"a/b/c.txt": "", "x": ""}, "z\n")
    (tmp_path / "z").mkdir()
    (tmp_path / "y").mkdir()
    assert sorted(e.rel for e in walk_context(tmp_path)) == [".dockerignore", "a/b/c.txt", "x"]
    dirs: list[str] = []
    rels = sorted(e.rel for e in walk_context(tmp_path, None, dirs))
    assert rels == [".dockerignore", "a/b/c.txt", "x"]
    assert sorted(dirs) == ["a", "a/b", "y"]


def test_excluded_directory_is_sent_only_as_a_parent(tmp_path):
    _tree(tmp_path, {"docs/keep.md": "", "docs/junk/x": "", "logs/x": ""},
          "docs\nlogs\n!docs/keep.md\n!logs/none\n")
    (tmp_path / "docs" / "empty").mkdir()
    assert context_dirs(tmp_path) == ["docs"]  # logs: entered (an exception lies below it) but nothing sent
    (tmp_path / ".dockerignore").write_text("docs\n!docs/empty\n")
    assert context_dirs(tmp_path) == ["docs", "docs/empty", "logs"]
    (tmp_path / ".dockerignore").write_text("docs/*\n")
    assert context_dirs(tmp_path) == ["docs", "logs"]  # docs itself is not excluded: sent, empty


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX) to create a fifo")
def test_reincluded_fifo_makes_its_excluded_directory_sent(tmp_path):
    """Oracle finding: BuildKit sends a fifo (`docs` + `!docs/fifo` gives the image `docs/fifo`),
    so its excluded parent directory is sent too, although context_files lists no fifo."""
    _tree(tmp_path, {"docs/keep": ""}, "docs\n!docs/fifo\n")
    assert context_dirs(tmp_path) == []
    os.mkfifo(tmp_path / "docs" / "fifo")
    assert context_dirs(tmp_path) == ["docs"]


# ----------------------------------------------------------------------------------------------
# Linear time and pruning: RE2 instead of a backtracking engine; a path is checked only
# against the patterns whose literal directory prefix and tail it can match.
# ----------------------------------------------------------------------------------------------

def _reference_match(pattern, path: str) -> bool:
    """One pattern's match without any pruning: patternmatcher's Pattern.match."""
    if pattern.kind == "exact":
        return path == pattern.cleaned
    if pattern.kind == "prefix":
        return path.startswith(pattern.cleaned[:-2])
    if pattern.kind == "suffix":
        suffix = pattern.cleaned[2:]
        return path.endswith(suffix) or (suffix[:1] == "/" and path == suffix[1:])
    if pattern.regex is None:
        raise ValueError(pattern.error)
    return pattern.regex.search(path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")) is not None


def _reference_using_parent_results(pm: PatternMatcher, path: str, parent: list[bool] | None):
    """patternmatcher.MatchesUsingParentResults over every pattern, in order (the Go loop)."""
    matched = False
    results = [False] * len(pm.patterns)
    parents = posixpath.dirname(path).split("/") if "/" in path else []
    for i, pattern in enumerate(pm.patterns):
        match = parent is not None and parent[i]
        if not match:
            if pattern.exclusion != matched:
                continue
            match = _reference_match(pattern, path)
            if not match and parent is None:
                match = any(_reference_match(pattern, "/".join(parents[:k + 1])) for k in range(len(parents)))
        results[i] = match
        if match:
            matched = not pattern.exclusion
    return matched, results


def _reference_exact(pm: PatternMatcher, path: str) -> bool:
    """patternmatcher.MatchesExact over every pattern, in order."""
    matched = False
    for pattern in pm.patterns:
        if pattern.exclusion == matched and _reference_match(pattern, path):
            matched = not pattern.exclusion
    return matched


def _outcome(fn, *args):
    try:
        return fn(*args)
    except ValueError:
        return "ValueError"


# Names and pattern pieces that reach every pruning rule: directory prefixes, tails, `{n}` repeats,
# raw `|` and `^`, escapes (`\x61` is `a`), U+FFFD and a byte that is not UTF-8 (a surrogate escape).
_SEGMENT = st.sampled_from(["a", "b", "ab", "a.b", "x{2}", "xx", "é", "\ufffd", "caf\udce9", "caf\udce8", "a|b",
                            "a^b"])
_PIECE = st.sampled_from(["a", "b", "ab", ".b", "*", "**", "?", "[ab]", "x{2}", "{,2}", "{0}b", "\\x61", "\\*", "|",
                          "^", "\ufffd", "caf\ufffd", "caf\udce9", "é", "a|b", "[a-", "\\C"])


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
# one example per pruning rule, so each is exercised whatever the random draw
@example(patterns=[(False, "**/ab")], paths=["ab/a", "x/ab/b"])  # a parent's match outlives the tail
@example(patterns=[(False, "*/ab")], paths=["a/ab/a"])
@example(patterns=[(False, "a/{0}b*")], paths=["ab"])  # `/{0}` repeats the slash zero times
@example(patterns=[(False, "caf\ufffd/*")], paths=["caf\udce9/a"])  # a stray byte reads as U+FFFD
@example(patterns=[(False, "caf\udce9/*"), (False, "*caf\udce9")], paths=["caf\udce8/a", "bcaf\udce8"])
@example(patterns=[(False, "a/b*|c"), (False, "*|ab")], paths=["xc", "z/yc", "x/y"])  # a raw `|`: the alternative is not anchored
@example(patterns=[(False, "*\\x61"), (False, "b*\\")], paths=["ba", "b$", "bx$"])  # escapes end the literal tail
@given(patterns=st.lists(st.tuples(st.booleans(), st.lists(_PIECE, min_size=1, max_size=4).map("/".join)),
                         min_size=1, max_size=6),
       paths=st.lists(st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join), min_size=1, max_size=6))
def test_pruning_never_changes_an_outcome(patterns, paths):
    """Every public match method agrees with the unpruned Go loop on the same compiled patterns,
    including raising for the same paths (a pattern that fails when evaluated is never pruned)."""
    lines = [("!" if bang else "") + text for bang, text in patterns]
    try:
        pm = PatternMatcher(lines)
    except ValueError:
        return  # rejected at construction: no pruning involved
    for path in paths:
        assert _outcome(_matches_exact, pm, path) == _outcome(_reference_exact, pm, path), (lines, path)
        want = _outcome(_reference_using_parent_results, pm, path, None)
        want = want if want == "ValueError" else want[0]
        got = _outcome(pm.matches_using_parent_results, path)
        assert (got if got == "ValueError" else got[0]) == want, (lines, path)
        # the walk's way: each directory's results handed to its children
        parts = path.split("/")
        info, bools = MatchInfo(), None
        for k in range(len(parts)):
            prefix = "/".join(parts[: k + 1])
            got = _outcome(pm.matches_using_parent_results, prefix, info)
            want = _outcome(_reference_using_parent_results, pm, prefix, bools)
            if want == "ValueError" or got == "ValueError":
                assert got == want, (lines, prefix)
                break
            assert got[0] == want[0], (lines, prefix)
            assert got[1].parent_matched == {i for i, m in enumerate(want[1]) if m}, (lines, prefix)
            info, bools = got[1], want[1]


_PATHOLOGICAL = r'''
import os, sys, time
from buildcontext.dockerignore import PatternMatcher, context_files
root, stars = sys.argv[1], int(sys.argv[2])
pattern = "**/**/" + "*a" * stars + "*c"
# 6 nested 40-character directories and the issue's file: no 'c' anywhere, so nothing is excluded
deep = os.path.join(root, *(["a" * 40] * 6))
os.makedirs(deep)
open(os.path.join(root, "a" * 40, "a" * 20 + "x"), "w").close()
open(os.path.join(deep, "a" * 20 + "x"), "w").close()
with open(os.path.join(root, ".dockerignore"), "w") as f:
    f.write(pattern + "\n" + ("!" + pattern + "\n") + pattern + "\n")
files = context_files(root)
long_path = "/".join(["a" * 40] * 200) + "/" + "a" * 2000 + "x"
matched = PatternMatcher([pattern]).matches_using_parent_results(long_path)[0]
print(len(files), matched)
'''


@pytest.mark.parametrize("stars", [10, 16])
def test_pathological_patterns_end_within_a_generous_bound(tmp_path, stars):
    """The issue's pattern (Python's `re` took 32 s at 10 `*a`, x4 per extra one, and never ended on
    6 nested 40-character directories) against those directories and a 10,000-character path. Run in
    a subprocess the harness kills after 60 s, so a regression fails instead of hanging the suite
    (RE2 needs milliseconds; nothing here asserts on speed below the bound)."""
    proc = subprocess.run([sys.executable, "-c", _PATHOLOGICAL, str(tmp_path / "ctx"), str(stars)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3", "False"]  # .dockerignore and both files sent; no match


def test_many_patterns_prune_by_literal_prefix_and_tail(tmp_path, monkeypatch):
    """10,000 patterns naming other directories and other endings are never evaluated for a path."""
    files = {f"src/m{i}/f{j}.py": "" for i in range(20) for j in range(5)}
    lines = [f"src/m{k % 20}/f{k}.pyc" for k in range(4000)] + [f"build/o{k}/*.o" for k in range(3000)]
    lines += [f"**/*.tmp{k}" for k in range(2000)] + [f"**/cache{k}" for k in range(999)] + ["src/m3/f1.py"]
    root = _tree(tmp_path, files, "\n".join(lines) + "\n")
    evaluated: list[str] = []
    real_match = Pattern.match

    def counting(self, path):
        evaluated.append(self.cleaned)
        return real_match(self, path)

    monkeypatch.setattr(Pattern, "match", counting)
    assert context_files(root) == sorted({".dockerignore", *files} - {"src/m3/f1.py"})
    # per path only the patterns of its own directory (200 of the 4,000 name each src/m<i>): far
    # below one evaluation of every pattern for every path (10,000 x 122)
    assert len(evaluated) < 200 * 100 + 50, len(evaluated)
    assert not any(p.startswith(("build/", "**/")) for p in evaluated)


# ---------------------------------------------------------------- hostile ignore files

_READ_IN_SUBPROCESS = r'''
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a runaway read fails here instead of eating the machine
from buildcontext.dockerignore import read_patterns
try:
    out = {"patterns": len(read_patterns(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))}
except ValueError as exc:
    out = {"error": str(exc)}
# VmHWM: this process's own peak RSS (ru_maxrss would carry the forking parent's over the exec)
out["maxrss_kib"] = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1])
print(json.dumps(out))
'''
# Python, RE2 and the engine's modules take about 40 MiB; a read of the whole of a large file would take more.
_RSS_BOUND_KIB = 150 * 1024


def _read_bounded(context: Path, dockerfile: Path | None = None, seconds: float = 60) -> dict:
    """read_patterns in a subprocess with a time bound (a hang fails the test) and an address-space limit,
    returning its answer and its peak RSS."""
    import json
    args = [sys.executable, "-c", _READ_IN_SUBPROCESS, str(context)] + ([str(dockerfile)] if dockerfile else [])
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=seconds, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading the ignore file did not end within {seconds} s: it hangs")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["maxrss_kib"] < _RSS_BOUND_KIB, f"peak RSS {out['maxrss_kib']} KiB: the read is not bounded"
    return out


SECRET_TEXT = "TOP-SECRET-line-of-a-file-outside"


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero", "link outside", "dangling link", "directory",
                                  "link inside"])
@pytest.mark.parametrize("which", [".dockerignore", "Dockerfile.dockerignore"])
def test_an_ignore_file_that_is_no_regular_file_is_refused_without_reading_it(tmp_path, kind, which):
    """A fifo used to hang planning, a link to /dev/zero to exhaust memory, a link outside the repository to be
    read and its text echoed in an error. Docker resolves a symlinked ignore file inside the context (one
    pointing outside counts as none, oracle-checked); acr-publish refuses every symlink instead, saying so."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    outside = tmp_path / "outside.txt"
    outside.write_text(SECRET_TEXT + "[\n")  # a malformed pattern: its text would be echoed if it were read
    (ctx / "inside.txt").write_text("a\n")
    target = ctx / which
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    else:
        os.symlink({"link to /dev/zero": "/dev/zero", "link outside": str(outside), "dangling link": "nowhere",
                    "link inside": "inside.txt"}[kind], target)
    out = _read_bounded(ctx, ctx / "Dockerfile" if which != ".dockerignore" else None)
    assert "error" in out, out
    assert SECRET_TEXT not in out["error"]
    assert str(target) in out["error"]
    assert ("symlink" if "link" in kind else kind) in out["error"], out["error"]


def test_an_ignore_file_over_the_size_bound_is_refused_unread(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    with open(ctx / ".dockerignore", "wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse: reading it whole would pass the RSS bound many times over
    out = _read_bounded(ctx)
    assert "error" in out and "1,073,741,824 bytes" in out["error"], out


def test_a_line_over_dockers_line_limit_is_refused_with_an_excerpt_only(tmp_path):
    """Docker reads lines with bufio.Scanner: 65,535 bytes pass, 65,536 fail the build (oracle-checked,
    "bufio.Scanner: token too long"); the message names the line and shows a short escaped excerpt."""
    from buildcontext.dockerignore import MAX_LINE_BYTES
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    body = "\x1b[31m" + "q" * (MAX_LINE_BYTES - 5)
    # (an ESC inside a pattern that fits is refused as Docker refuses it: tests/e2e/test_dockerignore_controls.py)
    (ctx / ".dockerignore").write_text("a.txt\n" + "q" * MAX_LINE_BYTES + "\n")
    assert _read_bounded(ctx) == {"patterns": 2, "maxrss_kib": pytest.approx(0, abs=_RSS_BOUND_KIB)}
    (ctx / ".dockerignore").write_text("a.txt\n" + body + "q" + "\n")
    out = _read_bounded(ctx)
    assert "line 2 is 65,536 bytes" in out["error"], out
    assert "\x1b" not in out["error"] and "q" * 100 not in out["error"] and len(out["error"]) < 400


@pytest.mark.timeout(60)
@pytest.mark.parametrize("shape", ["literal", "stars", "classes", "escapes"])
def test_a_pattern_of_a_million_characters_is_checked_in_linear_time(shape):
    """Pattern() used to copy the rest of the chunk per character (12 s for a 1M-character line, four times
    that per doubling); now it is linear. 2M characters under a 60 s bound (seconds, linearly: a regression
    to quadratic takes minutes). The ignore file's line limit keeps such lines out of a real read."""
    text = {"literal": "x" * 2_000_000, "stars": "a*" * 1_000_000, "classes": "[a]" * 600_000,
            "escapes": "\\x" * 1_000_000}[shape]
    pattern = Pattern(text, False)
    try:
        assert not pattern.match("a/b")
    except ValueError as exc:  # RE2's size limit: reported when evaluated, as Go's regexp does, and short
        assert len(str(exc)) < 600
