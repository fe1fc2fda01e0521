"""What a Dockerfile's target pulls in and ships: its stages, the stages the target needs, the target's FROM chain,
the base images and remote `ADD` sources those stages name, and where each credential-looking line lies.

Read with BuildKit's own parser (the `dockerfile` package, as components/docker_rules.py does). ARG substitution
follows BuildKit's rules for the forms it documents (`$A`, `${A}`, `${A:-w}`, `${A-w}`, `${A:+w}`, `${A+w}`):
a FROM line sees the global ARGs (declared before the first FROM; a build arg overrides a declared default) and
the platform ARGs BuildKit predefines (TARGETPLATFORM/OS/ARCH/VARIANT from the image's platform, BUILDPLATFORM from
this machine); other instructions see only the ARGs their stage declares (platform ARGs too). A form this module
cannot expand is refused with its line, never guessed; a remote input whose value it cannot compute as BuildKit
does (a variable from ENV or from the base image's environment, several remote sources in one ADD) or whose URL
holds user info is left out of the plan and listed in `refused`.

Stages the target needs, as BuildKit computes them: the target (or the last stage), its FROM parent, the stages
named by `COPY --from` and `RUN --mount=...,from=`, transitively; no other stage is resolved or built. The FROM
chain is the target and its FROM parents only: their instructions become the shipped image's history. A stage a
`COPY --from` reaches ships files, not history.

`pinned_text` writes the Dockerfile the build uses: every needed external reference at the digest planned
(`FROM ref@sha256:…`, `COPY --from=ref@sha256:…`) and every fetched `ADD <url>` with `--checksum`, line numbers
kept. No Pulumi import, no network.
"""
from __future__ import annotations

import platform as host_platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from buildcontext import sensitive

SCRATCH = "scratch"
_VAR_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_BRACED = re.compile(r"\{(" + _VAR_NAME + r")(?:(:?[-+])(.*))?\}", re.DOTALL)
_PLAIN = re.compile(_VAR_NAME)
_ESCAPE_DIRECTIVE = re.compile(rb"^#[ \t]*escape[ \t]*=[ \t]*(\S)", re.IGNORECASE)
_HOST_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
              "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
_GIT_PREFIXES = ("git://", "git@", "ssh://")
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_CHECKSUM = re.compile(r"sha256:[0-9a-f]{64}")
_DIGEST_SUFFIX = re.compile(r"@sha256:[0-9a-f]{64}\Z")


class DockerfileProblem(ValueError):
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
    """"FROM", "COPY --from" or "RUN --mount" (how messages name it)."""
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
        return bool(_DIGEST_SUFFIX.search(self.reference))

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
        given `--checksum=`; every other byte and every line number unchanged."""
        lines = self.text.splitlines(keepends=True)
        commands = {c.start_line: c for c in _parse(self.text)}
        for ref, digest in digests.items():
            if ref.pinned:
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
                key = "--from=" if ref.instruction == "COPY --from" else "from="
                _replace_in(lines, command, ref, f"{key}{ref.written}", f"{key}{pinned}")
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


def _replace_in(lines: list[str], command, ref: ExternalReference, old: str, new: str) -> None:
    for n in range(command.start_line - 1, command.end_line):
        if old in lines[n]:
            lines[n] = lines[n].replace(old, new, 1)
            return
    raise DockerfileProblem(f"cannot pin {ref.instruction} {ref.written}: write it on one line as {old}", ref.line)


def _parse(text: str):
    # Imported here: the parser is Go code whose runtime reserves a large address space at import, which every
    # importer of the build-context engine (the ignore-file reader included) would otherwise pay.
    import dockerfile

    try:
        return dockerfile.parse_string(text)
    except dockerfile.GoParseError as err:
        reason = str(err).encode("ascii", "backslashreplace").decode()[:200]
        raise DockerfileProblem(f"BuildKit's parser refuses it ({reason})") from None


def host_platform_name() -> str:
    """BUILDPLATFORM: the platform of this machine, as the local engine builds `--platform=$BUILDPLATFORM` stages."""
    machine = host_platform.machine().lower()
    return f"linux/{_HOST_ARCH.get(machine, machine)}"


def _platform_args(prefix: str, value: str) -> dict[str, str]:
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


class _Recorder(dict):
    """The values a word is expanded from, recording each name the word asks for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.asked: list[str] = []

    def get(self, key, default=None):  # type: ignore[override]
        if key not in self.asked:
            self.asked.append(key)
        return super().get(key, default)


def _flag(flags: tuple[str, ...], name: str) -> str | None:
    prefix = f"--{name}="
    found = [f[len(prefix):] for f in flags if f.lower().startswith(prefix)]
    return found[-1] if found else None


def _is_git(url: str) -> bool:
    if url.startswith(_GIT_PREFIXES):
        return True
    if url.startswith(("http://", "https://")):
        return url.partition("#")[0].endswith(".git")
    return False


def read_plan(data: bytes, build_args: Mapping[str, str], target: str | None, platform: str) -> DockerfilePlan:
    """The plan of a Dockerfile's bytes for one image's build inputs; DockerfileProblem when it cannot be read."""
    text = data.decode("utf-8", errors="replace")
    escape = "\\"
    first = data.split(b"\n", 1)[0]
    directive = _ESCAPE_DIRECTIVE.match(first)
    if directive is not None:
        escape = directive.group(1).decode()
    commands = _parse(text)
    lines = text.splitlines(keepends=True)
    predefined = {**_platform_args("TARGET", platform), **_platform_args("BUILD", host_platform_name())}
    global_values: dict[str, str] = dict(predefined)
    seen_from = False
    raw_stages: list[dict] = []
    for command in commands:
        cmd = command.cmd.upper()
        if cmd == "FROM":
            seen_from = True
            raw_stages.append({"from": command, "commands": []})
        elif not seen_from:
            if cmd == "ARG":
                for decl in command.value:
                    name, eq, default = decl.partition("=")
                    if name in build_args:
                        global_values[name] = build_args[name]
                    elif eq:
                        global_values[name] = expand(default, global_values, command.start_line, escape)
                    else:
                        global_values.setdefault(name, None)  # type: ignore[arg-type]
        else:
            raw_stages[-1]["commands"].append(command)
    if not raw_stages:
        raise DockerfileProblem("it has no FROM instruction")
    first_line = raw_stages[0]["from"].start_line
    prelude_flags = sensitive.scan_content("", "".join(lines[:first_line - 1]).encode("utf-8", "surrogatepass"))

    names: dict[str, int] = {}
    later = {}  # every stage name -> its index: a `--from` naming a stage not yet defined is BuildKit's error
    for index, raw in enumerate(raw_stages):
        value = raw["from"].value
        if len(value) >= 3 and value[1].lower() == "as":
            later.setdefault(value[2].lower(), index)
    stages: list[Stage] = []
    references: dict[int, list[ExternalReference]] = {}
    sources: dict[int, list[RemoteSource]] = {}
    refused: dict[int, list[tuple[int, str]]] = {}
    env_names: dict[int, frozenset[str]] = {}
    """Per stage: the names ENV sets in it or its FROM parents (BuildKit substitutes them; this plan does not)."""
    external_root: dict[int, bool] = {}
    """Per stage: whether its FROM chain starts at an image (whose environment this plan cannot see)."""
    for index, raw in enumerate(raw_stages):
        command = raw["from"]
        value = command.value
        if not value:
            raise DockerfileProblem("FROM names no image", command.start_line)
        name = value[2] if len(value) >= 3 and value[1].lower() == "as" else None
        written = value[0]
        reference = expand(written, global_values, command.start_line, escape)
        platform_flag = _flag(command.flags, "platform")
        base_platform = expand(platform_flag, global_values, command.start_line, escape) if platform_flag else platform
        refs = references.setdefault(index, [])
        parent = names.get(reference.lower())
        if parent is None and reference.lower() != SCRATCH:
            if not reference:
                raise DockerfileProblem(f"FROM {written} expands to an empty reference (is a global ARG unset?)",
                                        command.start_line)
            refs.append(ExternalReference(command.start_line, "FROM", written, reference, base_platform,
                                          base_platform == platform))
        env = set(env_names[parent]) if parent is not None else set()
        external_root[index] = external_root[parent] if parent is not None else reference.lower() != SCRATCH
        # BuildKit gives a stage only the ARGs it declares: the platform ARGs too (`ARG TARGETARCH`).
        stage_values: dict[str, str] = {}
        declared: set[str] = set()
        depends: set[int] = set()

        def computed(word: str, line: int, shown: str) -> str | None:
            """`word` expanded as BuildKit would in this stage, or None (listed in `refused`) when a variable
            it uses is set by ENV or may come from the base image's environment."""
            used = _Recorder(stage_values)
            value = expand(word, used, line, escape)
            from_env = [n for n in used.asked if n in env]
            unknown = [n for n in used.asked if n not in stage_values and n not in env]
            if from_env:
                refused.setdefault(index, []).append((line, (
                    f"{shown} uses ${from_env[0]}, which ENV sets: BuildKit substitutes it and this plan does "
                    f"not compute ENV values; fix: write the value, or declare it with ARG {from_env[0]}=<value>")))
                return None
            if unknown and external_root[index]:
                refused.setdefault(index, []).append((line, (
                    f"{shown} uses ${unknown[0]}, which this stage does not declare: BuildKit takes it from "
                    "the base image's environment, which this plan cannot see; fix: declare it in the stage with "
                    f"ARG {unknown[0]}=<value>, or write the value")))
                return None
            return value

        for inner in raw["commands"]:
            cmd = inner.cmd.upper()
            if cmd == "ARG":
                for decl in inner.value:
                    arg, eq, default = decl.partition("=")
                    declared.add(arg)
                    if arg in build_args:
                        stage_values[arg] = build_args[arg]
                    elif eq:
                        stage_values[arg] = expand(default, stage_values, inner.start_line, escape)
                    elif global_values.get(arg) is not None:
                        stage_values[arg] = global_values[arg]
            elif cmd == "ENV":
                env.update(inner.value[0::2])  # (name, value) pairs
            elif cmd in ("COPY", "ADD", "RUN"):
                froms = []
                if cmd in ("COPY", "ADD"):
                    source_stage = _flag(inner.flags, "from")
                    if source_stage is not None:
                        froms.append(("COPY --from", source_stage))
                if cmd == "RUN":
                    for flag in inner.flags:
                        if flag.lower().startswith("--mount="):
                            for part in flag[len("--mount="):].split(","):
                                key, _, val = part.partition("=")
                                if key.strip().lower() == "from":
                                    froms.append(("RUN --mount", val))
                for instruction, from_written in froms:
                    from_value = computed(from_written, inner.start_line,
                                          f"{instruction}{'=' if instruction == 'COPY --from' else ' from='}"
                                          f"{from_written}")
                    if from_value is None:
                        continue
                    if not from_value:
                        raise DockerfileProblem(f"{instruction}={from_written} expands to nothing (is its ARG unset?); "
                                                "BuildKit refuses it: name a stage or an image", inner.start_line)
                    if from_value.isdigit():
                        if int(from_value) >= index:
                            raise DockerfileProblem(f"{instruction}={from_written} names stage {from_value}, which is "
                                                    "not defined before this one; BuildKit refuses it: name an earlier "
                                                    "stage", inner.start_line)
                        depends.add(int(from_value))
                    elif from_value.lower() in names:
                        depends.add(names[from_value.lower()])
                    elif from_value.lower() in later:
                        raise DockerfileProblem(f"{instruction}={from_written} names the stage {from_value}, which is "
                                                "defined later in the file; BuildKit refuses it: move that stage "
                                                "before this one", inner.start_line)
                    elif from_value.lower() != SCRATCH:
                        refs.append(ExternalReference(inner.start_line, instruction, from_written, from_value,
                                                      platform))
                if cmd == "ADD" and not inner.heredocs:
                    checksum = _flag(inner.flags, "checksum")
                    found: list[RemoteSource] = []
                    for src in inner.value[:-1]:
                        url = computed(src, inner.start_line, f"ADD {src}")
                        if url is None:
                            continue
                        if _is_git(url):
                            found.append(RemoteSource(inner.start_line, "git", url, checksum, src))
                        elif url.startswith(("http://", "https://")):
                            if checksum is not None and not _CHECKSUM.fullmatch(checksum):
                                raise DockerfileProblem(f"ADD --checksum={checksum} is not sha256:<64 hex digits>",
                                                        inner.start_line)
                            found.append(RemoteSource(inner.start_line, "http", url, checksum, src))
                    if len(found) > 1:
                        refused.setdefault(index, []).append((inner.start_line, (
                            f"ADD {' '.join(s.shown for s in found)} names {len(found)} remote sources: acr-publish "
                            "pins each with --checksum, which BuildKit takes for one source only; fix: one ADD per "
                            "URL")))
                        continue
                    for source in found:
                        if source.has_userinfo and not source.pinned:
                            refused.setdefault(index, []).append((inner.start_line, (
                                f"ADD {source.written} holds user info (user:password@) in its URL: acr-publish never "
                                "fetches, records or shows a URL with credentials; fix: pin it with "
                                "ADD --checksum=sha256:<digest> (git: a full commit after '#'), so that nothing is "
                                "fetched at plan time, or set remoteInputs: ignore")))
                            continue
                        sources.setdefault(index, []).append(source)
        env_names[index] = frozenset(env)
        end = raw_stages[index + 1]["from"].start_line - 1 if index + 1 < len(raw_stages) else len(lines)
        stage_text = "".join(lines[command.start_line - 1:end]).encode("utf-8", "surrogatepass")
        stages.append(Stage(index, name, command.start_line, parent, frozenset(depends), frozenset(declared),
                            sensitive.scan_content("", stage_text)))
        if name:
            names[name.lower()] = index

    if target is None:
        target_index = len(stages) - 1
    elif target.lower() in names:
        target_index = names[target.lower()]
    else:
        raise UnknownTarget(f"it has no stage {target!r} (the image's target)")
    needed: set[int] = set()
    todo = [target_index]
    while todo:
        i = todo.pop()
        if i in needed:
            continue
        needed.add(i)
        stage = stages[i]
        todo.extend(stage.depends)
        if stage.parent is not None:
            todo.append(stage.parent)
    chain = [target_index]
    while stages[chain[-1]].parent is not None:
        chain.append(stages[chain[-1]].parent)  # type: ignore[arg-type]
    order = sorted(needed)
    return DockerfilePlan(
        stages=tuple(stages), target=target_index, needed=tuple(order), chain=tuple(chain),
        references=tuple(r for i in order for r in references.get(i, [])),
        sources=tuple(s for i in order for s in sources.get(i, [])),
        prelude_flags=prelude_flags, text=text,
        refused=tuple(r for i in order for r in refused.get(i, [])),
    )
