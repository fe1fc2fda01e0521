"""The stat cache: a disposable memo so an unchanged file is never read twice.

It maps (relative path, size, mtime_ns, ctime_ns, inode, mode) to what reading the file found: its content hash
and the sensitive-content flags of the guard (buildcontext/sensitive.py). Nothing else lives here (the explain
history is buildcontext/history.py); deleting the file only costs the next run a full read.

* One file per (context, Dockerfile) pair under `<cache dir>/contexts/`, named by a hash of both absolute paths
  (the Dockerfile picks the `.dockerignore` in effect, so the file set can differ).
* Entry: relative path -> `<T|U><stat key>|<kind>|<flags>|<value>`: T for a trusted entry, U for one that must
  be re-read; the stat key is size, mtime_ns, ctime_ns, inode and mode, packed as 64-bit fields, in hex (80
  characters, fixed width, so a prefix comparison cannot match a longer key); kind 'f'/'x' (file, executable file), 'l' (symlink: value its
  target), 'p'/'s' (fifo, socket), 'c'/'b' (device: value "major:minor"); value last, so it may hold any
  character. Links and special files are never trusted (their value comes from lstat/readlink, no read). A
  directory the build sends is `<rel>/` -> DIR_ENTRY, without a stat key: only its presence is digested.
  A lookup hits only for a trusted entry whose size, mtime, ctime, inode and full st_mode equal the file's
  lstat now: one string prefix comparison. ctime is in the key as in git's index: a same-size in-place rewrite
  that puts the mtime back still moves the ctime, which no user call can set.
* Racy files (git's "racy clean" problem): a file modified again within the file system's timestamp granularity
  after it was read keeps its stat key. So an entry is trusted only when the file's mtime is older than the
  start of the run that read it minus RACY_WINDOW_NS (git's check; the ctime is in the key, not in this test);
  others are re-read on the next run.
* `sensitive` and `tree`: the guard's verdict over exactly these entries (the paths any rule flags) and the
  digest's tree root over them (buildcontext/digest.py), both pure functions of the entries, reused while a run
  finds the same entries, so a warm run evaluates no rule and encodes no record per file.
* Header line `acr-publish-memo <layout> <encoding> <guard> <sha256 of body>`, then a JSON body (entries as one
  string each, not a list: loading 20,000 of them must cost far less than walking them). The three
  versions are computed, never bumped by hand: `layout` from this module's code, `encoding` from the digest's
  constants (digest.ENCODING_VERSION), `guard` from the rules' code and tables (sensitive.py's syntax tree, so a
  changed rule, table or constant invalidates every cached verdict and a comment does not). Any mismatch, a
  checksum mismatch or a body of the wrong shape makes the whole file ignored; the next save rebuilds it.
* Writes are atomic and skipped when nothing changed, so a warm run of an unchanged context writes nothing
  (buildcontext/files.py: regular files only, bounded reads, stale temporaries removed).
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildcontext import digest, sensitive
from buildcontext.files import CACHE_DIR_ENV, UnusableFile, cache_dir, read_regular, write_atomic

_MAGIC = b"acr-publish-memo"
# Coarser than any file system we expect (FAT: 2 s, ext3/HFS+: 1 s; the kernel's coarse clock that
# stamps mtimes lags the precise clock by a few ms), so "older than run start minus this" really is older.
RACY_WINDOW_NS = 2_000_000_000
MAX_BYTES = 1 << 30
# The entry of a directory: kind 'd', no flags, no value, and no stat key (never looked up, only compared).
DIR_ENTRY = "D|d|0|"


def code_version(source: str) -> str:
    """A version of Python source that changes with its code and constants, not with comments or docstrings."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:]  # type: ignore[attr-defined]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def _module_version(module: Any) -> str:
    return code_version(Path(module.__file__).read_text(encoding="utf-8"))


_versions: bytes | None = None


def versions() -> bytes:
    """`<layout> <encoding> <guard>`, computed once per process."""
    global _versions
    if _versions is None:
        import sys
        _versions = b"%s %s %s" % (_module_version(sys.modules[__name__]).encode(),
                                   digest.ENCODING_VERSION.encode(), _module_version(sensitive).encode())
    return _versions


_pack_key = struct.Struct(">QqqQQ").pack


def _stat_key(st: os.stat_result) -> str:
    """The part of an entry a file's lstat must match: size, mtime_ns, ctime_ns, inode and mode as big-endian
    64-bit fields, in hex (packing and hex cost half of formatting five decimal numbers: this runs per file)."""
    return _pack_key(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode).hex()


def make_entry(st: os.stat_result, kind: str, value: str, flags: int, trusted: bool) -> str:
    """The cache entry of one file, link or special file whose lstat is `st`."""
    return f"{'T' if trusted else 'U'}{_stat_key(st)}|{kind}|{flags}|{value}"


def parse_entry(entry: str) -> tuple[str, str, int]:
    """(kind, value, flags) of an entry."""
    _key, kind, flags, value = entry.split("|", 3)
    return kind, value, int(flags)


def cache_file_for(context: Path, dockerfile: Path) -> Path:
    """The cache file of one (context, Dockerfile) pair: named by a hash of both absolute paths."""
    key = hashlib.sha256(
        os.fsencode(os.path.abspath(context)) + b"\0" + os.fsencode(os.path.abspath(dockerfile))
    ).hexdigest()[:32]
    return cache_dir() / "contexts" / f"{key}.json"


@dataclass
class StatCache:
    """The loaded memo of one context and Dockerfile (empty when disabled, missing or unusable)."""

    path: Path | None
    context: str
    dockerfile: str
    entries: dict[str, str] = field(default_factory=dict)
    sensitive: list[str] | None = None
    """Paths the sensitive-file rules flag among `entries` (valid exactly as long as `entries`)."""
    tree: str | None = None
    """The digest's tree root over `entries` (digest.tree_root, hex; valid exactly as long as `entries`)."""
    problem: str | None = None
    """Why the file on disk was ignored (None when it loaded, or there was none)."""

    @classmethod
    def disabled(cls, context: Path, dockerfile: Path) -> StatCache:
        return cls(None, os.path.abspath(context), os.path.abspath(dockerfile))

    @classmethod
    def load(cls, context: Path, dockerfile: Path) -> StatCache:
        path = cache_file_for(context, dockerfile)
        cache = cls(path, os.path.abspath(context), os.path.abspath(dockerfile))
        try:
            raw = read_regular(path, MAX_BYTES)
        except UnusableFile as exc:
            cache.problem = str(exc)
            return cache
        if raw is not None:
            cache.problem = cache._parse(raw)
        return cache

    def _parse(self, raw: bytes) -> str | None:
        header, sep, body = raw.partition(b"\n")
        parts = header.split(b" ")
        if not sep or len(parts) != 5 or parts[0] != _MAGIC:
            return "not an acr-publish stat cache"
        mine = versions().split(b" ")
        for name, got, want in zip(("layout", "digest encoding", "guard rules"), parts[1:4], mine):
            if got != want:
                return f"written under another {name} version ({got[:16]!r}, this code's is {want.decode()})"
        if hashlib.sha256(body).hexdigest().encode() != parts[4]:
            return "checksum mismatch (truncated or corrupted)"
        try:
            doc = json.loads(body)
        except ValueError:
            return "body is not JSON"
        if not isinstance(doc, dict) or doc.get("context") != self.context or doc.get("dockerfile") != self.dockerfile:
            return "belongs to another context"
        entries, flagged, tree = doc.get("entries"), doc.get("sensitive"), doc.get("tree")
        # Per-entry shape is not re-checked (it would cost a tenth of a warm run): the checksum shows the
        # body is exactly what save() wrote, and save() writes only make_entry() strings.
        if not isinstance(entries, dict):
            return "entries have the wrong shape"
        if not (flagged is None or isinstance(flagged, list)):
            return "sensitive list has the wrong shape"
        if not (tree is None or (isinstance(tree, str) and len(tree) == 64)):
            return "tree root has the wrong shape"
        self.entries, self.sensitive, self.tree = entries, flagged, tree
        return None

    def partition(self, walked: Any) -> tuple[dict[str, str], dict[str, int], list[Any]]:
        """Split walked context entries (objects with .rel and .stat) into (hits: rel -> cache entry, their
        sizes, misses: the walked entries the memo cannot vouch for). One pass, no method call per file: this
        loop is most of a warm run's own cost."""
        get, pack = self.entries.get, _pack_key
        hits: dict[str, str] = {}
        sizes: dict[str, int] = {}
        misses: list[Any] = []
        for w in walked:
            rel, st = w.rel, w.stat
            e = get(rel)
            # _stat_key(st) spelled inline: a call per file would cost a tenth of this loop.
            if e is not None and e.startswith(
                    "T" + pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode).hex()):
                hits[rel] = e
                sizes[rel] = st.st_size
            else:
                misses.append(w)
        return hits, sizes, misses

    def lookup(self, rel: str, st: os.stat_result) -> str | None:
        """The trusted entry for `rel` when the file's lstat still matches it, else None."""
        e = self.entries.get(rel)
        if e is not None and e.startswith("T" + _stat_key(st)):
            return e
        return None

    def save(self, entries: dict[str, str], flagged: list[str] | None, tree: str | None) -> bool:
        """Store this walk's entries, the guard's verdict and the digest's tree root over them; False (with a
        warning) when the file cannot be written. Skips the write when nothing differs from what was loaded."""
        if self.path is None:
            return False
        if self.problem is None and entries == self.entries and flagged == self.sensitive and tree == self.tree:
            return True
        body = json.dumps({"context": self.context, "dockerfile": self.dockerfile, "entries": entries,
                           "sensitive": flagged, "tree": tree}, separators=(",", ":")).encode()
        header = b"%s %s %s\n" % (_MAGIC, versions(), hashlib.sha256(body).hexdigest().encode())
        try:
            write_atomic(self.path, header + body)
        except OSError as exc:
            warnings.warn(f"acr-publish: cannot write the stat cache {self.path} ({exc}); the next run "
                          f"re-reads every file. Set {CACHE_DIR_ENV} to a writable directory to fix it.",
                          RuntimeWarning, stacklevel=3)
            return False
        self.entries, self.sensitive, self.tree, self.problem = entries, flagged, tree, None
        return True
