"""The build context as one value: its digest and content tag, its sensitive files, and `explain`.

This module owns the digest (what a build depends on, encoded unambiguously), the parallel hashing
pipeline, and the one walk that feeds the digest and the sensitive-file guard from the same reads
(`ContextScan`: images built from one context and Dockerfile share it, each adding only its own
build inputs).
The file set comes from components/dockerignore.py (Docker's .dockerignore semantics), the cache
from components/stat_cache.py, the guard's rules from components/sensitive.py.

The digest depends on: each file's relative path, type (file or symlink), content, executable bit
(user x, as git records it; no other mode bit), each symlink's target (read, never followed), the
relative path of every directory the build creates (`COPY . /x/` also copies empty ones; see
dockerignore.context_dirs), the Dockerfile's content (wherever it lies), the build args (as a
set), the target and the platform. It does not depend on mtimes (of files or directories), owners,
umask, any directory's mode, the absolute path of the context, listing order, the number of CPUs
or anything else about the machine.

Encoding (sha256 over length-prefixed fields `field(b) = u64(len(b)) b` and big-endian u64s, so no
two different inputs encode alike; `_digest` is the reference and tests/test_context_digest.py
rebuilds a pinned value from this description):
  field("acr-publish/context-digest/v2")
  field("files") u64(count), then in path order per file or symlink:
    file  field('f' or 'x') field(rel) u64(size) sha256(content), or for a file over TREE_CHUNK
          bytes the tree hash sha256("acr-publish/tree/v1\0" u64(TREE_CHUNK) chunk digests...)
    link  field('l') field(rel) field(target)
  field("dirs") u64(count), then in path order per directory: field('d') field(rel, no '/')
  field("dockerfile") sha256(Dockerfile content)
  field("build-args") u64(count), then per arg in name order: field(name) field(value)
  field("target") then 0x00 (none) or 0x01 field(target)
  field("platform") field(platform)

CLI: `python -m buildcontext.context explain <context> [--dockerfile PATH] [--build-arg K=V ...]
[--target T] [--platform P]` prints the digest, tag, size, and what changed since the previous digest.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import stat as stat_module
import struct
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildcontext import sensitive
from buildcontext.dockerignore import ContextEntry, context_dirs, context_files, ignore_file_for, walk_context
from buildcontext.sensitive import Finding, SensitiveFilesError
from components.settings import DEFAULT_PLATFORM
from buildcontext.stat_cache import DIR_ENTRY, RACY_WINDOW_NS, Prior, StatCache, make_entry, manifest_of, parse_entry

__all__ = [
    "context_files",
    "context_dirs",
    "context_digest",
    "content_tag",
    "check_context",
    "ContextScan",
    "ContextReport",
    "find_sensitive",
    "Finding",
    "SensitiveFilesError",
    "main",
]

# v2: directories are part of the digest (v1 covered files and symlinks only).
DIGEST_VERSION = b"acr-publish/context-digest/v2"
# Files larger than this are hashed as a tree of fixed-size chunks so one huge file uses every core.
# A constant, never derived from the machine, so the digest is the same everywhere.
TREE_CHUNK = 4 << 20
READ_SIZE = 1 << 20
# Small files go to the pool in batches: one task per file costs more than hashing the file.
BATCH_BYTES = 4 << 20
BATCH_FILES = 256
DOCKERFILE_KEY = "\0dockerfile"  # cannot collide with a relative path (no NUL in file names)

_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# Reading and hashing files
# --------------------------------------------------------------------------------------------

@dataclass
class _Hashed:
    """One regular file's hash as this run computed it."""

    value: str
    size: int  # bytes actually hashed
    flags: int
    key: os.stat_result  # stat the cache entry is keyed by
    trusted: bool


def _open(path: Path, rel: str) -> int:
    try:
        return os.open(path, _O_READ)
    except PermissionError as exc:
        raise PermissionError(
            exc.errno, f"cannot read {rel!r} in the build context ({exc.strerror}); Docker cannot send it "
            "either: fix its permissions or exclude it in .dockerignore", str(path)) from exc
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            exc.errno, f"{rel!r} disappeared from the build context while it was being hashed; "
            "run again once nothing writes to the context", str(path)) from exc


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns and a.st_ino == b.st_ino


def _hash_whole(rel: str, path: Path, st: os.stat_result, run_start_ns: int) -> _Hashed:
    """A file of at most TREE_CHUNK bytes: read once, hashed, scanned."""
    fd = _open(path, rel)
    try:
        key = os.fstat(fd)
        with io.FileIO(fd, "rb", closefd=False) as f:
            data = f.readall()
        after = os.fstat(fd)
    finally:
        os.close(fd)
    flags = 0
    if not sensitive.is_binary(data):
        flags = sensitive.scan_content(rel.rsplit("/", 1)[-1], data)
    trusted = (_same_file(key, st) and _same_file(key, after) and len(data) == key.st_size
               and key.st_mtime_ns < run_start_ns - RACY_WINDOW_NS)
    return _Hashed(hashlib.sha256(data).hexdigest(), len(data), flags, key, trusted)


_buffers = threading.local()


def _buffer() -> memoryview:
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = memoryview(bytearray(READ_SIZE))
    return buf


def _hash_range(rel: str, path: Path, start: int, length: int, scan: bool) -> tuple[bytes, int, int]:
    """(sha256 digest, bytes read, content flags) of one chunk of a large file."""
    fd = _open(path, rel)
    try:
        h = hashlib.sha256()
        buf = _buffer()
        pos, end, flags = start, start + length, 0
        name = rel.rsplit("/", 1)[-1]
        tail = os.pread(fd, sensitive.SCAN_OVERLAP, max(0, start - sensitive.SCAN_OVERLAP)) if scan and start else b""
        size = os.fstat(fd).st_size if scan else 0
        while pos < end:
            n = os.preadv(fd, [buf[: min(READ_SIZE, end - pos)]], pos)
            if n == 0:
                break
            h.update(buf[:n])  # hashlib releases the GIL for large buffers: this is where cores add up
            if scan:
                data = bytes(buf[:n])
                flags |= sensitive.scan_content(name, tail + data, cut_start=bool(tail), cut_end=pos + n < size)
                tail = data[-sensitive.SCAN_OVERLAP:]
            pos += n
        return h.digest(), pos - start, flags
    finally:
        os.close(fd)


def _tree_value(chunks: list[bytes]) -> str:
    h = hashlib.sha256(b"acr-publish/tree/v1\0")
    h.update(TREE_CHUNK.to_bytes(8, "big"))
    h.update(b"".join(chunks))
    return h.hexdigest()


def _hash_files(misses: list[tuple[str, Path | str, os.stat_result]], run_start_ns: int) -> dict[str, _Hashed]:
    """Hash every file in `misses` on all cores; large files are split into TREE_CHUNK pieces."""
    results: dict[str, _Hashed] = {}
    if not misses:
        return results
    batches: list[list[tuple[str, Path, os.stat_result]]] = []
    batch: list[tuple[str, Path, os.stat_result]] = []
    batch_bytes = 0
    large: list[tuple[str, Path, os.stat_result, bool]] = []
    for rel, path, st in misses:
        if st.st_size > TREE_CHUNK:
            fd = _open(path, rel)
            try:
                head = os.pread(fd, sensitive.BINARY_SNIFF_BYTES, 0)
            finally:
                os.close(fd)
            large.append((rel, path, st, not sensitive.is_binary(head)))
            continue
        batch.append((rel, path, st))
        batch_bytes += st.st_size
        if batch_bytes >= BATCH_BYTES or len(batch) >= BATCH_FILES:
            batches.append(batch)
            batch, batch_bytes = [], 0
    if batch:
        batches.append(batch)

    def run_batch(items: list[tuple[str, Path, os.stat_result]]) -> list[tuple[str, _Hashed]]:
        return [(rel, _hash_whole(rel, path, st, run_start_ns)) for rel, path, st in items]

    tasks = len(batches) + sum(-(-st.st_size // TREE_CHUNK) for _, _, st, _ in large)
    workers = min(_workers(), tasks)
    if workers <= 1 and not large:
        for b in batches:
            results.update(run_batch(b))
        return results

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="context-hash") as pool:
        # Large files first: their chunks are the long tasks, batches fill the gaps.
        chunk_futures = []
        for rel, path, st, scan in large:
            key = os.lstat(path)
            futures = [pool.submit(_hash_range, rel, path, off, TREE_CHUNK, scan)
                       for off in range(0, st.st_size, TREE_CHUNK)]
            chunk_futures.append((rel, path, st, key, futures))
        batch_futures = [pool.submit(run_batch, b) for b in batches]
        for rel, path, st, key, futures in chunk_futures:
            parts = [f.result() for f in futures]
            size = sum(n for _, n, _ in parts)
            flags = 0
            for _, _, fl in parts:
                flags |= fl
            after = os.lstat(path)
            trusted = (_same_file(key, st) and _same_file(key, after) and size == st.st_size
                       and key.st_mtime_ns < run_start_ns - RACY_WINDOW_NS)
            results[rel] = _Hashed(_tree_value([d for d, _, _ in parts]), size, flags, key, trusted)
        for f in batch_futures:
            results.update(f.result())
    return results


# --------------------------------------------------------------------------------------------
# One run: walk, cache, hash, digest
# --------------------------------------------------------------------------------------------

def _field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def _arg_fingerprint(name: str, value: str) -> str:
    # The cache keeps only a fingerprint of each build arg, never the value (values can be secrets).
    return hashlib.sha256(_field(name.encode()) + _field(value.encode())).hexdigest()[:16]


_pack = struct.Struct(">Q").pack
_KIND_FIELDS = {k: _field(k.encode()) for k in ("f", "x", "l", "d")}


def _digest(entries: dict[str, str], sizes: dict[str, int], dirs: Iterable[str], inputs: bytes) -> str:
    """sha256 over a version prefix, every file record in path order, every directory record in
    path order, then the build inputs (the encoding in the module docstring).

    Only length-prefixed fields and fixed-width integers, so no two different inputs encode alike:
    file  = field(kind 'f'|'x') field(rel) u64(size) sha256-or-tree-hash(32 bytes)
    link  = field('l') field(rel) field(target)
    dir   = field('d') field(rel)
    """
    parts = [_field(DIGEST_VERSION), _field(b"files"), _pack(len(sizes))]
    append, fromhex = parts.append, bytes.fromhex
    for rel in sorted(sizes):
        _key, kind, _flags, value = entries[rel].split("|", 3)
        rb = rel.encode("utf-8", "surrogateescape")  # os.fsencode, without its per-call overhead
        append(_KIND_FIELDS[kind])
        append(_pack(len(rb)))
        append(rb)
        if kind == "l":
            tb = value.encode("utf-8", "surrogateescape")
            append(_pack(len(tb)))
            append(tb)
        else:
            append(_pack(sizes[rel]))
            append(fromhex(value))
    dirs = sorted(dirs)
    parts += [_field(b"dirs"), _pack(len(dirs))]
    dir_kind = _KIND_FIELDS["d"]
    for rel in dirs:
        rb = rel.encode("utf-8", "surrogateescape")
        append(dir_kind)
        append(_pack(len(rb)))
        append(rb)
    parts.append(inputs)
    return hashlib.sha256(b"".join(parts)).hexdigest()


def _inputs_encoding(dockerfile_hash: str, options: bytes) -> bytes:
    """The build inputs besides the files: Dockerfile content hash, then `options` (_options_encoding:
    build args sorted, target, platform)."""
    return _field(b"dockerfile") + bytes.fromhex(dockerfile_hash) + options


def _history_key(dockerfile: Path, options: bytes) -> str:
    """The stat cache's key for one image's history: the Dockerfile path (not its content: an edited
    Dockerfile is a change of the same image) and `options` (_options_encoding: build args, target,
    platform). Images sharing a context (a stack's web and worker) get one key each."""
    path = os.fsencode(dockerfile)
    return hashlib.sha256(_field(b"history") + _field(path) + options).hexdigest()[:32]


def _options_encoding(args: dict[str, str], target: str | None, platform: str) -> bytes:
    parts = [_field(b"build-args"), _pack(len(args))]
    for k in sorted(args):
        parts.append(_field(k.encode("utf-8", "surrogatepass")))
        parts.append(_field(args[k].encode("utf-8", "surrogatepass")))
    parts.append(_field(b"target"))
    parts.append(b"\0" if target is None else b"\1" + _field(target.encode("utf-8", "surrogatepass")))
    parts.append(_field(b"platform"))
    parts.append(_field(platform.encode("utf-8", "surrogatepass")))
    return b"".join(parts)


@dataclass
class _Run:
    context: Path
    dockerfile: Path
    digest: str
    entries: dict[str, str]  # rel -> stat-cache entry (also the manifest of this run); directories as "rel/"
    sizes: dict[str, int]  # files and symlinks only
    prior: Prior  # this image's history before the run (keyed by its build inputs)
    last: dict[str, Any]
    reads: int  # files whose content was read in this run
    flagged: list[str]  # paths any sensitive-file rule flags (before allowSensitive)

    @property
    def file_count(self) -> int:
        return len(self.sizes)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def scan_records(self) -> list[tuple[str, str, int]]:
        """(rel, kind, content flags) of the paths the sensitive-file rules flag."""
        return _records(self.entries, self.flagged)


def _records(entries: dict[str, str], rels: Iterable[str]) -> list[tuple[str, str, int]]:
    out = []
    for rel in rels:
        if rel != DOCKERFILE_KEY:
            kind, _value, flags = parse_entry(entries[rel])
            if kind != "d":  # the guard judges files and links; a directory is judged by what it holds
                out.append((rel, kind, flags))
    return out


def _check_inputs(build_args: Mapping[str, str] | None, target: str | None, platform: str) -> dict[str, str]:
    args = dict(build_args or {})
    for k, v in args.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"build arg {k!r}={v!r} is invalid: build arg names and values must be strings")
    if target is not None and not isinstance(target, str):
        raise TypeError(f"target {target!r} is invalid: give a build stage name or None")
    if not isinstance(platform, str) or not platform:
        raise ValueError(f"platform {platform!r} is invalid: give an os/arch pair such as {DEFAULT_PLATFORM!r}")
    return args


class ContextScan:
    """One walk of a build context for one Dockerfile, shared by every image built from that pair.

    A stack's `web` and `worker` build from one context with one Dockerfile: the walk, the stat
    cache (loaded once, written once), the hashing and the sensitive-file verdict happen here, once;
    `report_for` adds only one image's build inputs (their encoding and the digest). Each image's
    state for `explain` is recorded by `report_for` and written, with the entries, by `save` (or on
    leaving a `with` block).
    """

    def __init__(self, context: Path | str, dockerfile: Path | str | None = None, *, cache: bool = True) -> None:
        self.context = Path(os.path.abspath(context))
        self.dockerfile = Path(os.path.abspath(dockerfile)) if dockerfile is not None else self.context / "Dockerfile"
        self._dockerfile_arg = dockerfile
        self._states: list[tuple[str, dict[str, Any]]] = []
        self._saved = False
        run_start_ns = time.time_ns()
        df = self.dockerfile
        store = StatCache.load(self.context, df) if cache else StatCache.disabled(self.context, df)
        self._store = store

        dirs: list[str] = []
        entries, sizes, walked_misses = store.partition(walk_context(self.context, dockerfile, dirs=dirs))
        # Directories carry no stat key (their mtime and mode are not part of the digest), so an entry
        # per directory is just its presence; the trailing '/' keeps them apart from file paths and
        # lets explain print "added    uploads/".
        for d in dirs:
            entries[d + "/"] = DIR_ENTRY
        misses: list[tuple[str, Path | str, os.stat_result]] = []
        for e in walked_misses:
            st = e.stat
            if stat_module.S_ISLNK(st.st_mode):
                # Never trusted, so always here: readlink is one system call and reads no content.
                entries[e.rel] = make_entry(st, "l", os.readlink(e.abspath), 0, False)
                sizes[e.rel] = st.st_size
            else:
                misses.append((e.rel, e.abspath, st))

        # The Dockerfile goes through the same cache under a key no relative path can take.
        try:
            df_real = Path(os.path.realpath(df))
            df_st = os.lstat(df_real)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"Dockerfile {str(df)!r} does not exist: create it, or point the image's dockerfile setting "
                f"at the Dockerfile to build (default: <context>/Dockerfile)") from None
        if not stat_module.S_ISREG(df_st.st_mode):
            raise ValueError(f"Dockerfile {str(df)!r} is not a regular file: point the dockerfile setting at a file")
        df_hit = store.lookup(DOCKERFILE_KEY, df_st)
        if df_hit is None:
            misses.append((DOCKERFILE_KEY, df_real, df_st))
        else:
            entries[DOCKERFILE_KEY] = df_hit

        hashed = _hash_files(misses, run_start_ns)
        for rel, h in hashed.items():
            kind = "x" if h.key.st_mode & stat_module.S_IXUSR else "f"
            entries[rel] = make_entry(h.key, kind, h.value, h.flags, h.trusted)
            if rel != DOCKERFILE_KEY:
                sizes[rel] = h.size

        self.entries = entries  # rel -> stat-cache entry (also the manifest of this walk); directories as "rel/"
        self.sizes = sizes  # files and symlinks only
        self.dirs = dirs
        self.reads = len(hashed)  # files whose content was read by this walk
        self.dockerfile_hash = parse_entry(entries[DOCKERFILE_KEY])[1]
        # Every file a trusted cache hit and the same set of paths, kinds and targets as last time.
        self._unchanged = not hashed and entries == store.entries
        # The sensitive-file rules are a pure function of the entries: reuse their verdict while the
        # entries are unchanged, so a warm scan costs no per-file rule evaluation either.
        if self._unchanged and store.sensitive is not None:
            self.flagged: list[str] = store.sensitive
        else:
            self.flagged = sensitive.candidates(_records(entries, entries))

    def __enter__(self) -> ContextScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.save()

    def scan_records(self) -> list[tuple[str, str, int]]:
        """(rel, kind, content flags) of the paths the sensitive-file rules flag."""
        return _records(self.entries, self.flagged)

    def _run_for(self, args: dict[str, str], target: str | None, platform: str, record: bool = True) -> _Run:
        """One image's run over this walk: its digest, and its state recorded for `save` (`record=False`:
        not recorded, for callers whose build inputs are not a real build's)."""
        options = _options_encoding(args, target, platform)
        inputs = _inputs_encoding(self.dockerfile_hash, options)
        inputs_id = hashlib.sha256(inputs).hexdigest()
        key = _history_key(self.dockerfile, options)
        build_args_fp = {k: _arg_fingerprint(k, v) for k, v in sorted(args.items())}
        prior = self._store.prior(key, {"target": target, "platform": platform, "build_args": build_args_fp})
        prior_last = prior.last
        if self._unchanged and prior_last is not None and prior_last.get("inputs") == inputs_id:
            # Nothing the digest depends on differs from this image's last run (every file a trusted
            # cache hit with its size, the same set of file and directory paths, the same symlink
            # targets and build inputs), so the digest is the last one; recomputing it would only
            # re-encode the same bytes.
            digest = prior_last["digest"]
        else:
            digest = _digest(self.entries, self.sizes, self.dirs, inputs)
        last = {"digest": digest, "inputs": inputs_id, "dockerfile": self.dockerfile_hash,
                "build_args": build_args_fp, "target": target, "platform": platform}
        if record:
            self._states.append((key, last))
        return _Run(self.context, self.dockerfile, digest, self.entries, self.sizes, prior, last, self.reads,
                    self.flagged)

    def report_for(self, build_args: Mapping[str, str] | None = None, target: str | None = None,
                   platform: str = DEFAULT_PLATFORM, allow_sensitive: Iterable[str] = ()) -> ContextReport:
        """One image's report over this walk: its digest and tag, and the sensitive-file guard.

        Records the image's state for `explain` (written by `save`) before raising SensitiveFilesError,
        which lists every sensitive path not covered by `allow_sensitive`."""
        run = self._run_for(_check_inputs(build_args, target, platform), target, platform)
        refused, allowed = sensitive.findings(self.scan_records(), allow_sensitive)
        if refused:
            raise SensitiveFilesError(refused, str(self.context),
                                      _ignore_file_hint(self.context, self._dockerfile_arg))
        return ContextReport(run.digest, content_tag(run.digest), run.file_count, run.total_bytes, tuple(allowed))

    def save(self) -> None:
        """Write the entries, the sensitive verdict and every recorded image state to the stat cache,
        in one write (none when nothing changed). Later calls write nothing."""
        if not self._saved:
            self._saved = True
            self._store.save(self.entries, self.flagged, self._states)


def _run(context: Path | str, dockerfile: Path | str | None, build_args: Mapping[str, str] | None,
         target: str | None, platform: str, cache: bool, record: bool = True) -> _Run:
    """One image's walk: hash what the cache cannot vouch for, compute the digest, save the cache.

    `record=False` still saves file entries but leaves the last/previous digests `explain` compares
    untouched."""
    args = _check_inputs(build_args, target, platform)
    with ContextScan(context, dockerfile, cache=cache) as scan:
        return scan._run_for(args, target, platform, record)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def context_digest(context: Path | str, dockerfile: Path | str | None = None,
                   build_args: Mapping[str, str] | None = None, target: str | None = None,
                   platform: str = DEFAULT_PLATFORM, *, cache: bool = True) -> str:
    """The sha256 hex digest of everything a build of `context` depends on (see the module docstring).

    `dockerfile` defaults to <context>/Dockerfile; a relative path is relative to the working
    directory, as with `docker build -f`. `cache=False` neither reads nor writes the stat cache.
    """
    return _run(context, dockerfile, build_args, target, platform, cache).digest


def content_tag(digest: str) -> str:
    """The image tag for a context digest: `ctx-` and the first 20 hex digits (80 bits).

    Always a valid Docker tag (lower-case letters, digits and '-', 24 characters, never `latest`);
    the prefix keeps it from being mistaken for an image's registry digest.
    """
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"context digest {digest!r} is invalid: expected 64 lower-case hex digits "
                         "(the value context_digest returns)")
    return "ctx-" + digest[:20]


@dataclass(frozen=True)
class ContextReport:
    """What one walk of a build context found."""

    digest: str
    """sha256 hex of the build's inputs (context_digest)."""
    tag: str
    """content_tag(digest)."""
    file_count: int
    """Regular files and symlinks the build sees."""
    total_bytes: int
    """Their sizes summed (a symlink counts the length of its target)."""
    allowed: tuple[Finding, ...] = ()
    """Sensitive paths the build sends because allowSensitive lists them."""


def _ignore_file_hint(context: Path, dockerfile: Path | str | None) -> str:
    existing = ignore_file_for(context, dockerfile)
    return str(existing) if existing is not None else str(Path(os.path.abspath(context)) / ".dockerignore")


def check_context(context: Path | str, dockerfile: Path | str | None = None, allow_sensitive: Iterable[str] = (),
                  *, build_args: Mapping[str, str] | None = None, target: str | None = None,
                  platform: str = DEFAULT_PLATFORM, cache: bool = True, scan: ContextScan | None = None,
                  ) -> ContextReport:
    """Walk `context` once: the digest and tag, and the sensitive-file guard from the same reads.

    Raises SensitiveFilesError listing every sensitive path not covered by `allow_sensitive`
    (exact relative paths, or directories whose subtree is allowed).

    `scan`: a ContextScan of this same context and Dockerfile, so images sharing them are walked
    once (components/image.py plan_builds); the image's state is recorded in it and written by its
    `save`, and `cache` is the scan's. Without it, this call walks and saves the cache itself.
    """
    if scan is None:
        _check_inputs(build_args, target, platform)  # a bad input fails before any file is read
        with ContextScan(context, dockerfile, cache=cache) as own:
            return own.report_for(build_args, target, platform, allow_sensitive)
    ctx_abs = Path(os.path.abspath(context))
    df_abs = Path(os.path.abspath(dockerfile)) if dockerfile is not None else ctx_abs / "Dockerfile"
    if (scan.context, scan.dockerfile) != (ctx_abs, df_abs):
        raise ValueError(f"check_context: the scan given walked context {str(scan.context)!r} with Dockerfile "
                         f"{str(scan.dockerfile)!r}, not {str(ctx_abs)!r} with {str(df_abs)!r}; pass the "
                         "ContextScan of this image's own context and Dockerfile")
    return scan.report_for(build_args, target, platform, allow_sensitive)


def find_sensitive(context: Path | str, files: Iterable[str | ContextEntry] | None = None, *,
                   dockerfile: Path | str | None = None, allow_sensitive: Iterable[str] = (),
                   cache: bool = True) -> list[Finding]:
    """The sensitive paths among `files` (relative paths or walked ContextEntry objects; None means
    the whole file set the build sees), excluding those `allow_sensitive` covers.

    Uses the same walk, reads and cache as the digest, so an unchanged file is not read again; it
    records no image state (its inputs are not a real build's), so `explain` histories stay as they were.
    """
    with ContextScan(context, dockerfile, cache=cache) as scan:
        records = scan.scan_records()
        if files is not None:
            wanted = {f.rel if isinstance(f, ContextEntry) else f for f in files}
            unknown = sorted(wanted - scan.sizes.keys())
            if unknown:
                raise ValueError(f"find_sensitive: {unknown[:5]} are not in the build context {scan.context} "
                                 "(missing, or excluded by .dockerignore); pass paths context_files returns")
            records = [r for r in records if r[0] in wanted]
    refused, _ = sensitive.findings(records, allow_sensitive)
    return refused


# --------------------------------------------------------------------------------------------
# explain
# --------------------------------------------------------------------------------------------

def _describe_change(old: list[Any], new: list[Any]) -> str | None:
    ok, nk, ov, nv = old[0], new[0], old[1], new[1]
    if ok == nk and ov == nv:
        return None
    if (ok == "l") != (nk == "l"):
        return "now a symlink" if nk == "l" else "now a regular file"
    if ok == "l":
        return "symlink target"
    if ov != nv:
        return "content" + (" and executable bit" if ok != nk else "")
    return "executable bit set" if nk == "x" else "executable bit cleared"


def explain_lines(run: _Run) -> list[str]:
    """The `explain` report of one run, line by line."""
    lines = [
        f"context     {run.context}",
        f"dockerfile  {run.dockerfile}",
        f"platform    {run.last['platform']}" + (f"  target {run.last['target']}" if run.last["target"] else ""),
        f"digest      {run.digest}",
        f"tag         {content_tag(run.digest)}",
        f"files       {run.file_count} ({run.total_bytes:,} bytes)",
    ]
    prior = run.prior
    own_last, own_prev = prior.last, prior.previous
    if own_last is not None and own_last.get("digest") != run.digest:
        base = own_last
        lines.append(f"changed since the last run (digest {base['digest'][:12]}, tag {content_tag(base['digest'])}):")
    elif own_last is None and prior.other is not None:
        # A first run under these build inputs: show what differs from the closest other inputs this
        # context was built with (the same image before its target or build args changed, usually).
        base = prior.other
        lines.append(f"first run with these build inputs; changed since the last run of this context with other "
                     f"build inputs (digest {base['digest'][:12]}, tag {content_tag(base['digest'])}):")
    elif own_prev is not None and own_prev.get("digest") != run.digest:
        base = own_prev
        other = ", built with other build inputs" if prior.inherited else ""
        lines.append(f"unchanged since the last run; changed since the digest before it "
                     f"({base['digest'][:12]}, tag {content_tag(base['digest'])}{other}):")
    elif own_last is not None:
        lines.append("unchanged since the last run; the cache holds no earlier digest to compare with")
        return lines
    else:
        lines.append("no previous manifest in the cache for this context (first run, or cache cleared)")
        return lines
    base_manifest = prior.manifest(base)

    new_manifest = manifest_of(run.entries)
    changes: list[str] = []
    if base.get("dockerfile") != run.last["dockerfile"]:
        changes.append("  changed  (Dockerfile content)")
    old_files = {k: v for k, v in base_manifest.items() if k != DOCKERFILE_KEY}
    new_files = {k: v for k, v in new_manifest.items() if k != DOCKERFILE_KEY}
    for rel in sorted(old_files.keys() | new_files.keys()):
        if rel not in old_files:
            changes.append(f"  added    {rel}")
        elif rel not in new_files:
            changes.append(f"  removed  {rel}")
        else:
            what = _describe_change(old_files[rel], new_files[rel])
            if what:
                changes.append(f"  changed  {rel} ({what})")
    old_args, new_args = base.get("build_args") or {}, run.last["build_args"]
    for k in sorted(old_args.keys() | new_args.keys()):
        if k not in old_args:
            changes.append(f"  build arg {k} added")
        elif k not in new_args:
            changes.append(f"  build arg {k} removed")
        elif old_args[k] != new_args[k]:
            changes.append(f"  build arg {k} changed")
    for name in ("target", "platform"):
        if base.get(name) != run.last[name]:
            changes.append(f"  {name} {base.get(name)!r} -> {run.last[name]!r}")
    lines.extend(changes or ["  (no file or input difference recorded: the digest format changed)"])
    return lines


def _parse_build_arg(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--build-arg {text!r} is invalid: write NAME=VALUE")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m buildcontext.context",
                                     description="Inspect a build context the way acr-publish sees it.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="digest, tag, size, and what changed since the previous digest")
    ex.add_argument("context", type=Path, nargs="?", help="the build context (or use --stack and --image)")
    ex.add_argument("--stack", help="take context, dockerfile, build args, target and platform from "
                                    "stacks/Pulumi.<stack>.yaml (with --image)")
    ex.add_argument("--image", help="the image's name in that stack")
    ex.add_argument("--dockerfile", type=Path, default=None, help="default: <context>/Dockerfile")
    ex.add_argument("--build-arg", dest="build_args", action="append", type=_parse_build_arg, default=[],
                    metavar="NAME=VALUE")
    ex.add_argument("--target", default=None)
    ex.add_argument("--platform", default=DEFAULT_PLATFORM)
    opts = parser.parse_args(argv)
    if (opts.stack is None) != (opts.image is None) or (opts.stack is None) == (opts.context is None):
        parser.error("give either a context path, or --stack and --image (the tag the stack would build)")
    if opts.stack is not None:
        from components.settings import ConfigError, load_stack_file

        try:
            settings = load_stack_file(opts.stack)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        images = {img.name: img for img in settings.images}
        if opts.image not in images:
            print(f"error: stack {opts.stack!r} has no image {opts.image!r}; its images are "
                  f"{', '.join(sorted(images))}", file=sys.stderr)
            return 2
        img = images[opts.image]
        opts.context, opts.dockerfile = settings.path(img.context), settings.path(img.dockerfile)
        opts.build_args, opts.target, opts.platform = list(img.build_args.items()), img.target, img.platform
    try:
        run = _run(opts.context, opts.dockerfile, dict(opts.build_args), opts.target, opts.platform, True)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    refused, allowed = sensitive.findings(run.scan_records())
    lines = explain_lines(run)
    if refused:
        lines.append(f"sensitive   {len(refused)} path(s), refused by a build unless the image's allowSensitive lists them:")
        lines.extend(f"  {f.path}  {f.reason}" for f in refused)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
