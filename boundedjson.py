"""The one parser of JSON the program did not write itself in this run: a server's answer, a file (its own caches
too, which anyone may edit), a tool's output, a config value. `parse_json` holds it to the caller's size bound and
to MAX_DEPTH levels of nesting, and raises ValueError for anything else: never RecursionError (json's parser
raises it for deep nesting, and code walking a parsed document recursively would), never memory in proportion to
what a server chose to send.
"""
from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64
"""Levels of arrays and objects: every document the program reads nests fewer than ten."""

# A string, or an unterminated one running to the end (a lone backslash last included): every `"` then starts a
# match, so no start is tried twice and stripping stays linear however a server arranges quotes and backslashes.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")


class PastBounds(ValueError):
    """A document refused before it was parsed, for its size or its nesting: str() names the bound it passed
    ("nested deeper than 64 levels"), which a refusal says rather than "not JSON"."""


def _too_deep(data: bytes) -> bool:
    """Whether `data` nests arrays and objects deeper than MAX_DEPTH (brackets inside strings do not count)."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False
    depth = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKET):
        depth += 1 if byte in _OPENERS else -1
        if depth > MAX_DEPTH:
            return True
    return False


def parse_json(data: bytes | str, *, limit: int) -> Any:
    """`data` parsed as JSON; PastBounds (a ValueError) when it is longer than `limit` bytes (or characters) or
    nests deeper than MAX_DEPTH, ValueError when it is not JSON (UnicodeDecodeError is a ValueError)."""
    if len(data) > limit:
        raise PastBounds(f"longer than {limit} bytes")
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if _too_deep(raw):
        raise PastBounds(f"nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(data)
    except RecursionError:  # only when the caller's own stack is nearly exhausted
        raise PastBounds("nested deeper than the parser can go") from None
