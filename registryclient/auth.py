"""The login: the registry's WWW-Authenticate challenge (Basic, or Bearer from the token realm it names), tokens
asked per repository scope and cached per scope, and requests with the credentials for their scope. Credentials go
only to the registry's own scheme, host and port, and the Basic credential also to the token realm named by that
registry's challenge; never to a `Location` or redirect on another host.
"""
from __future__ import annotations

import base64
import re
from typing import Iterable, Mapping
from urllib.parse import urlencode, urljoin

import requests

from registryclient.connection import Connection
from registryclient.endpoint import sent_url
from boundedjson import PastBounds, parse_json
from registryclient.errors import RegistryError
from registryclient.references import is_loopback
from registryclient.scrub import SECRET_MAX, excerpt_text
from registryclient.transport import ERROR_BODY_LIMIT

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


def registry_error_text(response: requests.Response) -> str:
    """The registry's own error codes and messages (JSON `errors`, the Bearer challenge's error=), or ""."""
    try:
        body = parse_json(response.content or b"", limit=ERROR_BODY_LIMIT)
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


def scope_atoms(scopes: Iterable[str]) -> frozenset[str]:
    """Scopes as single actions: `repository:a/b:push,pull` is `repository:a/b:pull` plus `repository:a/b:push`."""
    atoms: set[str] = set()
    for scope in scopes:
        head, _, actions = scope.rpartition(":")
        atoms |= {f"{head}:{action}" for action in actions.split(",")} if head else {scope}
    return frozenset(atoms)



_ERROR_CODE = re.compile(r"[A-Z][A-Z_]{0,39}|[a-z][a-z_]{0,39}")
"""An error code as registries (`UNAUTHORIZED`) and OAuth2 (`invalid_grant`) write them: one case, no digits, so a
token put where a code goes (mixed case and digits) is not one."""


def _error_codes(content: bytes) -> str:
    """The error codes of a token service's JSON failure (OAuth2 `error`, Docker `errors[].code`), each a short
    identifier, or "": the one part of its answer shown (its other text may hold credentials)."""
    try:
        body = parse_json(content, limit=ERROR_BODY_LIMIT)
    except ValueError:
        return ""
    found = [body.get("error"), body.get("code")] if isinstance(body, dict) else []
    errors = body.get("errors") if isinstance(body, dict) else None
    found += [e.get("code") for e in errors[:5] if isinstance(e, dict)] if isinstance(errors, list) else []
    return ", ".join(dict.fromkeys(c for c in found if isinstance(c, str) and _ERROR_CODE.fullmatch(c)))

class AuthenticatedConnection(Connection):
    """A `Connection` that logs in through the registry's challenge and sends each request with the credentials
    for its repository scope."""

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
                f"WWW-Authenticate {self.answer_text(response.headers.get('WWW-Authenticate', '(missing)'))}"
            )
        if self.anonymous and challenge[0] == "bearer":
            # No credentials to prove: each request asks the realm for an anonymous token of its own scope.
            self.challenge, self._logged_in = challenge, True
            return
        if not self.username or self.password is None:
            raise self.fail(
                f"the registry requires a login, but {self.advice.no_credentials}",
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
            f"an HTML page ({self.excerpt(response)}); check the host and port in {self.advice.server}, and "
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
        wanted = scope_atoms(scopes)
        # A token asked for more scopes serves each of them: the login's token covers every repository it named.
        token = self._tokens.get(wanted) or next(
            (t for granted, t in self._tokens.items() if wanted <= granted), None)
        if token is None:
            token = self._tokens[wanted] = self._fetch_token(params, tuple(scopes))
        return f"Bearer {token}"

    def _fetch_token(self, params: dict[str, str], scopes: tuple[str, ...]) -> str:
        realm = params.get("realm", "")
        parts = sent_url(realm)  # where the token request really goes (see Endpoint.same_origin)
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
        with self.opaque_answers():
            response = self.send("GET", url,
                                 headers={} if self.anonymous else {"Authorization": f"Basic {self.basic}"},
                                 what="asking the token realm for a token")
        if response.status_code in (401, 403):
            raise self.rejected(f"the token service {self.shown(parts.netloc)} refused to issue a token")
        if response.status_code != 200:
            # Not excerpted as another answer is: a token service's answer may hold a token whatever its status.
            codes = _error_codes(response.content)
            codes = "" if self.scrub.holds_secret(codes) else codes
            raise self.fail(f"the token service {self.shown(parts.netloc)} answered {response.status_code} "
                            f"({len(response.content)} bytes{', error ' + codes if codes else ''}; its text is not "
                            "shown: a token service's answer may hold credentials); " + self.unexpected_hint,
                            "protocol", response.status_code)
        token = self._token_in(response, parts.netloc)
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

    def _token_in(self, response: requests.Response, netloc: str) -> str:
        """The token of a token service's 200 answer; its text is never shown in a failure (a token service's answer
        holds credentials: a token, a refresh token), only its size, type and the names of its fields."""
        shown = f"the token service {self.shown(netloc)} answered 200"
        if len(response.content) >= ERROR_BODY_LIMIT:  # read up to the limit: the rest was never read
            raise self.fail(f"{shown} with an answer over {ERROR_BODY_LIMIT // 1024} KiB, the most this client reads "
                            "of one (not shown: it may hold credentials); a token answer is a small JSON object: the "
                            "realm is misconfigured or is not a token service")
        try:
            body = parse_json(response.content, limit=ERROR_BODY_LIMIT)
        except PastBounds as err:
            raise self.fail(f"{shown} with an answer this client does not read: it is {err}; a token answer is a "
                            "small JSON object: the realm is misconfigured or is not a token service") from None
        except ValueError:
            raise self.fail(f"{shown} with {len(response.content)} bytes that are not JSON (not shown, nor is its "
                            "Content-Type: a token service's answer may hold credentials); the realm is misconfigured "
                            "or is not a token service") from None
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            fields = f"a JSON object of {len(body)} fields" if isinstance(body, dict) else f"JSON {type(body).__name__}"
            raise self.fail(f"{shown} without a 'token' or 'access_token' ({fields}; not shown: a token service's "
                            "answer may hold credentials)")
        return token

    def token_grants(self, scopes: tuple[str, ...], repository: str) -> set[str] | None:
        """The actions the cached Bearer token for `scopes` grants on `repository` per its JWT `access` claim;
        None when there is no such token or it is not a JWT carrying that claim (nothing can be said then)."""
        wanted = scope_atoms(scopes)
        token = self._tokens.get(wanted) or next(
            (t for granted, t in self._tokens.items() if wanted <= granted), None)
        if token is None or token.count(".") != 2:
            return None
        try:
            payload = token.split(".")[1]
            claims = parse_json(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)), limit=SECRET_MAX)
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
        target = sent_url(url)
        if target is None:
            raise self.fail(f"the registry named an unusable location: {excerpt_text(location, self.scrub)}")
        if target.scheme == "http" and not self.endpoint.same_origin(url) and not (
                self.allow_plain_http and is_loopback((target.host or "").strip("[]"))):
            raise self.fail(f"the registry redirected to plain HTTP on another host "
                            f"({excerpt_text(target.netloc or '', self.scrub)}); refused")
        headers = dict(kwargs.pop("headers", None) or {})
        if self.endpoint.same_origin(url):
            headers.update(self._auth_headers(scopes))
        self._following.url = url  # its host and path are the server's words in every message about it
        try:
            return self.send(method, url, headers=headers, **kwargs)
        finally:
            self._following.url = None
