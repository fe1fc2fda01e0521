"""Each redirect an `ADD <url>` source answers with is held to the rules of the URL written in the Dockerfile
(components/remote_sources.py): a loopback server that redirects, the plan's fetch and its one error message."""
from __future__ import annotations

import hashlib
import http.server
import secrets
import time
from typing import Iterator

import pytest

from components import image as image_module
from components import remote_inputs
from tests.e2e.test_remote_inputs import make_project, serving, settings_for


class _Redirecting(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    body = b"served\n"
    routes: dict[str, str] = {}
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append((self.path, self.headers.get("Cookie")))
        target = self.routes.get(self.path)
        self.send_response(302 if target else 200)
        if target:
            self.send_header("Location", target)
            self.send_header("Set-Cookie", "session=c00kieSECRET; Path=/")
        self.send_header("Content-Length", "0" if target else str(len(self.body)))
        self.end_headers()
        if not target:
            self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[tuple[str, type[_Redirecting]]]:
    yield from serving(type("Redirecting", (_Redirecting,), {"seen": [], "routes": {}}))


def test_a_chain_of_redirects_is_followed_without_cookies(redirecting):
    base, handler = redirecting
    handler.routes.update({"/r1": f"{base}/r2", "/r2": "/f"})
    assert remote_inputs.fetch_checksum(f"{base}/r1", time.monotonic() + 30) == \
        "sha256:" + hashlib.sha256(handler.body).hexdigest()
    assert handler.seen == [("/r1", None), ("/r2", None), ("/f", None)], "a cookie an answer sets is never sent"


@pytest.mark.parametrize("location, rule", [
    ("/a/../f", "'.' or '..' segment"),
    ("/a b(c)", "percent-encode differently"),
    ("ftp://127.0.0.1/f", "is not http(s)"),
    ("http://user:pa55WORD@127.0.0.2/f?sig=s1gnedSECRET", "names user info"),
    ("/a\tb\x1b[31m", "holds a control character"),  # Python's urljoin drops the tab; Go's net/url refuses it
    ("http:/ab", "names a scheme without //host"),  # urljoin reads a path; Go: no Host in request URL
    ("/a%zz", "a '%' not followed by two hex digits"),
])
def test_a_redirect_to_a_refused_url_is_one_error_naming_line_url_and_location(tmp_path, redirecting, monkeypatch,
                                                                                location, rule):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    base, handler = redirecting
    path = f"/moved-{secrets.token_hex(3)}"
    handler.routes[path] = location
    root = make_project(tmp_path / "p", f"FROM scratch\n\nADD {base}{path} /f\n")
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings_for(root))
    message = str(err.value)
    assert "app/Dockerfile line 3" in message and f"{base}{path}" in message and rule in message, message
    assert "redirects to" in message and "--checksum" in message, message
    assert "\x1b" not in message and "pa55WORD" not in message and "s1gnedSECRET" not in message, message
    assert "c00kieSECRET" not in message
    assert [p for p, _ in handler.seen] == [path], "the refused Location is not fetched"


@pytest.mark.parametrize("hops", [9, 10])
def test_redirects_are_followed_up_to_gos_limit(redirecting, tmp_path, monkeypatch, hops):
    """Go's client (BuildKit's) follows 9 redirects in a row and fails on the 10th: so does the plan, whose
    message names the fix (a --checksum makes no request)."""
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    base, handler = redirecting
    handler.routes.update({f"/r{n}": f"/r{n + 1}" for n in range(hops)})
    root = make_project(tmp_path / "p", f"FROM scratch\nADD {base}/r0 /f\n")
    if hops == 9:
        assert remote_inputs.fetch_checksum(f"{base}/r0", time.monotonic() + 30) == \
            "sha256:" + hashlib.sha256(handler.body).hexdigest()
        return
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings_for(root))
    message = str(err.value)
    assert "redirects 10 times in a row" in message and "ADD --checksum=sha256:<digest>" in message, message
    assert [p for p, _ in handler.seen] == [f"/r{n}" for n in range(10)], "at most 10 requests, as Go's client"


def test_a_cookie_is_never_carried_across_hosts(redirecting):
    """127.0.0.1 sets a cookie and redirects to 127.0.0.2, which sets one and redirects back: no request carries
    either cookie (BuildKit's client keeps none)."""
    first_base, first = redirecting
    other = serving(type("Other", (_Redirecting,), {"seen": [], "routes": {}}), host="127.0.0.2")
    second_base, second = next(other)
    try:
        first.routes["/r1"] = f"{second_base}/r2"
        second.routes["/r2"] = f"{first_base}/f"
        assert remote_inputs.fetch_checksum(f"{first_base}/r1", time.monotonic() + 30) == \
            "sha256:" + hashlib.sha256(first.body).hexdigest()
    finally:
        next(other, None)
    assert first.seen == [("/r1", None), ("/f", None)] and second.seen == [("/r2", None)]
