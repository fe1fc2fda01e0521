"""The stat cache (buildcontext/memo.py): warm runs read no content, every stat-key field (ctime included)
invalidates an entry, racy files are re-read, caches of another encoding or other guard rules and corrupt ones
are rebuilt, racing writers leave a valid file, stale temporaries are removed, only a regular file is read as the
cache, and the cache lives where XDG says."""
from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from buildcontext import context as ctx
from buildcontext import files, history, memo
from buildcontext.context import ContextScan
from buildcontext.digest import TREE_CHUNK
from buildcontext.memo import StatCache, cache_file_for
from tests.harness import PROJECT_ROOT

HOUR_AGO_NS = time.time_ns() - 3600 * 10**9


_settle = None


@pytest.fixture(autouse=True)
def _short_window(short_racy_window):
    """Every test here runs with a 100 ms racy window; backdate() waits it out (ctime included)."""
    global _settle
    _settle = short_racy_window


@pytest.fixture(autouse=True)
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(root))
    return root


def make_tree(root: Path, n: int = 20, old: bool = True) -> Path:
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    for i in range(n):
        p = root / f"d{i % 4}" / f"f{i}.txt"
        p.parent.mkdir(exist_ok=True)
        p.write_text(f"file {i}\n")
    (root / "big.bin").write_bytes(os.urandom(TREE_CHUNK + 100))
    os.symlink("d0/f0.txt", root / "link")
    if old:
        backdate(root)
    return root


def backdate(root: Path) -> None:
    """Old mtimes; utime moves the ctime to now, so wait until that is out of the (short) racy window too."""
    for p in [root, *root.rglob("*")]:
        os.utime(p, ns=(HOUR_AGO_NS, HOUR_AGO_NS), follow_symlinks=False)
    _settle()


class OpenRecorder:
    """Every path opened through os.open, open() or io.open while installed (all threads)."""

    def __init__(self, monkeypatch):
        self.paths: list[str] = []
        real_os_open, real_open, real_io_open = os.open, builtins.open, io.open

        def os_open(path, *a, **kw):
            self.paths.append(os.fsdecode(path) if not isinstance(path, int) else f"fd:{path}")
            return real_os_open(path, *a, **kw)

        def py_open(file, *a, **kw):
            if not isinstance(file, int):
                self.paths.append(os.fsdecode(file))
            return real_open(file, *a, **kw)

        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(builtins, "open", py_open)
        monkeypatch.setattr(io, "open", py_open)

    def inside(self, root: Path) -> list[str]:
        prefix = str(root) + os.sep
        return sorted(p for p in self.paths if p.startswith(prefix))


def scan(root: Path, build_args=None, target=None, platform="linux/amd64") -> tuple[str, int]:
    """(digest, files read) of one saved scan of `root`, as a run of the program makes it."""
    with ContextScan(root) as s:
        return s.digest(build_args, target, platform), s.reads


def count_writes(monkeypatch) -> list[str]:
    """The directories of every file the engine writes from now on (stat cache and history alike)."""
    writes: list[str] = []
    real_mkstemp = files.tempfile.mkstemp
    monkeypatch.setattr(files.tempfile, "mkstemp",
                        lambda *a, **kw: writes.append(Path(kw["dir"]).name) or real_mkstemp(*a, **kw))
    return writes


def test_warm_run_reads_no_file_content(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ctx")
    first, reads = scan(root)
    assert reads == 23  # 20 small files, big.bin, the Dockerfile as a file and as the Dockerfile
    rec = OpenRecorder(monkeypatch)
    second, reads = scan(root)
    assert (second, reads) == (first, 0)
    assert rec.inside(root) == [], f"a warm run opened {rec.inside(root)}"


def test_changed_file_is_read_again_and_only_it(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ctx")
    before = ctx.context_digest(root)
    (root / "d1" / "f1.txt").write_text("changed\n")
    os.utime(root / "d1" / "f1.txt", ns=(HOUR_AGO_NS + 10**9, HOUR_AGO_NS + 10**9))
    rec = OpenRecorder(monkeypatch)
    after, _ = scan(root)
    assert after != before
    assert rec.inside(root) == [str(root / "d1" / "f1.txt")]
    assert after == ctx.context_digest(root, cache=False)


@pytest.mark.parametrize("change", ["mode", "inode", "size", "mtime", "ctime"])
def test_each_stat_key_field_invalidates_the_entry(tmp_path, change):
    root = make_tree(tmp_path / "ctx")
    target = root / "d2" / "f2.txt"
    ctx.context_digest(root)
    before = os.lstat(target)
    if change == "mode":
        os.chmod(target, 0o600)
    elif change == "inode":
        # same content, same size, same mtime, new inode: a rename-over, as editors save files
        tmp = root / "d2" / "tmp"
        tmp.write_text("file 2\n")
        os.replace(tmp, target)
        os.utime(target, ns=(HOUR_AGO_NS, HOUR_AGO_NS))
    elif change == "size":
        target.write_text("file 2 and more\n")
        os.utime(target, ns=(HOUR_AGO_NS, HOUR_AGO_NS))
    elif change == "mtime":
        os.utime(target, ns=(HOUR_AGO_NS + 5, HOUR_AGO_NS + 5))
    else:
        os.chmod(target, before.st_mode)  # the same mode again: only the ctime moves
        after = os.lstat(target)
        assert (after.st_size, after.st_mtime_ns, after.st_ino, after.st_mode) == (
            before.st_size, before.st_mtime_ns, before.st_ino, before.st_mode)
        assert after.st_ctime_ns != before.st_ctime_ns
    assert scan(root)[1] == 1


def test_same_size_rewrite_with_the_mtime_put_back_changes_the_digest(tmp_path):
    """Only the ctime tells this rewrite apart, and the entry it hits is trusted (old mtime)."""
    root = make_tree(tmp_path / "ctx")
    target = root / "d3" / "f3.txt"
    before, _ = scan(root)
    assert scan(root)[1] == 0, "the entry must be trusted for this test to mean anything"
    st = os.lstat(target)
    with open(target, "r+b") as f:
        f.write(b"FILE")  # same size, in place: same inode
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    now = os.lstat(target)
    assert (now.st_size, now.st_mtime_ns, now.st_ino, now.st_mode) == (st.st_size, st.st_mtime_ns, st.st_ino,
                                                                      st.st_mode)
    after, reads = scan(root)
    assert reads == 1 and after != before
    assert after == ctx.context_digest(root, cache=False)


def test_racy_file_changed_within_the_same_mtime_is_detected(tmp_path, monkeypatch):
    monkeypatch.setattr(memo, "RACY_WINDOW_NS", 2_000_000_000)  # the real window: fresh files stay racy
    root = make_tree(tmp_path / "ctx", old=False)  # files just written: their mtime is "now"
    target = root / "d3" / "f3.txt"
    st = os.stat(target)
    before = ctx.context_digest(root)
    with open(target, "r+b") as f:
        f.write(b"FILE")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = ctx.context_digest(root)
    assert after != before
    assert after == ctx.context_digest(root, cache=False)


def test_racy_entries_become_trusted_once_old(tmp_path, monkeypatch):
    monkeypatch.setattr(memo, "RACY_WINDOW_NS", 2_000_000_000)
    root = make_tree(tmp_path / "ctx", old=False)
    ctx.context_digest(root)
    assert scan(root)[1] == 23, "fresh files must be re-read: their entries were racy"
    backdate(root)  # mtimes now strictly older than any run start minus the window ...
    ctx.context_digest(root)
    assert scan(root)[1] == 23, "... but the ctimes that utime moved are not"
    time.sleep(2.1)
    ctx.context_digest(root)
    assert scan(root)[1] == 0


def test_a_file_whose_mtime_was_set_back_is_trusted_only_once_its_ctime_is_old(tmp_path, monkeypatch):
    """max(mtime, ctime) against the racy window, as git checks the ctime: a file written and given an old
    mtime (touch -d, tar -x, a restored backup) within the window could be rewritten in the same ctime tick
    unseen, so it is not trusted until its ctime is old too (before: the old mtime alone made it trusted)."""
    monkeypatch.setattr(memo, "RACY_WINDOW_NS", 2_000_000_000)
    root = make_tree(tmp_path / "ctx", old=False)
    for p in [root, *root.rglob("*")]:
        os.utime(p, ns=(HOUR_AGO_NS, HOUR_AGO_NS), follow_symlinks=False)
    ctx.context_digest(root)
    st = os.lstat(root / "link")
    assert st.st_mtime_ns == HOUR_AGO_NS and st.st_ctime_ns > time.time_ns() - 2_000_000_000
    assert scan(root)[1] == 23
    assert all(e[0] == "U" for rel, e in StatCache.load(root, root / "Dockerfile").entries.items()
               if not rel.endswith("/")), "no entry (file, link or Dockerfile) may be trusted yet"


def test_cache_location_follows_xdg_and_override(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ctx")
    monkeypatch.delenv("ACR_PUBLISH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ctx.context_digest(root)
    found = list((tmp_path / "xdg" / "acr-publish" / "contexts").iterdir())
    assert len(found) == 1 and found[0] == cache_file_for(root, root / "Dockerfile")
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "override"))
    ctx.context_digest(root)
    assert len(list((tmp_path / "override" / "contexts").iterdir())) == 1


def test_one_cache_file_per_context_and_dockerfile(tmp_path, cache_root):
    a = make_tree(tmp_path / "a")
    b = make_tree(tmp_path / "b")
    other = tmp_path / "other.Dockerfile"
    other.write_text("FROM scratch\n")
    ctx.context_digest(a)
    ctx.context_digest(b)
    ctx.context_digest(a, dockerfile=other)
    names = sorted(p.name for p in (cache_root / "contexts").iterdir())
    assert len(names) == 3, names
    assert not [n for n in names if n.startswith(".tmp-")]
    for p in (cache_root / "contexts").iterdir():
        assert p.stat().st_mode & 0o077 == 0, "cache files hold file names: user-only permissions"


def test_cache_disabled_neither_reads_nor_writes(tmp_path, cache_root):
    root = make_tree(tmp_path / "ctx")
    ctx.context_digest(root, cache=False)
    assert not cache_root.exists()


def _cache_path(root: Path) -> Path:
    return cache_file_for(root, root / "Dockerfile")


def _rewrite_body(path: Path, edit, fix_checksum: bool) -> None:
    header, body = path.read_bytes().split(b"\n", 1)
    body = edit(body)
    *head, checksum = header.split(b" ")
    if fix_checksum:
        checksum = hashlib.sha256(body).hexdigest().encode()
    path.write_bytes(b" ".join([*head, checksum]) + b"\n" + body)


def _flip_hash_of(rel: str):
    """An edit of the memo's body (a summary line, then the entries as JSON) that flips one entry's hash."""
    def edit(body: bytes) -> bytes:
        summary, entries = body.split(b"\n", 1)
        doc = json.loads(entries)
        head, value = doc[rel].rsplit("|", 1)
        doc[rel] = head + "|" + ("0" if value[0] != "0" else "1") + value[1:]
        return summary + b"\n" + json.dumps(doc, separators=(",", ":")).encode()
    return edit


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong-version", "flipped-value",
                                    "not-json", "other-context"])
def test_corrupt_cache_is_ignored_and_rebuilt(tmp_path, damage):
    root = make_tree(tmp_path / "ctx")
    expected = ctx.context_digest(root)
    path = _cache_path(root)
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "wrong-version":
        path.write_bytes(raw.replace(memo.versions().split(b" ")[0], b"0" * 16, 1))
    elif damage == "flipped-value":
        _rewrite_body(path, _flip_hash_of("d0/f0.txt"), fix_checksum=False)
    elif damage == "not-json":
        _rewrite_body(path, lambda b: b"{not json", fix_checksum=True)
    else:
        # a valid cache of another context (a hash collision of the file name, or a copied cache dir)
        _rewrite_body(path, lambda b: b.replace(os.fsencode(str(root)), b"/elsewhere"), fix_checksum=True)
    assert StatCache.load(root, root / "Dockerfile").problem is not None
    assert ctx.context_digest(root) == expected
    rebuilt = StatCache.load(root, root / "Dockerfile")
    assert rebuilt.problem is None and "d0/f0.txt" in rebuilt.entries


def test_a_well_formed_cache_is_really_trusted(tmp_path):
    """The converse of the checksum test: a doctored value WITH a valid checksum is believed, which shows warm
    runs take hashes from the cache (and why the checksum and versions guard them): once a new file makes the
    run encode every record again, the doctored hash is in the digest."""
    root = make_tree(tmp_path / "ctx")
    truth = ctx.context_digest(root)
    _rewrite_body(_cache_path(root), _flip_hash_of("d0/f0.txt"), fix_checksum=True)
    assert ctx.context_digest(root) == truth  # the memo's summary still vouches for the unchanged walk
    (root / "new.txt").write_text("new\n")
    assert ctx.context_digest(root) != ctx.context_digest(root, cache=False)


@pytest.mark.parametrize("which", ["digest encoding", "guard rules"])
def test_a_cache_of_another_encoding_or_other_guard_rules_is_not_trusted(tmp_path, monkeypatch, which):
    """The header carries the version constants: a doctored entry that a matching header would make the run
    believe (test above) is ignored once the encoding's or the guard rules' version differs (what makes those
    constants move with the code: tests/unit/buildcontext/test_cache_versions.py)."""
    root = make_tree(tmp_path / "ctx")
    truth = ctx.context_digest(root)
    _rewrite_body(_cache_path(root), _flip_hash_of("d0/f0.txt"), fix_checksum=True)
    if which == "digest encoding":
        monkeypatch.setattr(memo, "ENCODING_VERSION", "another-encoding")
    else:
        monkeypatch.setattr(memo.sensitive, "RULES_VERSION", "other-rules")
    problem = StatCache.load(root, root / "Dockerfile").problem
    assert problem is not None and which in problem, problem
    assert scan(root) == (truth, 23)


def test_unwritable_cache_warns_and_still_digests(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ctx")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(blocker / "cache"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ctx.context_digest(root)
    assert got == ctx.context_digest(root, cache=False)
    assert any("ACR_PUBLISH_CACHE_DIR" in str(w.message) for w in caught)


_RACER = """
import sys
from buildcontext import context as ctx
root = sys.argv[1]
digests = {ctx.context_digest(root, build_args={"RUN": str(i % 2)}) for i in range(int(sys.argv[2]))}
print(len(digests))
"""


def test_two_processes_racing_leave_a_valid_cache(tmp_path, cache_root):
    # Fresh files stay racy, so every run of both processes rewrites the cache file: the replace of one
    # races the read of the other.
    root = make_tree(tmp_path / "ctx", n=100, old=False)
    env = {**os.environ, "ACR_PUBLISH_CACHE_DIR": str(cache_root), "PYTHONPATH": str(Path.cwd())}
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(root), "8"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert out.strip() == "2"
    loaded = StatCache.load(root, root / "Dockerfile")
    # 100 small files, big.bin, the link, the Dockerfile as a file and as the Dockerfile; d0/ to d3/
    assert loaded.problem is None and len(loaded.entries) == 100 + 3 + 1 + 4
    assert not [p for p in (cache_root / "contexts").iterdir() if p.name.startswith(".tmp-")]
    assert ctx.context_digest(root) == ctx.context_digest(root, cache=False)


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path, cache_root):
    """A writer killed between mkstemp and replace leaves a `.tmp-*` file; the next write removes it once it is
    older than any live writer could be, and leaves a young one (another run's, mid-write) alone."""
    root = make_tree(tmp_path / "ctx")
    ctx.context_digest(root)
    contexts = cache_root / "contexts"
    stale, live = contexts / ".tmp-killed.json", contexts / ".tmp-writing.json"
    stale.write_bytes(os.urandom(65536))
    live.write_bytes(b"{")
    old = time.time() - files.STALE_TEMPORARY_SECONDS - 60
    os.utime(stale, (old, old))
    (root / "d0" / "f0.txt").write_text("changed\n")  # so the next run writes its cache
    ctx.context_digest(root)
    assert not stale.exists() and live.exists()


def test_a_stale_temporary_is_removed_by_a_run_that_writes_nothing(tmp_path, cache_root, monkeypatch):
    """A kill -9 mid-write leaves a `.tmp-*` file; an unchanged later run writes nothing, so a sweep on write
    alone would keep it forever. The first read of the cache directory in a process removes it (aged a day),
    and keeps a young one (another run's, mid-write)."""
    root = make_tree(tmp_path / "ctx")
    ctx.context_digest(root)
    ctx.context_digest(root)  # the memo now holds exactly this tree: the next run writes nothing
    contexts = cache_root / "contexts"
    stale, live = contexts / ".tmp-killed.json", contexts / ".tmp-writing.json"
    stale.write_bytes(os.urandom(65536))
    live.write_bytes(b"{")
    day_ago = time.time() - 86400
    os.utime(stale, (day_ago, day_ago))
    monkeypatch.setattr(files, "_swept", set())  # as in a new process
    writes = count_writes(monkeypatch)
    assert scan(root)[1] == 0
    assert writes == [], "the run was meant to write nothing"
    assert not stale.exists() and live.exists()


def _bounded_subprocess(code: str, env: dict, seconds: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              timeout=seconds, cwd=PROJECT_ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish within {seconds} s: it hangs")


def test_a_fifo_in_place_of_the_cache_file_neither_hangs_nor_is_read(tmp_path, cache_root):
    root = make_tree(tmp_path / "ctx")
    path = _cache_path(root)
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    env = {**os.environ, "ACR_PUBLISH_CACHE_DIR": str(cache_root)}
    proc = _bounded_subprocess(f"from buildcontext import context_digest; print(context_digest({str(root)!r}))", env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ctx.context_digest(root, cache=False)
    assert path.is_file(), "the save replaced the fifo with a real cache file"
    assert StatCache.load(root, root / "Dockerfile").problem is None


@pytest.mark.parametrize("kind", ["symlink", "directory"])
def test_a_cache_path_that_is_no_regular_file_is_reported_not_followed(tmp_path, kind):
    root = make_tree(tmp_path / "ctx")
    path = _cache_path(root)
    path.parent.mkdir(parents=True)
    if kind == "symlink":
        secret = tmp_path / "elsewhere.json"
        secret.write_text("{}")
        os.symlink(secret, path)
    else:
        path.mkdir()
    problem = StatCache.load(root, root / "Dockerfile").problem
    assert problem is not None and ("regular file" in problem or "unreadable" in problem), problem


def test_build_arg_values_are_not_stored(tmp_path, cache_root):
    root = make_tree(tmp_path / "ctx")
    ctx.context_digest(root, build_args={"TOKEN": "s3cr3t-value-xyz"})
    assert b"s3cr3t-value-xyz" not in _cache_path(root).read_bytes()


# ---------------------------------------------------------------- images sharing one context

WEB = {"build_args": {"APP_ENV": "local"}, "target": "web"}
WORKER = {"build_args": {"APP_ENV": "local"}, "target": "worker"}


def test_warm_scans_of_two_images_write_nothing(tmp_path, cache_root, monkeypatch):
    root = make_tree(tmp_path / "ctx")
    for inputs in (WEB, WORKER):
        ctx.context_digest(root, **inputs)
    writes = count_writes(monkeypatch)
    for inputs in (WEB, WORKER, WEB, WORKER, {"build_args": {"APP_ENV": "prod"}, "target": "web"}):
        ctx.context_digest(root, **inputs)
    assert writes == [], "the memo depends on the files only, never on an image's build inputs"


def test_directories_are_entries_without_a_stat_key(tmp_path, cache_root, monkeypatch):
    """A directory is cached by presence only: touching it or changing its mode writes nothing and
    reads nothing; adding or removing one is seen by a warm run."""
    root = make_tree(tmp_path / "ctx")
    first = ctx.context_digest(root)
    loaded = StatCache.load(root, root / "Dockerfile")
    assert {k: v for k, v in loaded.entries.items() if k.endswith("/")} == {
        f"d{i}/": memo.DIR_ENTRY for i in range(4)}
    assert memo.parse_entry(memo.DIR_ENTRY) == ("d", "", 0)
    writes = count_writes(monkeypatch)
    os.utime(root / "d1", ns=(HOUR_AGO_NS + 7, HOUR_AGO_NS + 7))
    os.chmod(root / "d2", 0o700)
    assert (*scan(root), writes) == (first, 0, [])
    (root / "d1" / "empty").mkdir()
    value, reads = scan(root)
    assert value != first and reads == 0 and writes == ["contexts"]
    assert StatCache.load(root, root / "Dockerfile").entries["d1/empty/"] == memo.DIR_ENTRY
    assert value == ctx.context_digest(root, cache=False)
    (root / "d1" / "empty").rmdir()
    assert ctx.context_digest(root) == first


def _settings(project: Path, images: list[tuple[str, str, dict]], stack: str = "test"):
    from components.config.schema import ImageSettings, RegistrySettings, Settings

    return Settings(
        stack=stack, region=None, registry=RegistrySettings(edition="local", namespace=None, server="localhost:5000"),
        images=tuple(ImageSettings(name=n, context=c, dockerfile=f"{c}/Dockerfile", **kw) for n, c, kw in images),
        protect=False, retain_on_delete=False, preflight=False, project_root=project)


SHARED_STACK = [("web", "app", WEB), ("worker", "app", WORKER), ("other", "other", {})]


def test_plan_builds_walks_a_shared_context_once(tmp_path, cache_root, monkeypatch):
    """web and worker share `app`: one walk, one cache load and one cache write for it, and the same tags
    each image's own scan gives; each image is recorded in the history once; a warm plan writes nothing."""
    from components import image as image_module

    project = tmp_path / "project"
    make_tree(project / "app")
    make_tree(project / "other", n=3)
    settings = _settings(project, SHARED_STACK)
    walks, loads = [], []
    real_walk, real_load = ctx.walk_context, StatCache.load.__func__
    monkeypatch.setattr(ctx, "walk_context", lambda context, *a, **kw: walks.append(Path(context).name)
                        or real_walk(context, *a, **kw))
    monkeypatch.setattr(StatCache, "load", classmethod(lambda cls, context, df: loads.append(Path(context).name)
                                                       or real_load(cls, context, df)))
    writes = count_writes(monkeypatch)
    plans = image_module.plan_builds(settings)
    assert sorted(walks) == ["app", "other"] and sorted(loads) == ["app", "other"]
    assert sorted(writes) == ["contexts", "contexts", "history", "history", "history"]

    separate = {name: ctx.context_digest(project / c, project / c / "Dockerfile", cache=False, **kw)
                for name, c, kw in SHARED_STACK}
    assert {n: p.tag for n, p in plans.items()} == {n: ctx.content_tag(d) for n, d in separate.items()}
    assert plans["web"].tag != plans["worker"].tag

    walks.clear()
    writes.clear()
    assert image_module.plan_builds(settings) == plans  # warm: one walk per context, nothing written
    assert sorted(walks) == ["app", "other"] and writes == []


def test_plan_builds_names_every_image_of_a_shared_context_it_refuses(tmp_path, cache_root):
    from components import image as image_module

    project = tmp_path / "project"
    make_tree(project / "app")
    make_tree(project / "other", n=3)
    (project / "app" / ".env").write_text("TOKEN=x\n")
    with pytest.raises(image_module.BuildPlanError) as err:
        image_module.plan_builds(_settings(project, SHARED_STACK))
    lines = [line for line in str(err.value).splitlines() if line.startswith("acr-publish:images[")]
    assert [line.split(":")[1].split(" ")[0] for line in lines] == ["images[0]", "images[1]"]
    assert "(web)" in lines[0] and "(worker)" in lines[1] and ".env" in str(err.value)
    # A refused image is not planned, so the history records only the one that was.
    assert sorted(p.name for p in (cache_root / "history").iterdir()) == [
        history.HistoryKey(project, "test", "other").path().name]


def test_a_warm_scan_in_another_listing_order_reads_nothing_and_agrees(tmp_path, monkeypatch):
    """The fingerprint covers the walk order: another order misses it, and the entries still vouch for every
    file (nothing read, the same digest); the memo then records the new order's fingerprint."""
    root = make_tree(tmp_path / "ctx")
    first, _ = scan(root)
    fast = StatCache.load(root, root / "Dockerfile").summary.fingerprint
    assert fast is not None
    real_walk = ctx.walk_context
    monkeypatch.setattr(ctx, "walk_context", lambda *a, **kw: reversed(list(real_walk(*a, **kw))))
    rec = OpenRecorder(monkeypatch)
    assert scan(root) == (first, 0)
    assert rec.inside(root) == []
    assert StatCache.load(root, root / "Dockerfile").summary.fingerprint not in (None, fast)


def test_untrusted_entries_leave_no_fingerprint(tmp_path):
    root = make_tree(tmp_path / "ctx", old=False)  # racy: nothing may be vouched for by a fingerprint
    ctx.context_digest(root)
    assert StatCache.load(root, root / "Dockerfile").summary.fingerprint is None
