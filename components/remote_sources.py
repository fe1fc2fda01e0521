"""Remote `ADD <url>` sources pinned at plan time (components/remote_inputs.py asks for them): each is fetched
without any credential or cookie, streamed and hashed, bounded by `SOURCE_LIMIT` bytes and by the run's deadline,
following redirects as Go's client does (`MAX_REDIRECTS`), each Location held to Go's URL parser and to the rules
of the Dockerfile's URL (buildcontext/stages.py: http(s), no user info, no `.`/`..` segment, nothing the two
clients encode differently).

`ResolveFailure` is how one input, a source or a base image reference, says it could not be pinned.
"""
from __future__ import annotations

import hashlib
import http.cookiejar
import re
import threading
import time

import requests
import urllib3

from buildcontext import stages
from buildcontext.plan import encoded_differently, has_dot_segment
from registryclient import excerpt_text
from registryclient.references import is_loopback
from registryclient.transport import Sockets, find_cause, new_session

SOURCE_LIMIT = 1 << 30
"""Bytes of one remote ADD source hashed at plan time; past it the plan fails (pin it with --checksum)."""
MAX_REDIRECTS = 10
"""As Go's client (BuildKit's): its 10th redirect in a row is an error, so it sends at most 10 requests."""
_GO_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
"""A URL's scheme as Go's net/url reads one."""
TIMEOUT_S = 30.0
"""Socket timeout of each exchange, and the time its answer's head (status line and headers) has in all."""


class ResolveFailure(Exception):
    """One reference or source could not be pinned: `what` happened, `kind` picks the fix."""

    def __init__(self, what: str, kind: str, source: str = "anonymous") -> None:
        super().__init__(what)
        self.kind = kind
        self.source = source
        """Whose credentials were sent (Credentials.source): the fix of a refused login names them."""


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Given as `auth`, so requests takes no credentials from the URL's user info (nor from ~/.netrc)."""
    request.headers.pop("Authorization", None)
    return request


def _followed(current: str, location: str) -> str:
    """The URL a redirect from `current` to `location` leads to; ResolveFailure (kind "redirect") when it breaks a
    rule the Dockerfile's URL is held to: the build's client and this one could fetch different files, or
    credentials would travel."""
    target = requests.compat.urljoin(current, location)
    written = location if "://" in location else "x://h" + ("" if location.startswith("/") else "/") + location
    if (go_rule := _go_refuses(location)) is not None:
        rule = go_rule
    elif not target.startswith(("http://", "https://")):
        rule = "is not http(s)"
    elif stages.has_userinfo(target):
        rule = "names user info, and acr-publish sends no credentials to a remote source"
    elif has_dot_segment(written):
        rule = "has a '.' or '..' segment in its path, which BuildKit's client and acr-publish's resolve differently"
    elif encoded_differently(target):
        rule = "has characters BuildKit's client and acr-publish's percent-encode differently"
    else:
        return target
    raise ResolveFailure(f"{_shown(current)} redirects to {_shown(location)}, which {rule}", "redirect")


def _go_refuses(location: str) -> str | None:
    """Why BuildKit's Go client fails on a redirect to `location` (net/url's Parse, then its request), which
    Python's urljoin would take (dropping a tab, reading `http:/a` as a path): None when Go takes it."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in location):
        return "holds a control character, which BuildKit's client (Go's net/url) refuses, so the build fails"
    scheme = _GO_SCHEME.match(location)
    if location.startswith(":") or (scheme is None and ":" in location.partition("?")[0].partition("#")[0]
                                    .partition("/")[0]):
        return "is no URL Go's net/url parses (a ':' before any '/' without a scheme), so the build fails"
    if scheme is not None and not location[scheme.end():].startswith("//"):
        return "names a scheme without //host, so BuildKit's client has no host to ask and the build fails"
    before_fragment, _, fragment = location.partition("#")
    if stages.BAD_ESCAPE.search(before_fragment.partition("?")[0]) or stages.BAD_ESCAPE.search(fragment):
        return "has a '%' not followed by two hex digits, which Go's net/url refuses, so the build fails"
    return None


def _shown(url: str) -> str:
    """A URL in a message: escaped, without user info and query (a signed URL carries its credential there)."""
    bare, query, _ = stages.without_userinfo(url).partition("#")[0].partition("?")
    return excerpt_text(bare) + ("?<query not shown>" if query else "")


def _timed_out(sockets: Sockets, wait: float) -> str:
    """What a fetch whose exchange ran out of its `wait` seconds got: nothing, or a status line and part of a head
    (whose reads together have that time: `HeadClock`)."""
    if (heard := sockets.heard()) is not None:
        return (f"the server answered with {heard[0]}, but the rest of its {'answer' if heard[1] else 'headers'} "
                f"did not arrive within {wait:g}s (the time limit of one exchange)")
    return f"the server sent nothing for {wait:.0f}s (the limit of one read)"


def fetch_checksum(url: str, deadline: float) -> str:
    """`sha256:` of what `url` serves, streamed, at most SOURCE_LIMIT bytes, no credentials sent anywhere (a URL or
    a redirect naming user info is refused unfetched). The whole fetch ends by `deadline`: a watchdog shuts its
    sockets down then, also in the middle of a read (a server sending a byte a second never holds it longer)."""
    sockets = Sockets()
    session = new_session(sockets)  # no ~/.netrc (trust_env off)
    budget = max(0.0, deadline - time.monotonic())
    limit = f"the remote-input time limit of {budget:.0f}s"
    watchdog = threading.Timer(budget, sockets.shut_all)
    watchdog.daemon = True
    watchdog.start()
    # BuildKit's client keeps no cookies: one set by a first answer must not reach the next request
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    current = url
    try:
        for _ in range(MAX_REDIRECTS):
            if stages.has_userinfo(current):
                raise ResolveFailure("it names user info, and acr-publish sends no credentials to a remote source",
                                     "protocol")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ResolveFailure(f"{limit} ran out", "unreachable")
            host = requests.utils.urlparse(current).hostname or ""
            proxies = {} if is_loopback(host) else requests.utils.get_environ_proxies(current)
            wait = min(left, TIMEOUT_S)
            try:
                response = session.get(current, stream=True, allow_redirects=False, proxies=proxies, auth=_no_auth,
                                       timeout=(wait, wait))
                with response:
                    if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                        current = _followed(current, response.headers["Location"])
                        continue
                    if response.status_code != 200:
                        raise ResolveFailure(f"the server answered {response.status_code}", "absent"
                                             if response.status_code == 404 else "protocol")
                    digest = hashlib.sha256()
                    size = 0
                    for chunk in response.iter_content(1 << 20):
                        size += len(chunk)
                        if size > SOURCE_LIMIT:
                            raise ResolveFailure(f"it is larger than {SOURCE_LIMIT} bytes, the most hashed at plan "
                                                 "time", "large")
                        digest.update(chunk)
                    if sockets.aborted:  # cut off at the deadline: what was read is not the whole file
                        raise ResolveFailure(f"{limit} ran out while it was read", "unreachable")
                    return f"sha256:{digest.hexdigest()}"
            except requests.exceptions.RequestException as exc:
                if sockets.aborted:
                    raise ResolveFailure(f"{limit} ran out while it was fetched", "unreachable") from None
                if find_cause(exc, (urllib3.exceptions.TimeoutError, TimeoutError)) is not None:
                    # retrying nothing, urllib3 reports a read timeout as a failed retry: requests' ConnectionError
                    raise ResolveFailure(_timed_out(sockets, wait), "unreachable") from None
                reason = excerpt_text(type(exc).__name__ + ": " + str(exc))
                raise ResolveFailure(f"cannot fetch it: {reason}", "unreachable") from None
        raise ResolveFailure(f"it redirects {MAX_REDIRECTS} times in a row, and BuildKit's client (Go's) stops "
                             f"after {MAX_REDIRECTS} redirects, so the build fails", "redirect")
    finally:
        watchdog.cancel()
        session.close()
        sockets.close()
