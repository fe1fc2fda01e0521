"""The scrubber's bounds and forms: what it accepts (never more than it can mask without RE2 failing, and RE2 never
writes a secret to stderr), the time and memory its decoders take on hostile texts four times the largest the
client reads, and the echoes it masks besides the ones tests/unit/registry/test_registry_client.py covers (hex, base32, UTF-16)."""
from __future__ import annotations

import base64
import binascii
import subprocess
import sys
import textwrap

import pytest

from registryclient import RegistryClient, RegistryError, Scrubber, excerpt_text
from registryclient.scrub import SECRET_MAX, WITHHELD
from registryclient.transport import ERROR_BODY_LIMIT
from tests.harness import PROJECT_ROOT

PASSWORD = "Kx9!mQ2#vLp8"


def _in_fresh_interpreter(code: str) -> subprocess.CompletedProcess:
    """Run `code` with the project importable; RE2 writes its errors to the process's own stderr (fd 2)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("length", [131_072, 200_000, SECRET_MAX + 1])
def test_an_over_long_password_is_a_config_error_and_nothing_reaches_stderr(length: int) -> None:
    run = _in_fresh_interpreter(f"""
        from registryclient import RegistryClient, RegistryError
        secret = ("Ab3$" * {length})[:{length}]
        try:
            RegistryClient("127.0.0.1:5000", "u", secret, allow_plain_http=True)
        except RegistryError as err:
            print(err.kind, str(err))
    """)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("config ") and f"longer than {SECRET_MAX}" in run.stdout, run.stdout
    assert run.stderr == "", run.stderr[:500]
    assert "Ab3$Ab3$" not in run.stdout


@pytest.mark.parametrize("length", [129, 4096, 16384])
def test_a_long_token_is_masked_in_every_form_without_re2(length: int) -> None:
    run = _in_fresh_interpreter(f"""
        import base64, json
        from urllib.parse import quote
        from registryclient import Scrubber
        token = ("eyJhbGciOiJSUzI1NiJ9." * {length})[:{length}]
        scrub = Scrubber()
        scrub.add(token)
        forms = [token, base64.b64encode(b"x" + token.encode()).decode(), token.encode().hex(), token[100:140]]
        shown = scrub(" | ".join(forms))
        print(all(form not in shown for form in forms), shown.count("***"))
    """)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[0] == "True", run.stdout[:300]
    assert run.stderr == "", run.stderr[:500]


def test_a_token_past_the_bound_is_refused_by_the_scrubber() -> None:
    with pytest.raises(ValueError, match=f"longer than {SECRET_MAX}"):
        Scrubber().add("t" * (SECRET_MAX + 1))


def test_the_login_error_of_an_over_long_password_names_no_part_of_it() -> None:
    with pytest.raises(RegistryError) as err:
        RegistryClient("127.0.0.1:5000", "u", "Zz" * SECRET_MAX, allow_plain_http=True)
    assert "Zz" not in str(err.value) and err.value.kind == "config"


def _forms(secret: str, user: str) -> list[str]:
    both = f"{user}:{secret}".encode()
    return [
        secret.encode().hex(), secret.encode().hex().upper(), both.hex(),
        base64.b32encode(secret.encode()).decode().rstrip("="), base64.b32encode(both).decode(),
        base64.b32encode(b"ab" + secret.encode() + b"cd").decode().lower(),
        base64.b32encode(b"xyz" + both).decode(),
    ]


@pytest.mark.parametrize("secret", [PASSWORD, "hunter22", "p@ss w/rd+%!-1234", "ünïcødé-pässwörd"])
def test_hex_and_base32_echoes_are_withheld(secret: str) -> None:
    scrub = Scrubber()
    scrub.add(secret, username="deployer")
    for form in _forms(secret, "deployer"):
        assert scrub(f"the server said <{form}> here") == WITHHELD, form


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16"])
@pytest.mark.parametrize("secret", [PASSWORD, "hunter22", "p@ss w/rd+%!-1234"])
def test_utf16_echoes_are_masked(secret: str, encoding: str) -> None:
    scrub = Scrubber()
    scrub.add(secret, username="deployer")
    body = f"error: bad password {secret} for deployer".encode(encoding)
    shown = excerpt_text(body, scrub, limit=1000)
    visible = shown.replace("\\x00", "")
    assert secret not in visible and secret[:6] not in visible, shown


MIB = 1 << 20
SIZE = 4 * ERROR_BODY_LIMIT
"""The hostile texts' size: four times the most the client reads of any text a server sends (a body; headers and
URLs are bounded below it), so the scrubber never sees one this large."""


def _nested_base64(data: bytes, depth: int) -> str:
    for _ in range(depth):
        data = base64.b64encode(data)
    return data.decode()


def _holding_itself(encode) -> str:
    """A text that holds its own encoding, which holds its own encoding, ..., up to SIZE: every layer decodes
    into one as long as the text allows."""
    text = "seed "
    while len(text) < SIZE // 3:
        text = text + " " + encode(text.encode())
    return text[:SIZE]


HOSTILE_TEXTS = {
    "percent nested": ("%25" * 4 + "41") * (SIZE // 14),
    "entities nested": "&amp;" * (SIZE // 5),
    "an entity of a quarter-million digits": "&#" + "9" * (SIZE - 2),
    "backslashes": "\\" * SIZE,
    "escaped unicode escapes": "\\\\u0041" * (SIZE // 7),
    "quoted-printable run": "=3D" * (SIZE // 3),
    "soft line breaks": "=\n" * (SIZE // 2),
    "mixed layers": "%26amp%3B%5Cu0025" * (SIZE // 17),
    "lone surrogate escapes": "\\ud800" * (SIZE // 6),
    "lone surrogates": "x\udc80" * (SIZE // 2),
    "non-Latin text": "中\u00e4\U0001F600 \u200b" * (SIZE // 5),
    "base64 of repeated bytes": base64.b64encode(bytes(range(256)) * (SIZE // 342)).decode(),
    "base64 nested six deep": _nested_base64(b"Zq7 unrelated " * 20_000, 6)[:SIZE],
    "hex of itself": _holding_itself(bytes.hex),
    "base64 of itself": _holding_itself(lambda data: base64.b64encode(data).decode()),  # see TOO_LAYERED
    "base85 and base64 runs": ("!#$%&()*;<>?@^`{|}~" + "QUJDREVGR0hJSktM" * 3 + " ") * (SIZE // 68),
    "hex digits": "0123456789abcdef" * (SIZE // 16),
    "a decimal byte list": "1," * (SIZE // 2),
    "a list of 255s": "255 " * (SIZE // 4),
    "a hex byte list": "0x41, " * (SIZE // 6),
    "two-digit groups": "41:" * (SIZE // 3),
    "octal escapes": "\\101" * (SIZE // 4),
    "code point escapes": "\\u{1F600}" * (SIZE // 9),
    "a byte list of its own byte list": " ".join(map(str, ("65 " * (SIZE // 16)).encode()))[:SIZE],
    "numbers that are no list": "1234 " * (SIZE // 5),
    "uuencoded lines": (binascii.b2a_uu(bytes(range(45))).decode() * (SIZE // 62))[:SIZE],
    "base64 in groups of 4": " ".join(["dXNl", "cjpT", "M2Ny"] * (SIZE // 15))[:SIZE],
    "U+ code points": "U+0041 " * (SIZE // 7),
    "a base32hex run": "0123456789ABCDEFGHIJKLMNOPQRSTUV" * (SIZE // 32),
    "upper-case words after spaces": "M ABC " * (SIZE // 6),
    "hex and base32hex glued to prefixes": "trace-0123456789abcdef_0x0123456789ABCDEFGHIJKLMNOPQRSTUV-" * (SIZE // 59),
    "hex tails glued to words": "token0123456789abcdef" * (SIZE // 21),
    "words that could start uuencoded lines, none ending": "M ABCD " * (SIZE // 7),
    "base64 in lines of 4": "\n".join(["dXNl", "cjpT", "M2Ny"] * (SIZE // 15))[:SIZE],
    "uuencoded lines after words that could start one": ("ERROR: " + binascii.b2a_uu(bytes(range(45))).decode()
                                                          + "DENIED 500 ") * (SIZE // 80),
}
TOO_LAYERED = {"base64 of itself", "base64 nested six deep", "hex of itself"}
"""Its views would total more than textviews.LAYER_BUDGET times its length (each layer decodes into nearly all of
it again), or a view textviews.DECODE_ROUNDS layers deep still decodes: withheld unchecked, after a bounded part of
the work."""


@pytest.mark.parametrize("name", HOSTILE_TEXTS)
def test_decoding_a_hostile_text_is_bounded_and_logs_nothing(name: str, capfd) -> None:
    """A 128-character password (every character an escape could stand for) and a 16,384-character token against
    SIZE texts built to make the decoders work: every view is at most as long as the text, so the memory held is a
    few copies of it, and the time a few passes. The bounds only turn a blow-up or a
    hang into a failure."""
    import time
    import tracemalloc

    text = HOSTILE_TEXTS[name]
    scrub = Scrubber()
    scrub.add(("%&;\\=+ u0041#x" * 10)[:128], username="deployer")
    scrub.add(("eyJhbGciOiJSUzI1NiJ9." * 800)[:SECRET_MAX])
    tracemalloc.start()
    started = time.monotonic()
    try:
        shown = excerpt_text(text, scrub)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (shown == WITHHELD) == (name in TOO_LAYERED), shown
    assert elapsed < 60, f"scrubbing a {SIZE // 1024} KiB text took {elapsed:.0f} s"
    assert peak < 16 * MIB, f"scrubbing a {SIZE // 1024} KiB text held {peak / MIB:.0f} MiB"
    assert capfd.readouterr().err == ""


def test_a_text_encoded_past_the_layer_budget_is_withheld_whole() -> None:
    """Percent-encoded base64 nested five deep: each layer can be read two ways (its escapes, its base64 runs), and
    the views would total more than LAYER_BUDGET times the text, so it cannot be checked whole and is withheld as
    a text holding a secret is; three deep (six layers: past DECODE_ROUNDS) likewise; once (two layers) it is
    checked and shown. A password that is nowhere in it."""
    from urllib.parse import quote

    def layered(depth: int) -> str:
        text = "0123456789" * 200
        for _ in range(depth):
            text = quote(base64.b64encode(text.encode()).decode(), safe="")
        return text

    scrub = Scrubber()
    scrub.add(PASSWORD, username="deployer")
    assert scrub(layered(1)) == layered(1)
    assert scrub(layered(3)) == scrub(layered(5)) == WITHHELD
    assert Scrubber()(layered(5)) == layered(5), "with no secret to find, nothing is withheld"
