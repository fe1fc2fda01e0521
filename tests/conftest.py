"""Shared fixtures: an isolated cache directory, and the registry checks recorded instead of dialled.

Unit tests run the program under Pulumi mocks with no registry to talk to, so `check_registry` (the preflight) and
`check_published` (which content tags the registry holds) are replaced by a recorder there that answers as the test
scripts it; tests/e2e runs the real checks against real registries, and tests/e2e/test_registry_client.py the
client under them.
"""
from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _no_dns_for_invalid_names():
    """Names under .invalid (RFC 2606: never a host) fail to resolve here, in the test process, as they would from a
    resolver, without the query that would otherwise leave the machine for the resolver. The program's own
    resolution path (socket.getaddrinfo, under urllib3) is the one the tests exercise."""
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and name.rstrip(".").lower().endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    yield
    socket.getaddrinfo = real


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the stat cache of test runs out of the user's cache directory."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture
def short_racy_window(monkeypatch):
    """Shortens the stat cache's racy window to 100 ms and returns `settle()`, which waits until every file
    written so far is older than it. Trust needs both the mtime and the ctime out of the window, and no call sets
    a ctime back, so a test that wants trusted entries (a warm run) waits that long instead of 2 s."""
    import time
    from buildcontext import memo
    window = 100_000_000
    monkeypatch.setattr(memo, "RACY_WINDOW_NS", window)
    return lambda: time.sleep(window * 1.5 / 1e9)


@pytest.fixture
def preflight_calls(monkeypatch):
    """Record registry preflight targets instead of connecting; set `.fail` to an exception to make it fail.

    The published-tag check is recorded in `.published_calls` as (target, {image: (repository, tag)}); it answers
    from `.published` ({(repository, tag): digest}; anything else is not published), or raises `.published_fail`.
    """
    import components.copy as copy
    import components.preflight as preflight

    class Recorder(list):
        fail: Exception | None = None
        published_fail: Exception | None = None
        sources: list = []
        """(endpoint, repository, digest) of every promotion source checked before anything is declared."""
        source_fail: Exception | None = None

    calls = Recorder()
    calls.published = {}
    calls.published_calls = []
    calls.sources = []

    def check_registry(target, *, timeout: float = 10.0):
        calls.append(target)
        if calls.fail is not None:
            raise calls.fail

    def check_published(target, tags, *, timeout: float = 10.0):
        calls.published_calls.append((target, dict(tags)))
        if calls.published_fail is not None:
            raise calls.published_fail
        return {name: calls.published.get(ref) for name, ref in tags.items()}

    def check_source(endpoint, repository, digest, *, deadline):
        calls.sources.append((endpoint, repository, digest))
        if calls.source_fail is not None:
            raise calls.source_fail

    monkeypatch.setattr(preflight, "check_registry", check_registry)
    monkeypatch.setattr(preflight, "check_published", check_published)
    monkeypatch.setattr(copy, "check_source", check_source)
    return calls


@pytest.fixture(autouse=True)
def remote_calls(monkeypatch):
    """Base-image resolution and remote ADD fetches recorded instead of dialled (no registry or server answers
    under mocks; tests/harness.py RemoteRecorder says how it answers); tests/e2e overrides this fixture and
    resolves against real registries and servers."""
    from tests.harness import RemoteRecorder

    return RemoteRecorder(monkeypatch.setattr)


@pytest.fixture
def project(tmp_path):
    """A copy of the project (program, components, stacks, app) under tmp_path/project/acr-publish, for a test that
    edits files or runs the program from elsewhere; what no run reads (virtualenvs, the engine's binaries, caches,
    state, staged files, tests) is left out."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    copy = tmp_path / "project" / "acr-publish"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(
        "venv", ".git", "__pycache__", ".pytest_cache", ".hypothesis", "bench", "tests", ".local*", ".registry-data",
        ".acr-publish", ".pulumi-cli", ".pulumi-state", ".tools", "tools"))
    return copy
