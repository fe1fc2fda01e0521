"""Reading one value of a given type out of a settings map: true/false, one of a set, a non-empty string, a login
user; and unknown keys with a suggestion. Each reader appends the problem it finds and returns the value or None.
"""
from __future__ import annotations

import difflib
from typing import Any, Mapping

from buildcontext.printable import has_control
from components.config.problems import PROBLEMS_MAX
from components.config.shown import shown


def suggest(key: Any, valid: tuple[str, ...]) -> str:
    """The nearest valid key ("did you mean ...?"), else the list of valid keys."""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6) if isinstance(key, str) else []
    hint = f"did you mean '{close[0]}'?" if close else "valid keys: " + ", ".join(valid)
    return hint


def unknown_keys(path: str, given: Mapping[str, Any], valid: tuple[str, ...], problems: list[str],
                 sep: str = ".") -> None:
    """`sep` joins path and key: '.' inside a setting, ':' after the project name (`acr-publish:imagez`)."""
    for key in given:
        if len(problems) >= PROBLEMS_MAX:
            return
        if key not in valid:
            text = key if isinstance(key, str) and key.isprintable() and len(key) <= 80 else shown(key)
            problems.append(f"{path}{sep}{text} is not a known setting: {suggest(key, valid)}")


def read_bool(path: str, value: Any, default: bool, problems: list[str]) -> bool:
    """true or false (the engine hands scalars over as text, so "true" and "false" too)."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append(f"{path} {shown(value)} is invalid: it must be true or false")
    return default


def read_choice(path: str, value: Any, choices: tuple[str, ...], default: str | None,
                problems: list[str]) -> str | None:
    """One of `choices`, spelled exactly (a different case is refused, with the right spelling as the fix)."""
    if value is None:
        return default
    if value in choices:
        return value
    fix = ""
    if isinstance(value, str):
        for c in choices:
            if c.lower() == value.lower():
                fix = f"; try '{c}'"
    problems.append(f"{path} {shown(value)} is invalid: it must be one of {', '.join(choices)}{fix}")
    return default


def read_str(path: str, value: Any, problems: list[str], *,
             if_empty: str = "give a value or remove the key") -> str | None:
    """A string setting, or None when absent or refused. An empty (or blank) string is refused, never taken as
    "unset": `if_empty` is the fix, e.g. what removing the key does."""
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{path} {shown(value)} is invalid: it must be a string; quote it in the stack file")
        return None
    if not value.strip():
        problems.append(f"{path} {shown(value)} is invalid: it is empty; {if_empty}")
        return None
    return value


def read_login_user(path: str, value: Any, problems: list[str], **kwargs: str) -> str | None:
    """A registry login user (`read_str`), or None when absent or refused. It holds no control character (the name
    is printed in messages, where one would move the cursor or start a forged line) and no ':', which HTTP Basic
    authentication cannot carry in a user name (RFC 7617: the first ':' of `user:password` ends the user)."""
    user = read_str(path, value, problems, **kwargs)
    if user is not None and has_control(user):
        problems.append(f"{path} {shown(user)} is invalid: a user name holds no control characters (newline, tab, "
                        "ESC and the like); retype the login name")
        return None
    if user is not None and ":" in user:
        problems.append(f"{path} {shown(user)} is invalid: a registry login user cannot contain ':' (HTTP Basic "
                        "authentication ends the user name at the first ':'); give the user name exactly as the "
                        "registry knows it")
    return user
