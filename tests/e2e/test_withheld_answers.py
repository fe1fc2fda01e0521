"""A server's text that holds the configured password, in any form, is withheld whole: the message shows neither
where the password was nor its length nor the words around it, so a weak password equal to a word of a registry's
answer (`message`, `UNAUTHORIZED`, the realm, part of the user name) cannot be read off the gap a mask leaves.

The registries are sockets on 127.0.0.1 (tests/e2e/test_hostile_servers.py's HostileServer) that take a Basic
login and then answer the request under test with a fixed JSON error; the preflight and a promotion's copy read it
through the same scrubber as every other message path.
"""
from __future__ import annotations

import base64
import json
import quopri
import socket
from typing import Callable
from urllib.parse import quote

import pytest

from components.copy import CopyError, copy_image
from components.preflight import PreflightTarget, check_registry
from registryclient import RegistryError
from registryclient.login import RegistryLogin
from registryclient.scrub import WITHHELD
from tests.e2e.test_hostile_servers import HostileServer, hostile  # noqa: F401

USER = "registry-deployer"
REALM = "Registry Realm"
STRONG = "Zq7-unrelated-Secret"
DIGEST = "sha256:" + "a" * 64


def _body(echo: str) -> bytes:
    """A registry's error answer (the Distribution spec's JSON, a token service's keys) holding `echo` in its
    message."""
    return json.dumps({
        "errors": [{"code": "UNAUTHORIZED", "message": f"authentication required for registry-deployer {echo}",
                    "detail": [{"Type": "repository", "Name": "acme/web", "Action": "push"}]}],
        "token": "", "access_token": "", "expires_in": 300,
    }).encode()


def _registry(password: str, status: str, body: bytes) -> Callable[[socket.socket, bytes, HostileServer], None]:
    """Takes USER:`password` by Basic; a HEAD finds nothing (a promotion's target tag is free); every other request
    but /v2/ is answered with `status` and `body`."""
    basic = base64.b64encode(f"{USER}:{password}".encode()).decode()

    def handle(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        method, path = head.split(b" ", 2)[:2]
        if f"Authorization: Basic {basic}".encode() not in head:
            status_line, extra, answer = "401 Unauthorized", f'WWW-Authenticate: Basic realm="{REALM}"\r\n', b""
        elif path == b"/v2/":
            status_line, extra, answer = "200 OK", "Docker-Distribution-API-Version: registry/2.0\r\n", b"{}"
        elif method == b"HEAD":
            status_line, extra, answer = "404 Not Found", "", b""
        else:
            status_line, extra, answer = status, "Content-Type: application/json\r\n", body
        conn.sendall(f"HTTP/1.1 {status_line}\r\n{extra}Content-Length: {len(answer)}\r\n\r\n".encode() + answer)
    return handle


def _preflight(server: HostileServer, password: str) -> str:
    with pytest.raises(RegistryError) as err:
        check_registry(PreflightTarget(RegistryLogin(server.server, USER, password, allow_plain_http=True),
                                       ("acme/web",)), timeout=10)
    return str(err.value)


def _copy(server: HostileServer, password: str) -> str:
    login = RegistryLogin(server.server, USER, password, allow_plain_http=True)
    with pytest.raises(CopyError) as err:
        copy_image(login, "acme/web", DIGEST, login, "acme/prod", "v1", budget=10)
    return str(err.value)


KEYS = {"a JSON key": "errors", "the code key": "code", "the message key": "message", "the detail key": "detail",
        "a token key": "access_token", "the expiry key": "expires_in"}
"""Passwords equal to a key of the answer: a 403's message shows only its codes and messages, so there they are
not in what is shown (and the message is the one an unrelated password gets)."""
WORDS = {"the error code": "UNAUTHORIZED", "a word of the message": "authentication",
         "part of the user name": "deployer"}
_ENCODED = "Reg1stry-L0gin/Pw"
CASES = {
    **{name: (password, "") for name, password in {**KEYS, **WORDS}.items()},
    "the realm": (REALM, REALM),
    "base64 of user:password": (_ENCODED, base64.b64encode(f"{USER}:{_ENCODED}".encode()).decode()),
    "percent-encoded": (_ENCODED, quote(_ENCODED, safe="")),
    "JSON \\u escapes": (_ENCODED, "".join(f"\\u{ord(ch):04x}" for ch in _ENCODED)),
    "hex": (_ENCODED, _ENCODED.encode().hex()),
    "a fragment": (_ENCODED, _ENCODED[2:12]),
    "percent-encoded twice": (_ENCODED, quote(quote(_ENCODED, safe=""), safe="")),
    "quoted-printable": (_ENCODED, quopri.encodestring(_ENCODED.encode(), quotetabs=True).decode()),
    "base64 of user:password wrapped": (_ENCODED, base64.encodebytes(f"{USER}:{_ENCODED}".encode()).decode()),
    "upper case": (_ENCODED, _ENCODED.upper()),
    "half of it": (_ENCODED, _ENCODED[:len(_ENCODED) // 2]),
    "base85": (_ENCODED, base64.b85encode(_ENCODED.encode()).decode()),
    "base64 of UTF-16": (_ENCODED, base64.b64encode(_ENCODED.encode("utf-16-le")).decode()),
}
"""(password, extra text in the answer's message) per case."""


@pytest.mark.parametrize("run, status", [(_preflight, "500 Internal Server Error"), (_preflight, "403 Forbidden"),
                                         (_copy, "500 Internal Server Error"), (_copy, "403 Forbidden")],
                         ids=["preflight-500", "preflight-403", "copy-500", "copy-403"])
def test_an_answer_holding_the_password_is_withheld_whole(hostile, run, status: str) -> None:  # noqa: F811
    """Every weak password and every encoded echo gives the one message a strong password gets when the answer
    holds it raw: no gap, no length, no word of the answer; the status and the program's own words stay."""

    def message(password: str, echo: str) -> str:
        server = hostile(_registry(password, status, _body(echo)))
        return run(server, password).replace(str(server.port), "PORT")

    withheld, shown = message(STRONG, STRONG), message(STRONG, "")
    assert WITHHELD in withheld and "***" not in withheld, withheld
    assert f"{status.split()[0]}" in withheld and "authentication" not in withheld, withheld
    assert "authentication required" in shown, f"an answer holding no password is shown: {shown}"
    for name, (password, echo) in CASES.items():
        expected = shown if status.startswith("403") and name in KEYS else withheld
        assert message(password, echo) == expected, name


def _silent(conn: socket.socket, head: bytes, server: HostileServer) -> None:
    """Reads the request and never answers, until the client gives up (bounded: 20 s)."""
    conn.settimeout(20)
    try:
        while conn.recv(1024):
            pass
    except OSError:
        pass


@pytest.mark.parametrize("part", ["host", "path"])
def test_the_programs_own_host_and_path_are_never_withheld(hostile, part: str) -> None:  # noqa: F811
    """A password that is part of the configured host or of a path the program asks for changes nothing in the
    message of a registry that does not answer: the host and path are the program's own words, shown whole."""
    server = hostile(_silent)

    def message(password: str) -> str:
        with pytest.raises(RegistryError) as err:
            check_registry(PreflightTarget(RegistryLogin(server.server, USER, password, allow_plain_http=True),
                                           ("acme/web",)), timeout=1)
        return str(err.value)

    weak = server.server[2:] if part == "host" else "/v2/"
    assert weak in message(STRONG)
    assert message(weak) == message(STRONG), "the host or path was withheld for holding the password"
    assert WITHHELD not in message(weak)


def test_a_location_the_registry_named_on_its_own_origin_is_still_the_servers_words(hostile) -> None:  # noqa: F811
    """A redirect to a path on the registry's own origin holding the password, where nothing then answers: the
    message names that path as server text (withheld), never as the program's own words."""
    from registryclient import RegistryClient

    weak = "Reg1stry-L0gin-Pw"

    def handle(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        path = head.split(b" ", 2)[1]
        if path == b"/v2/":
            answer = b"HTTP/1.1 200 OK\r\nDocker-Distribution-API-Version: registry/2.0\r\nContent-Length: 0\r\n\r\n"
        elif b"/blobs/" in path:
            answer = (f"HTTP/1.1 307 Temporary Redirect\r\nLocation: /v2/held/{weak}/x\r\n"
                      "Content-Length: 0\r\n\r\n").encode()
        else:
            _silent(conn, head, server)
            return
        conn.sendall(answer)

    server = hostile(handle)
    with RegistryClient(server.server, USER, weak, allow_plain_http=True, timeout=1) as client:
        with pytest.raises(RegistryError) as err:
            client.blob_size("acme/web", DIGEST)
    message = str(err.value)
    assert weak not in message and WITHHELD in message, message
