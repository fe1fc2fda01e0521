"""The ARG scope of a Dockerfile: which values an instruction's words are expanded from, as BuildKit does.

Substitution follows BuildKit's rules for the forms it documents (`$A`, `${A}`, `${A:-w}`, `${A-w}`, `${A:+w}`,
`${A+w}`); any other form is refused with its line, never guessed. A FROM line sees the global ARGs (declared
before the first FROM; a build arg overrides a declared default) and the platform ARGs BuildKit predefines
(TARGETPLATFORM/OS/ARCH/VARIANT from the image's platform, BUILDPLATFORM from this machine); other instructions
see their stage's scope (buildcontext/stages.py: its ARGs, platform ARGs too, its ENVs and its FROM parent's).
"""
from __future__ import annotations

import platform as host_platform
import re
from collections.abc import Mapping

from buildcontext.plan import DockerfileProblem

_VAR_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_BRACED = re.compile(r"\{(" + _VAR_NAME + r")(?:(:?[-+])(.*))?\}", re.DOTALL)
_PLAIN = re.compile(_VAR_NAME)
_ESCAPE_DIRECTIVE = re.compile(rb"^#[ \t]*escape[ \t]*=[ \t]*(\S)", re.IGNORECASE)
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


def expand(word: str, values: Mapping[str, str], line: int, escape: str = "\\") -> str:
    """`word` with `$A`, `${A}`, `${A:-w}`, `${A-w}`, `${A:+w}` and `${A+w}` expanded from `values` (unset: empty,
    as BuildKit does); DockerfileProblem for any other `${...}` form."""
    out: list[str] = []
    i, n = 0, len(word)
    while i < n:
        ch = word[i]
        if ch == escape and i + 1 < n:
            out.append(word[i + 1])
            i += 2
            continue
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        if i + 1 < n and word[i + 1] == "{":
            depth, j = 0, i + 1
            while j < n:
                if word[j] == "{":
                    depth += 1
                elif word[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            match = _BRACED.fullmatch(word[i + 1:j + 1]) if j < n else None
            if match is None:
                raise DockerfileProblem(f"{word!r} uses a substitution this plan cannot expand "
                                        f"({word[i:j + 1]!r}); write the value, or ${{NAME}}, ${{NAME:-default}}",
                                        line)
            name, op, alternative = match.groups()
            value = values.get(name)
            if op is None:
                out.append(value or "")
            elif op in (":-", "-"):
                use = value if (value if op == ":-" else value is not None) else None
                out.append(use if use is not None else expand(alternative, values, line, escape))
            else:  # :+ / +
                present = bool(value) if op == ":+" else value is not None
                out.append(expand(alternative, values, line, escape) if present else "")
            i = j + 1
            continue
        match = _PLAIN.match(word, i + 1)
        if match is None:
            out.append("$")
            i += 1
            continue
        out.append(values.get(match.group(0)) or "")
        i = match.end()
    return "".join(out)


class Recorder(dict):
    """The values a word is expanded from, recording each name the word asks for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: list[str] = []

    def get(self, key, default=None):  # type: ignore[override]
        if key not in self.asked:
            self.asked.append(key)
        return super().get(key, default)



def escape_character(data: bytes) -> str:
    """The escape character the Dockerfile's `# escape=` directive sets (a backslash without one)."""
    directive = _ESCAPE_DIRECTIVE.match(data.split(b"\n", 1)[0])
    return directive.group(1).decode() if directive is not None else "\\"


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
                    values[name] = expand(default, values, command.start_line, escape)
                else:
                    values.setdefault(name, None)  # type: ignore[arg-type]
    return values
