"""Registry preflight: can this stack reach and push to its registry, checked before any build.

Owns the check that a registry named by the stack resolves, accepts a connection, speaks TLS with a trusted
certificate (plain HTTP only for loopback registries of the local edition), accepts the stack's credentials through
the registry's own auth challenge (Basic, or Bearer through its token realm as the Docker registry token
specification describes) and lets that account push to each repository. Every failure becomes one
`PreflightError` whose text says what failed, where, and what a person can change; no password or token ever
appears in it. The whole check is bounded by one time budget.
"""
from __future__ import annotations

import base64
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3

__all__ = ["PreflightError", "PreflightTarget", "check_registry", "parse_www_authenticate"]

_PREFIX = "registry preflight"
_ACR_SUFFIX = ".aliyuncs.com"
_EXCERPT_CHARS = 200
_MASK = "***"
# The shortest secret we scrub inside free text: shorter "secrets" would mangle ordinary words of a message.
_MIN_SCRUB_LEN = 4


class PreflightError(Exception):
    """The registry cannot be used as configured; str() is the whole person-readable message, free of secrets.

    `kind` says what failed: "unreachable" (the host does not resolve, refuses or does not answer), "tls", "auth"
    (credentials rejected or missing), "forbidden" (no push permission), "config" (the server setting itself), or
    "protocol" (an answer the preflight does not understand).
    """

    def __init__(self, message: str, kind: str = "protocol"):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class PreflightTarget:
    """One registry the stack pushes to, with resolved (plain) values."""

    server: str
    """Registry host[:port] without a scheme, e.g. `acme-registry.cn-hangzhou.cr.aliyuncs.com` or `127.0.0.1:5000`."""
    username: str | None
    """Registry login user; None when the registry is expected to allow anonymous push."""
    password: str | None
    """Registry login password or temporary token; never printed."""
    repositories: tuple[str, ...]
    """Repositories (`namespace/repo`) the stack pushes to; push permission is checked for each."""
    allow_plain_http: bool = False
    """True only for the local edition: loopback registries are then reached over plain HTTP, as docker does for
    them; any other host always over HTTPS."""
    check_push: bool = True
    """Also prove push permission on each repository. False (previews, which run on read-only credentials) checks
    the login only, asking the token service for a token without scope, as `docker login` does."""

    def __repr__(self) -> str:  # the dataclass repr would show the password in tracebacks and logs
        password = None if self.password is None else _MASK
        return (
            f"PreflightTarget(server={self.server!r}, username={self.username!r}, password={password!r}, "
            f"repositories={self.repositories!r}, allow_plain_http={self.allow_plain_http!r}, "
            f"check_push={self.check_push!r})"
        )


def check_registry(target: PreflightTarget, *, timeout: float = 10.0) -> None:
    """Check that `target` is reachable and lets its user push to each repository; raise PreflightError if not.

    `timeout` is the budget in seconds for the whole check (name resolution, every connection and response); each
    request gets what is left of it, and nothing is retried. A server that trickles its answer could keep a socket
    read alive past that budget, so the check runs in a worker and is abandoned when the budget (plus a second of
    grace for the worker's own error) runs out.
    """
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            _Check(target, timeout).run()
            outcome.append(None)
        except BaseException as exc:  # handed to the caller below
            outcome.append(exc)

    worker = threading.Thread(target=work, name=f"preflight-{target.server}", daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    if not outcome:
        raise PreflightError(
            f"{_PREFIX} for '{target.server}' failed: the registry did not finish answering within the preflight "
            f"time limit of {timeout:g}s (it accepts connections but answers too slowly); check the registry, or "
            "set acr-publish:preflight: false to skip the check",
            "unreachable",
        )
    if outcome[0] is not None:
        raise outcome[0]


# --- WWW-Authenticate ------------------------------------------------------------------------------------------

_CHALLENGE_START = re.compile(r"\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?:\s+|$)")
_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(,|$)')


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


# --- the check -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Endpoint:
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


class _Check:
    def __init__(self, target: PreflightTarget, timeout: float) -> None:
        self.target = target
        self.budget = timeout
        self.deadline = time.monotonic() + timeout
        self.secrets: list[str] = []
        # The Basic credential, for the Basic login and the token request; scrubbed like the password itself.
        self.basic = base64.b64encode(f"{target.username or ''}:{target.password or ''}".encode()).decode()
        if target.password:
            self.secrets += [target.password, self.basic]
        self.session = _new_session()
        self.authorization: str | None = None
        self.endpoint = _Endpoint(host="", port=None, scheme="https")  # set by run() before any request

    # -- entry point
    def run(self) -> None:
        try:
            self.endpoint = self._endpoint()
            self._resolve(self.endpoint)
            self._login()
            if self.target.check_push:
                for repository in self.target.repositories:
                    self._probe_push(repository)
        finally:
            self.session.close()

    # -- helpers shared by every step
    def fail(self, message: str, kind: str = "protocol") -> PreflightError:
        return PreflightError(self.scrub(f"{_PREFIX} for '{self.target.server}' failed: {message}"), kind)

    def scrub(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= _MIN_SCRUB_LEN:
                text = text.replace(secret, _MASK)
        return text

    def excerpt(self, response: requests.Response) -> str:
        body = " ".join(response.text.split()) if response.content else ""
        body = self.scrub(body)
        if len(body) > _EXCERPT_CHARS:
            body = body[:_EXCERPT_CHARS] + "..."
        return body or "(empty body)"

    def remaining(self, what: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise self.fail(
                f"the check used up its {self.budget:g}s budget before {what}; the registry or the network is too "
                "slow to answer",
                "unreachable",
            )
        return left

    @property
    def user_phrase(self) -> str:
        return f"user '{self.target.username}'" if self.target.username else "anonymous access"

    @property
    def is_acr(self) -> bool:
        return self.endpoint.host.lower().endswith(_ACR_SUFFIX)

    # -- step 1: where to connect
    def _endpoint(self) -> _Endpoint:
        server = self.target.server.strip()
        if "://" in server:
            raise self.fail(
                f"acr-publish:registry.server '{server}' has a scheme; give host[:port] only, e.g. "
                f"'{urlsplit(server).netloc or 'registry.example.com'}'",
                "config",
            )
        if not server or "/" in server:
            raise self.fail(
                f"acr-publish:registry.server '{server}' is not host[:port]; give the registry host only, "
                "without namespace or path",
                "config",
            )
        if server.count(":") > 1 and not server.startswith("["):
            host, port = server, None  # a bare IPv6 literal such as ::1
        else:
            parts = urlsplit(f"//{server}")
            try:
                host, port = parts.hostname or "", parts.port
            except ValueError:
                raise self.fail(f"acr-publish:registry.server '{server}' has an invalid port", "config") from None
        # Plain HTTP only for a loopback registry of the local edition; a local-edition registry elsewhere on the
        # network is reached over HTTPS, as docker reaches it unless the daemon lists it as insecure.
        scheme = "http" if self.target.allow_plain_http and _is_loopback(host) else "https"
        return _Endpoint(host=host, port=port, scheme=scheme)

    # -- step 2: name resolution, bounded (getaddrinfo itself has no timeout)
    def _resolve(self, endpoint: _Endpoint) -> None:
        problem = _resolve_within(endpoint.host, endpoint.effective_port, self.remaining("resolving the host"))
        if problem is None:
            return
        hint = (
            "check acr-publish:registry.server (or the region / instanceId it is derived from) for a typo"
        )
        if "-vpc" in endpoint.host.lower() or "-internal" in endpoint.host.lower():
            hint += "; a VPC or internal endpoint resolves only inside its VPC, so use the public endpoint here"
        raise self.fail(f"cannot resolve host '{endpoint.host}' ({problem}); {hint}", "unreachable")

    # -- one HTTP exchange, with every transport failure turned into a message
    def send(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
             what: str = "") -> requests.Response:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        left = self.remaining(what or f"{method} {url}")
        problem: str | None = None
        kind = "unreachable"
        try:
            # The proxy settings of the environment apply as they would to docker, except for loopback hosts.
            proxies = {} if _is_loopback(host) else requests.utils.get_environ_proxies(url)
            return self.session.request(
                method, url, headers=dict(headers or {}), timeout=(left, left), allow_redirects=False,
                proxies=proxies,
            )
        except requests.exceptions.SSLError as exc:
            kind = "tls"
            problem = (
                f"TLS with {hostport} failed: {_tls_reason(exc)} (trusted: {self._trust_summary()}). "
                "If the registry uses a private or self-signed "
                "CA, add that CA to the system trust store or point REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) at it; "
                "if it names another host, use that host in acr-publish:registry.server"
            )
        except requests.exceptions.ConnectTimeout:
            problem = (
                f"connecting to {hostport} timed out (preflight time limit {self.budget:g}s); "
                f"{self._unreachable_hint(host)}"
            )
        except requests.exceptions.ReadTimeout:
            problem = self._silent(hostport, method, parts.path)
        except requests.exceptions.ConnectionError as exc:
            cause = _find_cause(exc, (socket.gaierror,))
            if _find_cause(exc, (TimeoutError, socket.timeout)) is not None or "timed out" in str(exc):
                problem = self._silent(hostport, method, parts.path)
            elif cause is not None or "NameResolutionError" in repr(exc):
                problem = f"cannot resolve host '{host}' ({cause or 'name resolution failed'})"
            elif _find_cause(exc, (ConnectionRefusedError,)) is not None or "refused" in str(exc).lower():
                problem = f"connection to {hostport} refused; {self._unreachable_hint(host)}"
            else:
                problem = f"cannot connect to {hostport}: {_short_reason(exc)}; {self._unreachable_hint(host)}"
        except requests.exceptions.RequestException as exc:
            kind = "protocol"
            problem = f"{method} {url} failed: {_short_reason(exc)}"
        # Raised outside the except blocks so the PreflightError carries no chained transport exception.
        raise self.fail(problem, kind)

    def _trust_summary(self) -> str:
        adapter = self.session.get_adapter("https://")
        return adapter.trust_summary() if isinstance(adapter, _TrustAdapter) else "the system CA store"

    def _silent(self, hostport: str, method: str, path: str) -> str:
        return (
            f"{hostport} accepted the connection but did not answer {method} {path} within the preflight time "
            f"limit of {self.budget:g}s; it may not be a registry (or not speak "
            f"{'plain HTTP' if self.target.allow_plain_http else 'HTTPS'}), or it is overloaded"
        )

    def _unreachable_hint(self, host: str) -> str:
        if _is_loopback(host):
            return "nothing answers there: start the local registry (make up) or fix the port in acr-publish:registry.server"
        hint = "check the host and port in acr-publish:registry.server and that this machine may reach it"
        if host.lower().endswith(_ACR_SUFFIX):
            hint += (
                " (an ACR Enterprise instance has its internet endpoint off until it is enabled and this "
                "machine's address is allowed)"
            )
        return hint

    def unexpected(self, method: str, url: str, response: requests.Response) -> PreflightError:
        return self.fail(
            f"{method} {url} answered {response.status_code} {response.reason or ''}".rstrip()
            + f": {self.excerpt(response)}. This is not a registry answer the preflight understands; if the "
            "registry works with docker push, acr-publish:preflight: false turns the check off"
        )

    # -- step 3: GET /v2/ and the auth challenge
    def _login(self) -> None:
        url = f"{self.endpoint.scheme}://{self.endpoint.netloc}/v2/"
        response = self.send("GET", url, what="the first request to /v2/")
        if response.status_code == 200:
            return  # no login required (a local registry without auth)
        if response.status_code != 401:
            raise self.unexpected("GET", url, response)
        challenge = _pick_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise self.fail(
                f"GET {url} asked for a login (401) with no Basic or Bearer challenge the preflight can follow: "
                f"WWW-Authenticate {response.headers.get('WWW-Authenticate', '(missing)')!r}"
            )
        if not self.target.username or self.target.password is None:
            raise self.fail(
                "the registry requires a login, but the stack has no registry credentials; set "
                "acr-publish:registry.username in the stack file and the password with `pulumi config set --secret "
                "acr-publish:registryPassword <password>` (Enterprise stacks get a temporary token instead)",
                "auth",
            )
        scheme, params = challenge
        if scheme == "basic":
            self.authorization = f"Basic {self.basic}"
        else:
            self.authorization = f"Bearer {self._fetch_token(params)}"
        response = self.send("GET", url, headers={"Authorization": self.authorization}, what="logging in")
        if response.status_code == 200:
            return
        if response.status_code == 401:
            raise self.rejected(f"{self.endpoint.netloc} did not accept the login for /v2/")
        raise self.unexpected("GET", url, response)

    def rejected(self, detail: str) -> PreflightError:
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
        return self.fail(message, "auth")

    def _fetch_token(self, params: dict[str, str]) -> str:
        realm = params.get("realm", "")
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.fail(f"the registry's Bearer challenge names no usable token realm: {realm!r}")
        if parts.scheme == "http" and not (self.target.allow_plain_http and _is_loopback(parts.hostname)):
            raise self.fail(
                f"the registry's token realm {realm} is plain HTTP; the preflight sends credentials only over "
                "HTTPS (plain HTTP only to a loopback realm of the local edition)"
            )
        query: list[tuple[str, str]] = [("account", self.target.username or "")]
        if params.get("service"):
            query.append(("service", params["service"]))
        # Without the push check the token is asked for no scope at all, as `docker login` does: a read-only role
        # may hold no repository permission, and the login alone is what a preview can prove.
        if self.target.check_push:
            for repository in self.target.repositories:
                query.append(("scope", f"repository:{repository}:push,pull"))
        prepared = requests.Request("GET", realm, params=query).prepare()
        response = self.send("GET", prepared.url or realm, headers={"Authorization": f"Basic {self.basic}"},
                             what="asking the token realm for a token")
        if response.status_code in (401, 403):
            raise self.rejected(f"the token service {parts.netloc} refused to issue a token")
        if response.status_code != 200:
            raise self.unexpected("GET", realm, response)
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise self.fail(
                f"the token service {parts.netloc} answered 200 without a 'token' or 'access_token': "
                f"{self.excerpt(response)}"
            )
        self.secrets.append(token)
        return token

    # -- step 4: may this account push? Start a blob upload and cancel it, as go-containerregistry's
    # CheckPushPermission does: /v2/ alone only proves the login, not the push permission on a namespace.
    def _probe_push(self, repository: str) -> None:
        url = f"{self.endpoint.scheme}://{self.endpoint.netloc}/v2/{repository}/blobs/uploads/"
        headers = {"Authorization": self.authorization} if self.authorization else {}
        response = self.send("POST", url, headers=headers, what=f"checking push permission on {repository}")
        if response.status_code in (201, 202):
            self._cancel_upload(response, headers)
            return
        if response.status_code == 404:
            # NAME_UNKNOWN: the repository does not exist yet; the stack creates it before pushing (in preview it
            # never exists), so only a refused permission is a failure here.
            return
        if response.status_code in (401, 403):
            raise self.denied(repository, response)
        raise self.unexpected("POST", url, response)

    def denied(self, repository: str, response: requests.Response) -> PreflightError:
        namespace = repository.split("/", 1)[0] if "/" in repository else repository
        reason = _registry_error(response) or self.excerpt(response)
        message = (
            f"{self.user_phrase} may not push to {self.endpoint.netloc}/{repository} "
            f"({response.status_code}: {reason}); the login works, but the account lacks push permission on "
            f"namespace '{namespace}'. Grant it push (write) access to that namespace, or push to a namespace it owns"
        )
        if self.is_acr:
            message += (
                " (ACR: RAM permission cr:PushRepository on "
                f"acs:cr:<region>:<account>:repository/<instance-id>/{namespace}/*)"
            )
        return self.fail(message, "forbidden")

    def _cancel_upload(self, response: requests.Response, headers: Mapping[str, str]) -> None:
        location = response.headers.get("Location")
        if not location:
            return
        if location.startswith("/"):
            location = f"{self.endpoint.scheme}://{self.endpoint.netloc}{location}"
        try:
            self.session.delete(location, headers=dict(headers), timeout=max(0.1, self.deadline - time.monotonic()),
                                allow_redirects=False)
        except requests.exceptions.RequestException:
            pass  # an abandoned upload is garbage-collected by the registry; the check itself succeeded


# --- transport -------------------------------------------------------------------------------------------------

class _TrustAdapter(requests.adapters.HTTPAdapter):
    """HTTPS with the system CA store plus the bundles named by REQUESTS_CA_BUNDLE / SSL_CERT_FILE.

    requests alone uses certifi (or only the env bundle), not the machine's store plus a private CA.
    """

    def __init__(self) -> None:
        self._context: ssl.SSLContext | None = None
        self.extra_bundles: dict[str, str] = {}
        self.missing_bundles: dict[str, str] = {}
        super().__init__(max_retries=urllib3.Retry(total=0, connect=0, read=0, redirect=0, status=0,
                                                   raise_on_redirect=False, raise_on_status=False))

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


def _new_session() -> requests.Session:
    session = requests.Session()
    # No ~/.netrc credentials and no env CA override of our own context; proxies are passed per request.
    session.trust_env = False
    adapter = _TrustAdapter()
    session.mount("https://", adapter)
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
    return session


def _resolve_within(host: str, port: int, timeout: float) -> str | None:
    """None when `host` resolves within `timeout`, else why not."""
    outcome: dict[str, str | None] = {}

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome["problem"] = None
        except (socket.gaierror, UnicodeError, OSError) as exc:
            outcome["problem"] = str(exc.args[-1] if getattr(exc, "args", None) else exc)

    worker = threading.Thread(target=resolve, name=f"preflight-resolve-{host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if "problem" not in outcome:
        return f"no answer from the resolver within {timeout:.3g}s"
    return outcome["problem"]


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _pick_challenge(header: str) -> tuple[str, dict[str, str]] | None:
    challenges = parse_www_authenticate(header)
    for wanted in ("bearer", "basic"):
        for scheme, params in challenges:
            if scheme == wanted:
                return scheme, params
    return None


def _registry_error(response: requests.Response) -> str:
    """The registry's own error text: the JSON `errors` body, or the Bearer challenge's error=, if any."""
    try:
        body = response.json()
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


def _find_cause(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
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
    verify = _find_cause(exc, (ssl.SSLCertVerificationError,))
    if isinstance(verify, ssl.SSLCertVerificationError) and verify.verify_message:
        return f"certificate verify failed: {verify.verify_message.rstrip('.')}"
    other = _find_cause(exc, (ssl.SSLError,))
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
    text = str(root) or type(root).__name__
    return text if len(text) <= 300 else text[:300] + "..."
