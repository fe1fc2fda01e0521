"""Shared fixtures: an isolated cache directory, and the registry preflight recorded instead of dialled.

Unit tests run the program under Pulumi mocks with no registry to talk to, so `check_registry` is replaced by a
recorder there; tests/e2e runs the real preflight against real registries.
"""
from __future__ import annotations

import os

import pytest


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
def preflight_calls(monkeypatch):
    """Record registry preflight targets instead of connecting; set `.fail` to an exception to make it fail."""
    import components.preflight as preflight

    import components.copy as copy

    class Recorder(list):
        fail: Exception | None = None
        sources: list = []
        """(endpoint, repository, digest) of every promotion source checked before anything is declared."""
        source_fail: Exception | None = None

    calls = Recorder()
    calls.sources = []

    def check_registry(target, *, timeout: float = 10.0):
        calls.append(target)
        if calls.fail is not None:
            raise calls.fail

    def check_source(endpoint, repository, digest):
        calls.sources.append((endpoint, repository, digest))
        if calls.source_fail is not None:
            raise calls.source_fail

    monkeypatch.setattr(preflight, "check_registry", check_registry)
    monkeypatch.setattr(copy, "check_source", check_source)
    return calls
