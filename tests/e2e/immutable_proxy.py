"""ACR tag immutability for the e2e registry: a small HTTP proxy in front of Debian's `docker-registry`.

An Enterprise ACR repository with `tagImmutability: true` refuses a push of an existing tag when the pushed manifest
differs from the one the tag names ("The requested tag already exists and cannot be overwritten",
ACR's own message); a push of the identical manifest, and every pull, pass. distribution 2.8 has no such
setting, so `ImmutableTagProxy` sits in front of it and refuses the manifest PUT itself. A proxy rather than a check
inside the docker.Image stand-in, so every client is refused alike: the Docker engine pushing for the stand-in, the
program's own registry calls, a test's direct upload.

What it knows of ACR is the message only. The HTTP status (400) and the error code (TAG_INVALID, the registry API's
code for a refused tag) are this proxy's choice: ACR's own status and code are not documented in what this project
has read, and the Docker engine shows `<code text>: <message>` either way.

Everything else is forwarded unchanged (the Host header too, so the registry's `Location` URLs name the proxy),
request and response bodies are streamed in bounded chunks, and a manifest body is read up to distribution's own
4 MiB limit. Why no library: a forwarding proxy that keeps chunked uploads, HEAD semantics and the Host header is
a few dozen lines on the standard library's http.server/http.client; mitmproxy (the well-kept option) would bring a
TLS-intercepting stack and an event loop the tests do not need.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["ACR_IMMUTABLE_TAG_MESSAGE", "ImmutableTagProxy"]

ACR_IMMUTABLE_TAG_MESSAGE = "The requested tag already exists and cannot be overwritten"
MANIFEST_LIMIT = 4 * 1024 * 1024
CHUNK = 64 * 1024
UPSTREAM_TIMEOUT_S = 120.0
MANIFEST_ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade"}
# PUT /v2/<name>/manifests/<reference>; a digest reference ("sha256:...") is never a tag.
_MANIFEST_PUT = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/?]+)(?:\?.*)?$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        pass  # the registry logs; a line per blob chunk here would only bury it

    def do_GET(self) -> None:
        self._forward()

    do_HEAD = do_POST = do_PATCH = do_DELETE = do_GET

    def do_PUT(self) -> None:
        match = _MANIFEST_PUT.match(self.path)
        if not match or match["reference"].startswith("sha256:"):
            self._forward()
            return
        body = self._read_manifest()
        if body is None:
            return
        # One manifest PUT at a time: a check-then-put race between two pushes of one tag would let both through.
        with self.server.manifest_lock:
            current = self._upstream_digest(match["name"], match["reference"])
            pushed = "sha256:" + hashlib.sha256(body).hexdigest()
            if current is not None and current != pushed:
                self.server.refused.append(f"{match['name']}:{match['reference']}")
                self._refuse(match["reference"])
                return
            self._forward(body=body)

    # -- helpers
    def _read_manifest(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b"".join(self._chunks(MANIFEST_LIMIT))
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MANIFEST_LIMIT:
                self.close_connection = True
                self._error(413, "MANIFEST_INVALID", f"manifest larger than {MANIFEST_LIMIT} bytes")
                return None
            data = self.rfile.read(length)
        if len(data) > MANIFEST_LIMIT:
            self.close_connection = True  # the rest of the body was not read
            self._error(413, "MANIFEST_INVALID", f"manifest larger than {MANIFEST_LIMIT} bytes")
            return None
        return data

    def _pieces(self, length: int):
        """`length` bytes of the request body in bounded pieces (fewer if the client hangs up)."""
        remaining = length
        while remaining:
            piece = self.rfile.read(min(CHUNK, remaining))
            if not piece:
                return
            remaining -= len(piece)
            yield piece

    def _chunks(self, limit: int | None = None):
        """The request body of a chunked upload, de-chunked, as bounded pieces; stops once past `limit`."""
        total = 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            for piece in self._pieces(size):
                total += len(piece)
                yield piece
                if limit is not None and total > limit:
                    return
            self.rfile.readline(1024)

    def _body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._chunks(), True
        length = int(self.headers.get("Content-Length") or 0)
        return (self._pieces(length), False) if length else (None, False)

    def _upstream(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.server.upstream_host, self.server.upstream_port,
                                          timeout=UPSTREAM_TIMEOUT_S)

    def _upstream_digest(self, name: str, tag: str) -> str | None:
        """The digest the tag names now, asked with the pusher's own credentials; None when the tag is free."""
        connection = self._upstream()
        try:
            headers = {"Accept": MANIFEST_ACCEPT, "Host": self.headers.get("Host") or self.server.address}
            if self.headers.get("Authorization"):
                headers["Authorization"] = self.headers["Authorization"]
            connection.request("HEAD", f"/v2/{name}/manifests/{tag}", headers=headers)
            response = connection.getresponse()
            response.read()
            return response.getheader("Docker-Content-Digest") if response.status == 200 else None
        finally:
            connection.close()

    def _forward(self, body: bytes | None = None) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body is not None:
            payload, chunked = body, False
            headers["Content-Length"] = str(len(body))
        else:
            payload, chunked = self._body()
        connection = self._upstream()
        answered = False
        try:
            connection.request(self.command, self.path, body=payload, headers=headers, encode_chunked=chunked)
            response = connection.getresponse()
            answered = True
            self.send_response_only(response.status, response.reason)
            length = response.getheader("Content-Length")
            for key, value in response.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            stream_chunked = length is None and self.command != "HEAD" and response.status not in (204, 304)
            if stream_chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command == "HEAD":
                return
            while True:
                piece = response.read(CHUNK)
                if not piece:
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if stream_chunked else piece)
            if stream_chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError as exc:
            self.close_connection = True
            if not answered:  # once the upstream's answer started, only closing the connection is honest
                self._error(502, "UNAVAILABLE", f"upstream registry: {exc}")
        finally:
            connection.close()

    def _refuse(self, tag: str) -> None:
        self._error(400, "TAG_INVALID", ACR_IMMUTABLE_TAG_MESSAGE, detail={"tag": tag})

    def _error(self, status: int, code: str, message: str, detail: object = None) -> None:
        data = json.dumps({"errors": [{"code": code, "message": message, "detail": detail}]}).encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    upstream_host: str
    upstream_port: int
    address: str
    manifest_lock: threading.Lock
    refused: list[str]


class ImmutableTagProxy:
    """Listens on 127.0.0.1:<free port> and forwards to `upstream` ("host:port"), refusing tag overwrites.

    `refused` lists every `<repository>:<tag>` whose overwrite it refused.
    """

    def __init__(self, upstream: str, host: str = "127.0.0.1"):
        upstream_host, _, upstream_port = upstream.rpartition(":")
        self._server = _Server((host, 0), _Handler)
        self._server.upstream_host, self._server.upstream_port = upstream_host, int(upstream_port)
        self._server.manifest_lock = threading.Lock()
        self._server.refused = []
        self._server.address = f"{host}:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    @property
    def server(self) -> str:
        """host:port clients push to."""
        return self._server.address

    @property
    def refused(self) -> list[str]:
        return self._server.refused

    def start(self) -> "ImmutableTagProxy":
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"immutable-proxy-{self.server}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
