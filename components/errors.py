"""Errors as the Pulumi engine shows them: a `pulumi.RunError` as its message alone, anything else with a traceback.

Pulumi's Python language host (sdk/python/cmd/pulumi-language-python-exec) prints a `pulumi.RunError` raised by the
program as its message and any other exception with a full traceback. Every error the program raises for bad input
or a failed check (ConfigError, BuildPlanError, PreflightError, RegistryError, ...) is meant for the person running
`pulumi up`, so under the engine it is raised as a class that is both its own and `pulumi.RunError`: `except
PreflightError` still catches it, and the engine prints its message only. The classes are made on first use, so that
importing the components (tools, the build-context engine) does not import the Pulumi SDK.
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from typing import Iterator


@functools.cache
def engine_class(cls: type[BaseException]) -> type[BaseException]:
    """`cls` as the program raises it under the engine: a subclass of `cls` and of `pulumi.RunError`, with the
    same name (whatever names the type, such as reports or tests of a project copy, still works)."""
    import pulumi

    if issubclass(cls, pulumi.RunError):
        return cls
    return type(cls.__name__, (cls, pulumi.RunError), {"__module__": cls.__module__, "__doc__": cls.__doc__})


def as_engine_error(err: BaseException) -> BaseException:
    """The same error (message, args, attributes such as `kind`), of its class as `engine_class` makes it."""
    cls = engine_class(type(err))
    if cls is type(err):
        return err
    same = cls.__new__(cls, *err.args)
    same.args = err.args
    same.__dict__.update(err.__dict__)
    return same


class Interrupted(Exception):
    """Ctrl-C (SIGINT) while the program planned: one line, no traceback."""


@contextlib.contextmanager
def reported_to_engine(*types: type[BaseException]) -> Iterator[None]:
    """Re-raise any of `types` escaping the block as the same error that is also a `pulumi.RunError`, and Ctrl-C as
    an `Interrupted` one (its message, such as the build-context scan's, or a plain one)."""
    try:
        yield
    except types as err:
        raise as_engine_error(err) from None
    except KeyboardInterrupt as err:
        raise as_engine_error(Interrupted(str(err) or "interrupted (Ctrl-C)")) from None


def leave_quietly_on_interrupt() -> None:
    """From here on, SIGINT ends the program at once, without a traceback.

    Called once everything is declared: the only work left is the SDK waiting on the engine, and a SIGINT then comes
    from the engine stopping the run (it prints why, e.g. a provider plugin it cannot start) or from a Ctrl-C the CLI
    handles itself. Python's default would print a KeyboardInterrupt traceback from the SDK's event loop."""
    def leave(signum: int, frame: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, leave)
