"""A base's index that a resolution cannot read says why: one nested past the bounded parser's depth is named as
such (what the registry sent is out of bounds), not only "not JSON". The registry is a loopback socket server."""
from __future__ import annotations

import hashlib
import socket
import time

from components.remote_inputs import ResolveFailure, resolve_platforms
from registryclient import OCI_INDEX
from tests.e2e.test_hostile_servers import HostileServer, hostile  # noqa: F401

DEEP_INDEX = b'{"schemaVersion": 2, "manifests": ' + b"[" * 100 + b"]" * 100 + b"}"


def _registry(conn: socket.socket, head: bytes, server: HostileServer) -> None:
    if head.startswith(b"GET /v2/ ") or head.startswith(b"HEAD /v2/ "):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n"
                     b"Docker-Distribution-API-Version: registry/2.0\r\n\r\n{}")
        return
    digest = "sha256:" + hashlib.sha256(DEEP_INDEX).hexdigest()
    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {OCI_INDEX}\r\nDocker-Content-Digest: {digest}\r\n"
                 f"Content-Length: {len(DEEP_INDEX)}\r\nConnection: close\r\n\r\n".encode() + DEEP_INDEX)


def test_an_index_nested_past_the_parsers_depth_is_named_as_such(hostile):  # noqa: F811
    server = hostile(_registry).server
    found = resolve_platforms(f"{server}/base/deep:1", ["linux/amd64"], None, time.monotonic() + 30)
    failure = found["linux/amd64"]
    assert isinstance(failure, ResolveFailure)
    assert "nested deeper than 64 levels" in str(failure), str(failure)
    assert failure.kind == "protocol"
