"""What the config tests share: sample registries and images, and one way to ask the validator for its problems."""
from __future__ import annotations

from pathlib import Path

from components.config.problems import ConfigError
from components.config.validate import settings_from_values
from tests.harness import PROJECT_ROOT

EE = {"edition": "enterprise", "instanceId": "cri-0123456789abcdef", "namespace": "acme"}
PERSONAL = {"edition": "personal", "namespace": "acme", "username": "deployer"}
LOCAL = {"edition": "local"}
WEB = {"name": "web", "context": "app", "target": "web"}
DOCKERFILE = "FROM scratch AS web\nCOPY f /f\n"


def problems(values=None, *, registry=None, images=None, region="cn-hangzhou", has_password=False, stack="dev",
             root: Path = PROJECT_ROOT, password_length: int | None = None, **top) -> list[str]:
    """The problems settings_from_values finds in `values` (registry and images default to EE and [WEB]; other
    keyword arguments are top-level keys), each message one line."""
    vals = dict(values or {})
    vals.setdefault("registry", registry if registry is not None else EE)
    vals.setdefault("images", images if images is not None else [WEB])
    vals.update(top)
    try:
        settings_from_values(stack, vals, region=region, has_password=has_password, password_length=password_length,
                             project_root=root)
    except ConfigError as err:
        assert str(err).count("\n") == len(err.problems)
        return err.problems
    return []


def one(*args, **kwargs) -> str:
    """The one problem found (the test fails when there are more or none)."""
    found = problems(*args, **kwargs)
    assert len(found) == 1, found
    return found[0]


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def git_dir(path: Path) -> Path:
    """What git itself takes for a repository directory: HEAD, objects/ and refs/."""
    write(path / "HEAD", "ref: refs/heads/main\n")
    (path / "objects").mkdir()
    (path / "refs").mkdir()
    return path
