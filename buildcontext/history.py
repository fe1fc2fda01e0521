"""The explain history: per (project, stack, image), what the last planned tag of that image was built from.

The program records an image here when it plans it (components/image.py plan_builds); `python -m cli.explain
--stack S --image I` reads exactly that key and nothing else, so a build of one image never changes what another
image's explain says, even when both share a context. There is no guessing of predecessors across keys.

* One file per key under `<cache dir>/history/`, named by a hash of the project directory, stack and image.
* Record: `last`, the state of the latest planned tag, and `previous`, the latest planned state whose tag differs
  from `last`'s (so explain can say why the tag moved even after the run that moved it). A state is the digest
  and tag, the Dockerfile's content hash, the build args as fingerprints (never values), target, platform, the
  remote inputs (base image and remote source -> digest), and the manifest: relative path -> [kind, content hash, link target or device numbers] ("rel/" for directories).
* Header line `acr-publish-history <layout> <digest of last> <sha256 of body>`, then a JSON body. Recording an
  unchanged tag reads the header line only and writes nothing, so a warm plan costs one short read per image.
  `layout` is LAYOUT_VERSION.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boundedjson import parse_json
from buildcontext.files import (CACHE_DIR_ENV, UnusableFile, cache_dir, cache_dir_problem, read_regular,
                               write_atomic)
from errors import AcrPublishError

_MAGIC = b"acr-publish-history"
MAX_BYTES = 1 << 30
# Bump when the record's format changes (header, body, a state's fields); held by tests/unit/buildcontext/test_cache_versions.py,
# which fails and names this constant when the format changes. A file of another layout reads as no history.
LAYOUT_VERSION = "history-1"


def _layout_version() -> bytes:
    return LAYOUT_VERSION.encode()


@dataclass(frozen=True)
class HistoryKey:
    """Which image of which stack of which project."""

    project: Path
    stack: str
    image: str

    def path(self) -> Path:
        ident = b"\0".join((os.fsencode(os.path.abspath(self.project)), self.stack.encode("utf-8", "surrogatepass"),
                            self.image.encode("utf-8", "surrogatepass")))
        return cache_dir() / "history" / f"{hashlib.sha256(ident).hexdigest()[:32]}.json"


@dataclass(frozen=True)
class BuildState:
    """One image's build inputs over one scan (ContextScan.state), without the manifest."""

    digest: str
    """The context digest the content tag is made from."""
    tag: str
    """The content tag planned for these inputs."""
    dockerfile: str
    """sha256 of the Dockerfile's content."""
    build_args: Mapping[str, str]
    """name -> fingerprint (digest.arg_fingerprint), never the value."""
    target: str | None
    platform: str
    remote: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Remote input label (`FROM <ref>`, with `(<platform>)` when not the image's, `ADD <url>`) -> the digest the tag covers."""

    def as_json(self, manifest: Mapping[str, list[str]]) -> dict[str, Any]:
        return {"digest": self.digest, "tag": self.tag, "dockerfile": self.dockerfile,
                "build_args": dict(self.build_args), "target": self.target, "platform": self.platform,
                "remote": dict(self.remote), "manifest": dict(manifest)}


@dataclass(frozen=True)
class Record:
    """What the history holds for one key."""

    last: dict[str, Any]
    previous: dict[str, Any] | None


class HistoryError(AcrPublishError):
    """The history file of a key exists but cannot be used; the message names it and why."""


def _header(key: HistoryKey) -> list[bytes] | None:
    try:
        line = read_regular(key.path(), 4096, first_line_only=True)
    except UnusableFile:
        return None
    if line is None:
        return None
    parts = line.rstrip(b"\n").split(b" ")
    return parts if len(parts) == 4 and parts[0] == _MAGIC else None


def load(key: HistoryKey) -> Record | None:
    """The record of `key`, or None when there is none. Raises HistoryError when the file is unusable."""
    path = key.path()
    try:
        raw = read_regular(path, MAX_BYTES)
    except UnusableFile as exc:
        problem = cache_dir_problem()  # then no history file can exist: deleting one is no fix
        if problem is not None:
            raise HistoryError(problem) from None
        raise HistoryError(f"the history file {path} is {exc}; delete it (the next plan records a new one)") from None
    if raw is None:
        problem = cache_dir_problem()  # a dangling link in place of the directory: no plan could record one
        if problem is not None:
            raise HistoryError(problem)
        return None
    header, sep, body = raw.partition(b"\n")
    parts = header.split(b" ")
    problem = None
    if not sep or len(parts) != 4 or parts[0] != _MAGIC:
        problem = "not an acr-publish history file"
    elif parts[1] != _layout_version():
        return None  # written by another version of this code: as if there were none
    elif hashlib.sha256(body).hexdigest().encode() != parts[3]:
        problem = "corrupted (checksum mismatch)"
    if problem is None:
        try:
            doc = parse_json(body, limit=MAX_BYTES)
        except ValueError:
            doc = None
        if (not isinstance(doc, dict) or not isinstance(doc.get("last"), dict)
                or not (doc.get("previous") is None or isinstance(doc["previous"], dict))):
            problem = "of the wrong shape"
        elif (doc.get("stack"), doc.get("image")) != (key.stack, key.image):
            problem = "the history of another image"
        else:
            return Record(doc["last"], doc.get("previous"))
    raise HistoryError(f"the history file {path} is {problem}; delete it (the next plan records a new one)")


def record(key: HistoryKey, state: BuildState, manifest: Callable[[], Mapping[str, list[str]]]) -> bool:
    """Make `state` the last of `key` (the old last becomes `previous` when its tag differs). `manifest` is
    called only when something is written. False, with a warning, when the history cannot be written."""
    header = _header(key)
    if header is not None and header[1] == _layout_version() and header[2] == state.digest.encode():
        return True
    try:
        old = load(key)
    except HistoryError:
        old = None  # replaced below by a good one
    previous = None
    if old is not None:
        previous = old.previous if old.last.get("tag") == state.tag else old.last
    body = json.dumps({"project": os.path.abspath(key.project), "stack": key.stack, "image": key.image,
                       "last": state.as_json(manifest()), "previous": previous}, separators=(",", ":")).encode()
    data = b"%s %s %s %s\n" % (_MAGIC, _layout_version(), state.digest.encode(), hashlib.sha256(body).hexdigest().encode()) + body
    try:
        write_atomic(key.path(), data)
    except OSError as exc:
        warnings.warn(f"acr-publish: cannot write the explain history {key.path()} ({exc}); explain will not know "
                      f"this plan. Set {CACHE_DIR_ENV} to a writable directory to fix it.", RuntimeWarning,
                      stacklevel=2)
        return False
    return True
