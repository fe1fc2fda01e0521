"""Registry preflight against real parts: Debian's docker-registry (distribution 2.8) and a real token service.

Every failure kind the preflight promises to explain is produced by a real server or socket here, and each message
is checked for what a person needs (host, user, repository, the fix) and for the absence of the password.
"""
from __future__ import annotations

import hashlib
import json
import socket
import traceback
from typing import Callable, Iterator

import pytest
import requests
import trustme

from components.preflight import PreflightTarget, check_registry
from registryclient import RegistryError
from registryclient.login import RegistryLogin
from tests.e2e.registry import (  # noqa: F401  (pytest fixtures are used by name)
    RegistryServer,
    basic_registry,
    registry_binary,
    registry_ca,
    registry_factory,
    tls_registry,
    token_registry,
    token_server,
)
from tests.e2e.token_server import TokenServer
from tests.e2e.test_hostile_servers import hostile  # noqa: F401  (a fixture)

REPOS = ("acme/web", "acme/worker")


def failure(target: PreflightTarget, *secrets: str, timeout: float = 10.0) -> str:
    """The RegistryError message for `target`, after checking no secret leaks through it or its traceback."""
    with pytest.raises(RegistryError) as caught:
        check_registry(target, timeout=timeout)
    error = caught.value
    rendered = "".join(traceback.format_exception(error))
    for secret in secrets:
        assert secret not in str(error), "the message shows a secret"
        assert secret not in rendered, "the traceback shows a secret"
    assert error.__cause__ is None
    return str(error)


@pytest.fixture
def trust_only_system_cas(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test CA in the environment: only the machine's own store is trusted."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)


@pytest.fixture
def trust_registry_ca(monkeypatch: pytest.MonkeyPatch, tls_registry: RegistryServer) -> None:
    assert tls_registry.ca_path is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_registry.ca_path))


# --- success -----------------------------------------------------------------------------------------------------

def test_basic_auth_over_plain_http_on_loopback_passes_and_pushes_nothing(basic_registry: RegistryServer) -> None:
    check_registry(PreflightTarget(RegistryLogin(basic_registry.server, basic_registry.username,
                                                 basic_registry.password, allow_plain_http=True), REPOS))
    # The push probe starts and cancels an upload: no tag and no repository content may appear.
    assert basic_registry.list_tags("acme/web") == []
    assert basic_registry.manifest_digest("acme/web", "latest") is None


def test_tls_registry_passes_when_its_ca_is_trusted(tls_registry: RegistryServer, trust_registry_ca: None) -> None:
    check_registry(PreflightTarget(RegistryLogin(tls_registry.server, tls_registry.username, tls_registry.password),
                                   REPOS))


# --- TLS ---------------------------------------------------------------------------------------------------------

def test_tls_with_untrusted_ca_names_host_and_reason(tls_registry: RegistryServer,
                                                     trust_only_system_cas: None) -> None:
    message = failure(PreflightTarget(RegistryLogin(tls_registry.server, tls_registry.username, tls_registry.password),
                                      REPOS),
                      tls_registry.password)
    assert f"TLS with {tls_registry.server} failed" in message
    assert "certificate verify failed: unable to get local issuer certificate" in message
    assert "(trusted: the system CA store)" in message and "REQUESTS_CA_BUNDLE" in message


def test_tls_with_self_signed_certificate_says_so(registry_factory: Callable[..., RegistryServer],
                                                  trust_only_system_cas: None) -> None:
    registry = registry_factory(tls=trustme.CA(), tls_self_signed=True)
    message = failure(PreflightTarget(RegistryLogin(registry.server, registry.username, registry.password), REPOS),
                      registry.password)
    assert f"TLS with {registry.server} failed: certificate verify failed: self-signed certificate" in message


def test_tls_hostname_mismatch_is_named(tls_registry: RegistryServer, trust_registry_ca: None) -> None:
    """The certificate is for 127.0.0.1 only; reaching the same registry as localhost must fail on the name."""
    server = f"localhost:{tls_registry.port}"
    message = failure(PreflightTarget(RegistryLogin(server, tls_registry.username, tls_registry.password), REPOS),
                      tls_registry.password)
    assert f"TLS with {server} failed" in message
    assert "Hostname mismatch, certificate is not valid for 'localhost'" in message


# --- credentials and permission ----------------------------------------------------------------------------------

def test_wrong_password_names_user_and_host_never_the_password(basic_registry: RegistryServer) -> None:
    wrong = "Wr0ng-" + basic_registry.password[::-1]
    message = failure(PreflightTarget(RegistryLogin(basic_registry.server, basic_registry.username, wrong,
                                                    allow_plain_http=True), REPOS), wrong, basic_registry.password)
    assert "credentials rejected (401)" in message
    assert f"user '{basic_registry.username}'" in message
    assert basic_registry.server in message
    assert "aliyuncs" not in message and "cr:GetAuthorizationToken" not in message  # ACR hint only for ACR hosts


def test_unknown_user_is_rejected_like_a_wrong_password(basic_registry: RegistryServer) -> None:
    message = failure(PreflightTarget(RegistryLogin(basic_registry.server, "nobody", basic_registry.password,
                                                    allow_plain_http=True), REPOS), basic_registry.password)
    assert "credentials rejected (401)" in message and "user 'nobody'" in message


def test_missing_credentials_on_a_registry_that_requires_login(basic_registry: RegistryServer) -> None:
    message = failure(PreflightTarget(RegistryLogin(basic_registry.server, None, None, allow_plain_http=True), REPOS))
    assert "requires a login" in message and "the stack has no registry credentials" in message
    assert "acr-publish:registry.username" in message and "--secret acr-publish:registryPassword" in message


def test_bearer_token_path_passes(token_registry: RegistryServer, token_server: TokenServer) -> None:
    before = len(token_server.issued)
    check_registry(PreflightTarget(RegistryLogin(token_registry.server, "pusher", token_server.users["pusher"],
                                                 allow_plain_http=True), REPOS))
    account, scopes, access = token_server.issued[before]
    assert account == "pusher"
    assert scopes == [f"repository:{repo}:push,pull" for repo in REPOS]
    assert all(set(entry["actions"]) == {"push", "pull"} for entry in access)


def test_bearer_wrong_password_is_refused_by_the_token_service(token_registry: RegistryServer,
                                                               token_server: TokenServer) -> None:
    wrong = "not-" + token_server.users["pusher"]
    message = failure(PreflightTarget(RegistryLogin(token_registry.server, "pusher", wrong, allow_plain_http=True),
                                      REPOS),
                      wrong, token_server.users["pusher"])
    assert "credentials rejected (401)" in message
    assert f"the token service 127.0.0.1:{token_server.port} refused to issue a token" in message
    assert "user 'pusher'" in message


def test_push_not_allowed_names_user_host_and_namespace(token_registry: RegistryServer,
                                                        token_server: TokenServer) -> None:
    """'reader' logs in fine but its token carries only pull on acme/*: the real registry then refuses the push
    probe with 401 error=insufficient_scope (distribution never answers 403 for this); the preflight reports it
    as the permission problem it is. A plain 403 answer is covered by tests/unit/registry/test_preflight.py."""
    message = failure(PreflightTarget(RegistryLogin(token_registry.server, "reader", token_server.users["reader"],
                                                    allow_plain_http=True), REPOS), token_server.users["reader"])
    assert f"user 'reader' may not push to {token_registry.server}/acme/web" in message
    assert "insufficient_scope" in message
    assert "push permission on namespace 'acme'" in message


def test_read_only_account_passes_a_login_only_check(token_registry: RegistryServer,
                                                    token_server: TokenServer) -> None:
    """What previews run (check_push=False): 'reader' may log in, and that is all a read-only preview role can do."""
    check_registry(PreflightTarget(RegistryLogin(token_registry.server, "reader", token_server.users["reader"],
                                                 allow_plain_http=True), REPOS, check_push=False))


def test_push_refused_for_one_of_several_repositories_names_that_one(token_registry: RegistryServer,
                                                                     token_server: TokenServer) -> None:
    message = failure(PreflightTarget(RegistryLogin(token_registry.server, "pusher", token_server.users["pusher"],
                                                    allow_plain_http=True), ("acme/web", "other/web")),
                      token_server.users["pusher"])
    assert f"may not push to {token_registry.server}/other/web" in message
    assert "namespace 'other'" in message


# --- reachability ------------------------------------------------------------------------------------------------

def test_unresolvable_host_is_named_with_the_setting_to_check() -> None:
    host = "acr-publish-preflight-test.invalid"
    message = failure(PreflightTarget(RegistryLogin(host, "user", "s3cret-pass"), REPOS), "s3cret-pass")
    assert f"cannot resolve host '{host}'" in message
    assert "acr-publish:registry.server" in message


def test_stopped_registry_is_connection_refused(registry_factory: Callable[..., RegistryServer]) -> None:
    registry = registry_factory()
    registry.stop()
    message = failure(PreflightTarget(RegistryLogin(registry.server, registry.username, registry.password,
                                                    allow_plain_http=True), REPOS), registry.password)
    assert f"connection to {registry.server} refused" in message
    assert "start the local registry (make up)" in message


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A loopback port whose kernel completes the TCP handshake but nobody ever reads or answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def login_failure(server: str, *, timeout: float, budget: float | None = None) -> RegistryError:
    """What a RegistryClient's login to `server` (plain HTTP, user/s3cret-pass) fails with; with `budget`, under a
    deadline that far ahead, named as the preflight names its own."""
    import time

    from registryclient import RegistryClient

    deadline = None if budget is None else time.monotonic() + budget
    client = RegistryClient(server, "user", "s3cret-pass", allow_plain_http=True, timeout=timeout, deadline=deadline,
                            budget=budget, limit_name="preflight time limit")
    try:
        with pytest.raises(RegistryError) as err:
            client.login(prove=False)
    finally:
        client.close()
    return err.value


def test_server_that_never_answers_times_out_within_the_budget(silent_listener: str) -> None:
    message = failure(PreflightTarget(RegistryLogin(silent_listener, "user", "s3cret-pass", allow_plain_http=True),
                                      REPOS),
                      "s3cret-pass", timeout=0.5)
    assert f"{silent_listener} accepted the connection but did not answer GET /v2/" in message
    assert "time limit of 0.5s" in message


def test_a_read_the_deadline_cut_short_names_the_budget_not_its_own_length(silent_listener: str) -> None:
    """The socket waits only what is left of the budget (less than one exchange's limit): the message names the
    budget, never that remainder as if it were a limit of its own."""
    message = str(login_failure(silent_listener, timeout=30.0, budget=0.7))
    assert "within the preflight time limit of 0.7s" in message, message
    assert "time limit of one exchange" not in message


def test_tls_handshake_that_never_completes_times_out(silent_listener: str) -> None:
    message = failure(PreflightTarget(RegistryLogin(silent_listener, "user", "s3cret-pass"), REPOS), "s3cret-pass",
                      timeout=0.5)
    assert f"{silent_listener} accepted the connection but did not answer" in message


# --- the registry API helper the e2e suite asserts with -----------------------------------------------------------

def test_registry_api_reads_tags_and_manifest_digest(basic_registry: RegistryServer) -> None:
    """Push a minimal image by hand (config blob + manifest) and read it back through RegistryApi."""
    session = requests.Session()
    session.auth = (basic_registry.username, basic_registry.password)
    config = b"{}"
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    start = session.post(f"{basic_registry.url}/v2/acme/api-check/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    location = location if location.startswith("http") else basic_registry.url + location
    put = session.put(location, params={"digest": config_digest}, data=config,
                      headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert put.status_code == 201, put.text
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config)},
        "layers": [],
    }).encode()
    put = session.put(f"{basic_registry.url}/v2/acme/api-check/manifests/v1", data=manifest,
                      headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, timeout=10)
    assert put.status_code == 201, put.text

    assert basic_registry.list_tags("acme/api-check") == ["v1"]
    assert basic_registry.manifest_digest("acme/api-check", "v1") == "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert basic_registry.manifest_digest("acme/api-check", "v2") is None


def test_registry_api_follows_the_bearer_challenge(token_registry: RegistryServer) -> None:
    assert token_registry.list_tags("acme/never-pushed") == []


def test_tls_failure_says_which_ca_bundle_was_missing(tls_registry: RegistryServer, trust_only_system_cas: None,
                                                      monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(missing))
    message = failure(PreflightTarget(RegistryLogin(tls_registry.server, tls_registry.username, tls_registry.password),
                                      REPOS),
                      tls_registry.password)
    assert f"REQUESTS_CA_BUNDLE={missing} does not exist" in message


def test_a_server_that_resets_the_connection_is_not_called_silent() -> None:
    """Something listens and resets every connection (SO_LINGER 0): the message says it cut the connection and
    names the setting to check, never "nothing answers there"."""
    import struct
    import threading

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    stop = threading.Event()

    def reset_all() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.recv(1024)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    worker = threading.Thread(target=reset_all, daemon=True)
    worker.start()
    server = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        err = login_failure(server, timeout=5.0)
    finally:
        stop.set()
        worker.join(5)
        listener.close()
    message = str(err)
    assert f"{server} cut the connection (Connection reset by peer)" in message, message
    assert "nothing answers" not in message and "ConnectionResetError" not in message, message
    assert err.kind == "unreachable" and "s3cret-pass" not in message


@pytest.mark.parametrize("timeout,budget,named", [
    (0.3, 5.0, "timed out after 0.3s (the time limit of one exchange)"),
    (30.0, 0.6, "timed out after the preflight time limit of 0.6s"),
])
def test_a_connection_that_never_completes_names_the_limit_that_ended_it(timeout, budget, named) -> None:
    """A listener whose accept queue is full drops new connection attempts, so connect() waits: the message names
    the per-exchange timeout when that ended the wait, the budget when the deadline did."""
    import time

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(8):  # never accepted: the queue fills, and the kernel drops later SYNs
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        filler.connect_ex(address)
        fillers.append(filler)
    time.sleep(0.2)
    try:
        err = login_failure(f"127.0.0.1:{address[1]}", timeout=timeout, budget=budget)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert named in str(err), err


def test_an_answer_whose_body_never_arrives_is_not_called_silent() -> None:
    """Status and headers arrive (401, Content-Length: 100), the body never does: the message says the registry
    answered and its body stalled, naming the limit, never that it did not answer."""
    import threading

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []

    def answer_headers_only() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 100\r\n\r\n")
        held.append(conn)  # kept open, silent, until the test ends

    worker = threading.Thread(target=answer_headers_only, daemon=True)
    worker.start()
    server = f"127.0.0.1:{listener.getsockname()[1]}"
    try:
        err = login_failure(server, timeout=0.5, budget=5.0)
    finally:
        worker.join(5)
        for conn in held:
            conn.close()
        listener.close()
    message = str(err)
    assert f"{server} answered GET /v2/ with 401, but the rest of its answer did not arrive within 0.5s" in message, \
        message
    assert "did not answer" not in message and err.kind == "unreachable"


def _answer_then(head: bytes, then: str) -> Callable:
    """A HostileServer handler sending `head` (a status line, perhaps some headers or a body's start), then holding
    the connection silent ("stall"), closing it cleanly ("close") or resetting it ("reset": SO_LINGER 0 makes close()
    send RST)."""
    import struct
    import time

    def handle(conn: socket.socket, request: bytes, server) -> None:
        conn.sendall(head)
        if then == "close":
            conn.shutdown(socket.SHUT_RDWR)  # a clean close (FIN), no reset
            return
        if then == "reset":
            time.sleep(0.2)  # the client has read what was sent before the reset arrives
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return
        conn.settimeout(0.2)
        until = time.monotonic() + 20  # bounded: far past every limit used here
        while time.monotonic() < until and not server.stop.is_set():
            try:
                if conn.recv(65536) == b"":
                    return
            except socket.timeout:
                continue
    return handle


@pytest.mark.parametrize("head", [b"HTTP/1.1 401 Unauthorized\r\n",
                                  b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-"],
                         ids=["status-line", "part-of-the-headers"])
@pytest.mark.parametrize("timeout, budget, limit", [(0.5, 5.0, "0.5s (the time limit of one exchange)"),
                                                    (30.0, 0.8, "the preflight time limit of 0.8s")],
                         ids=["exchange-timeout", "deadline"])
def test_an_answer_whose_headers_stop_arriving_is_not_called_silent(
        hostile, head: bytes, timeout: float, budget: float, limit: str) -> None:  # noqa: F811
    """The status line (and perhaps some headers) arrive, the rest of the head never does: the registry answered
    and stalled, whichever limit ended the wait, never "did not answer" or "nothing answers there"."""
    server = hostile(_answer_then(head, "stall")).server
    err = login_failure(server, timeout=timeout, budget=budget)
    message = str(err)
    assert (f"{server} answered GET /v2/ with 401, but the rest of its headers did not arrive within {limit}; the "
            "registry or a proxy in between is stalling") in message, message
    assert "did not answer" not in message and "nothing answers" not in message and err.kind == "unreachable"


@pytest.mark.parametrize("head, rest", [
    (b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic", "headers"),
    (b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 100\r\n\r\n{\"err",
     "answer"),
], ids=["in-the-headers", "in-the-body"])
def test_a_connection_reset_after_a_partial_answer_says_the_registry_answered(
        hostile, head: bytes, rest: str) -> None:  # noqa: F811
    server = hostile(_answer_then(head, "reset")).server
    err = login_failure(server, timeout=5.0, budget=10.0)
    message = str(err)
    assert (f"{server} answered GET /v2/ with 401, but cut the connection (Connection reset by peer) before the rest "
            f"of its {rest} arrived; the registry or a proxy in between broke it off") in message, message
    assert "check the host and port" not in message and err.kind == "unreachable"


_BODY_START = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nContent-Length: 100\r\n\r\n{\"err"


@pytest.mark.parametrize("timeout, budget, limit", [(0.5, 5.0, "0.5s (the time limit of one exchange)"),
                                                    (30.0, 0.8, "the preflight time limit of 0.8s")],
                         ids=["exchange-timeout", "deadline"])
def test_an_answer_whose_body_stops_arriving_is_not_called_silent(
        hostile, timeout: float, budget: float, limit: str) -> None:  # noqa: F811
    """Status and headers arrive, the body stops: it answered and stalled, whichever limit ended the wait."""
    server = hostile(_answer_then(_BODY_START, "stall")).server
    err = login_failure(server, timeout=timeout, budget=budget)
    message = str(err)
    assert (f"{server} answered GET /v2/ with 401, but the rest of its answer did not arrive within {limit}; the "
            "registry or a proxy in between is stalling") in message, message
    assert "did not answer" not in message and err.kind == "unreachable"


def test_an_answer_closed_before_its_body_ended_says_the_registry_broke_it_off(hostile) -> None:  # noqa: F811
    """A body shorter than its length, then a clean close: not "not a well-formed HTTP answer" (the answer was
    well formed as far as it came) nor "check the host and port"."""
    server = hostile(_answer_then(_BODY_START, "close")).server
    err = login_failure(server, timeout=5.0, budget=10.0)
    message = str(err)
    assert (f"{server} answered GET /v2/ with 401, but closed the connection before the rest of its answer arrived "
            "(IncompleteRead(") in message, message
    assert "well-formed" not in message and "check the host and port" not in message and err.kind == "protocol"
