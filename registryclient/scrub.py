"""Secret scrubbing: what a message may show of text a server sent.

`Scrubber` finds every form a credential can take in text: raw or escaped (percent, form, HTML, JSON), encoded
(`textviews`' readers: hex, base32, base64, base85, uuencode, EBCDIC hex; byte and code point lists) or both, nested
(`textviews`' decoded views); however spaced, wrapped, separated, cased, styled (NFKC), rotated (rot13, rot47) or
reversed; base64, base85, hex and base32 of any text holding
it (UTF-8, UTF-16, UTF-32, Latin-1 or EBCDIC); a run of half of it (`fragment_len`). A text holding one, or too deeply
encoded to check, is withheld whole (WITHHELD), never masked in place; Bearer and Basic header values are masked in
place. `excerpt_text` makes a short, printable, escaped excerpt of such a text. The program's own words are never
scrubbed. The escaped forms of secrets up to
ENCODED_FORMS_MAX characters are also RE2 patterns (Python's `re` backtracks polynomially on a secret with runs of
spaces or backslashes against a text a server chose); every other form is literal text searched in Python, so no
pattern can outgrow RE2 (which writes to stderr when one does). Time and memory are linear in the text."""
from __future__ import annotations

import base64
import html.entities
import itertools
import re
from typing import Any, Callable

import re2

from buildcontext.printable import escaped
from registryclient.textviews import TooLayered, alnum, compact, decoded_views, folded

EXCERPT_CHARS = 200
MASK = "***"
WITHHELD = "(withheld: it held a credential or part of one, or was encoded too deeply to check)"
"""What a message shows instead of a text holding a secret: the same whatever the secret and wherever it was."""
# The shortest secret looked for in a server's text: shorter "secrets" occur in ordinary words, so nearly every text
# would be withheld. Settings
# refuse shorter registry passwords (ACR's are 8-32 characters; the local edition's LOCAL_PASSWORD_MIN is this).
MIN_SCRUB_LEN = 4

_HEADER_CREDENTIAL = re.compile(r"\b(Bearer|Basic)(\s+|%20|\+)[A-Za-z0-9._~+/=%-]{4,}", re.IGNORECASE)


_JSON_SHORT = {'"': '"', "\\": "", "/": "/", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}
"""JSON's two-character escapes, after the backslash."""
SCRUB_FRAGMENT = 8
"""A run this long of a secret withholds a text (a token cut short, or shown in part, leaks); shorter secrets'
runs of half their length do (`fragment_len`)."""
FRAGMENT_MIN = 5
"""The shortest run of a longer secret that withholds a text (`fragment_len`)."""
ENCODED_FORMS_MAX = 128
"""Secrets up to this long are matched in every encoding as RE2 patterns (passwords: ACR's are at most 32
characters): the pattern of a longer one could outgrow RE2's memory, and RE2 then writes to stderr (the start of the
pattern, i.e. of the secret) before failing. A longer secret (a token) is masked as literal text, its base64, hex,
base32 and UTF-16 forms, and its runs, in plain Python."""
SECRET_MAX = 16384
"""The longest secret the scrubber takes (a configured password is held to settings' bound, far below; a token
service's token longer than this is refused): its masks are built per character."""
B64_CORE_MIN = 6
"""The shortest base64 run (of a secret at some byte offset) masked inside a longer base64 token: shorter runs occur
in ordinary words."""


_WIDE_ENCODINGS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
_EBCDIC = ("cp037", "cp500")
"""EBCDIC code pages (US and international): their letters and digits are alike, some punctuation differs."""
_ROT13 = str.maketrans("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                       "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM")
_ROT47 = str.maketrans("".join(map(chr, range(33, 127))), "".join(chr(33 + (c - 33 + 47) % 94) for c in range(33, 127)))


def _char_forms(ch: str) -> str:
    """A regex for one character of a secret in any encoding a server may echo it in: itself, percent-encoded
    (either case), `+` for a space (form encoding), an HTML entity (named, decimal or hex) and a JSON escape."""
    data = ch.encode()
    forms = [re2.escape(ch), "(?i:" + "".join(f"%{b:02x}" for b in data) + ")"]
    # HTML entities, also escaped again (&amp;lt;: a page quoting an escaped body).
    amp = "&(?:amp;)*"
    name = html.entities.codepoint2name.get(ord(ch))
    if name:
        forms.append(f"{amp}{name};")
    forms += [f"{amp}#0*{ord(ch)};", f"(?i:{amp}#x0*{ord(ch):x};)"]
    if ch == "'":
        forms.append(f"{amp}apos;")
    # JSON escapes with any run of backslashes: JSON inside JSON (a body quoted in an error message) doubles them.
    if ch in _JSON_SHORT:
        forms.append(r"\\+" + re2.escape(_JSON_SHORT[ch]))
    units = [ord(ch)] if ord(ch) < 0x10000 else [0xD800 + ((ord(ch) - 0x10000) >> 10), 0xDC00 + (ord(ch) & 0x3FF)]
    forms.append("(?i:" + "".join(rf"\\+u{u:04x}" for u in units) + ")")
    return "(?:" + "|".join(forms) + ")"


def _secret_pattern(secret: str) -> str:
    """A regex for `secret` with each character in any of its forms (`_char_forms`). A run of whitespace is one
    repeated group that takes any whitespace or `+` as well (excerpts fold whitespace runs; form encoding writes +
    for a space): a single quantifier per run, so a long run of spaces in a body cannot make the match backtrack
    polynomially (the whole pattern runs on RE2, linear in the text anyway)."""
    parts: list[str] = []
    for is_space, run in itertools.groupby(secret, key=str.isspace):
        chars = "".join(run)
        if is_space:
            parts.append("(?:" + "|".join([r"\s", r"\+"] + [_char_forms(ch) for ch in sorted(set(chars))]) + ")+")
        else:
            parts += [_char_forms(ch) for ch in chars]
    return "".join(parts)


def _base64_cores(data: bytes) -> set[str]:
    """The base64 characters that depend on `data` alone, at each of the three byte offsets `data` can sit at inside
    a longer string, in the standard and the URL-safe alphabet: whatever surrounds it, its base64 holds these."""
    cores: set[str] = set()
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode()
        core = encoded[(8 * k + 5) // 6:(8 * (k + len(data))) // 6]
        cores |= {core, core.translate(str.maketrans("+/", "-_"))}
    return cores


def _base32_cores(data: bytes) -> set[str]:
    """The base32 characters that depend on `data` alone, at each of the five byte offsets it can sit at inside a
    longer string (as `_base64_cores` does for base64)."""
    cores = set()
    for k in range(5):
        encoded = base64.b32encode(b"\0" * k + data).decode()
        cores.add(encoded[(8 * k + 4) // 5:(8 * (k + len(data))) // 5])
    return cores


def _base85_cores(data: bytes) -> set[str]:
    """The base85 and Ascii85 groups that depend on `data` alone: its whole 4-byte groups from each of the four
    offsets a group can start at."""
    cores = set()
    for start in range(4):
        whole = data[start:start + (len(data) - start) // 4 * 4]
        if whole:
            cores |= {base64.b85encode(whole).decode(), base64.a85encode(whole).decode()}
    return cores


def _byte_forms(secret: str) -> list[bytes]:
    """The bytes a server may hold `secret` as: UTF-8, UTF-16 and UTF-32 in either byte order, Latin-1 and EBCDIC
    (cp037, cp500) where it differs."""
    forms = [secret.encode()] + [secret.encode(encoding, "surrogatepass") for encoding in _WIDE_ENCODINGS]
    for encoding in ("latin-1", *_EBCDIC):
        try:
            forms.append(secret.encode(encoding))
        except UnicodeEncodeError:
            pass
    return list(dict.fromkeys(forms))


def fragment_len(canonical_len: int) -> int:
    """The shortest run of a secret's characters (case-folded, layout removed) that withholds a text: half the
    secret, so no message shows half of a password of 10 characters or more; at least FRAGMENT_MIN, as a run of 4
    occurs in too many words ('nter' of 'hunter22' in 'Internal Server Error') for every server text holding one to
    be withheld; at most SCRUB_FRAGMENT, the length a long token's runs are looked for at; never more than the
    secret. A shorter run would withhold more innocent text: a false positive only withholds a server's text, never
    the program's own words."""
    return min(canonical_len, max(FRAGMENT_MIN, min(SCRUB_FRAGMENT, canonical_len // 2)))


def _add_runs(runs: dict[int, set[str]], canonical: str) -> None:
    """Add the runs of `fragment_len` characters of `canonical`, and of it reversed (a secret spelled backwards)."""
    size = fragment_len(len(canonical))
    for text in (canonical, canonical[::-1]):
        runs.setdefault(size, set()).update(text[i:i + size] for i in range(len(text) - size + 1))


def _holds_run(canonical: str, runs: dict[int, set[str]]) -> bool:
    return any(any(map(found.__contains__, (canonical[i:i + size] for i in range(len(canonical) - size + 1))))
               for size, found in runs.items())


class Scrubber:
    """Finds every form a credential can take in text: raw; percent-encoded in either case, `+` for space, HTML- and
    JSON-escaped, in any mixture; the same under up to DECODE_ROUNDS nested layers of percent, quoted-printable,
    HTML and JSON escapes, hex, base32, base64 and base85 runs and byte lists (`textviews`); base64 (either
    alphabet, padded or not, wrapped or not), base85, Ascii85,
    hex (either case) and base32 of any string holding it (such as user:password) as UTF-8, UTF-16 or Latin-1; any
    run of `fragment_len` of its characters (or of its letters and digits alone), forwards or reversed, however
    spaced, separated, wrapped or cased. Calling it withholds a text holding
    one and masks any `Bearer …` / `Basic …` header value a server echoes back. The forms are built from the secret
    itself, not from a list of encoders."""

    def __init__(self) -> None:
        self._patterns: list[str] = []
        self._raw: set[str] = set()
        """Searched in each decoded view: UTF-16 read as Latin-1 text (NULs and all)."""
        self._compact: set[str] = set()
        """Searched in each view's `compact` form: base64 and base85 (case matters)."""
        self._folded: set[str] = set()
        """Searched in each view's `folded` form: hex and base32 in lower case."""
        self._runs: dict[int, set[str]] = {}
        """Runs of `fragment_len` characters of each secret (folded), forwards and reversed, by length."""
        self._alnum_runs: dict[int, set[str]] = {}
        """The same of each secret's letters and digits, searched in each view's letters and digits."""
        self._regex: Any = None  # re2 patterns

    def add(self, secret: str | None, *, username: str | None = None) -> None:
        """Find `secret` (with `username`: also the Basic credential `username:secret`) from now on. ValueError for a
        secret longer than SECRET_MAX (the caller says which setting or answer it was)."""
        if not secret or len(secret) < MIN_SCRUB_LEN:
            return
        if len(secret) > SECRET_MAX:
            raise ValueError(f"a secret longer than {SECRET_MAX} characters cannot be masked")
        if len(secret) <= ENCODED_FORMS_MAX:
            self._patterns.append(_secret_pattern(secret))
        texts = _byte_forms(secret) + ([f"{username}:{secret}".encode()] if username is not None else [])
        for text in texts:
            self._folded |= {text.hex()} | {core.lower() for core in _base32_cores(text) if len(core) >= B64_CORE_MIN}
            self._compact |= {core for core in _base64_cores(text) if len(core) >= B64_CORE_MIN}
            self._compact |= _base85_cores(text)
        self._raw |= {secret.encode(encoding, "surrogatepass").decode("latin-1") for encoding in _WIDE_ENCODINGS}
        # A short secret's base64 runs are too short to look for inside any token: its whole base64 token is looked for.
        data = secret.encode()
        whole = {base64.b64encode(data if username is None else f"{username}:{secret}".encode()).decode().rstrip("=")}
        self._compact |= whole | {w.translate(str.maketrans("+/", "-_")) for w in whole}
        # Its characters rotated (rot13: letters; rot47: every visible ASCII character) are runs of it too: a
        # rotation is read in every view as the secret itself is, at no cost to the views.
        for rotated in (secret, secret.translate(_ROT13), secret.translate(_ROT47)):
            canonical = folded(compact(rotated))
            if len(canonical) >= MIN_SCRUB_LEN:
                _add_runs(self._runs, canonical)
        # Its letters and digits alone (and rot13's), when there are enough of them to mean something (a run of
        # FRAGMENT_MIN): fewer occur in ordinary words once a text's separators are dropped.
        for rotated in (secret, secret.translate(_ROT13)):
            if len(alnum(folded(compact(rotated)))) >= FRAGMENT_MIN:
                _add_runs(self._alnum_runs, alnum(folded(compact(rotated))))
        self._regex = None

    def holds_secret(self, text: str) -> bool:
        """Whether any form of any secret added occurs in `text` (the header values a server echoes aside), or
        `text` is too deeply encoded to tell (`TooLayered`: it is withheld as one holding a secret is)."""
        if self._patterns and self._regex is None:
            self._regex = re2.compile("|".join(self._patterns))
        if not (self._patterns or self._raw):
            return False
        try:
            return any(self._in_view(view) for view in decoded_views(text))
        except TooLayered:
            return True

    def _in_view(self, view: str) -> bool:
        if self._regex is not None and self._regex.search(view):
            return True
        if any(form in view for form in self._raw):
            return True
        packed = compact(view)
        if any(form in packed for form in self._compact):
            return True
        canonical = folded(packed)
        return (any(form in canonical for form in self._folded) or _holds_run(canonical, self._runs)
                or _holds_run(alnum(canonical), self._alnum_runs))

    def __call__(self, text: str) -> str:
        """`text` as a message may show it: WITHHELD when it holds a secret in any form (masking it in place would
        leave its position, length and surroundings, and a weak password is guessed from those: `{"***":...}`),
        else the text with every `Bearer …` / `Basic …` header value masked in place (no configured secret, as
        the check before found none: whatever it was, the words around it say nothing of a password)."""
        if self.holds_secret(text):
            return WITHHELD
        return _HEADER_CREDENTIAL.sub(lambda m: f"{m.group(1)} {MASK}", text)


def excerpt_text(data: bytes | str, scrub: Callable[[str], str] = lambda t: t, limit: int = EXCERPT_CHARS) -> str:
    """A short, printable, escaped excerpt of what a server sent: whitespace runs folded to one space, every
    control or non-printable character shown as an escape (so no terminal sequence passes); WITHHELD when the
    whole text holds a secret (wherever it is, shown or not), header values masked."""
    text = data.decode("utf-8", errors="backslashreplace") if isinstance(data, bytes) else data
    # Scrubbed before and after folding: a secret holding a run of whitespace would not match once folded.
    text = scrub(" ".join(scrub(text).split()))
    shown = escaped(text[: limit * 2])
    if len(shown) > limit or len(text) > limit * 2:
        shown = shown[:limit] + "..."
    return shown or "(empty body)"

