"""Unit tests of components/registry_client.py's pure parts: what a message may show of a server's bytes, the
origin credentials are restricted to, scope caching and token claims. Every exchange with a server is tested
against real sockets in tests/e2e (test_registry_client.py against docker-registry, test_hostile_servers.py)."""
from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.registry_client import RegistryClient, Scrubber, excerpt_text, parse_server


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
