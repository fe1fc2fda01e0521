"""How our dynamic providers' errors reach the engine: an AcrPublishError as its message alone, anything else with its
traceback.

The SDK's provider server (`python -m pulumi.dynamic`, which runs `pulumi/dynamic/__main__.py`) aborts every failed
call with `traceback.format_exc()` as the gRPC status text, and the engine prints that text under the resource. The
SDK offers no hook for this (no error type it reports as a message, no setting), and the servicer's methods are
bound into the gRPC server before our code is loaded; what it looks up at each failure is the server module's
`traceback` global. `serve_messages_alone` replaces that one global, in the provider process only (the program's
process and the tests importing our modules are left alone), with `_ServerTraceback`: the expected failure shows as
the message a person can act on (already free of secrets), a bug keeps its traceback so it can be reported.
If the pinned SDK's server no longer looks like that, it raises `ProviderServerChanged` instead of doing nothing.
"""
from __future__ import annotations

import sys
import traceback
import types

from errors import AcrPublishError

SERVER_MODULE = "pulumi.dynamic.__main__"
"""The module `python -m pulumi.dynamic` runs as `__main__` in the provider process."""


class ProviderServerChanged(RuntimeError):
    """The SDK's provider server is not the one this module patches: a bug to fix here, never to ignore."""


class _ServerTraceback:
    """What the provider server sees as its `traceback` module."""

    def __getattr__(self, name: str):
        return getattr(traceback, name)

    @staticmethod
    def format_exc(*args, **kwargs) -> str:
        err = sys.exc_info()[1]
        if isinstance(err, AcrPublishError):
            return str(err)
        return traceback.format_exc(*args, **kwargs)


def _server_module() -> types.ModuleType | None:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return main if spec is not None and spec.name == SERVER_MODULE else None


def _check_server(server: types.ModuleType) -> None:
    """Raise ProviderServerChanged unless the server aborts through a `traceback.format_exc()` it looks up per call."""
    decorator = getattr(server, "_abort_with_traceback", None)
    wrappers = [const for const in getattr(getattr(decorator, "__code__", None), "co_consts", ())
                if isinstance(const, types.CodeType)]
    names = {name for code in wrappers for name in code.co_names}
    current = getattr(server, "traceback", None)
    if not {"traceback", "format_exc", "abort"} <= names or not (current is traceback
                                                                 or isinstance(current, _ServerTraceback)):
        raise ProviderServerChanged(
            f"the Pulumi SDK's dynamic provider server ({SERVER_MODULE}) no longer aborts a failed call through "
            "`_abort_with_traceback` and its module's `traceback.format_exc()`, which components/provider_errors.py "
            "replaces so that an error shows as its message: adapt that module to the pulumi version in "
            "requirements.txt (or pin the version it was written for)")


def serve_messages_alone() -> bool:
    """In the provider process, make the server report an AcrPublishError as its message; True when it applies.

    Called when a provider's module is loaded (the server unpickles the provider by class reference, which imports
    it); idempotent. Elsewhere it changes nothing and returns False."""
    server = _server_module()
    if server is None:
        return False
    _check_server(server)
    if not isinstance(server.traceback, _ServerTraceback):
        server.traceback = _ServerTraceback()
    return True
