"""The stat cache: per-context memory of file content hashes, so an unchanged file is never read twice.

This module owns where the cache lives, its file format, and when an entry may be trusted. It does no
hashing itself (components/context.py does).

* Location: `$ACR_PUBLISH_CACHE_DIR` when set, else `platformdirs.user_cache_dir("acr-publish")`
  (which honours `$XDG_CACHE_HOME`), in `contexts/`. One file per (context, Dockerfile) pair, named
  by a hash of both absolute paths.
* Entry: relative path -> one string `<T|U><size>:<mtime_ns>:<inode>:<mode>|<kind>|<flags>|<value>`:
  T for a trusted entry, U for one that must be re-read; kind 'f'/'x' (file, executable file) or 'l'
  (symlink); flags the sensitive-content flags (components/sensitive.py); value the content hash or
  link target (last, so it may hold any character). A directory the build sends is the entry
  `<rel>/` -> DIR_ENTRY: no stat key, because nothing about a directory but its presence is part of
  the digest (its mtime changes with every file added, its mode is not digested either). A lookup
  hits only when the entry is trusted and size, mtime_ns, inode and the full st_mode all equal the
  file's current lstat: one string prefix comparison. One string per entry, not a list, because
  loading 20,000 entries must cost far less than walking them.
* Racy files (git's "racy clean" problem): a file modified again within the file system's timestamp
  granularity after it was read keeps the same mtime and size. So an entry is trusted only when the
  file's mtime is strictly older than the start of the run that read it minus RACY_WINDOW_NS; other
  entries are re-read (and, once old enough, trusted) on the next run.
* Format: one header line `acr-publish-stat-cache <version> <sha256 of body>` then a JSON body. A
  wrong version, a checksum mismatch (truncation, garbage, a flipped bit) or a body of the wrong
  shape makes the whole file ignored; the next save rebuilds it.
* Writes are atomic (a temporary file in the same directory, then os.replace), so two runs racing
  each leave a complete file; the last writer wins, which is correct for both.
* It also keeps, per build-inputs key (a hash of the Dockerfile path, build args, target and
  platform: one key per image, so images sharing a context such as a stack's `web` and `worker`
  each keep their own history), the states `explain` diffs: `last` (digest and build inputs of the
  key's latest run) and `previous` (the key's latest run whose digest differed from `last`). File
  entries stay shared. Each state names its manifest (relative path -> [kind, hash or link target])
  by id: the current entries are the manifest `manifest_id`; older manifests a state still names
  are kept in `manifests`, all others dropped. A key seen for the first time inherits as `previous`
  the latest state of the context under other inputs (an image whose target or build args changed),
  marked with where it came from; once that other key runs again it is a sibling image, not an
  ancestor, and `prior()` stops offering it. At most HISTORY_LIMIT keys are kept (least recent
  dropped). A run that changes nothing (a warm run of an unchanged image) writes nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Any

import platformdirs

__all__ = ["CACHE_DIR_ENV", "DIR_ENTRY", "FORMAT_VERSION", "HISTORY_LIMIT", "RACY_WINDOW_NS", "cache_dir",
           "cache_file_for", "make_entry", "parse_entry", "Prior", "StatCache"]

CACHE_DIR_ENV = "ACR_PUBLISH_CACHE_DIR"
# Bumped when the format changes, and when components/sensitive.py's content rules change: cached flags
# are those rules' verdict, and a file the old rules passed must be scanned again (4: AccessKey id bounds;
# 5: directory entries, and last digests of the v2 encoding: a v4 cache would hand back v1 digests).
FORMAT_VERSION = 5
_MAGIC = b"acr-publish-stat-cache"
# Coarser than any file system we expect (FAT: 2 s, ext3/HFS+: 1 s; the kernel's coarse clock that
# stamps mtimes lags the precise clock by a few ms), so "older than run start minus this" really is older.
RACY_WINDOW_NS = 2_000_000_000
# Build-input histories kept per cache file: a stack's images plus a few past inputs of each.
HISTORY_LIMIT = 16



# The entry of a directory: kind 'd', no flags, no value, and no stat key (never looked up, only compared).
DIR_ENTRY = "D|d|0|"


def _stat_key(st: os.stat_result) -> str:
    """The part of an entry a file's lstat must match: `<size>:<mtime_ns>:<inode>:<mode>`."""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_mode}"


def make_entry(st: os.stat_result, kind: str, value: str, flags: int, trusted: bool) -> str:
    """The cache entry of one file (or symlink) whose stat is `st`."""
    return f"{'T' if trusted else 'U'}{_stat_key(st)}|{kind}|{flags}|{value}"


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


def manifest_of(entries: dict[str, str]) -> dict[str, list[str]]:
    """The manifest `explain` diffs: relative path -> [kind, content hash or link target]
    (a directory: "rel/" -> ["d", ""])."""
    return {rel: list(parse_entry(e)[:2]) for rel, e in entries.items()}


def _same_manifest(a: dict[str, str], b: dict[str, str]) -> bool:
    """Whether two entry maps hold the same paths, kinds, flags and hashes (their stat keys may differ)."""
    if a.keys() != b.keys():
        return False
    return all(e.partition("|")[2] == b[rel].partition("|")[2] for rel, e in a.items())


def _closest_other(runs: dict[str, dict[str, Any]], key: str,
                   state: dict[str, Any] | None) -> tuple[str, dict[str, Any]] | None:
    """The (key, run) of the other build inputs in `runs` most like `state`'s (most recent on a tie)."""
    others = [(k, r) for k, r in runs.items() if k != key]
    if not others:
        return None
    return max(others, key=lambda kr: ((_kinship(kr[1]["last"], state) if state else (0, 0, 0)), kr[1]["seq"]))


def _kinship(a: dict[str, Any], b: dict[str, Any]) -> tuple[int, int, int]:
    """How alike two states' build inputs are: same target first (what tells a stack's images sharing a
    context apart), then same platform, then the number of equal build args."""
    a_args, b_args = a.get("build_args") or {}, b.get("build_args") or {}
    return (int(a.get("target") == b.get("target")), int(a.get("platform") == b.get("platform")),
            sum(1 for k, v in a_args.items() if b_args.get(k) == v))


def _record(runs: dict[str, dict[str, Any]], seq: int, key: str, state: dict[str, Any],
            mid: str) -> tuple[dict[str, dict[str, Any]], int]:
    """`runs` and `seq` after recording `state` (of the entries named `mid`) as `key`'s latest."""
    new_last = {**state, "manifest": mid}
    rec = runs.get(key)
    if rec is None:
        seq += 1
        other = _closest_other(runs, key, state)
        previous = None
        if other is not None and other[1]["last"].get("digest") != state.get("digest"):
            previous = {**other[1]["last"], "from": other[0]}
        runs[key] = {"seq": seq, "last": new_last, "previous": previous}
    elif rec["last"].get("digest") != state.get("digest"):
        seq += 1
        runs[key] = {"seq": seq, "last": new_last, "previous": rec["last"]}
    elif rec["last"] != new_last:
        runs[key] = {**rec, "last": new_last}
    # This key runs again, so keys that took over its state as their predecessor are sibling
    # images (a stack's web and worker), not its successors: forget that inherited state.
    for k, r in runs.items():
        prev = r.get("previous")
        if k != key and prev and prev.get("from") == key:
            runs[k] = {**r, "previous": None}
    if len(runs) > HISTORY_LIMIT:
        keep = sorted(runs, key=lambda k: runs[k]["seq"], reverse=True)[:HISTORY_LIMIT]
        runs = {k: runs[k] for k in keep}
    return runs, seq


@dataclass(frozen=True)
class Prior:
    """One build-inputs key's history as it stood before a run: what `explain` compares the run with."""

    last: dict[str, Any] | None
    """The key's latest state (None: the key's first run)."""
    previous: dict[str, Any] | None
    """The key's latest state with a digest other than `last`'s, if any."""
    inherited: bool
    """`previous` is the state of other build inputs this key took over (its first run's predecessor)."""
    other: dict[str, Any] | None
    """On a key's first run only: the context's closest state under other build inputs."""
    _resolve: Callable[[str | None], dict[str, list[str]] | None]

    def manifest(self, state: dict[str, Any]) -> dict[str, list[str]]:
        """The manifest a state names (empty when the cache no longer holds it)."""
        return self._resolve(state.get("manifest")) or {}


@dataclass
class StatCache:
    """The loaded cache of one context (empty when disabled, missing or corrupt)."""

    path: Path | None
    context: str
    dockerfile: str
    entries: dict[str, str] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Build-inputs key -> {"seq": n, "last": state, "previous": state or None}."""
    manifests: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """Manifests some state names other than the current entries' one."""
    manifest_id: str | None = None
    """The id of the manifest the current `entries` hold."""
    seq: int = 0
    """Counter ordering runs (recency) and naming manifests."""
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
            cache.entries, cache.runs, cache.manifests, cache.manifest_id, cache.seq, cache.sensitive = (
                {}, {}, {}, None, 0, None)
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
        entries, runs, manifests = doc.get("entries"), doc.get("runs"), doc.get("manifests")
        mid, seq, flagged = doc.get("manifest_id"), doc.get("seq"), doc.get("sensitive")
        # Per-entry shape is not re-checked (it would cost a tenth of a warm run): the checksum shows the
        # body is exactly what save() wrote, and save() writes only make_entry() strings.
        if not isinstance(entries, dict):
            return "entries have the wrong shape"
        if (not isinstance(runs, dict) or not isinstance(manifests, dict) or not (mid is None or isinstance(mid, str))
                or not isinstance(seq, int)
                or not all(isinstance(r, dict) and isinstance(r.get("last"), dict) and isinstance(r.get("seq"), int)
                           and (r.get("previous") is None or isinstance(r["previous"], dict)) for r in runs.values())):
            return "run histories have the wrong shape"
        if not (flagged is None or isinstance(flagged, list)):
            return "sensitive list has the wrong shape"
        self.entries, self.runs, self.manifests, self.manifest_id, self.seq, self.sensitive = (
            entries, runs, manifests, mid, seq, flagged)
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
            # _stat_key(st) spelled inline: a call per file would cost a tenth of this loop.
            if e is not None and e.startswith(f"T{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_mode}|"):
                hits[w.rel] = e
                sizes[w.rel] = st.st_size
            else:
                misses.append(w)
        return hits, sizes, misses

    def lookup(self, rel: str, st: os.stat_result) -> str | None:
        """The trusted entry for `rel` when the file's lstat still matches it, else None."""
        e = self.entries.get(rel)
        if e is not None and e.startswith(f"T{_stat_key(st)}|"):
            return e
        return None

    # ---------------------------------------------------------------- histories for explain

    def _resolver(self) -> Callable[[str | None], dict[str, list[str]] | None]:
        """Resolves manifest ids against this cache as loaded (save() replaces, never mutates, what it holds)."""
        entries, manifests, current = self.entries, self.manifests, self.manifest_id

        def resolve(mid: str | None) -> dict[str, list[str]] | None:
            if mid is not None and mid == current:
                return manifest_of(entries)
            return manifests.get(mid) if mid is not None else None
        return resolve

    def prior(self, key: str, state: dict[str, Any] | None = None) -> Prior:
        """The history of build-inputs `key` before this run; `state` (this run's, without its manifest)
        picks the closest other inputs when the key has none."""
        rec = self.runs.get(key)
        if rec is None:
            other = _closest_other(self.runs, key, state)
            return Prior(None, None, False, other[1]["last"] if other else None, self._resolver())
        prev = rec.get("previous")
        return Prior(rec["last"], prev, bool(prev and "from" in prev), None, self._resolver())

    def save(self, entries: dict[str, str], sensitive: list[str] | None = None,
             states: Iterable[tuple[str, dict[str, Any]]] = ()) -> bool:
        """Store this walk's entries, and each (key, state) of `states` (digest and build inputs of
        one image built from them) as the latest of that key's history, in order, as if each image
        had been saved by a run of its own; False (with a warning) when the cache cannot be written.

        Skips the write when nothing differs from what was loaded, so a warm run costs no I/O.
        A key's `previous` moves forward only when its digest changed, so `explain` can always show
        what changed between that image's two latest distinct digests.
        """
        if self.path is None:
            return False
        seq = self.seq
        mid = self.manifest_id
        if mid is None or (entries is not self.entries and entries != self.entries
                           and not _same_manifest(entries, self.entries)):
            seq += 1
            mid = str(seq)
        runs = dict(self.runs)
        for key, state in states:
            runs, seq = _record(runs, seq, key, state, mid)
        named = {s["manifest"] for r in runs.values() for s in (r["last"], r.get("previous")) if s} - {mid}
        resolve = self._resolver()
        manifests = {m: self.manifests[m] if m in self.manifests else resolve(m) for m in named}
        manifests = {m: v for m, v in manifests.items() if v is not None}
        if (self.problem is None and mid == self.manifest_id and entries == self.entries and runs == self.runs
                and manifests == self.manifests and sensitive == self.sensitive):
            return True
        body = json.dumps(
            {"context": self.context, "dockerfile": self.dockerfile, "entries": entries, "manifest_id": mid,
             "manifests": manifests, "runs": runs, "seq": seq, "sensitive": sensitive},
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
        self.entries, self.runs, self.manifests, self.manifest_id, self.seq = entries, runs, manifests, mid, seq
        self.sensitive, self.problem = sensitive, None
        return True
