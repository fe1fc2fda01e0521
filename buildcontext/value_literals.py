"""The literal text a value holds once its references are taken out: what every rule judges as the value.

A reference stands for a value held elsewhere (`$X`, `${X}`, `$(cmd)`, a backquote, `%X%`, `$1`, `<placeholder>`), an
expression (`${{ ... }}`, `$[ ... ]`, `{{ ... }}`, `{% ... %}`, `<% ... %>`) for one computed elsewhere; but a literal
written beside or inside one ships as it is: the text glued around references (`${PREFIX}S3cr3t`), a shell default or
alternative (`${X:-S3cr3t}`, `${X-...}`, `${X:=...}`, `${X:+...}`), an expression's string literal in value
position (`${{ secrets.A || 'S3cr3t' }}`: buildcontext/expression_values.py). `literal_parts` gives those parts, each
judged by the caller's value rule; `read_value` finds where a value holding references ends. A reference left open
(a value cut at white space or at a bound) runs to the value's end; `${X:?message}` holds an error message, no value.
The patterns are buildcontext/sensitive_rules.py's.
"""
from __future__ import annotations

from buildcontext.expression_values import expression_values
from buildcontext.sensitive_rules import (
    ANGLE_PLACEHOLDER_RE, BATCH_REFERENCE_RE, REFERENCE_OPENERS, SHELL_NAME_RE, SHELL_PARAMETER_RE, VALUE_EXPRESSIONS)

Part = tuple[bytes, bool]
"""A literal part of a value and whether it was written quoted (a string literal inside an expression)."""


def _closing(text: bytes, at: int, opening: bytes, closing: bytes) -> int:
    """Where the bracket opened just before `at` closes (after its closing mark), counting nested openings; the end
    of `text` when it stays open."""
    depth = 1
    while at < len(text):
        if text.startswith(closing, at):
            depth -= 1
            at += len(closing)
            if depth == 0:
                return at
        elif text.startswith(opening, at):
            depth += 1
            at += len(opening)
        else:
            at += 1
    return len(text)


def _expression(text: bytes, at: int) -> tuple[int, list[Part]] | None:
    for opening, closing in VALUE_EXPRESSIONS:
        if text.startswith(opening, at):
            close = text.find(closing, at + len(opening))
            close = len(text) if close < 0 else close
            body = text[at + len(opening):close]
            return min(close + len(closing), len(text)), [(value, True) for value in expression_values(body)]
    return None


def _reference(text: bytes, at: int) -> tuple[int, list[Part]] | None:
    """(end, literal parts) of the reference starting at `at`, or None when none starts there."""
    found = _expression(text, at)
    if found is not None:
        return found
    if text.startswith(b"$(", at):
        return _closing(text, at + 2, b"(", b")"), []
    if text.startswith(b"`", at):
        end = text.find(b"`", at + 1)
        return (len(text) if end < 0 else end + 1), []
    m = SHELL_PARAMETER_RE.match(text, at)
    if m is not None:
        end = _closing(text, m.end(), b"${", b"}")
        operator = m.group(1)
        if operator and operator[-1:] in b"-=+":
            word = text[m.end():end - 1 if text[end - 1:end] == b"}" else end]
            return end, literal_parts(word)
        return end, []
    if text.startswith(b"${", at):
        return _closing(text, at + 2, b"${", b"}"), []
    for regex in (SHELL_NAME_RE, BATCH_REFERENCE_RE, ANGLE_PLACEHOLDER_RE):
        m = regex.match(text, at)
        if m is not None:
            return m.end(), []
    return None


def literal_parts(value: bytes) -> list[Part]:
    """The literal parts of `value`: the text outside references with quotes dropped (one part: it is glued
    together), then each literal a reference holds (a default, an expression's string)."""
    glued = bytearray()
    parts: list[Part] = []
    at = 0
    while at < len(value):
        found = _reference(value, at) if value[at:at + 1] in b"$`{<%" else None
        if found is None:
            if value[at] not in b"\"'":
                glued.append(value[at])
            at += 1
            continue
        at, inner = found
        parts.extend(inner)
    return [(bytes(glued), False), *parts]


def holds_reference(value: bytes) -> bool:
    """Whether `value` may hold a reference (a byte that opens one), so its end is read again by `read_value`."""
    return any(opener in value for opener in REFERENCE_OPENERS)


def read_value(text: bytes, ends: bytes) -> bytes:
    """The value at the start of `text` up to the first byte of `ends` outside references (a reference left open
    runs to the end of `text`)."""
    at = 0
    while at < len(text):
        found = _reference(text, at) if text[at:at + 1] in b"$`{<%" else None
        if found is not None:
            at = found[0]
        elif text[at:at + 1] in ends:
            break
        else:
            at += 1
    return text[:at]
