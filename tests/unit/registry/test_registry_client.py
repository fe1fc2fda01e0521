"""Unit tests of registryclient/'s pure parts: what a message may show of a server's bytes, the
origin credentials are restricted to, scope caching and token claims. Every exchange with a server is tested
against real sockets in tests/e2e (test_registry_client.py against docker-registry, test_hostile_servers.py)."""
from __future__ import annotations

import base64
import html
import json
import re
from urllib.parse import quote, quote_plus, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registryclient import RegistryClient, Scrubber, excerpt_text
from registryclient.endpoint import parse_server
from registryclient.scrub import WITHHELD


@settings(max_examples=80, deadline=None)
@given(password=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=8, max_size=32))
def test_every_form_of_a_password_is_masked(password: str) -> None:
    scrub = Scrubber()
    scrub.add(password, username="deployer")
    forms = [password, quote(password, safe=""), quote_plus(password), json.dumps(password)[1:-1],
             base64.b64encode(f"deployer:{password}".encode()).decode()]
    text = " | ".join(f"<{form}>" for form in forms)
    shown = scrub(text)
    for form in forms:
        if len(form) >= 4:
            assert form not in shown, f"{form!r} survived in {shown!r}"


def test_a_password_with_whitespace_runs_is_masked_in_an_excerpt() -> None:
    scrub = Scrubber()
    scrub.add("pass  \t word\u3000x")
    assert "word" not in excerpt_text("echo pass  \t word\u3000x end".encode(), scrub)


def test_header_values_a_server_echoes_are_masked_even_when_unknown() -> None:
    shown = Scrubber()("got Authorization: Bearer eyJhbGciOi.payload.sig and basic%20ZGVwbG95ZXI6cHc=")
    assert "eyJhbGciOi" not in shown and "ZGVwbG95ZXI6cHc" not in shown
    assert "Bearer ***" in shown and "basic ***" in shown


def test_excerpts_are_short_printable_and_escaped() -> None:
    shown = excerpt_text(b"\x1b[31mred\x1b[0m\x07 \xff\xfe" + b"x" * 5000)
    assert shown.isprintable() and "\x1b" not in shown
    assert shown.startswith("\\x1b[31mred\\x1b[0m\\x07 \\xff\\xfe")
    assert shown.endswith("...") and len(shown) <= 203
    assert excerpt_text(b"") == "(empty body)"


@pytest.mark.parametrize("url, same", [
    ("https://reg.example.com/v2/x", True),
    ("https://reg.example.com:443/v2/x", True),
    ("https://REG.example.com/v2/x", True),
    ("http://reg.example.com/v2/x", False),
    ("https://reg.example.com:8443/v2/x", False),
    ("https://reg.example.com.evil.com/v2/x", False),
    ("https://evil.com/reg.example.com", False),
    ("https://user@evil.com/", False),
])
def test_credentials_are_bound_to_the_registry_origin(url: str, same: bool) -> None:
    assert parse_server("reg.example.com", allow_plain_http=False).same_origin(url) is same


def _jwt(access: object) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'ES256'})}.{part({'access': access})}.sig"


def test_a_token_asked_for_many_scopes_serves_each_and_its_claims_are_read() -> None:
    client = RegistryClient("reg.example.com", "u", "password-1")
    client.challenge = ("bearer", {"realm": "https://auth.example.com/token"})
    token = _jwt([{"type": "repository", "name": "acme/web", "actions": ["pull", "push"]},
                  {"type": "repository", "name": "acme/new", "actions": []}])
    client._tokens[frozenset({"repository:acme/web:pull", "repository:acme/web:push",
                              "repository:acme/new:pull", "repository:acme/new:push"})] = token
    assert client._authorization(("repository:acme/web:pull",)) == f"Bearer {token}", "no second token request"
    assert client.token_grants(("repository:acme/web:pull",), "acme/web") == {"pull", "push"}
    assert client.token_grants(("repository:acme/new:pull",), "acme/new") == set()
    assert client.token_grants(("repository:other/x:pull",), "other/x") is None, "no token for that scope"
    client._tokens = {frozenset({"repository:acme/web:pull"}): "opaque-token"}
    assert client.token_grants(("repository:acme/web:pull",), "acme/web") is None, "an opaque token says nothing"


# Forms made by other code than Scrubber.add (the test above builds its forms as add does, so a form add forgot
# would pass there): lower-case percent-encoding, + for space, base64 unpadded, URL-safe and at every byte offset
# inside a longer string, HTML and JSON escapes, and a token cut by one character.
def _lower_escapes(encoded: str) -> str:
    """Percent-encoding as some servers write it: %2f, not %2F (the letters of the text itself stay as they are)."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded)


def _independent_forms(password: str, user: str = "deployer") -> list[str]:
    raw = password.encode()
    forms = [quote(password, safe=""), _lower_escapes(quote(password, safe="")), _lower_escapes(quote_plus(password)),
             quote(password), _lower_escapes(urlencode({"p": password})[2:]), html.escape(password),
             html.escape(password, quote=False), html.escape(html.escape(password)),
             json.dumps(password)[1:-1], json.dumps(password, ensure_ascii=False)[1:-1],
             json.dumps(json.dumps(password))[1:-1]]
    basic = f"{user}:{password}".encode()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        forms += [encode(basic).decode(), encode(basic).decode().rstrip("=")]
        # base64 of any text holding the password: three byte offsets, then something after it
        forms += [encode(b"x" * k + raw + b"!tail").decode() for k in range(3)]
    return forms


INDEPENDENT_PASSWORDS = ["pa ss/w0rd+x&y", "pa%20ss%2fw0rd", "<sé'cr\"et>\\1", "plainpassword1", "日本語のパスワード"]


@pytest.mark.parametrize("password", INDEPENDENT_PASSWORDS)
def test_forms_made_by_other_libraries_are_withheld(password: str) -> None:
    scrub = Scrubber()
    scrub.add(password, username="deployer")
    for form in _independent_forms(password):
        assert scrub(f"server said <{form}> here") == WITHHELD, form


@settings(max_examples=40, deadline=None)
@given(password=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=8, max_size=32))
def test_forms_made_by_other_libraries_are_masked_for_any_password(password: str) -> None:
    scrub = Scrubber()
    scrub.add(password, username="deployer")
    for form in _independent_forms(password):
        assert form not in scrub(f"<{form}>"), form


def test_a_token_cut_short_or_shown_in_part_is_withheld() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJhY2Nlc3MiOltdfQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    scrub = Scrubber()
    scrub.add(token)
    for part in (token[:-1], token[1:], token[5:-5], token[:20]):
        assert scrub(f"token was {part}.") == WITHHELD, part


def test_ordinary_text_is_left_alone() -> None:
    scrub = Scrubber()
    scrub.add("hunter22", username="deployer")
    message = "GET http://127.0.0.1:5000/v2/acme/web/blobs/uploads/ answered 500 Internal Server Error: repository"
    assert scrub(message) == message


@pytest.mark.parametrize("body", [b"a" + b" " * 65535, (b"a" + b" " * 100) * 600, b"\\" * 65536, b"x" * 65536,
                                  (b"eyJ" + b"a" * 1199 + b"!") * 50, b"pa%20ss" * 9000, bytes(range(256)) * 256],
                         ids=["space-run", "space-runs", "backslashes", "same-char", "near-tokens", "near-password",
                              "all-bytes"])
def test_masking_a_hostile_body_takes_linear_time_and_logs_nothing(body: bytes, capfd) -> None:
    """Secrets with whitespace runs, backslashes and a 1,200-character token against 64 KB bodies built to make a
    backtracking matcher (or RE2's DFA, with a too-large pattern) struggle. The bound only turns a hang into a
    failure (each took seconds to minutes before RE2 and the pattern size cap); RE2 writes to stderr when its DFA
    runs out of memory, so stderr must stay empty."""
    import time

    scrub = Scrubber()
    for secret in ("p@ss w/rd+%!-1234", "a   b+c \t d", "\\" * 16, "x" * 128, "eyJ" + "a" * 1200 + ".sig"):
        scrub.add(secret, username="deployer")
    started = time.monotonic()
    excerpt_text(body, scrub)
    assert time.monotonic() - started < 10, "masking a 64 KB body must not take long"
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("password", ["hunter2-secret", "p@ss w0rd/+=", "pässwört-ünïcode"])
def test_a_registry_login_never_shows_its_password(password: str) -> None:
    """One masked representation: no form of the password the scrubber masks appears in repr or str."""
    from registryclient.login import RegistryLogin

    login = RegistryLogin("registry.example.com", "pusher", password, allow_plain_http=False)
    scrub = Scrubber()
    scrub.add(password, username="pusher")
    for shown in (repr(login), str(login), f"{login}", f"{login!r}", repr([login]), repr({"login": login})):
        assert scrub(shown) == shown, shown
        assert "'***'" in shown
    assert "password=None" in repr(RegistryLogin("127.0.0.1:5000", None, None, True))
