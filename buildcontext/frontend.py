"""The frontend image BuildKit reads a Dockerfile with: its `# syntax=` parser directive, or the BUILDKIT_SYNTAX build
arg, which overrides the directive (BuildKit's dockerfile builder asks for the build arg first, then DetectSyntax).

DetectSyntax reads directives from the first line (a UTF-8 BOM and a first `#!` line dropped): each line the comment
prefix, a key BuildKit knows (syntax, escape, check; case-insensitive), `=`, a value; the first other line ends them.
The `#` form first, then the same with `//`. The image is the value up to its first space (the rest is the
frontend's command line). A line indented before its `#` counts here too (BuildKit's main parser trims it). Older
engines (Docker 26) take fewer lines for the directive (docs/remote-inputs.md): taking one they ignore costs a
needless resolution, or a refusal under `pinned`. BuildKit pulls the frontend for the build host's platform.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from buildcontext.stage_args import GO_SPACE

SYNTAX_ARG = "BUILDKIT_SYNTAX"
_KNOWN = ("syntax", "escape", "check")
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*")


@dataclass(frozen=True)
class Frontend:
    """Where the frontend is named and the image it names."""

    line: int
    """The directive's 1-based line; 0 for the build arg."""
    image: str
    value_start: int
    """Where `image` starts in its line (the directive's; the build arg's value)."""


def _directive_lines(lines: list[str], comment: str, first: int) -> Frontend | None:
    seen: set[str] = set()
    for n in range(first, len(lines)):
        line = lines[n].removesuffix("\r")
        rest = line.lstrip(GO_SPACE)
        if not rest.startswith(comment):
            return None
        body = rest[len(comment):]
        body_start = len(line) - len(body) + (len(body) - len(body.lstrip(GO_SPACE)))
        match = _DIRECTIVE.fullmatch(line[body_start:])
        key = match.group(1).lower() if match is not None else None
        if key not in _KNOWN or key in seen:
            return None  # BuildKit stops at the first other line; a repeated key is the parser's error
        seen.add(key)
        if key == "syntax":
            image = match.group(2).partition(" ")[0]  # type: ignore[union-attr]
            return Frontend(n + 1, image, body_start + match.start(2))  # type: ignore[union-attr]
    return None


def directive(text: str) -> Frontend | None:
    """The `# syntax=` (or `// syntax=`) directive of a Dockerfile's text, as DetectSyntax finds it; None without."""
    lines = text.removeprefix("\ufeff").split("\n")
    first = 1 if lines and lines[0].startswith("#!") else 0
    return _directive_lines(lines, "#", first) or _directive_lines(lines, "//", first)


def frontend(text: str, build_args: Mapping[str, str]) -> Frontend | None:
    """The frontend the build uses: the BUILDKIT_SYNTAX build arg's image when it is given (even empty, as BuildKit
    takes it), else the directive's."""
    if SYNTAX_ARG in build_args:
        value = build_args[SYNTAX_ARG].strip(GO_SPACE)
        return Frontend(0, value.partition(" ")[0], 0)
    return directive(text)


def pin_directive(text: str, found: Frontend, pinned: str) -> str:
    """`text` with the directive's image written as `pinned`, every other byte unchanged."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    lines = text[len(bom):].split("\n")
    line = lines[found.line - 1]
    lines[found.line - 1] = line[:found.value_start] + pinned + line[found.value_start + len(found.image):]
    return bom + "\n".join(lines)
