"""Secrets assigned a value in any text: a key whose last word names a secret (`password`, `DB_PASSWORD`,
`spring.datasource.password`, `_authToken`, `AccountKey`, `client_secret`, `api-key`) given a value that looks like
one, in the forms config files, scripts and code write it: `key=value`, `key: value`, `key := value`,
`'key' => 'value'`, JSON's `"key": "value"`, `define('KEY', 'value')`, `--key value`, `<key>value</key>`, `<property name="key" value="value"/>`.

What a value must look like is the table in buildcontext/sensitive_rules.py (ASSIGNMENT_*): a literal, once its
references are taken out (buildcontext/value_literals.py: a value is read again past a reference's brackets), that is
not a placeholder, code, a path, a URL or a word. `auth` must hold base64 of
`user:password` (Docker's and npm's form), `Authorization` an HTTP scheme and its credentials. The search starts
from the roots of secret words (a fast substring search), so a text holding none costs one lower-casing.
"""
from __future__ import annotations

import base64
import binascii

from buildcontext.credential_files import Window, looks_like_secret, stands_for_value
from buildcontext.value_literals import holds_reference, read_value
from buildcontext.sensitive_rules import (
    ASSIGNMENT_GLUED, ASSIGNMENT_KEY_CHARS, ASSIGNMENT_VALUE_MAX, BARE_VALUE_END, ASSIGNMENT_KEY_MAX, ASSIGNMENT_PAIRS,
    ASSIGNMENT_ROOTS, ASSIGNMENT_TAIL_RE, ASSIGNMENT_WORDS, ATTRIBUTE_PAIR_RE, AUTH_WORD, AUTHORIZATION_VALUE_RE,
    AUTHORIZATION_WORD, COMMAND_LINE_PASSWORDS, CONCATENATED_ARGUMENT_RE, NAME_WORD, NOT_PASS, SOURCE_CODE_ENDINGS)


def _last_words(key: bytes) -> list[str]:
    return [w.lower() for w in NAME_WORD.findall(key.decode("ascii", "replace"))][-2:]


def _kind(key: bytes) -> str | None:
    """'secret' when the key's last word (or last two) names a secret, 'auth'/'authorization' for those two
    keys, else None."""
    words = _last_words(key)
    if not words:
        return None
    last = words[-1]
    if last in (AUTH_WORD, AUTHORIZATION_WORD):
        return last
    if last in ASSIGNMENT_WORDS or tuple(words) in ASSIGNMENT_PAIRS:
        return "secret"
    if last.endswith(ASSIGNMENT_GLUED) or (last.endswith(("pass", "pwd")) and last not in NOT_PASS):
        return "secret"
    return None


def _basic_credentials(value: bytes) -> bool:
    """Whether `value` is base64 of `user:password` (a value cut at the pattern's bound: of printable text)."""
    value = value.strip()
    body = value[:len(value) // 4 * 4]
    if len(body) < 8 or stands_for_value(value):
        return False
    try:
        text = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return False
    if not text or any(c < 0x20 or c > 0x7e for c in text):
        return False
    user, colon, password = text.partition(b":")
    return bool(user and colon and password) or len(value) >= 56


def _value_flag(key: bytes) -> bool:
    """Whether `key` is a command-line option taking its value as the next word (`--password VALUE`): `--secret`
    is left out, a switch in many tools (`pulumi config set --secret KEY VALUE`)."""
    return key.startswith(b"--") and _last_words(key)[-1:] != ["secret"]


def _key_start(data: bytes, end: int) -> int | None:
    """Where the key ending at `end` starts (after its opening quote, if any), or None when it runs longer than
    ASSIGNMENT_KEY_MAX."""
    start = end
    while start > 0 and data[start - 1] in ASSIGNMENT_KEY_CHARS:
        start -= 1
        if end - start > ASSIGNMENT_KEY_MAX:
            return None
    return start


def _judge(data: bytes, start: int, end: int, kind: str, code: bool) -> bool:
    """Whether the key data[start:end] of `kind` is assigned a secret by what follows it (`code`: in source code,
    where only a quoted value is a literal)."""
    m = ASSIGNMENT_TAIL_RE.match(data, end)
    if m is None:
        return False
    before = data[start - 1:start] if start else b""
    quote, separator, blanks = m.group(1), m.group(2), m.group(3)
    if quote and before != quote:
        return False
    if m.group(8) is not None:
        value = m.group(8) if before == b"<" and not quote else b""
    elif (separator == b"," and not (quote and m.group(5) is not None)) or (
            blanks and not _value_flag(data[start:end])):
        return False
    elif m.group(6) is not None:
        value = _reread(data, m.start(6), m.group(6), BARE_VALUE_END)
        after = data[m.start(6) + len(value):m.start(6) + len(value) + 1]
        value = b"" if code or after in (b"(", b"[") else value  # a call or an index: code
    else:
        value = _reread(data, m.start(5), m.group(5), m.group(4) + b"\r\n")
    if data[max(start - 2, 0):start] == b"${" and value[:1] == b"?":
        return False  # `${DB_PASSWORD:?must be set}`: the shell's (and compose's) error message, not a value
    if kind == AUTH_WORD:
        return _basic_credentials(value)
    if kind == AUTHORIZATION_WORD:
        rest = data[m.start(5) if m.group(5) is not None else m.start(6) if m.group(6) is not None else m.end():]
        scheme = AUTHORIZATION_VALUE_RE.match(rest[:64])
        return scheme is not None and looks_like_secret(scheme.group(1))
    return looks_like_secret(value, m.group(5) is not None)


def _reread(data: bytes, start: int, value: bytes, ends: bytes) -> bytes:
    """`value` (a pattern's bounded read from `start`), read again up to its end outside references when it may
    hold one: a reference's brackets may hold white space, quotes and separators (`${{ secrets.A || 'x' }}`)."""
    if not holds_reference(value):
        return value
    return read_value(data[start:start + ASSIGNMENT_VALUE_MAX], ends)


def _attribute_pairs(window: Window) -> bool:
    """Whether a name/value attribute pair names a secret and holds one."""
    return any(_kind(m.group(1)) == "secret" and looks_like_secret(m.group(2), True)
               for m in window.matches(ATTRIBUTE_PAIR_RE))


def assigns_secret(name: str, window: Window) -> bool:
    """Whether the window of the file named `name` (a basename; '' for the Dockerfile's text and build args)
    assigns a secret a value, each key judged by the one window that decides its start."""
    code = name.lower().endswith(SOURCE_CODE_ENDINGS)
    data = window.data
    lower = data.lower()
    judged: set[int] = set()
    for root in ASSIGNMENT_ROOTS:
        at = lower.find(root)
        while at >= 0:
            start = _key_start(data, at)
            end = at + len(root)
            while start is not None and end < len(data) and data[end] in ASSIGNMENT_KEY_CHARS:
                end += 1
                if end - start > ASSIGNMENT_KEY_MAX:
                    start = None
            at = lower.find(root, at + 1)
            if start is None or start in judged or not window.decides(start):
                continue
            judged.add(start)
            kind = _kind(data[start:end])
            if kind is not None and _judge(data, start, end, kind, code):
                return True
    return b"value" in lower and _attribute_pairs(window)


def command_line_password(name: str, window: Window) -> bool:
    """Whether a command is given a password on its command line (sensitive_rules.COMMAND_LINE_PASSWORDS), judged
    as an assigned value is: a reference, a placeholder or a word is none; quoted whole, it is one argument. In
    source code (by `name`) a quoted `" + pw + "` is code joining a variable on; elsewhere (a shell script, a
    Dockerfile) those quotes are part of the password."""
    code = name.lower().endswith(SOURCE_CODE_ENDINGS)
    for regex in COMMAND_LINE_PASSWORDS:
        for m in window.matches(regex):
            value = m.group(1)
            if value[:1] not in (b'"', b"'"):
                value = _reread(window.data, m.start(1), value, BARE_VALUE_END)
            quoted = value[:1] in (b'"', b"'")
            if code and quoted and CONCATENATED_ARGUMENT_RE.fullmatch(value, 1, len(value) - 1):
                continue  # `"docker login -p " + password + "..."`: the quote closes code's string at the option
            if looks_like_secret(value[1:-1] if quoted else value, quoted, one_argument=quoted):
                return True
    return False
