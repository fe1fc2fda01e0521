"""Decoded views of a server's text, for the scrubber: the text with the escapes a server, a proxy or a page may
have put on it undone (quoted-printable, percent, HTML and JSON or backslash escapes, all in one round, repeated up
to DECODE_ROUNDS times for nested layers), and each view with its layout removed (`compact`: whitespace, control and
invisible characters; `folded`: compact, without `+`, case-folded) for the searches that ignore how text was wrapped,
spaced or cased. Every decoder only shortens a text and runs in time linear in it (no pattern can backtrack, no
number is parsed past 8 digits), so each view is at most as long as the text and costs one pass per decoder."""
from __future__ import annotations

import html.entities
import re
from typing import Iterator

DECODE_ROUNDS = 4
"""Nested layers undone: a password percent-encoded twice, or JSON-escaped inside an HTML page inside a URL."""

_HEX_RUN = {"%": re.compile(r"(?:%[0-9A-Fa-f]{2})++"), "=": re.compile(r"(?:=[0-9A-Fa-f]{2})++")}
"""Runs of percent (URL) and quoted-printable byte escapes: a run is the UTF-8 bytes of one or more characters.
Possessive: a greedy run keeps a backtracking point per escape (48 MiB for a 1 MiB run)."""
_QP_SOFT_BREAK = re.compile(r"=\r?\n")
_PERCENT_U = re.compile(r"%[uU]([0-9A-Fa-f]{4})")
_ENTITY = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9A-Fa-f]{1,8})|([A-Za-z][A-Za-z0-9]{0,31}));?")
# The lookbehind and the possessive run start a match only at the first backslash of a run, so a long run of
# backslashes is one match, not one attempt per backslash. Any run stands for one backslash: JSON inside JSON (a body
# quoted in an error message) doubles them.
_BACKSLASH = re.compile(r'(?<!\\)\\++(?:u([0-9A-Fa-f]{4})|x([0-9A-Fa-f]{2})|(["/bfnrt]))?')
_JSON_SHORT = {'"': '"', "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""What no view may hold: RE2 takes only text that encodes as UTF-8."""
_INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"
_LAYOUT = {c: None for c in [*range(0x21), 0x7F, *range(0x80, 0xA1), 0x1680, *range(0x2000, 0x200B), 0x2028,
                             0x2029, 0x202F, 0x205F, 0x3000, *map(ord, _INVISIBLE)]}
"""What `compact` removes: whitespace (str.isspace's), control characters (the NULs of UTF-16 read as text) and
characters that show as nothing."""


def _hex_run(marker: str, match: re.Match[str]) -> str:
    return bytes.fromhex(match.group().replace(marker, "")).decode("utf-8", errors="replace")


def _entity(match: re.Match[str]) -> str:
    number, hex_number, name = match.groups()
    if name is not None:
        return html.entities.html5.get(name + ";", match.group())
    code = int(number) if number is not None else int(hex_number, 16)
    return chr(code) if code <= 0x10FFFF else match.group()


def _backslash(match: re.Match[str]) -> str:
    unit, byte, short = match.groups()
    if unit is not None:
        return chr(int(unit, 16))
    if byte is not None:  # \xHH: Python's repr, and how undecodable bytes of an answer reach the scrubber
        return chr(int(byte, 16))
    return _JSON_SHORT[short] if short is not None else "\\"


def _pair(match: re.Match[str]) -> str:
    high, low = (ord(c) for c in match.group())
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def decode_once(text: str) -> str:
    """`text` with one layer of each escape undone: quoted-printable soft breaks and =XX, percent %XX and %uXXXX,
    HTML entities (named, decimal, hex), JSON and backslash escapes (\\uXXXX with surrogate pairs joined, \\xHH,
    \\n ...). `+` is left as it is: `folded` drops it, as a form-encoded space or as itself."""
    text = _QP_SOFT_BREAK.sub("", text)
    text = _HEX_RUN["="].sub(lambda m: _hex_run("=", m), text)
    text = _HEX_RUN["%"].sub(lambda m: _hex_run("%", m), text)
    text = _PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = _ENTITY.sub(_entity, text)
    text = _BACKSLASH.sub(_backslash, text)
    return _LONE_SURROGATE.sub("\ufffd", _SURROGATE_PAIR.sub(_pair, text))


def decoded_views(text: str) -> Iterator[str]:
    """`text`, then each distinct result of decoding it once more, up to DECODE_ROUNDS times: one at a time, so at
    most two are held. Lone surrogates become U+FFFD."""
    text = _LONE_SURROGATE.sub("\ufffd", text)
    yield text
    for _ in range(DECODE_ROUNDS):
        decoded = decode_once(text)
        if decoded == text:
            return
        yield decoded
        text = decoded


def compact(view: str) -> str:
    """`view` without whitespace, control or invisible characters: base64 wrapped at line breaks joined again."""
    return view.translate(_LAYOUT)


def folded(compact_view: str) -> str:
    """A compact view without `+` (a form-encoded space), case-folded: what a secret's own characters are searched
    in, however a server spaced, wrapped or cased them, and its hex and base32 forms (either case)."""
    return compact_view.replace("+", "").casefold()
