"""Secret scrubbing: what a message may show of text a server sent.

`Scrubber` finds every form a credential can take in text (raw, percent-, form-, HTML- and JSON-encoded, base64,
hex and base32 of any text holding it, UTF-16, a run of SCRUB_FRAGMENT of its characters); a text holding one is
withheld whole (WITHHELD), never masked in place, and Bearer and Basic header values are masked in place.
`excerpt_text` makes a short, printable, escaped excerpt of such a text. The program's own words are never
scrubbed. The forms of secrets up to ENCODED_FORMS_MAX characters are regular expressions run on RE2: a server
chooses the text they run over, and Python's `re` backtracks polynomially on a secret with runs of spaces or
backslashes against such text; longer secrets are literal text searched in Python, so no pattern can outgrow RE2
(which writes to stderr when one does)."""
from __future__ import annotations

import base64
import html.entities
import itertools
import re
from typing import Any, Callable

import re2

from buildcontext.printable import escaped

EXCERPT_CHARS = 200
MASK = "***"
WITHHELD = "(withheld: it contained a credential or part of one)"
"""What a message shows instead of a text holding a secret: the same whatever the secret and wherever it was."""
# The shortest secret looked for in a server's text: shorter "secrets" occur in ordinary words, so nearly every text
# would be withheld. Settings
# refuse shorter registry passwords (ACR's are 8-32 characters; the local edition's LOCAL_PASSWORD_MIN is this).
MIN_SCRUB_LEN = 4

_HEADER_CREDENTIAL = re.compile(r"\b(Bearer|Basic)(\s+|%20|\+)[A-Za-z0-9._~+/=%-]{4,}", re.IGNORECASE)


_JSON_SHORT = {'"': '"', "\\": "", "/": "/", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}
"""JSON's two-character escapes, after the backslash."""
SCRUB_FRAGMENT = 8
"""A run this long of a secret longer than it is masked on its own: a token cut short, or shown in part, leaks."""
ENCODED_FORMS_MAX = 128
"""Secrets up to this long are matched in every encoding as RE2 patterns (passwords: ACR's are at most 32
characters): the pattern of a longer one could outgrow RE2's memory, and RE2 then writes to stderr (the start of the
pattern, i.e. of the secret) before failing. A longer secret (a token) is masked as literal text, its base64, hex,
base32 and UTF-16 forms, and its fragments, in plain Python."""
SECRET_MAX = 16384
"""The longest secret the scrubber takes (a configured password is held to settings' bound, far below; a token
service's token longer than this is refused): its masks are built per character."""
B64_CORE_MIN = 6
"""The shortest base64 run (of a secret at some byte offset) masked inside a longer base64 token: shorter runs occur
in ordinary words."""


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


class Scrubber:
    """Finds every form a credential can take in text: raw; percent-encoded in either case, `+` for space, HTML- and
    JSON-escaped, in any mixture; base64 (either alphabet, padded or not), hex (either case) and base32 of any
    string holding it, such as user:password; UTF-16 (either byte order, as text decoded from bytes); any run of
    SCRUB_FRAGMENT characters of it (a token cut short). Calling it withholds a text holding one and masks any
    `Bearer …` / `Basic …` header value a server echoes back. The forms are built from the secret itself, not from a
    list of encoders."""

    def __init__(self) -> None:
        self._patterns: list[str] = []
        self._literals: set[str] = set()
        self._base64: set[str] = set()
        self._fragments: set[str] = set()
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
        else:
            # A token is opaque ASCII that percent, HTML and JSON encodings leave as it is: matched as itself.
            self._literals.add(secret)
        data = secret.encode()
        texts = [data] + ([f"{username}:{secret}".encode()] if username is not None else [])
        for text in texts:  # other encoders a server may echo with: hex, base32, UTF-16 (read as text, NULs and all)
            self._literals |= {text.hex(), text.hex().upper()}
            self._literals |= {form for core in _base32_cores(text) for form in (core, core.lower())
                               if len(core) >= B64_CORE_MIN}
            decoded = text.decode("utf-8", errors="replace")
            self._literals |= {decoded.encode("utf-16-le").decode("latin-1"),
                               decoded.encode("utf-16-be").decode("latin-1")}
        cores = {c for c in _base64_cores(data) if len(c) >= B64_CORE_MIN}
        # A short secret's base64 runs are too short to look for inside any token: its whole base64 token is looked for.
        whole = {base64.b64encode(data).decode().rstrip("=")} if username is None else set()
        if username is not None:
            whole.add(base64.b64encode(f"{username}:{secret}".encode()).decode().rstrip("="))
        self._base64 |= {c for c in cores | whole | {w.translate(str.maketrans("+/", "-_")) for w in whole}
                         if len(c) >= MIN_SCRUB_LEN}
        if len(secret) > SCRUB_FRAGMENT:
            self._fragments |= {secret[i:i + SCRUB_FRAGMENT] for i in range(len(secret) - SCRUB_FRAGMENT + 1)}
        self._regex = None

    def holds_secret(self, text: str) -> bool:
        """Whether any form of any secret added occurs in `text` (the header values a server echoes aside)."""
        if self._patterns:
            if self._regex is None:
                self._regex = re2.compile("|".join(self._patterns))
            if self._regex.search(text):
                return True
        if any(form in text for form in self._literals | self._base64):
            return True
        return bool(self._fragments) and any(
            text[i:i + SCRUB_FRAGMENT] in self._fragments for i in range(len(text) - SCRUB_FRAGMENT + 1))

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

