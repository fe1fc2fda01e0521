"""Reading `stacks/Pulumi.<stack>.yaml` without the Pulumi engine, for the CLIs (RAM policies, explain, audit).

The file is read hardened: a regular file only (never a FIFO that would hang), bounded in size, UTF-8, YAML through a
SafeLoader that refuses a key given twice; every way it can be unreadable is a ConfigError naming the file, never a
traceback, and never the file's text (it may hold a ciphertext). Values reach validation as the engine hands them.
"""
from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import Any, Mapping

from components.config.paths import PROJECT_ROOT
from components.config.problems import ConfigError
from components.config.schema import PROJECT, STRUCTURED_KEYS, Settings
from components.config.shown import STACK_NAME, shown, shown_name, shown_path
from components.config.validate import misspelled_project, plaintext_password, settings_from_values

STACK_FILE_MAX = 1 << 20
"""A stack file is a few KB; past this it is not one, and reading on would only grow memory."""


def _known_stacks(project_root: Path) -> str:
    try:
        # Only regular files (links to one included): a directory or FIFO of that name is no stack.
        names = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in (project_root / "stacks").glob("Pulumi.*.yaml")
                       if p.is_file())
    except OSError:
        names = []
    return ", ".join(shown_name(n) for n in names) or "none"


_FILE_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


@functools.cache
def _stack_file_loader() -> type:
    """PyYAML's SafeLoader refusing a key given twice in one mapping (it keeps the last silently; Pulumi refuses
    the file). Merge keys (`<<: *base`) may still be overridden, as YAML means them to be."""
    import yaml

    class StackFileLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:  # an unhashable key: SafeLoader's own error follows
                        continue
                    if first is not key_node:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"the key {shown(key)} is given twice (first at line "
                            f"{first.start_mark.line + 1}, column {first.start_mark.column + 1}); keep one",
                            key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return StackFileLoader


def _read_stack_file(stack: str, path: Path, project_root: Path) -> Any:
    """The parsed YAML of a stack file; every way it can be unreadable is a ConfigError naming the file."""
    import yaml

    def fail(problem: str) -> ConfigError:
        return ConfigError(stack, [problem])

    def not_a_file(mode: int) -> ConfigError:
        kind = _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
        return fail(f"stack file {shown_path(path)} is {kind}, not a regular file: a stack file is YAML text; "
                    "replace it with one (see stacks/Pulumi.local.yaml)")

    try:
        try:
            mode = path.stat().st_mode  # follows a link: what it points to is what would be read
        except FileNotFoundError:
            how = " (a link to nothing)" if os.path.islink(path) else ""
            raise fail(f"no stack file {shown_path(path)}{how}: known stacks are "
                       f"{_known_stacks(project_root)}") from None
        if not stat.S_ISREG(mode):
            raise not_a_file(mode)
        # Non-blocking, and checked again once open: a FIFO put there since the stat must not hang the read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise not_a_file(mode)
            data = handle.read(STACK_FILE_MAX + 1)
    except OSError as err:
        raise fail(f"stack file {shown_path(path)} cannot be read ({err.strerror or type(err).__name__}); check its "
                   "permissions") from None
    if len(data) > STACK_FILE_MAX:
        raise fail(f"stack file {shown_path(path)} is over {STACK_FILE_MAX // 1024} KiB, which no stack file needs: it is not a "
                   "stack file, or something was pasted into it; cut it back to the settings")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise fail(f"stack file {shown_path(path)} is not UTF-8 text (byte {err.start} is {data[err.start]:#04x}); save it as "
                   "UTF-8") from None
    try:
        return yaml.load(text, Loader=_stack_file_loader())  # noqa: S506 (a SafeLoader that refuses duplicate keys)
    except yaml.MarkedYAMLError as err:
        # Line, column and the parser's reason; never the file's text around it (it may hold a ciphertext).
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = shown(err.problem or err.context or type(err).__name__)[1:-1]
        raise fail(f"stack file {shown_path(path)} is not valid YAML{where}: {reason}; fix the YAML there (the Pulumi CLI "
                   "refuses it too)") from None
    except yaml.YAMLError as err:
        raise fail(f"stack file {shown_path(path)} is not valid YAML ({type(err).__name__}); fix it") from None
    except RecursionError:
        raise fail(f"stack file {shown_path(path)} nests values deeper than any stack needs; flatten it") from None
    except (ValueError, OverflowError) as err:
        # PyYAML builds values as it parses: an impossible date (2024-13-45) or an integer past Python's digit limit.
        reason = shown(str(err))[1:-1]
        raise fail(f"stack file {shown_path(path)} holds a value YAML cannot build ({reason}); quote it as a string or fix "
                   "it") from None


def _as_engine_hands_it(key: str, value: Any) -> Any:
    """A stack file's value as the engine hands it to the program: a scalar of a key that is not structured is its
    text (`promoteFrom: 2024` is the stack name 2024, `preflight: false` the string false), as `load_settings` gets
    it; structured keys keep their YAML."""
    if key in STRUCTURED_KEYS or isinstance(value, (str, Mapping, list)) or value is None:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else value


def _edition_needs_password(values: Mapping[str, Any]) -> bool:
    registry = values.get("registry")
    return isinstance(registry, Mapping) and registry.get("edition") == "personal"


def load_stack_file(stack: str, project_root: Path = PROJECT_ROOT, *, secrets_set: bool = True) -> Settings:
    """Validate stacks/Pulumi.<stack>.yaml without the Pulumi engine.

    A shipped stack file holds no secret its user has yet to set (the classic edition's registryPassword is set with
    `pulumi config set --secret` on first use), so tools that render from the file (RAM policies, explain) take
    secrets as set by default; `secrets_set=False` checks their presence in the file, as `pulumi up` would.

    Every problem with the name or the file (unreadable, not YAML, not a map, too large) is a ConfigError too, so a
    tool that prints ConfigError and exits never shows a traceback.
    """
    if not isinstance(stack, str) or not STACK_NAME.fullmatch(stack):
        own = stack.rsplit("/", 1)[-1] if isinstance(stack, str) else ""
        fix = (f"give the stack's own name, e.g. {own!r}" if "/" in str(stack) and STACK_NAME.fullmatch(own)
               else f"known stacks are {_known_stacks(project_root)}")
        length = f"{len(stack)} characters, " if isinstance(stack, str) and len(stack) > 100 else ""
        raise ConfigError(str(stack), [
            f"stack name {shown(stack)} is invalid ({length}Pulumi's rule is 1-100 characters of A-Z a-z 0-9 _ . -); "
            f"{fix}"
        ])
    path = project_root / "stacks" / f"Pulumi.{stack}.yaml"
    doc = _read_stack_file(stack, path, project_root)
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError(stack, [f"stack file {shown_path(path)} holds a YAML {type(doc).__name__}, and a stack file is a map "
                                  "with a config: key (see stacks/Pulumi.local.yaml)"])
    config = doc.get("config")
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ConfigError(stack, [f"config {shown(config)} in {shown_path(path)} is invalid: it must be a map of "
                                  "<namespace>:<key>: value, e.g. acr-publish:registry: {edition: local}"])
    bad_keys = [k for k in config if not isinstance(k, str)]
    values = {k[len(PROJECT) + 1:]: _as_engine_hands_it(k[len(PROJECT) + 1:], v) for k, v in config.items()
              if isinstance(k, str) and k.startswith(f"{PROJECT}:")}
    problems = [f"config key {shown(k)} in {shown_path(path)} is invalid: keys are <namespace>:<name> strings, e.g. "
                "acr-publish:images" for k in bad_keys[:20]]
    problems += misspelled_project(config)
    for key in ("registryPassword", "sourcePassword"):
        if isinstance(values.get(key), str):
            problems.append(plaintext_password(stack, key))
    try:
        settings = settings_from_values(
            stack, values, region=config.get("alicloud:region"),
            has_password="registryPassword" in values or (secrets_set and _edition_needs_password(values)),
            project_root=project_root, has_source_password="sourcePassword" in values,
        )
    except ConfigError as err:
        raise ConfigError(stack, problems + err.problems) from None
    if problems:
        raise ConfigError(stack, problems)
    return settings
