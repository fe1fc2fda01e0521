"""Echoes a server may make of a password that the scrubber withholds because it decodes the server's text first
(nested and mixed escapes, quoted-printable, line-wrapped base64, spacing and case) or knows the secret's own
encodings (base85, base64 of its UTF-16 and Latin-1 bytes), and how much of a secret withholds a text
(`fragment_len`). Every form is made by a library that writes it, not by the scrubber's own code."""
from __future__ import annotations

import base64
import concurrent.futures
import html
import json
import quopri
import sys
from typing import Callable
from urllib.parse import quote, quote_plus

import pytest

from registryclient import Scrubber, excerpt_text
from registryclient.scrub import FRAGMENT_MIN, SCRUB_FRAGMENT, WITHHELD, fragment_len
from registryclient.textviews import DECODE_ROUNDS, decode_once

USER = "deployer"
PASSWORDS = ["Zx9+/q=Rt7!kLm", "Pässwörd-2024x", "hunter22 pass", "correct-horse-battery", "a&b<c>\"d'e\\f%g"]


def _pct(text: str, times: int) -> str:
    for _ in range(times):
        text = quote(text, safe="")
    return text


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


FORMS: dict[str, Callable[[str], str]] = {
    "percent-encoded twice": lambda pw: _pct(pw, 2),
    "percent-encoded four times": lambda pw: _pct(pw, DECODE_ROUNDS),
    "form-encoded then percent-encoded": lambda pw: quote(quote_plus(pw), safe=""),
    "quoted-printable": lambda pw: quopri.encodestring(pw.encode()).decode(),
    "quoted-printable, every byte": lambda pw: quopri.encodestring(pw.encode(), quotetabs=True).decode()
    .replace(pw[0], f"={ord(pw[0]):02X}"),
    "quoted-printable soft line breaks": lambda pw: "=\r\n".join(pw[i:i + 3] for i in range(0, len(pw), 3)),
    "HTML-escaped three times": lambda pw: html.escape(html.escape(html.escape(pw))),
    "HTML numeric entities in a URL": lambda pw: quote("".join(f"&#{ord(c)};" for c in pw), safe=""),
    "JSON inside JSON inside JSON": lambda pw: json.dumps(json.dumps(json.dumps({"p": pw}, ensure_ascii=True))),
    "JSON then percent-encoded": lambda pw: quote(json.dumps(pw, ensure_ascii=True), safe=""),
    "Python repr of its bytes": lambda pw: repr(pw.encode()),
    "upper case": str.upper,
    "swapped case": str.swapcase,
    "spaced out": " ".join,
    "broken by zero-width spaces": "\u200b".join,
    "wrapped over lines": lambda pw: "\r\n".join(pw[i:i + 5] for i in range(0, len(pw), 5)),
    "base64 of user:password wrapped (MIME)": lambda pw: base64.encodebytes(f"{USER}:{pw}".encode() * 3).decode(),
    "base64 of user:password broken every 10": lambda pw: "\n".join(
        _b64(f"{USER}:{pw}".encode())[i:i + 10] for i in range(0, len(_b64(f"{USER}:{pw}".encode())), 10)),
    "base64 percent-encoded": lambda pw: quote(_b64(f"{USER}:{pw}".encode()), safe=""),
    "base85": lambda pw: base64.b85encode(pw.encode()).decode(),
    "Ascii85 inside a longer text": lambda pw: base64.a85encode(b"key=" + pw.encode() + b";").decode(),
    "base85 of user:password": lambda pw: base64.b85encode(f"{USER}:{pw}".encode()).decode(),
    "base64 of UTF-16LE": lambda pw: _b64(pw.encode("utf-16-le")),
    "base64 of UTF-16 with a BOM, in a longer text": lambda pw: _b64(f"p={pw}".encode("utf-16")),
    "base64 of Latin-1": lambda pw: _b64(pw.encode("latin-1", "replace")),
    "hex of UTF-16BE": lambda pw: pw.encode("utf-16-be").hex(),
    "base32 of UTF-16LE": lambda pw: base64.b32encode(b"x" + pw.encode("utf-16-le")).decode(),
    "first half": lambda pw: pw[:(len(pw) + 1) // 2],
    "second half": lambda pw: pw[len(pw) // 2:],
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("password", PASSWORDS)
def test_an_echo_in_any_form_is_withheld(password: str, form: str) -> None:
    scrub = Scrubber()
    scrub.add(password, username=USER)
    echo = FORMS[form](password)
    assert scrub(f"error: bad credential {echo} for {USER}") == WITHHELD, echo
    assert excerpt_text(f'{{"message": "bad credential {echo}"}}'.encode(), scrub) == WITHHELD, echo


@pytest.mark.parametrize("password", PASSWORDS)
def test_an_echo_in_utf16_bytes_is_withheld_from_an_excerpt(password: str) -> None:
    """Bytes that are not UTF-8 reach the scrubber as \\xHH escapes (excerpt_text's backslashreplace)."""
    scrub = Scrubber()
    scrub.add(password, username=USER)
    for encoding in ("utf-16-le", "utf-16-be", "utf-16", "latin-1"):
        body = f"bad credential {password} for {USER}".encode(encoding, "replace")
        assert excerpt_text(body, scrub, limit=1000) == WITHHELD, encoding


@pytest.mark.parametrize("length", [4, 5, 8, 9, 10, 13, 14, 15, 16, 20, 32, 128, 1000])
def test_a_run_of_fragment_len_characters_withholds_a_text_and_a_shorter_one_does_not(length: int) -> None:
    """Half a secret, at least FRAGMENT_MIN and at most SCRUB_FRAGMENT characters; the longest run a message can
    show is one shorter, so no half of a secret of 10 characters or more is ever shown."""
    secret = ("Q7wZk2Rx9Lm4Tv8Np3Hs6Jd" * 50)[:length]
    size = fragment_len(length)
    assert size == min(length, max(FRAGMENT_MIN, min(SCRUB_FRAGMENT, length // 2)))
    scrub = Scrubber()
    scrub.add(secret)
    for start in range(0, length - size + 1, max(1, (length - size) // 7)):
        run = secret[start:start + size]
        assert scrub(f"token was ... {run.lower()} ...") == WITHHELD, run
        if size > 1:
            assert scrub(f"token was ... {run[:-1]} ...") != WITHHELD, run[:-1]
    if length >= 10:
        assert scrub(secret[:length // 2]) == scrub(secret[length - length // 2:]) == WITHHELD


ANSWERS = [
    '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}',
    "500 Internal Server Error",
    '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v1.2.3"}}]}',
    "<html><head><title>502 Bad Gateway</title></head><body><center>nginx</center></body></html>",
    'realm="https://auth.example.test/token",service="registry.example.test",scope="repository:acme/web:push"',
    "blob upload invalid: digest sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
]


@pytest.mark.parametrize("password", ["hunter22", "Kx9!mQ2#vLp8", *PASSWORDS])
@pytest.mark.parametrize("answer", ANSWERS)
def test_an_ordinary_answer_holding_no_part_of_the_password_is_shown(password: str, answer: str) -> None:
    scrub = Scrubber()
    scrub.add(password, username=USER)
    assert scrub(answer) == answer


def test_each_round_undoes_one_layer_of_each_escape_and_never_lengthens() -> None:
    layered = "%2526lt%253B%255Cu0041"  # percent twice, around an HTML entity and a JSON escape (undone in order)
    views = [layered]
    while (decoded := decode_once(views[-1])) != views[-1]:
        views.append(decoded)
    assert views[1:] == ["%26lt%3B%5Cu0041", "<A"]
    assert all(len(b) < len(a) for a, b in zip(views, views[1:]))
    assert decode_once("&#" + "9" * 5000 + ";") == "&#" + "9" * 5000 + ";"
    assert decode_once("\\ud83d\\ude00 %E4%B8%AD =C3=A4") == "\U0001F600 中 ä"


def test_a_secret_added_after_a_text_was_checked_is_found_too() -> None:
    # The forms are built when a text is first checked; a token issued later must be found in every form as well.
    scrub = Scrubber()
    scrub.add("first-password-1", username="user")
    assert scrub("an ordinary answer") == "an ordinary answer"
    token = "tok3n-issued-later-by-the-realm"
    scrub.add(token)
    assert scrub(base64.b64encode(f"x{token}y".encode()).decode()) == WITHHELD
    assert scrub(quote(token)) == WITHHELD
    assert scrub(base64.b64encode(b"user:first-password-1").decode()) == WITHHELD


def test_threads_checking_at_once_all_see_every_form() -> None:
    # Checks from several threads (a client's references run in parallel) never see half-built forms: switched
    # between as often as the interpreter can, so a thread that checks while another builds is the common case.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        _check_in_threads()
    finally:
        sys.setswitchinterval(interval)


def _check_in_threads() -> None:
    for _ in range(20):
        scrub = Scrubber()
        scrub.add("parallel-secret-9", username="user")
        echoed = base64.b32encode(b"user:parallel-secret-9").decode()
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            assert set(pool.map(lambda _: scrub(echoed), range(8))) == {WITHHELD}
