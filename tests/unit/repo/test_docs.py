"""The documentation as a guide: README.md stays short, its links resolve, and every test the docs name exists.

README.md, docs/*.md and bench/README.md back their claims by naming tests; a test renamed or moved without the
docs following would leave a claim unbacked, so each name is checked here.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.harness import PROJECT_ROOT

ROOT = PROJECT_ROOT
README = ROOT / "README.md"
DOCUMENTS = [README, ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation other than - and _ dropped, spaces as -."""
    anchors = set()
    for line in path.read_text().splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            text = heading.group(1).strip().lower().replace("`", "")
            anchors.add(re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text)))
    return anchors


def _links(path: Path) -> list[tuple[Path, str]]:
    """Relative Markdown links to .md files in `path`: (target file, anchor or "")."""
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if "://" in target:
            continue
        file, _, anchor = target.partition("#")
        if file.endswith(".md"):
            found.append(((path.parent / file).resolve(), anchor))
    return found


def _test_functions() -> dict[str, set[str]]:
    """Every `def test_…` under tests/, by file relative to the root."""
    functions = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        functions[str(path.relative_to(ROOT))] = set(re.findall(r"^\s*(?:async )?def (test_\w+)", path.read_text(), re.M))
    return functions


def test_the_readme_is_a_guide_of_at_most_200_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference material to docs/"


def test_every_docs_link_in_the_readme_resolves():
    links = [(file, anchor) for file, anchor in _links(README) if (ROOT / "docs") in file.parents]
    assert links, "README.md links no document under docs/"
    for file, anchor in links:
        assert file.is_file(), f"README.md links {file.relative_to(ROOT)}, which does not exist"
        if anchor:
            assert anchor in _anchors(file), f"README.md links {file.relative_to(ROOT)}#{anchor}: no such heading"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_between_documents_resolves(document):
    for file, anchor in _links(document):
        assert file.is_file(), f"{document.relative_to(ROOT)} links {file}, which does not exist"
        if anchor:
            assert anchor in _anchors(file), f"{document.relative_to(ROOT)} links {file.name}#{anchor}: no such heading"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_test_the_documents_name_exists(document):
    text = document.read_text()
    functions = _test_functions()
    every_function = set().union(*functions.values())
    name = document.relative_to(ROOT)
    for path in set(re.findall(r"tests/[\w/]+\.py", text)):
        assert (ROOT / path).is_file(), f"{name} names {path}, which does not exist"
    for path, function in re.findall(r"(tests/[\w/]+\.py)::(test_\w+)", text):
        assert function in functions.get(path, set()), f"{name} names {path}::{function}, which does not exist"
    for function in set(re.findall(r"(?:`|::)(test_\w+)`?", text)):
        assert function in every_function, f"{name} names the test {function}, which does not exist"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_documents_name_no_issue_and_no_path_outside_the_repository(document):
    text = document.read_text()
    name = document.relative_to(ROOT)
    assert not re.search(r"\bissues? #?\d+", text, re.I), f"{name} refers to an issue number"
    assert "../shared" not in text and "/work/" not in text, f"{name} names a path outside the repository"


PRODUCTION_PACKAGES = ("components", "components.config", "registryclient", "buildcontext", "imageaudit", "cli")
DOCSTRING_MAX_LINES = 15


def _production_modules() -> list[str]:
    import pkgutil

    names = ["errors", *(f"{folder}.{p.stem}" for folder in ("scripts", "bench") for p in (ROOT / folder).glob("*.py"))]
    for package in PRODUCTION_PACKAGES:
        module = __import__(package, fromlist=["__path__"])
        names += [f"{package}.{info.name}" for info in pkgutil.iter_modules(module.__path__) if not info.ispkg]
    return sorted(names)


@pytest.mark.parametrize("name", _production_modules())
def test_a_module_docstring_says_what_it_owns_briefly(name, monkeypatch):
    """Read from the imported module's __doc__: what a maintainer sees first, at most 15 lines, no history."""
    import importlib

    folder, _, module = name.partition(".")
    if folder in ("scripts", "bench"):  # run as programs, importing their siblings by bare name
        monkeypatch.syspath_prepend(str(ROOT / folder))
        name = module
    doc = importlib.import_module(name).__doc__
    assert doc and doc.strip(), f"{name} has no module docstring saying what it owns"
    lines = doc.strip("\n").splitlines()
    assert len(lines) <= DOCSTRING_MAX_LINES, f"{name}'s docstring is {len(lines)} lines (at most {DOCSTRING_MAX_LINES})"
    assert not re.search(r"\bissues? #?\d+", doc, re.I), f"{name}'s docstring refers to an issue number"
    assert "../shared" not in doc and "/work/" not in doc, f"{name}'s docstring names a path outside the repository"
