"""How text that came from outside the program (file names and contents, server answers, configuration, user names)
appears in anything it prints: one rule, `escaped`, used by the engine's messages, `cli.explain`, the settings'
errors and the registry client's excerpts.

Every character Python does not call printable (C0 and C1 controls such as ESC, BEL, CR and newline, DEL, line and
paragraph separators, format characters such as U+202E, and the surrogates that stand for undecodable bytes in a
file name) is written as its Python escape (`\\x1b`, `\\n`, `\\u202e`, `\\udcff`), so no such text can move a
terminal's cursor, colour a CI log or start a line of its own (a forged `fix:` line or manifest line). It is the
rule `repr` applies to a str, so a value shown with `repr` (quoted) and one shown with `escaped` (bare) agree.
"""
from __future__ import annotations

__all__ = ["escaped", "has_control"]


def escaped(text: str) -> str:
    """`text` with every non-printable character written as its Python escape (printable text is unchanged)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def has_control(text: str) -> bool:
    """Whether `text` holds a character `escaped` would escape (what names with a rule refuse)."""
    return not text.isprintable()
