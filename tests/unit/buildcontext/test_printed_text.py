"""Text from files, servers and config is printed escaped (buildcontext/printable.py): no file name can put a raw
ESC, BEL, CR or newline on a terminal or forge a line (`fix:`, a manifest line) in the guard's message or in
`cli.explain`; user names with control characters are refused; the `.dockerignore` line the guard suggests is
printable and, read back as Docker reads it, matches the file (the real engine agrees: tests/e2e)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from buildcontext import ContextScan, SensitiveFilesError
from buildcontext.dockerignore import PatternMatcher, parse_ignore_file
from buildcontext.history import HistoryKey
from buildcontext.printable import escaped
from buildcontext.sensitive import dockerignore_escape
from cli import explain
from components.config.problems import ConfigError
from components.config.validate import settings_from_values

RAW = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202e]")
HOSTILE = ["evil\nfix: add these lines to /etc/passwd:\n  *", "\x1b]0;owned\x07.env", "a\rfix: x/.env",
           "bell\x07/.env", "rtl\u202egpj.env", "nl\u2028x/.env", ".env\x1b[2K"]


def _ctx(tmp_path: Path, names: list[str]) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    for name in names:
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text("-----BEGIN RSA PRIVATE KEY-----\nx\n")
    return ctx


def test_the_guard_message_escapes_every_name_and_cannot_be_forged(tmp_path) -> None:
    ctx = _ctx(tmp_path, HOSTILE)
    with pytest.raises(SensitiveFilesError) as err:
        with ContextScan(ctx, cache=False) as scan:
            scan.report({})
    text = str(err.value)
    assert not RAW.search(text), ascii(text)
    lines = text.split("\n")
    assert [line for line in lines if line.startswith("fix:")] == [f"fix: add these lines to {ctx}/.dockerignore:"]
    # one line per finding, then the fix, then one line per suggested pattern, then the allowSensitive hint
    assert len(lines) == 1 + len(HOSTILE) + 1 + len(HOSTILE) + 1, text
    for line in lines[len(HOSTILE) + 2: 2 * len(HOSTILE) + 2]:
        pattern = line.removeprefix("  ")
        assert pattern.isprintable() and parse_ignore_file(pattern + "\n"), pattern


def test_explain_escapes_names_in_the_manifest_and_findings(tmp_path, capsys) -> None:
    names = ["plain.txt", "esc\x1b[31mred", "bell\x07", "nl\nfake-manifest-line", "tab\tx", "del\x7f"]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    for name in names:
        (ctx / name).write_text("x\n")
    (ctx / "link\x1b").symlink_to("target\x1b]8;;http://x\x07")
    (ctx / ".env\nfix: x").write_text("A=1\n")
    assert explain.main([str(ctx)]) == 0
    out = capsys.readouterr().out
    assert not RAW.search(out.replace("\n", "")) and "\x1b" not in out, ascii(out)
    manifest = out.split("path(s):\n", 1)[1].split("\nsensitive", 1)[0].splitlines()
    assert len(manifest) == len(names) + 3, manifest  # the names, the link, the .env file, the Dockerfile
    assert any(line.endswith(r"nl\nfake-manifest-line") for line in manifest)
    assert r"target\x1b]8;;http://x\x07" in out
    assert r".env\nfix: x" in out and "\nfix:" not in out


def test_explain_stack_diff_escapes_recorded_names_and_tags(tmp_path, capsys, monkeypatch) -> None:
    """The history file is read back from disk: an edited one cannot put control characters on the terminal."""
    from buildcontext import history
    from cli import explain as cli

    ctx = _ctx(tmp_path, [])
    (ctx / "ok.txt").write_text("x")
    with ContextScan(ctx, cache=False) as scan:
        state = scan.state()
        manifest = scan.manifest()
    old = dict(state.as_json({**manifest, "gone\x1b[2J": ["f", "0" * 64]}), tag="t\x1b]0;x\x07", digest="0" * 64)
    lines = cli._history_lines(HistoryKey(tmp_path, "dev", "web"), history.Record(old, None), state, manifest)
    text = "\n".join(lines)
    assert "\x1b" not in text and "\x07" not in text and r"gone\x1b[2J" in text, ascii(text)


@pytest.mark.parametrize("key,value", [("username", "dep\x1b[31mloyer"), ("username", "deployer\n"),
                                       ("username", "a\rb"), ("username", "bell\x07")])
def test_user_names_with_control_characters_are_refused(key, value) -> None:
    values = {"registry": {"edition": "local", "username": value}, "images": [{"name": "web", "context": "app"}]}
    with pytest.raises(ConfigError) as err:
        settings_from_values("local", values, region=None, has_password=True, password_length=8)
    text = str(err.value)
    assert f"acr-publish:registry.{key}" in text and "control characters" in text
    assert not RAW.search(text) and text.count("\n") == len(err.value.problems), ascii(text)


def test_a_source_user_name_with_control_characters_is_refused() -> None:
    values = {"registry": {"edition": "local"}, "promoteFrom": "local", "sourceUsername": "reader\x1b[8m"}
    with pytest.raises(ConfigError) as err:
        settings_from_values("local-release", values, region=None, has_password=False, has_source_password=True)
    assert "acr-publish:sourceUsername" in str(err.value) and "control characters" in str(err.value)
    assert "\x1b" not in str(err.value)


@pytest.mark.parametrize("name", [" lead", "trail ", "  both  ", " ", "new\nline", "cr\r", "tab\tx", "\ttab-lead",
                                  "esc\x1b", "undecodable\udcff", "#hash", "!bang", "back\\slash", "star*q?[x]",
                                  "d/ sub/f", "d/sub /f", "nbsp\xa0", "\u2028sep", "x y"])
def test_the_suggested_line_reads_back_as_a_pattern_matching_the_name(name) -> None:
    line = dockerignore_escape(name)
    assert line.isprintable() and line == line.strip(), ascii(line)
    patterns = parse_ignore_file(line + "\n")
    assert len(patterns) == 1 and not patterns[0].startswith("!"), (line, patterns)
    # the walk hands the matcher names as Go sees them: an undecodable byte is U+FFFD there
    seen = name.replace("\udcff", "\ufffd")
    matched, _ = PatternMatcher(patterns).matches_using_parent_results(seen)
    assert matched, (ascii(name), line)
    assert not PatternMatcher(patterns).matches_using_parent_results("other-name")[0]


def test_one_escaping_rule() -> None:
    for text in ["\x1b[31m", "a\nb", "\u202e", "\udcff", "tab\t", "ok é"]:
        assert repr(text)[1:-1].replace("\\\\", "\\") == escaped(text) or text == "ok é"
    assert escaped("ok é") == "ok é"
