"""The plan of a Dockerfile for one image's build inputs: its stages, the stages the target needs, the target's FROM
chain, the base images and remote `ADD` sources those stages name, and what this plan refuses to compute.

`DockerfilePlan.pinned_text` writes the Dockerfile the build uses: every needed external reference at the digest
planned (`FROM ref@sha256:…`, `COPY --from=ref@sha256:…`) and every fetched `ADD <url>` with `--checksum`, line
numbers kept. buildcontext/stages.py reads a Dockerfile into this plan. No Pulumi import, no network.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from errors import AcrPublishError
from registryclient.references import DIGEST

_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


class DockerfileProblem(AcrPublishError, ValueError):
    """The Dockerfile cannot be read as the build would read it; `line` is 1-based (0: the file as a whole)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


class UnknownTarget(DockerfileProblem):
    """The image's target names no stage (components/config/image_rules.py refuses such a target before any plan)."""


@dataclass(frozen=True)
class ExternalReference:
    """An image a needed stage pulls: a FROM base, or the image of a `COPY --from` / `RUN --mount from=`."""

    line: int
    instruction: str
    """"FROM", "COPY --from", "RUN --mount", or for the frontend image "# syntax" (its directive's line) or
    "BUILDKIT_SYNTAX" (the build arg; line 0), which is for the build host's platform (how messages name it)."""
    written: str
    """As written in the Dockerfile, before substitution."""
    reference: str
    """After ARG substitution: what the build pulls."""
    platform: str
    """os/arch[/variant] the manifest is picked for."""
    own_platform: bool = True
    """The image's platform (False: a `FROM --platform=` naming another)."""

    @property
    def pinned(self) -> bool:
        _, at, digest = self.reference.rpartition("@")
        return bool(at and DIGEST.fullmatch(digest))

    @property
    def label(self) -> str:
        """How the content tag and explain name it: `FROM <reference>`, with `(<platform>)` when that is not the
        image's own."""
        return f"{self.instruction} {self.reference}" + ("" if self.own_platform else f" ({self.platform})")


@dataclass(frozen=True)
class RemoteSource:
    """A source of `ADD` that is not in the context: an http(s) URL or a git repository."""

    line: int
    kind: str
    """"http" or "git"."""
    url: str
    """After substitution: what the build fetches. Never shown when it holds user info (`shown`, `label`)."""
    checksum: str | None
    """`--checksum=` of the ADD (sha256:… for http; a commit for git), or None."""
    written: str = ""
    """As written in the Dockerfile, before substitution."""

    @property
    def has_userinfo(self) -> bool:
        return has_userinfo(self.url)

    @property
    def shown(self) -> str:
        """How messages name it: the URL, or its written form when the URL holds user info (a substituted build
        arg, e.g. a token, must not reach any message)."""
        return self.written if self.has_userinfo else self.url

    @property
    def pinned(self) -> bool:
        if self.kind == "http":
            return self.checksum is not None
        fragment = self.url.partition("#")[2].partition(":")[0]
        return bool(_COMMIT.fullmatch(fragment)) or bool(self.checksum and _COMMIT.fullmatch(self.checksum))

    @property
    def label(self) -> str:
        """How the content tag and explain name it: the URL without its user info (the content is pinned by the
        checksum or commit, not by who fetched it)."""
        return f"ADD {without_userinfo(self.url)}"


def _split_netloc(url: str) -> tuple[str, str, str] | None:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    end = re.search(r"[/?#]", rest)
    cut = end.start() if end else len(rest)
    return f"{scheme}://", rest[:cut], rest[cut:]


def has_userinfo(url: str) -> bool:
    """Whether `url` (scheme://...) names user info (`user[:password]@`) before its host."""
    parts = _split_netloc(url)
    return parts is not None and "@" in parts[1]


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_GO_PATH_VERBATIM = _UNRESERVED | frozenset("!$&'()*+,;=:@[]%/")
"""Go's url.URL.EscapedPath sends a path verbatim when every character is one of these, else escapes all but the
unreserved ones and $&+,/:;=@ (uppercase %XX); requests keeps !'()*[] and decodes a %XX of an unreserved one."""
_REQUESTS_QUERY_VERBATIM = _UNRESERVED | frozenset("!$%&'()*+,/:;=?@[]")
_PERCENT = re.compile(r"%(..)", re.DOTALL)


def encoded_differently(url: str) -> tuple[str, ...]:
    """The characters of an http(s) `url` that BuildKit's Go client and this plan's client (requests) would send
    as different bytes (none: empty): the plan would otherwise hash another file than the build fetches."""
    rest = url.partition("://")[2].partition("#")[0]
    cut = re.search(r"[/?]", rest)
    path, _, query = rest[cut.start():].partition("?") if cut else ("", "", "")
    escapes = [m.group(1) for m in _PERCENT.finditer(path + "?" + query)]
    odd = {f"%{e}" for e in escapes if not re.fullmatch(r"[0-9A-F]{2}", e) or chr(int(e, 16)) in _UNRESERVED}
    if any(c not in _GO_PATH_VERBATIM for c in path):
        odd |= {c for c in path if c in "!'()*[]"}  # Go escapes these then, requests does not
    odd |= {c for c in query if c not in _REQUESTS_QUERY_VERBATIM}  # Go sends a query as written
    return tuple(sorted(odd))


def has_dot_segment(url: str) -> bool:
    """Whether the path of an http(s) `url` has a `.` or `..` segment: BuildKit's Go client sends the path as
    written, this plan's client (urllib3) resolves such segments first, so the two would fetch different paths."""
    rest = url.partition("://")[2].partition("#")[0].partition("?")[0]
    cut = rest.find("/")
    return cut >= 0 and any(segment in (".", "..") for segment in rest[cut:].split("/"))


def without_userinfo(url: str) -> str:
    parts = _split_netloc(url)
    if parts is None or "@" not in parts[1]:
        return url
    return parts[0] + parts[1].rpartition("@")[2] + parts[2]


@dataclass(frozen=True)
class Stage:
    index: int
    name: str | None
    line: int
    """Line of its FROM."""
    parent: int | None
    """The stage its FROM names, or None (an image or scratch)."""
    depends: frozenset[int]
    """Stages it needs besides its parent (COPY --from, RUN --mount from=)."""
    args: frozenset[str]
    """ARG names it declares (those the image history of its RUN lines records)."""
    text_flags: int
    """Content flags (buildcontext/sensitive.py) of its lines."""

    @property
    def shown(self) -> str:
        return self.name or f"#{self.index}"


@dataclass(frozen=True)
class DockerfilePlan:
    """One Dockerfile read for one image's build inputs (build args, target, platform)."""

    stages: tuple[Stage, ...]
    target: int
    needed: tuple[int, ...]
    """Indexes of the stages the target needs, in file order."""
    chain: tuple[int, ...]
    """The target's FROM chain, target first."""
    references: tuple[ExternalReference, ...]
    """External images of the needed stages, in file order (FROM scratch is none)."""
    sources: tuple[RemoteSource, ...]
    """Remote ADD sources of the needed stages, in file order (those in `refused` left out)."""
    prelude_flags: int
    """Content flags of the lines before the first FROM (global ARGs: counted as shipped)."""
    text: str = field(repr=False, default="")
    source: str = field(repr=False, default="")
    """The Dockerfile's bytes as text with every byte that is no UTF-8 kept (surrogateescape; `text` has U+FFFD
    there): what `pinned_text` writes from, so the staged Dockerfile differs from it only by the pins."""
    refused: tuple[tuple[int, str], ...] = ()
    """(line, problem with its fix) of each remote input of the needed stages this plan cannot pin as BuildKit
    would build it (a value from ENV or from the base image's environment, several remote sources in one ADD, a URL
    with user info): never asked for, and refused unless remoteInputs is ignore."""

    def chain_flags(self) -> int:
        flags = self.prelude_flags
        for i in self.chain:
            flags |= self.stages[i].text_flags
        return flags

    def off_chain_stages_with_flags(self) -> list[Stage]:
        return [s for s in self.stages if s.index not in self.chain and s.text_flags]

    def stages_declaring(self, arg: str) -> tuple[list[Stage], list[Stage]]:
        """(stages on the FROM chain, other needed stages) that declare `arg`."""
        on = [self.stages[i] for i in self.chain if arg in self.stages[i].args]
        off = [self.stages[i] for i in self.needed if i not in self.chain and arg in self.stages[i].args]
        return on, off

    def chain_shown(self) -> str:
        return " <- ".join(self.stages[i].shown for i in self.chain)

    def pinned_text(self, digests: Mapping[ExternalReference, str], checksums: Mapping[RemoteSource, str]) -> str:
        """The Dockerfile with each reference in `digests` written as `ref@digest` and each source in `checksums`
        given `--checksum=`; every other byte and every line number unchanged (encode it with surrogateescape)."""
        from buildcontext.frontend import directive, pin_directive  # it builds on stage_args, which builds on this

        text = self.source
        for ref, digest in digests.items():
            found = directive(text) if ref.instruction == "# syntax" and not ref.pinned else None
            if found is not None:
                text = pin_directive(text, found, f"{ref.reference}@{digest}")
        lines = dockerfile_lines(text)
        commands = {c.start_line: c for c in parse_commands(self.text)}
        flag_pins: dict[int, dict[str, str]] = {}
        """Line -> (a `--from` / mount `from=` value as written -> it pinned): every occurrence on the line."""
        for ref, digest in digests.items():
            if ref.pinned or ref.instruction in ("# syntax", "BUILDKIT_SYNTAX"):
                continue
            command = commands[ref.line]
            pinned = f"{ref.reference}@{digest}"
            if ref.instruction == "FROM":
                flags = " ".join(command.flags)
                alias = f" AS {command.value[2]}" if len(command.value) >= 3 else ""
                ending = "\r\n" if lines[ref.line - 1].endswith("\r\n") else "\n"
                lines[ref.line - 1] = f"FROM {flags + ' ' if flags else ''}{pinned}{alias}{ending}"
                for n in range(ref.line, command.end_line):
                    lines[n] = "\n"  # continuation lines of the FROM: kept as blank lines
            else:
                flag_pins.setdefault(ref.line, {})[ref.written] = pinned
        for line, pins in flag_pins.items():
            _pin_flags(lines, commands[line], pins, [r for r in digests if r.line == line and not r.pinned])
        for source, checksum in checksums.items():
            if source.checksum is not None:
                continue
            start = lines[source.line - 1]
            match = re.match(r"^(\s*ADD)(\s)", start, re.IGNORECASE)
            if match is None:
                raise DockerfileProblem("cannot add --checksum to this ADD (its keyword is not on its first line)",
                                        source.line)
            lines[source.line - 1] = f"{match.group(1)} --checksum={checksum}{start[match.end(1):]}"
        return "".join(lines)


def _flag_word(text: str, pos: int) -> tuple[int, int, str] | None:
    """(start, end, word) of the flag after `pos` on this line, its quotes and backslashes taken as BuildKit's
    parser takes them (extractBuilderFlags: quotes removed, a backslash keeps the next character); None when no
    flag starts there or the line ends inside its quotes."""
    start = pos
    while start < len(text) and text[start] in " \t":
        start += 1
    if start == pos or not text.startswith("--", start):
        return None
    word, quote, i = [], "", start
    while i < len(text) and (quote or not text[i].isspace()):
        ch = text[i]
        if ch == quote:
            quote = ""
        elif ch in "'\"" and not quote:
            quote = ch
        else:
            if ch == "\\" and i + 1 < len(text):
                i += 1
                ch = text[i]
            word.append(ch)
        i += 1
    return None if quote else (start, i, "".join(word))


def _flag_text(name: str, value: str) -> str:
    """A flag written so that BuildKit's parser reads `name=value` back: quoted when the value needs it."""
    if not any(c.isspace() or c in "'\"\\" for c in value):
        return f"{name}={value}"
    return f'{name}="' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _csv_field(field: str) -> str:
    return '"' + field.replace('"', '""') + '"' if any(c in field for c in ',"') else field


def _pin_flags(lines: list[str], command, pins: Mapping[str, str], refs: list[ExternalReference]) -> None:
    """Each `--from=<value>` and each `from=<value>` of a `--mount=` among the command's flags whose whole value is
    in `pins` rewritten to its pinned form, by position in the flags (never by searching the line's text, which a
    reference that is a prefix of another, or a command word, would match); the flags must be on the first line."""
    from buildcontext.mount_flags import mount_fields  # it builds on this module's DockerfileProblem

    n = command.start_line - 1
    text = lines[n]
    keyword = re.match(r"\s*\S+", text)
    pos, out, done = keyword.end() if keyword else 0, [], set[str]()
    for flag in command.flags:
        token = _flag_word(text, pos)
        if token is None or token[2] != flag:
            break  # the flags continue on another line: not pinned in place
        name, eq, value = flag.partition("=")
        if name.lower() == "--from":
            value = _pinned_value(value, pins, done)
        elif name.lower() == "--mount":
            value = ",".join(_csv_field(f"{key}={_pinned_value(val, pins, done)}" if eq and key.lower() == "from"
                                        else key + eq + val) for key, eq, val in
                             (p.partition("=") for p in mount_fields(value, command.start_line)))
        written = text[token[0]:token[1]]
        out.append(text[pos:token[0]] + (_flag_text(name, value) if eq and value != flag[len(name) + 1:] else
                                         written))
        pos = token[1]
    for ref in refs:
        if ref.written not in done:
            key = "--from=" if ref.instruction == "COPY --from" else "--mount=...,from="
            raise DockerfileProblem(
                f"cannot pin {ref.instruction} {ref.written}: the instruction's flags continue past its first line, "
                f"where acr-publish writes the digest; fix: write its flags ({key}{ref.written} and those before "
                "it) on the instruction's first line", ref.line)
    lines[n] = text[:keyword.end() if keyword else 0] + "".join(out) + text[pos:]


def _pinned_value(value: str, pins: Mapping[str, str], done: set[str]) -> str:
    if value not in pins:
        return value
    done.add(value)
    return pins[value]


def dockerfile_lines(text: str) -> list[str]:
    """The Dockerfile's lines as BuildKit's parser numbers them (Go's line scanner: a line ends at `\n` only; `\r`
    alone, `\x0b`, `\x0c`, `\x85`, `\u2028` and the others `str.splitlines` also breaks at are inside a line),
    each with its `\n`."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


@functools.lru_cache(maxsize=16)
def parse_commands(text: str) -> tuple:
    """BuildKit's parse of a Dockerfile's text (a tuple of immutable commands), once per distinct text: the plan
    and the pinned Dockerfile of each image sharing that text read the same parse."""
    # Imported here: the parser is Go code whose runtime reserves a large address space at import, which every
    # importer of the build-context engine (the ignore-file reader included) would otherwise pay.
    import dockerfile

    try:
        return dockerfile.parse_string(text)
    except dockerfile.GoParseError as err:
        reason = str(err).encode("ascii", "backslashreplace").decode()[:200]
        raise DockerfileProblem(f"BuildKit's parser refuses it ({reason})") from None

