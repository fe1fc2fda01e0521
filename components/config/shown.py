"""How configuration values appear in messages: escaped, bounded in length and depth, never a secret.

Also Pulumi's stack-name grammar, which decides whether a stack name is shown as itself.
"""
from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any

from buildcontext.printable import escaped

STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
"""Pulumi's stack and project name rule (pkg/backend validateStackName): 1-100 of A-Z a-z 0-9 _ . -; also each part
of an `organization/project/stack` StackReference name."""

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 160
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple, _REPR.maxset = 3, 6, 6, 6, 6


def shown(value: Any) -> str:
    """A value read from outside (config, another stack's exports) as messages show it: repr (control characters
    escaped), bounded in length and depth."""
    return _REPR.repr(value)


def shown_bare(value: Any) -> str:
    """`shown` of a string without its quotes."""
    return shown(value)[1:-1]


def shown_path(path: Path | str) -> str:
    """A file system path in a message: control characters and undecodable bytes escaped, length bounded."""
    text = str(path)
    return escaped(text) if len(text) <= 160 else shown(text)[1:-1]


def shown_name(name: str) -> str:
    """A stack name as it appears in prose: itself when valid, else escaped and bounded."""
    return name if isinstance(name, str) and STACK_NAME.fullmatch(name) else shown(name)[1:-1]
