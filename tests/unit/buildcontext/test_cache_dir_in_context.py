"""Nothing the engine writes becomes a build input: a cache directory (stat cache, explain history) inside a build
context is refused, with the variable, the value, the rule and the fix, unless the context's ignore file excludes
it whole; then tags stay put run after run. Also: an unusable cache directory (a file, a symlink loop) is reported
as such by `cli.explain --stack`, never as a history file to delete."""
from __future__ import annotations

from pathlib import Path

import pytest

from buildcontext import ContextScan, context_digest
from buildcontext.context import CacheInContextError
from buildcontext.history import HistoryKey, record
from cli import explain


def _context(root: Path) -> Path:
    ctx = root / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "app.txt").write_text("hello\n")
    return ctx


def _three_digests(ctx: Path) -> set[str]:
    out = set()
    for _ in range(3):
        with ContextScan(ctx) as scan:
            digest = scan.digest()
            # The program records every plan in the explain history: that write must not move the next tag.
            record(HistoryKey(ctx, "dev", "web"), scan.state(), scan.manifest)
        out.add(digest)
    return out


@pytest.mark.parametrize("where", [".acr-cache", "deep/er/cache", "has space/cache", "weird\nname"])
def test_a_cache_dir_inside_the_context_is_refused_naming_the_variable_value_rule_and_fix(tmp_path, monkeypatch,
                                                                                         where) -> None:
    ctx = _context(tmp_path)
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(ctx / where))
    with pytest.raises(CacheInContextError) as err:
        context_digest(ctx)
    text = str(err.value)
    assert text.startswith("ACR_PUBLISH_CACHE_DIR=") and "inside the build context" in text, text
    assert "set ACR_PUBLISH_CACHE_DIR to a directory outside every build context" in text
    assert ".dockerignore" in text and "\n" not in text, text
    assert not (ctx / where.split("/")[0]).exists(), "nothing may be written before the refusal"


def test_the_suggested_ignore_line_makes_the_tag_stable(tmp_path, monkeypatch) -> None:
    """The fix the message gives, applied as written, is accepted and the tag no longer moves."""
    ctx = _context(tmp_path)
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(ctx / " lead space"))
    with pytest.raises(CacheInContextError) as err:
        context_digest(ctx)
    line = str(err.value).split("add the line ", 1)[1].split(" to ", 1)[0]
    (ctx / ".dockerignore").write_text(line + "\n")
    assert len(_three_digests(ctx)) == 1
    assert (ctx / " lead space" / "contexts").is_dir() and (ctx / " lead space" / "history").is_dir()


@pytest.mark.parametrize("ignore", ["cache", "cache/", "/cache", "ca*", "**/cache", "cache\n!other"])
def test_a_cache_dir_the_ignore_file_excludes_whole_keeps_the_tag(tmp_path, monkeypatch, ignore) -> None:
    ctx = _context(tmp_path)
    (ctx / ".dockerignore").write_text(ignore + "\n")
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(ctx / "cache"))
    assert len(_three_digests(ctx)) == 1


@pytest.mark.parametrize("ignore", ["cache/contexts", "cache/*.json", "cache\n!cache/history", "cache\n!**/keep",
                                    "other"])
def test_an_ignore_file_that_may_send_part_of_the_cache_dir_is_refused(tmp_path, monkeypatch, ignore) -> None:
    ctx = _context(tmp_path)
    (ctx / ".dockerignore").write_text(ignore + "\n")
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(ctx / "cache"))
    with pytest.raises(CacheInContextError):
        context_digest(ctx)


def test_the_dockerfile_specific_ignore_file_is_the_one_that_counts(tmp_path, monkeypatch) -> None:
    ctx = _context(tmp_path)
    (ctx / ".dockerignore").write_text("cache\n")
    (ctx / "Dockerfile.dockerignore").write_text("other\n")  # replaces .dockerignore for this Dockerfile
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(ctx / "cache"))
    with pytest.raises(CacheInContextError) as err:
        context_digest(ctx, ctx / "Dockerfile")
    assert "Dockerfile.dockerignore" in str(err.value)


def test_the_default_location_inside_the_context_is_refused_too(tmp_path, monkeypatch) -> None:
    """XDG_CACHE_HOME (platformdirs' rule) pointing into the context is the same mistake."""
    ctx = _context(tmp_path)
    monkeypatch.delenv("ACR_PUBLISH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(ctx / ".cache"))
    with pytest.raises(CacheInContextError) as err:
        context_digest(ctx)
    assert str(err.value).startswith("XDG_CACHE_HOME (") and "set ACR_PUBLISH_CACHE_DIR" in str(err.value)


def test_a_cache_dir_reached_through_a_symlink_is_judged_where_it_lands(tmp_path, monkeypatch) -> None:
    ctx = _context(tmp_path)
    (tmp_path / "alias").symlink_to(ctx)
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "alias" / "c"))
    with pytest.raises(CacheInContextError):
        context_digest(ctx)
    # A symlink in the context pointing at a cache dir elsewhere sends only the link: accepted.
    outside = tmp_path / "outside-cache"
    outside.mkdir()
    (ctx / "link").symlink_to(outside)
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(ctx / "link"))
    assert len(_three_digests(ctx)) == 1


@pytest.mark.parametrize("store", ["", "history", "contexts"])
def test_a_context_that_is_the_cache_dir_or_one_of_its_stores_is_refused(tmp_path, monkeypatch, store) -> None:
    cache = tmp_path / "cache"
    ctx = cache / store if store else cache
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(cache))
    with pytest.raises(CacheInContextError):
        context_digest(ctx)


def test_cache_false_writes_nothing_so_is_not_refused(tmp_path, monkeypatch) -> None:
    ctx = _context(tmp_path)
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(ctx / "cache"))
    assert context_digest(ctx, cache=False) == context_digest(ctx, cache=False)
    assert not (ctx / "cache").exists()


@pytest.mark.parametrize("make", ["file", "loop", "file-parent", "dangling"])
def test_explain_names_an_unusable_cache_dir_not_a_history_file(tmp_path, monkeypatch, capsys, make) -> None:
    target = tmp_path / "cache"
    if make == "file":
        target.write_text("not a directory")
    elif make == "loop":
        target.symlink_to(tmp_path / "cache")
    elif make == "dangling":
        target.symlink_to(tmp_path / "nowhere")
    else:
        (tmp_path / "f").write_text("x")
        target = tmp_path / "f" / "cache"
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(target))
    assert explain.main(["--stack", "local", "--image", "web"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ACR_PUBLISH_CACHE_DIR=") and str(target) in err, err
    assert "delete it" not in err and "history file" not in err, err
    assert "Traceback" not in err and err.count("\n") == 1, err
