"""Which string literals of a CI or template expression (`${{ ... }}`, `$[ ... ]`, `{{ ... }}`, `{% ... %}`,
`<% ... %>`) are values: the ones the expression can give as its result, so they ship as written.

A literal is a value when it is the whole expression, an operand of `||`, `&&`, `??`, `or`, `and` (`secrets.A ||
'S3cr3t'`), a branch of `A if C else B`, the right side of an assignment (`{% set pw = 'S3cr3t' %}`), an argument of
a default (`default`, `d`, `coalesce`, `fetch`, as a call, a Go template command or a filter after `|`) or a
formatting call's substituted argument (`format('{0}', 'S3cr3t')`). A comparison's operand (`github.ref ==
'refs/heads/v2'`), an index (`secrets['NAME']`) and any other function's argument (`hashFiles`, `startsWith`,
`lookup`, `include`, a format string) is no value. A body over EXPRESSION_LIMIT bytes or nested deeper than
EXPRESSION_DEPTH is judged as before such reading: every literal in it is a value.
"""
from __future__ import annotations

import re

from buildcontext.sensitive_rules import STRING_LITERAL_RE

EXPRESSION_LIMIT = 4096
EXPRESSION_DEPTH = 32
_DEFAULTS = frozenset({b"default", b"d", b"coalesce", b"fetch"})
_FORMATS = frozenset({b"format", b"printf"})
_OPENERS = {ord("("): ord(")"), ord("["): ord("]"), ord("{"): ord("}")}
_LOGICAL = (b"||", b"&&", b"??", b" or ", b" and ")
_COMPARISONS = re.compile(rb"""==|!=|<=|>=|<|>|\s(?:not\s+)?in\s|\sis\s""")
_ASSIGNMENT = re.compile(rb"""(?<![=!<>])=(?!=)""")
_CALL = re.compile(rb"""([A-Za-z_][A-Za-z0-9_.]*)\s*\(""")
_COMMAND = re.compile(rb"""[A-Za-z_][A-Za-z0-9_]*""")


def _outside(e: bytes) -> tuple[bytearray, bool]:
    """A mask of `e`: 1 where a byte is outside string literals and brackets (the expression's top level); and
    whether every bracket is closed (a value cut at its bound may leave one open)."""
    mask = bytearray(len(e))
    closers: list[int] = []
    at = 0
    while at < len(e):
        c = e[at]
        if c in b"'\"":
            end = STRING_LITERAL_RE.match(e, at).end()
            at = max(end, at + 1)
            continue
        if c in _OPENERS:
            closers.append(_OPENERS[c])
        elif closers and c == closers[-1]:
            closers.pop()
        elif not closers:
            mask[at] = 1
        at += 1
    return mask, not closers


def _split(e: bytes, mask: bytearray, separators: tuple[bytes, ...]) -> list[bytes]:
    """`e` split at each separator written at its top level."""
    parts, start, at = [], 0, 0
    while at < len(e):
        sep = next((s for s in separators if mask[at] and e.startswith(s, at) and all(mask[at:at + len(s)])), None)
        if sep is None:
            at += 1
            continue
        parts.append(e[start:at])
        at = start = at + len(sep)
    return [*parts, e[start:]]


def _top_level_match(regex: re.Pattern[bytes], e: bytes, mask: bytearray) -> re.Match[bytes] | None:
    return next((m for m in regex.finditer(e) if all(mask[m.start():m.end()])), None)


def _call(name: bytes, args: list[bytes], depth: int) -> list[bytes]:
    """The values among a call's arguments: all of a default's, a format's after its format string."""
    name = name.rsplit(b".", 1)[-1]
    if name in _DEFAULTS:
        return [v for a in args for v in expression_values(a, depth + 1)]
    if name in _FORMATS:
        return [v for a in args[1:] for v in expression_values(a, depth + 1)]
    return []


def expression_values(body: bytes, depth: int = 0) -> list[bytes]:
    """The string literals of the expression `body` (between its opening and closing marks) that are values."""
    e = body.strip().lstrip(b"=-~+").rstrip(b"-~").strip()
    if len(e) > EXPRESSION_LIMIT or depth > EXPRESSION_DEPTH:
        return [m.group(1) if m.group(1) is not None else m.group(2) for m in STRING_LITERAL_RE.finditer(e)]
    literal = STRING_LITERAL_RE.fullmatch(e) if e[:1] in b"'\"" else None
    if literal is not None:
        return [literal.group(1) if literal.group(1) is not None else literal.group(2)]
    if not e or e[:1] == b"#":
        return []
    mask, closed = _outside(e)
    if e[:1] == b"(" and not any(mask):  # a group, or one cut open at the value's bound
        return expression_values(e[1:-1] if closed else e[1:], depth + 1)
    for separators in (_LOGICAL, (b" else ",)):
        parts = _split(e, mask, separators)
        if len(parts) > 1:
            parts[0] = parts[0].split(b" if ", 1)[0] if separators == (b" else ",) else parts[0]
            return [v for p in parts for v in expression_values(p, depth + 1)]
    assignment = _top_level_match(_ASSIGNMENT, e, mask)
    if assignment is not None:
        return expression_values(e[assignment.end():], depth + 1)
    if _top_level_match(_COMPARISONS, e, mask) is not None:
        return []
    pipes = _split(e, mask, (b"|",))
    if len(pipes) > 1:
        return [v for p in pipes for v in expression_values(p, depth + 1)]
    call = _CALL.match(e)
    if call is not None and not any(mask[call.end():]):
        inner = e[call.end():-1] if closed else e[call.end():]
        return _call(call.group(1), _split(inner, _outside(inner)[0], (b",",)), depth)
    words = [w for w in _split(e, mask, (b" ", b"\t")) if w]
    if len(words) > 1 and _COMMAND.fullmatch(words[0]):
        return _call(words[0], words[1:], depth)
    return []
