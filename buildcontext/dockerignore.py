"""The build-context file set: which files Docker with BuildKit sends for a context directory.

This module owns `.dockerignore` semantics and the context walk. The reference is the real engine
(Docker 26.x with buildx/BuildKit), whose behaviour comes from three Go pieces, re-implemented here. The comment
after this docstring names them, each divergence from the Docker SDK's matcher (SDK-n, pinned in
tests/unit/buildcontext/test_dockerignore.py), why RE2, and how special files and the ignore file itself are read.
"""
from __future__ import annotations

# * moby/patternmatcher/ignorefile.ReadAll: how the ignore file is read into patterns
#   (`parse_ignore_file`);
# * moby/patternmatcher: how one pattern becomes a matcher (exact, prefix, suffix or a regular
#   expression) and how a list of patterns with `!` exceptions decides (`PatternMatcher`);
# * tonistiigi/fsutil's filtered walk: the walk feeds every path its parent directory's per-pattern
#   results (MatchesUsingParentResults) and prunes an excluded directory unless an exception could
#   re-include something inside it (`walk_context`); it sends every directory it does not exclude,
#   empty or not, and an excluded one only as the parent of something sent (`context_dirs`).
#
# Why not the Docker SDK for Python's matcher (docker.utils.build)? It is the well-kept Python
# implementation, but it follows the classic builder and an old moby algorithm, and it disagrees with
# BuildKit on much of the ground the oracle tests cover. Each divergence is named below (SDK-n) and
# pinned by a unit test in tests/unit/buildcontext/test_dockerignore.py of what this module sends (the SDK's answer in a comment):
#
#   SDK-1  case: the SDK's fnmatch lower-cases path and pattern; Docker is case-sensitive.
#   SDK-2  `[^...]` is negation in Docker (Go regexp); the SDK escapes the `^` (a literal caret) and
#          treats `[!...]` as negation instead, where Docker reads `!` literally.
#   SDK-3  `.dockerignore` and the Dockerfile: the SDK always re-includes both; BuildKit sends
#          exactly what the patterns leave, so an ignored `.dockerignore`/Dockerfile is not in the
#          context.
#   SDK-4  parent directories: the SDK checks only the one parent prefix as long as the pattern
#          (the deprecated `Matches`), so once an exception makes the walk enter `x/y/name/`,
#          `**/name` no longer excludes the other files in there.
#   SDK-5  exceptions below `**` and wildcard exceptions: the SDK only descends into an excluded
#          directory when an exception pattern starts with the directory's literal path, so
#          `!*/keep` or `!**/keep` never re-include anything inside an excluded directory.
#   SDK-6  escapes: `\*` matches a literal `*` in Docker; the SDK has no escapes (the backslash is
#          literal).
#   SDK-7  `**name` (no slash) is a suffix match in Docker (matches `xname`); the SDK's regex needs
#          `name` to start a path segment.
#   SDK-8  `..` at the start of a pattern: Go's filepath.Clean keeps it (`../a` never matches); the
#          SDK drops it and turns `../a` into `a`.
#   SDK-9  comments: Docker treats only a `#` in the first column as a comment (`  # x` is the
#          pattern `# x`), and strips a UTF-8 byte order mark.
#   SDK-10 a file below an excluded directory that an exception re-includes is decided with the
#          parent's per-pattern results (fsutil), not by re-matching every parent prefix: after
#          `a/b` and `!a`, `a/b/x` stays excluded.
#   SDK-11 `|`, `{` and `}` reach Go's regexp engine unescaped (see _ESCAPED): `a|*` excludes
#          everything and `x{2}*` matches `xx`; the SDK escapes them.
#   SDK-12 `<Dockerfile>.dockerignore` next to the Dockerfile replaces `<context>/.dockerignore`;
#          the SDK only reads the latter.
#
# Why RE2 (google-re2, pinned in requirements.txt): patternmatcher turns a pattern into a regular
# expression for Go's regexp engine, which implements RE2's syntax (except `\C`) in time linear in
# the path. Python's `re` backtracks: `**/**/*a*a*a*a*a*a*a*a*a*a*c` against a 61-character path took
# 32 s there, four times longer per extra `*a`. google-re2 is Google's own binding of the RE2 library,
# so the expression patternmatcher builds goes to an engine with Go's syntax and Go's guarantee as it
# is, escapes, POSIX and Unicode classes included, with no translation layer to get wrong. The only
# difference kept by hand is `\C`, which RE2 accepts and Go rejects (`_has_go_rejected_escape`).
# Pruning (PatternMatcher): a path is evaluated only against the patterns whose literal directory
# prefix it lies in and, among the others, those whose literal tail it ends with; the result is the
# same as evaluating every pattern (tests/unit/buildcontext/test_dockerignore.py checks it against the unpruned loop).
#
# Special files: BuildKit sends a fifo (as a fifo) and a socket (as an empty regular file; oracle-observed), and
# `walk_context` yields them like files, with device nodes (the digest records their kind: buildcontext/digest.py);
# `context_dirs` counts them as what makes an excluded parent directory sent.
#
# The ignore file itself is read only as a regular file (no symlink, fifo or device is opened), up to
# MAX_IGNORE_FILE_BYTES, with Docker's line limit (MAX_LINE_BYTES); messages show a pattern only as a short
# escaped excerpt. Where Docker differs: it follows a symlinked ignore file inside the context; this module
# refuses it (see `_read_ignore_file`).

import bisect
import errno
import os
import posixpath
import re
import stat as stat_module
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from buildcontext.printable import escaped

import re2

__all__ = [
    "ContextEntry",
    "Pattern",
    "PatternMatcher",
    "MatchInfo",
    "parse_ignore_file",
    "ignore_file_for",
    "read_patterns",
    "walk_context",
    "context_files",
    "context_dirs",
]

# Go's unicode.IsSpace, which strings.TrimSpace uses. Python's str.strip() would also strip the
# ASCII separators \x1c-\x1f, which Go keeps as part of the pattern.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_UTF8_BOM = "\ufeff"


def _go_trim_space(s: str) -> str:
    return s.strip(_GO_SPACE)


def _go_clean(p: str) -> str:
    """filepath.Clean on Unix. posixpath.normpath agrees except that POSIX keeps a leading `//`."""
    if p == "":
        return "."
    cleaned = posixpath.normpath(p)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


# --------------------------------------------------------------------------------------------
# Reading the ignore file (moby/patternmatcher/ignorefile.ReadAll)
# --------------------------------------------------------------------------------------------

def parse_ignore_file(text: str) -> list[str]:
    """The patterns of an ignore file's text, as BuildKit reads them.

    Comments are lines whose FIRST character is `#` (checked before trimming: SDK-9); blank lines
    are skipped; whitespace is trimmed around the line and after a leading `!`; each pattern is
    cleaned (filepath.Clean) and one leading `/` is dropped, so `/a`, `./a` and `a/` all mean `a`.
    """
    patterns: list[str] = []
    for number, line in enumerate(text.split("\n")):
        if line.endswith("\r"):  # bufio.ScanLines drops one trailing CR
            line = line[:-1]
        if number == 0 and line.startswith(_UTF8_BOM):
            line = line[len(_UTF8_BOM):]
        if line.startswith("#"):
            continue
        pattern = _go_trim_space(line)
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = _go_trim_space(pattern[1:])
        if pattern:
            pattern = _go_clean(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    # A final line without newline and a file ending in "\n" give the same lines in Go.
    return patterns


# --------------------------------------------------------------------------------------------
# One pattern (moby/patternmatcher Pattern.compile / Pattern.match)
# --------------------------------------------------------------------------------------------

# Characters patternmatcher escapes when it builds the regular expression. Its source lists
# `.+()|{}$`, but it keeps them in an 8-byte bitmap indexed as `bitmap[b%8] & (1 << (b/8))`, so a
# character of code 64 or above sets a bit beyond the byte and is never escaped: `|`, `{` and `}`
# reach Go's regexp engine raw (the oracle confirms: `a|*` excludes every file of the context,
# `x{2}*` matches `xx`). Matching the engine means keeping that quirk.
_ESCAPED = frozenset(".+()$")

_EXACT, _PREFIX, _SUFFIX, _REGEXP = "exact", "prefix", "suffix", "regexp"

# A byte that is not valid UTF-8, as os.fsdecode / surrogateescape represents it.
_UNDECODABLE_BYTE = re.compile("[\udc80-\udcff]")

class _BadPattern(Exception):
    """Go's filepath.ErrBadPattern."""


def _go_get_esc(p: str, i: int, end: int) -> tuple[str, int]:
    """filepath's getEsc over p[i:end]: one possibly escaped character of a class, and where the rest starts.
    Indices, not slices, here and below: slicing the rest per character made a 1M-character line quadratic."""
    if i >= end or p[i] in "-]":
        raise _BadPattern
    if p[i] == "\\":
        i += 1
        if i >= end:
            raise _BadPattern
    i += 1
    if i >= end:
        raise _BadPattern
    return p[i - 1], i


def _go_scan_chunk(p: str, i: int) -> tuple[bool, int, int]:
    """filepath's scanChunk from p[i]: (leading star?, start, end) of the chunk up to the next unbracketed
    star; the rest of the pattern starts at `end`."""
    n = len(p)
    star = False
    while i < n and p[i] == "*":
        i += 1
        star = True
    start = i
    in_range = False
    while i < n:
        c = p[i]
        if c == "\\":
            if i + 1 < n:
                i += 1
        elif c == "[":
            in_range = True
        elif c == "]":
            in_range = False
        elif c == "*" and not in_range:
            return star, start, i
        i += 1
    return star, start, n


def _go_match_chunk(p: str, ci: int, end: int, s: str, si: int) -> tuple[int, bool]:
    """filepath's matchChunk (Go 1.16+) of the chunk p[ci:end] against s[si:]: (where the rest of s starts,
    matched?). After a mismatch it keeps checking the chunk's syntax, as Go does."""
    failed = False
    ns = len(s)
    while ci < end:
        failed = failed or si >= ns
        c = p[ci]
        if c == "[":
            r = ""
            if not failed:
                r = s[si]
                si += 1
            ci += 1
            negated = ci < end and p[ci] == "^"
            if negated:
                ci += 1
            match = False
            ranges = 0
            while True:
                if ci < end and p[ci] == "]" and ranges > 0:
                    ci += 1
                    break
                lo, ci = _go_get_esc(p, ci, end)
                hi = lo
                if p[ci] == "-":
                    hi, ci = _go_get_esc(p, ci + 1, end)
                match = match or (r != "" and lo <= r <= hi)
                ranges += 1
            failed = failed or match == negated
        elif c == "?":
            if not failed:
                failed = s[si] == "/"
                si += 1
            ci += 1
        else:
            if c == "\\":
                ci += 1
                if ci >= end:
                    raise _BadPattern
            if not failed:
                failed = p[ci] != s[si]
                si += 1
            ci += 1
    return (ns, False) if failed else (si, True)


def _go_match_reports_bad_pattern(pattern: str, name: str = ".") -> bool:
    """Whether Go's filepath.Match(pattern, name) returns ErrBadPattern.

    patternmatcher.New calls it with name "." to reject malformed patterns up front. Go stops at
    the first chunk (a run between unbracketed stars) that fails to match, so a syntax error in a
    later chunk passes this check and only surfaces when the pattern is first evaluated; see
    Pattern.match. Linear in the pattern's length.
    """
    n, nn = len(pattern), len(name)
    pi = ni = 0
    try:
        while pi < n:
            star, cs, ce = _go_scan_chunk(pattern, pi)
            pi = ce
            if star and cs == ce:
                return False
            rest, ok = _go_match_chunk(pattern, cs, ce, name, ni)
            if ok and (rest == nn or pi < n):
                ni = rest
                continue
            if star:
                advanced = False
                i = ni
                while i < nn and name[i] != "/":
                    rest, ok = _go_match_chunk(pattern, cs, ce, name, i + 1)
                    if ok and not (pi >= n and rest < nn):
                        ni, advanced = rest, True
                        break
                    i += 1
                if advanced:
                    continue
            return False
        return False
    except _BadPattern:
        return True


def _go_regex(cleaned: str) -> tuple[str, str]:
    """patternmatcher's compile(): the match type and the RE2 expression (without the `$`)."""
    out = ["^"]
    kind = _EXACT
    i, n = 0, len(cleaned)
    step = 0
    while i < n:
        ch = cleaned[i]
        i += 1
        if ch == "*":
            if i < n and cleaned[i] == "*":
                i += 1
                if i < n and cleaned[i] == "/":  # "**/" means "**"
                    i += 1
                if i >= n:
                    if kind == _EXACT:
                        kind = _PREFIX
                    else:
                        out.append(".*")
                        kind = _REGEXP
                else:
                    out.append("(.*/)?")
                    kind = _REGEXP
                if step == 0:
                    kind = _SUFFIX
            else:
                out.append("[^/]*")
                kind = _REGEXP
        elif ch == "?":
            out.append("[^/]")
            kind = _REGEXP
        elif ch in _ESCAPED:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append("\\" + cleaned[i])
                i += 1
                kind = _REGEXP
            else:
                out.append("\\")
        elif ch in "[]":
            out.append(ch)
            kind = _REGEXP
        else:
            out.append(ch)
        step += 1
    return kind, "".join(out)


def _has_go_rejected_escape(regex: str) -> bool:
    """Whether `regex` holds `\\C` outside a `\\Q...\\E` quote: the one RE2 escape Go's regexp rejects.

    RE2 reads `\\C` as "any byte"; Go's regexp/syntax implements RE2's syntax except `\\C`
    (ErrInvalidEscape), so Docker fails the build where RE2 alone would match.
    """
    i, n = 0, len(regex)
    while i < n:
        if regex[i] != "\\":
            i += 1
            continue
        nxt = regex[i + 1:i + 2]
        if nxt == "C":
            return True
        if nxt == "Q":
            end = regex.find("\\E", i + 2)
            if end == -1:
                return False
            i = end + 2
            continue
        i += 2
    return False


def _compile_go_regexp(expr: str) -> re2._Regexp:
    """Compile what patternmatcher hands Go's regexp engine, with RE2 (linear time in the path).

    RE2's default options are Go's Perl flags for the subset patternmatcher can emit (no `(`, so
    no groups or flags of the user's): `$` is the end of the text, `.` stops at a newline, classes
    may match one, `\\d`/`\\w`/`\\s`/`\\b` and POSIX classes are ASCII, `\\p{..}` is Unicode.
    Raises ValueError with RE2's reason when the expression is invalid.
    """
    if _has_go_rejected_escape(expr):
        raise ValueError("the escape \\C (any byte) is not supported by Go's regexp engine")
    if _UNDECODABLE_BYTE.search(expr):
        expr = _UNDECODABLE_BYTE.sub("\ufffd", expr)
    try:
        return re2.compile(expr, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "rejected"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print every rejected pattern to stderr; the ValueError says it


class Pattern:
    """One cleaned pattern: `exclusion` is True for a `!` exception.

    Like patternmatcher, a pattern Go's filepath.Match rejects fails at construction, while one
    whose regular expression does not compile fails only when it is first evaluated (ValueError
    from `match`): the engine compiles lazily, so such a line breaks a build only if some path
    reaches it (an exception after no exclusion, for instance, is never evaluated).
    """

    __slots__ = ("cleaned", "exclusion", "kind", "go_regex", "regex", "error", "dir_parts", "tail", "_suffix",
                 "_prefix")

    def __init__(self, cleaned: str, exclusion: bool) -> None:
        self.cleaned = cleaned
        self.exclusion = exclusion
        if _go_match_reports_bad_pattern(cleaned):
            raise ValueError(
                f".dockerignore pattern {excerpt(cleaned)} is malformed (Go's filepath.Match rejects it): "
                "a '[' class must be closed and non-empty, '-' and ']' inside it and a trailing "
                "'\\' must be escaped with a backslash")
        self.kind, go_regex = _go_regex(cleaned)
        # the expression Go's regexp engine sees (for a regexp pattern), kept for diagnostics
        self.go_regex: str | None = go_regex + "$" if self.kind == _REGEXP else None
        self.regex: re2._Regexp | None = None
        self.error: str | None = None
        self._prefix = cleaned[:-2]
        self._suffix = cleaned[2:]
        if self.kind == _REGEXP:
            try:
                # Go appends "$" to what it built; after a trailing lone backslash that "$" turns
                # into an escaped, literal dollar and the expression loses its end anchor.
                self.regex = _compile_go_regexp(go_regex + "$")
            except ValueError as exc:
                self.error = (
                    f".dockerignore pattern {excerpt(cleaned)} is not a valid pattern ({excerpt(str(exc), 80)}); Docker "
                    "fails the build as soon as a path is checked against it: check its character "
                    "classes such as '[a-z]' and escape literal brackets and braces")
        # Pruning (PatternMatcher): the directories every path this pattern matches starts with,
        # and the text every such path ends with. A pattern that only fails when evaluated, and
        # one with a raw `|` (an alternative need not start at the beginning), has neither: it is
        # evaluated wherever Go evaluates it.
        self.dir_parts: tuple[str, ...] = ()
        self.tail = ""
        if self.kind == _EXACT:
            self.dir_parts = _dir_parts(cleaned)
        elif self.kind == _PREFIX:
            self.dir_parts = _dir_parts(self._prefix)
        elif self.kind == _SUFFIX:
            self.tail = self._suffix.removeprefix("/")  # "**/foo" matches ".../foo" and "foo"
        elif self.regex is not None and "|" not in cleaned:
            self.dir_parts = _dir_parts(_literal_prefix(cleaned))
            self.tail = _literal_tail(cleaned)

    def __repr__(self) -> str:
        return f"Pattern({'!' if self.exclusion else ''}{self.cleaned!r}, {self.kind})"

    def match(self, path: str) -> bool:
        kind = self.kind
        if kind == _EXACT:
            return path == self.cleaned
        if kind == _PREFIX:
            return path.startswith(self._prefix)
        if kind == _SUFFIX:
            suffix = self._suffix
            if path.endswith(suffix):
                return True
            # "**/foo" also matches "foo" itself
            return suffix[:1] == "/" and path == suffix[1:]
        if self.regex is None:
            raise ValueError(self.error)
        if not path.isascii():
            # Go's regexp engine reads each byte of a name that is not valid UTF-8 as U+FFFD.
            path = _UNDECODABLE_BYTE.sub("\ufffd", path)
        if not path.endswith(self.tail):  # a string test is far cheaper than a call into RE2
            return False
        # Go's MatchString searches: with a raw `|` an alternative need not start at the beginning.
        return self.regex.search(path) is not None


# Where a pattern's text stops being matched character for character: wildcards, classes, escapes,
# the characters that reach Go's regexp engine raw (`{}` repetition, `|` alternation, `^` anchor),
# and what the engine reads as U+FFFD (a path's stray byte matches it, though the strings differ).
_NOT_LITERAL = frozenset("*?[]\\{}|^\ufffd")


def _not_literal(ch: str) -> bool:
    return ch in _NOT_LITERAL or "\udc80" <= ch <= "\udcff"


def _literal_prefix(cleaned: str) -> str:
    """The text every path a regexp pattern matches starts with."""
    for i, ch in enumerate(cleaned):
        if _not_literal(ch):
            # `ab{2}` repeats the `b`: only `a` is certain
            return cleaned[:max(i - 1, 0)] if ch == "{" else cleaned[:i]
    return cleaned


def _literal_tail(cleaned: str) -> str:
    """The text every path a regexp pattern matches ends with (the expression ends with `$`).
    None is certain after a backslash escape: `\\x41` is `A`, and a lone trailing `\\` drops the `$`."""
    if "\\" in cleaned:
        return ""
    for i in range(len(cleaned) - 1, -1, -1):
        if _not_literal(cleaned[i]):
            return cleaned[i + 1:]
    return cleaned


def _dir_parts(literal: str) -> tuple[str, ...]:
    """The whole directory names at the start of `literal`: ("a", "b") for "a/b/c*"."""
    cut = literal.rfind("/")
    return tuple(literal[:cut].split("/")) if cut != -1 else ()


def _parent_dirs(path: str) -> list[str]:
    """The components of `path`'s parent directory ([] for a top-level path: Go's filepath.Dir
    returns "." there, which patternmatcher skips)."""
    parent = posixpath.dirname(path)
    return parent.split("/") if parent and parent != "." else []


def _matches_a_parent(pattern: Pattern, parent_dirs: list[str]) -> bool:
    """Whether `pattern` matches one of the parent directories a, a/b, ... of `parent_dirs` (a, b, ...)."""
    return any(pattern.match("/".join(parent_dirs[: i + 1])) for i in range(len(parent_dirs)))


class _Scope:
    """The patterns that can match the entries of one directory, found by their literal directory
    prefix (Pattern.dir_parts): a pattern whose prefix is not this directory or one above it cannot
    match an entry here, so it is never evaluated (it would not match, and a pattern that fails
    when evaluated has no prefix).

    `here`: the indices, in pattern order, of the patterns whose prefix this directory starts with.
    `below`: child name -> indices of the patterns whose prefix goes on through that child.
    """

    __slots__ = ("here", "below", "_leaf")

    def __init__(self, here: tuple[int, ...], below: dict[str, list[int]]) -> None:
        self.here = here
        self.below = below
        self._leaf: _Scope | None = None

    def leaf(self) -> _Scope:
        """The scope of every directory below this one that no pattern's prefix names."""
        if not self.below:
            return self
        if self._leaf is None:
            self._leaf = _Scope(self.here, {})
        return self._leaf


@dataclass(frozen=True)
class MatchInfo:
    """Per-pattern results of a directory, handed to its children (patternmatcher.MatchInfo)."""

    parent_matched: frozenset[int] | None = None
    """Indices of the patterns that matched the directory; None: not known (no parent results)."""
    scope: _Scope | None = field(default=None, compare=False, repr=False)
    """The patterns its entries can match (None: look it up)."""


_NONE_MATCHED: frozenset[int] = frozenset()


class PatternMatcher:
    """A list of patterns with `!` exceptions, last match wins (patternmatcher.New).

    Each pattern is compiled once, here. A path is checked only against the patterns that can
    match it: those whose literal directory prefix it lies in (see _Scope) and, among the patterns
    without one, those whose literal tail it ends with (found by a dictionary look-up per tail
    length), so thousands of patterns naming other files cost nearly nothing per path.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: list[Pattern] = []
        self.exclusions = False
        for raw in patterns:
            p = _go_trim_space(raw)
            if not p:
                continue
            p = _go_clean(p)
            exclusion = p[0] == "!"
            if exclusion:
                if len(p) == 1:
                    raise ValueError(
                        f'.dockerignore line {excerpt(raw)} is an illegal exclusion pattern "!": '
                        "write the path to re-include after the '!'")
                p = p[1:]
                self.exclusions = True
            self.patterns.append(Pattern(p, exclusion))
        self._only_prefix_exceptions = not any(
            p.exclusion and any(ch in _WALK_PATTERN_CHARS for ch in _without_trailing_glob(p.cleaned))
            for p in self.patterns
        )
        # sorted, so the exceptions below a directory are found by bisection
        self._exception_dirs = sorted(_without_trailing_glob(p.cleaned) + "/" for p in self.patterns if p.exclusion)
        here: list[int] = []
        below: dict[str, list[int]] = {}
        self._by_tail: dict[str, list[int]] = {}  # patterns without a directory prefix, by tail
        for i, pattern in enumerate(self.patterns):
            if pattern.dir_parts:
                below.setdefault(pattern.dir_parts[0], []).append(i)
            elif pattern.tail:
                self._by_tail.setdefault(pattern.tail, []).append(i)
            else:
                here.append(i)
        self._tail_lengths = sorted({len(tail) for tail in self._by_tail})
        self._tailed = frozenset(i for found in self._by_tail.values() for i in found)
        self._root = _Scope(tuple(here), below)
        self._scopes: dict[str, _Scope] = {}  # directories some pattern's prefix names, by path

    def _child_scope(self, scope: _Scope, path: str) -> _Scope:
        """The scope of directory `path`, whose parent's scope is `scope`."""
        deeper = scope.below.get(path.rpartition("/")[2])
        if deeper is None:
            return scope.leaf()
        cached = self._scopes.get(path)
        if cached is not None:
            return cached
        depth = path.count("/") + 1
        added: list[int] = []
        below: dict[str, list[int]] = {}
        for i in deeper:
            parts = self.patterns[i].dir_parts
            if len(parts) == depth:
                added.append(i)
            else:
                below.setdefault(parts[depth], []).append(i)
        here = tuple(sorted(scope.here + tuple(added))) if added else scope.here
        child = self._scopes[path] = _Scope(here, below)
        return child

    def _scope(self, directory: str) -> _Scope:
        """The scope of `directory` ("" is the context root)."""
        scope = self._root
        if directory:
            path = ""
            for name in directory.split("/"):
                if not scope.below:
                    break
                path = path + "/" + name if path else name
                scope = self._child_scope(scope, path)
        return scope

    def _tail_hits(self, path: str, hits: list[int]) -> None:
        """Append the patterns whose tail `path` ends with."""
        n = len(path)
        for length in self._tail_lengths:
            if length > n:
                break
            found = self._by_tail.get(path[n - length:])
            if found:
                hits.extend(found)

    def _order(self, path: str, scope: _Scope, parent_matched: frozenset[int] | None) -> Iterable[int]:
        """The indices, in pattern order, of the patterns to evaluate for `path` (in `scope`'s
        directory); with no parent results (None), also those that may match a parent directory."""
        if not self._tail_lengths:
            return scope.here
        hits: list[int] = []
        self._tail_hits(path, hits)
        if parent_matched is None:
            parent = path.rpartition("/")[0]
            while parent:
                self._tail_hits(parent, hits)
                parent = parent.rpartition("/")[0]
        elif parent_matched:
            hits.extend(i for i in parent_matched if i in self._tailed)
        if not hits:
            return scope.here
        return sorted(set(scope.here).union(hits))

    def matches_using_parent_results(
        self, path: str, parent_info: MatchInfo = MatchInfo()
    ) -> tuple[bool, MatchInfo]:
        """MatchesUsingParentResults, the form fsutil's walk uses.

        A pattern that matched the parent directory counts as matching the child without being
        evaluated. A pattern skipped because it could not change the outcome at that point is
        recorded as NOT matching (SDK-10): that record, not a fresh look at the parents, decides
        the children. `parent_info` is what this call returned for the parent directory.
        """
        parent_matched = parent_info.parent_matched
        scope = parent_info.scope
        if scope is None:
            scope = self._scope(path.rpartition("/")[0])
        matched = False
        results: list[int] = []
        patterns = self.patterns
        for i in self._order(path, scope, parent_matched):
            pattern = patterns[i]
            match = parent_matched is not None and i in parent_matched
            if not match:
                if pattern.exclusion != matched:
                    continue
                match = pattern.match(path)
                if not match and parent_matched is None:
                    match = _matches_a_parent(pattern, _parent_dirs(path))
            if match:
                results.append(i)
                matched = not pattern.exclusion
        return matched, MatchInfo(frozenset(results) if results else _NONE_MATCHED, self._child_scope(scope, path))

    def may_reinclude_below(self, directory: str) -> bool:
        """Whether the walk must descend into the excluded `directory` (fsutil's pruning rule).

        When every exception is a literal path (optionally ending in `/*` or `/**`), only an
        exception that lies below `directory` can re-include something there; as soon as one
        exception has a wildcard, fsutil descends into every excluded directory (SDK-5).
        """
        if not self.exclusions:
            return False
        if not self._only_prefix_exceptions:
            return True
        dir_slash = directory + "/"
        k = bisect.bisect_left(self._exception_dirs, dir_slash)
        return k < len(self._exception_dirs) and self._exception_dirs[k].startswith(dir_slash)


# fsutil's set of characters that make an exception "not a plain prefix" (Unix: backslash too).
_WALK_PATTERN_CHARS = frozenset("*[]?^\\")


def _without_trailing_glob(cleaned: str) -> str:
    if cleaned.endswith("/**"):
        cleaned = cleaned[:-3]
    if cleaned.endswith("/*"):
        cleaned = cleaned[:-2]
    return cleaned


# --------------------------------------------------------------------------------------------
# Which ignore file, and the walk
# --------------------------------------------------------------------------------------------

def _check_context(context: Path) -> Path:
    context = Path(context)
    try:
        is_dir = context.is_dir()
    except OSError as exc:
        shown = str(context) if len(str(context)) <= 120 else str(context)[:120] + "..."
        why = ("a path component is longer than 255 bytes, or the path longer than the system allows; shorten it"
               if exc.errno == errno.ENAMETOOLONG else f"it cannot be inspected ({exc.strerror}); fix its permissions")
        raise ValueError(f"build context {shown!r} is invalid: {why}") from None
    if not is_dir:
        problem = "does not exist" if not context.exists() else "is not a directory"
        raise ValueError(
            f"build context {str(context)!r} {problem}: a build context must be a directory "
            "(pass the folder that holds the files the Dockerfile COPYs)")
    return context


def _dockerfile_path(context: Path, dockerfile: Path | str | None) -> Path:
    if dockerfile is None:
        return context / "Dockerfile"
    return Path(os.path.abspath(dockerfile))


def ignore_file_for(context: Path, dockerfile: Path | str | None = None) -> Path | None:
    """The ignore file BuildKit applies: `<Dockerfile>.dockerignore` next to the Dockerfile when
    it exists, else `<context>/.dockerignore` when that exists, else None. A symlink counts as existing
    (dangling or not), so `read_patterns` refuses it instead of skipping it."""
    context = _check_context(context)
    df = _dockerfile_path(context, dockerfile)
    specific = df.with_name(df.name + ".dockerignore")
    if os.path.lexists(specific):
        return specific
    general = context / ".dockerignore"
    if os.path.lexists(general):
        return general
    return None


MAX_IGNORE_FILE_BYTES = 4 << 20
"""An ignore file larger than this is refused: 10,000 patterns take about 300 KB, and reading must stay bounded
(Docker itself has no such bound; its line limit alone admits any size)."""
MAX_LINE_BYTES = 65535
"""The longest line Docker accepts: ignorefile.ReadAll reads lines with Go's bufio.Scanner, whose 64 KiB buffer
must hold the line and its newline (oracle-verified on Docker 26: 65,535 bytes pass, 65,536 fail the build with
"bufio.Scanner: token too long")."""
_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def excerpt(text: str, limit: int = 60) -> str:
    """A short, escaped excerpt of `text` for a message (its repr, cut after `limit` characters): a line from a
    file can be long or hold control characters, and a message shows neither whole."""
    if len(text) <= limit:
        return f"'{escaped(text)}'"
    return f"'{escaped(text[:limit])}'... ({len(text):,} characters)"


def _file_kind(mode: int) -> str:
    for test, name in ((stat_module.S_ISLNK, "symlink"), (stat_module.S_ISDIR, "directory"),
                       (stat_module.S_ISFIFO, "fifo"), (stat_module.S_ISSOCK, "socket"),
                       (stat_module.S_ISCHR, "character device"), (stat_module.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def _read_ignore_file(path: Path) -> bytes:
    """The bytes of the ignore file at `path`, opened only as a regular file and read up to
    MAX_IGNORE_FILE_BYTES. A symlink is refused, not followed: Docker resolves it inside the context (a link
    to a file outside counts as no ignore file, oracle-verified), and rather than re-implement that scoped
    resolution the fix is asked for (replace the link with the file). A fifo, socket or device is never
    opened: it could block the run or never end."""
    shown = str(path)
    fix = "make it a regular file of patterns, or remove it"
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise ValueError(f"cannot read the ignore file {shown!r}: {exc.strerror}; {fix}") from None
    if stat_module.S_ISLNK(st.st_mode):
        raise ValueError(f"the ignore file {shown!r} is a symlink: acr-publish reads an ignore file only as a "
                         "regular file (Docker resolves the link inside the build context and ignores one that "
                         "points outside it); replace the link with a copy of the file it points to")
    if not stat_module.S_ISREG(st.st_mode):
        raise ValueError(f"the ignore file {shown!r} is a {_file_kind(st.st_mode)}, not a regular file; {fix}")
    try:
        fd = os.open(path, _O_READ)
    except OSError as exc:
        raise ValueError(f"cannot read the ignore file {shown!r}: {exc.strerror}; {fix}") from None
    try:
        st = os.fstat(fd)  # what was opened, should the path have been swapped since the lstat
        if not stat_module.S_ISREG(st.st_mode):
            raise ValueError(f"the ignore file {shown!r} stopped being a regular file while it was read; "
                             "run again once nothing writes to it")
        if st.st_size > MAX_IGNORE_FILE_BYTES:
            raise ValueError(f"the ignore file {shown!r} is {st.st_size:,} bytes, more than the "
                             f"{MAX_IGNORE_FILE_BYTES:,} acr-publish reads; shorten it (10,000 patterns take "
                             "about 300 KB)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_IGNORE_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the ignore file {shown!r}: {exc.strerror}; {fix}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_IGNORE_FILE_BYTES:
        raise ValueError(f"the ignore file {shown!r} grew past {MAX_IGNORE_FILE_BYTES:,} bytes while it was read; "
                         "shorten it")
    return data


def _check_line_lengths(data: bytes, path: Path) -> None:
    for number, line in enumerate(data.split(b"\n"), 1):
        if len(line) > MAX_LINE_BYTES:
            raise ValueError(
                f"the ignore file {str(path)!r} line {number} is {len(line):,} bytes long (it starts "
                f"{excerpt(line[:40].decode('utf-8', 'replace'), 40)}); Docker fails the build on a line over "
                f"{MAX_LINE_BYTES:,} bytes (bufio.Scanner: token too long): shorten or split it")


def read_patterns(context: Path, dockerfile: Path | str | None = None) -> list[str]:
    """The pattern lines in effect, as BuildKit reads them (comments and blank lines dropped,
    each line trimmed and cleaned; see `parse_ignore_file`). Empty when there is no ignore file."""
    path = ignore_file_for(context, dockerfile)
    if path is None:
        return []
    data = _read_ignore_file(path)
    _check_line_lengths(data, path)
    # The patterns reach the walker JSON-encoded inside the build definition, and Go's JSON
    # encoder replaces every byte that is not valid UTF-8 with U+FFFD (oracle-verified: a pattern
    # with a Latin-1 byte never matches the file it names, but matches a name holding U+FFFD).
    text = _UNDECODABLE_BYTE.sub("\ufffd", data.decode("utf-8", errors="surrogateescape"))
    patterns = parse_ignore_file(text)
    for pattern in patterns:
        _check_sendable(pattern, path)
    return patterns


def _check_sendable(pattern: str, path: Path) -> None:
    """Refuse what Docker refuses: the patterns travel to BuildKit in a gRPC header, sent as they are when all
    ASCII (percent-encoded otherwise), and gRPC rejects a header value with an ASCII control character, so a
    pattern holding a tab, CR, NUL, ESC or DEL (and no non-ASCII character) fails the build ("header key
    \"exclude-patterns\" contains value with non-printable ASCII characters"; oracle-verified on Docker 26,
    tests/e2e/test_context_oracle.py)."""
    if pattern.isascii() and not all(" " <= ch < "\x7f" for ch in pattern):
        bad = next(ch for ch in pattern if not " " <= ch < "\x7f")
        raise ValueError(
            f"the ignore file {escaped(str(path))!r} has the pattern {excerpt(pattern)} holding the control character "
            f"{ascii(bad)}: Docker refuses a build context whose ignore patterns hold one (non-printable ASCII "
            "characters in the exclude-patterns header); remove it, or write ? where a file name holds it")


class ContextEntry(NamedTuple):
    """One file the build sees (a NamedTuple: built per file, and a frozen dataclass costs twice as much)."""

    rel: str
    """POSIX path relative to the context root, e.g. "src/app.py"."""
    abspath: str
    """Absolute path on disk, as a str: building a Path per file would double the cost of a warm walk."""
    stat: os.stat_result
    """os.lstat() result (symlinks are not followed)."""


def walk_context(context: Path, dockerfile: Path | str | None = None,
                 dirs: list[str] | None = None) -> Iterator[ContextEntry]:
    """Everything but directories BuildKit sends for this context (regular files, symlinks, and fifos,
    sockets and device nodes), in no particular order.

    Each entry is lstat'ed once. Excluded directories are pruned unless an exception could
    re-include something inside them (fsutil's rule, `PatternMatcher.may_reinclude_below`).
    A symlink is sent as a link, never followed, so a link to a directory is one entry.
    The walk is iterative (an explicit stack, not recursion), so no depth of tree exhausts Python's stack.

    `dirs`: when a list, the same traversal appends to it the relative path of every directory
    the build sends (see `context_dirs`); it is complete once the iterator is exhausted.
    """
    # Not a generator itself: a bad context or a malformed pattern raises here, at the call.
    context = _check_context(context)
    root = os.path.abspath(context)
    matcher = PatternMatcher(read_patterns(context, dockerfile))
    if not matcher.patterns:
        return _walk_all(root, dirs)
    return _walk_filtered(root, matcher, dirs)


def _scan(directory: str, rel: str, excluded: bool) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as it:
            return list(it)
    except PermissionError as exc:
        if excluded:  # fsutil ignores permission errors below excluded directories
            return []
        raise PermissionError(
            exc.errno, f"cannot list {rel.rstrip('/') or '.'!r} in the build context ({exc.strerror}); "
            "fix its permissions or exclude it in .dockerignore", str(directory)) from exc


def _walk_all(root: str, dirs: list[str] | None) -> Iterator[ContextEntry]:
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        for entry in _scan(directory, prefix, False):
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if dirs is not None:
                    dirs.append(rel)
                pending.append((entry.path, rel + "/"))
                continue
            yield ContextEntry(rel, entry.path, entry.stat(follow_symlinks=False))


@dataclass
class _Frame:
    """One directory of the filtered walk: the entries left to visit and what the walk found below it."""

    entries: Iterator[os.DirEntry[str]]
    prefix: str
    info: MatchInfo
    excluded: bool
    sent: bool = False


def _walk_filtered(root: str, matcher: PatternMatcher, dirs: list[str] | None) -> Iterator[ContextEntry]:
    """Depth first, so that an excluded directory the walk entered is sent exactly when anything at all below
    it is (also a directory, a fifo or a socket): fsutil sends it as the parent of what an exception
    re-included, never on its own. Its entry in `dirs` is provisional until its frame ends."""
    stack = [_Frame(iter(_scan(root, "", False)), "", MatchInfo(), False)]
    while stack:
        frame = stack[-1]
        entry = next(frame.entries, None)
        if entry is None:
            stack.pop()
            if stack:
                if not frame.excluded or frame.sent:
                    stack[-1].sent = True
                elif dirs is not None:
                    dirs.pop()  # nothing below appended a directory that stayed, so the last one is this one
            continue
        rel = frame.prefix + entry.name
        excluded, info = matcher.matches_using_parent_results(rel, frame.info)
        if entry.is_dir(follow_symlinks=False):
            if excluded and not matcher.may_reinclude_below(rel):
                continue
            if dirs is not None:
                dirs.append(rel)
            stack.append(_Frame(iter(_scan(entry.path, rel + "/", excluded)), rel + "/", info, excluded))
            continue
        if excluded:
            continue
        frame.sent = True
        yield ContextEntry(rel, entry.path, entry.stat(follow_symlinks=False))


def excludes_whole(context: Path, dockerfile: Path | str | None, directory: str) -> bool:
    """Whether the ignore file in effect keeps the directory `directory` (relative POSIX path) and everything that
    may ever be below it out of the build: the walk would prune it or one of its parents (excluded, and no
    exception could re-include anything inside), whatever files appear there later."""
    matcher = PatternMatcher(read_patterns(context, dockerfile))
    info = MatchInfo()
    path = ""
    for name in directory.split("/"):
        path = f"{path}/{name}" if path else name
        excluded, info = matcher.matches_using_parent_results(path, info)
        if excluded and not matcher.may_reinclude_below(path):
            return True
    return False


def context_files(context: Path, dockerfile: Path | str | None = None) -> list[str]:
    """The sorted relative POSIX paths of the regular files and symlinks the build sees."""
    return sorted(e.rel for e in walk_context(context, dockerfile)
                  if stat_module.S_ISREG(e.stat.st_mode) or stat_module.S_ISLNK(e.stat.st_mode))


def context_dirs(context: Path, dockerfile: Path | str | None = None) -> list[str]:
    """The sorted relative POSIX paths (no trailing '/') of the directories the build sees.

    Every directory the walk enters and does not exclude is sent, empty or not; an excluded
    directory is sent only as the parent of something an exception re-included (oracle-checked:
    `docs` + `!docs/keep.md` sends `docs/`; an excluded empty directory is absent).
    """
    dirs: list[str] = []
    for _ in walk_context(context, dockerfile, dirs):
        pass
    return sorted(dirs)
