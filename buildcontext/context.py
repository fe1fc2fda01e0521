"""One scan of a build context: the entry the program, the explain command and the benchmark use.

`ContextScan(context, dockerfile)` walks the context once (buildcontext/dockerignore.py: Docker's
.dockerignore semantics), takes every unchanged file's hash from the stat cache (buildcontext/memo.py),
reads and hashes the rest on all cores with the sensitive-content scan in the same read
(buildcontext/hashing.py), and applies the guard's path rules (buildcontext/sensitive.py). Then it
answers, for any build inputs (build args, target, platform) of images built from that context and
Dockerfile: `digest`, `report` (tag plus the guard, raising SensitiveFilesError), `state` (what the
explain history records) and `manifest`. The part of the digest encoding all those images share (the
tree root, buildcontext/digest.py) is computed once per scan, and not at all by a warm scan whose walk
matches the stat cache's fingerprint: the cache's summary is then the answer. `save` (or leaving a
`with` block) writes the stat cache, once, and only when something changed.

`context_digest(...)` is the one-call form for callers outside the program.
"""
from __future__ import annotations

import errno
import os
import stat as stat_module
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from buildcontext import digest as encoding, files, memo, sensitive
from buildcontext.digest import DEFAULT_PLATFORM, content_tag
from buildcontext.dockerignore import excludes_whole, ignore_file_for, walk_context
from buildcontext.hashing import ContextChanged, hash_files, settled
from buildcontext.history import BuildState
from buildcontext.printable import escaped
from buildcontext.memo import (DIR_ENTRY, DOCKERFILE_KEY, StatCache, Summary, fingerprint,
                               make_entry, parse_entry)
from buildcontext.sensitive import Finding, SensitiveFilesError
from buildcontext.stages import DockerfilePlan
from errors import AcrPublishError

__all__ = ["ContextScan", "ContextReport", "context_digest", "content_tag", "DEFAULT_PLATFORM", "Finding",
           "SensitiveFilesError"]


@dataclass(frozen=True)
class ContextReport:
    """One image's view of a scan, once the guard let it through."""

    tag: str
    """content_tag of the build's digest."""
    allowed: tuple[Finding, ...] = ()
    """Sensitive paths the build sends because allowSensitive lists them."""
    off_chain: tuple[str, ...] = ()
    """Credentials let through because only stages off the target's FROM chain use them: one line each, saying why
    and what still sees them."""
    off_chain_args: tuple[str, ...] = ()
    """The build args among them (passed to the build as secrets)."""


def _stage_aware(stages: DockerfilePlan, dockerfile: tuple[str, str | None, int],
                 args: dict[str, str]) -> tuple[tuple[str, str | None, int], dict[str, str], list[str], list[str]]:
    """The guard's inputs with what only stages off the target's FROM chain use taken out, and one line per
    credential taken out (the Dockerfile's text, each build arg)."""
    notes: list[str] = []
    chain = stages.chain_shown()
    flags = dockerfile[2]
    if flags and not stages.chain_flags():
        holders = stages.off_chain_stages_with_flags()
        if holders:
            names = ", ".join(s.shown for s in holders)
            notes.append(f"the Dockerfile's stage {names} holds a credential, but the shipped image's history records "
                         f"only its FROM chain ({chain}); the build cache of that stage on the build machine still "
                         "holds it")
            dockerfile = (dockerfile[0], dockerfile[1], 0)
    kept: dict[str, str] = {}
    taken: list[str] = []
    for name, value in args.items():
        on, off = stages.stages_declaring(name)
        refused, allowed = sensitive.build_arg_findings({name: value})
        if on or not (refused or allowed):
            kept[name] = value
            continue
        taken.append(name)
        if off:
            notes.append(f"build arg {name} looks like a credential, but only stage {', '.join(s.shown for s in off)} "
                         f"declares it, not the shipped image's FROM chain ({chain}), so the image history does not "
                         "record it; the build cache of that stage on the build machine still holds it, and the "
                         "stack passes it to docker.Image as a secret")
        else:
            notes.append(f"build arg {name} looks like a credential, but no stage the target needs declares it "
                         "(ARG), so no instruction sees it and the image history does not record it; the stack "
                         "passes it to docker.Image as a secret")
    return dockerfile, kept, notes, taken


def _check_inputs(build_args: Mapping[str, str] | None, target: str | None, platform: str) -> dict[str, str]:
    args = dict(build_args or {})
    for k, v in args.items():
        if not isinstance(k, str) or not isinstance(v, str):
            # Never the value: build args can be secrets.
            raise TypeError(f"build arg {k!r} is invalid: build arg names and values must be strings "
                            f"(its value is a {type(v).__name__})")
    if target is not None and not isinstance(target, str):
        raise TypeError(f"target {target!r} is invalid: give a build stage name or None")
    if not isinstance(platform, str) or not platform:
        raise ValueError(f"platform {platform!r} is invalid: give an os/arch pair such as {DEFAULT_PLATFORM!r}")
    return args


def _special(st: os.stat_result) -> tuple[str, str] | None:
    """(kind, value) of a fifo, socket or device node; None for anything else."""
    mode = st.st_mode
    if stat_module.S_ISFIFO(mode):
        return "p", ""
    if stat_module.S_ISSOCK(mode):
        return "s", ""
    if stat_module.S_ISCHR(mode) or stat_module.S_ISBLK(mode):
        return ("c" if stat_module.S_ISCHR(mode) else "b"), f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    return None


SCAN_ATTEMPTS = 5
"""Scans of a context that changes while it is read (files created and deleted by editors, watchers, test runs)
before the scan gives up with one message."""
# What reading a path the walk listed gives once it is gone or of another kind: no such file, a file where a
# directory was, a symlink met by O_NOFOLLOW, readlink of what is no longer a link.
_CHANGED = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EINVAL})


class ScanInterrupted(KeyboardInterrupt):
    """Ctrl-C during a scan, said in one line (str of it); still a KeyboardInterrupt."""


class ContextReadError(AcrPublishError, ValueError):
    """The build context cannot be read (a permission, a context that keeps changing, a missing Dockerfile): one
    message, which the program reports as a build-plan problem of the image."""


def _shown_path(path: object) -> str:
    return escaped(os.fsdecode(path)) if isinstance(path, (str, bytes)) else "a path"


def _unreadable(exc: OSError) -> str:
    """One line for an error reading the context; the walk and the hashing phrase their own (rel, rule, fix)."""
    if isinstance(exc, PermissionError) and exc.filename and exc.strerror and "build context" in exc.strerror:
        return escaped(exc.strerror)
    return (f"cannot read {_shown_path(exc.filename)} in the build context ({exc.strerror or type(exc).__name__}); "
            "Docker cannot send it either: fix its permissions or exclude it in .dockerignore")


class CacheInContextError(AcrPublishError, ValueError):
    """The engine's own files would land inside a build context the ignore file does not exclude them from."""


def _refuse_own_files_inside(context: Path, dockerfile: Path | str | None) -> None:
    """Nothing the engine writes may become a build input: its stat cache and explain history change on every run
    that plans something new, so inside a context the build sends they would change the context's digest, and the
    tag, on every run. Refused before anything is read or written, unless the ignore file in effect excludes the
    whole directory they are written to (then Docker never sends them, and the walk never sees them)."""
    rel = files.written_inside(context)
    if rel is None or (rel and excludes_whole(context, dockerfile, rel)):
        return
    fix = f"set {files.CACHE_DIR_ENV} to a directory outside every build context"
    if rel:
        existing = ignore_file_for(context, dockerfile)
        ignore = escaped(str(existing if existing is not None else Path(context) / ".dockerignore"))
        fix += (f", or add the line {sensitive.dockerignore_escape(rel)} to {ignore} (with no '!' exception "
                "re-including anything in it)")
    raise CacheInContextError(
        f"{files.cache_dir_setting()} is inside the build context {escaped(str(context))}"
        + (f" (at {escaped(rel)})" if rel else "")
        + ", and the build would send it: acr-publish writes its stat cache and explain history there, so every run would "
        f"change the files the build sends, and the tag; {fix}")


def _too_long(path: Path | str, what: str) -> ValueError:
    shown = str(path) if len(str(path)) <= 120 else str(path)[:120] + "..."
    return ValueError(f"{what} {shown!r} is invalid: a path component is longer than 255 bytes, or the path longer "
                      "than the system allows; shorten it")


DOCKERFILE_SETTING = "the image's dockerfile setting"
"""What chose the Dockerfile, as a refusal names it: the stack's setting, unless the caller says otherwise."""


def _dockerfile_stat(df: Path, chosen_by: str) -> tuple[Path, os.stat_result]:
    """The Dockerfile's real path and lstat; refused when it is missing or not a regular file, with the fix naming
    `chosen_by` (DOCKERFILE_SETTING, or explain's --dockerfile)."""
    try:
        df_real = Path(os.path.realpath(df))
        df_st = os.lstat(df_real)
    except FileNotFoundError:
        raise ContextReadError(
            f"Dockerfile {str(df)!r} does not exist: create it, or point {chosen_by} at the Dockerfile to build "
            "(default: <context>/Dockerfile)") from None
    if not stat_module.S_ISREG(df_st.st_mode):
        raise ValueError(f"Dockerfile {str(df)!r} is not a regular file: point {chosen_by} at a file")
    return df_real, df_st


def _enter_unread(walked_misses: list, entries: dict[str, str], sizes: dict[str, int],
                  trust_before_ns: int) -> list[tuple[str, str | Path, os.stat_result]]:
    """Enter the links and special files among the walked entries the memo did not vouch for; the regular files
    among them, which must be read."""
    misses: list[tuple[str, str | Path, os.stat_result]] = []
    for rel, path, st in walked_misses:
        # Links and special files are never opened: their value comes from readlink or lstat, and, as
        # git does, they are trusted by their stat key once older than the racy window.
        trusted = settled(st, trust_before_ns)
        if stat_module.S_ISLNK(st.st_mode):
            entries[rel] = make_entry(st, "l", os.readlink(path), 0, trusted)
            sizes[rel] = st.st_size
        elif stat_module.S_ISREG(st.st_mode):
            misses.append((rel, path, st))
        else:
            special = _special(st)
            if special is None:
                raise ValueError(f"{rel!r} in the build context is a file of a kind Docker cannot send "
                                 f"(mode {st.st_mode:o}); remove it or exclude it in .dockerignore")
            entries[rel] = make_entry(st, *special, 0, trusted)
    return misses


def _tree_and_flagged(entries: Mapping[str, str], sizes: Mapping[str, int],
                      dirs: list[str]) -> tuple[str, tuple[tuple[str, str, int], ...]]:
    """The digest's tree root (hex) over the entries, and the (rel, kind, flags) the guard's rules flag."""
    records = {}
    for rel, e in entries.items():
        if rel[-1] != "/" and rel != DOCKERFILE_KEY:
            _key, kind, _flags, value = e.split("|", 3)
            records[rel] = (kind, value)
    tree = encoding.tree_root(records, sizes, dirs).hex()
    judged = _records(entries)
    candidates = set(sensitive.candidates(judged))
    return tree, tuple(r for r in judged if r[0] in candidates)


class ContextScan:
    """One walk of a build context for one Dockerfile, shared by every image built from that pair."""

    def __init__(self, context: Path | str, dockerfile: Path | str | None = None, *, cache: bool = True,
                 dockerfile_chosen_by: str = DOCKERFILE_SETTING) -> None:
        self._dockerfile_chosen_by = dockerfile_chosen_by
        changed = ""
        for _attempt in range(SCAN_ATTEMPTS):
            try:
                self._scan(context, dockerfile, cache)
                return
            except ContextChanged as exc:
                changed = str(exc)
            except KeyboardInterrupt:
                # The hashing pool stopped at its next read (hashing.hash_files); nothing was written, so the
                # stat cache holds what the last finished scan stored.
                raise ScanInterrupted(
                    f"interrupted (Ctrl-C) while reading the build context {escaped(str(context))}; nothing was "
                    "written, the stat cache keeps what earlier runs stored") from None
            except OSError as exc:
                if exc.errno == errno.ENAMETOOLONG:
                    raise _too_long(exc.filename or context, "a path in the build context") from None
                if exc.errno not in _CHANGED:
                    raise ContextReadError(_unreadable(exc)) from None
                # Listed by the walk, gone (or of another kind) a moment later: an editor's swap file, a test
                # run's temporaries. A new scan sees the context as it is now.
                changed = f"{_shown_path(exc.filename)} disappeared or was replaced while it was read"
        raise ContextReadError(
            f"the build context {escaped(str(context))} kept changing while it was read ({SCAN_ATTEMPTS} scans; the "
            f"last: {changed}): run again once nothing writes to it, or exclude the paths that change (temporary "
            "files, caches) in its .dockerignore")

    def _scan(self, context: Path | str, dockerfile: Path | str | None, cache: bool) -> None:
        self.context = Path(os.path.abspath(context))
        self.dockerfile = Path(os.path.abspath(dockerfile)) if dockerfile is not None else self.context / "Dockerfile"
        self._dockerfile_arg = dockerfile
        self._saved = False
        trust_before_ns = time.time_ns() - memo.RACY_WINDOW_NS  # looked up per scan: tests shorten it
        df = self.dockerfile
        if cache:
            _refuse_own_files_inside(self.context, dockerfile)
        store = StatCache.load(self.context, df) if cache else StatCache.disabled(self.context, df)
        self._store = store

        dirs: list[str] = []
        walked = list(walk_context(self.context, dockerfile, dirs=dirs))
        df_real, df_st = _dockerfile_stat(df, self._dockerfile_chosen_by)
        self.reads = 0
        """Files whose content this scan read (the rest came from the stat cache)."""

        known = store.summary
        if known is not None and known.fingerprint is not None and known.fingerprint == fingerprint(
                walked, dirs, df_st):
            # Every path, stat key and directory is what the memo was written from, and every entry was
            # trusted: the memo's summary is this scan's, and so are its entries (parsed only if asked for).
            self._summary, self._entries = known, None
            return

        entries, sizes, walked_misses = store.partition(walked)
        # Directories carry no stat key (their mtime and mode are not part of the digest), so an entry
        # per directory is just its presence; the trailing '/' keeps them apart from file paths.
        for d in dirs:
            entries[d + "/"] = DIR_ENTRY
        misses = _enter_unread(walked_misses, entries, sizes, trust_before_ns)
        # The Dockerfile goes through the same memo under a key no relative path can take.
        df_hit = store.lookup(DOCKERFILE_KEY, df_st)
        if df_hit is None:
            misses.append((DOCKERFILE_KEY, df_real, df_st))
        else:
            entries[DOCKERFILE_KEY] = df_hit

        hashed = hash_files(misses, trust_before_ns)
        for rel, h in hashed.items():
            kind = "x" if h.key.st_mode & stat_module.S_IXUSR else "f"
            entries[rel] = make_entry(h.key, kind, h.value, h.flags, h.trusted)
            if rel != DOCKERFILE_KEY:
                sizes[rel] = h.size
        self.reads = len(hashed)

        # The guard's verdict and the digest's tree root are pure functions of the entries: reuse them while the
        # entries are unchanged, so a scan whose only news is the listing order evaluates no rule either.
        if known is not None and not hashed and entries == store.entries:
            tree, flagged = known.tree, known.flagged
        else:
            tree, flagged = _tree_and_flagged(entries, sizes, dirs)
        all_trusted = all(e[0] != "U" for e in entries.values())
        self._entries = entries
        _kind, df_hash, df_flags = parse_entry(entries[DOCKERFILE_KEY])
        self._summary = Summary(fingerprint(walked, dirs, df_st) if all_trusted else None, tree,
                                df_hash, df_flags, flagged, len(sizes), sum(sizes.values()))

    def __enter__(self) -> ContextScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.save()

    @property
    def file_count(self) -> int:
        """Regular files and symlinks the build sees."""
        return self._summary.file_count

    @property
    def total_bytes(self) -> int:
        """Their sizes summed (a symlink counts the length of its target)."""
        return self._summary.total_bytes

    def digest(self, build_args: Mapping[str, str] | None = None, target: str | None = None,
               platform: str = DEFAULT_PLATFORM, remote: Mapping[str, str] | None = None) -> str:
        """The sha256 hex digest of a build of this context with these inputs (buildcontext/digest.py); `remote`:
        the remote inputs' label -> digest (components/remote_inputs.py)."""
        args = _check_inputs(build_args, target, platform)
        return encoding.digest_of(bytes.fromhex(self._summary.tree), self._summary.dockerfile,
                                  encoding.options_encoding(args, target, platform, remote))

    def sensitive(self, allow_sensitive: Iterable[str] = ()) -> list[Finding]:
        """The sensitive paths the build would send that `allow_sensitive` does not cover."""
        return sensitive.findings(self._summary.flagged, allow_sensitive)[0]

    def report(self, build_args: Mapping[str, str] | None = None, target: str | None = None,
               platform: str = DEFAULT_PLATFORM, allow_sensitive: Iterable[str] = (),
               remote: Mapping[str, str] | None = None, stages: DockerfilePlan | None = None) -> ContextReport:
        """One image's digest and tag, once the guard passed: raises SensitiveFilesError listing every
        sensitive path not covered by `allow_sensitive` (exact relative paths, or directories), and every
        credential in the Dockerfile's text or the build args (`buildArg:NAME` entries accept one).

        With `stages` (the Dockerfile read for these inputs, buildcontext/stages.py), a credential in the text or a
        build arg is refused only when the target's FROM chain uses it; one used only by other stages is reported
        in `ContextReport.off_chain` instead."""
        value = self.digest(build_args, target, platform, remote)
        # The Dockerfile's text and the build args land in the image history whatever is sent.
        inside = self.dockerfile.is_relative_to(self.context)
        dockerfile = (str(self.dockerfile), self.dockerfile.relative_to(self.context).as_posix() if inside else None,
                      self._summary.dockerfile_flags)
        args = _check_inputs(build_args, target, platform)
        off_chain: list[str] = []
        off_chain_args: list[str] = []
        if stages is not None:
            dockerfile, args, off_chain, off_chain_args = _stage_aware(stages, dockerfile, args)
        refused, allowed = sensitive.image_findings(self._summary.flagged, allow_sensitive, dockerfile=dockerfile,
                                                    build_args=args)
        if refused:
            existing = ignore_file_for(self.context, self._dockerfile_arg)
            hint = str(existing) if existing is not None else str(self.context / ".dockerignore")
            raise SensitiveFilesError(refused, str(self.context), hint)
        return ContextReport(content_tag(value), tuple(allowed), tuple(off_chain), tuple(off_chain_args))

    def state(self, build_args: Mapping[str, str] | None = None, target: str | None = None,
              platform: str = DEFAULT_PLATFORM, remote: Mapping[str, str] | None = None) -> BuildState:
        """What the explain history records of a build with these inputs (build args as fingerprints)."""
        value = self.digest(build_args, target, platform, remote)
        fingerprints = {k: encoding.arg_fingerprint(k, v) for k, v in sorted((build_args or {}).items())}
        return BuildState(value, content_tag(value), self._summary.dockerfile, fingerprints, target, platform,
                          dict(sorted((remote or {}).items())))

    def manifest(self) -> dict[str, list[str]]:
        """Relative path -> [kind, content hash | link target | "major:minor" | ""] of everything the build
        sees; directories as "rel/" -> ["d", ""]."""
        entries = self._store.entries if self._entries is None else self._entries
        out = {}
        for rel, e in entries.items():
            if rel != DOCKERFILE_KEY:
                _key, kind, _flags, value = e.split("|", 3)
                out[rel] = [kind, value]
        return out

    def save(self) -> None:
        """Write the stat cache (nothing when nothing changed); later calls write nothing."""
        if not self._saved:
            self._saved = True
            if self._entries is not None:  # None: the memo already holds exactly this scan
                self._store.save(self._entries, self._summary)


def _records(entries: Mapping[str, str]) -> list[tuple[str, str, int]]:
    """(rel, kind, content flags) of every file, link and special file: what the guard judges (a directory is
    judged by what it holds)."""
    out = []
    for rel, e in entries.items():
        if rel != DOCKERFILE_KEY and rel[-1] != "/":
            kind, _value, flags = parse_entry(e)
            out.append((rel, kind, flags))
    return out


def context_digest(context: Path | str, dockerfile: Path | str | None = None,
                   build_args: Mapping[str, str] | None = None, target: str | None = None,
                   platform: str = DEFAULT_PLATFORM, *, cache: bool = True) -> str:
    """The sha256 hex digest of everything a build of `context` depends on (buildcontext/digest.py).

    `dockerfile` defaults to <context>/Dockerfile; a relative path is relative to the working
    directory, as with `docker build -f`. `cache=False` neither reads nor writes the stat cache.
    """
    args = _check_inputs(build_args, target, platform)  # a bad input fails before any file is read
    with ContextScan(context, dockerfile, cache=cache) as scan:
        return scan.digest(args, target, platform)
