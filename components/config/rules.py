"""The rule table's row type and the one validator that walks a table over a map of settings.

A row says of one key: its type, the editions that use it (how the "not used" message names them, or a message of
its own), the editions that require it and what "missing" says, the fix for an empty value, and, for a rule a
table cannot hold (a grammar, a file that must exist, a rule across keys), a small check function. `walk` judges
each row in table order: the value's type, then missing or not used, then the check; every problem is collected.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from components.config.schema import EDITIONS
from components.config.shown import shown, shown_name
from components.config.values import read_bool, read_choice, read_login_user, read_str

KINDS = ("string", "user", "bool", "choice", "given")
"""A row's type: a non-empty string, a registry login user, true/false, one of `choices`, or the value as given
(its check judges it)."""


@dataclass
class Scope:
    """One map being walked: where it is, the stack and edition it is judged for, and what earlier rows decided."""

    path: str
    """The map's key path, e.g. acr-publish:registry or acr-publish:images[0]."""
    given: Mapping[str, Any]
    """The map's values, plus the values of rows whose key holds ':' (stack keys outside the map)."""
    edition: str
    """The registry edition, or "" when it is unknown (missing or refused): then only rules for every edition run."""
    stack: str
    problems: list[str]
    values: dict[str, Any] = field(default_factory=dict)
    """Each row's value once judged: its checks may read earlier rows' values."""
    root: Path | None = None
    """The project root (contexts and Dockerfiles are relative to it)."""
    repo: Path | None = None
    """The repository that holds the project: paths must resolve inside it."""
    index: int = 0
    """The image's index in acr-publish:images."""
    seen: dict[str, int] = field(default_factory=dict)
    """Image names already given, and where: names are unique in a stack."""

    def where(self, key: str) -> str:
        """The key path of `key`: a key holding ':' is a stack key already."""
        return key if ":" in key else f"{self.path}.{key}"

    def add(self, problem: str) -> None:
        self.problems.append(problem)


Check = Callable[[Scope, str, Any], Any]
"""A rule the table cannot hold: takes the scope, the key path and the typed value (None when the key is absent),
appends what it finds and returns the value to keep."""


@dataclass(frozen=True)
class Rule:
    """One key of a settings map, as data."""

    key: str
    """The key in its map; holding ':', a stack key outside it (acr-publish:registryPassword, alicloud:region)."""
    kind: str = "string"
    default: Any = None
    choices: tuple[str, ...] = ()
    editions: tuple[str, ...] = EDITIONS
    """The editions that use the key."""
    applies_to: str | None = None
    """How the "not used by edition" message names `editions`; with `not_used` also None, another edition's value
    is ignored without a word."""
    not_used: str | None = None
    """A "not used" message of its own: a format string of where, value, edition and stack."""
    typed_when_unused: bool = True
    """Whether the value's type is judged where the edition does not use the key (else only "not used" is said)."""
    required: bool | tuple[str, ...] = ()
    """True: always; else the editions that need the key."""
    missing: str = ""
    """After "<key> is missing: ": a format string of edition and stack."""
    if_empty: str | Callable[[Scope], str] = "give a value or remove the key"
    """The fix for an empty string."""
    check: Check | None = None
    """Run where the edition uses the key and its value was not refused, also when it is absent."""

    def used_by(self, edition: str) -> bool:
        """An unknown edition ("") uses only the keys every edition uses."""
        return edition in self.editions if edition else self.editions == EDITIONS

    def needed_by(self, edition: str) -> bool:
        return self.required is True or bool(edition) and edition in (self.required or ())


def typed(rule: Rule, where: str, value: Any, scope: Scope) -> Any:
    """The value as its row's kind reads it (None when absent or refused, or the row's default)."""
    if rule.kind == "bool":
        return read_bool(where, value, rule.default, scope.problems)
    if rule.kind == "choice":
        return read_choice(where, value, rule.choices, rule.default, scope.problems)
    if rule.kind == "given":
        return value
    fix = rule.if_empty(scope) if callable(rule.if_empty) else rule.if_empty
    read = read_login_user if rule.kind == "user" else read_str
    return read(where, value, scope.problems, if_empty=fix)


def judge(rule: Rule, scope: Scope) -> Any:
    """One row over its map: type, then missing or not used, then the row's check; returns the value to keep."""
    where, value, edition = scope.where(rule.key), scope.given.get(rule.key), scope.edition
    uses = rule.used_by(edition)
    result = typed(rule, where, value, scope) if uses or rule.typed_when_unused else None
    stack = shown_name(scope.stack)
    if value is None and rule.needed_by(edition):
        scope.add(f"{where} is missing: {rule.missing.format(edition=edition, stack=stack)}")
    elif value is not None and edition and not uses:
        if rule.not_used is not None:
            scope.add(rule.not_used.format(where=where, value=shown(value), edition=edition, stack=stack))
        elif rule.applies_to is not None:
            scope.add(f"{where} {shown(value)} is not used by edition {edition!r}: it applies to {rule.applies_to} "
                      f"only; remove it from stacks/Pulumi.{stack}.yaml")
    refused = value is not None and result is None
    if rule.check is not None and uses and not refused:
        result = rule.check(scope, where, result)
    return result


def walk(table: tuple[Rule, ...], scope: Scope) -> dict[str, Any]:
    """Every row of `table` over the scope's map, in table order; returns each key's value to keep."""
    for rule in table:
        scope.values[rule.key] = judge(rule, scope)
    return scope.values
