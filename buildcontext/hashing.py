"""Reading and hashing the files of a build context on all cores, with the sensitive-content scan in the same read.

Every file is opened with O_NOFOLLOW (a symlink is never followed) and read once: small files in batches, files
over TREE_CHUNK bytes as TREE_CHUNK pieces hashed in parallel (`hashlib` releases the GIL while it hashes, so
the pool uses every core; a thread pool, not processes, because the work is in C and the data stays shared).
Only regular files get here: the scan never opens a fifo, socket or device node.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from buildcontext import sensitive
from buildcontext.digest import TREE_CHUNK, tree_value
from errors import AcrPublishError

READ_SIZE = 1 << 20
# Small files go to the pool in batches: one task per file costs more than hashing the file.
BATCH_BYTES = 4 << 20
BATCH_FILES = 256

# O_NONBLOCK: a file swapped for a fifo between the walk and the open must not block the run (no effect on
# regular files, which are then checked by fstat).
_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# Reading and hashing files
# --------------------------------------------------------------------------------------------

@dataclass
class Hashed:
    """One regular file's hash as this run computed it."""

    value: str
    size: int  # bytes actually hashed
    flags: int
    key: os.stat_result  # stat the cache entry is keyed by
    trusted: bool


# What opening a path the walk listed gives once it is gone, or replaced by a symlink (O_NOFOLLOW) or by a file
# where a directory was.
_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})


class ContextChanged(AcrPublishError, ValueError):
    """A file of the build context changed kind or disappeared between the walk and its read."""


def _open(path: Path | str, rel: str) -> int:
    try:
        fd = os.open(path, _O_READ)
    except PermissionError as exc:
        raise PermissionError(
            exc.errno, f"cannot read {rel!r} in the build context ({exc.strerror}); Docker cannot send it "
            "either: fix its permissions or exclude it in .dockerignore", str(path)) from exc
    except OSError as exc:
        if exc.errno in _GONE:
            raise ContextChanged(f"{rel!r} disappeared or was replaced while it was being hashed") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ContextChanged(f"{rel!r} stopped being a regular file while it was being hashed")
    return fd


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns and a.st_ctime_ns == b.st_ctime_ns
            and a.st_ino == b.st_ino)


def settled(st: os.stat_result, trust_before_ns: int) -> bool:
    """Whether a stat key may vouch for content read now: the later of mtime and ctime is older than
    `trust_before_ns` (the racy window). The ctime too, as git checks it: a write whose mtime was set back
    (touch -d, a restored backup, tar -x) still moves the ctime, which no user call can set."""
    return max(st.st_mtime_ns, st.st_ctime_ns) < trust_before_ns


def _hash_whole(rel: str, path: Path, st: os.stat_result, trust_before_ns: int) -> Hashed:
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
               and settled(key, trust_before_ns))
    return Hashed(hashlib.sha256(data).hexdigest(), len(data), flags, key, trusted)


_buffers = threading.local()


def _buffer() -> memoryview:
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = memoryview(bytearray(READ_SIZE))
    return buf


def _hash_range(rel: str, path: Path, start: int, length: int, scan: bool,
                stop: threading.Event) -> tuple[bytes, int, int]:
    """(sha256 digest, bytes read, content flags) of one chunk of a large file; cut short (a result nobody reads)
    once `stop` is set."""
    fd = _open(path, rel)
    try:
        h = hashlib.sha256()
        buf = _buffer()
        pos, end, flags = start, start + length, 0
        name = rel.rsplit("/", 1)[-1]
        tail = os.pread(fd, sensitive.SCAN_OVERLAP, max(0, start - sensitive.SCAN_OVERLAP)) if scan and start else b""
        size = os.fstat(fd).st_size if scan else 0
        while pos < end and not stop.is_set():
            n = os.preadv(fd, [buf[: min(READ_SIZE, end - pos)]], pos)
            if n == 0:
                break
            h.update(buf[:n])  # hashlib releases the GIL for large buffers: this is where cores add up
            if scan:
                window = tail + bytes(buf[:n])
                flags |= sensitive.scan_content(name, window, cut_start=bool(tail), cut_end=pos + n < size)
                tail = window[-sensitive.SCAN_OVERLAP:]  # a short read must not shorten the overlap
            pos += n
        return h.digest(), pos - start, flags
    finally:
        os.close(fd)


def _plan_reads(misses: list[tuple[str, Path | str, os.stat_result]]
                ) -> tuple[list[list[tuple[str, Path, os.stat_result]]], list[tuple[str, Path, os.stat_result, bool]]]:
    """(batches of small files, each up to BATCH_BYTES or BATCH_FILES; large files with whether they are text)."""
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
    return batches, large


def _large_file(rel: str, path: Path, st: os.stat_result, key: os.stat_result, parts: list[tuple[bytes, int, int]],
                trust_before_ns: int) -> Hashed:
    """A large file's result from its chunks' (digest, size, flags), in order."""
    size = sum(n for _, n, _ in parts)
    flags = 0
    for _, _, fl in parts:
        flags |= fl
    after = os.lstat(path)
    trusted = (_same_file(key, st) and _same_file(key, after) and size == st.st_size
               and settled(key, trust_before_ns))
    return Hashed(tree_value([d for d, _, _ in parts]), size, flags, key, trusted)


def hash_files(misses: list[tuple[str, Path | str, os.stat_result]], trust_before_ns: int) -> dict[str, Hashed]:
    """Hash every file in `misses` on all cores; large files are split into TREE_CHUNK pieces.

    A result is `trusted` (its stat key may vouch for its content next time) when the file did not change
    while it was read and its mtime is older than `trust_before_ns` (the racy window)."""
    results: dict[str, Hashed] = {}
    if not misses:
        return results
    batches, large = _plan_reads(misses)

    # Set when the caller stops waiting (Ctrl-C, or a file that changed): every running task ends at its next
    # read of at most READ_SIZE bytes and queued ones never start, so an interrupt ends the scan within moments
    # instead of after every queued byte of a large context was hashed.
    stop = threading.Event()

    def run_batch(items: list[tuple[str, Path, os.stat_result]]) -> list[tuple[str, Hashed]]:
        return [(rel, _hash_whole(rel, path, st, trust_before_ns)) for rel, path, st in items if not stop.is_set()]

    tasks = len(batches) + sum(-(-st.st_size // TREE_CHUNK) for _, _, st, _ in large)
    workers = min(_workers(), tasks)
    if workers <= 1 and not large:
        for b in batches:
            results.update(run_batch(b))
        return results

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="context-hash")
    try:
        # Large files first: their chunks are the long tasks, batches fill the gaps.
        chunk_futures = []
        for rel, path, st, scan in large:
            key = os.lstat(path)
            futures = [pool.submit(_hash_range, rel, path, off, TREE_CHUNK, scan, stop)
                       for off in range(0, st.st_size, TREE_CHUNK)]
            chunk_futures.append((rel, path, st, key, futures))
        batch_futures = [pool.submit(run_batch, b) for b in batches]
        for rel, path, st, key, futures in chunk_futures:
            results[rel] = _large_file(rel, path, st, key, [f.result() for f in futures], trust_before_ns)
        for f in batch_futures:
            results.update(f.result())
    except BaseException:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results
