"""Where a registry is: its scheme, host and port (`Endpoint`, the only origin its credentials go to), read from
host[:port] (`parse_server`), and whether a URL a server named really goes there (`sent_url`, with the parser
requests sends with). Plain HTTP only for a loopback registry, and only when the caller allows it.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

from registryclient.references import is_loopback


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
        parts = sent_url(url)
        if parts is None:
            return False
        port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
        return (parts.scheme == self.scheme and (parts.host or "").strip("[]").lower() == self.host.strip("[]").lower()
                and port == self.effective_port)


def sent_url(url: str) -> urllib3.util.Url | None:
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


def parse_server(server: str, *, allow_plain_http: bool) -> Endpoint:
    """host[:port] -> Endpoint; ValueError with the reason when malformed (the message starts with the value
    quoted: the caller puts the name of the setting it came from before it).

    Plain HTTP only for a loopback registry when `allow_plain_http` (the local edition), as docker does for them;
    any other host always over HTTPS.
    """
    server = server.strip()
    if "://" in server:
        raise ValueError(
            f"'{server}' has a scheme; give host[:port] only, e.g. "
            f"'{urlsplit(server).netloc or 'registry.example.com'}'"
        )
    if not server or "/" in server:
        raise ValueError(
            f"'{server}' is not host[:port]; give the registry host only, "
            "without namespace or path"
        )
    if server.count(":") > 1 and not server.startswith("["):
        host, port = server, None  # a bare IPv6 literal such as ::1
    else:
        parts = urlsplit(f"//{server}")
        try:
            host, port = parts.hostname or "", parts.port
        except ValueError:
            raise ValueError(f"'{server}' has an invalid port") from None
    scheme = "http" if allow_plain_http and is_loopback(host) else "https"
    return Endpoint(host=host, port=port, scheme=scheme)


def is_ip_literal(host: str) -> bool:
    """Whether `host` is an IPv4 or IPv6 address (brackets allowed), which no resolver is asked about."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


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
