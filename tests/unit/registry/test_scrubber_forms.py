"""Echoes a server may make of a password that the scrubber withholds because it decodes the server's text first
(nested and mixed escapes, quoted-printable, line-wrapped base64, spacing and case) or knows the secret's own
encodings (base85, base64 of its UTF-16 and Latin-1 bytes), and how much of a secret withholds a text
(`fragment_len`). Every form is made by a library that writes it, not by the scrubber's own code."""
from __future__ import annotations

import base64
import binascii
import codecs
import html
import json
import quopri
import random
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


def _groups(text: str, size: int, separator: str = " ") -> str:
    return separator.join(text[i:i + size] for i in range(0, len(text), size))


def _rot47(text: str) -> str:
    return "".join(chr(33 + (ord(c) - 33 + 47) % 94) if "!" <= c <= "~" else c for c in text)


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
    "base64 of the percent-encoded password": lambda pw: _b64(quote(pw, safe="").encode()),
    "base64 of user:<percent-encoded password>": lambda pw: _b64(f"{USER}:{quote(pw, safe='')}".encode()),
    "base64 of base64": lambda pw: _b64(_b64(pw.encode()).encode()),
    "base64 of base64 of user:password, URL-safe": lambda pw: base64.urlsafe_b64encode(
        _b64(f"{USER}:{pw}".encode()).encode()).decode(),
    "hex of base64": lambda pw: _b64(pw.encode()).encode().hex(),
    "base32 of hex": lambda pw: base64.b32encode(pw.encode().hex().encode()).decode(),
    "base85 of base64": lambda pw: base64.b85encode(_b64(pw.encode()).encode()).decode(),
    "base64 of JSON-escaped": lambda pw: _b64(json.dumps({"p": pw}).encode()),
    "base64 of UTF-32": lambda pw: _b64(pw.encode("utf-32")),
    "base64 of UTF-32BE": lambda pw: _b64(pw.encode("utf-32-be")),
    "hex of UTF-32LE": lambda pw: pw.encode("utf-32-le").hex(),
    "reversed": lambda pw: pw[::-1],
    "first half reversed": lambda pw: pw[:(len(pw) + 1) // 2][::-1],
    "Go's %v of its bytes": lambda pw: "[" + " ".join(map(str, pw.encode())) + "]",
    "Node's JSON of a Buffer of user:password": lambda pw: json.dumps(
        {"type": "Buffer", "data": list(f"{USER}:{pw}".encode())}),
    "a C array of its bytes": lambda pw: "{" + ", ".join(f"0x{b:02x}" for b in pw.encode()) + "}",
    "colon-separated hex": lambda pw: ":".join(f"{b:02X}" for b in pw.encode()),
    "octal escapes": lambda pw: "".join(f"\\{b:03o}" for b in pw.encode()),
    "CSS escapes": lambda pw: "".join(f"\\{ord(c):x} " for c in pw),
    "braced unicode escapes": lambda pw: "".join(f"\\u{{{ord(c):x}}}" for c in pw),
    "base64 of its byte list": lambda pw: _b64(str(list(pw.encode())).encode()),
    "a byte list of its base64": lambda pw: str(list(_b64(pw.encode()).encode())),
    "base64 of user:password cut short, in groups of 4": lambda pw: _groups(_b64(f"{USER}:{pw}".encode())[:-8], 4),
    "base64 of user:password cut short, in groups of 6 by tabs": lambda pw: _groups(
        _b64(f"{USER}:{pw}".encode())[:-8], 6, "\t"),
    "base64 of the percent-encoded password in lines of 4": lambda pw: _groups(_b64(quote(pw, safe="").encode()), 4,
                                                                              "\n"),
    "base64 of user:<percent-encoded password> in CRLF lines of 3": lambda pw: _groups(
        _b64(f"{USER}:{quote(pw, safe='')}".encode()), 3, "\r\n"),
    "base64 of base64 of the password in lines of 6": lambda pw: _groups(_b64(_b64(pw.encode()).encode()), 6, "\n"),
    "code points U+XXXX": lambda pw: " ".join(f"U+{ord(c):04X}" for c in pw),
    "code points U+XX run together": lambda pw: "".join(f"U+{ord(c):X}" for c in pw),
    "Python \\U escapes": lambda pw: "".join(f"\\U{ord(c):08x}" for c in pw),
    "base32hex": lambda pw: base64.b32hexencode(pw.encode()).decode(),
    "base32hex of user:password, lower case, unpadded": lambda pw: base64.b32hexencode(
        f"{USER}:{pw}".encode()).decode().lower().rstrip("="),
    "uuencode": lambda pw: binascii.b2a_uu(pw.encode()).decode(),
    "uuencode of user:password, with backticks": lambda pw: binascii.b2a_uu(f"{USER}:{pw}".encode(),
                                                                             backtick=True).decode(),
    "EBCDIC (cp037) as hex": lambda pw: pw.encode("cp037").hex(),
    "EBCDIC (cp500) as hex, upper case": lambda pw: pw.encode("cp500").hex().upper(),
    "rot13": lambda pw: codecs.encode(pw, "rot13"),
    "rot13, first half": lambda pw: codecs.encode(pw[:(len(pw) + 1) // 2], "rot13"),
    "rot47": _rot47,
    "full-width (NFKC)": lambda pw: "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in pw),
    "mathematical bold letters (NFKC)": lambda pw: "".join(
        chr(0x1D400 + ord(c) - 65) if "A" <= c <= "Z" else chr(0x1D41A + ord(c) - 97) if "a" <= c <= "z"
        else chr(0x1D7CE + ord(c) - 48) if "0" <= c <= "9" else c for c in pw),
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
    # sizes, counts, ports, dates, addresses and lists of small integers: read as number lists, they spell nothing
    '{"size": 5242880, "layers": 12, "count": 3, "port": 5000, "created": "2026-12-08T01:12:18Z"}',
    "pushed 3 of 7 layers (12.5 MB of 48.2 MB) to 127.0.0.1:5000 and 10.0.0.12:443 at 2026-12-08 10:15:30",
    '{"ports":[80,443,5000,8080,9090],"retries":[1,2,3,4,5,6,7,8],"uid":[0,0,1000,1000],"mode":[4,2,0,7,5,5]}',
    "tags: [1 2 3 4 5 10 20 30 40 50], ipv6 fe80::1:2:3:4, mac 00:1a:2b:3c:4d:5e, version 1.2.3.4.5",
    # upper-case lines and words (read as uuencode, base32 and base32hex), mixed groups (read joined as base64),
    # code points, rot13 prose
    'M-SEARCH * HTTP/1.1 HOST: 239.255.255.250:1900 MAN: "ssdp:discover" MX: 3 ST: ssdp:all',
    "ERROR: TOO MANY REQUESTS FROM 10.0.0.12 (LIMIT 100/MIN); RETRY AFTER 60 SECONDS",
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ3Vl\n-----END CERTIFICATE-----",
    "%PDF-1.7 is not a manifest; GET /v2/ answered 415 UNSUPPORTED MEDIA TYPE",
    "build 7M2Q9T0R4K8V1P3L and DEADBEEF CAFEBABE 0A1B2C3D4E5F6G7H failed",
    "layers v1 v2 v3 sha256 abc123 def456 ghi789 jkl012 pushed by ci-runner-7 job 4242",
    "The quick brown fox jumps over the lazy dog: Uryyb Jbeyq, Gur Dhvpx Oebja Sbk (rot13 of Hello World)",
    "U+0041 LATIN CAPITAL LETTER A, U+00E9 and U+1F600 are code points",
    "upload 7 of 12: 4.2 MB/s, eta 00:00:03, chunk 5 of 9 (sizes 512 1024 2048 4096 8192)",
    # lines of one word each (read joined as base64)
    "Status:\nOK\nDONE\nv1\nRETRY\n500\nlayers\nabc123\ndef456\nsha256\npushed\n",
]


@pytest.mark.parametrize("password", ["hunter22", "Kx9!mQ2#vLp8", "Reg1stry-L0gin/Pw", *PASSWORDS])
@pytest.mark.parametrize("answer", ANSWERS)
def test_an_ordinary_answer_holding_no_part_of_the_password_is_shown(password: str, answer: str) -> None:
    scrub = Scrubber()
    scrub.add(password, username=USER)
    assert scrub(answer) == answer


SEPARATORS = ["-", ".", "_", ", ", "|", " - ", "\u00b7", "%2D"]


@pytest.mark.parametrize("separator", SEPARATORS)
@pytest.mark.parametrize("password", ["password", "Kx9!mQ2#vLp8", *PASSWORDS[:4]])
def test_half_of_its_letters_and_digits_spelled_out_with_separators_is_withheld(password: str,
                                                                               separator: str) -> None:
    """A secret's letters and digits are looked for in each view's letters and digits: half of them (as
    `fragment_len` counts), with anything between, withholds a text."""
    scrub = Scrubber()
    scrub.add(password, username=USER)
    letters = [c for c in password if c.isalnum()]
    for half in (letters[:(len(letters) + 1) // 2], letters[len(letters) // 2:]):
        assert scrub(f"error: the password starts {separator.join(half)} here") == WITHHELD, half


REGISTRY_ERRORS = [
    '{{"errors":[{{"code":"UNAUTHORIZED","message":"authentication required","detail":[{{"Type":"repository",'
    '"Class":"","Name":"acme/web","Action":"pull"}}]}}]}}',
    '{{"errors":[{{"code":"DENIED","message":"requested access to the resource is denied"}}]}}',
    '{{"errors":[{{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":[{{"Tag":"{digest}"}}]}}]}}',
    '{{"errors":[{{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"{digest}"}}]}}',
    '{{"errors":[{{"code":"NOT_FOUND","message":"artifact acme/web@{digest} not found"}}]}}',  # Harbor
    '{{"errors":[{{"code":"MANIFEST_UNKNOWN","message":"manifest {digest} is not found","detail":'
    '[{{"Name":"acme/web","Revision":"{digest}"}}]}}]}}',  # ACR
    '{{"errors":[{{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content",'
    '"detail":{{"Digest":"{digest}","Reason":"{b64}"}}}}]}}',
]


@pytest.mark.parametrize("password", ["hunter22", "password", "Kx9!mQ2#vLp8", "a1b2c3d4", *PASSWORDS])
def test_registry_errors_holding_random_digests_are_shown(password: str) -> None:
    """Each digest's 64 hex digits decode (as hex, from both nibble offsets) to 2 x 32 random bytes, and the base64
    field (from its 4 offsets) to 4 x 18: a run of a secret's 5 characters in them is about 120 places x 10 runs
    (forwards and reversed) x (2/256)^5 (case-folded Latin-1) = 4e-8 per answer; in their letters and digits 60
    places x 10 x (1/60)^5 = 8e-7; in the digits themselves, hex-only secrets aside, none. The readings past the
    first offset keep only their runs of ASCII text, fewer places still. 400 digests (seeded, so a failure repeats)
    and each answer shown whole."""
    rng = random.Random(password)
    scrub = Scrubber()
    scrub.add(password, username=USER)
    for template in REGISTRY_ERRORS:
        for _ in range(400 // len(REGISTRY_ERRORS)):
            answer = template.format(digest="sha256:" + rng.randbytes(32).hex(), b64=_b64(rng.randbytes(24)))
            assert scrub(answer) == answer


REVIEW_USER, REVIEW_PASSWORD = "registry-deployer", "Reg1stry-L0gin/Pw"
_BOTH = f"{REVIEW_USER}:{REVIEW_PASSWORD}".encode()
SLICES = {
    "base64 of user:password, from its 2nd to its 4th-last character": _b64(_BOTH)[1:-3],
    "base64 of user:password, from its 3rd to its 5th-last character": _b64(_BOTH)[2:-4],
    "base64 of the password from its 3rd character": _b64(REVIEW_PASSWORD.encode())[2:],
    "base64 of the password from its 2nd to its 3rd-last character": _b64(REVIEW_PASSWORD.encode())[1:-2],
    "URL-safe base64 of the password from its 2nd character": base64.urlsafe_b64encode(
        REVIEW_PASSWORD.encode()).decode()[1:],
    "hex of the password after a lone digit": "0" + REVIEW_PASSWORD.encode().hex()[:26],
    "base85 of the password from its 4th character": base64.b85encode(REVIEW_PASSWORD.encode()).decode()[3:],
    "base64 of the base64 of the password from its 3rd character": _b64(_b64(_BOTH)[2:].encode())[1:],
    "base64 of user:password cut short, in groups of 4 by spaces": _groups(_b64(_BOTH)[:-12], 4),
    "base64 of user:password from its 2nd character, cut short, in groups of 5": _groups(_b64(_BOTH)[1:-12], 5),
}


@pytest.mark.parametrize("name", SLICES)
def test_a_slice_of_an_encoding_starting_inside_a_group_is_withheld(name: str) -> None:
    """A slice that starts partway into a base64 group (or base85 group, or hex byte) reads as the bytes it encodes
    only from a later character: each run is read from each offset, and half of the secret withholds."""
    scrub = Scrubber()
    scrub.add(REVIEW_PASSWORD, username=REVIEW_USER)
    assert scrub(f"error: token {SLICES[name]} rejected") == WITHHELD, SLICES[name]


NUMBER_NOTATIONS = {
    "od -b (bare 3-digit octal)": lambda data: " ".join(f"{b:03o}" for b in data),
    "padded decimal": lambda data: " ".join(f"{b:04d}" for b in data),
    "0X hex run together": lambda data: "".join(f"0X{b:02X}" for b in data),
    "0x hex run together": lambda data: "".join(f"0x{b:02x}" for b in data),
    "binary bytes": lambda data: " ".join(f"{b:08b}" for b in data),
    "binary bytes, comma-separated": lambda data: ",".join(f"{b:08b}" for b in data),
}


@pytest.mark.parametrize("notation", NUMBER_NOTATIONS)
@pytest.mark.parametrize("password", [REVIEW_PASSWORD, "hunter22", PASSWORDS[0]])
def test_a_byte_list_in_another_notation_is_withheld(notation: str, password: str) -> None:
    scrub = Scrubber()
    scrub.add(password, username=REVIEW_USER)
    echo = NUMBER_NOTATIONS[notation](password.encode())
    assert scrub(f"error: bad password [{echo}]") == WITHHELD, echo


PROSE_AT_THE_LAYER_LIMIT = [
    '<a href="https://sso/login?r=https%2525252F%2525252Fregistry.corp%2525252Fv2">sign in again</a>',
    _pct("https://sso.corp/login?return_to=https://registry.corp/v2/acme/web/manifests/latest&Reason=Expired",
         DECODE_ROUNDS),
    _pct("Authentication required: the token for registry.corp has Expired, sign in at /sso/login", DECODE_ROUNDS),
]


@pytest.mark.parametrize("answer", PROSE_AT_THE_LAYER_LIMIT)
def test_prose_encoded_up_to_the_layer_limit_is_shown(answer: str) -> None:
    """An SSO return_to chain percent-encodes a URL once per hop: DECODE_ROUNDS layers deep it is words, which also
    read as base64 and base32, but no word reads as text, so nothing is left undecoded and the answer is shown."""
    scrub = Scrubber()
    scrub.add(REVIEW_PASSWORD, username=REVIEW_USER)
    assert scrub(answer) == answer


def _nested(data: bytes, encode: Callable[[bytes], bytes], times: int) -> str:
    for _ in range(times):
        data = encode(data)
    return data.decode()


@pytest.mark.parametrize("encode", [base64.b64encode, lambda data: data.hex().encode(), base64.b32encode,
                                    lambda data: quote(data, safe="").encode()], ids=["base64", "hex", "base32",
                                                                                      "percent"])
@pytest.mark.parametrize("times", [DECODE_ROUNDS + 1, DECODE_ROUNDS + 2])
def test_a_password_nested_past_the_layer_limit_is_withheld(encode: Callable[[bytes], bytes], times: int) -> None:
    """Past DECODE_ROUNDS layers the password is not decoded, but the deepest view still decodes: the text is
    withheld as too deeply encoded to check, whatever it holds; within the limit, an answer that holds none is
    shown."""
    scrub = Scrubber()
    scrub.add("Reg1stry-L0gin/Pw", username=USER)
    assert scrub(f"error: {_nested(b'Reg1stry-L0gin/Pw', encode, times)}") == WITHHELD
    assert scrub(f"error: {_nested(b'Ordinary-Text/Ok', encode, times)}") == WITHHELD
    within = f"error: {_nested(b'Ordinary-Text/Ok', encode, 2)}"
    assert scrub(within) == within


def test_each_round_undoes_one_layer_of_each_escape_and_never_lengthens() -> None:
    layered = "%2526lt%253B%255Cu0041"  # percent twice, around an HTML entity and a JSON escape (undone in order)
    views = [layered]
    while (decoded := decode_once(views[-1])) != views[-1]:
        views.append(decoded)
    assert views[1:] == ["%26lt%3B%5Cu0041", "<A"]
    assert all(len(b) < len(a) for a, b in zip(views, views[1:]))
    assert decode_once("&#" + "9" * 5000 + ";") == "&#" + "9" * 5000 + ";"
    assert decode_once("\\ud83d\\ude00 %E4%B8%AD =C3=A4") == "\U0001F600 中 ä"


@pytest.mark.parametrize("times", [DECODE_ROUNDS - 1, DECODE_ROUNDS])
def test_registry_errors_percent_encoded_up_to_the_layer_limit_are_shown(times: int) -> None:
    """A registry error quoted in a URL once per hop: below the limit its digests read as random bytes, where an
    escape (`\\f`, `=E8`) or a run of ASCII occurs by chance; only a line or run that is text counts as a layer
    left undecoded (6 random bytes all text: 0.4%, times the few runs not words). 140 answers (seeded)."""
    rng = random.Random(times)
    scrub = Scrubber()
    scrub.add(REVIEW_PASSWORD, username=REVIEW_USER)
    for template in REGISTRY_ERRORS:
        for _ in range(20):
            answer = _pct(template.format(digest="sha256:" + rng.randbytes(32).hex(), b64=_b64(rng.randbytes(24))),
                          times)
            assert scrub(answer) == answer


def _half(pw: str) -> str:
    """The first half of a password, at least the run that withholds a text (`fragment_len`)."""
    return pw[:max((len(pw) + 1) // 2, fragment_len(len(pw)))]


GLUED = {
    "0x and hex of the first half": lambda pw: "0x" + _half(pw).encode().hex(),
    "0X and upper-case hex of base64 of user:password": lambda pw: "0X" + _b64(f"{USER}:{pw}".encode()).encode()
    .hex().upper(),
    "trace- and hex of the percent-encoded password": lambda pw: "trace-" + quote(pw, safe="").encode().hex(),
    "req_ and hex of base64 of the password": lambda pw: "req_" + _b64(pw.encode()).encode().hex(),
    "id- and base32hex of the percent-encoded password": lambda pw: "id-" + base64.b32hexencode(
        quote(pw, safe="").encode()).decode(),
    "job_ and lower-case base32 of user:password": lambda pw: "job_" + base64.b32encode(
        f"{USER}:{pw}".encode()).decode().lower().rstrip("="),
    "0x and hex of the first half reversed": lambda pw: "0x" + _half(pw)[::-1].encode().hex(),
    "0x and hex of rot13": lambda pw: "0x" + codecs.encode(pw, "rot13").encode().hex(),
    "0x and hex of the first half as UTF-16LE": lambda pw: "0x" + _half(pw).encode("utf-16-le").hex(),
    "0x and EBCDIC hex of the first half": lambda pw: "0x" + _half(pw).encode("cp037", "replace").hex(),
    "a word glued to hex of the password": lambda pw: "token" + pw.encode().hex(),
    "a-b-0x and base32hex after hex segments": lambda pw: "a1b2c3d4e5f6-0x" + base64.b32hexencode(
        pw.encode()).decode(),
}


@pytest.mark.parametrize("form", GLUED)
@pytest.mark.parametrize("password", [REVIEW_PASSWORD, "hunter22", *PASSWORDS])
def test_an_encoding_glued_to_a_prefix_is_withheld(password: str, form: str) -> None:
    """A hex, base32 or base32hex run glued to a prefix (`0x`, an id's `trace-`, a word) is one base64 run that is
    not hex or base32 whole: its segments are read in their own alphabets."""
    scrub = Scrubber()
    scrub.add(password, username=USER)
    echo = GLUED[form](password)
    assert scrub(f"debug {echo} rejected") == WITHHELD, echo


GLUED_IDS = [
    "ERROR: 0x7f3a9c21 internal fault at 0x00007ffd5e8c1a20, x-request-id: 0x0cc175b9c0f1b6a831c399e269772661",
    "trace-4bf92f3577b34da6a3ce929d0e0e4736 span_00f067aa0ba902b7 req_7A3F9B2C1D4E5F60 id-C9GMUT35DPQ6AT0",
    "upload 7a3f9b2c-1d4e-5f60-8a9b-0c1d2e3f4a5b at build-20261208T101530Z by runner_deadbeefcafe0123",
]


@pytest.mark.parametrize("password", ["hunter22", "Kx9!mQ2#vLp8", REVIEW_PASSWORD, *PASSWORDS])
def test_ids_glued_to_prefixes_are_shown(password: str) -> None:
    """Request, trace and span ids with their prefixes read, as their segments, as random bytes: shown, with 200
    random ids of each shape (seeded)."""
    rng = random.Random(password)
    scrub = Scrubber()
    scrub.add(password, username=USER)
    answers = list(GLUED_IDS)
    for _ in range(200):
        answers.append(f"trace-{rng.randbytes(16).hex()} 0x{rng.randbytes(8).hex()} "
                       f"id-{base64.b32hexencode(rng.randbytes(10)).decode()} req_{rng.randbytes(12).hex().upper()}")
    for answer in answers:
        assert scrub(answer) == answer


UU_PREFIXES = ["ERROR: ", "DENIED ", "500 ", "AUTH FAILED: ", "X ", "ok ", "%PDF-1.7 ", "M "]
UU_DATA = {
    "in a sentence": lambda pw: f"password for user {USER} is {pw} ok".encode(),
    "at the end of a full line": lambda pw: b"x" * (45 - len(pw.encode())) + pw.encode(),
    "percent-encoded": lambda pw: quote(pw, safe="").encode(),
    "user:password": lambda pw: f"{USER}:{pw}".encode(),
}


@pytest.mark.parametrize("data", UU_DATA)
@pytest.mark.parametrize("prefix", UU_PREFIXES)
@pytest.mark.parametrize("password", [REVIEW_PASSWORD, PASSWORDS[0], PASSWORDS[1]])
def test_uuencoded_lines_after_a_word_that_could_start_one_are_withheld(password: str, prefix: str,
                                                                        data: str) -> None:
    """A word after whitespace whose first character could be a line's length (`E`, `D`, `5`, `%`) reads into
    the line after it: the line is still read from its own length character, its lines one per line or folded
    into one line (as an excerpt folds them), followed by more text or not."""
    scrub = Scrubber()
    scrub.add(password, username=USER)
    raw = UU_DATA[data](password)
    lines = [binascii.b2a_uu(raw[i:i + 45]).decode() for i in range(0, len(raw), 45)]
    for text in ("".join(lines), " ".join(line.rstrip("\n") for line in lines)):
        for after in ("", f" for {USER}", f"\nFOR {USER.upper()}"):
            assert scrub(prefix + text + after) == WITHHELD, prefix + text + after
