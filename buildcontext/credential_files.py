"""Credentials written in a tool's own syntax: whether a credential file the guard knows by name (.npmrc, .yarnrc,
auth.json, credentials, NuGet.Config, gradle.properties, ...) holds one, and whether a Java system property
(`-D...password=...`) carries one. Each rule reads its format (quoting, escapes, line continuations, attribute order)
to find the value, then judges it: empty, an environment reference or a placeholder holds no credential.

The patterns are the table in buildcontext/sensitive_rules.py; buildcontext/sensitive.py `scan_content` calls
`holds_credential` and `jvm_property_secret` on a `Window` of a file's bytes.
"""
from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from boundedjson import parse_json
from buildcontext.value_literals import literal_parts
from buildcontext.sensitive_rules import (
    ANONYMOUS_LOGINS, ANONYMOUS_PASSWORD_RE, ASSIGNMENT_MIN_VALUE, CODE_NAME_RE, EXAMPLE_VALUE_RE,
    NOT_A_QUOTED_VALUE_START, NOT_A_VALUE_START, PATH_VALUE_RE, TYPE_ANNOTATION_RE, WORD_LIKE_RE, BOOLEAN_VALUES, CAPS_PLACEHOLDER_RE, CARGO_SECRET_RE, COMPOSER_HEADERS_SECTION, COMPOSER_HEADER_RE,
    COMPOSER_JSON_LIMIT, COMPOSER_KEY_RE, COMPOSER_SECRET_KEYS, COMPOSER_SECTION_RE, COMPOSER_TOKEN_SECTIONS,
    GEM_SECRET_RE, GRADLE_OWN_PREFIX, GRADLE_PROPERTY_RE, GRADLE_SECRET_NAME_RE,
    JVM_PROPERTY_SECRET_RE, MAVEN_SECRET_RE, MYSQL_SECRET_RE, NETRC_ENTRY_RE, NETRC_KEYWORDS, NETRC_LOGIN_PAIR_RE,
    NETRC_SECRET_RE,
    NETRC_SPLIT_RE, NPMRC_SECRET_RE, NUGET_ADD_RE, NUGET_PASSWORD_KEY, PLACEHOLDER_RE, PROPERTIES_ESCAPE_RE,
    PYPIRC_SECRET_RE, REDIS_SECRET_RE, SCAN_OVERLAP, XML_ATTRIBUTE_RE,
    UNICODE_ESCAPE_RE, VERSION_RANGE_RE, YARNRC1_SECRET_RE, YARNRC_SECRET_RE)


@dataclass(frozen=True)
class Window:
    """The bytes a rule judges: a whole file, or one window of a chunked scan (SCAN_OVERLAP bytes of the window
    before it, then the new bytes), with whether the file goes on before (`cut_start`) and after (`cut_end`)."""

    data: bytes
    cut_start: bool = False
    cut_end: bool = False

    @property
    def whole(self) -> bool:
        return not (self.cut_start or self.cut_end)

    def matches(self, regex: re.Pattern[bytes]) -> Iterator[re.Match[bytes]]:
        """The matches of `regex` starting where this window decides them, so that each start is judged by exactly
        one window of a chunked scan: the next window re-reads this one's last SCAN_OVERLAP bytes, so it decides
        the starts after the first of them (with what follows them, which this window cannot see), and this one
        decides the earlier starts, whose matches of up to SCAN_OVERLAP bytes end inside it. A cut window's
        first byte is decided by the window before it, which sees what precedes it (a line start, a word edge)."""
        last_start = len(self.data) - SCAN_OVERLAP if self.cut_end else len(self.data)
        for m in regex.finditer(self.data, 1 if self.cut_start else 0):
            if m.start() > last_start:
                return
            yield m

    def decides(self, start: int) -> bool:
        """Whether a match starting at `start` is this window's to judge (as `matches` decides)."""
        return (start >= 1 if self.cut_start else start >= 0) and (
            not self.cut_end or start <= len(self.data) - SCAN_OVERLAP)


def _placeholder(part: bytes) -> bool:
    """A format placeholder, a mask or an ellipsis (sensitive_rules.PLACEHOLDER_RE), or an all-capitals placeholder
    (`YOUR_PASSWORD`, `TOKEN_HERE`, PASSWORD)."""
    return bool(PLACEHOLDER_RE.fullmatch(part) or CAPS_PLACEHOLDER_RE.fullmatch(part))


def stands_for_value(value: bytes) -> bool:
    """Whether a value only stands for a credential: a placeholder, or references (`${NPM_TOKEN}`, `$(cat ...)`,
    `"$TOKEN"`, `{{ token }}`, `${{ secrets.TOKEN }}`) with no literal beside or inside them that looks like a secret
    (buildcontext/value_literals.py; `${NAME:-dev}` stands for one, `${NAME:-S3cr3t9}` holds one). A value holding no
    reference is a literal, which the caller's rule judges."""
    value = value.strip()
    parts = literal_parts(value)
    if parts == [(value.replace(b'"', b"").replace(b"'", b""), False)]:
        return _placeholder(value)
    return not any(_literal_secret(part.strip(), inner, False) for part, inner in parts)


def _word_like(value: bytes) -> bool:
    """A word or a name in any script (letters, `_ . : / -`): a translation such as `Contraseña` or `密码` is text,
    not a secret. A value cut inside a UTF-8 character at the pattern's bound is judged by its whole characters."""
    if WORD_LIKE_RE.fullmatch(value):
        return True
    value = UNICODE_ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)).encode("utf-8", "surrogatepass"), value)
    for cut in range(4):  # a UTF-8 character is at most 4 bytes: at most 3 of a cut one remain
        try:
            text = value[:len(value) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return bool(text) and all(ch.isalpha() or ch in "_.:/-" for ch in text)
    return False


def looks_like_secret(value: bytes, quoted: bool = False, one_argument: bool = False) -> bool:
    """Whether an assigned value (`quoted`: written in quotes, where YAML's aliases, tags and comments are text)
    holds a literal that looks like a secret rather than a reference, a placeholder, code, a type, a path, a URL or
    a word (see sensitive_rules ASSIGNMENT_MIN_VALUE and below it): the text glued around its references, and each
    literal a reference holds (buildcontext/value_literals.py), judged alike. `one_argument`: a command's quoted
    argument, where a space is part of the value rather than a sign of prose."""
    return any(_literal_secret(part.strip(), quoted or inner, one_argument)
               for part, inner in literal_parts(value.strip()))


def _literal_secret(value: bytes, quoted: bool, one_argument: bool) -> bool:
    not_a_start = NOT_A_QUOTED_VALUE_START if quoted else NOT_A_VALUE_START
    if len(value) < ASSIGNMENT_MIN_VALUE or value[:1] in not_a_start or _placeholder(value):
        return False
    if (not one_argument and any(c in value for c in b" \t")) or _word_like(value) or EXAMPLE_VALUE_RE.search(value):
        return False  # prose (a quoted message), a word or a name, an example
    if VERSION_RANGE_RE.fullmatch(value):
        return False
    if not quoted and TYPE_ANNOTATION_RE.fullmatch(value):
        return False
    return not (CODE_NAME_RE.fullmatch(value) or PATH_VALUE_RE.fullmatch(value))


def _credential_value(value: bytes) -> bool:
    """A value that is a credential: not empty and not standing for one."""
    value = value.strip()
    return bool(value) and not stands_for_value(value)


def _yaml_secret(value: bytes) -> bool:
    """Whether a YAML scalar (as written after `key:`) is a value, not empty, null or a placeholder."""
    value = value.split(b" #", 1)[0].strip().strip(b"\"'")
    return bool(value) and value not in (b"null", b"~") and not stands_for_value(value)


def _yarn1_value(rest: bytes) -> bool:
    """Whether Yarn 1's value (the rest of the line after the key) is a credential: a quoted string's content, or a
    bare word up to a ` #` comment."""
    rest = rest.strip()
    if rest[:1] in (b'"', b"'"):
        value = rest[1:].split(rest[:1], 1)[0]
    else:
        value = re.split(rb"[ \t]#", rest, maxsplit=1)[0]
    return _credential_value(value)


def _json_string(raw: bytes, closed: bool) -> bytes:
    """A JSON string's content as written (without its quotes) with its escapes undone; as written when it is cut
    short or malformed."""
    if not closed:
        return raw
    try:
        # `raw` is a slice of a window already held: the bound is its own length
        return parse_json(b'"' + raw + b'"', limit=len(raw) + 2).encode("utf-8", "surrogatepass")
    except ValueError:
        return raw


def _composer_json(doc: object, key: str = "", section: str = "") -> bool:
    """Whether parsed auth.json holds a credential: a secret key's string anywhere, a token section's host string,
    a custom header's value."""
    if isinstance(doc, dict):
        return any(_composer_json(v, k, k if not section else section) for k, v in doc.items())
    if isinstance(doc, list):
        return any(_composer_json(v, key, section) for v in doc)
    if not isinstance(doc, str):
        return False
    value = doc.encode("utf-8", "surrogatepass")
    if section == COMPOSER_HEADERS_SECTION:
        return b":" in value and _credential_value(value.split(b":", 1)[1])
    return (key in COMPOSER_SECRET_KEYS or section in COMPOSER_TOKEN_SECTIONS) and _credential_value(value)


def _composer(window: Window) -> bool:
    if window.whole and len(window.data) <= COMPOSER_JSON_LIMIT:
        try:
            return _composer_json(parse_json(window.data, limit=COMPOSER_JSON_LIMIT))
        except ValueError:
            pass  # not JSON Composer could read, or nested deeper than it would be: judged by the patterns below
    for m in window.matches(COMPOSER_KEY_RE):
        key = _json_string(m.group(1), True).decode("utf-8", "replace")
        if key in COMPOSER_SECRET_KEYS and _credential_value(_json_string(m.group(2), bool(m.group(3)))):
            return True
    for regex in (COMPOSER_SECTION_RE, COMPOSER_HEADER_RE):
        if any(_credential_value(_json_string(m.group(1), bool(m.group(2)))) for m in window.matches(regex)):
            return True
    return False


def _toml_string(delimiter: bytes, rest: bytes) -> bytes:
    """A TOML string's content from its opening `delimiter` (the rest of the line after it), up to its closing one
    (or all of `rest` when it is not on the line)."""
    if delimiter in (b'"""', b"'''"):
        rest = rest.lstrip(b"\r\n")
    if delimiter == b'"':
        m = re.match(rb'(?:[^"\\]|\\.)*', rest)
        return m.group(0) if m else rest
    return rest.split(delimiter, 1)[0]


def _cargo(window: Window) -> bool:
    return any(_credential_value(_toml_string(m.group(1), m.group(2))) for m in window.matches(CARGO_SECRET_RE))


def _gem(window: Window) -> bool:
    return any(m.group(1) is not None and _yaml_secret(m.group(1)) for m in window.matches(GEM_SECRET_RE))


def _nuget(window: Window) -> bool:
    for m in window.matches(NUGET_ADD_RE):
        attributes = {a.group(1).lower(): html.unescape((a.group(2) if a.group(2) is not None else a.group(3))
                                                        .decode("utf-8", "replace"))
                      for a in XML_ATTRIBUTE_RE.finditer(m.group(1))}
        if (attributes.get(b"key", "").strip().lower() == NUGET_PASSWORD_KEY
                and _credential_value(attributes.get(b"value", "").encode("utf-8", "surrogatepass"))):
            return True
    return False


def _properties_text(raw: bytes) -> bytes:
    """A java.util.Properties key or value with its line continuations and `\\` escapes undone."""
    def one(m: re.Match[bytes]) -> bytes:
        escape = m.group(1)
        if escape is None:
            return b""  # a line continuation, with the next line's leading white space
        if len(escape) == 5:
            return chr(int(escape[1:], 16)).encode("utf-8", "surrogatepass")
        return {b"t": b"\t", b"n": b"\n", b"r": b"\r", b"f": b"\f"}.get(escape, escape)
    return PROPERTIES_ESCAPE_RE.sub(one, raw)


def _gradle(window: Window) -> bool:
    for m in window.matches(GRADLE_PROPERTY_RE):
        key = _properties_text(m.group(1)).decode("utf-8", "replace").lower()
        if key.startswith(GRADLE_OWN_PREFIX) or not GRADLE_SECRET_NAME_RE.search(key):
            continue
        value = _properties_text(m.group(2)).strip()
        if value.lower() not in BOOLEAN_VALUES and _credential_value(value):
            return True
    return False


def jvm_property_secret(window: Window) -> bool:
    """Whether a Java system property named for a password, token or secret (`-D...password=...`) has a value
    that is a credential (quotes and shell-escaped quotes taken off; a reference or placeholder is none). A quoted
    value holding white space is taken for source code building the property (`"-Dpassword=" + password`)."""
    for m in window.matches(JVM_PROPERTY_SECRET_RE):
        value = m.group(1).strip(b"\\\"'")
        if m.group(1)[:1] in (b'"', b"'", b"\\") and any(c in value for c in b" \t"):
            continue
        if _credential_value(value):
            return True
    return False


def netrc_entry_secret(window: Window) -> bool:
    """Whether a netrc entry (`machine HOST login USER password VALUE`, in any file) gives a password that is a
    credential (`_netrc_value`)."""
    for m in window.matches(NETRC_ENTRY_RE):
        pairs = NETRC_SPLIT_RE.split(m.group(1))
        logins = [pairs[i + 1] for i in range(len(pairs) - 1) if pairs[i] == b"login"]
        if (m.group(3) is not None or logins) and _netrc_value(m.group(2), logins[-1] if logins else None):
            return True
    return False


def _netrc_file_secret(window: Window) -> bool:
    """Whether a .netrc's `password VALUE` is a credential, judged with its entry's login (the last `login USER`
    since the entry's `machine`). One pass: the entry start and the logins are carried forward from password to
    password, never read back, so a file of many passwords costs no more than its length."""
    data = window.data
    logins = NETRC_LOGIN_PAIR_RE.finditer(data)
    login = next(logins, None)
    last_login: re.Match[bytes] | None = None
    entry, searched = -1, 0
    for m in NETRC_SECRET_RE.finditer(data, 1 if window.cut_start else 0):
        start = max(searched - len(b"machine") + 1, 0)  # a keyword straddling the last search end is new
        entry = max(entry, data.rfind(b"machine", start, m.start()), data.rfind(b"default", start, m.start()))
        searched = m.start()
        while login is not None and login.end(1) <= m.start():
            last_login, login = login, next(logins, None)
        user = last_login.group(1) if last_login is not None and last_login.start() >= entry else None
        if login is not None and entry <= login.start() and login.end() < m.start():
            user = b""  # `login` right before `password`: an empty user, as netrc reads it
        if _judges_password(window, entry, m) and _netrc_value(m.group(1), user):
            return True
    return False


def _judges_password(window: Window, entry: int, m: re.Match[bytes]) -> bool:
    """Whether this window judges the password `m` of the entry starting at `entry` (-1: before the window), so
    that exactly one window of a chunked scan does, and the one that sees the entry's login when any does: the
    window deciding the entry's start, if the password ends inside it; else the first window the password ends
    inside (the one before it saw it whole when it ends inside the overlap)."""
    if window.cut_end and m.end() >= len(window.data):
        return False  # the value may go on past the window: the next one sees it whole
    if entry >= (1 if window.cut_start else 0):
        return window.decides(entry)
    return not (window.cut_start and m.end() < SCAN_OVERLAP)


def _netrc_value(raw: bytes, login: bytes | None) -> bool:
    """Whether a netrc password as read (up to white space) is a credential, judged as an assigned value is
    (looks_like_secret): written inside a shell string it ends at printf's `\\n` or the string's closing quote;
    another netrc keyword is an entry cut short; an anonymous login's e-mail address is none. `login`: the entry's
    login before the password, if any."""
    value = raw.split(b"\\n", 1)[0].rstrip(b"\"'")
    if login is not None and anonymous_login(login, value):
        return False
    quoted = raw[:1] in (b'"', b"'") and raw[-1:] == raw[:1] and len(raw) > 1
    return value not in NETRC_KEYWORDS and looks_like_secret(value.strip(b"\"'"), quoted, one_argument=quoted)


def anonymous_login(login: bytes, password: bytes) -> bool:
    """Whether `login` is the anonymous FTP one (`anonymous`, `ftp`) with the password convention gives it (an e-mail
    address, a bare `user@`, a login word: sensitive_rules.ANONYMOUS_PASSWORD_RE), which is no credential."""
    return login.lower() in ANONYMOUS_LOGINS and ANONYMOUS_PASSWORD_RE.fullmatch(password) is not None


# The content rule of each credential file kind: whether the window holds a credential.
_CREDENTIAL_FILE_RULES: dict[str, Callable[[Window], bool]] = {
    "npm": lambda w: any(_credential_value(m.group(1).strip(b"\"'")) for m in w.matches(NPMRC_SECRET_RE)),
    "pypi": lambda w: any(_yarn1_value(m.group(1)) for m in w.matches(PYPIRC_SECRET_RE)),
    "netrc": _netrc_file_secret,
    "yarn": lambda w: any(_yaml_secret(m.group(1)) for m in w.matches(YARNRC_SECRET_RE)),
    "maven": lambda w: any(True for _ in w.matches(MAVEN_SECRET_RE)),
    "yarn1": lambda w: any(_yarn1_value(m.group(2)) for m in w.matches(YARNRC1_SECRET_RE)),
    "composer": _composer,
    "gem-or-cargo": lambda w: _gem(w) or _cargo(w),
    "cargo": _cargo,
    "nuget": _nuget,
    "gradle": _gradle,
    "mysql": lambda w: any(_yarn1_value(m.group(1)) for m in w.matches(MYSQL_SECRET_RE)),
    "redis": lambda w: any(_yarn1_value(m.group(1)) for m in w.matches(REDIS_SECRET_RE)),
    "terraform": _cargo,  # HCL's `token = "..."` in a credentials block reads as Cargo's TOML does
}


def holds_credential(kind: str, window: Window) -> bool:
    """Whether a credential file of `kind` (a value of sensitive_rules.CREDENTIAL_FILES) holds a credential."""
    return _CREDENTIAL_FILE_RULES[kind](window)
