"""What an image reference is made of, as Docker spells it: a registry host[:port], a repository path, a tag and a
digest (distribution/reference's grammar). Every module of the program checks and parses references with these; the
policy pack keeps its own copy (it runs in the policy engine's process, which imports nothing of the program).

The `*_problem` checks return None when Docker would accept the value, else the rule it breaks, so a caller can put
it in a message that names the setting or answer the value came from.
"""
from __future__ import annotations

import ipaddress
import re

ACR_SUFFIX = ".aliyuncs.com"
"""The domain of Alibaba Cloud Container Registry's endpoints."""

_DIGEST = r"sha256:[0-9a-f]{64}"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"

DIGEST = re.compile(_DIGEST)
"""A content digest as the program follows it: sha256 (what docker and the registries here produce), 64 hex."""
TAG = re.compile(_TAG)
"""distribution/reference's tag grammar: a word character, then up to 127 of word characters, '.' and '-'."""
PATH_COMPONENT = re.compile(_PATH_COMPONENT)
"""distribution/reference's path component: lowercase alphanumerics joined by '.', '_', '__' or runs of '-'."""
IMAGE_REFERENCE = re.compile(rf"^(?P<host>[^/]+)/(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
                             rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?\Z")
"""host/path[:tag][@digest]; the host is checked apart (`server_problem`)."""

_DOMAIN_COMPONENT = re.compile(r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])")


def server_problem(value: str) -> str | None:
    """None if `value` is a registry host[:port] as Docker image references spell it, else the rule it breaks.

    The grammar is distribution/reference's domain (dot-separated components of letters, digits and inner '-', or a
    bracketed IPv6 literal) with an optional port; the port must also be one a socket can use (1-65535).
    """
    if "://" in value or "/" in value:
        return "it must be host[:port] without a scheme or path"
    host, port = value, None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return "an IPv6 address must be closed by ']'"
        host, rest = value[1:end], value[end + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r} inside [] is not an IPv6 address"
        if rest:
            if not rest.startswith(":"):
                return "only ':port' may follow the ']' of an IPv6 address"
            port = rest[1:]
    elif ":" in value:
        host, _, port = value.rpartition(":")
        if ":" in host:
            return "an IPv6 address must be written in brackets, e.g. [::1]:5000"
    if not value.startswith("["):
        if len(host) > 253 or not all(_DOMAIN_COMPONENT.fullmatch(c) for c in host.split(".")):
            return ("the host must be a name or address: dot-separated parts of letters, digits and inner '-' "
                    "(at most 253 characters)")
    if port is not None:
        if not port.isascii() or not port.isdigit():
            return f"the port {port!r} is not a number; ports are 1-65535"
        if not 1 <= int(port) <= 65535:
            return f"the port {int(port)} is out of range: ports are 1-65535"
    return None


def tag_problem(value: str) -> str | None:
    """None if `value` is an image tag as Docker accepts it, else the rule it breaks."""
    if TAG.fullmatch(value):
        return None
    return ("a Docker tag is 1-128 characters of letters, digits, '_', '.' and '-', and does not start with '.' "
            "or '-'")


def repository_path_problem(value: str) -> str | None:
    """None if `value` is a repository path (`namespace/name`, no host) as Docker accepts it, else the rule."""
    if value and all(PATH_COMPONENT.fullmatch(part) for part in value.split("/")):
        return None
    return ("a repository path is '/'-separated parts of lowercase letters and digits joined by '.', '_', '__' or "
            "'-'")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or address, brackets allowed) is this machine: where plain HTTP may be used."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
