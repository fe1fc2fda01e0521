"""The stat cache: a disposable memo so an unchanged file is never read twice.

Per (context, Dockerfile) pair, one file under `<cache dir>/contexts/` maps each relative path to what reading it
found: `<T|U><stat key>|<kind>|<flags>|<value>` (trusted, or to be re-read; size, mtime_ns, ctime_ns, inode and
mode as fixed-width hex; kind f/x/l/p/s/c/b; the guard's content flags; the content hash, link target or device
numbers, last so it may hold any character). A lookup hits only for a trusted entry whose stat key equals the
file's lstat now; an entry is trusted only when the file's mtime and ctime are older than its run's start minus
RACY_WINDOW_NS (git's racy-clean rule). Beside the entries: the `Summary` a scan concluded from them (tree root,
Dockerfile hash, guard candidates, counts) and the walk's `fingerprint`, so a warm scan whose walk is unchanged
takes the summary and never parses the entries.
Header line `acr-publish-memo <layout> <encoding> <guard> <sha256 of body>`, the three versions being
LAYOUT_VERSION, ENCODING_VERSION and sensitive.RULES_VERSION: a mismatch, a bad checksum or a body of the wrong
shape makes the whole file ignored (the next save rebuilds it). Writes are atomic and skipped when nothing changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boundedjson import parse_json
from buildcontext import sensitive
from buildcontext.files import (CACHE_DIR_ENV, UnusableFile, cache_dir, cache_dir_problem, read_regular,
                               write_atomic)
from buildcontext.printable import escaped

_MAGIC = b"acr-publish-memo"
# Coarser than any file system we expect (FAT: 2 s, ext3/HFS+: 1 s; the kernel's coarse clock that
# stamps mtimes lags the precise clock by a few ms), so "older than run start minus this" really is older.
RACY_WINDOW_NS = 2_000_000_000
MAX_BYTES = 1 << 30
# The entry of a directory: kind 'd', no flags, no value, and no stat key (never looked up, only compared).
DIR_ENTRY = "D|d|0|"
DOCKERFILE_KEY = "\0dockerfile"  # the Dockerfile's entry: cannot collide with a relative path (no NUL in names)
# Bump when this module's file format changes (header, summary line, entry syntax); held by
# tests/unit/buildcontext/test_cache_versions.py, which fails and names this constant when the format changes.
LAYOUT_VERSION = "memo-1"
# Bump when the cached values change: what an entry holds (kind, content hash, flags: context.py, hashing.py),
# the tree root's encoding or a large file's content hash (digest.py), or what the summary concludes; held by
# tests/unit/buildcontext/test_cache_versions.py (a golden scan of a fixed context).
ENCODING_VERSION = "encoding-1"


def versions() -> bytes:
    """`<layout> <encoding> <guard>`: the three version constants of the header."""
    return b"%s %s %s" % (LAYOUT_VERSION.encode(), ENCODING_VERSION.encode(), sensitive.RULES_VERSION.encode())


_pack_key = struct.Struct(">QqqQQ").pack


def _stat_key(st: os.stat_result) -> str:
    """The part of an entry a file's lstat must match: size, mtime_ns, ctime_ns, inode and mode as big-endian
    64-bit fields, in hex (packing and hex cost half of formatting five decimal numbers: this runs per file)."""
    return _pack_key(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode).hex()


def make_entry(st: os.stat_result, kind: str, value: str, flags: int, trusted: bool) -> str:
    """The cache entry of one file, link or special file whose lstat is `st`.

    As in git's index, links and special files are trusted by their stat key like files (a link's target or a
    node's device numbers cannot change without a new inode and ctime), and ctime is in the key: a same-size
    rewrite that puts the mtime back still moves the ctime, which no user call can set."""
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


@dataclass(frozen=True)
class Summary:
    """What a scan concluded from its entries (every field a pure function of them), kept beside them."""

    fingerprint: str | None
    """`fingerprint()` of the walk that wrote the memo, when every entry was trusted; None otherwise."""
    tree: str
    """The digest's tree root over the entries (digest.tree_root, hex)."""
    dockerfile: str
    """The Dockerfile's content hash (its entry's value)."""
    dockerfile_flags: int
    """The guard's content flags of the Dockerfile's text (it lands in the image history whatever is sent)."""
    flagged: tuple[tuple[str, str, int], ...]
    """(rel, kind, content flags) of the paths the guard's rules flag among the entries."""
    file_count: int
    total_bytes: int


def fingerprint(walked: list[Any], dirs: list[str], dockerfile_stat: os.stat_result) -> str:
    """A hash of every walked path with its stat key, in walk order, every directory, and the Dockerfile's stat
    key. Equal to the stored one only when the walk met exactly the paths and stat keys the memo's entries were
    made from (a different listing order merely takes the slow path).

    Encoding: u64(count), the paths joined by NUL, NUL NUL, the packed 40-byte stat keys, the directories joined
    by NUL, the Dockerfile's packed stat key. No path is empty or holds a NUL, so the first NUL NUL ends the
    paths, and the keys and the Dockerfile's key have a fixed width: no two walks encode alike."""
    pack = _pack_key
    h = hashlib.sha256(len(walked).to_bytes(8, "big"))
    h.update("\0".join([w[0] for w in walked]).encode("utf-8", "surrogateescape"))
    h.update(b"\0\0")
    h.update(b"".join([pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode)
                       for _rel, _path, st in walked]))
    h.update("\0".join(dirs).encode("utf-8", "surrogateescape"))
    st = dockerfile_stat
    h.update(pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode))
    return h.hexdigest()


@dataclass
class StatCache:
    """The loaded memo of one context and Dockerfile (empty when disabled, missing or unusable)."""

    path: Path | None
    context: str
    dockerfile: str
    summary: Summary | None = None
    """The summary of `entries` (None when there is no usable memo)."""
    problem: str | None = None
    """Why the file on disk was ignored (None when it loaded, or there was none)."""
    _entries: dict[str, str] | None = field(default=None, repr=False)
    _raw_entries: bytes | None = field(default=None, repr=False)

    @property
    def entries(self) -> dict[str, str]:
        """rel -> entry. Parsed on first use: a warm scan whose fingerprint matches never needs them, and parsing
        20,000 of them costs a fifth of a walk. The bytes were checksummed at load."""
        if self._entries is None:
            raw, self._raw_entries = self._raw_entries, None
            parsed = parse_json(raw, limit=MAX_BYTES) if raw else {}
            self._entries = parsed if isinstance(parsed, dict) else {}
        return self._entries

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
            if cache.problem is not None:
                cache.summary, cache._raw_entries = None, None
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
        summary_line, _, entries = body.partition(b"\n")
        try:
            doc = parse_json(summary_line, limit=MAX_BYTES)
            if not isinstance(doc, dict) or (doc.get("context"), doc.get("dockerfile")) != (self.context,
                                                                                           self.dockerfile):
                return "belongs to another context"
            fp, tree, df, flagged = doc["fingerprint"], doc["tree"], doc["dockerfile_hash"], doc["flagged"]
            summary = Summary(fp, tree, df, int(doc["dockerfile_flags"]),
                              tuple((str(r), str(k), int(f)) for r, k, f in flagged),
                              int(doc["file_count"]), int(doc["total_bytes"]))
            if (not (fp is None or isinstance(fp, str)) or not all(isinstance(h, str) and len(h) == 64
                                                                    for h in (tree, df))):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return "summary has the wrong shape"
        if not entries.startswith(b"{"):
            return "entries have the wrong shape"
        self.summary, self._raw_entries = summary, entries
        return None

    def partition(self, walked: Any) -> tuple[dict[str, str], dict[str, int], list[Any]]:
        """Split walked context entries ((rel, abspath, lstat) tuples) into (hits: rel -> cache entry, their
        sizes, misses: the walked entries the memo cannot vouch for). One pass, no method call per file: this
        loop is most of a warm run's own cost when the fingerprint does not match."""
        get, pack = self.entries.get, _pack_key
        hits: dict[str, str] = {}
        sizes: dict[str, int] = {}
        misses: list[Any] = []
        for w in walked:
            rel, _path, st = w
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

    def save(self, entries: dict[str, str], summary: Summary) -> bool:
        """Store this walk's entries and their summary; False (with a warning) when the file cannot be written.
        Skips the write when nothing differs from what was loaded."""
        if self.path is None:
            return False
        if self.problem is None and summary == self.summary and entries == self.entries:
            return True
        head = json.dumps({"context": self.context, "dockerfile": self.dockerfile, "fingerprint": summary.fingerprint,
                           "tree": summary.tree, "dockerfile_hash": summary.dockerfile,
                           "dockerfile_flags": summary.dockerfile_flags, "flagged": summary.flagged, "file_count": summary.file_count,
                           "total_bytes": summary.total_bytes}, separators=(",", ":")).encode()
        body = head + b"\n" + json.dumps(entries, separators=(",", ":")).encode()
        header = b"%s %s %s\n" % (_MAGIC, versions(), hashlib.sha256(body).hexdigest().encode())
        try:
            write_atomic(self.path, header + body)
        except OSError as exc:
            why = cache_dir_problem() or f"cannot write the stat cache {escaped(str(self.path))} ({exc})"
            warnings.warn(f"acr-publish: {why}; the next run re-reads every file. Set {CACHE_DIR_ENV} to a "
                          "writable directory to fix it.",
                          RuntimeWarning, stacklevel=3)
            return False
        self.summary, self._entries, self._raw_entries, self.problem = summary, entries, None, None
        return True
