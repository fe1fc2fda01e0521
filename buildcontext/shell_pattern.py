"""The shell patterns of `${NAME#pattern}`, `${NAME%pattern}` (and `##`, `%%`) and `${NAME/pattern/replacement}`
(and `//`), matched as BuildKit's shell lexer matches them (frontend/dockerfile/shell/lex.go, Docker 26).

BuildKit turns the pattern into a Go regexp (`*` any run, lazy or greedy; `?` one character; `\\*`, `\\?`, `\\\\`
literal; `\\}` and `\\/` the character; any other escape refused; no bracket expressions) and takes Go's leftmost-
first match. Here the pattern is matched by a backtracking search that visits each (pattern position, text
position) at most once, as Go's own backtracker does: its time is bounded by the product of the two lengths
(`MAX_STEPS`; `PLAN_STEPS` for one Dockerfile), so a hostile pattern costs no more than a long one. `#`/`%`
trim the shortest (`##`/`%%` the longest) prefix/suffix; `%` matches the reversed pattern against the reversed
value, as BuildKit does.
"""
from __future__ import annotations

import array
import contextlib
import contextvars
import re

MAX_STEPS = 1 << 22
"""(pattern length + 1) x (value length + 1) above which a match is refused rather than computed."""
PLAN_STEPS = 2 * MAX_STEPS
"""The same product summed over every match of one Dockerfile's plan (`plan_budget`)."""
MAX_WORD = 1 << 20
"""Characters of one expanded word or value (a replacement's result included) past which it is refused."""
_spent: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("pattern_steps", default=None)


@contextlib.contextmanager
def plan_budget():
    """Every match made inside counts against one budget of PLAN_STEPS: many patterns add up."""
    token = _spent.set([0])
    try:
        yield
    finally:
        _spent.reset(token)
_STAR, _ANY = "*", "?"
_GO_TEMPLATE_NAME = re.compile(r"\{?(\w+)(\}?)")


class PatternProblem(ValueError):
    """The pattern is one BuildKit refuses (an escape it does not know), or too large for this plan to match."""


def _tokens(pattern: str) -> list[tuple[str, str]]:
    """The pattern as (kind, character) tokens: kind "*" or "?" for the wildcards, "c" for a literal character."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(pattern):
        ch, i = pattern[i], i + 1
        if ch in (_STAR, _ANY):
            out.append((ch, ch))
            continue
        if ch == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):  # the escape that kept it from ending the ${...} is no part of the pattern
                continue
            if nxt not in ("*", "?", "\\"):
                raise PatternProblem("BuildKit refuses its pattern (an escape other than \\*, \\?, \\\\, \\} "
                                     "and \\/); fix: escape only those, with a backslash")
            ch, i = nxt, i + 1
        out.append(("c", ch))
    return out


class _Matcher:
    """Leftmost-first matches of one pattern in one text (Go's regexp semantics: `.` is any character but a line
    feed). A (token, position) pair visited once and left has no match after it, whatever the start: never again."""

    def __init__(self, pattern: str, text: str, greedy: bool) -> None:
        self.tokens, self.text, self.greedy = _tokens(pattern), text, greedy
        if (len(self.tokens) + 1) * (len(text) + 1) > MAX_STEPS:
            raise PatternProblem(f"its pattern ({len(self.tokens)} characters) against its value ({len(text)}) is "
                                 f"more than this plan matches ({MAX_STEPS} steps); fix: shorten the pattern or "
                                 "the value")
        spent = _spent.get()
        if spent is not None:
            spent[0] += (len(self.tokens) + 1) * (len(text) + 1)
            if spent[0] > PLAN_STEPS:
                raise PatternProblem(f"the Dockerfile's patterns together are more than this plan matches "
                                     f"({PLAN_STEPS} steps, pattern length x value length summed); fix: use fewer "
                                     "or shorter patterns, or shorter values")
        self.visited = bytearray((len(self.tokens) + 1) * (len(text) + 1))
        self.parent = array.array("i", bytes(4 * len(self.visited)))

    def _end(self, start: int) -> int | None:
        """The end of the match starting at `start` a backtracking matcher finds first, or None. The states of
        the path to a match are unmarked: they did not fail, a later search may pass them again."""
        tokens, text, width = self.tokens, self.text, len(self.text) + 1
        stack = [(0, start, -1)]
        while stack:
            i, j, parent = stack.pop()
            state = i * width + j
            if self.visited[state]:
                continue
            self.visited[state], self.parent[state] = 1, parent
            if i == len(tokens):
                while state >= 0:
                    self.visited[state], state = 0, self.parent[state]
                return j
            kind, ch = tokens[i]
            fits = j < len(text) and (text[j] == ch if kind == "c" else text[j] != "\n")
            if kind != _STAR:
                if fits:
                    stack.append((i + 1, j + 1, state))
                continue
            # pushed last is tried first: greedy takes one more character before it moves on, lazy the reverse
            alternatives = [(i + 1, j, state)] + ([(i, j + 1, state)] if fits else [])
            stack.extend(alternatives if self.greedy else alternatives[::-1])
        return None

    def find(self, start: int, anchored: bool) -> tuple[int, int] | None:
        for begin in range(start, start + 1 if anchored else len(self.text) + 1):
            end = self._end(begin)
            if end is not None:
                return begin, end
        return None


def trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    found = _Matcher(pattern, value, greedy).find(0, anchored=True)
    return value[found[1]:] if found else value


def _reversed_pattern(pattern: str) -> str:
    """The pattern reversed with each `\\x` kept in its order (BuildKit's reversePattern)."""
    out = list(pattern)
    last, i = len(pattern) - 1, 0
    while i <= last:
        if pattern[i] == "\\" and i != last:
            out[last - i - 1], out[last - i] = "\\", pattern[i + 1]
            i += 2
        else:
            out[last - i] = pattern[i]
            i += 1
    return "".join(out)


def trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    return trim_prefix(_reversed_pattern(pattern), value[::-1], greedy)[::-1]


def _go_expand(template: str, match: str) -> str:
    """Go's Regexp.Expand of `template` for a regexp without groups: `$$` is `$`, `$0`/`${0}` the match, any other
    `$name`/`${name}` nothing, a malformed one the `$` as written."""
    out: list[str] = []
    while (cut := template.find("$")) >= 0:
        out.append(template[:cut])
        template = template[cut + 1:]
        if template.startswith("$"):
            out.append("$")
            template = template[1:]
            continue
        named = _GO_TEMPLATE_NAME.match(template)
        braced = template.startswith("{")
        if named is None or (braced and not named.group(2)):
            out.append("$")
            continue
        out.append(match if named.group(1) == "0" else "")
        template = template[named.end() if braced else named.start(2):]
    return "".join(out) + template


def replace(pattern: str, value: str, replacement: str, every: bool) -> str:
    """`${NAME/pattern/replacement}` (`every`: `//`), greedy as BuildKit's: the first match replaced by the
    replacement as it is, or every match by Go's ReplaceAllString (which expands `$` in it)."""
    matcher = _Matcher(pattern, value, greedy=True)
    if not every:
        found = matcher.find(0, anchored=False)
        return value if found is None else value[:found[0]] + replacement + value[found[1]:]
    out: list[str] = []
    last_end = search = size = 0
    while search <= len(value) and (found := matcher.find(search, anchored=False)) is not None:
        out.append(value[last_end:found[0]])
        if found[1] > last_end or found[0] == 0:  # an empty match right after a match is not replaced (Go)
            out.append(_go_expand(replacement, value[found[0]:found[1]]))
            size += len(out[-1]) + found[0] - last_end
            if size > MAX_WORD:
                raise PatternProblem(f"its result is longer than {MAX_WORD} characters, the most this plan "
                                     "expands; fix: a shorter value or replacement")
        last_end = found[1]
        search = search + 1 if search + 1 > found[1] else found[1]
    return "".join(out) + value[last_end:]
