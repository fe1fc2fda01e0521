"""Registry checks made before anything is declared: the preflight, and which content tags are already published.

The preflight (`check_registry`) checks that a registry named by the stack resolves, accepts a connection, speaks
TLS with a trusted certificate (plain HTTP only for loopback registries of the local edition), accepts the stack's
credentials through the registry's own auth challenge (Basic, or Bearer through its token realm as the Docker
registry token specification describes) and lets that account push to each repository. `check_published` asks the
registry, with the same credentials, for the digest of each image's content tag. Every failure is one
`RegistryError` (registryclient/) whose text says what failed, where, and what a person can change; no password or
token ever appears in it. Each check is bounded by one time budget. The decisions live here; every exchange goes through
registryclient/.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Mapping

import requests

from components.stack_advice import STACK_ADVICE
from registryclient import RegistryClient, RegistryError, excerpt_text
from registryclient.auth import parse_www_authenticate, registry_error_text
from registryclient.login import RegistryLogin

__all__ = ["PreflightTarget", "check_published", "check_registry", "parse_www_authenticate"]

_PREFIX = "registry preflight"


@dataclass(frozen=True)
class PreflightTarget:
    """What the preflight checks: one registry login and the repositories the stack pushes to."""

    login: RegistryLogin
    """The registry, the account (None for anonymous push) and whether plain HTTP may be used there."""
    repositories: tuple[str, ...]
    """Repositories (`namespace/repo`) the stack pushes to; push permission is checked for each."""
    check_push: bool = True
    """Also prove push permission on each repository. False (previews, which run on read-only credentials) checks
    the login only, asking the token service for a token without scope, as `docker login` does."""


def check_registry(target: PreflightTarget, *, timeout: float = 10.0) -> None:
    """Check that `target` is reachable and lets its user push to each repository; raise RegistryError if not.

    `timeout` is the budget in seconds for the whole check (name resolution, every connection and response); each
    request gets what is left of it, and nothing is retried.
    """
    _within_budget(_Check(target.login, timeout, target.repositories, check_push=target.check_push), timeout)


def check_published(login: RegistryLogin, tags: Mapping[str, tuple[str, str]], *,
                    timeout: float = 10.0) -> dict[str, str | None]:
    """Ask the registry, with `login`'s credentials, which tags it already holds: for each key of `tags`
    ((repository, tag) values), the digest the registry reports, or None when the tag is not there, a
    repository that does not exist yet included (see RegistryClient.manifest_digest for what counts as absent).
    Any other failure raises RegistryError, within the same kind of time budget as the preflight.
    """
    check = _Published(login, timeout, tags)
    _within_budget(check, timeout)
    return check.found


def _within_budget(check: "_Check", timeout: float) -> None:
    """Run `check` in a worker bounded by `timeout`. A server that trickles its answer could keep a socket read
    alive past that budget; when the budget (plus a second of grace for the worker's own error) runs out, the
    worker's sockets are shut down, so nothing reads on after this function returned."""
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            check.run()
            outcome.append(None)
        except BaseException as exc:  # handed to the caller below
            outcome.append(exc)

    worker = threading.Thread(target=work, name=f"preflight-{check.login.server}", daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    if not outcome:
        check.client.abort()
        raise RegistryError(
            f"{check.label} failed: the registry did not finish answering within the preflight "
            f"time limit of {timeout:g}s (it accepts connections but answers too slowly); check the registry, or "
            "set acr-publish:preflight: false to skip the check",
            "unreachable",
        )
    if outcome[0] is not None:
        raise outcome[0]


_UNEXPECTED_HINT = (
    "This is not a registry answer the preflight understands; if the registry works with docker push, "
    "acr-publish:preflight: false turns the check off"
)


class _Check:
    """The preflight's decisions; every exchange goes through one RegistryClient."""

    label_format = _PREFIX + " for '{server}'"

    def __init__(self, login: RegistryLogin, timeout: float, repositories: tuple[str, ...] = (), *,
                 check_push: bool = False) -> None:
        self.login = login
        self.repositories = repositories
        self.check_push = check_push
        self.label = self.label_format.format(server=login.server)
        self.client = RegistryClient.of(login, timeout=timeout, deadline=time.monotonic() + timeout, label=self.label,
                                        limit_name="preflight time limit", advice=STACK_ADVICE)
        self.client.unexpected_hint = _UNEXPECTED_HINT

    def run(self) -> None:
        try:
            self.steps()
        finally:
            self.client.close()

    def steps(self) -> None:
        self.client.endpoint  # a malformed server is a config error before any lookup
        self.client.resolve()
        # Without the push check the token is asked for no scope at all, as `docker login` does: a read-only
            # role may hold no repository permission, and the login alone is what a preview can prove.
        scopes = [f"repository:{r}:push,pull" for r in self.repositories] if self.check_push else []
        self.client.login(scopes)
        if self.check_push:
            for repository in self.repositories:
                self._probe_push(repository)

    # May this account push? Start a blob upload and cancel it, as go-containerregistry's CheckPushPermission
    # does: /v2/ alone only proves the login, not the push permission on a namespace.
    def _probe_push(self, repository: str) -> None:
        client = self.client
        response = client.start_upload(repository, what=f"checking push permission on {repository}")
        if response.status_code in (201, 202):
            client.cancel_upload(repository, response)
            return
        if response.status_code == 404:
            # NAME_UNKNOWN: the repository does not exist yet; the stack creates it before pushing (in preview it
            # never exists), so only a refused permission is a failure here.
            return
        if response.status_code in (401, 403):
            raise self.denied(repository, response)
        raise client.unexpected("POST", f"{client.endpoint.base}/v2/{repository}/blobs/uploads/", response)

    def denied(self, repository: str, response: requests.Response) -> RegistryError:
        client = self.client
        namespace = repository.split("/", 1)[0] if "/" in repository else repository
        own = registry_error_text(response)
        reason = excerpt_text(own, client.scrub) if own else client.excerpt(response)
        message = (
            f"{client.user_phrase} may not push to {client.endpoint.netloc}/{repository} "
            f"({response.status_code}: {reason}); the login works, but the account lacks push permission on "
            f"namespace '{namespace}'. Grant it push (write) access to that namespace, or push to a namespace it owns"
        )
        if client.is_acr:
            message += (
                " (ACR: RAM permission cr:PushRepository on "
                f"acs:cr:<region>:<account>:repository/<instance-id>/{namespace}/*)"
            )
        return client.fail(message, "forbidden", response.status_code)


class _Published(_Check):
    """Which content tags the registry already holds: one login asking pull on every repository, one HEAD each."""

    label_format = "published-tag check for '{server}'"

    def __init__(self, login: RegistryLogin, timeout: float, tags: Mapping[str, tuple[str, str]]) -> None:
        super().__init__(login, timeout)
        self.tags = dict(tags)
        self.found: dict[str, str | None] = {}
        self.client.unexpected_hint = (
            "This is not a registry answer the published-tag check understands; if the registry works with docker "
            "push, acr-publish:preflight: false turns the registry checks off (every image is then built)"
        )

    def steps(self) -> None:
        self.client.endpoint
        self.client.resolve()
        self.client.login(sorted({f"repository:{repository}:pull" for repository, _ in self.tags.values()}))
        for name, (repository, tag) in self.tags.items():
            self.found[name] = self.client.manifest_digest(repository, tag)
