"""The head of every answer (status line and headers) arrives within the exchange's time limit in all, not per
read: a server that sends its status line and then a header byte now and then, each read well within the limit, is
cut off at that limit with a message saying it answered and its headers stalled, long before any generous overall
deadline. Servers are sockets on 127.0.0.1; time bounds only turn a hang into a failure."""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Iterator

import pytest

from components import remote_sources
from components.remote_sources import ResolveFailure, fetch_checksum
from registryclient import RegistryClient, RegistryError
from tests.e2e.test_hostile_servers import hostile  # noqa: F401

HANG_BOUND_S = 15.0
LIMIT_S = 1.0


def _trickle(conn: socket.socket, first: bytes, stop: threading.Event) -> None:
    conn.sendall(first)
    while not stop.wait(0.2):
        conn.sendall(b"X")


def trickled_headers(conn: socket.socket, stop: threading.Event) -> None:
    _trickle(conn, b"HTTP/1.1 200 OK\r\n", stop)


def trickled_status(conn: socket.socket, stop: threading.Event) -> None:
    _trickle(conn, b"HTTP/1.1 2", stop)


def slow_but_whole(conn: socket.socket, stop: threading.Event) -> None:
    """A head that takes 0.7s of the 1s limit, then a body after another 0.8s pause: each within the limit."""
    for piece in (b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n"):
        conn.sendall(piece)
        time.sleep(0.35)
    conn.sendall(b"Docker-Distribution-API-Version: x\r\n\r\n")
    time.sleep(0.8)
    conn.sendall(b"{}")


@pytest.fixture
def serve(hostile) -> Iterator[Callable[[Callable[[socket.socket, threading.Event], None]], str]]:  # noqa: F811
    """Starts a loopback server (tests/e2e/test_hostile_servers.py) answering each request with `handle(conn, stop)`;
    `stop` is set when the test ends."""
    yield lambda handle: hostile(lambda conn, head, server: handle(conn, server.stop)).server


def _login_failure(server: str) -> str:
    started = time.monotonic()
    with RegistryClient(server, allow_plain_http=True, timeout=LIMIT_S, deadline=time.monotonic() + 600,
                        budget=600) as client:
        with pytest.raises(RegistryError) as err:
            client.login()
    assert time.monotonic() - started < HANG_BOUND_S
    assert err.value.kind == "unreachable", err.value
    return str(err.value)


@pytest.mark.timeout(60)
def test_trickled_headers_end_at_the_exchange_limit_not_the_deadline(serve) -> None:
    server = serve(trickled_headers)
    message = _login_failure(server)
    assert (f"{server} answered GET /v2/ with 200, but the rest of its headers did not arrive within 1s (the time "
            "limit of one exchange); the registry or a proxy in between is stalling") in message, message


@pytest.mark.timeout(60)
def test_a_trickled_status_line_is_no_answer_within_the_exchange_limit(serve) -> None:
    server = serve(trickled_status)
    message = _login_failure(server)
    assert f"{server} accepted the connection but did not answer GET /v2/ within 1s (the time limit of one " \
           "exchange)" in message, message


@pytest.mark.timeout(60)
def test_the_body_has_the_whole_read_timeout_again_after_a_slow_head(serve) -> None:
    with RegistryClient(serve(slow_but_whole), allow_plain_http=True, timeout=LIMIT_S) as client:
        response = client.send("GET", f"{client.endpoint.base}/v2/")
    assert response.status_code == 200 and response.content == b"{}"


@pytest.mark.timeout(60)
def test_a_remote_add_source_trickling_its_headers_ends_at_the_exchange_limit(serve, monkeypatch) -> None:
    monkeypatch.setattr(remote_sources, "TIMEOUT_S", LIMIT_S)
    started = time.monotonic()
    with pytest.raises(ResolveFailure) as err:
        fetch_checksum(f"http://{serve(trickled_headers)}/file.tgz", time.monotonic() + 600)
    assert time.monotonic() - started < HANG_BOUND_S
    assert str(err.value) == ("the server answered with 200, but the rest of its headers did not arrive within 1s "
                              "(the time limit of one exchange)"), err.value
