"""The registry client, the preflight and the image index against hostile servers on 127.0.0.1: endless bodies, trickles, bytes that
are not HTTP, terminal escapes, credentials echoed back, Locations that point at another host, and image manifests
or configs that are not JSON.

Each server is a plain socket loop in a thread here (no registry software can be made to misbehave like this).
Memory is measured in a fresh interpreter (its own RSS before and its peak after the check), against the figure the
test states; time bounds are generous and only turn a hang into a failure.
"""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote, quote_plus

import pytest

from components.image_index import IndexWriteError, write_index
from components.preflight import PreflightTarget, check_registry
from registryclient import RegistryError
from registryclient import DOCKER_MANIFEST, MANIFEST_LIMIT, RegistryClient, RegistryError
from registryclient.login import RegistryLogin
from registryclient.scrub import WITHHELD
from tests.e2e.registry import registry_binary, registry_ca, registry_factory, tls_registry  # noqa: F401

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "p@ss w/rd+%!-1234"
USER = "pusher"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
MEMORY_GROWTH_LIMIT_MB = 40
"""Peak RSS growth allowed for one check against an endless body (it was gigabytes before bodies were bounded)."""


class HostileServer:
    """Accept connections on `host`; `handle(conn, request_head)` answers each. Records every request head and
    when the client closed a connection the handler was still writing to."""

    def __init__(self, handle: Callable[[socket.socket, bytes, "HostileServer"], None], host: str = "127.0.0.1"):
        self.handle = handle
        self.requests: list[bytes] = []
        self.closed_by_client_at: list[float] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                while True:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        piece = conn.recv(65536)
                        if not piece:
                            return
                        head += piece
                    self.requests.append(head)
                    self.handle(conn, head, self)
            except (BrokenPipeError, ConnectionResetError):
                self.closed_by_client_at.append(time.monotonic())
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def hostile() -> Callable[..., HostileServer]:
    started: list[HostileServer] = []

    def start(handle, host: str = "127.0.0.1") -> HostileServer:
        server = HostileServer(handle, host)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def endless(status: str, extra_headers: str = "") -> Callable[[socket.socket, bytes, HostileServer], None]:
    def handle(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        conn.sendall(f"HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n{extra_headers}\r\n".encode())
        chunk = b"%x\r\n%s\r\n" % (1 << 16, b"x" * (1 << 16))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # bounded: a broken test must not stream forever
            conn.sendall(chunk)
        raise AssertionError("the client kept reading an endless body for 60 s")
    return handle


_CHILD = r"""
import json, sys, time
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) // 1024
from components.preflight import PreflightTarget, check_published, check_registry
from registryclient import RegistryError
from registryclient.login import RegistryLogin
before = rss("VmRSS")
try:
    login = RegistryLogin(sys.argv[1], "pusher", "pw-123456789", allow_plain_http=True)
    target = PreflightTarget(login, ("acme/web",), check_push=sys.argv[2] == "push")
    if sys.argv[2] == "published":
        check_published(login, {"web": ("acme/web", "ctx-1")}, timeout=float(sys.argv[3]))
    else:
        check_registry(target, timeout=float(sys.argv[3]))
    outcome = "passed"
except RegistryError as err:
    outcome = err.kind + ": " + str(err)
returned = time.monotonic()
time.sleep(1.5)  # time for an abandoned reader to read on, if one did
print(json.dumps({"before": before, "peak": rss("VmHWM"), "after": rss("VmRSS"), "outcome": outcome,
                  "returned": returned}))
"""


def run_check_in_fresh_interpreter(server: str, *, mode: str = "push", timeout: float = 4.0) -> dict:
    """mode: "push" (the preflight of an up), "login" (of a preview) or "published" (the published-tag check)."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, server, mode, str(timeout)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def preflight_failure(server: "HostileServer") -> str:
    """The message of the preflight's failure against `server` (the test user and password, plain HTTP)."""
    with pytest.raises(RegistryError) as err:
        check_registry(PreflightTarget(RegistryLogin(server.server, USER, PASSWORD, allow_plain_http=True),
                                       ("acme/web",)),
                       timeout=5)
    return str(err.value)


@pytest.mark.parametrize("mode", ["push", "login", "published"])
@pytest.mark.parametrize("status, headers, kind", [
    ("500 Internal Server Error", "", "protocol"),
    ("401 Unauthorized", 'WWW-Authenticate: Basic realm="r"\r\n', "auth"),
])
def test_an_endless_body_does_not_grow_the_process_and_is_not_read_after_the_check(
        hostile, status: str, headers: str, kind: str, mode: str) -> None:
    server = hostile(endless(status, headers))
    result = run_check_in_fresh_interpreter(server.server, mode=mode)
    assert result["outcome"].startswith(kind + ":"), result["outcome"]
    growth = result["peak"] - result["before"]
    assert growth < MEMORY_GROWTH_LIMIT_MB, f"peak RSS grew by {growth} MB reading an endless {status}"
    # The client dropped the connection when it stopped reading: the server's next write failed.
    deadline = time.monotonic() + 10
    while not server.closed_by_client_at and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.closed_by_client_at, "the connection stayed open: something still reads the body"


def test_a_trickling_body_is_abandoned_at_the_budget_and_never_read_on(hostile) -> None:
    """A byte every 50 ms never fills the bound, so only the budget stops it; after check_registry returned, the
    worker's socket is shut down, so the server's writes fail while the child is still alive."""
    def trickle(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        conn.sendall(b"HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            conn.sendall(b"1\r\nx\r\n")
            time.sleep(0.05)
        raise AssertionError("still trickling after 60 s")

    server = hostile(trickle)
    result = run_check_in_fresh_interpreter(server.server, timeout=1.0)
    assert result["outcome"].startswith("unreachable:") and "time limit" in result["outcome"], result["outcome"]
    assert server.closed_by_client_at, "the abandoned worker kept reading after the check returned"
    # CLOCK_MONOTONIC is one clock for both processes: the connection was closed by the time the check returned
    # (plus a little scheduling slack), not when the child exited 1.5 s later.
    assert server.closed_by_client_at[0] <= result["returned"] + 0.5, (server.closed_by_client_at, result)


def test_bytes_that_are_not_http_are_reported_as_such_with_a_short_escaped_excerpt(hostile) -> None:
    noise = bytes(range(256)) * 40_000  # 10 MB, with control bytes and terminal escapes among them

    def garbage(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        conn.sendall(b"\x1b[2J\x1b]0;pwned\x07" + noise)

    server = hostile(garbage)
    message = preflight_failure(server)
    assert "answered, but not as a registry" in message, message
    assert "nothing answers there" not in message
    assert all(ch.isprintable() for ch in message), repr(message)
    assert "\\x1b" in message and len(message) < 700


def test_terminal_escapes_in_status_line_and_body_are_shown_escaped(hostile) -> None:
    def evil(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        body = b"\x1b[31mred\x1b[0m \x1b]8;;http://x\x07link\r\n" * 50
        conn.sendall(b"HTTP/1.1 500 \x1b[1mBold\x1b[0m\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    server = hostile(evil)
    message = preflight_failure(server)
    assert "\x1b" not in message and "\x07" not in message, repr(message)
    assert "\\x1b[31mred" in message and "answered 500" in message and len(message) < 800


def test_every_form_of_the_credentials_is_withheld(hostile) -> None:
    token = "tok." + "A" * 40 + ".sig"
    forms = [PASSWORD, quote(PASSWORD, safe=""), quote_plus(PASSWORD), BASIC, token, json.dumps(PASSWORD)[1:-1]]

    def echo(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        text = head.decode("latin-1")
        if head.startswith(b"GET /token"):
            body = json.dumps({"token": token}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        elif "Authorization: Bearer" not in text:
            challenge = f'Bearer realm="http://{server.server}/token",service="s"'
            conn.sendall(f"HTTP/1.1 401 No\r\nWWW-Authenticate: {challenge}\r\nContent-Length: 0\r\n\r\n".encode())
        else:
            body = (server.form + " | " + text.replace("\r\n", " ")).encode()
            conn.sendall(b"HTTP/1.1 500 Echo\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    for form in forms:  # one form per answer: each must be found on its own
        server = hostile(echo)
        server.form = form
        message = preflight_failure(server)
        assert form not in message and WITHHELD in message and "Echo" in message, f"{form!r}: {message}"



def redirecting_registry(upload: Callable[[HostileServer], str], blob: Callable[[HostileServer], str]):
    """A registry handler taking Basic auth whose upload Location and blob redirect are `upload(server)` and
    `blob(server)`."""
    def registry(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        if f"Authorization: Basic {BASIC}".encode() not in head:
            conn.sendall(b'HTTP/1.1 401 No\r\nWWW-Authenticate: Basic realm="r"\r\nContent-Length: 0\r\n\r\n')
        elif head.startswith(b"GET /v2/ "):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        elif head.startswith(b"POST "):
            conn.sendall(f"HTTP/1.1 202 Accepted\r\nLocation: {upload(server)}\r\nContent-Length: 0\r\n\r\n".encode())
        elif head.startswith(b"GET /v2/acme/web/blobs/"):
            conn.sendall(f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {blob(server)}\r\n"
                         "Content-Length: 0\r\n\r\n".encode())
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    return registry


def test_credentials_never_follow_a_location_to_another_host(hostile) -> None:
    """The push probe's upload Location, a blob redirect and an upload URL on another host (127.0.0.2) are reached
    without the Authorization header; the registry's own host gets it."""
    elsewhere = hostile(lambda conn, head, srv: conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"),
                        host="127.0.0.2")

    registry = redirecting_registry(lambda server: f"http://{elsewhere.server}/upload/1",
                                    lambda server: f"http://{elsewhere.server}/blob")

    server = hostile(registry)
    check_registry(PreflightTarget(RegistryLogin(server.server, USER, PASSWORD, allow_plain_http=True), ("acme/web",)),
                   timeout=5)
    with RegistryClient(server.server, USER, PASSWORD, allow_plain_http=True, timeout=5) as client:
        with pytest.raises(RegistryError):
            list(client.get_blob("acme/web", "sha256:" + "0" * 64))  # 204 from elsewhere: not the blob
        with pytest.raises(RegistryError):
            client.put_blob("acme/web", "sha256:" + "0" * 64, iter([b"x"]))
    seen = [h.split(b"\r\n", 1)[0].decode() for h in elsewhere.requests]
    assert any(s.startswith("DELETE /upload/1") for s in seen), seen
    assert any(s.startswith("GET /blob") for s in seen), seen
    assert any(s.startswith("PUT /upload/1") for s in seen), seen
    assert all(b"authorization" not in h.lower() for h in elsewhere.requests), "a credential went to another host"
    assert all(b"Authorization: Basic" in h for h in server.requests if not h.startswith(b"GET /v2/ ")), (
        "the registry itself gets the login")


def test_a_trickled_tls_handshake_is_cut_off_at_the_budget(tls_registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real TLS registry behind a forwarder that hands its bytes on one every 20 ms: the handshake alone would take
    many seconds. The check gives up at its budget and the connection is closed by then, so the forwarder's writes
    fail right after the check returned (nothing goes on reading the handshake)."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_registry.ca_path))
    upstream = ("127.0.0.1", tls_registry.port)
    closed_at: list[float] = []

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn, socket.create_connection(upstream, timeout=10) as up:
            def pump_up() -> None:
                try:
                    while data := conn.recv(65536):
                        up.sendall(data)
                except OSError:
                    pass
            threading.Thread(target=pump_up, daemon=True).start()
            deadline = time.monotonic() + 60
            try:
                while time.monotonic() < deadline:
                    byte = up.recv(1)
                    if not byte:
                        return
                    conn.sendall(byte)
                    time.sleep(0.02)
            except OSError:
                closed_at.append(time.monotonic())

    threading.Thread(target=serve, daemon=True).start()
    server = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        with pytest.raises(RegistryError) as err:
            check_registry(PreflightTarget(RegistryLogin(server, USER, PASSWORD), ("acme/web",)), timeout=1.0)
        returned = time.monotonic()
        assert err.value.kind == "unreachable", str(err.value)
        deadline = time.monotonic() + 5
        while not closed_at and time.monotonic() < deadline:
            time.sleep(0.02)
        assert closed_at, "the abandoned handshake kept reading after the check returned"
        assert closed_at[0] - returned < 0.5, (closed_at[0] - returned)
    finally:
        listener.close()


def test_an_endless_manifest_is_refused_at_the_manifest_bound(hostile) -> None:
    def registry(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        if head.startswith(b"GET /v2/ "):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        elif head.startswith(b"HEAD "):
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        else:
            endless("200 OK", f"Content-Type: {DOCKER_MANIFEST}\r\n")(conn, head, server)

    server = hostile(registry)
    with RegistryClient(server.server, allow_plain_http=True, timeout=10) as client:
        with pytest.raises(RegistryError, match=f"larger than {MANIFEST_LIMIT} bytes"):
            client.get_manifest("acme/web", "v1")
        # Still inside the client's life: the connection is dropped at the bound, not when the client closes.
        deadline = time.monotonic() + 10
        while not server.closed_by_client_at and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.closed_by_client_at, "the client kept the endless manifest's connection open"
        # The next exchange gets a fresh connection, not the one with the rest of the endless body in it.
        assert client.manifest_digest("acme/web", "v2") is None


def test_a_web_server_is_not_taken_for_a_registry_that_needs_no_login(hostile) -> None:
    def web(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        body = b"<html><body>Welcome to nginx!</body></html>"
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    server = hostile(web)
    with pytest.raises(RegistryError) as err:
        check_registry(PreflightTarget(RegistryLogin(server.server, None, None, allow_plain_http=True), ("acme/web",)),
                       timeout=5)
    assert err.value.kind == "protocol"
    assert "answered, but not as a registry" in str(err.value) and "Welcome to nginx!" in str(err.value)


@pytest.mark.parametrize("form", [
    "http://[{elsewhere}{path}",  # an unclosed IPv6 bracket: urljoin raises ValueError
    "http://127.0.0.2\uff1a1{path}",  # a host that changes under NFKC normalization: requests raises ValueError
    "http://{elsewhere}\\@{server}{path}",  # Python's urlsplit reads the registry's host, urllib3 connects elsewhere
    "http://user:pw@{elsewhere}{path}",
    "http://{elsewhere}{path} ",
])
def test_an_ambiguous_location_is_refused_and_gets_no_credential(hostile, form: str) -> None:
    """A Location that two URL parsers read as two hosts (or with user info or whitespace) is never followed with
    the login: the client refuses it, the preflight's upload cancel skips it, and the other host hears nothing with a
    credential."""
    elsewhere = hostile(lambda conn, head, srv: conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"),
                        host="127.0.0.2")

    def where(server: HostileServer) -> str:
        return form.format(elsewhere=elsewhere.server, server=server.server, path="/upload/1")

    registry = redirecting_registry(where, where)

    server = hostile(registry)
    # The push probe only cancels the upload it opened: an unusable Location leaves it open, nothing more.
    check_registry(PreflightTarget(RegistryLogin(server.server, USER, PASSWORD, allow_plain_http=True), ("acme/web",)),
                   timeout=5)
    with RegistryClient(server.server, USER, PASSWORD, allow_plain_http=True, timeout=5) as client:
        with pytest.raises(RegistryError, match="unusable location"):
            list(client.get_blob("acme/web", "sha256:" + "0" * 64))
    assert all(b"authorization" not in h.lower() for h in elsewhere.requests), "a credential went to another host"


NESTED_JSON = b"[" * 5000 + b"]" * 5000
"""JSON nested 5,000 deep: 10 KB, well under the body bound, and past Python's parser depth (RecursionError)."""


def _answer(conn: socket.socket, status: str, body: bytes, headers: str = "") -> None:
    conn.sendall(f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body)


def _nested_jwt() -> str:
    payload = base64.urlsafe_b64encode(b'{"access": ' + NESTED_JSON + b"}").decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{payload}.c2ln"


@pytest.mark.parametrize("where", ["error body", "token body", "jwt payload"])
def test_json_nested_past_the_parser_depth_is_an_answer_not_a_crash_in_the_preflight(hostile, where: str) -> None:
    """A registry error body, a token service's answer and a JWT's payload nested 5,000 deep end in a
    RegistryError that reports the answer (never a RecursionError)."""
    token = _nested_jwt() if where == "jwt payload" else "tok." + "B" * 40

    def registry(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        if where == "error body" and not head.startswith(b"GET /v2/ "):
            _answer(conn, "403 Denied", NESTED_JSON)  # the push probe's refusal, read for the registry's own errors
        elif where == "error body" or head.startswith(b"GET /v2/ ") and b"Authorization: Bearer" in head:
            _answer(conn, "200 OK", b"{}", "Docker-Distribution-API-Version: registry/2.0\r\n")
        elif head.startswith(b"GET /token"):
            _answer(conn, "200 OK", NESTED_JSON if where == "token body" else json.dumps({"token": token}).encode())
        elif b"Authorization: Bearer" not in head:
            challenge = f'Bearer realm="http://{server.server}/token",service="s"'
            _answer(conn, "401 No", b"", f"WWW-Authenticate: {challenge}\r\n")
        else:
            _answer(conn, "403 Denied", NESTED_JSON)

    server = hostile(registry)
    target = PreflightTarget(RegistryLogin(server.server, USER, PASSWORD, allow_plain_http=True), ("acme/web",))
    with pytest.raises(RegistryError) as err:
        check_registry(target, timeout=5)
    message = str(err.value)
    expected = {"error body": "may not push", "token body": "nested deeper than 64 levels",
                "jwt payload": "403"}[where]
    assert expected in message, message
    if where == "jwt payload":  # the client reads the grants of a JWT only when a HEAD of a manifest is refused
        with RegistryClient(server.server, USER, PASSWORD, allow_plain_http=True, timeout=5) as client:
            with pytest.raises(RegistryError, match="403"):
                client.manifest_digest("acme/web", "v1")


@pytest.mark.parametrize("status, answer, says", [
    ("200 OK", {"token": "eyJ" + "S3CRETtok" * 150, "pad": "x" * 70000}, "over 64 KiB"),
    ("200 OK", {"refresh_token": "eyJ" + "S3CRETtok" * 150}, "a JSON object of 1 fields"),
    ("200 OK", {PASSWORD: 1, "token": ""}, "a JSON object of 2 fields"),
    ("200 OK", {"eyJ" + "S3CRETtok" * 150: 1}, "a JSON object of 1 fields"),
    ("200 OK", "eyJ" + "S3CRETtok" * 150, "not JSON"),
    ("201 Created", {"token": "eyJ" + "S3CRETtok" * 150, "refresh_token": "eyJS3CRETrefresh"}, "answered 201"),
    ("500 Oops", {"token": "eyJ" + "S3CRETtok" * 150}, "answered 500"),
    ("500 Oops", {"errors": [{"code": "UNAVAILABLE", "message": "eyJS3CRET"}]}, "error UNAVAILABLE"),
    ("400 Bad", {"error": "invalid_scope", "error_description": "eyJS3CRET"}, "error invalid_scope"),
    ("400 Bad", {"error": "Reg1stry_L0gin"}, "answered 400 ("),
    ("500 Oops", {"error": "eyJS3CRETabc123XYZ987", "code": "ghp_S3CRET0123456789abcdefABCDEF0123456789"},
     "answered 500 ("),
], ids=["past the size bound", "no token field", "the password as a field name", "a token as a field name",
        "not json", "a token in a 201", "a token in a 500", "a registry error code", "an oauth error code",
        "the password as an error code", "tokens as error codes"])
def test_a_token_answer_that_cannot_be_used_is_described_never_shown(hostile, status, answer, says) -> None:
    """A token service's answer holds credentials whatever its status: a failure says its status, size, type or
    error code, never its text, its field names or a code equal to the password (a token the answer did hold was
    once printed as "without a 'token'", a 201's token and refresh token as the unexpected answer's excerpt)."""
    body = json.dumps(answer).encode() if isinstance(answer, dict) else answer.encode()

    def registry(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        if head.startswith(b"GET /token"):
            _answer(conn, status, body, "Content-Type: application/json\r\n")
        else:
            challenge = f'Bearer realm="http://{server.server}/token",service="s"'
            _answer(conn, "401 No", b"", f"WWW-Authenticate: {challenge}\r\n")

    server = hostile(registry)
    password = "Reg1stry_L0gin" if "Reg1stry_L0gin" in str(answer) else PASSWORD  # an identifier-like password
    with RegistryClient(server.server, USER, password, allow_plain_http=True, timeout=5) as client:
        with pytest.raises(RegistryError) as err:
            client.login()
    message = str(err.value)
    assert says in message, message
    assert "S3CRET" not in message and "eyJ" not in message and password not in message, message


def test_json_nested_past_the_parser_depth_in_a_tag_list_or_manifest_is_reported(hostile) -> None:
    def registry(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        if head.startswith(b"GET /v2/ "):
            _answer(conn, "200 OK", b"{}", "Docker-Distribution-API-Version: registry/2.0\r\n")
        elif head.startswith(b"GET /v2/acme/web/tags/list"):
            _answer(conn, "200 OK", NESTED_JSON, "Content-Type: application/json\r\n")
        elif head.startswith(b"GET /v2/acme/web/manifests/"):
            _answer(conn, "200 OK", NESTED_JSON, "Content-Type: text/plain\r\n")
        else:
            _answer(conn, "404 Not Found", b"")

    server = hostile(registry)
    with RegistryClient(server.server, allow_plain_http=True, timeout=5) as client:
        with pytest.raises(RegistryError, match="tags/list answered 200"):
            client.list_tags("acme/web")
        # A manifest whose media type is only in its body: unreadable there, so the Content-Type stands.
        assert client.get_manifest("acme/web", "v1").media_type == "text/plain"


def test_credentials_echoed_in_forms_made_by_other_encoders_are_withheld(hostile) -> None:
    """The forms here are made by urllib, base64, html and json (not by the scrubber's own recipe): lower-case
    percent-encoding, + for space, unpadded and URL-safe base64 of user:password, HTML and JSON escapes, and the
    token cut by one character at either end."""
    import html
    import re

    token = "tok." + "C" * 40 + ".sig"
    lower = lambda text: re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)  # noqa: E731
    basic = f"{USER}:{PASSWORD}".encode()
    forms = [lower(quote(PASSWORD, safe="")), lower(quote_plus(PASSWORD)), html.escape(PASSWORD),
             json.dumps({"p": PASSWORD})[7:-2], base64.b64encode(basic).decode().rstrip("="),
             base64.urlsafe_b64encode(basic).decode(), base64.b64encode(b"ctx " + PASSWORD.encode()).decode(),
             token[:-1], token[1:]]

    def echo(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        if head.startswith(b"GET /token"):
            _answer(conn, "200 OK", json.dumps({"token": token}).encode())
        elif b"Authorization: Bearer" not in head:
            challenge = f'Bearer realm="http://{server.server}/token",service="s"'
            _answer(conn, "401 No", b"", f"WWW-Authenticate: {challenge}\r\n")
        else:
            _answer(conn, "500 Echo", f"the server says {server.form} here".encode())

    for form in forms:  # one form per answer: each must be found on its own
        server = hostile(echo)
        server.form = form
        message = preflight_failure(server)
        assert form not in message and f"answered 500 Echo: {WITHHELD}." in message, f"{form!r}: {message}"


def _preflight_message(server: HostileServer) -> str:
    login = RegistryLogin(server.server, "alice", "Wq8vN2pLx9RzT4kB", True)
    with pytest.raises(RegistryError) as err:
        check_registry(PreflightTarget(login, ("ns/app",), check_push=False), timeout=5.0)
    return str(err.value)


def test_a_server_that_closes_without_answering_is_said_to_have_answered_nothing(hostile) -> None:
    server = hostile(lambda conn, head, srv: conn.close())  # reads the request, then closes the connection
    message = _preflight_message(server)
    assert (f"{server.server} accepted the connection, but closed it without answering GET /v2/; check the host "
            "and port in ") in message, message
    assert "not as a registry" not in message and "answered," not in message, message


@pytest.mark.parametrize("record", [b"\x15\x03\x01\x00\x02\x02\x46", b"\x16\x03\x03\x00\x31\x02\x00\x00\x2d"])
def test_a_tls_answer_on_a_plain_http_port_is_said_to_be_tls(hostile, record: bytes) -> None:

    def answer(conn: socket.socket, head: bytes, srv: HostileServer) -> None:
        conn.sendall(record)
        conn.close()

    server = hostile(answer)
    message = _preflight_message(server)
    assert f"{server.server} answered in TLS: it serves HTTPS, but this registry is spoken to in plain HTTP" \
        in message, message
    assert "not HTTP" not in message and "\\x15" not in message, message


@pytest.mark.parametrize("manifest, config", [
    (b"<html>not a manifest</html>", b"{}"),
    (None, b"\xff not JSON"),
    (None, b"[" * 100 + b"]" * 100),
], ids=["manifest not JSON", "config not JSON", "config nested too deep"])
def test_an_image_index_over_bytes_that_are_not_json_is_one_clear_error(
        hostile, manifest: bytes | None, config: bytes) -> None:
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = manifest or json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "layers": [],
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest,
                   "size": len(config)}}).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()

    def registry(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        path = head.split(b" ")[1].decode()
        body, headers = b"{}", ""
        if path.endswith(f"/manifests/{manifest_digest}"):
            body, headers = manifest, f"Content-Type: {DOCKER_MANIFEST}\r\n"
        elif path.endswith(f"/blobs/{config_digest}"):
            body = config
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body)

    server = hostile(registry)
    with pytest.raises(IndexWriteError, match=r"is not JSON.*rebuild that platform's image") as err:
        write_index(server.server, None, None, True, "acme/web", "v1",
                    [{"platform": "linux/amd64", "digest": manifest_digest}], budget=20.0)
    assert "acme/web" in str(err.value), err.value


TOKEN = "eyJ" + "S3CRETtok" * 40
"""A token the client has not seen yet: the scrubber cannot know it, so nothing of a token service's answer may be
excerpted, wherever in the answer it stands."""
TOKEN_ANSWERS = {
    "a status line that is not HTTP": f"{TOKEN}\r\n\r\n".encode(),
    "a status code past 999": f"HTTP/1.1 2000 {TOKEN}\r\nContent-Length: 0\r\n\r\n".encode(),
    "a status code that is no number": f"HTTP/1.1 {TOKEN[:40]} OK\r\nContent-Length: 0\r\n\r\n".encode(),
    "its Content-Type": f"HTTP/1.1 200 OK\r\nContent-Type: {TOKEN}\r\nContent-Length: 5\r\n\r\nhello".encode(),
    "its Content-Encoding": f"HTTP/1.1 200 OK\r\nContent-Encoding: {TOKEN}\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
    "a chunk length": f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{TOKEN}\r\nxx\r\n0\r\n\r\n".encode(),
    "a header line": f"HTTP/1.1 200 OK\r\n{TOKEN}\r\nContent-Length: 2\r\n\r\n{{}}".encode(),
}


_LOGIN_CHILD = r"""
import logging, sys
from registryclient import RegistryClient, RegistryError
logging.basicConfig()  # as a program that logs: every library's warnings reach stderr
try:
    with RegistryClient(sys.argv[1], sys.argv[2], sys.argv[3], allow_plain_http=True, timeout=5) as client:
        client.login()
    print("logged in")
except RegistryError as err:
    print(err)
"""


def login_in_fresh_interpreter(server: str, password: str) -> subprocess.CompletedProcess:
    """A login in a process of its own that logs to stderr: what reaches its stdout and stderr (under pytest a
    capture handler would take a library's log records instead)."""
    return subprocess.run([sys.executable, "-c", _LOGIN_CHILD, server, USER, password], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("where", TOKEN_ANSWERS)
def test_a_token_service_answer_broken_anywhere_is_described_never_excerpted(hostile, where: str) -> None:
    """Before its token is known to the scrubber, a token service can put one anywhere in its answer: a status
    line that is not HTTP, a header the message would name, a chunk length, a header line that does not parse. The
    failure says what was wrong and how long it was, never its text; nothing reaches stderr either."""
    def registry(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        if head.startswith(b"GET /token"):
            conn.sendall(TOKEN_ANSWERS[where])
            conn.close()
        else:
            challenge = f'Bearer realm="http://{server.server}/token",service="s"'
            _answer(conn, "401 No", b"", f"WWW-Authenticate: {challenge}\r\n")

    run = login_in_fresh_interpreter(hostile(registry).server, PASSWORD)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "token service" in run.stdout and "not shown" in run.stdout, run.stdout
    assert "S3CRET" not in run.stdout + run.stderr and "eyJ" not in run.stdout + run.stderr, run.stdout + run.stderr


def test_a_registry_header_line_that_does_not_parse_never_reaches_stderr(hostile) -> None:
    """urllib3 logs a header line it cannot parse whole, as a warning: the password a registry echoed there never
    reaches stderr, even in a program that logs."""
    def registry(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        conn.sendall(f"HTTP/1.1 401 No\r\n{BASIC} {PASSWORD}\r\nContent-Length: 0\r\n\r\n".encode())
        conn.close()

    run = login_in_fresh_interpreter(hostile(registry).server, PASSWORD)
    assert run.returncode == 0 and run.stdout, run.stderr[-2000:]
    assert PASSWORD[:6] not in run.stdout + run.stderr and BASIC[:8] not in run.stdout + run.stderr, run.stderr


REGISTRY_ANSWERS = {
    "a status line that is not HTTP": lambda echo: f"{echo}\r\n\r\n",
    "a status code past 999": lambda echo: f"HTTP/1.1 2000 {echo}\r\nContent-Length: 0\r\n\r\n",
    "a reason phrase": lambda echo: f"HTTP/1.1 418 {echo}\r\nContent-Length: 0\r\n\r\n",
    "an HTML Content-Type": lambda echo: (f"HTTP/1.1 200 OK\r\nContent-Type: text/html; {echo}\r\n"
                                          "Content-Length: 5\r\n\r\nhello"),
    "its Content-Encoding": lambda echo: f"HTTP/1.1 200 OK\r\nContent-Encoding: {echo}\r\nContent-Length: 0\r\n\r\n",
    "a chunk length": lambda echo: f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{echo}\r\nxx\r\n0\r\n\r\n",
    "a challenge's realm": lambda echo: (f'HTTP/1.1 401 No\r\nWWW-Authenticate: Bearer realm="{echo}",service="s"\r\n'
                                         "Content-Length: 0\r\n\r\n"),
    "a challenge with no scheme": lambda echo: (f"HTTP/1.1 401 No\r\nWWW-Authenticate: {echo}\r\n"
                                                "Content-Length: 0\r\n\r\n"),
}
ECHOES = {"the password": PASSWORD, "the password percent-encoded": quote(PASSWORD, safe=""),
          "base64 of user:password": BASIC, "the password's first half in rot13": "c@ff j/eq"}


@pytest.mark.parametrize("echo", ECHOES)
@pytest.mark.parametrize("where", REGISTRY_ANSWERS)
def test_a_registry_echoing_the_password_in_its_status_line_or_headers_is_withheld(hostile, where: str,
                                                                                  echo: str) -> None:
    """The registry's answer to the first request (the password is known to the scrubber): every excerpt taken
    from its status line or its headers goes through the scrubber."""
    def registry(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        conn.sendall(REGISTRY_ANSWERS[where](ECHOES[echo]).encode("latin-1"))
        conn.close()

    server = hostile(registry)
    with RegistryClient(server.server, USER, PASSWORD, allow_plain_http=True, timeout=5) as client:
        with pytest.raises(RegistryError) as err:
            client.login()
    message = str(err.value)
    assert ECHOES[echo] not in message and PASSWORD[:6] not in message and BASIC[:8] not in message, message
