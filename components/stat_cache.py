"""The stat cache: per-context memory of file content hashes, so an unchanged file is never read twice.

This module owns where the cache lives, its file format, and when an entry may be trusted. It does no
hashing itself (components/context.py does).

* Location: `$ACR_PUBLISH_CACHE_DIR` when set, else `platformdirs.user_cache_dir("acr-publish")`
  (which honours `$XDG_CACHE_HOME`), in `contexts/`. One file per (context, Dockerfile) pair, named
  by a hash of both absolute paths.
* Entry: relative path -> one string `<T|U><size>:<mtime_ns>:<inode>:<mode>|<kind>|<flags>|<value>`:
  T for a trusted entry, U for one that must be re-read; kind 'f'/'x' (file, executable file) or 'l'
  (symlink); flags the sensitive-content flags (components/sensitive.py); value the content hash or
  link target (last, so it may hold any character). A lookup hits only when the entry is trusted and
  size, mtime_ns, inode and the full st_mode all equal the file's current lstat: one string prefix
  comparison. One string per entry, not a list, because loading 20,000 entries must cost far less
  than walking them.
* Racy files (git's "racy clean" problem): a file modified again within the file system's timestamp
  granularity after it was read keeps the same mtime and size. So an entry is trusted only when the
  file's mtime is strictly older than the start of the run that read it minus RACY_WINDOW_NS; other
  entries are re-read (and, once old enough, trusted) on the next run.
* Format: one header line `acr-publish-stat-cache <version> <sha256 of body>` then a JSON body. A
  wrong version, a checksum mismatch (truncation, garbage, a flipped bit) or a body of the wrong
  shape makes the whole file ignored; the next save rebuilds it.
* Writes are atomic (a temporary file in the same directory, then os.replace), so two runs racing
  each leave a complete file; the last writer wins, which is correct for both.
* It also keeps the states `explain` diffs: `last` (digest and build inputs of the latest run) and
  `previous` (the latest run whose digest differed from `last`, with its full manifest).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import Any

import platformdirs

__all__ = ["CACHE_DIR_ENV", "FORMAT_VERSION", "RACY_WINDOW_NS", "cache_dir", "cache_file_for", "make_entry",
           "parse_entry", "StatCache"]

CACHE_DIR_ENV = "ACR_PUBLISH_CACHE_DIR"
FORMAT_VERSION = 2
_MAGIC = b"acr-publish-stat-cache"
# Coarser than any file system we expect (FAT: 2 s, ext3/HFS+: 1 s; the kernel's coarse clock that
# stamps mtimes lags the precise clock by a few ms), so "older than run start minus this" really is older.
RACY_WINDOW_NS = 2_000_000_000



def make_entry(st: os.stat_result, kind: str, value: str, flags: int, trusted: bool) -> str:
    """The cache entry of one file (or symlink) whose stat is `st`."""
    return f"{'T' if trusted else 'U'}{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_mode}|{kind}|{flags}|{value}"


def parse_entry(entry: str) -> tuple[str, str, int]:
    """(kind, value, flags) of an entry."""
    _key, kind, flags, value = entry.split("|", 3)
    return kind, value, int(flags)


def cache_dir() -> Path:
    """The directory holding all acr-publish caches."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("acr-publish"))


def cache_file_for(context: Path, dockerfile: Path) -> Path:
    """The cache file of one (context, Dockerfile) pair: named by a hash of both absolute paths."""
    key = hashlib.sha256(
        os.fsencode(os.path.abspath(context)) + b"\0" + os.fsencode(os.path.abspath(dockerfile))
    ).hexdigest()[:32]
    return cache_dir() / "contexts" / f"{key}.json"


@dataclass
class StatCache:
    """The loaded cache of one context (empty when disabled, missing or corrupt)."""

    path: Path | None
    context: str
    dockerfile: str
    entries: dict[str, str] = field(default_factory=dict)
    last: dict[str, Any] | None = None
    previous: dict[str, Any] | None = None
    sensitive: list[str] | None = None
    """Paths the sensitive-file rules flag among `entries` (valid exactly as long as `entries`)."""
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
            raw = path.read_bytes()
        except FileNotFoundError:
            return cache
        except OSError as exc:
            cache.problem = f"unreadable: {exc}"
            return cache
        problem = cache._parse(raw)
        if problem:
            cache.problem = problem
            cache.entries, cache.last, cache.previous, cache.sensitive = {}, None, None, None
        return cache

    def _parse(self, raw: bytes) -> str | None:
        header, sep, body = raw.partition(b"\n")
        parts = header.split(b" ")
        if not sep or len(parts) != 3 or parts[0] != _MAGIC:
            return "not an acr-publish stat cache"
        if parts[1] != str(FORMAT_VERSION).encode():
            return f"format version {parts[1][:20]!r}, expected {FORMAT_VERSION}"
        if hashlib.sha256(body).hexdigest().encode() != parts[2]:
            return "checksum mismatch (truncated or corrupted)"
        try:
            doc = json.loads(body)
        except ValueError:
            return "body is not JSON"
        if not isinstance(doc, dict) or doc.get("context") != self.context or doc.get("dockerfile") != self.dockerfile:
            return "belongs to another context"
        entries, last, previous, flagged = doc.get("entries"), doc.get("last"), doc.get("previous"), doc.get("sensitive")
        # Per-entry shape is not re-checked (it would cost a tenth of a warm run): the checksum shows the
        # body is exactly what save() wrote, and save() writes only make_entry() strings.
        if not isinstance(entries, dict):
            return "entries have the wrong shape"
        if not (last is None or isinstance(last, dict)) or not (previous is None or isinstance(previous, dict)):
            return "manifests have the wrong shape"
        if not (flagged is None or isinstance(flagged, list)):
            return "sensitive list has the wrong shape"
        self.entries, self.last, self.previous, self.sensitive = entries, last, previous, flagged
        return None

    def partition(self, walked: Iterable[Any]) -> tuple[dict[str, str], dict[str, int], list[Any]]:
        """Split walked context entries (objects with .rel and .stat) into (hits: rel -> cache
        entry, their sizes, misses: the walked entries whose content must be read). One pass, no
        method call per file: this loop is most of a warm run's own cost."""
        get = self.entries.get
        hits: dict[str, str] = {}
        sizes: dict[str, int] = {}
        misses: list[Any] = []
        for w in walked:
            st = w.stat
            e = get(w.rel)
            if e is not None and e.startswith(f"T{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_mode}|"):
                hits[w.rel] = e
                sizes[w.rel] = st.st_size
            else:
                misses.append(w)
        return hits, sizes, misses

    def lookup(self, rel: str, st: os.stat_result) -> str | None:
        """The trusted entry for `rel` when the file's lstat still matches it, else None."""
        e = self.entries.get(rel)
        if e is not None and e.startswith(f"T{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_mode}|"):
            return e
        return None

    def save(self, entries: dict[str, str], last: dict[str, Any] | None, sensitive: list[str] | None = None) -> bool:
        """Store this run's entries and state; False (with a warning) when the cache cannot be written.

        Skips the write when nothing differs from what was loaded, so a warm run costs no I/O.
        `previous` moves forward only when the digest changed, so `explain` can always show what
        changed between the two latest distinct digests.
        """
        if self.path is None:
            return False
        previous = self.previous
        if self.last is not None and last is not None and self.last.get("digest") != last.get("digest"):
            previous = dict(self.last)
            previous["manifest"] = {rel: list(parse_entry(e)[:2]) for rel, e in self.entries.items()}
        if (self.problem is None and entries == self.entries and last == self.last and previous is self.previous
                and sensitive == self.sensitive):
            return True
        body = json.dumps(
            {"context": self.context, "dockerfile": self.dockerfile, "entries": entries,
             "last": last, "previous": previous, "sensitive": sensitive},
            separators=(",", ":"),
        ).encode()
        header = b"%s %d %s\n" % (_MAGIC, FORMAT_VERSION, hashlib.sha256(body).hexdigest().encode())
        tmp_name = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # mkstemp creates the file 0600: build-arg hashes and file names are nobody else's business.
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.path.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(body)
            os.replace(tmp_name, self.path)
            tmp_name = None
        except OSError as exc:
            warnings.warn(f"acr-publish: cannot write the stat cache {self.path} ({exc}); the next run "
                          f"re-reads every file. Set {CACHE_DIR_ENV} to a writable directory to fix it.",
                          RuntimeWarning, stacklevel=3)
            return False
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass
        self.entries, self.last, self.previous, self.sensitive, self.problem = entries, last, previous, sensitive, None
        return True
