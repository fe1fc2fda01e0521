"""The stat cache: warm runs read no content, racy and changed files are re-read, corrupt caches are
rebuilt, racing writers leave a valid file, and the cache lives where XDG says."""
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
from buildcontext import stat_cache
from buildcontext.stat_cache import StatCache, cache_file_for

HOUR_AGO_NS = time.time_ns() - 3600 * 10**9


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
    (root / "big.bin").write_bytes(os.urandom(ctx.TREE_CHUNK + 100))
    os.symlink("d0/f0.txt", root / "link")
    if old:
        backdate(root)
    return root


def backdate(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        os.utime(p, ns=(HOUR_AGO_NS, HOUR_AGO_NS), follow_symlinks=False)


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


def test_warm_run_reads_no_file_content(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ctx")
    first = ctx._run(root, None, None, None, "linux/amd64", True)
    assert first.reads == 23  # 20 small files, big.bin, the Dockerfile as a file and as the Dockerfile
    rec = OpenRecorder(monkeypatch)
    second = ctx._run(root, None, None, None, "linux/amd64", True)
    assert second.digest == first.digest
    assert second.reads == 0
    assert rec.inside(root) == [], f"a warm run opened {rec.inside(root)}"


def test_changed_file_is_read_again_and_only_it(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ctx")
    before = ctx.context_digest(root)
    (root / "d1" / "f1.txt").write_text("changed\n")
    os.utime(root / "d1" / "f1.txt", ns=(HOUR_AGO_NS + 10**9, HOUR_AGO_NS + 10**9))
    rec = OpenRecorder(monkeypatch)
    run = ctx._run(root, None, None, None, "linux/amd64", True)
    assert run.digest != before
    assert rec.inside(root) == [str(root / "d1" / "f1.txt")]
    assert run.digest == ctx.context_digest(root, cache=False)


@pytest.mark.parametrize("change", ["mode", "inode", "size", "mtime"])
def test_each_stat_key_field_invalidates_the_entry(tmp_path, change):
    root = make_tree(tmp_path / "ctx")
    target = root / "d2" / "f2.txt"
    ctx.context_digest(root)
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
    else:
        os.utime(target, ns=(HOUR_AGO_NS + 5, HOUR_AGO_NS + 5))
    run = ctx._run(root, None, None, None, "linux/amd64", True)
    assert run.reads == 1


def test_racy_file_changed_within_the_same_mtime_is_detected(tmp_path):
    root = make_tree(tmp_path / "ctx", old=False)  # files just written: their mtime is "now"
    target = root / "d3" / "f3.txt"
    st = os.stat(target)
    before = ctx.context_digest(root)
    # Same size, same mtime_ns, same inode: only the content differs, which no stat field shows.
    with open(target, "r+b") as f:
        f.write(b"FILE")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    after_st = os.stat(target)
    assert (after_st.st_size, after_st.st_mtime_ns, after_st.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    after = ctx.context_digest(root)
    assert after != before
    assert after == ctx.context_digest(root, cache=False)


def test_racy_entries_become_trusted_once_old(tmp_path):
    root = make_tree(tmp_path / "ctx", old=False)
    ctx.context_digest(root)
    again = ctx._run(root, None, None, None, "linux/amd64", True)
    assert again.reads == 23, "fresh files must be re-read: their entries were racy"
    backdate(root)  # now strictly older than any run start minus the window
    ctx.context_digest(root)
    assert ctx._run(root, None, None, None, "linux/amd64", True).reads == 0


def test_cache_location_follows_xdg_and_override(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "ctx")
    monkeypatch.delenv("ACR_PUBLISH_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    ctx.context_digest(root)
    files = list((tmp_path / "xdg" / "acr-publish" / "contexts").iterdir())
    assert len(files) == 1 and files[0] == cache_file_for(root, root / "Dockerfile")
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
    magic, version, checksum = header.split(b" ")
    if fix_checksum:
        checksum = hashlib.sha256(body).hexdigest().encode()
    path.write_bytes(b" ".join([magic, version, checksum]) + b"\n" + body)


def _flip_hash_of(rel: str):
    def edit(body: bytes) -> bytes:
        doc = json.loads(body)
        head, value = doc["entries"][rel].rsplit("|", 1)
        doc["entries"][rel] = head + "|" + ("0" if value[0] != "0" else "1") + value[1:]
        return json.dumps(doc, separators=(",", ":")).encode()
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
        path.write_bytes(raw.replace(b" %d " % stat_cache.FORMAT_VERSION, b" 999 ", 1))
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
    """The converse of the checksum test: a doctored value WITH a valid checksum is believed, which
    shows warm runs take hashes from the cache (and why the checksum guards them). A new build arg
    makes the run re-encode every file from the cached values."""
    root = make_tree(tmp_path / "ctx")
    ctx.context_digest(root)
    _rewrite_body(_cache_path(root), _flip_hash_of("d0/f0.txt"), fix_checksum=True)
    assert ctx.context_digest(root, build_args={"X": "1"}) != ctx.context_digest(root, build_args={"X": "1"}, cache=False)


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
    # Fresh files stay racy, and the alternating build arg changes the digest, so every run of both
    # processes rewrites the cache file: the replace of one races the read of the other.
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


def _prior(root: Path, build_args: dict[str, str] | None = None) -> stat_cache.Prior:
    """The history of context_digest(root, build_args=...)'s build inputs, as the cache holds it."""
    key = ctx._history_key(root / "Dockerfile", ctx._options_encoding(dict(build_args or {}), None, "linux/amd64"))
    return StatCache.load(root, root / "Dockerfile").prior(key)


def test_previous_manifest_is_kept_for_explain(tmp_path):
    root = make_tree(tmp_path / "ctx")
    first = ctx.context_digest(root)
    ctx.context_digest(root)  # same digest: previous does not move
    assert _prior(root).previous is None
    (root / "d0" / "f0.txt").write_text("new\n")
    ctx.context_digest(root)
    prior = _prior(root)
    prev = prior.previous
    assert prev["digest"] == first
    assert prior.manifest(prev)["d0/f0.txt"][1] == hashlib.sha256(b"file 0\n").hexdigest()
    assert prior.manifest(prev)["link"] == ["l", "d0/f0.txt"]


def test_build_arg_values_are_not_stored(tmp_path, cache_root):
    root = make_tree(tmp_path / "ctx")
    ctx.context_digest(root, build_args={"TOKEN": "s3cr3t-value-xyz"})
    assert b"s3cr3t-value-xyz" not in _cache_path(root).read_bytes()


def test_find_sensitive_refreshes_entries_but_not_the_digest_history(tmp_path):
    root = make_tree(tmp_path / "ctx")
    d = ctx.context_digest(root, build_args={"A": "1"})
    (root / "d0" / "f0.txt").write_text("changed\n")
    os.utime(root / "d0" / "f0.txt", ns=(HOUR_AGO_NS + 10**9, HOUR_AGO_NS + 10**9))
    ctx.find_sensitive(root)
    loaded = StatCache.load(root, root / "Dockerfile")
    prior = _prior(root, {"A": "1"})
    assert len(loaded.runs) == 1 and prior.last["digest"] == d and prior.previous is None
    assert stat_cache.parse_entry(loaded.entries["d0/f0.txt"])[1] == hashlib.sha256(b"changed\n").hexdigest()


# ---------------------------------------------------------------- images sharing one context

WEB = {"build_args": {"APP_ENV": "local"}, "target": "web"}
WORKER = {"build_args": {"APP_ENV": "local"}, "target": "worker"}


def _explain(root: Path, inputs: dict) -> str:
    run = ctx._run(root, None, inputs["build_args"], inputs["target"], "linux/amd64", True)
    return "\n".join(ctx.explain_lines(run))


def test_images_sharing_a_context_each_keep_their_own_history(tmp_path, cache_root):
    """The shipped stacks build `web` and `worker` from one context with different targets: neither
    image's explain may report the other's inputs as a change, and warm runs of both write nothing."""
    root = make_tree(tmp_path / "ctx")
    for _ in range(2):
        ctx.check_context(root, **WEB)
        ctx.check_context(root, **WORKER)
    path = _cache_path(root)
    before = path.stat()
    for _ in range(2):
        for inputs in (WEB, WORKER):
            out = _explain(root, inputs)
            assert "unchanged since the last run; the cache holds no earlier digest" in out, out
            assert "target" not in out.split("files")[-1], out
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), \
        "a warm run of an unchanged image rewrote the stat cache"

    # A change shows up in each image's own history, against that image's own earlier manifest.
    (root / "d0" / "f0.txt").write_text("new\n")
    ctx.check_context(root, **WEB)
    ctx.check_context(root, **WORKER)
    for inputs in (WEB, WORKER):
        out = _explain(root, inputs)
        assert "unchanged since the last run; changed since the digest before it" in out, out
        assert "  changed  d0/f0.txt (content)" in out, out
        assert "other build inputs" not in out and "target" not in out.split("files")[-1], out

    # New inputs for one image are compared with that image's closest past inputs, not the other image's.
    out = _explain(root, {"build_args": {"APP_ENV": "prod"}, "target": "web"})
    assert "first run with these build inputs; changed since the last run of this context with other" in out, out
    assert "  build arg APP_ENV changed" in out and "target" not in out.split("files")[-1], out


def test_warm_runs_of_two_images_write_the_cache_no_more(tmp_path, cache_root, monkeypatch):
    root = make_tree(tmp_path / "ctx")
    for inputs in (WEB, WORKER, WEB, WORKER):
        ctx.context_digest(root, **inputs)
    writes = []
    real_mkstemp = stat_cache.tempfile.mkstemp
    monkeypatch.setattr(stat_cache.tempfile, "mkstemp", lambda *a, **kw: writes.append(1) or real_mkstemp(*a, **kw))
    for inputs in (WEB, WORKER, WEB, WORKER):
        ctx.context_digest(root, **inputs)
    assert writes == []
    ctx.context_digest(root, build_args={"APP_ENV": "prod"}, target="web")  # new inputs: recorded
    assert writes == [1]


def test_directories_are_entries_without_a_stat_key(tmp_path, cache_root, monkeypatch):
    """A directory is cached by presence only: touching it or changing its mode writes nothing and
    reads nothing; adding or removing one is seen by a warm run."""
    root = make_tree(tmp_path / "ctx")
    first = ctx.context_digest(root)
    loaded = StatCache.load(root, root / "Dockerfile")
    assert {k: v for k, v in loaded.entries.items() if k.endswith("/")} == {
        f"d{i}/": stat_cache.DIR_ENTRY for i in range(4)}
    assert stat_cache.parse_entry(stat_cache.DIR_ENTRY) == ("d", "", 0)
    writes = []
    real_mkstemp = stat_cache.tempfile.mkstemp
    monkeypatch.setattr(stat_cache.tempfile, "mkstemp", lambda *a, **kw: writes.append(1) or real_mkstemp(*a, **kw))
    os.utime(root / "d1", ns=(HOUR_AGO_NS + 7, HOUR_AGO_NS + 7))
    os.chmod(root / "d2", 0o700)
    run = ctx._run(root, None, None, None, "linux/amd64", True)
    assert (run.digest, run.reads, writes) == (first, 0, [])
    (root / "d1" / "empty").mkdir()
    run = ctx._run(root, None, None, None, "linux/amd64", True)
    assert run.digest != first and run.reads == 0 and writes == [1]
    assert StatCache.load(root, root / "Dockerfile").entries["d1/empty/"] == stat_cache.DIR_ENTRY
    assert run.digest == ctx.context_digest(root, cache=False)
    (root / "d1" / "empty").rmdir()
    assert ctx.context_digest(root) == first


def _settings(project: Path, images: list[tuple[str, str, dict]]):
    from components.settings import ImageSettings, RegistrySettings, Settings

    return Settings(
        stack="test", region=None, registry=RegistrySettings(edition="local", namespace=None, server="localhost:5000"),
        images=tuple(ImageSettings(name=n, context=c, dockerfile=f"{c}/Dockerfile", **kw) for n, c, kw in images),
        protect=False, retain_on_delete=False, preflight=False, project_root=project)


SHARED_STACK = [("web", "app", WEB), ("worker", "app", WORKER), ("other", "other", {})]


def test_plan_builds_walks_a_shared_context_once(tmp_path, cache_root, monkeypatch):
    """web and worker share `app`: one walk, one cache load and one cache write for it, the same tags
    check_context gives each image on its own, and each image's own history recorded."""
    from components import image as image_module

    project = tmp_path / "project"
    make_tree(project / "app")
    make_tree(project / "other", n=3)
    settings = _settings(project, SHARED_STACK)
    walks, loads, writes = [], [], []
    real_walk, real_load, real_mkstemp = ctx.walk_context, StatCache.load.__func__, stat_cache.tempfile.mkstemp
    monkeypatch.setattr(ctx, "walk_context", lambda context, *a, **kw: walks.append(Path(context).name)
                        or real_walk(context, *a, **kw))
    monkeypatch.setattr(StatCache, "load", classmethod(lambda cls, context, df: loads.append(Path(context).name)
                                                       or real_load(cls, context, df)))
    monkeypatch.setattr(stat_cache.tempfile, "mkstemp", lambda *a, **kw: writes.append(1) or real_mkstemp(*a, **kw))
    plans = image_module.plan_builds(settings)
    assert sorted(walks) == ["app", "other"] and sorted(loads) == ["app", "other"] and len(writes) == 2

    separate = {name: ctx.check_context(project / c, project / c / "Dockerfile", cache=False, **kw)
                for name, c, kw in SHARED_STACK}
    assert {n: (p.tag, p.file_count, p.total_bytes) for n, p in plans.items()} == {
        n: (r.tag, r.file_count, r.total_bytes) for n, r in separate.items()}
    assert plans["web"].tag != plans["worker"].tag

    # Each image sharing the context got its own history (explain compares each with its own past).
    for inputs in (WEB, WORKER):
        out = _explain(project / "app", inputs)
        assert "unchanged since the last run; the cache holds no earlier digest" in out, out
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
    # Refused images still have their state recorded, as a check_context of each would.
    assert len(StatCache.load(project / "app", project / "app" / "Dockerfile").runs) == 2
