"""The engine's own files (the stat cache and the explain history): where they live, how they are read and written.

* Location: `$ACR_PUBLISH_CACHE_DIR` when set, else `platformdirs.user_cache_dir("acr-publish")` (which honours
  `$XDG_CACHE_HOME`). platformdirs because the per-OS cache directory rules are its whole job.
* Reads open only regular files (O_NOFOLLOW | O_NONBLOCK, then fstat): a fifo, socket, device or symlink in place
  of a file is reported as a problem, never opened for reading, so it can neither hang the run nor redirect it.
  Reads are bounded.
* Writes are atomic: a temporary `.tmp-*` file (mode 0600) in the same directory, then os.replace, so racing
  writers each leave a complete file (the last one wins). Temporaries a killed writer left behind are removed
  once they are older than STALE_TEMPORARY_SECONDS (a live writer finishes in well under that): by the next
  write, and by the first read of the directory in each process, so a later run that writes nothing (an
  unchanged context) removes them too. That sweep lists at most SWEEP_LIMIT entries of the directory.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
import time
from pathlib import Path

import platformdirs

from buildcontext.printable import escaped

CACHE_DIR_ENV = "ACR_PUBLISH_CACHE_DIR"
TEMPORARY_PREFIX = ".tmp-"
STALE_TEMPORARY_SECONDS = 600
SWEEP_LIMIT = 10_000
STORES = ("contexts", "history")
"""The directories under the cache directory that hold the stat cache (buildcontext/memo.py) and the explain
history (buildcontext/history.py)."""
_swept: set[str] = set()  # directories this process has swept on read
_O_READ = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def cache_dir() -> Path:
    """The directory holding every file the engine keeps."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("acr-publish"))


def cache_dir_setting() -> str:
    """The cache directory as messages name it: the variable that set it and its value (escaped), or that it is
    the default."""
    shown = escaped(str(cache_dir()))
    if os.environ.get(CACHE_DIR_ENV):
        return f"{CACHE_DIR_ENV}={shown}"
    if os.environ.get("XDG_CACHE_HOME", "").strip():
        return f"XDG_CACHE_HOME ({shown})"  # platformdirs puts the cache in $XDG_CACHE_HOME/acr-publish
    return f"the default cache directory ({shown})"


def cache_dir_problem() -> str | None:
    """Why the cache directory can never hold the engine's files (it is a file, a symlink loop or a dangling
    link, or lies below a file), or None. A directory that does not exist yet is fine (the first write creates
    it); one that cannot be written is not judged here (the write warns and the run goes on without it)."""
    path = cache_dir()
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not os.path.islink(path):
            return None
        what = "is a symlink to nothing"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            what = "is a symlink loop"
        elif exc.errno == errno.ENOTDIR:
            what = "lies below something that is not a directory"
        else:
            return None
    else:
        if stat.S_ISDIR(st.st_mode):
            return None
        what = "is a file, not a directory"
    return (f"{cache_dir_setting()} {what}: acr-publish keeps its stat cache and explain history in that directory; "
            f"point {CACHE_DIR_ENV} at a directory (or remove what is in its place)")


def written_inside(directory: Path) -> str | None:
    """Where, relative to `directory` (a POSIX path, "" for `directory` itself), the engine writes its files when
    it writes any inside it: the cache directory, or, for a directory within the cache directory, the store
    directory holding it; None when nothing the engine writes lands inside `directory`. Symlinks are resolved on
    both sides, as the kernel resolves them when the files are written."""
    real = os.path.realpath(directory)
    cache = os.path.realpath(cache_dir())
    for written in (cache, *(os.path.join(cache, store) for store in STORES)):
        if written == real:
            return ""
        if written.startswith(real.rstrip("/") + "/"):
            return Path(os.path.relpath(written, real)).as_posix()
    return None


class UnusableFile(Exception):
    """A file the engine keeps exists but cannot be used; the message says why."""


def read_regular(path: Path, limit: int, first_line_only: bool = False) -> bytes | None:
    """The bytes of `path` (at most `limit`; with `first_line_only`, up to and including the first newline), or
    None when it does not exist. Raises UnusableFile when it is not a readable regular file or is larger.
    The first read in a directory removes its stale temporaries (one listing per directory and process)."""
    directory = os.path.dirname(path)
    if directory not in _swept:
        _swept.add(directory)
        remove_stale_temporaries(Path(directory))
    try:
        fd = os.open(path, _O_READ)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnusableFile(f"unreadable ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnusableFile("not a regular file")
        if not first_line_only and st.st_size > limit:
            raise UnusableFile(f"{st.st_size} bytes, more than the {limit} a valid one can hold")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.readline(limit) if first_line_only else f.read(limit + 1)
    except OSError as exc:
        raise UnusableFile(f"unreadable ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnusableFile(f"more than the {limit} bytes a valid one can hold")
    return data


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically (raises OSError), then remove stale temporaries beside it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # mkstemp creates the file 0600: file names and build-arg fingerprints are nobody else's business.
    fd, tmp_name = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    remove_stale_temporaries(path.parent)


def remove_stale_temporaries(directory: Path) -> None:
    """Delete the `.tmp-*` regular files in `directory` older than STALE_TEMPORARY_SECONDS, among its first
    SWEEP_LIMIT entries."""
    cutoff = time.time() - STALE_TEMPORARY_SECONDS
    try:
        with os.scandir(directory) as it:
            for n, entry in enumerate(it):
                if n >= SWEEP_LIMIT:
                    break
                if not entry.name.startswith(TEMPORARY_PREFIX):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode) and st.st_mtime < cutoff:
                        os.unlink(entry.path)
                except OSError:
                    continue  # another run removed it first, or it is not ours to remove
    except OSError:
        pass  # an unlistable directory: the write that just succeeded there is what matters
