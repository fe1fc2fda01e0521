"""components/provider_errors.py against the pinned SDK's provider server: the module it patches is the one
`python -m pulumi.dynamic` runs (its source, without the final `main()` that would serve forever), a server that
aborts differently is refused loudly, and nothing changes outside the provider process. What the real provider
process sends the engine is tests/e2e/test_dynamic_provider_errors.py.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path

import pulumi.dynamic
import pytest

from components.provider_errors import SERVER_MODULE, ProviderServerChanged, serve_messages_alone

SERVER_SOURCE = Path(pulumi.dynamic.__file__).with_name("__main__.py")


def server_module(source: str) -> types.ModuleType:
    """The provider server's module as `python -m pulumi.dynamic` defines it as `__main__`, minus serving."""
    tree = ast.parse(source)
    last = tree.body[-1]
    assert isinstance(last, ast.Expr) and ast.unparse(last) == "main()", "the server no longer ends with main()"
    tree.body.pop()
    module = types.ModuleType("__main__")
    module.__spec__ = importlib.util.spec_from_file_location(SERVER_MODULE, SERVER_SOURCE)
    exec(compile(tree, str(SERVER_SOURCE), "exec"), module.__dict__)
    return module


class _Context:
    """The part of grpc.ServicerContext the server's abort uses: it records what would go to the engine."""

    def abort(self, code, details: str) -> None:
        self.details = details


def aborted_with(server: types.ModuleType, err: Exception) -> str:
    def fail(_self, _request, _context):
        raise err

    context = _Context()
    server._abort_with_traceback(fail)(None, None, context)
    return context.details


def test_the_pinned_server_reports_our_errors_as_their_message_and_bugs_with_a_traceback(monkeypatch) -> None:
    from components.copy import CopyError

    server = server_module(SERVER_SOURCE.read_text())
    monkeypatch.setitem(sys.modules, "__main__", server)
    assert "Traceback" in aborted_with(server, CopyError("the tag exists: delete it"))  # the SDK's own behaviour
    assert serve_messages_alone() and serve_messages_alone()  # idempotent
    assert aborted_with(server, CopyError("the tag exists: delete it")) == "the tag exists: delete it"
    bug = aborted_with(server, KeyError("targetServer"))
    assert bug.startswith("Traceback (most recent call last):") and bug.rstrip().endswith("KeyError: 'targetServer'")


@pytest.mark.parametrize("changes", [
    [("traceback.format_exc()", "str(sys.exc_info()[1])")],  # reports the error another way
    [("_abort_with_traceback", "_abort_with_details")],  # another decorator
    [("traceback.format_exc()", "format_exc()"),  # a global of its own holds the function
     ("import traceback\n", "import traceback\nfrom traceback import format_exc\n")],
])
def test_a_server_that_aborts_otherwise_is_refused_loudly(monkeypatch, changes) -> None:
    source = SERVER_SOURCE.read_text()
    for old, new in changes:
        assert old in source
        source = source.replace(old, new)
    monkeypatch.setitem(sys.modules, "__main__", server_module(source))
    with pytest.raises(ProviderServerChanged, match="adapt that module to the pulumi version in requirements.txt"):
        serve_messages_alone()


def test_outside_the_provider_process_nothing_changes() -> None:
    main = sys.modules["__main__"]
    before = dict(vars(main))
    assert serve_messages_alone() is False
    assert dict(vars(main)) == before
