"""Every error the program raises for bad input or a failed check reaches the engine as a `pulumi.RunError`.

Pulumi's Python language host prints a RunError as its message alone and any other exception with a traceback, so
these run the real __main__.py (tests/harness.py run_stack) and check the type of what escapes it: still the
project's own class (so `except PreflightError` works), also a RunError, with the message and attributes unchanged.
"""
from __future__ import annotations


import pulumi
import pytest

from components.copy import CopyError
from components.errors import as_engine_error, engine_class
from components.preflight import PreflightError
from registryclient import RegistryError
from tests.harness import run_stack

NO_PREFLIGHT = {"acr-publish:preflight": "false"}



@pytest.mark.parametrize("failure", [
    PreflightError("preflight for 'x' failed: refused", "unreachable"),
    RegistryError("login for 'x' failed: a protocol problem", "protocol", 502),
    CopyError("copying x failed"),
])
def test_a_failed_check_escapes_the_program_as_a_run_error_of_its_own_class(preflight_calls, failure) -> None:
    preflight_calls.fail = failure
    with pytest.raises(type(failure)) as err:
        run_stack("local")
    assert isinstance(err.value, pulumi.RunError), f"{type(err.value).__mro__} is no RunError: a traceback"
    assert str(err.value) == str(failure) and err.value.args == failure.args
    assert vars(err.value) == vars(failure), "attributes such as kind and status are kept"


def test_a_sensitive_file_is_a_build_plan_error_that_is_a_run_error(project, preflight_calls) -> None:
    (project / "app" / "www" / ".env").write_text("SESSION_SECRET=not-a-real-one\n")
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", NO_PREFLIGHT, project_root=project)
    assert type(err.value).__name__ == "BuildPlanError", type(err.value).__mro__
    assert "acr-publish:images[0] (web)" in str(err.value) and "www/.env" in str(err.value)


def test_a_context_the_engine_refuses_is_a_build_plan_problem_naming_the_image(project, preflight_calls) -> None:
    """A .dockerignore pattern Docker refuses raised a bare ValueError out of the program (a traceback)."""
    with (project / "app" / ".dockerignore").open("a") as handle:
        handle.write("[\n")
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", NO_PREFLIGHT, project_root=project)
    assert type(err.value).__name__ == "BuildPlanError", type(err.value).__mro__
    assert "acr-publish:images[0] (web)" in str(err.value) and "malformed" in str(err.value), str(err.value)


def test_a_config_error_is_a_run_error(preflight_calls) -> None:
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", {"acr-publish:images": "not a list"})
    assert type(err.value).__name__ == "ConfigError"


def test_engine_class_is_made_once_and_keeps_the_name() -> None:
    assert engine_class(PreflightError) is engine_class(PreflightError)
    assert engine_class(PreflightError).__name__ == "PreflightError"
    error = as_engine_error(PreflightError("m", "tls"))
    assert isinstance(error, PreflightError) and isinstance(error, pulumi.RunError) and error.kind == "tls"
    assert as_engine_error(error) is error
