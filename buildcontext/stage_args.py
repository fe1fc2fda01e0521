"""The ARG scope of a Dockerfile and its words: which values an instruction's words are expanded from, and how.

Each word is processed as BuildKit's shell-word lexer does (`expand`: quotes, escapes, `$A`, `${A}`, the `-`, `+`,
`?`, `#`, `%` and `/` modifiers, buildcontext/shell_pattern.py matching the patterns); what BuildKit fails on fails
the plan with its line. A FROM line sees
the global ARGs (declared before the first FROM; a build arg overrides a declared default) and the platform ARGs
BuildKit predefines (TARGETPLATFORM/OS/ARCH/VARIANT from the image's platform, BUILDPLATFORM from this machine);
other instructions see their stage's scope (buildcontext/stages.py: its ARGs, platform ARGs too, its ENVs and its
FROM parent's).
"""
from __future__ import annotations

import platform as host_platform
import re
from collections.abc import Mapping

from buildcontext.plan import DockerfileProblem
from buildcontext.shell_pattern import MAX_WORD, PatternProblem, replace, trim_prefix, trim_suffix

_UNSET = object()
MAX_NESTING = 64
"""The most `${...}` levels one word nests: each level is a few Python frames deep, so deeper words are refused with
their line rather than left to exhaust the interpreter's stack (BuildKit's Go stack grows; no real word nests so)."""
_SPECIAL_PARAMS = "@*#?-$!0"
_DIRECTIVE = re.compile(r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*")
"""A parser directive as BuildKit's parser matches one (frontend/dockerfile/parser/directives.go; Go's `\\s`)."""
_DIRECTIVES = ("syntax", "escape")
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200b)))
"""Go's unicode.IsSpace: what BuildKit trims from the left of a line before it looks for a directive."""
_HOST_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
              "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host_platform_name() -> str:
    """BUILDPLATFORM: the platform of this machine, as the local engine builds `--platform=$BUILDPLATFORM` stages."""
    machine = host_platform.machine().lower()
    return f"linux/{_HOST_ARCH.get(machine, machine)}"


def platform_args(prefix: str, value: str) -> dict[str, str]:
    parts = value.split("/")
    return {f"{prefix}PLATFORM": value, f"{prefix}OS": parts[0], f"{prefix}ARCH": parts[1] if len(parts) > 1 else "",
            f"{prefix}VARIANT": parts[2] if len(parts) > 2 else ""}


class WordFails(DockerfileProblem):
    """BuildKit fails to process the word (an open quote, a bad `${...}`): the build fails where it expands it."""


class EmptyTrimPattern(DockerfileProblem):
    """`${NAME#}` / `${NAME%}` (an empty pattern, also from an empty variable): Docker 26's BuildKit panics on it
    and takes the engine down, so it is refused wherever BuildKit would expand the word, in every stage."""


class UnsetVariable(WordFails):
    """`${NAME?}` / `${NAME:?}` met an unset (or empty) NAME."""


class _Word:
    """One word processed as BuildKit's shell-word lexer (frontend/dockerfile/shell/lex.go, Docker 26) does:
    quotes removed ('...' literal, "..." with `$` expanded and the escape character escaping `"`, `$` and itself),
    the escape character escaping any character outside quotes, `$NAME`, `${NAME}`, the `-`, `+`, `?`, `#`, `##`,
    `%`, `%%` modifiers (with or without `:`, which only the first three heed) and `/`, `//`. The words of `#`, `%`
    and `/` keep their escape characters (`raw`): the pattern reads them."""

    def __init__(self, word: str, values: Mapping[str, str | None], line: int, escape: str,
                 asked: list[str] | None) -> None:
        self.word, self.values, self.line, self.escape = word, values, line, escape
        self.asked = asked if asked is not None else []
        self.pos = 0
        self.raw = False
        self.depth = 0

    def peek(self) -> str | None:
        return self.word[self.pos] if self.pos < len(self.word) else None

    def next(self) -> str | None:
        ch = self.peek()
        self.pos += ch is not None
        return ch

    def fail(self, reason: str, fix: str = "fix: correct its quotes or ${...} form",
             kind: type[WordFails] = WordFails) -> WordFails:
        return kind(f"{self.word!r}: BuildKit fails to process it ({reason}); {fix}", self.line)

    def lookup(self, name: str) -> str | None:
        """NAME's value, None when unset; a global ARG declared without a value is set and empty, as in BuildKit."""
        if name not in self.asked:
            self.asked.append(name)
        value = self.values.get(name, _UNSET)
        return None if value is _UNSET else (value or "")

    def until(self, stop: str | None, raw: bool = False) -> str:
        outer, self.raw = self.raw, raw
        try:
            return self._until(stop)
        finally:
            self.raw = outer

    def _until(self, stop: str | None) -> str:
        out: list[str] = []
        size = 0
        while (ch := self.peek()) is not None:
            if ch == stop:
                self.pos += 1
                return "".join(out)
            if ch in "$'\"":
                out.append(self.dollar() if ch == "$" else self.single() if ch == "'" else self.double())
                size = self.bounded(size + len(out[-1]))
                continue
            self.pos += 1
            if ch == self.escape:
                if self.raw:
                    out.append(ch)
                ch = self.next()
                if ch is None:
                    break
            out.append(ch)
        if stop is not None:
            raise self.fail(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def bounded(self, size: int) -> int:
        """`size`, the characters expanded so far in one part of the word; refused past MAX_WORD."""
        if size > MAX_WORD:
            raise DockerfileProblem(
                f"{self.word[:80]!r} expands to more than {MAX_WORD} characters, the most this plan expands (a value "
                "doubled line by line grows without bound); fix: shorten the values it uses", self.line)
        return size

    def single(self) -> str:
        end = self.word.find("'", self.pos + 1)
        if end < 0:
            raise self.fail("unexpected end of statement while looking for matching single-quote")
        text, self.pos = self.word[self.pos + 1:end], end + 1
        return text

    def double(self) -> str:
        out: list[str] = []
        self.pos += 1
        size = 0
        while (ch := self.peek()) != '"':
            if ch is None:
                raise self.fail("unexpected end of statement while looking for matching double-quote")
            if ch == "$":
                out.append(self.dollar())
                size = self.bounded(size + len(out[-1]))
                continue
            self.pos += 1
            if ch == self.escape:
                if self.raw:
                    out.append(ch)
                if self.peek() is None:
                    continue
                if self.peek() in ('"', "$", self.escape):  # any other character keeps its escape character
                    ch = self.next()
            out.append(ch)  # type: ignore[arg-type]
        self.pos += 1
        return "".join(out)

    def name(self) -> str:
        first = self.peek()
        if first is not None and first.isdecimal():  # Go's unicode.IsDigit: `$1x` is `$1` then `x`
            start = self.pos
            while (ch := self.peek()) is not None and ch.isdecimal():
                self.pos += 1
            return self.word[start:self.pos]
        if first is not None and first in _SPECIAL_PARAMS:
            self.pos += 1
            return first
        start = self.pos
        while (ch := self.peek()) is not None and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            self.pos += 1
        return self.word[start:self.pos]

    def dollar(self) -> str:
        start = self.pos
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            return (self.lookup(name) or "") if name else "$"
        self.pos += 1
        if self.peek() is None:
            raise self.fail("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise self.fail("syntax error: bad substitution")
        if self.depth >= MAX_NESTING:
            raise DockerfileProblem(
                f"{self.word[:80]!r} nests ${{...}} more than {MAX_NESTING} levels deep, the most this plan reads; "
                "fix: set the value in an ARG or ENV line of its own and use that variable", self.line)
        self.depth += 1
        try:
            return self.substitution(start)
        finally:
            self.depth -= 1

    def substitution(self, start: int) -> str:
        """The inside of `${...}` from its name on (`start`: where its `$` is)."""
        name = self.name()
        op = self.next()
        if op == "}":
            return self.lookup(name) or ""
        if op == "/":
            return self.replaced(name, start)
        colon = op == ":"
        if colon:
            op = self.next()
        if not colon and op not in ("-", "+", "?", "#", "%"):
            raise self.fail(f"unsupported modifier ({op or ''}) in substitution")
        return self.modified(name, colon, op, start)

    def closed(self, stop: str, missing: str, raw: bool = True) -> str:
        """The word up to `stop` (raw: a pattern or a replacement); `missing` when the whole word ends first."""
        try:
            return self.until(stop, raw)
        except DockerfileProblem:
            if self.peek() is None:
                raise self.fail(f"syntax error: missing {missing}") from None
            raise

    def replaced(self, name: str, start: int) -> str:
        """`${NAME/pattern/replacement}`, `${NAME//pattern/replacement}`."""
        every = self.peek() == "/"
        self.pos += every
        pattern = self.closed("/", "'/' in ${}")
        replacement = self.closed("}", "'}'")
        return self.matched(start, lambda: replace(pattern, self.lookup(name) or "", replacement, every))

    def matched(self, start: int, compute) -> str:
        """What `compute` gives; its PatternProblem as the line's problem (the pattern, which a build arg may give,
        is not shown)."""
        try:
            return compute()
        except PatternProblem as problem:
            raise DockerfileProblem(f"{self.word[start:self.pos]!r}: {problem}", self.line) from None

    def trimmed(self, name: str, op: str, word: str, start: int) -> str:
        """`${NAME#word}`, `${NAME##word}`, `${NAME%word}`, `${NAME%%word}` (a `:` before them changes nothing)."""
        if not word:
            written = self.word[start:self.pos]
            raise EmptyTrimPattern(
                f"{written!r} has an empty pattern (written so, or from an empty variable): Docker 26's BuildKit "
                f"crashes on it, taking the Docker engine down with it; fix: give {op} a pattern, or remove it",
                self.line)
        greedy = word[0] == op
        pattern = word[1:] if greedy else word
        trim = trim_suffix if op == "%" else trim_prefix
        return self.matched(start, lambda: trim(pattern, self.lookup(name) or "", greedy))

    def modified(self, name: str, colon: bool, op: str | None, start: int) -> str:
        """`${NAME-word}`, `${NAME+word}`, `${NAME?word}` (`colon`: an empty value counts as unset), and the trims.
        The word is processed first, as BuildKit does; the names it asks for count only when it is used."""
        asked_before = len(self.asked)
        word = self.closed("}", "'}'", raw=op in ("#", "%"))
        if op in ("#", "%"):
            return self.trimmed(name, op, word, start)
        if op not in ("-", "+", "?"):
            raise self.fail(f"unsupported modifier ({':' if colon else ''}{op or ''}) in substitution")
        word_names = self.asked[asked_before:]
        del self.asked[asked_before:]
        value = self.lookup(name)
        unset = value is None or (colon and value == "")
        if op == "?":
            if unset:
                raise self.fail(f"{name}: is not allowed to be {'unset' if value is None else 'empty'}",
                                f"fix: give {name} a value (a build arg or ARG {name}=<value>)", UnsetVariable)
            return value  # type: ignore[return-value]
        use_word = unset if op == "-" else not unset
        if use_word:
            self.asked.extend(n for n in word_names if n not in self.asked)
        if op == "-":
            return word if unset else value  # type: ignore[return-value]
        return word if use_word else ""


def expand(word: str, values: Mapping[str, str | None], line: int, escape: str = "\\",
           asked: list[str] | None = None) -> str:
    """`word` processed as BuildKit processes an instruction's word (_Word), its variables taken from `values`
    (absent: unset; None: a global ARG declared without a value, set and empty). The names whose values the result
    depends on are appended to `asked`. DockerfileProblem where BuildKit fails the build (UnsetVariable for
    `${NAME?}`) and for a form this plan does not reproduce."""
    return _Word(word, values, line, escape, asked).until(None)


def escape_character(data: bytes) -> str:
    """The escape character the Dockerfile's `# escape=` directive sets (a backslash without one), read as
    BuildKit's parser reads directives: from the first line on (a UTF-8 BOM dropped, leading whitespace trimmed),
    each line a directive it knows until the first that is not. A repeated or invalid one is left to the parser,
    which refuses the file (buildcontext/plan.py parse_commands)."""
    escape, seen = "\\", set()
    for n, raw in enumerate(data.split(b"\n")):
        line = raw[3:] if n == 0 and raw.startswith(b"\xef\xbb\xbf") else raw
        directive = _DIRECTIVE.fullmatch(line.decode("utf-8", errors="replace").lstrip(GO_SPACE))
        name = directive.group(1).lower() if directive is not None else None
        if name not in _DIRECTIVES or name in seen:
            break
        seen.add(name)
        if name == "escape":
            escape = directive.group(2) if directive.group(2) in ("`", "\\") else escape  # type: ignore[union-attr]
    return escape


def global_values(prelude: list, build_args: Mapping[str, str], platform: str, escape: str) -> dict[str, str]:
    """What a FROM line is expanded from: the predefined platform ARGs and the global ARGs the commands before
    the first FROM (`prelude`) declare, a build arg overriding a declared default (None: declared, no value)."""
    values: dict[str, str] = {**platform_args("TARGET", platform), **platform_args("BUILD", host_platform_name())}
    for command in prelude:
        if command.cmd.upper() == "ARG":
            for decl in command.value:
                name, eq, default = decl.partition("=")
                if name in build_args:
                    values[name] = build_args[name]
                elif eq:
                    try:
                        values[name] = expand(default, values, command.start_line, escape)
                    except WordFails:
                        values[name] = ""  # BuildKit ignores the error of a global ARG's default (Docker 26)
                else:
                    values.setdefault(name, None)  # type: ignore[arg-type]
    return values
