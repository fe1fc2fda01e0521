"""Reading a Dockerfile into its plan (buildcontext/plan.py) for one image's build inputs, with BuildKit's parser.

Read with BuildKit's own parser (the `dockerfile` package, as components/docker_rules.py does); ARGs are expanded
as buildcontext/stage_args.py says. Stages the target needs, as BuildKit computes them: the target (or the last
stage), its FROM parent, the stages named by `COPY --from` and `RUN --mount=...,from=` (buildcontext/mount_flags.py), transitively; no other
stage is resolved or built. The FROM chain is the target and its FROM parents only: their instructions become the
shipped image's history. A stage a `COPY --from` reaches ships files, not history. A remote input whose value this
module cannot compute as BuildKit does (a variable the base image's environment may set, several remote sources in
one ADD) or whose URL holds user info is left out of the plan and listed in `refused`. The frontend image
(buildcontext/frontend.py) is the plan's first reference, for the build host's platform.
"""
from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping

from buildcontext import sensitive
from buildcontext.frontend import SYNTAX_ARG, frontend
from buildcontext.plan import (DockerfilePlan, DockerfileProblem, ExternalReference, RemoteSource, Stage,
                               UnknownTarget, dockerfile_lines, encoded_differently, has_dot_segment, has_userinfo, parse_commands,
                               without_userinfo)
from buildcontext.mount_flags import mount_fields, mount_from
from buildcontext.shell_pattern import plan_budget
from buildcontext.stage_args import (EmptyTrimPattern, UnsetVariable, escape_character, expand, global_values,
                                     host_platform_name)
from registryclient.references import DIGEST

__all__ = ["DockerfilePlan", "DockerfileProblem", "EmptyTrimPattern", "ExternalReference", "RemoteSource", "Stage",
           "UnknownTarget", "has_userinfo", "without_userinfo", "read_plan"]

SCRATCH = "scratch"
SCRATCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PROTOCOL = re.compile(r"([a-zA-Z0-9]+)://")
_SCP_STYLE = re.compile(r"[a-zA-Z0-9_-]+@[a-zA-Z0-9.-]+:.*?(?:#.*)?")
BAD_ESCAPE = re.compile(r"%(?![0-9a-fA-F]{2})")
"""A '%' not followed by two hex digits: Go's net/url refuses such a URL (a git or remote source)."""
_EXPANDED = ("ENV", "LABEL", "ARG", "ADD", "COPY", "WORKDIR", "USER", "VOLUME", "STOPSIGNAL", "EXPOSE")
"""The instructions whose words BuildKit expands (besides FROM, and RUN's mount fields); not RUN, CMD or
ENTRYPOINT's shell text."""


def _flag(flags: tuple[str, ...], name: str) -> str | None:
    prefix = f"--{name}="
    found = [f[len(prefix):] for f in flags if f.lower().startswith(prefix)]
    return found[-1] if found else None


def _is_git(url: str) -> bool:
    """Whether BuildKit takes an ADD source for a git repository (dockerfile2llb: gitutil.ParseGitRef, not
    indistinguishable from a local path): a git:// or ssh:// URL, an scp-style user@host:path, or an http(s) URL
    whose path (query and fragment left out, escapes decoded) ends in .git."""
    if url.startswith(("./", "../", "github.com/")):
        return False
    proto = _PROTOCOL.match(url)
    if proto is None:
        return _SCP_STYLE.fullmatch(url) is not None
    scheme = proto.group(1).lower()
    if scheme not in ("http", "https"):
        return scheme in ("git", "ssh")
    rest = url[proto.end():].partition("#")[0].partition("?")[0]
    path = rest[rest.find("/"):] if "/" in rest else ""
    # Go's url.Parse fails on a bad escape, and BuildKit then takes the source as a plain URL
    return not BAD_ESCAPE.search(path) and urllib.parse.unquote(path).endswith(".git")


def _stage_name(from_command) -> str | None:
    value = from_command.value
    return value[2] if len(value) >= 3 and value[1].lower() == "as" else None


class _Reading:
    """What reading a Dockerfile's stages in file order has found so far."""

    def __init__(self, raw_stages: list[dict], lines: list[str], build_args: Mapping[str, str],
                 global_values: dict[str, str], platform: str, escape: str) -> None:
        self.raw_stages, self.lines, self.build_args = raw_stages, lines, build_args
        self.global_values, self.platform, self.escape = global_values, platform, escape
        self.names: dict[str, int] = {}
        # every stage name -> its index: a `--from` naming a stage not yet defined is BuildKit's error
        self.later: dict[str, int] = {}
        for index, raw in enumerate(raw_stages):
            name = _stage_name(raw["from"])
            if name is not None:
                self.later.setdefault(name.lower(), index)
        self.stages: list[Stage] = []
        self.references: dict[int, list[ExternalReference]] = {}
        self.sources: dict[int, list[RemoteSource]] = {}
        self.refused: dict[int, list[tuple[int, str]]] = {}
        self.scopes: dict[int, tuple[dict[str, str], dict[str, int]]] = {}
        """Per stage, at its end: (the values its ARGs and ENVs set, name -> line of each one set to a value this
        plan cannot compute); a stage built on it starts from them, as BuildKit's does."""
        self.external_root: dict[int, bool] = {}
        """Per stage: whether its FROM chain starts at an image (whose environment this plan cannot see)."""
        self.failures: dict[int, DockerfileProblem] = {}
        """Per stage: the first of its instructions BuildKit fails to expand (or this plan cannot)."""

    def read_stage(self, index: int) -> None:
        _StageReader(self, index).read()


class _StageReader:
    """One stage: its FROM resolved, its ARGs, ENV names, `--from` references and remote ADD sources."""

    def __init__(self, reading: _Reading, index: int) -> None:
        self.r, self.index = reading, index
        self.raw = reading.raw_stages[index]
        self.refs = reading.references.setdefault(index, [])
        # BuildKit expands a stage's words from one environment, set in order: the base's (its image config, or
        # a parent stage's at its end), then each ENV, then each ARG that has a value (a build arg, its default, or
        # the global ARG's): the last one wins. So an ARG with a value overrides an earlier ENV, the base image's
        # included (shown on Docker 26's engine), and an ARG without one leaves the base image's value in place.
        # The base image's config is not read: as a declared ARG with a value wins over it, it matters only for a
        # name no ARG with a value or ENV sets, which the Dockerfile can always pin itself (`ARG NAME=<value>`), so
        # such a name (in an image-rooted stage) is refused where a remote input uses it, costing no request per
        # base. Platform ARGs too reach a stage only when it declares them.
        self.values: dict[str, str] = {}
        self.opaque: dict[str, int] = {}
        """Names set to a value this plan cannot compute -> the line that set it."""
        self.declared: set[str] = set()
        self.depends: set[int] = set()

    def read(self) -> None:
        r, index, command = self.r, self.index, self.raw["from"]
        parent = self._resolve_from(command)
        for inner in self.raw["commands"]:
            cmd = inner.cmd.upper()
            for instruction, from_written in self._froms(inner, cmd):
                self._read_from(inner, instruction, from_written)  # BuildKit refuses these in every stage
            self._check_trims(inner, cmd)
            if index in r.failures:
                continue
            try:
                if cmd == "ARG":
                    self._declare(inner)
                elif cmd == "ENV":
                    # (name, value) pairs, every value expanded in the scope before the line, as BuildKit does
                    self._set_all([(name, self._value(value, inner.start_line))
                                   for name, value in zip(inner.value[0::2], inner.value[1::2])], inner.start_line)
                elif cmd == "ADD" and not inner.heredocs:
                    self._read_add(inner)
            except DockerfileProblem as problem:
                # BuildKit expands a stage's words only when it builds that stage: a failure counts if it is needed.
                r.failures[index] = problem
        r.scopes[index] = (self.values, self.opaque)
        end = r.raw_stages[index + 1]["from"].start_line - 1 if index + 1 < len(r.raw_stages) else len(r.lines)
        stage_text = "".join(r.lines[command.start_line - 1:end]).encode("utf-8", "surrogatepass")
        name = _stage_name(command)
        r.stages.append(Stage(index, name, command.start_line, parent, frozenset(self.depends),
                              frozenset(self.declared), sensitive.scan_content("", stage_text)))
        if name:
            r.names[name.lower()] = index

    def _resolve_from(self, command) -> int | None:
        """The stage this FROM names (None: an image, recorded as a reference, or scratch)."""
        r, index, value = self.r, self.index, command.value
        if not value:
            raise DockerfileProblem("FROM names no image", command.start_line)
        written = value[0]
        reference = expand(written, r.global_values, command.start_line, r.escape)
        platform_flag = _flag(command.flags, "platform")
        base_platform = (expand(platform_flag, r.global_values, command.start_line, r.escape) if platform_flag
                         else r.platform)
        parent = r.names.get(reference.lower())
        if parent is None and reference.lower() != SCRATCH:
            if not reference:
                raise DockerfileProblem(f"FROM {written} expands to an empty reference (is a global ARG unset?)",
                                        command.start_line)
            self.refs.append(ExternalReference(command.start_line, "FROM", written, reference, base_platform,
                                               base_platform == r.platform))
        if parent is not None:
            self.values, self.opaque = dict(r.scopes[parent][0]), dict(r.scopes[parent][1])
        elif reference.lower() == SCRATCH:
            self.values = {"PATH": SCRATCH_PATH}  # BuildKit's empty image config sets it
        r.external_root[index] = r.external_root[parent] if parent is not None else reference.lower() != SCRATCH
        return parent

    def _check_trims(self, inner, cmd: str) -> None:
        """EmptyTrimPattern for a word of the command BuildKit expands (its instructions' Expand methods, EXPOSE's
        words, a mount's fields) with an empty #/% pattern in this stage's scope so far: it crashes the engine, so
        it is refused in every stage, not only where the word is needed. Other failures are left to reading."""
        words: list[str] = []
        if cmd in _EXPANDED:
            words = list(inner.value) if cmd != "ARG" else [p for d in inner.value for p in d.partition("=")[::2]]
        if cmd in ("ADD", "COPY"):
            words += [v for name in ("chown", "chmod", "checksum") if (v := _flag(inner.flags, name)) is not None]
        if cmd == "RUN":
            words += [field.partition("=")[2] for flag in inner.flags if flag.lower().startswith("--mount=")
                      for field in mount_fields(flag[len("--mount="):], inner.start_line)
                      if field.partition("=")[0].lower() != "from"]
        for word in words:
            try:
                expand(word, self.values, inner.start_line, self.r.escape)
            except EmptyTrimPattern:
                raise
            except DockerfileProblem:
                pass

    def _declare(self, inner) -> None:
        """An ARG line: every default expanded in the scope before the line (BuildKit expands the line's words
        first), then each name set in order."""
        r, line, values = self.r, inner.start_line, []
        for decl in inner.value:
            arg, eq, default = decl.partition("=")
            self.declared.add(arg)
            if arg in r.build_args:
                values.append((arg, r.build_args[arg]))
            elif eq:
                values.append((arg, self._value(default, line)))
            elif r.global_values.get(arg) is not None:
                values.append((arg, r.global_values[arg]))
        self._set_all(values, line)

    def _set_all(self, values: list[tuple[str, str | None]], line: int) -> None:
        """Each name set (by ENV or an ARG with a value) to its value, in order; to a value this plan cannot compute
        when it is None."""
        for name, value in values:
            if value is None:
                self.values.pop(name, None)
                self.opaque[name] = line
            else:
                self.values[name] = value
                self.opaque.pop(name, None)

    def _expanded(self, word: str, line: int) -> tuple[str | None, list[str]]:
        """(`word` expanded in the scope so far, the names it asks for); None for the value when `${NAME?}` fails
        on a name this plan cannot compute (the base image's environment may set it): the caller refuses it."""
        asked: list[str] = []
        try:
            return expand(word, self.values, line, self.r.escape, asked), asked
        except UnsetVariable:
            if any(self._uncomputed(n) for n in asked):
                return None, asked
            raise

    def _uncomputed(self, name: str) -> bool:
        return name in self.opaque or (name not in self.values and self.r.external_root[self.index])

    def _value(self, word: str, line: int) -> str | None:
        value, asked = self._expanded(word, line)
        return None if any(self._uncomputed(n) for n in asked) else value

    def _refuse(self, line: int, problem: str) -> None:
        self.r.refused.setdefault(self.index, []).append((line, problem))

    def _computed(self, word: str, line: int, shown: str) -> str | None:
        """`word` expanded as BuildKit would in this stage, or None (listed in `refused`) when a variable
        it uses is set by ENV or may come from the base image's environment."""
        value, asked = self._expanded(word, line)
        opaque = [n for n in asked if n in self.opaque]
        unknown = [n for n in asked if n not in self.values and n not in self.opaque]
        if opaque:
            name = opaque[0]
            self._refuse(line, (
                f"{shown} uses ${name}, which line {self.opaque[name]} sets to a value this plan cannot compute "
                "(from the base image's environment); fix: write the value, or set it with "
                f"ARG {name}=<value>"))
            return None
        if unknown and self.r.external_root[self.index]:
            name = unknown[0]
            declared = "declares without a value" if name in self.declared else "does not declare"
            self._refuse(line, (
                f"{shown} uses ${name}, which this stage {declared}: BuildKit takes it from "
                "the base image's environment, which this plan cannot see; fix: declare it in the stage with "
                f"ARG {name}=<value>, or write the value"))
            return None
        return value

    @staticmethod
    def _froms(inner, cmd: str) -> list[tuple[str, str]]:
        """(instruction, written value) of each `COPY --from=` / `RUN --mount=...,from=` of a command."""
        froms = []
        if cmd in ("COPY", "ADD"):
            source_stage = _flag(inner.flags, "from")
            if source_stage is not None:
                froms.append(("COPY --from", source_stage))
        if cmd == "RUN":
            for flag in inner.flags:
                if flag.lower().startswith("--mount="):
                    source = mount_from(flag[len("--mount="):], inner.start_line)
                    if source is not None:
                        froms.append(("RUN --mount", source))
        return froms

    def _read_from(self, inner, instruction: str, from_value: str) -> None:
        """A `--from` as written: Docker 26's BuildKit expands no variable there (it takes `$S` as an image name,
        or refuses it in a mount) and reads an empty one as the build context."""
        r, index, line, from_written = self.r, self.index, inner.start_line, from_value
        if "$" in from_value:
            key = "COPY --from=" if instruction == "COPY --from" else "RUN --mount=...,from="
            how = ("takes it as an image name, which is no valid reference" if instruction == "COPY --from"
                   else "refuses a variable there")
            raise DockerfileProblem(
                f"{key}{from_value}: BuildKit expands no variable in a --from (it {how}), so the build fails; fix: "
                f"name the stage or image literally, or a stage built on it (FROM <image> AS <name>, then "
                f"{key}<name>)", line)
        if not from_value:
            return
        if from_value.isdigit() and instruction == "RUN --mount":
            # BuildKit takes it for the image docker.io/library/<n>:latest; counted only when the stage is built
            r.failures.setdefault(index, DockerfileProblem(
                f"RUN --mount=...,from={from_value}: a mount's from= names a stage by its name, or an image; only "
                f"COPY --from counts stages by number (BuildKit would pull an image named {from_value!r}); fix: "
                f"name the stage (FROM <image> AS <name>) and write from=<name>", line))
        elif from_value.isdigit():
            if int(from_value) >= index:
                raise DockerfileProblem(f"{instruction}={from_written} names stage {from_value}, which is "
                                        "not defined before this one; BuildKit refuses it: name an earlier "
                                        "stage", line)
            self.depends.add(int(from_value))
        elif from_value.lower() in r.names:
            self.depends.add(r.names[from_value.lower()])
        elif from_value.lower() in r.later:
            raise DockerfileProblem(f"{instruction}={from_written} names the stage {from_value}, which is "
                                    "defined later in the file; BuildKit refuses it: move that stage "
                                    "before this one", line)
        elif from_value.lower() != SCRATCH:
            self.refs.append(ExternalReference(line, instruction, from_written, from_value, r.platform))

    def _checksum(self, inner) -> tuple[bool, str | None, str | None]:
        """(whether the line can be planned, its `--checksum` after substitution, as written; None without one).
        BuildKit expands variables in the flag with the stage's scope, as in the sources."""
        written = _flag(inner.flags, "checksum")
        if written is None or not any(c in written for c in "$'\"" + self.r.escape):  # a word as it is processed
            return True, written, written
        checksum = self._computed(written, inner.start_line, f"ADD --checksum={written}")
        return checksum is not None, checksum, written

    def _read_add(self, inner) -> None:
        plannable, checksum, written = self._checksum(inner)
        if not plannable:
            return
        found: list[RemoteSource] = []
        for src in inner.value[:-1]:
            url = self._computed(src, inner.start_line, f"ADD {src}")
            if url is None:
                continue
            if _is_git(url):
                found.append(RemoteSource(inner.start_line, "git", url, checksum or None, src))
            elif url.startswith(("http://", "https://")):
                if checksum is not None and not DIGEST.fullmatch(checksum):
                    if checksum == written:
                        raise DockerfileProblem(f"ADD --checksum={checksum} is not sha256:<64 hex digits>",
                                                inner.start_line)
                    # The value is not shown: it may come from a build arg, and those may carry secrets.
                    what = "a value that is not sha256:<64 hex digits>" if checksum else "nothing"
                    raise DockerfileProblem(
                        f"ADD --checksum={written} expands to {what} (BuildKit verifies nothing when it is empty and "
                        "refuses any other value); fix: give the variable the file's sha256:<digest> (a build arg "
                        "or the ARG's default), or remove --checksum", inner.start_line)
                found.append(RemoteSource(inner.start_line, "http", url, checksum, src))
        if len(found) > 1:
            self._refuse(inner.start_line, (
                f"ADD {' '.join(s.shown for s in found)} names {len(found)} remote sources: acr-publish "
                "pins each with --checksum, which BuildKit takes for one source only; fix: one ADD per "
                "URL"))
            return
        for source in found:
            odd = encoded_differently(source.url) if source.kind == "http" and not source.pinned else ()
            if odd:
                # The characters are named only when written in the line: a substituted build arg stays unshown.
                which = f" ({' '.join(repr(c) for c in odd)})" if source.url == source.written else ""
                self._refuse(inner.start_line, (
                    f"ADD {source.written} expands to a URL with characters{which} that BuildKit's client and "
                    "acr-publish's percent-encode differently, so the file hashed could differ from the one built; "
                    "fix: write them percent-encoded (%XX, uppercase hex), or pin it with "
                    "ADD --checksum=sha256:<digest>"))
                continue
            if source.kind == "http" and not source.pinned and has_dot_segment(source.url):
                self._refuse(inner.start_line, (
                    f"ADD {source.written} has a '.' or '..' segment in its URL's path: BuildKit's client fetches "
                    "the path as written and acr-publish's would resolve it first, so the file hashed could differ "
                    "from the one built; fix: write the path without them, or pin it with "
                    "ADD --checksum=sha256:<digest>"))
                continue
            if source.has_userinfo and not source.pinned:
                self._refuse(inner.start_line, (
                    f"ADD {source.written} holds user info (user:password@) in its URL: acr-publish never "
                    "fetches, records or shows a URL with credentials; fix: pin it with "
                    "ADD --checksum=sha256:<digest> (git: a full commit after '#'), so that nothing is "
                    "fetched at plan time, or set remoteInputs: ignore"))
                continue
            self.r.sources.setdefault(self.index, []).append(source)


def _split_stages(commands: list) -> tuple[list, list[dict]]:
    """(the commands before the first FROM, each stage as {"from": its FROM, "commands": the rest})."""
    prelude: list = []
    raw_stages: list[dict] = []
    for command in commands:
        if command.cmd.upper() == "FROM":
            raw_stages.append({"from": command, "commands": []})
        elif not raw_stages:
            prelude.append(command)
        else:
            raw_stages[-1]["commands"].append(command)
    if not raw_stages:
        raise DockerfileProblem("it has no FROM instruction")
    return prelude, raw_stages


def _needed_and_chain(stages: list[Stage], target_index: int) -> tuple[list[int], list[int]]:
    """(the stages the target needs, in file order; the target's FROM chain, target first)."""
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
    return sorted(needed), chain


def _frontend_reference(text: str, build_args: Mapping[str, str], platform: str) -> tuple[ExternalReference, ...]:
    """The frontend image (buildcontext/frontend.py) as a reference, for the build host's platform; none without."""
    found = frontend(text, build_args)
    if found is None:
        return ()
    host = host_platform_name()
    instruction = SYNTAX_ARG if found.line == 0 else "# syntax"
    return (ExternalReference(found.line, instruction, found.image, found.image, host, own_platform=True),)


def read_plan(data: bytes, build_args: Mapping[str, str], target: str | None, platform: str) -> DockerfilePlan:
    """The plan of a Dockerfile's bytes for one image's build inputs; DockerfileProblem when it cannot be read.
    Its pattern matches share one budget (buildcontext/shell_pattern.py PLAN_STEPS)."""
    with plan_budget():
        return _read_plan(data, build_args, target, platform)


def _read_plan(data: bytes, build_args: Mapping[str, str], target: str | None, platform: str) -> DockerfilePlan:
    text = data.decode("utf-8", errors="replace")
    escape = escape_character(data)
    commands = parse_commands(text)
    lines = dockerfile_lines(text)
    prelude, raw_stages = _split_stages(commands)
    values = global_values(prelude, build_args, platform, escape)
    first_line = raw_stages[0]["from"].start_line
    prelude_flags = sensitive.scan_content("", "".join(lines[:first_line - 1]).encode("utf-8", "surrogatepass"))
    reading = _Reading(raw_stages, lines, build_args, values, platform, escape)
    for index in range(len(raw_stages)):
        reading.read_stage(index)
    stages, names = reading.stages, reading.names
    if target is None:
        target_index = len(stages) - 1
    elif target.lower() in names:
        target_index = names[target.lower()]
    else:
        raise UnknownTarget(f"it has no stage {target!r} (the image's target)")
    order, chain = _needed_and_chain(stages, target_index)
    for i in order:
        if i in reading.failures:
            raise reading.failures[i]
    return DockerfilePlan(
        stages=tuple(stages), target=target_index, needed=tuple(order), chain=tuple(chain),
        references=_frontend_reference(text, build_args, platform) + tuple(
            r for i in order for r in reading.references.get(i, [])),
        sources=tuple(s for i in order for s in reading.sources.get(i, [])),
        prelude_flags=prelude_flags, text=text, source=data.decode("utf-8", errors="surrogateescape"),
        refused=tuple(r for i in order for r in reading.refused.get(i, [])),
    )
