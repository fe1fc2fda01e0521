"""One registry and one account as the transport sees them (`Connection`, the base of `RegistryClient`): where
the registry is, the time each exchange may take (a deadline kept by a watchdog that shuts the sockets down, a pace
floor on every body read), one request with its body read up to a bound, and the messages of a failed exchange:
short, escaped, credentials masked, ending in advice that names what the caller's user sets (`Advice`).
"""
from __future__ import annotations

import base64
import http
import http.client
import socket
import threading
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping
from urllib.parse import urlsplit

import requests
import urllib3

from buildcontext.printable import escaped
from registryclient.endpoint import Endpoint, is_ip_literal, parse_server, resolve_within
from registryclient.errors import RegistryError
from registryclient.references import ACR_SUFFIX, is_loopback
from registryclient.scrub import EXCERPT_CHARS, SECRET_MAX, Scrubber, excerpt_text
from registryclient.transport import (
    CHUNK_SIZE, ERROR_BODY_LIMIT, PACE_MIN_BYTES, PACE_WINDOW_S, Decoder, Pace, Sockets, TrustAdapter, find_cause,
    malformed_http, new_session, not_http, short_reason, tls_reason,
)

_STATUS_CODES = {status.value for status in http.HTTPStatus}
_STALLING = "; the registry or a proxy in between is stalling"


@dataclass(frozen=True)
class Advice:
    """How the caller's user names what the client was given, for the advice that ends a message: the client knows
    no setting of its own (a stack, a command line and a test each name the registry differently)."""

    server: str = "the registry address"
    """Where the registry's host[:port] comes from: 'check the host and port in <server>'."""
    server_source: str = ""
    """Said after `server` when the host does not resolve, e.g. ' (or the region it is derived from)'."""
    no_credentials: str = "no username and password were given"
    """Ends 'the registry requires a login, but ...' when there are no credentials to log in with."""
    start_loopback: str = "start the registry"
    """What to do when nothing answers on a loopback address: 'nothing answers there: <start_loopback> or ...'."""


class Connection:
    """One registry, one account, as the transport sees it: where it is, the time it may take, the messages.

    `timeout` bounds each socket operation, and the head (status line and headers) of each answer in all
    (`HeadClock`); `deadline` (a `time.monotonic()` value) optionally bounds the whole life of the client: no request
    starts after it, each gets only what is left, and when it passes a watchdog shuts the client's sockets down
    (`abort`), so a body trickled a few bytes at a time, each read well within `timeout`, is cut off there too. A body read also stops when it brings
    fewer than `PACE_MIN_BYTES` in `pace_window` seconds (a stalled layer fails long before a generous deadline).
    `limit_name` and `budget` name the deadline in messages ("preflight time limit"). `label` starts every message
    ("registry preflight for 'host'"); `advice` names what the caller's user sets, for the advice in messages.
    """

    def __init__(self, server: str, username: str | None = None, password: str | None = None, *,
                 allow_plain_http: bool = False, timeout: float = 30.0, deadline: float | None = None,
                 budget: float | None = None, label: str | None = None, limit_name: str = "time limit",
                 pace_window: float = PACE_WINDOW_S,
                 session_factory: Callable[[Sockets], requests.Session] | None = None,
                 anonymous: bool = False, advice: Advice = Advice()) -> None:
        self.server = server
        self.anonymous = anonymous and not username
        """Without credentials, follow a Bearer challenge with an anonymous token (how public images are pulled)."""
        self.username = username
        self.password = password
        self.allow_plain_http = allow_plain_http
        self.timeout = timeout
        self.deadline = deadline
        if budget is None:
            budget = timeout if deadline is None else round(max(0.0, deadline - time.monotonic()), 2)
        self.budget = budget
        """What `deadline` (else `timeout`) allows, as messages name it: given when the deadline is shared by
        several clients, so that each names the whole budget."""
        self.pace_window = pace_window
        self.label = label or f"registry '{server}'"
        self.limit_name = limit_name
        self.scrub = Scrubber()
        try:
            self.scrub.add(password, username=username or "")
        except ValueError:
            raise RegistryError(f"{self.label} failed: the registry password is longer than {SECRET_MAX} characters, "
                                "more than any registry login takes; set the registry's own password", "config"
                                ) from None
        self.basic = base64.b64encode(f"{username or ''}:{password or ''}".encode()).decode()
        self._sockets = Sockets()
        self._following = threading.local()
        """`url`: the Location a server named that this thread is requesting (AuthenticatedConnection.follow);
        `opaque`: whether the answer this thread awaits is a token service's (`opaque_answers`)."""
        self.session = (session_factory or new_session)(self._sockets)
        self._endpoint: Endpoint | None = None
        self.challenge: tuple[str, dict[str, str]] | None = None
        """The auth challenge of GET /v2/ once `login` ran: None = no login needed."""
        self._logged_in = False
        self._tokens: dict[frozenset[str], str] = {}
        self._watchdog: threading.Timer | None = None
        if deadline is not None:
            self._watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), self.abort)
            self._watchdog.daemon = True
            self._watchdog.start()
        self.advice = advice
        self.unexpected_hint = "This is not an answer the registry API specifies"
        """Last sentence of a message about an answer that is not the registry API's (the caller's advice)."""

    # -- lifecycle
    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        self.session.close()
        self._sockets.close()

    def abort(self) -> None:
        """Stop every read of this client now (from any thread): its sockets are shut down."""
        self._sockets.shut_all()

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- messages
    def fail(self, message: str, kind: str = "protocol", status: int | None = None) -> RegistryError:
        """A RegistryError with `message`, whose every part that came from a server or a transport error was
        scrubbed where it was put in (`shown`, `excerpt`, `excerpt_text`): the program's own words are never
        scrubbed, or a password such as `password` or `registry` would be spelled out by what changes in them."""
        return RegistryError(f"{self.label} failed: {message}", kind, status)

    def shown(self, text: str) -> str:
        """Text from a server or a transport error, for a message: short, escaped, withheld if it holds a secret."""
        return excerpt_text(text, self.scrub, limit=300)

    def _own(self, url: str) -> bool:
        """Whether `url` is one the program made on the configured registry (not a Location a server named, which
        may hold anything, on the registry's own origin too)."""
        return url != getattr(self._following, "url", None) and url.startswith(f"{self.endpoint.base}/")

    def path_shown(self, url: str) -> str:
        """The path of `url` for a message: the program's own paths (repositories and tags from the configuration)
        as they are, escaped; a path a server named like any server text."""
        path = urlsplit(url).path
        return escaped(path) if self._own(url) else self.shown(path)

    @contextmanager
    def opaque_answers(self) -> Iterator[None]:
        """Within it, this thread's answers are a token service's: a token in them (in a status line, a header, a
        body) is not known to the scrubber yet, so messages describe them (`answer_text`), never excerpt them."""
        self._following.opaque = True
        try:
            yield
        finally:
            self._following.opaque = False

    def answer_text(self, text: str | bytes, limit: int = EXCERPT_CHARS) -> str:
        """Text of an answer (its status line, a header, its body, a transport error quoting them) for a message: a
        scrubbed excerpt, or within `opaque_answers` only its length."""
        if getattr(self._following, "opaque", False):
            return f"{len(text)} characters, not shown: a token service's answer may hold credentials"
        return excerpt_text(text, self.scrub, limit=limit)

    def excerpt(self, response: requests.Response) -> str:
        return self.answer_text(response.content or b"")

    def unexpected(self, method: str, url: str, response: requests.Response, hint: str = "") -> RegistryError:
        """`url` is the program's own (the registry's base and a path), or already `shown` when a server named it."""
        reason = response.reason or ""
        # A status's standard phrase is the program's own word for it (a password such as 'Not Found' must not leave
        # a gap there); any other phrase is the server's text.
        standard = http.HTTPStatus(response.status_code).phrase if response.status_code in _STATUS_CODES else None
        reason = standard if reason == standard else self.answer_text(reason, 300) if reason else ""
        return self.fail(
            f"{method} {url} answered {response.status_code} {reason}".rstrip()
            + f": {self.excerpt(response)}. "
            + (hint or self.unexpected_hint),
            "protocol", response.status_code,
        )

    @property
    def user_phrase(self) -> str:
        return f"user '{escaped(self.username)}'" if self.username else "anonymous access"

    # -- where
    @property
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            try:
                self._endpoint = parse_server(self.server, allow_plain_http=self.allow_plain_http)
            except ValueError as err:
                raise self.fail(f"{self.advice.server} {err}", "config") from None
        return self._endpoint

    @property
    def is_acr(self) -> bool:
        return self.endpoint.host.lower().endswith(ACR_SUFFIX)

    def remaining(self, what: str) -> float:
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.fail(
                f"the check used up its {self.budget:g}s budget before {what}; the registry or the network is too "
                "slow to answer",
                "unreachable",
            )
        return min(left, self.timeout)

    def resolve(self) -> None:
        """Fail with kind "unreachable" when the host does not resolve within the time left."""
        endpoint = self.endpoint
        # An IP literal needs no resolver: a budget spent by now was spent before connecting.
        spent_before = "connecting to the registry" if is_ip_literal(endpoint.host) else "resolving the host"
        problem = resolve_within(endpoint.host, endpoint.effective_port, self.remaining(spent_before))
        if problem is None:
            return
        hint = f"check {self.advice.server}{self.advice.server_source} for a typo"
        if "-vpc" in endpoint.host.lower() or "-internal" in endpoint.host.lower():
            hint += "; a VPC or internal endpoint resolves only inside its VPC, so use the public endpoint here"
        raise self.fail(f"cannot resolve host '{endpoint.host}' ({problem}); {hint}", "unreachable")

    # -- one exchange
    def send(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, data=None,
             what: str = "", limit: int = ERROR_BODY_LIMIT, stream: bool = False) -> requests.Response:
        """One request, no redirect followed; the body read up to `limit` bytes (or left to stream when `stream`).

        It sends `headers` as given: `request` (the registry's own origin), `login` and the token fetch (the realm
        the registry's challenge named) and `follow` (credentials only on the registry's origin) decide what goes
        where. Transport failures become RegistryError.
        """
        try:
            parts = urllib3.util.parse_url(url)  # the parser requests sends with: resolve the host it connects to
        except urllib3.exceptions.LocationParseError:
            raise self.fail(f"the registry sent an unusable URL: {excerpt_text(url, self.scrub)}") from None
        host = (parts.host or "").strip("[]")
        left = self.remaining(what or f"{method} {parts.path}")
        self._sockets.hear(None)
        try:
            # The proxy settings of the environment apply as they would to docker, except for loopback hosts.
            proxies = {} if is_loopback(host) else requests.utils.get_environ_proxies(url)
            response = self.session.request(
                method, url, headers=dict(headers or {}), data=data, timeout=(left, left), allow_redirects=False,
                proxies=proxies, stream=True,
            )
            if not stream:
                self._read_bounded(response, limit, method, url, left)
            return response
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:  # requests' errors are OSErrors
            problem, kind = self._transport_problem(exc, method, url, parts, left)
        # Raised outside the except block so the RegistryError carries no chained transport exception.
        raise self.fail(problem, kind)

    def _transport_problem(self, exc: BaseException, method: str, url: str, parts: urllib3.util.Url,
                           left: float) -> tuple[str, str]:
        """(message, kind) for a request that failed in transport: `left` is the socket timeout it had."""
        host = (parts.host or "").strip("[]")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # A followed Location names a host the server chose: shown like any server text; the configured host is the
        # program's own word, never withheld (a gap there would say the password is part of the host).
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        hostport = escaped(hostport) if self._own(url) else excerpt_text(hostport, self.scrub)
        if isinstance(exc, requests.exceptions.SSLError):
            if self._sockets.aborted:  # the deadline's watchdog cut the handshake off: no TLS verdict to give
                return self._silent(hostport, method, self.path_shown(url)), "unreachable"
            return (
                f"TLS with {hostport} failed: {self.shown(tls_reason(exc))} (trusted: {self._trust_summary()}). "
                "If the registry uses a private or self-signed "
                "CA, add that CA to the system trust store or point REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) at it; "
                f"if it names another host, use that host in {self.advice.server}"
            ), "tls"
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return (f"connecting to {hostport} timed out after {self._limit(left)}; "
                    f"{self.unreachable_hint(host)}"), "unreachable"
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return self._silent(hostport, method, self.path_shown(url), left), "unreachable"
        if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
            return self._connection_problem(exc, method, url, parts, hostport, left)
        # requests refuses some URLs a server named (a host that changes under NFKC normalization, say) with a
        # bare ValueError: an unusable location, never a traceback.
        return f"the registry named an unusable location: {excerpt_text(url, self.scrub)}", "protocol"

    def _connection_problem(self, exc: BaseException, method: str, url: str, parts: urllib3.util.Url,
                            hostport: str, left: float) -> tuple[str, str]:
        host = (parts.host or "").strip("[]")
        first_bytes = not_http(exc)
        cause = find_cause(exc, (socket.gaierror,))
        if self._sockets.aborted:  # cut off by the deadline before the answer's head was complete
            return self._silent(hostport, method, self.path_shown(url)), "unreachable"
        short = find_cause(exc, (urllib3.exceptions.IncompleteRead, http.client.IncompleteRead))
        # (A chunk length that is no number surfaces as an IncompleteRead over a ValueError: malformed, below.)
        if short is not None and find_cause(exc, (urllib3.exceptions.InvalidChunkLength, ValueError)) is None \
                and (heard := self._sockets.heard()) is not None:
            # A body shorter than its length, the connection then closed: it answered and broke off (an answer
            # HTTP calls incomplete, so a protocol failure, not an unreachable host).
            return (f"{hostport} answered {method} {self.path_shown(url)} with {heard[0]}, but closed the connection "
                    f"before the rest of its answer arrived ({self.answer_text(str(short), 300)}); the registry or a "
                    "proxy in between broke it off"), "protocol"
        if (malformed := malformed_http(exc)) is not None:
            return (f"{hostport} answered {method} {self.path_shown(url)}, but not with a "
                    f"well-formed HTTP answer ({self.answer_text(malformed)}); check the host and port "
                    f"in {self.advice.server}, and whether a proxy in between mangles answers"), "protocol"
        if first_bytes is not None and first_bytes[:1] in (b"\x15", b"\x16") and first_bytes[1:2] == b"\x03":
            # A TLS record (an alert or a handshake) in answer to plain HTTP: the port serves HTTPS.
            return (f"{hostport} answered in TLS: it serves HTTPS, but this registry is spoken to in plain HTTP (a "
                    "loopback registry of the local edition, as docker does); serve the registry in plain HTTP "
                    f"there, or fix the port in {self.advice.server}"), "protocol"
        if first_bytes is not None:
            return (f"{hostport} answered, but not as a registry (not HTTP): {self.answer_text(first_bytes)}; "
                    f"check the host and port in {self.advice.server}"), "protocol"
        if find_cause(exc, (TimeoutError, socket.timeout)) is not None or "timed out" in str(exc):
            return self._silent(hostport, method, self.path_shown(url), left), "unreachable"
        if cause is not None or "NameResolutionError" in repr(exc):
            reason = self.shown(str(cause or "name resolution failed"))
            return f"cannot resolve host {self.shown(repr(host))} ({reason})", "unreachable"
        if find_cause(exc, (ConnectionRefusedError,)) is not None or "refused" in str(exc).lower():
            return f"connection to {hostport} refused; {self.unreachable_hint(host)}", "unreachable"
        if find_cause(exc, (http.client.RemoteDisconnected,)) is not None and self._sockets.heard() is None:
            return (f"{hostport} accepted the connection, but closed it without answering {method} "
                    f"{self.path_shown(url)}; check the host and port in {self.advice.server}, and that a registry "
                    "(not another service or a proxy that refuses this machine) listens there"), "unreachable"
        if (cut := find_cause(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError))) is not None:
            # Something listens there and cut the connection: "nothing answers" would send the user the wrong way.
            reason = getattr(cut, "strerror", None) or type(cut).__name__
            if (heard := self._sockets.heard()) is not None:  # and it had begun to answer
                return (f"{hostport} answered {method} {self.path_shown(url)} with {heard[0]}, but "
                        f"cut the connection ({self.shown(reason)}) before the rest of its "
                        f"{'answer' if heard[1] else 'headers'} arrived; the registry or a proxy in between broke "
                        "it off"), "unreachable"
            return (f"{hostport} cut the connection ({self.shown(reason)}); check the host and port in "
                    f"{self.advice.server}, and that a registry (not another service or a proxy that refuses this "
                    "machine) listens there"), "unreachable"
        return (f"cannot connect to {hostport}: {self.answer_text(short_reason(exc), 300)}; "
                f"{self.unreachable_hint(host)}"), "unreachable"

    def _read_bounded(self, response: requests.Response, limit: int, method: str, url: str,
                      waited: float | None = None) -> None:
        """Read at most `limit` bytes of the body into response.content (`response.truncated` says whether there
        was more); past that, drop the connection. `waited`: the socket timeout of each read, for messages."""
        body = bytearray()
        raw = response.raw
        pace = Pace(self.pace_window)
        decoder = self._decoder(response, method, url)
        if method == "HEAD":
            raw.read()  # http.client reads no body for HEAD, but reading closes the answer: the connection is reused
        else:
            while len(body) <= limit:
                if self._sockets.aborted:
                    break
                try:
                    piece = b"" if decoder.pending else raw.read1(min(CHUNK_SIZE, limit + 1 - len(body)))
                except (urllib3.exceptions.ReadTimeoutError, TimeoutError):
                    raw.close()
                    raise self.fail(self._body_stalled(response, method, url, waited), "unreachable") from None
                if not piece and not decoder.pending:
                    break
                body += self._decoded(decoder, piece, limit + 1 - len(body), method, url)
                if not pace.keeps_up(len(piece)):
                    raw.close()
                    raise self.fail(self._stalled(f"the answer to {method} {self.path_shown(url)}", pace),
                                    "unreachable")
        if self._sockets.aborted:
            raw.close()
            path = self.path_shown(url)
            if (heard := self._sockets.heard()) is not None and not heard[1]:  # the head itself was cut off
                raise self.fail(self._silent(self.endpoint.netloc, method, path), "unreachable")
            raise self.fail(self._stopped(f"reading the answer to {method} {path}"), "unreachable")
        response.truncated = len(body) > limit  # type: ignore[attr-defined]
        response._content = bytes(body[:limit])
        response._content_consumed = True
        if response.truncated or self._sockets.aborted:  # type: ignore[attr-defined]
            raw.close()  # the rest is never read: the connection is closed now, never reused
        raw.release_conn()

    def _body_stalled(self, response: requests.Response, method: str, url: str, waited: float | None) -> str:
        """The registry answered (status and headers) but its body stopped arriving: not "did not answer"."""
        return (f"{self.endpoint.netloc} answered {method} {self.path_shown(url)} with "
                f"{response.status_code}, but the rest of its answer did not arrive within "
                f"{self._limit(waited)}{_STALLING}")

    def _decoder(self, response: requests.Response, method: str, url: str) -> Decoder:
        encoding = response.headers.get("Content-Encoding", "")
        try:
            return Decoder(encoding)
        except ValueError:
            response.raw.close()
            raise self.fail(f"{method} {excerpt_text(urlsplit(url).path, self.scrub)} was answered with "
                            f"Content-Encoding {self.answer_text(encoding)}, which this client does not "
                            "decode (it asks for identity; gzip and deflate are decoded); a proxy between here and "
                            "the registry recodes answers: let it pass them unchanged") from None

    def _decoded(self, decoder: Decoder, piece: bytes, room: int, method: str, url: str) -> bytes:
        try:
            return decoder.decode(piece, room)
        except zlib.error:
            raise self.fail(f"the compressed answer to {method} {excerpt_text(urlsplit(url).path, self.scrub)} "
                            "is corrupt (its Content-Encoding does not decode)") from None

    def _stopped(self, what: str) -> str:
        return (f"{what} was stopped at the {self.limit_name} of {self.budget:g}s; the registry or the network is "
                "too slow to answer")

    def _stalled(self, what: str, pace: "Pace") -> str:
        return (f"the registry sent {what} at {pace.rate():.3g} bytes/s, fewer than {PACE_MIN_BYTES} bytes in "
                f"{self.pace_window:g}s: it has stalled (a link or a registry this slow cannot move an image)")

    def _trust_summary(self) -> str:
        adapter = self.session.get_adapter("https://")
        return adapter.trust_summary() if isinstance(adapter, TrustAdapter) else "the system CA store"

    def _limit(self, waited: float | None) -> str:
        """The limit that ended a wait, as a message names it: the budget when the deadline cut the exchange off
        or bounded the socket timeout `waited` (less than one exchange's own limit), else that timeout."""
        if waited is None or self._sockets.aborted or waited >= self.budget or waited < self.timeout:
            return f"the {self.limit_name} of {self.budget:g}s"
        return f"{round(waited, 3):g}s (the time limit of one exchange)"

    def _silent(self, hostport: str, method: str, path: str, waited: float | None = None) -> str:
        """`waited`: the socket timeout that ran out (None: the deadline's watchdog cut the exchange off). An answer
        whose status line came and whose headers or body then stopped answered and stalled: it is said so."""
        limit = self._limit(waited)
        if (heard := self._sockets.heard()) is not None:
            return (f"{hostport} answered {method} {path} with {heard[0]}, but the rest of its "
                    f"{'answer' if heard[1] else 'headers'} did not arrive within {limit}{_STALLING}")
        return (
            f"{hostport} accepted the connection but did not answer {method} {path} within "
            f"{limit}; it may not be a registry (or not speak "
            f"{'plain HTTP' if self.endpoint.scheme == 'http' else 'HTTPS'}), or it is overloaded"
        )

    def unreachable_hint(self, host: str) -> str:
        if is_loopback(host):
            return f"nothing answers there: {self.advice.start_loopback} or fix the port in {self.advice.server}"
        hint = f"check the host and port in {self.advice.server} and that this machine may reach it"
        if host.lower().endswith(ACR_SUFFIX):
            hint += (
                " (an ACR Enterprise instance has its internet endpoint off until it is enabled and this "
                "machine's address is allowed)"
            )
        return hint
