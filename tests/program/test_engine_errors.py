"""Every error the program raises for bad input or a failed check reaches the engine as a `pulumi.RunError`.

Pulumi's Python language host prints a RunError as its message alone and any other exception with a traceback, so
these run the real __main__.py (tests/harness.py run_stack, as_engine=True) and check what escapes it: a RunError
with the message unchanged, raised (without a traceback of it) from the project's own error, an AcrPublishError
whose class and attributes are kept.
"""
from __future__ import annotations


import pulumi
import pytest

from components.copy import CopyError
from errors import AcrPublishError
from registryclient import RegistryError
from tests.harness import NO_PREFLIGHT, reported_error, run_stack



@pytest.mark.parametrize("failure", [
    RegistryError("preflight for 'x' failed: refused", "unreachable"),
    RegistryError("login for 'x' failed: a protocol problem", "protocol", 502),
    CopyError("copying x failed"),
])
def test_a_failed_check_escapes_the_program_as_a_run_error_from_its_own_error(preflight_calls, failure) -> None:
    preflight_calls.fail = failure
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", as_engine=True)
    assert type(err.value) is pulumi.RunError, f"{type(err.value).__mro__} is no RunError: a traceback"
    assert str(err.value) == str(failure) and err.value.__suppress_context__
    original = err.value.__context__
    assert type(original) is type(failure) and isinstance(original, AcrPublishError)
    assert original.args == failure.args and vars(original) == vars(failure), "attributes such as kind are kept"
    with pytest.raises(type(failure)):  # what the other tests catch
        run_stack("local")


def test_a_sensitive_file_is_a_build_plan_error_that_is_a_run_error(project, preflight_calls) -> None:
    (project / "app" / "www" / ".env").write_text("SESSION_SECRET=not-a-real-one\n")
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", NO_PREFLIGHT, project_root=project, as_engine=True)
    assert type(reported_error(err.value)).__name__ == "BuildPlanError", type(err.value.__context__).__mro__
    assert "acr-publish:images[0] (web)" in str(err.value) and "www/.env" in str(err.value)


def test_a_context_the_engine_refuses_is_a_build_plan_problem_naming_the_image(project, preflight_calls) -> None:
    """A .dockerignore pattern Docker refuses raised a bare ValueError out of the program (a traceback)."""
    with (project / "app" / ".dockerignore").open("a") as handle:
        handle.write("[\n")
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", NO_PREFLIGHT, project_root=project, as_engine=True)
    assert type(reported_error(err.value)).__name__ == "BuildPlanError", type(err.value.__context__).__mro__
    assert "acr-publish:images[0] (web)" in str(err.value) and "malformed" in str(err.value), str(err.value)


def test_a_config_error_is_a_run_error(preflight_calls) -> None:
    with pytest.raises(pulumi.RunError) as err:
        run_stack("local", {"acr-publish:images": "not a list"}, as_engine=True)
    assert type(reported_error(err.value)).__name__ == "ConfigError"


def test_no_error_class_is_a_run_error_and_none_is_made_at_run_time() -> None:
    """One place (__main__.py) makes the RunError; the program's errors are plain AcrPublishErrors."""
    for cls in (RegistryError, CopyError):
        assert issubclass(cls, AcrPublishError) and not issubclass(cls, pulumi.RunError)
