"""Which string literals of a CI or template expression (`${{ ... }}`, `$[ ... ]`, `{{ ... }}`, `{% ... %}`,
`<% ... %>`) are values: the ones the expression can give as its result, so they ship as written.

Every literal is a value except where the expression only tests or looks something up with it: a comparison's
operand (`github.ref == 'refs/heads/v2'`), the key of an index (`secrets['NAME']`), and the arguments of a predicate
or lookup (_NO_VALUE: `startsWith`, `contains`, `hashFiles`, `eq`, `hasKey`, `lookup`, `include`, `required`...).
Operands of `||`, `&&`, `??`, `or`, `and`, branches (`A if C else B`, `A if C`) and an assignment's right side are
read on their own; any other function or filter (`default`, `quote`, `b64enc`, `ternary`, `toJSON`, `format` with
its format string) gives its arguments back in some form, so theirs are values, as is every literal of a form not
read here (concatenation, arithmetic, literals of lists and maps). A body over EXPRESSION_LIMIT bytes or nested
deeper than EXPRESSION_DEPTH: every literal in it is a value.
"""
from __future__ import annotations

import re

from buildcontext.sensitive_rules import STRING_LITERAL_RE

EXPRESSION_LIMIT = 4096
EXPRESSION_DEPTH = 32
_NO_VALUE = frozenset({b"startswith", b"endswith", b"contains", b"hashfiles", b"success", b"failure", b"always",
                       b"cancelled", b"eq", b"ne", b"lt", b"le", b"gt", b"ge", b"not", b"has", b"haskey", b"hasprefix",
                       b"hassuffix", b"regexmatch", b"mustregexmatch", b"semvercompare", b"kindis", b"typeis",
                       b"empty", b"lookup", b"include", b"required", b"fail", b"index", b"env", b"getenv"})
_PLACEHOLDER = re.compile(rb"""\{\d{1,2}\}""")
_FIELDS = re.compile(rb"""(?:\.[A-Za-z_][A-Za-z0-9_]*)+""")
_INDEXED = re.compile(rb"""[A-Za-z_][A-Za-z0-9_.-]*\[""")
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
    """The values among a call's arguments: none of a predicate's or lookup's, every other function's."""
    name = name.rsplit(b".", 1)[-1].lower()
    if name in _NO_VALUE:
        return []
    values = [v for a in args for v in expression_values(a, depth + 1)]
    if name == b"format" and args:  # its `{0}` placeholders are the other arguments, read on their own
        values = [_PLACEHOLDER.sub(b"", v) for v in values[:1]] + values[1:]
    return values


def _literals(e: bytes) -> list[bytes]:
    return [m.group(1) if m.group(1) is not None else m.group(2) for m in STRING_LITERAL_RE.finditer(e)]


def expression_values(body: bytes, depth: int = 0) -> list[bytes]:
    """The string literals of the expression `body` (between its opening and closing marks) that are values."""
    e = body.strip().lstrip(b"=-~+").rstrip(b"-~").strip()
    while e.endswith(b"}") and e.count(b"}") > e.count(b"{"):  # a closing mark's brace left over
        e = e[:-1].rstrip()
    if len(e) > EXPRESSION_LIMIT or depth > EXPRESSION_DEPTH:
        return _literals(e)
    literal = STRING_LITERAL_RE.fullmatch(e) if e[:1] in b"'\"" else None
    if literal is not None:
        return [literal.group(1) if literal.group(1) is not None else literal.group(2)]
    if not e or e[:1] == b"#":
        return []
    mask, closed = _outside(e)
    if e[:1] == b"(" and not any(mask):  # a group, or one cut open at the value's bound
        return expression_values(e[1:-1] if closed else e[1:], depth + 1)
    if e[:1] == b"(" and _FIELDS.fullmatch(e, mask.find(1)):  # `(lookup ...).data.password`: a field of the group's
        return expression_values(e[1:mask.find(1) - 1], depth + 1)
    for separators in (_LOGICAL, (b" else ",)):
        parts = _split(e, mask, separators)
        if len(parts) > 1:
            parts[0] = parts[0].split(b" if ", 1)[0] if separators == (b" else ",) else parts[0]
            return [v for p in parts for v in expression_values(p, depth + 1)]
    branch = _split(e, mask, (b" if ",))
    if len(branch) > 1:  # `A if C` without an else: A is the value
        return expression_values(branch[0], depth + 1)
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
    if _INDEXED.match(e) and not any(mask[_INDEXED.match(e).end() - 1:]):  # `secrets['NAME']`: a lookup's key
        return []
    return _literals(e)
