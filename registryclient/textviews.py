"""Decoded views of a server's text, for the scrubber: the text with the escapes a server, a proxy or a page may
have put on it undone (quoted-printable, percent, HTML and JSON or backslash escapes, all in one round), and its
encoded runs (`_READERS`: hex, also as EBCDIC; base32, base32hex, base64, also in space-separated groups or short
lines, and a run's segments after a prefix in theirs; base85; uuencoded lines) and its lists of numbers (byte and
code point lists, U+HHHH) decoded (`base_layer`), each view decoded again both ways, nested up to DECODE_ROUNDS
layers deep (base64 of a percent-encoded password, hex of base64, a byte list of base64); and each view with its
layout removed (`compact`: whitespace, control and invisible characters; `folded`: compact, without `+`,
compatibility characters as NFKC's, case-folded; `alnum`: letters and digits only) for the searches that ignore how text was wrapped, spaced, separated, cased or styled.
Every decoder only shortens a text and runs in time linear in it (no pattern can backtrack, no number is parsed
past 8 digits); a text is `TooLayered` when its views would total more than LAYER_BUDGET times its length or a view
DECODE_ROUNDS layers deep still decodes."""
from __future__ import annotations

import array
import base64
import binascii
import html.entities
import re
import unicodedata
from typing import Callable, Iterator, NamedTuple

DECODE_ROUNDS = 4
"""Nested layers undone: a password percent-encoded twice, JSON-escaped inside an HTML page inside a URL, base64 of
base64 of a percent-encoded one."""
LAYER_BUDGET = 4
"""The decoded views of a text may total this many times its length (plus LAYER_SLACK characters): each shortens
the text it decodes, but a text can be read in several ways at each layer (escapes; hex and also base64)."""
LAYER_SLACK = 1 << 16


class TooLayered(Exception):
    """A text whose decoded views would pass the budget: too deeply encoded to check whole."""


# Runs of an encoding's alphabet long enough to hold a 5-character run of a secret (scrub.FRAGMENT_MIN) once
# decoded. A base64 run that is only hex digits is read as hex, one of only base32's letters as base32: each run is
# read once, in the narrowest alphabet it fits (base64 text made of hex digits alone is rare past ten characters);
# a run that fits none is read as base64 and its segments (`_segments`) in theirs.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{7,}=*")
_HEX_ONLY = re.compile(r"[0-9A-Fa-f]{10,}")
_BASE32_ONLY = re.compile(r"[A-Z2-7]{8,}|[a-z2-7]{8,}")
_BASE32HEX_ONLY = re.compile(r"[0-9A-V]{8,}|[0-9a-v]{8,}")
_PIECE = re.compile(r"(?:0[xX](?=[0-9A-Za-z]))?+([^-_]+)")
"""A piece of a run between `-` and `_`, without a leading 0x: where an id or a prefix glues hex or base32 on."""
_HEX_TAIL = re.compile(r"[0-9A-Fa-f]{10,}\Z")
_BASE32_TAILS = (0, 2, 4, 5, 7)
"""The lengths base32 text can end with past a whole 8-character group."""
_BASE85_RUN = re.compile(r"[0-9A-Za-z!#$%&()*+;<=>?@^_`{|}~-]{7,}")
_BASE85_ONLY = re.compile(r"[!#$%&()*;<>?@^`{|}~]")
"""A base85 run holding none of these is a base64 run, read as one."""
_URLSAFE = str.maketrans("-_", "+/")
_SPACED_RUN = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]++(?:[ \t]++[A-Za-z0-9+/_-]++)+=*")
_WRAPPED_RUN = re.compile(r"^(?:[A-Za-z0-9+/_-]{1,6}+[ \t]*+\r?\n)+[A-Za-z0-9+/_-]{1,6}+=*+[ \t]*+\r?$",
                          re.MULTILINE)
"""Two lines or more that are each a run of the base64 alphabet alone, too short for `_BASE64_RUN` (longer lines
are read one by one, and `compact` joins what they decode to): each character is read once. The lines are given
back one at most: the last the group took is a whole line."""
_PLAIN_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_UU_START = re.compile(r"(?<!\S)[%-M]")
"""A uuencoded line's length character, of at least 5 bytes (the shortest run of a secret that withholds a text)."""
_UU_BODY = re.compile(r"[ -`]*")
_SPACES = re.compile(" *")
_UU_TO_BASE64 = str.maketrans("".join(map(chr, range(32, 96))) + "`",
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/A")
_WORD = re.compile(r"[/+_-]*(?:(?:[A-Z]?[a-z]+|[A-Z]+)[/+_-]*)+")
"""A base64 run that is words (lower case, capitalized or upper case) and separators, as prose and paths are."""
# A number of a byte or character list: \u{HH}, U+HHHH and CSS's \HH (code points), \ooo (octal), 0xHH (also run
# together: 0x520x65), 8 binary digits, or a bare number of 1-3 digits, or 4 with a leading 0 (decimal, padded or
# not; two hex digits; three octal digits, as `od -b` writes). The word boundaries keep digits inside words and digests out.
_NUMBER = re.compile(r"\\u\{([0-9A-Fa-f]{1,6})\}|(?<![G-Zg-z])[Uu]\+([0-9A-Fa-f]{1,6})"
                     r"|\\([0-9A-Fa-f]{1,6}) ?"
                     r"|(?:\b|(?<=[0-9A-Fa-f]))0[xX]([0-9A-Fa-f]{1,2})(?=0[xX]|\b)"
                     r"|\b([01]{8})\b|\b(0?[0-9A-Fa-f]{1,3})\b")
_NUMBER_GAP = re.compile(r"[\s,;:.|/-]{0,3}")
"""What may stand between two numbers of one list: `[82 101 ...]`, `[114,101,...]`, `0x52, 0x65`, `52:65`."""
_NUMBERS_MIN = 5
"""The shortest list read: as long as the shortest run of a secret that withholds a text (scrub.FRAGMENT_MIN)."""
_OCTAL = frozenset("01234567")
_TEXT_RUN = re.compile(r"[\0\t\n\r -~]{5,}")
"""ASCII text (and UTF-16's NULs) as long as the shortest run of a secret that withholds a text."""

_HEX_RUN = {"%": re.compile(r"(?:%[0-9A-Fa-f]{2})++"), "=": re.compile(r"(?:=[0-9A-Fa-f]{2})++")}
"""Runs of percent (URL) and quoted-printable byte escapes: a run is the UTF-8 bytes of one or more characters.
Possessive: a greedy run keeps a backtracking point per escape (48 MiB for a 1 MiB run)."""
_QP_SOFT_BREAK = re.compile(r"=\r?\n")
_PERCENT_U = re.compile(r"%[uU]([0-9A-Fa-f]{4})")
_ENTITY = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9A-Fa-f]{1,8})|([A-Za-z][A-Za-z0-9]{0,31}));?")
# The lookbehind and the possessive run start a match only at the first backslash of a run, so a long run of
# backslashes is one match, not one attempt per backslash. Any run stands for one backslash: JSON inside JSON (a body
# quoted in an error message) doubles them.
_BACKSLASH = re.compile(r'(?<!\\)\\++(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|x([0-9A-Fa-f]{2})|(["/bfnrt]))?')
_JSON_SHORT = {'"': '"', "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
"""What no view may hold: RE2 takes only text that encodes as UTF-8."""
_INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"
_LAYOUT = {c: None for c in [*range(0x21), 0x7F, *range(0x80, 0xA1), 0x1680, *range(0x2000, 0x200B), 0x2028,
                             0x2029, 0x202F, 0x205F, 0x3000, *map(ord, _INVISIBLE)]}
"""What `compact` removes: whitespace (str.isspace's), control characters (the NULs of UTF-16 read as text) and
characters that show as nothing."""
_NOT_ALNUM = re.compile(r"[\W_]+")


def _hex_run(marker: str, match: re.Match[str]) -> str:
    return bytes.fromhex(match.group().replace(marker, "")).decode("utf-8", errors="replace")


def _entity(match: re.Match[str]) -> str:
    number, hex_number, name = match.groups()
    if name is not None:
        return html.entities.html5.get(name + ";", match.group())
    code = int(number) if number is not None else int(hex_number, 16)
    return chr(code) if code <= 0x10FFFF else match.group()


def _backslash(match: re.Match[str]) -> str:
    unit, point, byte, short = match.groups()
    if unit is not None:
        return chr(int(unit, 16))
    if point is not None:  # \UXXXXXXXX: Python's escape of any code point
        return chr(int(point, 16)) if int(point, 16) <= 0x10FFFF else match.group()
    if byte is not None:  # \xHH: Python's repr, and how undecodable bytes of an answer reach the scrubber
        return chr(int(byte, 16))
    return _JSON_SHORT[short] if short is not None else "\\"


def _pair(match: re.Match[str]) -> str:
    high, low = (ord(c) for c in match.group())
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def decode_once(text: str) -> str:
    """`text` with one layer of each escape undone: quoted-printable soft breaks and =XX, percent %XX and %uXXXX,
    HTML entities (named, decimal, hex), JSON and backslash escapes (\\uXXXX with surrogate pairs joined,
    \\UXXXXXXXX, \\xHH, \\n ...). `+` is left as it is: `folded` drops it, as a form-encoded space or as itself."""
    text = _QP_SOFT_BREAK.sub("", text)
    text = _HEX_RUN["="].sub(lambda m: _hex_run("=", m), text)
    text = _HEX_RUN["%"].sub(lambda m: _hex_run("%", m), text)
    text = _PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), text)
    text = _ENTITY.sub(_entity, text)
    text = _BACKSLASH.sub(_backslash, text)
    return _LONE_SURROGATE.sub("\ufffd", _SURROGATE_PAIR.sub(_pair, text))


def _base32(body: str, decode: Callable[..., bytes]) -> bytes:
    """A base32 (or base32hex) run's bytes, its incomplete last group cut to a length base32 text can end with."""
    whole = len(body) // 8 * 8
    keep = whole + max(t for t in _BASE32_TAILS if t <= len(body) - whole)
    return decode(body[:keep].upper() + "=" * (-keep % 8))


def _narrow_bytes(body: str) -> list[tuple[int, bytes, str | None]]:
    """Readings of a run in the narrowest alphabets it fits whole: hex from each of its 2 nibble offsets (and from
    the first as EBCDIC, cp037); else base32hex and base32 from its first character (8 offsets would be 5 times
    the run); none when it fits neither."""
    if _HEX_ONLY.fullmatch(body):
        data = [bytes.fromhex(body[k:k + (len(body) - k) // 2 * 2]) for k in (0, 1)]
        return [(0, data[0], None), (1, data[1], None), (0, data[0], "cp037")]
    readings = [(0, _base32(body, base64.b32hexdecode), None)] if _BASE32HEX_ONLY.fullmatch(body) else []
    if _BASE32_ONLY.fullmatch(body):
        readings.append((0, _base32(body, base64.b32decode), None))
    return readings


def _segments(body: str) -> Iterator[str]:
    """The parts of a run a narrower alphabet may be glued into: its pieces between `-` and `_` (`trace-…`,
    `req_…`), each without a leading 0x, and a piece's longest hex tail (`value0x…`, `tok…`: hex from either
    nibble offset). Each character is in one piece and at most one tail, so their readings together are at most
    about as long as the run's own."""
    for piece in _PIECE.findall(body):
        if piece != body:
            yield piece
        tail = _HEX_TAIL.search(piece)
        if tail is not None and tail.start() and not _HEX_ONLY.fullmatch(piece):
            yield tail.group()


def _run_bytes(run: str) -> list[tuple[int, bytes, str | None]]:
    """(offset, bytes, charset) readings of a run of `_BASE64_RUN`, its incomplete last group left out: in the
    narrowest alphabet it fits whole (`_narrow_bytes`), else as base64 (either alphabet) from each of its 4
    character offsets, so a slice of an encoding that starts partway into a group still reads as the bytes it
    encodes at one of them, and each of its `_segments` in its narrowest alphabet."""
    body = run.rstrip("=")
    readings = _narrow_bytes(body)
    if _HEX_ONLY.fullmatch(body) or _BASE32_ONLY.fullmatch(body):
        return readings
    for segment in _segments(body):
        readings += _narrow_bytes(segment)
    body = body.translate(_URLSAFE)
    for k, rest in enumerate((body, body[1:], body[2:], body[3:])):
        keep = len(rest) - (len(rest) % 4 == 1)
        readings.append((k, binascii.a2b_base64(rest[:keep] + "=" * (-keep % 4)), None))
    return readings


def _as_text(data: bytes) -> str:
    """Decoded bytes as text: UTF-8 when they are, else Latin-1 (every byte a character: UTF-16 and UTF-32 of
    ASCII text read as it with NULs between, which `compact` removes)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _readings(match: re.Match[str]) -> tuple[int | None, int | None, int | None, int | None]:
    """What one number of `_NUMBER` stands for read as each kind of list: a decimal (or binary) byte, a hex byte,
    an octal byte, a code point (None where it cannot be one)."""
    braced, plus, escape, prefixed, binary, bare = match.groups()
    if braced is not None or plus is not None or escape is not None:
        code = int(braced or plus or escape, 16)
        point = code if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else None
        octal = int(escape, 8) if escape and len(escape) <= 3 and _OCTAL.issuperset(escape) else None
        return None, None, octal if octal is not None and octal <= 0xFF else None, point
    if prefixed is not None:
        return None, int(prefixed, 16), None, None
    if binary is not None:
        return int(binary, 2), None, None, None
    octal = int(bare, 8) if len(bare) == 3 and _OCTAL.issuperset(bare) else None
    return (int(bare) if bare.isdigit() and int(bare) <= 0xFF else None,
            int(bare, 16) if len(bare) == 2 else None, octal if octal is not None and octal <= 0xFF else None, None)


def _end_list(values: list[int], pieces: list[str]) -> None:
    if len(values) >= _NUMBERS_MIN:
        pieces.append(_as_text(bytes(values)) if max(values) <= 0xFF else "".join(map(chr, values)))
    values.clear()


def number_lists(view: str) -> list[str]:
    """What the lists of numbers in `view` spell, one piece per list of at least _NUMBERS_MIN: a byte list (Go's
    `%v` of a []byte, Node's JSON of a Buffer, `0x52, 0x65`, `52:65`, octal escapes) read as other decoded bytes
    are, a code point list (CSS escapes, \\u{HH}) as text. A number that can be read several ways (`52`: decimal
    or hex) is read each way: one pass, each list at most half as long as its text."""
    lists: list[list[int]] = [[], [], [], []]
    pieces: list[str] = []
    end = -1
    for match in _NUMBER.finditer(view):
        joined = 0 <= match.start() - end <= 3 and _NUMBER_GAP.fullmatch(view, end, match.start())
        for values, value in zip(lists, _readings(match)):
            if value is None or not joined:
                _end_list(values, pieces)
            if value is not None:
                values.append(value)
        end = match.end()
    for values in lists:
        _end_list(values, pieces)
    return pieces


def _offset_reading(data: bytes) -> str:
    """A run read from past its first character, as text: whole when it is UTF-8, else its runs of ASCII text
    (UTF-16's NULs and all). Read at the wrong offset a run is random bytes, of which these runs are about 5%: the
    offsets cost the views budget little more than the first reading does."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "\n".join(_TEXT_RUN.findall(data.decode("latin-1")))


class _Reading(NamedTuple):
    """One reading of an encoded run: the run (as its alphabet reads it), the character offset it was read from,
    the bytes read there, and their character set (None: UTF-8, else Latin-1)."""

    run: str
    offset: int
    data: bytes
    charset: str | None = None

    def text(self, *, whole: bool = False) -> str:
        """The bytes as text: past the run's first character (unless `whole`) only their runs of ASCII text, unless
        they are UTF-8 (`_offset_reading`)."""
        if self.charset is not None:
            text = self.data.decode(self.charset)
            return text if whole or not self.offset else "\n".join(_TEXT_RUN.findall(text))
        return _offset_reading(self.data) if self.offset and not whole else _as_text(self.data)


def _alphabet_runs(view: str) -> Iterator[_Reading]:
    """Hex, base32, base32hex and base64 runs (`_run_bytes`)."""
    for m in _BASE64_RUN.finditer(view):
        for offset, data, charset in _run_bytes(m.group()):
            yield _Reading(m.group(), offset, data, charset)


def _spaced_runs(view: str) -> Iterator[_Reading]:
    """Runs of the base64 alphabet broken by spaces or tabs (`dXNl cjpT M2Ny`, a run cut into groups), joined again
    from their first to their last group that is not a plain word or number, and past those over groups as long as
    their neighbour (a tool's groups are alike): the prose around them is left out, so the groups keep their
    alignment and their bytes are not followed by a reading of words. Read as `_alphabet_runs` are."""
    for m in _SPACED_RUN.finditer(view):
        groups = m.group().split()
        encoded = [i for i, group in enumerate(groups) if not _PLAIN_WORD.fullmatch(group.rstrip("="))]
        if not encoded:
            continue
        first, last = encoded[0], encoded[-1]
        while first and len(groups[first - 1]) == len(groups[first]):
            first -= 1
        while last + 1 < len(groups) and len(groups[last + 1]) == len(groups[last]):
            last += 1
        joined = "".join(groups[first:last + 1])
        if len(joined) >= 8:
            for offset, data, charset in _run_bytes(joined):
                yield _Reading(joined, offset, data, charset)


def _wrapped_runs(view: str) -> Iterator[_Reading]:
    """Runs of the base64 alphabet wrapped over lines shorter than a run `_alphabet_runs` reads (`JTUz\nJTMz\n…`),
    joined again and read as `_alphabet_runs` are."""
    for m in _WRAPPED_RUN.finditer(view):
        joined = "".join(m.group().split())
        for offset, data, charset in _run_bytes(joined):
            yield _Reading(joined, offset, data, charset)


def _base85_runs(view: str) -> Iterator[_Reading]:
    """Base85 runs, from each of their 5 character offsets (as base64 is from its 4)."""
    for m in _BASE85_RUN.finditer(view):
        if _BASE85_ONLY.search(m.group()):
            for k in range(5):
                try:
                    yield _Reading(m.group(), k, base64.b85decode(m.group()[k:]))
                except ValueError:  # a group past 2**32: not base85
                    pass


def _uu_end(view: str, start: int, limit: int) -> int | None:
    """Where the uuencoded line whose length character is at `start` ends, read no further than `limit`; None when
    it is shorter than its length says (past 2 trailing zero characters a tool may strip)."""
    need = (ord(view[start]) - 32 + 2) // 3 * 4
    end = _UU_BODY.match(view, start + 1, min(limit, start + 1 + need)).end()  # type: ignore[union-attr]
    return end if end - start - 1 >= need - 2 else None


def _uu_reading(view: str, start: int, end: int) -> _Reading:
    size = ord(view[start]) - 32
    body = view[start + 1:end]
    return _Reading(body, 0, binascii.a2b_base64(body.ljust((size + 2) // 3 * 4).translate(_UU_TO_BASE64))[:size])


def _uu_ends(view: str, end: int) -> bool:
    """Whether a line ends at `end`, past spaces (its padding; an excerpt folds a line break into one): at the
    text's end, a character no line holds (a line break, lower case), or another whole line (lines folded into
    one; a last line may be as short as one byte)."""
    after = _SPACES.match(view, end).end()  # type: ignore[union-attr]
    return (after == len(view) or not " " <= view[after] <= "`"
            or after > end and "!" <= view[after] <= "M" and _uu_end(view, after, len(view)) is not None)


def _uu_ended_lines(view: str) -> list[tuple[int, int]]:
    """(start, end) of the uuencoded lines that end where their length says (`_uu_ends`): every start is tried,
    and of two that overlap the later is kept, so a word that could start a line (`ERROR: M…`, `AUTH …`) and
    reads into one cannot take the line's length character."""
    found = array.array("q")
    for start in _UU_START.finditer(view):
        end = _uu_end(view, start.start(), len(view))
        if end is not None and _uu_ends(view, end):
            found.extend((start.start(), end))
    kept: list[tuple[int, int]] = []
    for i in range(len(found) - 2, -1, -2):
        if not kept or found[i + 1] <= kept[-1][0]:
            kept.append((found[i], found[i + 1]))
    return kept[::-1]


def _uu_lines(view: str) -> Iterator[_Reading]:
    """uuencoded lines (at a line start or after whitespace): a length character, then as many characters as that
    many bytes take (trailing zero characters may have been stripped). Those that end where their length says
    first (`_uu_ended_lines`); between them any other (cut short, or followed by more of its alphabet), each from
    the first start that makes one, read no further than the next of those. Each character is read at most once."""
    begin = 0
    for start, end in [*_uu_ended_lines(view), (len(view), len(view))]:
        pos = begin
        while (found := _UU_START.search(view, pos, start)) is not None:
            line_end = _uu_end(view, found.start(), start)
            pos = found.end() if line_end is None else line_end
            if line_end is not None:
                yield _uu_reading(view, found.start(), line_end)
        if start < len(view):
            yield _uu_reading(view, start, end)
        begin = end


_READERS: tuple[Callable[[str], Iterator[_Reading]], ...] = (_alphabet_runs, _spaced_runs, _wrapped_runs, _base85_runs,
                                                             _uu_lines)
"""Every encoded-run form `base_layer` decodes (number lists aside: `number_lists`)."""


def _run_readings(view: str) -> Iterator[_Reading]:
    for reader in _READERS:
        yield from reader(view)


def base_layer(view: str) -> str:
    """What the encoded runs (`_READERS`) and the number lists (`number_lists`) of `view` decode to, as text, one
    line per reading ('' when it holds none): a layer of encoding the scrubber then reads as it reads the server's
    text."""
    pieces = [reading.text() for reading in _run_readings(view)]
    pieces += number_lists(view)
    return "\n".join(piece for piece in pieces if piece)


def _not_text(piece: str) -> int:
    """How many characters of a decoded piece are not text: text is printable ASCII, whitespace, UTF-16's NULs and
    printable characters past Latin-1 (only valid UTF-8 gives those); 39% of random bytes are."""
    return sum(not (c.isspace() or c == "\0" or c.isprintable() and (c.isascii() or ord(c) > 0xFF)) for c in piece)


def _reads_as_text(piece: str) -> bool:
    """Whether a decoded piece is text: at least 6 characters, all text; 6 random bytes are with a probability of
    (100/256)^6 = 0.4%."""
    return len(piece) >= 6 and not _not_text(piece)


def _still_decodes(view: str) -> bool:
    """Whether a view DECODE_ROUNDS layers deep holds another layer: an escape in a line of 8 characters or more
    that is mostly text (the views below it are lines of decoded runs, mostly random bytes, where `\\f` or `=E8`
    occurs by chance), or a run or number list that reads as text (`_reads_as_text`), the run not an ordinary word
    (`_WORD`: prose reads as base64 and base32, into bytes that are rarely text, but a page holds many words)."""
    return (any(len(line) >= 8 and 4 * _not_text(line) <= len(line) and decode_once(line) != line
                for line in view.splitlines(keepends=True))
            or any(not _WORD.fullmatch(r.run) and _reads_as_text(r.text(whole=True)) for r in _run_readings(view))
            or any(map(_reads_as_text, number_lists(view))))


def decoded_views(text: str) -> Iterator[str]:
    """`text`, then each distinct view of it with one more layer undone (`decode_once`, `base_layer`), up to
    DECODE_ROUNDS layers deep: depth first, so at most two views a layer are held. Lone surrogates become U+FFFD.
    TooLayered once the views yielded would pass LAYER_BUDGET times the text's length, or a view DECODE_ROUNDS
    layers deep still decodes (`_still_decodes`)."""
    text = _LONE_SURROGATE.sub("\ufffd", text)
    budget = LAYER_BUDGET * len(text) + LAYER_SLACK
    seen: set[int] = set()
    pending = [(text, 0)]
    while pending:
        view, depth = pending.pop()
        yield view
        if depth == DECODE_ROUNDS:
            if _still_decodes(view):  # a layer left that is not checked: it may hide anything
                raise TooLayered
            continue
        for child in (base_layer(view), decode_once(view)):
            if child and child != view and hash(child) not in seen:
                budget -= len(child)
                if budget < 0:
                    raise TooLayered
                seen.add(hash(child))
                pending.append((child, depth + 1))


def compact(view: str) -> str:
    """`view` without whitespace, control or invisible characters: base64 wrapped at line breaks joined again."""
    return view.translate(_LAYOUT)


def alnum(folded_view: str) -> str:
    """A folded view with only its letters and digits: a secret spelled out with any separator between its
    characters (`p-a-s-s`, `p.a.s.s`) reads as it."""
    return _NOT_ALNUM.sub("", folded_view)


class _Compatibility(dict):
    """A str.translate table to each character's NFKC form where that is one other character (full-width,
    mathematical, circled and superscript letters and digits): never longer than the text, unlike NFKC itself
    (up to 18 characters for one). Filled as characters are met: one entry per distinct character."""

    def __missing__(self, code: int) -> int:
        normal = unicodedata.normalize("NFKC", chr(code))
        self[code] = ord(normal) if len(normal) == 1 else code
        return self[code]


_COMPATIBILITY = _Compatibility()


def folded(compact_view: str) -> str:
    """A compact view without `+` (a form-encoded space), its compatibility characters as their NFKC forms
    (`Ｒｅｇ`, `𝐑𝐞𝐠`), case-folded: what a secret's own characters are searched in, however a server spaced,
    wrapped, cased or styled them, and its hex and base32 forms (either case)."""
    view = compact_view if compact_view.isascii() else compact_view.translate(_COMPATIBILITY)
    return view.replace("+", "").casefold()
