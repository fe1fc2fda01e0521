"""The refusal of a context holding the staging directory `.acr-publish/`: its suggested ignore line is one Docker
reads back as that directory (whatever the project directory is named: a leading space, ESC, a newline), it is
printed escaped (no raw control character, no forged line), it names the ignore file in effect, and the context's
other problems (the cache directory inside it) are reported in the same run."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from components import image as image_module
from components.config.schema import ImageSettings, RegistrySettings, Settings

LINE = re.compile(r"add the line (.+?) to (\S+) \(with no '!'")


def _settings(root: Path, context: str, dockerfile: str) -> Settings:
    return Settings(stack="s", region=None, registry=RegistrySettings(edition="local", namespace=None,
                                                                        server="127.0.0.1:1"),
                    images=(ImageSettings(name="web", context=context, dockerfile=dockerfile),), protect=False,
                    retain_on_delete=False, preflight=False, project_root=root)


def _refusal(settings: Settings) -> str:
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(settings)
    return str(err.value)


@pytest.mark.parametrize("project_name", [" proj", "proj ", "pr\x1b[31mo\nfix: j", "#p*[x]", "!p\tq"])
def test_the_suggested_line_is_escaped_and_docker_reads_it_back_as_the_staging_directory(
        remote_calls, tmp_path, monkeypatch, project_name):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    outer = tmp_path / "outer"
    root = outer / project_name
    root.mkdir(parents=True)
    (outer / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    settings = _settings(root, "..", "../Dockerfile")
    text = _refusal(settings)
    assert all(line.isprintable() for line in text.split("\n")), repr(text)
    assert not any(line.lstrip().startswith("fix:") for line in text.splitlines()), text
    found = LINE.search(text)
    assert found and found.group(2) == "../.dockerignore", text
    (outer / ".dockerignore").write_text(found.group(1) + "\n")
    assert image_module.plan_builds(settings)["web"].tag, "the suggested line excludes the staging directory"


def test_the_ignore_file_in_effect_is_named(remote_calls, tmp_path, monkeypatch):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "Dockerfile.dockerignore").write_text("*.tmp\n")
    found = LINE.search(_refusal(_settings(tmp_path, ".", "Dockerfile")))
    assert found and found.groups() == (".acr-publish/", "Dockerfile.dockerignore"), found


def test_the_cache_dir_inside_the_context_is_reported_in_the_same_run(remote_calls, tmp_path, monkeypatch):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    text = _refusal(_settings(tmp_path, ".", "Dockerfile"))
    assert "holds .acr-publish/" in text and "ACR_PUBLISH_CACHE_DIR=" in text and "(at cache)" in text, text
