"""Unit tests of components/preflight.py: challenge parsing, the decisions and message wording, secret hygiene.

No network: name resolution is replaced and the HTTP session gets a scripted transport adapter, so registries that
cannot exist here (ACR hosts) can answer exactly as recorded. Real-server behaviour is tested in
tests/e2e/test_preflight.py.
"""
from __future__ import annotations

import base64
import io
import json
import ssl
import traceback
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import requests.adapters
import urllib3
from hypothesis import example, given, settings
from hypothesis import strategies as st

import registryclient.connection as connection
from registryclient.login import RegistryLogin
from components.preflight import PreflightTarget, check_registry, parse_www_authenticate
from registryclient import RegistryError
from registryclient.scrub import WITHHELD

ACR = "acme-registry.cn-hangzhou.cr.aliyuncs.com"
PASSWORD = "Reg1stry-L0gin-Pw"
REPOS = ("acme/web",)

Reply = tuple[int, dict[str, str], bytes]


class ScriptedAdapter(requests.adapters.BaseAdapter):
    """Answers each request with `handler(request)`: a (status, headers, body) tuple, or an exception to raise."""

    def __init__(self, handler: Callable[[requests.PreparedRequest], Reply | BaseException]) -> None:
        super().__init__()
        self.handler = handler
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # noqa: D401
        self.sent.append(request)
        outcome = self.handler(request)
        if isinstance(outcome, BaseException):
            raise outcome
        status, headers, body = outcome
        response = requests.Response()
        response.status_code = status
        response.reason = {200: "OK", 202: "Accepted", 401: "Unauthorized", 403: "Forbidden",
                           404: "Not Found", 500: "Internal Server Error"}.get(status, "")
        response.headers = requests.structures.CaseInsensitiveDict(headers)
        # The body as a socket would deliver it, so the client's bounded read is what reads it.
        response.raw = urllib3.HTTPResponse(body=io.BytesIO(body), headers=headers, status=status,
                                            preload_content=False)
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Callable[..., ScriptedAdapter]:
    """Install a scripted registry; every host resolves."""
    monkeypatch.setattr(connection, "resolve_within", lambda host, port, timeout: None)

    def install(handler: Callable[[requests.PreparedRequest], Reply | BaseException]) -> ScriptedAdapter:
        adapter = ScriptedAdapter(handler)

        def new_session(*_sockets) -> requests.Session:
            session = requests.Session()
            session.trust_env = False
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            return session

        monkeypatch.setattr(connection, "new_session", new_session)
        return adapter

    return install


def basic_registry_handler(*, push_status: int = 202, push_body: bytes = b"",
                           password: str = PASSWORD) -> Callable[[requests.PreparedRequest], Reply]:
    expected = "Basic " + base64.b64encode(f"pusher:{password}".encode()).decode()

    def handle(request: requests.PreparedRequest) -> Reply:
        path = urlsplit(request.url).path
        if request.headers.get("Authorization") != expected:
            return 401, {"WWW-Authenticate": 'Basic realm="Registry Realm"'}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'
        if path == "/v2/":
            return 200, {}, b"{}"
        if request.method == "POST" and path.endswith("/blobs/uploads/"):
            return push_status, {"Location": path + "some-uuid"}, push_body
        if request.method == "DELETE":
            return 204, {}, b""
        return 404, {}, b""

    return handle


def failure(target: PreflightTarget, *secrets: str, whole_traceback: bool = True) -> str:
    """The RegistryError message; no secret in it, nor (with whole_traceback) anywhere in its traceback."""
    with pytest.raises(RegistryError) as caught:
        check_registry(target)
    rendered = "".join(traceback.format_exception(caught.value)) if whole_traceback else str(caught.value)
    for secret in secrets:
        assert secret not in rendered
    return str(caught.value)


# --- WWW-Authenticate parsing ------------------------------------------------------------------------------------

def test_parses_bearer_challenge_with_commas_inside_quotes() -> None:
    header = ('Bearer realm="https://dockerauth.cn-hangzhou.aliyuncs.com/auth",service="registry.aliyuncs.com:cn-'
              'hangzhou:26842",scope="repository:acme/web:push,pull"')
    assert parse_www_authenticate(header) == [("bearer", {
        "realm": "https://dockerauth.cn-hangzhou.aliyuncs.com/auth",
        "service": "registry.aliyuncs.com:cn-hangzhou:26842",
        "scope": "repository:acme/web:push,pull",
    })]


def test_parses_basic_challenge_and_several_challenges_in_one_header() -> None:
    assert parse_www_authenticate('Basic realm="Registry Realm"') == [("basic", {"realm": "Registry Realm"})]
    assert parse_www_authenticate('Basic realm="a b", Bearer realm="https://t/token", service=reg,error='
                                  '"insufficient_scope"') == [
        ("basic", {"realm": "a b"}),
        ("bearer", {"realm": "https://t/token", "service": "reg", "error": "insufficient_scope"}),
    ]


def test_parses_escaped_quotes_and_is_case_insensitive_on_names() -> None:
    assert parse_www_authenticate(r'BEARER Realm="a \"b\" c"') == [("bearer", {"realm": 'a "b" c'})]


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(scheme=st.sampled_from(["Basic", "Bearer"]),
       params=st.dictionaries(_token, st.text(st.characters(codec="ascii", exclude_categories=("Cc",)),
                                              max_size=30), min_size=1, max_size=4))
def test_quoted_parameters_round_trip(scheme: str, params: dict[str, str]) -> None:
    quoted = ",".join(f'{k}="' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for k, v in params.items())
    assert parse_www_authenticate(f"{scheme} {quoted}") == [(scheme.lower(), params)]


# --- decisions and wording ---------------------------------------------------------------------------------------

def test_acr_wrong_password_hints_at_login_password_and_ram_permission(registry) -> None:
    registry(basic_registry_handler(password="the-right-one"))
    message = failure(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS), PASSWORD)
    assert message.startswith(f"registry preflight for '{ACR}' failed: credentials rejected (401)")
    assert "user 'pusher'" in message and ACR in message
    assert "registry login password (console: Container Registry > Access Credential)" in message
    assert "cr:GetAuthorizationToken" in message


def test_403_on_the_push_probe_names_user_host_repository_and_namespace(registry) -> None:
    body = b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}'
    registry(basic_registry_handler(push_status=403, push_body=body))
    message = failure(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS), PASSWORD)
    assert f"user 'pusher' may not push to {ACR}/acme/web" in message
    assert "403: DENIED requested access to the resource is denied" in message
    assert "namespace 'acme'" in message
    assert "cr:PushRepository" in message


def test_unexpected_answer_shows_status_and_withholds_a_body_holding_the_password(registry) -> None:
    basic = base64.b64encode(f"pusher:{PASSWORD}".encode()).decode()
    echo = json.dumps({"debug": f"password={PASSWORD} auth=Basic {basic}", "pad": "x" * 500}).encode()
    handler = basic_registry_handler(push_status=500, push_body=echo)
    registry(handler)
    message = failure(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS), PASSWORD, basic)
    assert f"POST https://{ACR}/v2/acme/web/blobs/uploads/ answered 500 Internal Server Error" in message
    assert f": {WITHHELD}. " in message and "password=" not in message and "debug" not in message
    assert "acr-publish:preflight: false" in message
    assert len(message) < 800  # an excerpt, not the whole body


@pytest.mark.parametrize("password", ["Registry Realm", "Negotiate", "realm=\"Registry"])
def test_a_challenge_holding_the_password_is_withheld_not_masked(registry, password: str) -> None:
    """A password equal to the realm (or any word of the challenge) would be read off `realm="***"`."""
    challenge = 'Negotiate realm="Registry Realm"'
    registry(lambda request: (401, {"WWW-Authenticate": challenge}, b""))
    message = failure(PreflightTarget(RegistryLogin(ACR, "pusher", password), REPOS), password)
    assert message.endswith(f"no Basic or Bearer challenge to follow: WWW-Authenticate {WITHHELD}"), message
    registry(lambda request: (401, {"WWW-Authenticate": challenge}, b""))
    other = failure(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS), PASSWORD)
    assert other.endswith(f"WWW-Authenticate {challenge}"), "a challenge holding no password is shown"


def test_repository_not_created_yet_is_not_a_failure(registry) -> None:
    """In a preview the stack has not created the repository; a 404 on the probe must not block it."""
    adapter = registry(basic_registry_handler(push_status=404))
    check_registry(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS))
    assert [(r.method, urlsplit(r.url).path) for r in adapter.sent][-1] == ("POST", "/v2/acme/web/blobs/uploads/")


def test_successful_probe_cancels_its_upload(registry) -> None:
    adapter = registry(basic_registry_handler())
    check_registry(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), ("acme/web", "acme/worker")))
    calls = [(r.method, urlsplit(r.url).path) for r in adapter.sent]
    assert ("DELETE", "/v2/acme/web/blobs/uploads/some-uuid") in calls
    assert ("DELETE", "/v2/acme/worker/blobs/uploads/some-uuid") in calls


def test_bearer_exchange_follows_the_token_specification(registry) -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.secret-token-body.sig"

    def handle(request: requests.PreparedRequest) -> Reply:
        url = urlsplit(request.url)
        if url.netloc == "auth.example.com":
            return 200, {}, json.dumps({"access_token": token}).encode()
        if request.headers.get("Authorization") != f"Bearer {token}":
            return 401, {"WWW-Authenticate": 'Bearer realm="https://auth.example.com/token",service="reg.svc"'}, b""
        if url.path == "/v2/":
            return 200, {}, b"{}"
        return 500, {}, f"echo {request.headers['Authorization']}".encode()  # a registry leaking the token

    adapter = registry(handle)
    message = failure(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), ("acme/web", "acme/worker")), PASSWORD,
                      token)
    assert f"answered 500 Internal Server Error: {WITHHELD}." in message and "echo" not in message
    token_request = next(r for r in adapter.sent if urlsplit(r.url).netloc == "auth.example.com")
    query = parse_qs(urlsplit(token_request.url).query)
    assert query == {"account": ["pusher"], "service": ["reg.svc"],
                     "scope": ["repository:acme/web:push,pull", "repository:acme/worker:push,pull"]}
    assert token_request.headers["Authorization"] == "Basic " + base64.b64encode(
        f"pusher:{PASSWORD}".encode()).decode()


def test_plain_http_token_realm_is_refused_for_remote_hosts(registry) -> None:
    registry(lambda request: (401, {"WWW-Authenticate": 'Bearer realm="http://auth.example.com/token"'}, b""))
    message = failure(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS), PASSWORD)
    assert "token realm http://auth.example.com/token is plain HTTP" in message


def test_a_local_edition_registry_off_loopback_is_reached_over_https(registry) -> None:
    """docker itself talks plain HTTP only to loopback registries (unless the daemon lists others as insecure)."""
    adapter = registry(lambda request: (200, {}, b"{}") if request.method == "GET" else (202, {}, b""))
    check_registry(PreflightTarget(RegistryLogin("registry.example.com:5000", None, None, allow_plain_http=True),
                                   REPOS))
    assert adapter.sent[0].url == "https://registry.example.com:5000/v2/"
    assert all(r.url.startswith("https://") for r in adapter.sent)


def test_without_push_check_only_the_login_is_checked(registry) -> None:
    """Previews run on read-only credentials: the token is asked for no scope (as docker login does), and no upload
    is started."""
    realm = "https://auth.example.com/token"

    def handler(request):
        if request.url.startswith(realm):
            return 200, {}, b'{"token": "tok-123456"}'
        if request.headers.get("Authorization") == "Bearer tok-123456":
            return 200, {}, b"{}"
        return 401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="acr"'}, b""

    adapter = registry(handler)
    check_registry(PreflightTarget(RegistryLogin(ACR, "reader", PASSWORD), REPOS, check_push=False))
    assert [r.method for r in adapter.sent] == ["GET", "GET", "GET"], "login only: no POST to blobs/uploads"
    token_request = adapter.sent[1]
    assert "scope=" not in token_request.url and "account=reader" in token_request.url


@pytest.mark.parametrize("reply, kind", [
    ((401, {"WWW-Authenticate": 'Basic realm="r"'}, b""), "auth"),
    ((500, {}, b"boom"), "protocol"),
])
def test_errors_carry_their_kind(registry, reply, kind) -> None:
    registry(lambda request: reply)
    with pytest.raises(RegistryError) as err:
        check_registry(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS))
    assert err.value.kind == kind


def test_unresolvable_hosts_are_unreachable_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RegistryError) as err:
        check_registry(PreflightTarget(RegistryLogin("no-such-registry.invalid", "u", PASSWORD), REPOS), timeout=5)
    assert err.value.kind == "unreachable"


@pytest.mark.parametrize("server, url", [
    ("127.0.0.1:5000", "http://127.0.0.1:5000/v2/"),
    ("127.8.9.10:5000", "http://127.8.9.10:5000/v2/"),
    ("localhost:5000", "http://localhost:5000/v2/"),
    ("[::1]:5000", "http://[::1]:5000/v2/"),
])
def test_plain_http_is_used_for_loopback_hosts_when_allowed(registry, server: str, url: str) -> None:
    adapter = registry(lambda request: (200, {}, b"{}") if request.method == "GET" else (202, {}, b""))
    check_registry(PreflightTarget(RegistryLogin(server, None, None, allow_plain_http=True), REPOS))
    assert adapter.sent[0].url == url


def test_https_is_used_unless_plain_http_is_allowed(registry) -> None:
    adapter = registry(lambda request: (200, {}, b"{}") if request.method == "GET" else (202, {}, b""))
    check_registry(PreflightTarget(RegistryLogin("127.0.0.1:5000", None, None), REPOS))
    assert adapter.sent[0].url == "https://127.0.0.1:5000/v2/"


@pytest.mark.parametrize("server, fragment", [
    ("https://registry.example.com", "has a scheme; give host[:port] only, e.g. 'registry.example.com'"),
    ("registry.example.com/acme", "is not host[:port]"),
    ("registry.example.com:99999", "has an invalid port"),
])
def test_malformed_server_names_the_setting(registry, server: str, fragment: str) -> None:
    registry(lambda request: (200, {}, b"{}"))
    message = failure(PreflightTarget(RegistryLogin(server, "pusher", PASSWORD), REPOS), PASSWORD)
    assert "acr-publish:registry.server" in message and fragment in message


def test_vpc_endpoint_that_does_not_resolve_explains_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "resolve_within", lambda host, port, timeout: "Name or service not known")
    host = "acme-registry-vpc.cn-hangzhou.cr.aliyuncs.com"
    message = failure(PreflightTarget(RegistryLogin(host, "pusher", PASSWORD), REPOS), PASSWORD)
    assert f"cannot resolve host '{host}' (Name or service not known)" in message
    assert "region / instanceId" in message
    assert "resolves only inside its VPC" in message


def test_expired_certificate_is_named(registry) -> None:
    expired = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    expired.verify_message = "certificate has expired"
    registry(lambda request: requests.exceptions.SSLError(expired))
    message = failure(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS), PASSWORD)
    assert f"TLS with {ACR}:443 failed: certificate verify failed: certificate has expired" in message


def test_refused_connection_to_acr_hints_at_the_internet_endpoint(registry) -> None:
    refused = requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    registry(lambda request: refused)
    message = failure(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS), PASSWORD)
    assert f"connection to {ACR}:443 refused" in message
    assert "internet endpoint" in message


def test_target_repr_hides_the_password() -> None:
    shown = repr(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS))
    assert PASSWORD not in shown and "password='***'" in shown


@settings(max_examples=40, deadline=None)
@given(password=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=8, max_size=40))
@example(password="registry")
@example(password="password")
@example(password="preflight")
@example(password="Internal Server Error")
@example(password="cn-hangzhou")
def test_no_password_ever_reaches_a_message_even_when_the_registry_echoes_it(password: str) -> None:
    """A registry that echoes the request's Authorization and the password in its error body: the message is the
    one any other password gets (the echoes masked, the program's own words, which a password may spell, never)."""

    def message_for(secret: str) -> str:
        basic = base64.b64encode(f"pusher:{secret}".encode()).decode()

        def handle(request: requests.PreparedRequest) -> Reply:
            if "Authorization" not in request.headers:
                return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
            return 500, {}, f"auth={request.headers['Authorization']} pw={secret}".encode()

        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setattr(connection, "resolve_within", lambda host, port, timeout: None)
            adapter = ScriptedAdapter(handle)

            def new_session(*_sockets) -> requests.Session:
                session = requests.Session()
                session.mount("https://", adapter)
                return session

            monkeypatch.setattr(connection, "new_session", new_session)
            # Only the message: a generated password may coincide with source text in the traceback ('Prefligh').
            return failure(PreflightTarget(RegistryLogin(ACR, "pusher", secret), REPOS), basic, whole_traceback=False)

    message = message_for(password)
    assert "answered 500" in message
    assert message == message_for("Zq7-unrelated-Secret"), "the message differs with the password"


def test_connect_timeout_names_host_port_and_the_limit(registry) -> None:
    """A real connect timeout needs an address that drops packets, which this sandbox may not target."""
    registry(lambda request: requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(RegistryError) as caught:
        check_registry(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS), timeout=3)
    assert f"connecting to {ACR}:443 timed out after the preflight time limit of 3s" in str(caught.value)


def test_an_exhausted_budget_stops_before_any_request(registry) -> None:
    adapter = registry(lambda request: (200, {}, b"{}"))
    with pytest.raises(RegistryError) as caught:
        check_registry(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS), timeout=0)
    assert "used up its 0s budget before resolving the host" in str(caught.value)
    assert adapter.sent == []


@pytest.mark.parametrize("server", ["127.0.0.1:9", "[::1]:9", "10.0.0.7"])
def test_an_exhausted_budget_on_an_ip_literal_says_no_name_was_resolved(server) -> None:
    """No resolver is asked about an address: the budget was spent before connecting, not on a name lookup."""
    with pytest.raises(RegistryError) as caught:
        check_registry(PreflightTarget(RegistryLogin(server, "pusher", PASSWORD), REPOS), timeout=0)
    assert "used up its 0s budget before connecting to the registry" in str(caught.value), caught.value
    assert "resolving" not in str(caught.value)


def test_a_trickling_server_cannot_stretch_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each socket read has its own timeout, so a server sending a byte now and then could outlast the budget; the
    whole check is abandoned when the budget runs out. The stalled step is simulated by a check that never ends."""
    import threading

    import components.preflight as preflight

    release = threading.Event()
    monkeypatch.setattr(preflight._Check, "run", lambda self: release.wait(30))
    try:
        with pytest.raises(RegistryError) as err:
            check_registry(PreflightTarget(RegistryLogin(ACR, "pusher", PASSWORD), REPOS), timeout=0.2)
    finally:
        release.set()
    assert err.value.kind == "unreachable" and "time limit of 0.2s" in str(err.value)
