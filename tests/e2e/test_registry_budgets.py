"""Every registry conversation of a promotion or an image index ends within its budget, whatever the server does:
accept and never answer, never accept (a blackholed port), answer a header a byte at a time, serve a layer a few
bytes a second, or answer every request correctly but slowly.

The servers are sockets on 127.0.0.1 (tests/e2e/test_hostile_servers.py's HostileServer, and a listener whose
accept queue is full, which the kernel answers by dropping further connection attempts: a blackhole). Budgets are
made small through the functions' own budget arguments; the time bounds asserted are generous and only turn a hang
into a failure.
"""
from __future__ import annotations

import hashlib
import json
import socket
import time
from typing import Callable, Iterator

import pulumi
import pytest

from components import copy as copy_module
from components import image_index
from components.copy import CopyError, copy_image, target_digest
from components.image_index import ImageIndexProvider, IndexWriteError, write_index
from registryclient.login import RegistryLogin
from components.promotion import PromotionError, SourceImage, SourceLogin, SourceStack, check_sources
from registryclient import OCI_MANIFEST, RegistryClient, RegistryError
from tests.e2e.test_hostile_servers import HostileServer, hostile  # noqa: F401

HANG_BOUND_S = 20.0
"""Far above every budget used here: only a hang reaches it."""
CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER = bytes(range(256)) * 64
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
LAYER_DIGEST = "sha256:" + hashlib.sha256(LAYER).hexdigest()
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG_DIGEST, "size": len(CONFIG)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": LAYER_DIGEST, "size": len(LAYER)}],
}).encode()
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
SLOW_S = 0.8
"""How long the "slow" registry waits before each answer."""


def _send(conn: socket.socket, status: str, body: bytes = b"", headers: str = "") -> None:
    conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body)


def _hold(conn: socket.socket, server: HostileServer) -> None:
    """Say nothing more until the test ends or the client goes away."""
    conn.settimeout(0.2)
    while not server.stop.is_set():
        try:
            if conn.recv(65536) == b"":
                return
        except socket.timeout:
            continue


def registry(behaviour: str) -> Callable[[socket.socket, bytes, HostileServer], None]:
    """A registry without login holding MANIFEST and its blobs, except where `behaviour` says otherwise:
    "silent" answers nothing at all, "trickled-headers" sends a status line then one header byte at a time (and
    "trickled-after-v2" so after answering GET /v2/), and "trickled-layer" sends the layer's headers then a few
    bytes a second, "slow" answers every request correctly SLOW_S after it came. Uploads are accepted (a target)."""

    def handle(conn: socket.socket, head: bytes, server: HostileServer) -> None:
        method, path = head.split(b" ", 2)[:2]
        path_text = path.decode()
        if behaviour == "slow":
            server.stop.wait(SLOW_S)
        if behaviour == "silent":
            return _hold(conn, server)
        if behaviour == "trickled-headers" or (behaviour == "trickled-after-v2" and path_text != "/v2/"):
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not server.stop.is_set():
                conn.sendall(b"X")
                time.sleep(0.2)
            return
        if path_text == "/v2/":
            return _send(conn, "200 OK", b"{}", "Docker-Distribution-API-Version: registry/2.0\r\n")
        if "/manifests/" in path_text:
            if path_text.startswith("/v2/dst/") and not path_text.endswith(MANIFEST_DIGEST):
                return _send(conn, "404 Not Found")  # the target tag is free
            headers = f"Content-Type: {OCI_MANIFEST}\r\nDocker-Content-Digest: {MANIFEST_DIGEST}\r\n"
            return _send(conn, "200 OK", b"" if method == b"HEAD" else MANIFEST, headers)
        if "/blobs/uploads/" in path_text:
            if method == b"POST":
                return _send(conn, "202 Accepted", headers="Location: /v2/dst/app/blobs/uploads/u1\r\n")
            return _hold(conn, server)  # the upload's PUT: its body arrives as fast as the source sends it
        if "/blobs/" in path_text:
            if path_text.startswith("/v2/dst/"):
                return _send(conn, "404 Not Found")
            blob = CONFIG if path_text.endswith(CONFIG_DIGEST) else LAYER
            if behaviour == "trickled-layer" and blob is LAYER and method == b"GET":
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(blob)}\r\n\r\n".encode())
                for byte in blob:
                    if server.stop.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(0.25)
                return
            return _send(conn, "200 OK", b"" if method == b"HEAD" else blob)
        return _send(conn, "404 Not Found")

    return handle


@pytest.fixture
def blackholed() -> Iterator[str]:
    """host:port of a listener whose accept queue is full: the kernel drops every further SYN, so a connection
    attempt gets no answer at all, as with a firewall that drops packets."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        with pytest.raises(TimeoutError):
            probe.connect(("127.0.0.1", port))
    finally:
        probe.close()
    yield f"127.0.0.1:{port}"
    for sock in fillers + [listener]:
        sock.close()


def _source(hostile, blackholed_server: str, behaviour: str) -> str:  # noqa: F811
    return blackholed_server if behaviour == "blackholed" else hostile(registry(behaviour)).server


def _endpoint(server: str) -> RegistryLogin:
    return RegistryLogin(server, None, None, True)


@pytest.mark.parametrize("behaviour", ["silent", "blackholed", "trickled-headers", "trickled-layer"])
def test_a_copy_ends_at_its_budget(hostile, blackholed, behaviour: str) -> None:  # noqa: F811
    source = _source(hostile, blackholed, behaviour)
    target = hostile(registry("well-behaved")).server
    started = time.monotonic()
    with pytest.raises(CopyError) as err:
        copy_image(_endpoint(source), "src/app", MANIFEST_DIGEST, _endpoint(target), "dst/app", "v1", budget=2.0)
    took = time.monotonic() - started
    assert took < HANG_BOUND_S, f"{behaviour}: the copy ran {took:.1f}s on a 2s budget"
    assert err.value.kind == "unreachable", str(err.value)
    assert "promotion time limit" in str(err.value) and "2s" in str(err.value), str(err.value)
    if behaviour == "trickled-headers":  # it answered (a status line) and stalled: never "did not answer"
        assert (f"{source} answered GET /v2/ with 200, but the rest of its headers did not arrive within the "
                "promotion time limit of 2s") in str(err.value), str(err.value)


def test_a_refresh_read_ends_at_its_budget(hostile, blackholed) -> None:  # noqa: F811
    for behaviour in ("silent", "blackholed", "trickled-headers"):
        started = time.monotonic()
        with pytest.raises(CopyError, match="refresh time limit"):
            target_digest(_endpoint(_source(hostile, blackholed, behaviour)), "dst/app", "v1", budget=1.0)
        assert time.monotonic() - started < HANG_BOUND_S, behaviour


def test_a_layer_below_the_pace_floor_fails_long_before_the_budget(hostile) -> None:  # noqa: F811
    server = hostile(registry("trickled-layer"))
    started = time.monotonic()
    with RegistryClient(server.server, allow_plain_http=True, deadline=time.monotonic() + 120,
                        pace_window=1.0) as client:
        with pytest.raises(RegistryError, match="has stalled") as err:
            for _ in client.get_blob("src/app", LAYER_DIGEST):
                pass
    assert time.monotonic() - started < HANG_BOUND_S
    assert err.value.kind == "unreachable"


def _check_sources(server: str, preview: bool, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """check_sources for two images on `server`, with a 1.5s budget; the warnings it logged."""
    monkeypatch.setattr(copy_module, "CHECK_BUDGET_S", 1.5)
    monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: preview)
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message))
    images = tuple(SourceImage(name, f"{server}/src/{name}", "v1", f"{server}/src/{name}@{MANIFEST_DIGEST}")
                   for name in ("web", "worker"))
    source = SourceStack("dev", server, {"edition": "local"}, images, ())
    check_sources(source, SourceLogin(RegistryLogin(server, None, None, True), "no login (none configured)"))
    return warnings


@pytest.mark.parametrize("behaviour", ["silent", "blackholed", "trickled-headers"])
def test_a_preview_only_warns_when_the_source_does_not_answer_in_time(
        hostile, blackholed, behaviour: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    server = _source(hostile, blackholed, behaviour)
    started = time.monotonic()
    warnings = _check_sources(server, True, monkeypatch)
    assert time.monotonic() - started < HANG_BOUND_S
    assert len(warnings) == 2 and all("preview goes on" in w for w in warnings), warnings
    # The source's host comes from the source stack: the advice never points at this stack's registry setting.
    assert not any("acr-publish:registry.server" in w for w in warnings), warnings
    if behaviour == "blackholed":
        assert any("start the source stack's registry or fix the port in the source stack's `registry` export" in w
                   for w in warnings), warnings
    with pytest.raises(PromotionError, match="source check time limit") as err:
        _check_sources(server, False, monkeypatch)
    assert "acr-publish:registry.server" not in str(err.value), err.value
    assert time.monotonic() - started < 2 * HANG_BOUND_S


def test_the_source_checks_share_one_budget(hostile, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Two images on a silent source take one budget, not one each: the second finds it used up."""
    server = hostile(registry("silent")).server
    first, second = _check_sources(server, True, monkeypatch)
    assert "did not answer GET /v2/ within the source check time limit of 1.5s" in first, first
    assert "used up its 1.5s budget before connecting to the registry" in second, second


def test_an_answering_source_still_passes(hostile, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    server = hostile(registry("well-behaved")).server
    assert _check_sources(server, False, monkeypatch) == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize("conversation", ["copy", "published check", "source check"])
def test_headers_trickled_after_v2_end_at_the_exchange_limit_not_the_budget(
        hostile, conversation: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Each header byte well within the socket timeout: the head as a whole has the exchange's limit, so the
    conversation ends then, not at its budget (an hour for a copy)."""
    monkeypatch.setattr(copy_module, "COPY_TIMEOUT_S", 1.0)
    monkeypatch.setattr(copy_module, "CHECK_BUDGET_S", 600.0)
    source = hostile(registry("trickled-after-v2")).server
    started = time.monotonic()
    if conversation == "copy":
        target = hostile(registry("well-behaved")).server
        with pytest.raises(CopyError) as err:
            copy_image(_endpoint(source), "src/app", MANIFEST_DIGEST, _endpoint(target), "dst/app", "v1", budget=600)
    elif conversation == "published check":
        with pytest.raises(CopyError) as err:
            target_digest(_endpoint(source), "dst/app", "v1", budget=600)
    else:
        monkeypatch.setattr(pulumi.runtime, "is_dry_run", lambda: False)
        image = SourceImage("web", f"{source}/src/web", "v1", f"{source}/src/web@{MANIFEST_DIGEST}")
        with pytest.raises(PromotionError) as err:
            check_sources(SourceStack("dev", source, {"edition": "local"}, (image,), ()),
                          SourceLogin(RegistryLogin(source, None, None, True), "no login (none configured)"))
    assert time.monotonic() - started < HANG_BOUND_S
    assert f"{source} answered " in str(err.value), str(err.value)
    assert ("with 200, but the rest of its headers did not arrive within 1s (the time limit of one exchange); the "
            "registry or a proxy in between is stalling") in str(err.value), str(err.value)


def test_an_image_index_write_ends_at_its_budget(hostile) -> None:  # noqa: F811
    """A registry answering each request correctly but slowly: the write's exchanges (two per child, then the tag)
    together take longer than its budget, and it stops there rather than growing with the children."""
    server = hostile(registry("slow")).server
    children = [{"platform": "linux/amd64", "digest": MANIFEST_DIGEST}] * 3
    started = time.monotonic()
    with pytest.raises(IndexWriteError) as err:
        write_index(server, None, None, True, "src/app", "v1", children, budget=2.0)
    assert time.monotonic() - started < HANG_BOUND_S
    assert "image index time limit of 2s" in str(err.value), str(err.value)


def test_an_image_index_read_ends_at_the_check_budget(hostile, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A refresh of an index reads one tag within the short check budget, as a promotion's refresh does."""
    monkeypatch.setattr(image_index, "CHECK_BUDGET_S", 1.2)
    server = hostile(registry("slow")).server
    props = {"server": server, "repository": "src/app", "tag": "v1", "plainHttp": True, "auth": {}}
    started = time.monotonic()
    with pytest.raises(IndexWriteError) as err:
        ImageIndexProvider().read(f"{server}/src/app:v1", props)
    assert time.monotonic() - started < HANG_BOUND_S
    assert "refresh time limit of 1.2s" in str(err.value), str(err.value)
    monkeypatch.setattr(image_index, "CHECK_BUDGET_S", 30.0)
    assert ImageIndexProvider().read(f"{server}/src/app:v1", props).outs["digest"] == MANIFEST_DIGEST
