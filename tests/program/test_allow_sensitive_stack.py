"""allowSensitive through the real program: a stack whose context holds app/www/.env is refused with the file
named, accepted once the image lists it, and an invalid entry is a configuration problem with its key path."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import NO_PREFLIGHT, run_stack


def images(allow: list | None) -> list[dict]:
    extra = {} if allow is None else {"allowSensitive": allow}
    return [{"name": "web", "context": "app", "target": "web", "buildArgs": {"APP_ENV": "local"}, **extra}]


@pytest.fixture
def project(project) -> Path:
    """The copy of the project (tests/conftest.py) whose sample app carries a dotenv file inside the files its
    images see."""
    (project / "app" / "www" / ".env").write_text("SESSION_SECRET=not-a-real-one\n")
    return project


# run_stack imports the copy's own components, so its exception classes are not ours: match them by name.

def run(project: Path, allow: list | None):
    return run_stack("local", {**NO_PREFLIGHT, "acr-publish:images": images(allow)}, project_root=project)


def test_a_dotenv_file_in_the_context_is_refused_and_named(project, preflight_calls):
    with pytest.raises(Exception) as err:
        run(project, None)
    msg = str(err.value)
    assert type(err.value).__name__ == "BuildPlanError", repr(err.value)
    assert "acr-publish:images[0] (web)" in msg and "www/.env" in msg and "a dotenv file" in msg, msg
    assert "not-a-real-one" not in msg, "the guard must never print a secret"


def test_allow_sensitive_accepts_the_listed_file_and_says_so(project, preflight_calls):
    result = run(project, ["www/.env"])
    assert result.outputs["images"]["web"]["tag"].startswith("ctx-")
    assert any("acr-publish:images[0] (web): allowSensitive sends www/.env" in w for w in result.warnings), \
        result.warnings
    assert not any("not-a-real-one" in w for w in result.warnings)


@pytest.mark.parametrize("bad", ["../etc", ".", "/www/.env"])
def test_an_invalid_entry_is_a_config_problem_with_its_key_path(project, preflight_calls, bad):
    with pytest.raises(Exception) as err:
        run(project, ["www/.env", bad])
    assert type(err.value).__name__ == "ConfigError", repr(err.value)
    assert f"acr-publish:images[0].allowSensitive[1] {bad!r} is invalid: " in str(err.value), str(err.value)


# Build args land in the image history: a credential-looking one is refused through the real program, and one
# accepted with `buildArg:NAME` is warned about and reaches docker.Image as a Pulumi secret.
TOKEN_VALUE = "npm_" + "a1B2c3D4e5" * 3 + "F6g7H8"  # assembled at run time: the shape of an npm token


def run_args(project: Path, build_args: dict, allow: list):
    # The shipped stages declare the args (the image history records an arg only where a stage of the target's
    # FROM chain declares it; tests/unit/buildcontext/test_stage_guard.py has the other side).
    dockerfile = project / "app" / "Dockerfile"
    text = dockerfile.read_text()
    declared = "".join(f"ARG {name}\n" for name in build_args)
    dockerfile.write_text(text.replace("ARG APP_VERSION=0.0.0\n", f"ARG APP_VERSION=0.0.0\n{declared}", 1))
    imgs = [{"name": "web", "context": "app", "target": "web", "buildArgs": {"APP_ENV": "local", **build_args},
             "allowSensitive": ["www/.env", *allow]}]
    return run_stack("local", {**NO_PREFLIGHT, "acr-publish:images": imgs}, project_root=project)


@pytest.mark.parametrize("name,value", [("NPM_TOKEN", "plain-looking-1"), ("REGISTRY_KEY_ID", TOKEN_VALUE)])
def test_a_sensitive_build_arg_is_refused_and_named_never_its_value(project, preflight_calls, name, value):
    with pytest.raises(Exception) as err:
        run_args(project, {name: value}, [])
    msg = str(err.value)
    assert type(err.value).__name__ == "BuildPlanError", repr(err.value)
    assert "acr-publish:images[0] (web)" in msg and f"buildArg:{name}" in msg and "image history" in msg, msg
    assert f"list 'buildArg:{name}' in this image's allowSensitive" in msg, msg
    assert value not in msg and value[4:] not in msg, "a build-arg value must never be printed"


def test_an_allowed_build_arg_warns_and_reaches_the_image_as_a_secret(project, preflight_calls):
    result = run_args(project, {"NPM_TOKEN": TOKEN_VALUE}, ["buildArg:NPM_TOKEN"])
    assert any("allowSensitive sends" in w and "buildArg:NPM_TOKEN (its name says" in w for w in result.warnings), \
        result.warnings
    img = result.by_name("web-image")
    assert img.inputs["build"]["args"]["NPM_TOKEN"] == TOKEN_VALUE
    assert "build.args.NPM_TOKEN" in img.secret_inputs, img.secret_inputs
    assert "build.args.APP_ENV" not in img.secret_inputs, "only the sensitive arg is a secret"
    assert not any(TOKEN_VALUE in w or TOKEN_VALUE[4:] in w for w in result.warnings)


@pytest.mark.parametrize("bad,rule", [("buildArg:NPM_TOKN", "this image passes no build arg 'NPM_TOKN'"),
                                      ("buildarg:NPM_TOKEN", "write 'buildArg:NPM_TOKEN'")])
def test_a_build_arg_entry_must_name_one_of_the_images_build_args(project, preflight_calls, bad, rule):
    with pytest.raises(Exception) as err:
        run_args(project, {"NPM_TOKEN": TOKEN_VALUE}, [bad])
    assert type(err.value).__name__ == "ConfigError", repr(err.value)
    assert f"acr-publish:images[0].allowSensitive[1] {bad!r} is invalid: " in str(err.value) and rule in str(err.value)
    assert TOKEN_VALUE not in str(err.value)
