"""The registry client: everything that talks to a container registry's HTTP API v2 goes through here.

Owns the transport (TLS with the system store plus REQUESTS_CA_BUNDLE / SSL_CERT_FILE, proxies from the
environment except for loopback hosts, no retries, no redirects followed blindly), the login through the
registry's own challenge (Basic, or Bearer from the token realm that challenge names, with tokens asked per
repository scope and cached per scope), manifests (HEAD -> digest or absent; GET -> media type, bytes, digest; PUT
of bytes unchanged with their media type: Docker v2 schema 2 manifests and manifest lists, OCI manifests and
indexes), blobs (HEAD, cross-repository mount, GET streamed in chunks, PUT streamed from an iterator, monolithic or
chunked), and tag lists. The preflight (components/preflight.py) and the "is this tag already published?" check
use it; it has no Pulumi import.

Rules it keeps wherever it talks to a registry:
- credentials (the Basic credential, Bearer tokens) go only to the registry's own scheme, host and port, and the
  Basic credential also to the token realm named by that registry's challenge; never to a `Location` or redirect
  on another host (an upload URL or a blob redirect elsewhere is reached without an Authorization header);
- every response body is read up to a bound (`ERROR_BODY_LIMIT` for answers we only report, `MANIFEST_LIMIT` for
  manifests, the same bound distribution applies); blobs are streamed in chunks and never held whole;
- a client can be aborted from another thread (`abort()`): its sockets are shut down, so a worker abandoned by a
  time budget stops reading at once instead of reading on;
- text a server sent reaches a message only as a short, printable, escaped excerpt, with every form of the
  credentials (raw, percent-, form-, HTML- and JSON-encoded, base64, hex and base32 of any text holding them,
  UTF-16, a run of 8 of their characters, Bearer and Basic header values) masked (`Scrubber`); the program's own
  words are never masked. The masks of secrets up to 128 characters are regular expressions run on RE2
  (google-re2, already pinned for .dockerignore): a server chooses the text they run over, and Python's `re`
  backtracks polynomially on a secret with runs of spaces or backslashes against such text; longer secrets are
  literal text searched in Python, so no pattern can outgrow RE2 (which writes to stderr when one does);
- every exchange of a client with a deadline ends by it (a watchdog shuts its sockets down), and every body read
  keeps a pace floor; bodies are asked for unencoded, and gzip or deflate a proxy adds is decoded within the bounds.

Why no library: python-dxf 12.1.1 reads every body whole (`r.content`, `r.json()`), follows redirects with the
Authorization header it set itself and PUTs uploads to whatever host `Location` names with it, forces https on
the token realm and upload URL (no loopback registry with a login), and keeps one token per client rather than
per scope. oras 0.2.x also reads bodies whole (`response.json()`), retries by decorator, loads
~/.docker/config.json credentials on its own, returns manifests parsed (not the bytes that were digested) and has
no blob mount. Both are requests underneath; this module uses requests 2.x / urllib3 2.x directly (already
pinned) so the three rules above hold by construction.
"""
from __future__ import annotations

import base64
import hashlib
import html.entities
import http.client
import ipaddress
import itertools
import json
import os
import re
import socket
import ssl
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import urlencode, urljoin, urlsplit

import re2
import requests
import requests.adapters
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from buildcontext.printable import escaped
from components.docker_rules import DIGEST

__all__ = [
    "ACR_SUFFIX", "ERROR_BODY_LIMIT", "MANIFEST_LIMIT", "MANIFEST_MEDIA_TYPES", "Manifest", "RegistryClient",
    "RegistryError", "Scrubber", "excerpt_text", "is_loopback", "parse_server", "parse_www_authenticate",
]

ACR_SUFFIX = ".aliyuncs.com"
ERROR_BODY_LIMIT = 64 * 1024
"""Bytes read of any answer that is only reported or parsed for a token or an error (the rest is never read)."""
MANIFEST_LIMIT = 4 * 1024 * 1024
"""Bytes read of a manifest: distribution refuses manifests larger than 4 MiB, so a larger answer is not one."""
EXCERPT_CHARS = 200
_STATUS_CODES = {status.value for status in http.HTTPStatus}
PACE_WINDOW_S = 60.0
PACE_MIN_BYTES = 64 * 1024
"""A body read must bring at least this many bytes in each PACE_WINDOW_S (about 1 KiB/s: a link slower than that
cannot move a layer in any useful time; a server trickling slower is stalled)."""
CHUNK_SIZE = 1024 * 1024
MASK = "***"
# The shortest secret scrubbed inside free text: shorter "secrets" would mangle ordinary words of a message. Settings
# refuse shorter registry passwords (ACR's are 8-32 characters; the local edition's LOCAL_PASSWORD_MIN is this).
MIN_SCRUB_LEN = 4

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
# All of them in Accept, or distribution answers a HEAD/GET of an index with a converted manifest and another digest.
_MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)


class RegistryError(Exception):
    """A registry exchange failed; str() is a person-readable message free of secrets and raw server bytes.

    `kind`: "unreachable" (no answer: resolution, refused, timed out), "tls", "auth" (credentials rejected or
    missing), "forbidden" (the account lacks a permission), "config" (the server setting itself), "protocol" (an
    answer that is not what the registry API specifies), "absent" (a blob or manifest the caller required is
    missing). `status` is the HTTP status when there was one.
    """

    def __init__(self, message: str, kind: str = "protocol", status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status


@dataclass(frozen=True)
class Manifest:
    """A manifest exactly as the registry stores it."""

    media_type: str
    content: bytes
    digest: str
    """`sha256:` of `content`, checked against the registry's Docker-Content-Digest when it sends one."""


# --- text from servers, and the secrets that must never be in it ---------------------------------------------------

_HEADER_CREDENTIAL = re.compile(r"\b(Bearer|Basic)(\s+|%20|\+)[A-Za-z0-9._~+/=%-]{4,}", re.IGNORECASE)


_JSON_SHORT = {'"': '"', "\\": "", "/": "/", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}
"""JSON's two-character escapes, after the backslash."""
_B64_CHAR = re.compile("[A-Za-z0-9+/_-]")
SCRUB_FRAGMENT = 8
ENCODED_FORMS_MAX = 128
"""Secrets up to this long are matched in every encoding as RE2 patterns (passwords: ACR's are at most 32
characters): the pattern of a longer one could outgrow RE2's memory, and RE2 then writes to stderr (the start of the
pattern, i.e. of the secret) before failing. A longer secret (a token) is masked as literal text, its base64, hex,
base32 and UTF-16 forms, and its fragments, in plain Python."""
SECRET_MAX = 16384
"""The longest secret the scrubber takes (a configured password is held to settings' bound, far below; a token
service's token longer than this is refused): its masks are built per character."""
"""A run this long of a secret longer than it is masked on its own: a token cut short, or shown in part, leaks."""
B64_CORE_MIN = 6
"""The shortest base64 run (of a secret at some byte offset) masked inside a longer base64 token: shorter runs occur
in ordinary words."""


def _char_forms(ch: str) -> str:
    """A regex for one character of a secret in any encoding a server may echo it in: itself, percent-encoded
    (either case), `+` for a space (form encoding), an HTML entity (named, decimal or hex) and a JSON escape."""
    data = ch.encode()
    forms = [re2.escape(ch), "(?i:" + "".join(f"%{b:02x}" for b in data) + ")"]
    # HTML entities, also escaped again (&amp;lt;: a page quoting an escaped body).
    amp = "&(?:amp;)*"
    name = html.entities.codepoint2name.get(ord(ch))
    if name:
        forms.append(f"{amp}{name};")
    forms += [f"{amp}#0*{ord(ch)};", f"(?i:{amp}#x0*{ord(ch):x};)"]
    if ch == "'":
        forms.append(f"{amp}apos;")
    # JSON escapes with any run of backslashes: JSON inside JSON (a body quoted in an error message) doubles them.
    if ch in _JSON_SHORT:
        forms.append(r"\\+" + re2.escape(_JSON_SHORT[ch]))
    units = [ord(ch)] if ord(ch) < 0x10000 else [0xD800 + ((ord(ch) - 0x10000) >> 10), 0xDC00 + (ord(ch) & 0x3FF)]
    forms.append("(?i:" + "".join(rf"\\+u{u:04x}" for u in units) + ")")
    return "(?:" + "|".join(forms) + ")"


def _secret_pattern(secret: str) -> str:
    """A regex for `secret` with each character in any of its forms (`_char_forms`). A run of whitespace is one
    repeated group that takes any whitespace or `+` as well (excerpts fold whitespace runs; form encoding writes +
    for a space): a single quantifier per run, so a long run of spaces in a body cannot make the match backtrack
    polynomially (the whole pattern runs on RE2, linear in the text anyway)."""
    parts: list[str] = []
    for is_space, run in itertools.groupby(secret, key=str.isspace):
        chars = "".join(run)
        if is_space:
            parts.append("(?:" + "|".join([r"\s", r"\+"] + [_char_forms(ch) for ch in sorted(set(chars))]) + ")+")
        else:
            parts += [_char_forms(ch) for ch in chars]
    return "".join(parts)


def _base64_cores(data: bytes) -> set[str]:
    """The base64 characters that depend on `data` alone, at each of the three byte offsets `data` can sit at inside
    a longer string, in the standard and the URL-safe alphabet: whatever surrounds it, its base64 holds these."""
    cores: set[str] = set()
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + data).decode()
        core = encoded[(8 * k + 5) // 6:(8 * (k + len(data))) // 6]
        cores |= {core, core.translate(str.maketrans("+/", "-_"))}
    return cores


def _base32_cores(data: bytes) -> set[str]:
    """The base32 characters that depend on `data` alone, at each of the five byte offsets it can sit at inside a
    longer string (as `_base64_cores` does for base64)."""
    cores = set()
    for k in range(5):
        encoded = base64.b32encode(b"\0" * k + data).decode()
        cores.add(encoded[(8 * k + 4) // 5:(8 * (k + len(data))) // 5])
    return cores


def _literal_spans(text: str, literals: Iterable[str]) -> list[tuple[int, int]]:
    """(start, end) of every occurrence of each literal in `text` (plain substring search: no regex engine)."""
    spans = []
    for literal in literals:
        start = text.find(literal)
        while start >= 0:
            spans.append((start, start + len(literal)))
            start = text.find(literal, start + 1)
    return spans


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


class Scrubber:
    """Masks every form a credential can take in text: raw; percent-encoded in either case, `+` for space, HTML- and
    JSON-escaped, in any mixture; base64 (either alphabet, padded or not), hex (either case) and base32 of any
    string holding it, such as user:password; UTF-16 (either byte order, as text decoded from bytes); any run of SCRUB_FRAGMENT characters of it (a token cut short); and any `Bearer …` / `Basic …`
    header value a server echoes back. The masks are built from the secret itself, not from a list of encoders."""

    def __init__(self) -> None:
        self._patterns: list[str] = []
        self._literals: set[str] = set()
        self._base64: set[str] = set()
        self._fragments: set[str] = set()
        self._regex: Any = None  # re2 patterns

    def add(self, secret: str | None, *, username: str | None = None) -> None:
        """Mask `secret` (with `username`: also the Basic credential `username:secret`) from now on. ValueError for a
        secret longer than SECRET_MAX (the caller says which setting or answer it was)."""
        if not secret or len(secret) < MIN_SCRUB_LEN:
            return
        if len(secret) > SECRET_MAX:
            raise ValueError(f"a secret longer than {SECRET_MAX} characters cannot be masked")
        if len(secret) <= ENCODED_FORMS_MAX:
            self._patterns.append(_secret_pattern(secret))
        else:
            # A token is opaque ASCII that percent, HTML and JSON encodings leave as it is: matched as itself.
            self._literals.add(secret)
        data = secret.encode()
        texts = [data] + ([f"{username}:{secret}".encode()] if username is not None else [])
        for text in texts:  # other encoders a server may echo with: hex, base32, UTF-16 (read as text, NULs and all)
            self._literals |= {text.hex(), text.hex().upper()}
            self._literals |= {form for core in _base32_cores(text) for form in (core, core.lower())
                               if len(core) >= B64_CORE_MIN}
            decoded = text.decode("utf-8", errors="replace")
            self._literals |= {decoded.encode("utf-16-le").decode("latin-1"),
                               decoded.encode("utf-16-be").decode("latin-1")}
        cores = {c for c in _base64_cores(data) if len(c) >= B64_CORE_MIN}
        # A short secret's base64 runs are too short to mask inside any token: its whole base64 token is masked.
        whole = {base64.b64encode(data).decode().rstrip("=")} if username is None else set()
        if username is not None:
            whole.add(base64.b64encode(f"{username}:{secret}".encode()).decode().rstrip("="))
        self._base64 |= {c for c in cores | whole | {w.translate(str.maketrans("+/", "-_")) for w in whole}
                         if len(c) >= MIN_SCRUB_LEN}
        if len(secret) > SCRUB_FRAGMENT:
            self._fragments |= {secret[i:i + SCRUB_FRAGMENT] for i in range(len(secret) - SCRUB_FRAGMENT + 1)}
        self._regex = None

    def _mask_base64(self, text: str) -> str:
        """Each base64 token (a run of either alphabet's characters, then its padding) holding a secret's run."""
        spans: list[tuple[int, int]] = []
        for start, end in sorted(_literal_spans(text, self._base64)):
            if spans and start < spans[-1][1]:
                continue
            while start > 0 and _B64_CHAR.match(text[start - 1]):
                start -= 1
            while end < len(text) and (_B64_CHAR.match(text[end]) or text[end] == "="):
                end += 1
            spans.append((start, end))
        for start, end in reversed(spans):
            text = text[:start] + MASK + text[end:]
        return text

    def _mask_fragments(self, text: str) -> str:
        covered = [False] * len(text)
        for i in range(len(text) - SCRUB_FRAGMENT + 1):
            if text[i:i + SCRUB_FRAGMENT] in self._fragments:
                covered[i:i + SCRUB_FRAGMENT] = [True] * SCRUB_FRAGMENT
        if not any(covered):
            return text
        out: list[str] = []
        for i, ch in enumerate(text):
            if not covered[i]:
                out.append(ch)
            elif i == 0 or not covered[i - 1]:
                out.append(MASK)
        return "".join(out)

    def __call__(self, text: str) -> str:
        if self._patterns:
            if self._regex is None:
                # Longest first: a secret holding another one is masked whole.
                self._regex = re2.compile("|".join(sorted(self._patterns, key=len, reverse=True)))
            text = self._regex.sub(MASK, text)
        if self._literals:
            spans = _merged(_literal_spans(text, self._literals))
            for start, end in reversed(spans):
                text = text[:start] + MASK + text[end:]
        if self._base64:
            text = self._mask_base64(text)
        if self._fragments:
            text = self._mask_fragments(text)
        return _HEADER_CREDENTIAL.sub(lambda m: f"{m.group(1)} {MASK}", text)


def excerpt_text(data: bytes | str, scrub: Callable[[str], str] = lambda t: t, limit: int = EXCERPT_CHARS) -> str:
    """A short, printable, escaped excerpt of what a server sent: whitespace runs folded to one space, every
    control or non-printable character shown as an escape (so no terminal sequence passes), secrets masked."""
    text = data.decode("utf-8", errors="backslashreplace") if isinstance(data, bytes) else data
    # Masked before and after folding: a secret holding a run of whitespace would not match once folded.
    text = scrub(" ".join(scrub(text).split()))
    shown = escaped(text[: limit * 2])
    if len(shown) > limit or len(text) > limit * 2:
        shown = shown[:limit] + "..."
    return shown or "(empty body)"


# --- WWW-Authenticate --------------------------------------------------------------------------------------------

_CHALLENGE_START = re.compile(r"\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?:\s+|\Z)")
_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(,|\Z)')


def parse_www_authenticate(header: str) -> list[tuple[str, dict[str, str]]]:
    """Split a WWW-Authenticate value into (scheme lower-cased, {param lower-cased: value}) challenges (RFC 7235).

    Quoted values may hold commas (`scope="repository:a/b:push,pull"`), so a plain split on commas is wrong.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    pos = 0
    while pos < len(header):
        if header[pos] in ", \t":
            pos += 1
            continue
        start = _CHALLENGE_START.match(header, pos)
        if not start:
            break
        scheme = start.group(1).lower()
        pos = start.end()
        params: dict[str, str] = {}
        while pos < len(header):
            param = _AUTH_PARAM.match(header, pos)
            if not param:
                break
            value = param.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[param.group(1).lower()] = value
            pos = param.end()
        challenges.append((scheme, params))
    return challenges


def pick_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    """The challenge to follow: Bearer before Basic; None when neither is offered."""
    challenges = parse_www_authenticate(header)
    for wanted in ("bearer", "basic"):
        for scheme, params in challenges:
            if scheme == wanted:
                return scheme, params
    return None


def server_json(data: bytes | str) -> Any:
    """JSON a server sent, parsed; ValueError for anything that is not JSON Python can hold, including JSON nested
    past the parser's depth (json raises RecursionError for that, which no caller of a registry answer expects)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested deeper than Python's parser goes") from None


def registry_error_text(response: requests.Response) -> str:
    """The registry's own error codes and messages (JSON `errors`, the Bearer challenge's error=), or ""."""
    try:
        body = server_json(response.content or b"")
    except ValueError:
        body = None
    texts = []
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        for error in body["errors"]:
            if isinstance(error, dict):
                texts.append(" ".join(str(error.get(k)) for k in ("code", "message") if error.get(k)))
    for scheme, params in parse_www_authenticate(response.headers.get("WWW-Authenticate", "")):
        if scheme == "bearer" and params.get("error"):
            texts.append(f"error={params['error']}")
    return "; ".join(t for t in texts if t)


# --- where a registry is ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """A registry's scheme, host and port: the only origin its credentials are sent to."""

    host: str
    port: int | None
    scheme: str

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (443 if self.scheme == "https" else 80)

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def same_origin(self, url: str) -> bool:
        """Whether `url` is on this registry's scheme, host and port, as the request would really go there.

        Decided with urllib3's parser, the one requests sends with: Python's urlsplit reads some URLs
        (`http://other:1\\@registry:5000/`) as another host than urllib3 connects to. A URL with user info, a
        backslash, whitespace or control characters is never this origin."""
        parts = _sent_url(url)
        if parts is None:
            return False
        port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
        return (parts.scheme == self.scheme and (parts.host or "").strip("[]").lower() == self.host.strip("[]").lower()
                and port == self.effective_port)


def _sent_url(url: str) -> urllib3.util.Url | None:
    """`url` as requests (through urllib3) will send it, or None for a URL that is ambiguous or malformed."""
    if "\\" in url or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return None
    try:
        parts = urllib3.util.parse_url(url)
    except (urllib3.exceptions.LocationParseError, ValueError):
        return None
    if parts.auth is not None or parts.scheme not in ("http", "https") or not parts.host:
        return None
    return parts


def is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_server(server: str, *, allow_plain_http: bool) -> Endpoint:
    """host[:port] -> Endpoint; ValueError with the reason (naming acr-publish:registry.server) when malformed.

    Plain HTTP only for a loopback registry when `allow_plain_http` (the local edition), as docker does for them;
    any other host always over HTTPS.
    """
    server = server.strip()
    if "://" in server:
        raise ValueError(
            f"acr-publish:registry.server '{server}' has a scheme; give host[:port] only, e.g. "
            f"'{urlsplit(server).netloc or 'registry.example.com'}'"
        )
    if not server or "/" in server:
        raise ValueError(
            f"acr-publish:registry.server '{server}' is not host[:port]; give the registry host only, "
            "without namespace or path"
        )
    if server.count(":") > 1 and not server.startswith("["):
        host, port = server, None  # a bare IPv6 literal such as ::1
    else:
        parts = urlsplit(f"//{server}")
        try:
            host, port = parts.hostname or "", parts.port
        except ValueError:
            raise ValueError(f"acr-publish:registry.server '{server}' has an invalid port") from None
    scheme = "http" if allow_plain_http and is_loopback(host) else "https"
    return Endpoint(host=host, port=port, scheme=scheme)


def resolve_within(host: str, port: int, timeout: float) -> str | None:
    """None when `host` resolves within `timeout`, else why not (getaddrinfo itself has no timeout)."""
    outcome: dict[str, str | None] = {}

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome["problem"] = None
        except (socket.gaierror, UnicodeError, OSError) as exc:
            outcome["problem"] = str(exc.args[-1] if getattr(exc, "args", None) else exc)

    worker = threading.Thread(target=resolve, name=f"registry-resolve-{host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if "problem" not in outcome:
        return f"no answer from the resolver within {timeout:.3g}s"
    return outcome["problem"]


# --- transport ---------------------------------------------------------------------------------------------------

class _Sockets:
    """A duplicate of every socket one client opened, so `abort()` from another thread can shut them down mid-read.

    A duplicate, because TLS takes the original socket over (`wrap_socket` detaches it); shutting down the duplicate
    shuts down the one connection both name, also in the middle of a TLS handshake. A connection that closes
    closes its duplicate (`release`), or the socket would stay open through it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dups: list[tuple[HTTPConnection, socket.socket]] = []
        self.aborted = False

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


def _tracked_pools(sockets: _Sockets) -> dict[str, type]:
    """Connection pool classes whose connections report their sockets to `sockets`."""

    class Tracked:
        """Mixed into urllib3's connection classes: each new socket is reported, each close released."""

        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()  # type: ignore[misc]
            sockets.add(self, sock)
            return sock

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

    def __init__(self, sockets: _Sockets | None = None) -> None:
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


def new_session(sockets: _Sockets | None = None) -> requests.Session:
    """A session with no ~/.netrc credentials and no env CA override of our own context (proxies per request)."""
    session = requests.Session()
    session.trust_env = False
    # Bodies are read raw (bounded, streamed, hashed): ask for them unencoded. A proxy that compresses anyway is
    # decoded by `_Decoder`, within the same bounds.
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


def _tls_reason(exc: BaseException) -> str:
    verify = find_cause(exc, (ssl.SSLCertVerificationError,))
    if isinstance(verify, ssl.SSLCertVerificationError) and verify.verify_message:
        return f"certificate verify failed: {verify.verify_message.rstrip('.')}"
    other = find_cause(exc, (ssl.SSLError,))
    if isinstance(other, ssl.SSLError):
        return (other.reason or str(other)).rstrip(".")
    return _short_reason(exc)


def _short_reason(exc: BaseException) -> str:
    root = exc
    for _ in range(8):
        inner = getattr(root, "reason", None) or root.__cause__ or root.__context__
        if not isinstance(inner, BaseException):
            break
        root = inner
    return excerpt_text(str(root) or type(root).__name__, limit=300)


def _not_http(exc: BaseException) -> bytes | None:
    """The first bytes a server sent when they were not an HTTP response, else None."""
    bad = find_cause(exc, (http.client.BadStatusLine, http.client.LineTooLong))
    if bad is None:
        return None
    line = bad.args[0] if bad.args else ""
    if isinstance(bad, http.client.LineTooLong):
        return b"(a line longer than 64 KiB)"
    return line.encode("latin-1", errors="replace") if isinstance(line, str) else bytes(line)


class _Decoder:
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


class _Pace:
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


def _malformed_http(exc: BaseException) -> str | None:
    """What was malformed when the server answered with something HTTP cannot parse past its status line (a body
    shorter than its length, a bad chunk, a bad header), else None. A connection closed before any answer is not
    this: it says nothing about the answer."""
    bad = find_cause(exc, (http.client.HTTPException, urllib3.exceptions.IncompleteRead,
                           urllib3.exceptions.InvalidChunkLength, urllib3.exceptions.InvalidHeader))
    if bad is None or isinstance(bad, (http.client.RemoteDisconnected, http.client.BadStatusLine,
                                       http.client.LineTooLong)):
        return None
    return f"{type(bad).__name__}: {bad}" if str(bad) else type(bad).__name__


def _scope_atoms(scopes: Iterable[str]) -> frozenset[str]:
    """Scopes as single actions: `repository:a/b:push,pull` is `repository:a/b:pull` plus `repository:a/b:push`."""
    atoms: set[str] = set()
    for scope in scopes:
        head, _, actions = scope.rpartition(":")
        atoms |= {f"{head}:{action}" for action in actions.split(",")} if head else {scope}
    return frozenset(atoms)


# --- the client --------------------------------------------------------------------------------------------------

class RegistryClient:
    """One registry, one account: login through the registry's challenge, then manifests, blobs and tags.

    `timeout` bounds each socket operation; `deadline` (a `time.monotonic()` value) optionally bounds the whole
    life of the client: no request starts after it, each gets only what is left, and when it passes a watchdog
    shuts the client's sockets down (`abort`), so a server that trickles its headers or a body a few bytes at a
    time, each read well within `timeout`, is cut off at the deadline too. A body read also stops when it brings
    fewer than `PACE_MIN_BYTES` in `pace_window` seconds (a stalled layer fails long before a generous deadline).
    `limit_name` and `budget` name the deadline in messages ("preflight time limit"). `label` starts every message
    ("registry preflight for 'host'").
    """

    def __init__(self, server: str, username: str | None = None, password: str | None = None, *,
                 allow_plain_http: bool = False, timeout: float = 30.0, deadline: float | None = None,
                 budget: float | None = None, label: str | None = None, limit_name: str = "time limit",
                 pace_window: float = PACE_WINDOW_S,
                 session_factory: Callable[[_Sockets], requests.Session] | None = None,
                 anonymous: bool = False) -> None:
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
        self._sockets = _Sockets()
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

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- messages
    def fail(self, message: str, kind: str = "protocol", status: int | None = None) -> RegistryError:
        """A RegistryError with `message`, whose every part that came from a server or a transport error was
        masked where it was put in (`shown`, `excerpt`, `excerpt_text`): the program's own words are never masked,
        or a password such as `password` or `registry` would be spelled out by the gap it leaves in them."""
        return RegistryError(f"{self.label} failed: {message}", kind, status)

    def shown(self, text: str) -> str:
        """Text from a server or a transport error, for a message: short, escaped, credentials masked."""
        return excerpt_text(text, self.scrub, limit=300)

    def excerpt(self, response: requests.Response) -> str:
        return excerpt_text(response.content or b"", self.scrub)

    def unexpected(self, method: str, url: str, response: requests.Response, hint: str = "") -> RegistryError:
        """`url` is the program's own (the registry's base and a path), or already `shown` when a server named it."""
        reason = response.reason or ""
        # A status's standard phrase is the program's own word for it (a password such as 'Not Found' must not leave
        # a gap there); any other phrase is the server's text.
        standard = http.HTTPStatus(response.status_code).phrase if response.status_code in _STATUS_CODES else None
        reason = standard if reason == standard else self.shown(reason) if reason else ""
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
                raise self.fail(str(err), "config") from None
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
        problem = resolve_within(endpoint.host, endpoint.effective_port, self.remaining("resolving the host"))
        if problem is None:
            return
        hint = "check acr-publish:registry.server (or the region / instanceId it is derived from) for a typo"
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
        port = parts.port or (443 if parts.scheme == "https" else 80)
        # A followed Location names a host the server chose: shown escaped like any server text.
        hostport = excerpt_text(f"[{host}]:{port}" if ":" in host else f"{host}:{port}", self.scrub)
        left = self.remaining(what or f"{method} {parts.path}")
        problem: str | None = None
        kind = "unreachable"
        try:
            # The proxy settings of the environment apply as they would to docker, except for loopback hosts.
            proxies = {} if is_loopback(host) else requests.utils.get_environ_proxies(url)
            response = self.session.request(
                method, url, headers=dict(headers or {}), data=data, timeout=(left, left), allow_redirects=False,
                proxies=proxies, stream=True,
            )
            if not stream:
                self._read_bounded(response, limit, method, url)
            return response
        except RegistryError:
            raise
        except requests.exceptions.SSLError as exc:
            kind = "tls"
            if self._sockets.aborted:  # the deadline's watchdog cut the handshake off: no TLS verdict to give
                raise self.fail(self._silent(hostport, method, excerpt_text(parts.path, self.scrub)),
                                "unreachable") from None
            problem = (
                f"TLS with {hostport} failed: {self.shown(_tls_reason(exc))} (trusted: {self._trust_summary()}). "
                "If the registry uses a private or self-signed "
                "CA, add that CA to the system trust store or point REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) at it; "
                "if it names another host, use that host in acr-publish:registry.server"
            )
        except requests.exceptions.ConnectTimeout:
            problem = (
                f"connecting to {hostport} timed out ({self.limit_name} {self.budget:g}s); "
                f"{self.unreachable_hint(host)}"
            )
        except requests.exceptions.ReadTimeout:
            problem = self._silent(hostport, method, excerpt_text(parts.path, self.scrub))
        except (requests.exceptions.ConnectionError, urllib3.exceptions.HTTPError, OSError) as exc:
            first_bytes = _not_http(exc)
            cause = find_cause(exc, (socket.gaierror,))
            if self._sockets.aborted:  # cut off by the deadline before the answer's head was complete
                problem = self._silent(hostport, method, excerpt_text(parts.path, self.scrub))
            elif (malformed := _malformed_http(exc)) is not None:
                kind = "protocol"
                problem = (f"{hostport} answered {method} {excerpt_text(parts.path, self.scrub)}, but not with a "
                           f"well-formed HTTP answer ({excerpt_text(malformed, self.scrub)}); check the host and port "
                           "in acr-publish:registry.server, and whether a proxy in between mangles answers")
            elif first_bytes is not None:
                kind = "protocol"
                problem = (
                    f"{hostport} answered, but not as a registry (not HTTP): {excerpt_text(first_bytes, self.scrub)}; "
                    "check the host and port in acr-publish:registry.server"
                )
            elif find_cause(exc, (TimeoutError, socket.timeout)) is not None or "timed out" in str(exc):
                problem = self._silent(hostport, method, excerpt_text(parts.path, self.scrub))
            elif cause is not None or "NameResolutionError" in repr(exc):
                reason = self.shown(str(cause or "name resolution failed"))
                problem = f"cannot resolve host {self.shown(repr(host))} ({reason})"
            elif find_cause(exc, (ConnectionRefusedError,)) is not None or "refused" in str(exc).lower():
                problem = f"connection to {hostport} refused; {self.unreachable_hint(host)}"
            else:
                problem = (f"cannot connect to {hostport}: {self.shown(_short_reason(exc))}; "
                           f"{self.unreachable_hint(host)}")
        except requests.exceptions.RequestException as exc:
            kind = "protocol"
            problem = f"{method} {hostport} failed: {self.shown(_short_reason(exc))}"
        except ValueError:
            # requests refuses some URLs a server named (a host that changes under NFKC normalization, say) with a
            # bare ValueError: an unusable location, never a traceback.
            kind = "protocol"
            problem = f"the registry named an unusable location: {excerpt_text(url, self.scrub)}"
        # Raised outside the except blocks so the RegistryError carries no chained transport exception.
        raise self.fail(problem, kind)

    def _read_bounded(self, response: requests.Response, limit: int, method: str, url: str) -> None:
        """Read at most `limit` bytes of the body into response.content (`response.truncated` says whether there
        was more); past that, drop the connection."""
        body = bytearray()
        raw = response.raw
        pace = _Pace(self.pace_window)
        decoder = self._decoder(response, method, url)
        if method == "HEAD":
            raw.read()  # http.client reads no body for HEAD, but reading closes the answer: the connection is reused
        else:
            while len(body) <= limit:
                if self._sockets.aborted:
                    break
                piece = b"" if decoder.pending else raw.read1(min(CHUNK_SIZE, limit + 1 - len(body)))
                if not piece and not decoder.pending:
                    break
                body += self._decoded(decoder, piece, limit + 1 - len(body), method, url)
                if not pace.keeps_up(len(piece)):
                    raw.close()
                    raise self.fail(self._stalled(f"the answer to {method} {self.shown(urlsplit(url).path)}", pace),
                                    "unreachable")
        if self._sockets.aborted:
            raw.close()
            raise self.fail(self._stopped(f"reading the answer to {method} {self.shown(urlsplit(url).path)}"),
                            "unreachable")
        response.truncated = len(body) > limit  # type: ignore[attr-defined]
        response._content = bytes(body[:limit])
        response._content_consumed = True
        if response.truncated or self._sockets.aborted:  # type: ignore[attr-defined]
            raw.close()  # the rest is never read: the connection is closed now, never reused
        raw.release_conn()

    def _decoder(self, response: requests.Response, method: str, url: str) -> _Decoder:
        encoding = response.headers.get("Content-Encoding", "")
        try:
            return _Decoder(encoding)
        except ValueError:
            response.raw.close()
            raise self.fail(f"{method} {excerpt_text(urlsplit(url).path, self.scrub)} was answered with "
                            f"Content-Encoding {excerpt_text(encoding, self.scrub)}, which this client does not "
                            "decode (it asks for identity; gzip and deflate are decoded); a proxy between here and "
                            "the registry recodes answers: let it pass them unchanged") from None

    def _decoded(self, decoder: _Decoder, piece: bytes, room: int, method: str, url: str) -> bytes:
        try:
            return decoder.decode(piece, room)
        except zlib.error:
            raise self.fail(f"the compressed answer to {method} {excerpt_text(urlsplit(url).path, self.scrub)} "
                            "is corrupt (its Content-Encoding does not decode)") from None

    def _stopped(self, what: str) -> str:
        return (f"{what} was stopped at the {self.limit_name} of {self.budget:g}s; the registry or the network is "
                "too slow to answer")

    def _stalled(self, what: str, pace: "_Pace") -> str:
        return (f"the registry sent {what} at {pace.rate():.3g} bytes/s, fewer than {PACE_MIN_BYTES} bytes in "
                f"{self.pace_window:g}s: it has stalled (a link or a registry this slow cannot move an image)")

    def _trust_summary(self) -> str:
        adapter = self.session.get_adapter("https://")
        return adapter.trust_summary() if isinstance(adapter, TrustAdapter) else "the system CA store"

    def _silent(self, hostport: str, method: str, path: str) -> str:
        return (
            f"{hostport} accepted the connection but did not answer {method} {path} within the "
            f"{self.limit_name} of {self.budget:g}s; it may not be a registry (or not speak "
            f"{'plain HTTP' if self.endpoint.scheme == 'http' else 'HTTPS'}), or it is overloaded"
        )

    def unreachable_hint(self, host: str) -> str:
        if is_loopback(host):
            return ("nothing answers there: start the local registry (make up) or fix the port in "
                    "acr-publish:registry.server")
        hint = "check the host and port in acr-publish:registry.server and that this machine may reach it"
        if host.lower().endswith(ACR_SUFFIX):
            hint += (
                " (an ACR Enterprise instance has its internet endpoint off until it is enabled and this "
                "machine's address is allowed)"
            )
        return hint

    # -- login
    @property
    def logged_in(self) -> bool:
        return self._logged_in

    def login(self, scopes: Iterable[str] = (), *, prove: bool = True) -> None:
        """GET /v2/, follow its challenge with the credentials, and prove they are accepted.

        `prove=False` (a caller whose next request shows a refusal anyway) skips the proving request of a Basic
        login: a rejected credential then surfaces as that request's 401.

        `scopes` (`repository:<name>:<actions>`) are asked for in the Bearer token of this login; without any the
        token is asked for no scope, as `docker login` does. RegistryError "auth" when the credentials are
        missing or rejected.
        """
        url = f"{self.endpoint.base}/v2/"
        response = self.send("GET", url, what="the first request to /v2/")
        self._expect_registry(url, response)
        if response.status_code == 200:
            self.challenge, self._logged_in = None, True
            return
        if response.status_code != 401:
            raise self.unexpected("GET", url, response)
        challenge = pick_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise self.fail(
                f"GET {url} asked for a login (401) with no Basic or Bearer challenge to follow: "
                f"WWW-Authenticate {excerpt_text(response.headers.get('WWW-Authenticate', '(missing)'), self.scrub)}"
            )
        if self.anonymous and challenge[0] == "bearer":
            # No credentials to prove: each request asks the realm for an anonymous token of its own scope.
            self.challenge, self._logged_in = challenge, True
            return
        if not self.username or self.password is None:
            raise self.fail(
                "the registry requires a login, but the stack has no registry credentials; set "
                "acr-publish:registry.username in the stack file and the password with `pulumi config set --secret "
                "acr-publish:registryPassword <password>` (Enterprise stacks get a temporary token instead)",
                "auth", 401,
            )
        self.challenge = challenge
        if not prove and challenge[0] == "basic":
            self._logged_in = True
            return
        authorization = self._authorization(tuple(scopes))
        response = self.send("GET", url, headers={"Authorization": authorization}, what="logging in")
        if response.status_code == 200:
            self._logged_in = True
            return
        if response.status_code == 401:
            raise self.rejected(f"{self.endpoint.netloc} did not accept the login for /v2/")
        raise self.unexpected("GET", url, response)

    def _expect_registry(self, url: str, response: requests.Response) -> None:
        """An HTML page without the registry API's version header is a web server, a proxy's login page or a
        captive portal, not a registry (registries answer /v2/ with JSON and `Docker-Distribution-API-Version`)."""
        content_type = (response.headers.get("Content-Type") or "").lower()
        if "Docker-Distribution-API-Version" in response.headers or "html" not in content_type:
            return
        raise self.fail(
            f"{self.endpoint.netloc} answered, but not as a registry: GET {url} returned {response.status_code} with "
            f"an HTML page ({self.excerpt(response)}); check the host and port in acr-publish:registry.server, and "
            "whether a proxy or captive portal stands in between",
            "protocol", response.status_code,
        )

    def rejected(self, detail: str) -> RegistryError:
        message = (
            f"credentials rejected (401): {detail}: {self.user_phrase} with the configured password. "
            "Check the registry username and password of the stack"
        )
        if self.is_acr:
            message += (
                ". For ACR the password is the registry login password (console: Container Registry > "
                "Access Credential), not the Alibaba Cloud account password, or a temporary token from "
                "GetAuthorizationToken, which needs the RAM permission cr:GetAuthorizationToken and expires "
                "after about an hour"
            )
        return self.fail(message, "auth", 401)

    def _authorization(self, scopes: tuple[str, ...]) -> str:
        assert self.challenge is not None
        scheme, params = self.challenge
        if scheme == "basic":
            return f"Basic {self.basic}"
        wanted = _scope_atoms(scopes)
        # A token asked for more scopes serves each of them: the login's token covers every repository it named.
        token = self._tokens.get(wanted) or next(
            (t for granted, t in self._tokens.items() if wanted <= granted), None)
        if token is None:
            token = self._tokens[wanted] = self._fetch_token(params, tuple(scopes))
        return f"Bearer {token}"

    def _fetch_token(self, params: dict[str, str], scopes: tuple[str, ...]) -> str:
        realm = params.get("realm", "")
        parts = _sent_url(realm)  # where the token request really goes (see Endpoint.same_origin)
        if parts is None:
            raise self.fail(f"the registry's Bearer challenge names no usable token realm: "
                            f"{excerpt_text(realm, self.scrub)!r}")
        if parts.scheme == "http" and not (self.allow_plain_http and is_loopback((parts.host or "").strip("[]"))):
            raise self.fail(
                f"the registry's token realm {excerpt_text(realm, self.scrub)} is plain HTTP; credentials are "
                "sent only over HTTPS (plain HTTP only to a loopback realm of the local edition)"
            )
        query: list[tuple[str, str]] = [] if self.anonymous else [("account", self.username or "")]
        if params.get("service"):
            query.append(("service", params["service"]))
        query += [("scope", scope) for scope in scopes]
        url = realm + ("&" if parts.query else "?") + urlencode(query)
        # The realm was named by this registry's own challenge: the one other place the Basic credential goes.
        response = self.send("GET", url, headers={} if self.anonymous else {"Authorization": f"Basic {self.basic}"},
                             what="asking the token realm for a token")
        if response.status_code in (401, 403):
            raise self.rejected(f"the token service {self.shown(parts.netloc)} refused to issue a token")
        if response.status_code != 200:
            raise self.unexpected("GET", self.shown(realm), response)
        try:
            body = server_json(response.content)
        except ValueError:
            body = None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise self.fail(
                f"the token service {self.shown(parts.netloc)} answered 200 without a 'token' or 'access_token': "
                f"{self.excerpt(response)}"
            )
        try:
            self.scrub.add(token)
        except ValueError:
            raise self.fail(f"the token service {self.shown(parts.netloc)} issued a token of more than {SECRET_MAX} "
                            "characters; registry tokens are a few thousand at most, so this is refused") from None
        if not all("!" <= ch <= "~" for ch in token):
            # RFC 6750: a Bearer token is visible ASCII; any other character cannot be sent in the header at all.
            raise self.fail(f"the token service {self.shown(parts.netloc)} issued a token holding characters other "
                            "than visible ASCII, which no Authorization header can carry; the token service is misconfigured "
                            "or is not the registry's")
        return token

    def token_grants(self, scopes: tuple[str, ...], repository: str) -> set[str] | None:
        """The actions the cached Bearer token for `scopes` grants on `repository` per its JWT `access` claim;
        None when there is no such token or it is not a JWT carrying that claim (nothing can be said then)."""
        wanted = _scope_atoms(scopes)
        token = self._tokens.get(wanted) or next(
            (t for granted, t in self._tokens.items() if wanted <= granted), None)
        if token is None or token.count(".") != 2:
            return None
        try:
            payload = token.split(".")[1]
            claims = server_json(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        access = claims.get("access") if isinstance(claims, dict) else None
        if not isinstance(access, list):
            return None
        granted: set[str] = set()
        for entry in access:
            if isinstance(entry, dict) and entry.get("type") == "repository" and entry.get("name") == repository:
                granted |= {a for a in entry.get("actions") or [] if isinstance(a, str)}
        return granted

    def _auth_headers(self, scopes: tuple[str, ...]) -> dict[str, str]:
        if not self._logged_in:
            self.login()
        return {} if self.challenge is None else {"Authorization": self._authorization(scopes)}

    def request(self, method: str, repository: str, path: str, *, actions: str = "pull",
                extra_scopes: tuple[str, ...] = (), headers: Mapping[str, str] | None = None, **kwargs
                ) -> requests.Response:
        """`method /v2/<repository>/<path>` on the registry with the credentials for that repository scope."""
        scopes = (f"repository:{repository}:{actions}", *extra_scopes)
        url = f"{self.endpoint.base}/v2/{repository}/{path}"
        return self.send(method, url, headers={**self._auth_headers(scopes), **(headers or {})}, **kwargs)

    def follow(self, method: str, location: str, scopes: tuple[str, ...], **kwargs) -> requests.Response:
        """A request to a Location the registry named: with credentials only when it is on the registry's origin."""
        try:
            url = urljoin(f"{self.endpoint.base}/", location)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            raise self.fail(f"the registry named an unusable location: {excerpt_text(location, self.scrub)}") from None
        target = _sent_url(url)
        if target is None:
            raise self.fail(f"the registry named an unusable location: {excerpt_text(location, self.scrub)}")
        if target.scheme == "http" and not self.endpoint.same_origin(url) and not (
                self.allow_plain_http and is_loopback((target.host or "").strip("[]"))):
            raise self.fail(f"the registry redirected to plain HTTP on another host "
                            f"({excerpt_text(target.netloc or '', self.scrub)}); refused")
        headers = dict(kwargs.pop("headers", None) or {})
        if self.endpoint.same_origin(url):
            headers.update(self._auth_headers(scopes))
        return self.send(method, url, headers=headers, **kwargs)

    def _check(self, method: str, repository: str, response: requests.Response, what: str,
               ok: tuple[int, ...]) -> None:
        if response.status_code not in ok:
            raise self._refused(method, repository, response, what)

    def _refused(self, method: str, repository: str, response: requests.Response, what: str) -> RegistryError:
        if response.status_code in (401, 403):
            own = registry_error_text(response)
            reason = excerpt_text(own, self.scrub) if own else self.excerpt(response)
            return self.fail(
                f"{self.user_phrase} may not {what} in {self.endpoint.netloc}/{repository} "
                f"({response.status_code}: {reason})",
                "forbidden" if response.status_code == 403 else "auth", response.status_code,
            )
        return self.unexpected(method, f"{self.endpoint.base}/v2/{repository}/…", response)

    # -- manifests
    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """The digest of the manifest bytes the registry serves for `reference` (a tag or digest) in `repository`
        (HEAD for presence, then GET: the bytes are hashed, and a HEAD that names another digest is an error); None
        when absent.

        Absent: 404 (MANIFEST_UNKNOWN, NAME_UNKNOWN: the repository does not exist yet); a 401/403 whose error
        code is NAME_UNKNOWN; or a 401/403 while the Bearer token the registry's own token service issued grants
        no action at all on this repository (its JWT `access` claim), which is how Docker-spec token services
        answer for a repository they do not know (and for one the account may not see: an account that may
        push to the namespace but not pull this repository then builds, and the registry's own push check has
        the last word). Any other failure raises RegistryError, and so does a 401/403 with an opaque token.
        """
        response = self.request("HEAD", repository, f"manifests/{reference}", headers={"Accept": _MANIFEST_ACCEPT})
        if response.status_code == 200:
            # The digest becomes an output (a ref) or decides that nothing needs copying: it is the digest of the
            # bytes the registry serves, never only what a header claims.
            claimed = response.headers.get("Docker-Content-Digest", "")
            manifest = self.get_manifest(repository, reference)
            if claimed and claimed != manifest.digest:
                raise self.fail(f"the registry reports {repository}:{reference} at "
                                f"{excerpt_text(claimed, self.scrub)}, but its manifest bytes have digest "
                                f"{manifest.digest}; a registry (or a proxy) that misreports digests cannot be "
                                "published to safely")
            return manifest.digest
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            if "NAME_UNKNOWN" in registry_error_text(response):
                return None
            if self.challenge is not None and self.challenge[0] == "bearer":
                granted = self.token_grants((f"repository:{repository}:pull",), repository)
                if granted is not None and not granted:
                    return None
        raise self._refused("HEAD", repository, response, f"read manifest '{reference}'")

    def get_manifest(self, repository: str, reference: str) -> Manifest:
        response = self.request("GET", repository, f"manifests/{reference}", headers={"Accept": _MANIFEST_ACCEPT},
                                limit=MANIFEST_LIMIT)
        if response.status_code == 404:
            raise self.fail(f"{self.endpoint.netloc}/{repository}:{reference} does not exist", "absent", 404)
        self._check("GET", repository, response, f"read manifest '{reference}'", ok=(200,))
        if getattr(response, "truncated", False):
            raise self.fail(f"the manifest {repository}:{reference} is larger than {MANIFEST_LIMIT} bytes; "
                            "registries refuse such manifests, so this is not one")
        content = response.content
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        reported = response.headers.get("Docker-Content-Digest")
        if reported and reported != digest and DIGEST.fullmatch(reported):
            raise self.fail(f"the manifest {repository}:{reference} has digest {digest}, but the registry "
                            f"reports {reported}")
        if reference.startswith("sha256:") and reference != digest:
            raise self.fail(f"the registry answered {repository}@{reference} with manifest bytes of digest {digest}")
        media_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        if media_type not in MANIFEST_MEDIA_TYPES:
            try:
                media_type = server_json(content).get("mediaType") or media_type
            except (ValueError, AttributeError):
                pass
        return Manifest(media_type=media_type, content=content, digest=digest)

    def put_manifest(self, repository: str, reference: str, media_type: str, content: bytes) -> str:
        """PUT the manifest bytes unchanged under `reference`; returns their digest (checked against the
        registry's answer)."""
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        response = self.request("PUT", repository, f"manifests/{reference}", actions="pull,push",
                                headers={"Content-Type": media_type}, data=content)
        self._check("PUT", repository, response, f"push manifest '{reference}'", ok=(201, 200))
        reported = response.headers.get("Docker-Content-Digest")
        if reported and reported != digest:
            raise self.fail(f"the registry stored {repository}:{reference} as "
                            f"{excerpt_text(reported, self.scrub)}, not {digest}")
        return digest

    def list_tags(self, repository: str) -> list[str]:
        """Every tag of `repository` (following `Link` pagination); [] when the repository does not exist."""
        tags: list[str] = []
        response = self.request("GET", repository, "tags/list", limit=MANIFEST_LIMIT)
        for _page in range(1000):
            if response.status_code == 404:
                return tags
            self._check("GET", repository, response, "list tags", ok=(200,))
            try:
                body = server_json(response.content)
            except ValueError:
                raise self.unexpected("GET", f"/v2/{repository}/tags/list", response) from None
            tags += [t for t in (body.get("tags") or []) if isinstance(t, str)] if isinstance(body, dict) else []
            link = re.match(r"\s*<([^>]+)>", response.headers.get("Link", ""))
            if not link:
                return tags
            response = self.follow("GET", link.group(1), (f"repository:{repository}:pull",), limit=MANIFEST_LIMIT)
        raise self.fail(f"the tag list of {repository} has more than 1000 pages")

    # -- blobs
    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of blob `digest` in `repository`; None when the registry does not have it there."""
        response = self.request("HEAD", repository, f"blobs/{digest}")
        if response.status_code in (307, 302, 301, 303, 308) and response.headers.get("Location"):
            response = self.follow("HEAD", response.headers["Location"], (f"repository:{repository}:pull",))
        if response.status_code == 404:
            return None
        self._check("HEAD", repository, response, f"read blob {digest}", ok=(200,))
        try:
            return int(response.headers.get("Content-Length", ""))
        except ValueError:
            raise self.unexpected("HEAD", f"/v2/{repository}/blobs/{digest}", response) from None

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self.blob_size(repository, digest) is not None

    def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        """Cross-repository mount of `digest` from `source_repository` (same registry): True when mounted; False
        when the registry declined (it then started an upload, which is cancelled)."""
        path = "blobs/uploads/?" + urlencode({"mount": digest, "from": source_repository})
        response = self.request("POST", repository, path, actions="pull,push",
                                extra_scopes=(f"repository:{source_repository}:pull",))
        if response.status_code == 201:
            return True
        self._check("POST", repository, response, "start a blob upload", ok=(202,))
        self.cancel_upload(repository, response)
        return False

    def get_blob(self, repository: str, digest: str, *, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The blob's bytes in chunks of at most `chunk_size`, never held whole; its sha256 is checked at the end
        (RegistryError when the bytes do not match `digest`). A redirect to storage on another host is followed
        without credentials."""
        scopes = (f"repository:{repository}:pull",)
        response = self.request("GET", repository, f"blobs/{digest}", stream=True)
        for _hop in range(5):
            if response.status_code not in (301, 302, 303, 307, 308) or not response.headers.get("Location"):
                break
            response.close()
            response = self.follow("GET", response.headers["Location"], scopes, stream=True)
        if response.status_code != 200:
            self._read_bounded(response, ERROR_BODY_LIMIT, "GET", "")
            if response.status_code == 404:
                raise self.fail(f"blob {digest} is not in {self.endpoint.netloc}/{repository}", "absent", 404)
            self._check("GET", repository, response, f"read blob {digest}", ok=(200,))
        return self._stream(response, digest, chunk_size)

    def _stream(self, response: requests.Response, digest: str, chunk_size: int) -> Iterator[bytes]:
        hasher = hashlib.sha256()
        pace = _Pace(self.pace_window)
        try:
            decoder = self._decoder(response, "GET", f"/blobs/{digest}")
            while True:
                problem = None
                try:
                    piece = b"" if decoder.pending else response.raw.read1(chunk_size)
                    wire = len(piece)
                    piece = self._decoded(decoder, piece, chunk_size, "GET", f"/blobs/{digest}") \
                        if piece or decoder.pending else b""
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    problem = f"reading blob {digest} failed: {self.shown(_short_reason(exc))}"
                    piece, wire = b"", 0
                if self._sockets.aborted:
                    problem = self._stopped(f"reading blob {digest}")
                elif wire and not pace.keeps_up(wire):
                    problem = self._stalled(f"blob {digest}", pace)
                if problem is not None:
                    raise self.fail(problem, "unreachable")
                if not wire and not piece:  # the body ended, and nothing decoded is left
                    break
                if piece:
                    hasher.update(piece)
                    yield piece
        finally:
            response.close()
        if f"sha256:{hasher.hexdigest()}" != digest:
            raise self.fail(f"the bytes of blob {digest} have digest sha256:{hasher.hexdigest()}")

    def start_upload(self, repository: str, *, what: str = "") -> requests.Response:
        """POST /v2/<repository>/blobs/uploads/ with push scope; the raw answer (the caller judges 202/401/403/404)."""
        return self.request("POST", repository, "blobs/uploads/", actions="pull,push", what=what)

    def cancel_upload(self, repository: str, response: requests.Response) -> None:
        """DELETE the upload a 202 started (its Location; credentials only if that is on the registry's origin).
        Best effort: an abandoned upload is garbage-collected by the registry."""
        location = response.headers.get("Location")
        if not location:
            return
        try:
            self.follow("DELETE", location, (f"repository:{repository}:pull,push",), what="cancelling the upload")
        except RegistryError:
            pass

    def put_blob(self, repository: str, digest: str, chunks: Iterable[bytes], *, chunked: bool = False) -> None:
        """Upload the blob from `chunks` (streamed, never joined): one PUT with the whole stream (monolithic), or
        with `chunked` one PATCH per chunk and a closing PUT. The registry checks `digest` and refuses on mismatch."""
        scopes = (f"repository:{repository}:pull,push",)
        response = self.start_upload(repository, what=f"uploading blob {digest}")
        self._check("POST", repository, response, "start a blob upload", ok=(202,))
        location = response.headers.get("Location", "")
        if not location:
            raise self.unexpected("POST", f"/v2/{repository}/blobs/uploads/", response)
        if chunked:
            offset = 0
            for chunk in chunks:
                if not chunk:
                    continue
                response = self.follow("PATCH", location, scopes, data=chunk, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                })
                self._check("PATCH", repository, response, f"upload blob {digest}", ok=(202, 204))
                offset += len(chunk)
                location = response.headers.get("Location", location)
            body: Iterable[bytes] | bytes = b""
        else:
            body = chunks
        separator = "&" if "?" in location else "?"
        response = self.follow("PUT", f"{location}{separator}{urlencode({'digest': digest})}", scopes, data=body,
                               headers={"Content-Type": "application/octet-stream"})
        self._check("PUT", repository, response, f"upload blob {digest}", ok=(201,))
