"""The transport under the registry client: sessions that trust the system CA store plus REQUESTS_CA_BUNDLE /
SSL_CERT_FILE and retry nothing (`TrustAdapter`, `new_session`), the sockets of one client kept so another thread
can shut them down mid-read (`Sockets`), bodies decoded within a bound (`Decoder`), the pace a body read must keep
(`Pace`), and the plain words of a transport failure (`tls_reason`, `short_reason`, `not_http`, `malformed_http`).
"""
from __future__ import annotations

import http.client
import io
import logging
import os
import socket
import ssl
import threading
import time
import zlib

import requests
import requests.adapters
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from registryclient.scrub import excerpt_text

ERROR_BODY_LIMIT = 64 * 1024
"""Bytes read of any answer that is only reported or parsed for a token or an error (the rest is never read)."""
PACE_WINDOW_S = 60.0
PACE_MIN_BYTES = 64 * 1024
"""A body read must bring at least this many bytes in each PACE_WINDOW_S (about 1 KiB/s: a link slower than that
cannot move a layer in any useful time; a server trickling slower is stalled)."""
CHUNK_SIZE = 1024 * 1024

# urllib3 logs what a server sent where no scrubber sees it (a header line that does not parse, whole, as a warning
# that reaches stderr in any program that configures logging): its records stop at its own logger (a NullHandler).
logging.getLogger("urllib3").propagate = False


class Sockets:
    """A duplicate of every socket one client opened, so `abort()` from another thread can shut them down mid-read.

    A duplicate, because TLS takes the original socket over (`wrap_socket` detaches it); shutting down the duplicate
    shuts down the one connection both name, also in the middle of a TLS handshake. A connection that closes
    closes its duplicate (`release`), or the socket would stay open through it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dups: list[tuple[HTTPConnection, socket.socket]] = []
        self.aborted = False
        self._heard = threading.local()

    def hear(self, status: int | None, *, complete: bool = False) -> None:
        """What the answer this thread waits for brought so far: its status line (None: nothing yet) and whether
        its head is complete. An answer that stops after its status line answered and stalled: not silence."""
        self._heard.value = None if status is None else (status, complete)

    def heard(self) -> tuple[int, bool] | None:
        """(status, head complete) of the answer this thread waits for, or None when nothing of it arrived."""
        return getattr(self._heard, "value", None)

    def add(self, connection: HTTPConnection, sock: socket.socket) -> None:
        try:
            dup = sock.dup()
        except OSError:
            return
        with self._lock:
            self._dups.append((connection, dup))
            aborted = self.aborted
        if aborted:
            _shutdown(dup)

    def release(self, connection: HTTPConnection) -> None:
        """The connection closes: close its duplicate too, or the socket would stay open through it."""
        with self._lock:
            mine = [d for c, d in self._dups if c is connection]
            self._dups = [(c, d) for c, d in self._dups if c is not connection]
        for dup in mine:
            dup.close()

    def shut_all(self) -> None:
        with self._lock:
            self.aborted = True
            dups = [d for _, d in self._dups]
        for dup in dups:
            _shutdown(dup)

    def close(self) -> None:
        with self._lock:
            dups, self._dups = [d for _, d in self._dups], []
        for dup in dups:
            dup.close()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class HeadClock(io.RawIOBase):
    """The reads of one answer from `sock`: those of its head (status line and headers) end together within the
    read timeout the socket had when the answer was awaited, however the server paces them (each read waits only
    what is left); once the head is complete (`head_done`) reads are the socket's again (a body keeps `Pace`)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self.limit = sock.gettimeout()
        self._deadline = None if self.limit is None else time.monotonic() + self.limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:  # type: ignore[override]
        if self._deadline is not None:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the head of the answer did not arrive in time")
            self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def head_done(self) -> None:
        if self._deadline is not None:
            self._deadline = None
            self._sock.settimeout(self.limit)

    def close(self) -> None:
        self._raw.close()
        super().close()


def _tracked_pools(sockets: Sockets) -> dict[str, type]:
    """Connection pool classes whose connections report their sockets to `sockets`."""

    class HeardResponse(http.client.HTTPResponse):
        """Tells `sockets` when the status line arrived and when the head is complete (`Sockets.hear`); the head
        arrives within the exchange's read timeout in all (`HeadClock`), not within it per read."""

        def __init__(self, sock: socket.socket, *args, **kwargs) -> None:
            super().__init__(sock, *args, **kwargs)
            self.fp.close()
            self._clock = HeadClock(sock)
            self.fp = io.BufferedReader(self._clock)

        def _read_status(self) -> tuple[str, int, str]:  # http.client's one reader of the status line
            version, status, reason = super()._read_status()  # type: ignore[misc]
            sockets.hear(status)
            return version, status, reason

        def begin(self) -> None:
            super().begin()
            self._clock.head_done()
            if not sockets.aborted:  # a head cut off by the deadline's shutdown ends as if it were complete
                sockets.hear(self.status, complete=True)

    class Tracked:
        """Mixed into urllib3's connection classes: each new socket is reported, each close released, and each
        answer's head tracked."""

        response_class = HeardResponse

        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()  # type: ignore[misc]
            sockets.add(self, sock)
            return sock

        def connect(self) -> None:
            super().connect()  # type: ignore[misc]
            sockets.hear(None)  # a proxy's answer to CONNECT is not the registry's

        def close(self) -> None:
            sockets.release(self)
            super().close()  # type: ignore[misc]

    class TrackedHTTPConnection(Tracked, HTTPConnection):
        pass

    class TrackedHTTPSConnection(Tracked, HTTPSConnection):
        pass

    class TrackedHTTPPool(HTTPConnectionPool):
        ConnectionCls = TrackedHTTPConnection

    class TrackedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = TrackedHTTPSConnection

    return {"http": TrackedHTTPPool, "https": TrackedHTTPSPool}


class TrustAdapter(requests.adapters.HTTPAdapter):
    """HTTPS with the system CA store plus the bundles named by REQUESTS_CA_BUNDLE / SSL_CERT_FILE; no retries;
    every connection's socket reported to `sockets` (so `RegistryClient.abort` reaches it).

    requests alone uses certifi (or only the env bundle), not the machine's store plus a private CA.
    """

    def __init__(self, sockets: Sockets | None = None) -> None:
        self._context: ssl.SSLContext | None = None
        self._sockets = sockets
        self.extra_bundles: dict[str, str] = {}
        self.missing_bundles: dict[str, str] = {}
        super().__init__(max_retries=urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0,
                                                   raise_on_redirect=False, raise_on_status=False))

    def init_poolmanager(self, *args, **kwargs):  # type: ignore[override]
        super().init_poolmanager(*args, **kwargs)
        if self._sockets is not None:
            self.poolmanager.pool_classes_by_scheme = _tracked_pools(self._sockets)

    def proxy_manager_for(self, proxy, **proxy_kwargs):  # type: ignore[override]
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if self._sockets is not None:  # connections through a proxy are shut down by abort() too
            manager.pool_classes_by_scheme = _tracked_pools(self._sockets)
        return manager

    def build_connection_pool_key_attributes(self, request, verify, cert=None):  # type: ignore[override]
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if host_params.get("scheme") == "https":
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
            pool_kwargs["ssl_context"] = self._trust()
            pool_kwargs["cert_reqs"] = "CERT_REQUIRED"
        return host_params, pool_kwargs

    def _trust(self) -> ssl.SSLContext:
        if self._context is None:  # built on first HTTPS use: loading the CA store costs tens of milliseconds
            context = ssl.create_default_context()
            default = ssl.get_default_verify_paths().cafile
            for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
                path = os.environ.get(var)
                if not path or path in self.extra_bundles.values():
                    continue
                if not os.path.isfile(path):
                    self.missing_bundles[var] = path
                    continue
                if not (default and os.path.exists(default) and os.path.samefile(path, default)):
                    context.load_verify_locations(cafile=path)
                self.extra_bundles[var] = path
            self._context = context
        return self._context

    def trust_summary(self) -> str:
        """Which CAs were trusted, for a TLS failure message."""
        trusted = "the system CA store" + "".join(f" + {var}={path}" for var, path in self.extra_bundles.items())
        missing = "".join(f"; {var}={path} does not exist" for var, path in self.missing_bundles.items())
        return trusted + missing


def new_session(sockets: Sockets | None = None) -> requests.Session:
    """A session with no ~/.netrc credentials and no env CA override of our own context (proxies per request)."""
    session = requests.Session()
    session.trust_env = False
    # Bodies are read raw (bounded, streamed, hashed): ask for them unencoded. A proxy that compresses anyway is
    # decoded by `Decoder`, within the same bounds.
    session.headers["Accept-Encoding"] = "identity"
    adapter = TrustAdapter(sockets)  # its trust settings apply to https only
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def find_cause(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """Walk __cause__/__context__/reason/args, where urllib3 and requests bury the socket or TLS error."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kinds):
            return current
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None),
                        *getattr(current, "args", ())])
    return None


def tls_reason(exc: BaseException) -> str:
    verify = find_cause(exc, (ssl.SSLCertVerificationError,))
    if isinstance(verify, ssl.SSLCertVerificationError) and verify.verify_message:
        return f"certificate verify failed: {verify.verify_message.rstrip('.')}"
    other = find_cause(exc, (ssl.SSLError,))
    if isinstance(other, ssl.SSLError):
        return (other.reason or str(other)).rstrip(".")
    return short_reason(exc)


def short_reason(exc: BaseException) -> str:
    root = exc
    for _ in range(8):
        inner = getattr(root, "reason", None) or root.__cause__ or root.__context__
        if not isinstance(inner, BaseException):
            break
        root = inner
    return excerpt_text(str(root) or type(root).__name__, limit=300)


def not_http(exc: BaseException) -> bytes | None:
    """The first bytes a server sent when they were not an HTTP response, else None (also when it sent none)."""
    bad = find_cause(exc, (http.client.BadStatusLine, http.client.LineTooLong))
    if bad is None or isinstance(bad, http.client.RemoteDisconnected):
        return None
    line = bad.args[0] if bad.args else ""
    if isinstance(bad, http.client.LineTooLong):
        return b"(a line longer than 64 KiB)"
    return line.encode("latin-1", errors="replace") if isinstance(line, str) else bytes(line)


class Decoder:
    """The body of an answer as the server meant it: a `Content-Encoding` of gzip or deflate (which a compressing
    proxy may add although the client asks for identity) is decoded, at most `room` bytes per call, so a small
    compressed answer cannot expand past the bound its reader keeps (a decompression bomb stops there)."""

    def __init__(self, encoding: str) -> None:
        name = encoding.strip().lower()
        if name in ("", "identity"):
            self._z = None
        elif name in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif name == "deflate":
            self._z = zlib.decompressobj()
        else:
            raise ValueError(name)

    def decode(self, data: bytes, room: int) -> bytes:
        """Up to `room` decoded bytes of `data` plus what earlier calls left undecoded (`pending`)."""
        if self._z is None:
            return data
        return self._z.decompress(self._z.unconsumed_tail + data, max(room, 1))

    @property
    def pending(self) -> bool:
        return self._z is not None and bool(self._z.unconsumed_tail)


class Pace:
    """Whether a body read keeps up: at least PACE_MIN_BYTES in every `window` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.start = self.began = time.monotonic()
        self.count = self.total = 0

    def keeps_up(self, received: int) -> bool:
        self.count += received
        self.total += received
        now = time.monotonic()
        if now - self.start < self.window:
            return True
        if self.count < PACE_MIN_BYTES:
            return False
        self.start, self.count = now, 0
        return True

    def rate(self) -> float:
        return self.total / max(time.monotonic() - self.began, 1e-9)


def malformed_http(exc: BaseException) -> str | None:
    """What was malformed when the server answered with something HTTP cannot parse past its status line (a body
    shorter than its length, a bad chunk, a bad header), else None. A connection closed before any answer is not
    this: it says nothing about the answer."""
    bad = find_cause(exc, (http.client.HTTPException, urllib3.exceptions.IncompleteRead,
                           urllib3.exceptions.InvalidChunkLength, urllib3.exceptions.InvalidHeader))
    if bad is None or isinstance(bad, (http.client.RemoteDisconnected, http.client.BadStatusLine,
                                       http.client.LineTooLong)):
        return None
    return f"{type(bad).__name__}: {bad}" if str(bad) else type(bad).__name__

