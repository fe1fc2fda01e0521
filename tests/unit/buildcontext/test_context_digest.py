"""context_digest and content_tag: every input the digest must depend on, and every one it must not.

Each property is shown both ways: a change that must move the digest moves it, and a change that
must not leaves it alone.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from buildcontext import context as ctx
from buildcontext import hashing
from buildcontext.context import content_tag, context_digest
from buildcontext.digest import TREE_CHUNK
from buildcontext.dockerignore import context_files
from tests.harness import PROJECT_ROOT


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))


def make_tree(root: Path, spec: dict[str, object]) -> Path:
    """Create files (str/bytes content) and symlinks (("link", target)) under root; a Dockerfile is added."""
    root.mkdir(parents=True, exist_ok=True)
    spec = {"Dockerfile": "FROM scratch\nCOPY . /ctx/\n", **spec}
    for rel, what in spec.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(what, tuple) and what[0] == "link":
            os.symlink(what[1], p)
        else:
            p.write_bytes(what.encode() if isinstance(what, str) else what)
    return root


def digest(root: Path, **kw) -> str:
    # Both the cached and the uncached path must agree on every digest these tests compute.
    uncached = context_digest(root, cache=False, **kw)
    assert context_digest(root, **kw) == uncached, "cached and uncached digests differ"
    return uncached


BASE = {"app.py": "print('hi')\n", "lib/util.py": "X = 1\n", "data/blob.bin": bytes(range(256)) * 4}


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "ctx", BASE)


# ---------------------------------------------------------------- what must change the digest

def test_relative_path_changes_digest(tree):
    before = digest(tree)
    (tree / "app.py").rename(tree / "main.py")
    assert digest(tree) != before
    (tree / "main.py").rename(tree / "app.py")
    assert digest(tree) == before


def test_moving_a_file_between_directories_changes_digest(tree):
    before = digest(tree)
    (tree / "lib" / "util.py").rename(tree / "util.py")
    assert digest(tree) != before


def test_content_changes_digest_and_identical_rewrite_does_not(tree):
    before = digest(tree)
    (tree / "app.py").write_text("print('hi')\n")  # same bytes, new mtime
    assert digest(tree) == before
    (tree / "app.py").write_text("print('ho')\n")
    assert digest(tree) != before


def test_adding_and_removing_a_file_changes_digest(tree):
    before = digest(tree)
    (tree / "new.txt").write_text("")
    with_empty = digest(tree)
    assert with_empty != before
    (tree / "new.txt").unlink()
    assert digest(tree) == before


def test_adding_an_empty_directory_changes_digest(tree):
    """`COPY . /x/` creates empty directories too, so the image differs and so must the tag."""
    before = digest(tree)
    (tree / "uploads").mkdir()
    with_dir = digest(tree)
    assert with_dir != before
    (tree / "lib" / "empty").mkdir()
    assert digest(tree) not in (before, with_dir)
    (tree / "lib" / "empty").rmdir()
    assert digest(tree) == with_dir
    (tree / "uploads").rmdir()
    assert digest(tree) == before


def test_directory_and_file_of_the_same_name_differ(tmp_path):
    # an empty file "d" and an empty directory "d" both name one path with no content
    as_file = make_tree(tmp_path / "f", {"d": ""})
    as_dir = make_tree(tmp_path / "d", {})
    (as_dir / "d").mkdir()
    assert digest(as_file) != digest(as_dir)


def test_moving_a_file_into_a_new_directory_is_not_the_same_as_renaming_it(tmp_path):
    # "a/b" as the file and "a" as its directory, against the file "a/b" in an existing "a" next to an empty "c"
    one = make_tree(tmp_path / "one", {"a/b": "x", "c/d": "y"})
    two = make_tree(tmp_path / "two", {"a/b": "x", "c/d": "y"})
    (two / "e").mkdir()
    assert digest(one) != digest(two)


def test_empty_directory_excluded_by_dockerignore_does_not_change_digest(tree):
    (tree / ".dockerignore").write_text("uploads\ncache/\n")
    before = digest(tree)
    (tree / "uploads").mkdir()
    (tree / "cache" / "deep").mkdir(parents=True)
    assert digest(tree) == before
    (tree / "kept").mkdir()  # ...while one the patterns leave does
    assert digest(tree) != before


def test_excluded_directory_counts_once_an_exception_reincludes_something_inside(tree):
    (tree / ".dockerignore").write_text("uploads\n!uploads/keep\n")
    (tree / "uploads").mkdir()
    before = digest(tree)
    (tree / "uploads" / "keep").mkdir()  # BuildKit now sends uploads/ as the parent of uploads/keep/
    assert digest(tree) != before


def test_file_type_changes_digest(tmp_path):
    # a file "a" holding "b" and a symlink "a" pointing at "b" carry the same bytes: the type must tell them apart
    as_file = make_tree(tmp_path / "f", {"a": "b"})
    as_link = make_tree(tmp_path / "l", {"a": ("link", "b")})
    assert digest(as_file) != digest(as_link)


def test_executable_bit_changes_digest_other_mode_bits_do_not(tree):
    script = tree / "app.py"
    os.chmod(script, 0o644)
    before = digest(tree)
    for mode in (0o664, 0o640, 0o600, 0o646, 0o654, 0o645, 0o444):
        os.chmod(script, mode)
        assert digest(tree) == before, f"mode {mode:o} (no user x) must not change the digest"
    os.chmod(script, 0o744)
    executable = digest(tree)
    assert executable != before
    for mode in (0o755, 0o700, 0o775, 0o777, 0o711):
        os.chmod(script, mode)
        assert digest(tree) == executable, f"mode {mode:o} (user x) must give the executable digest"


def test_symlink_target_changes_digest_but_target_content_does_not(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("one")
    tree = make_tree(tmp_path / "ctx", {"link": ("link", str(outside)), "rel": ("link", "lib/x")})
    before = digest(tree)
    outside.write_text("two, longer")  # the link is sent as a link: what it points at is not in the context
    assert digest(tree) == before
    (tree / "rel").unlink()
    os.symlink("lib/y", tree / "rel")
    assert digest(tree) != before


def test_symlink_to_directory_is_one_entry_not_followed(tmp_path):
    tree = make_tree(tmp_path / "ctx", {"real/a.txt": "a", "alias": ("link", "real")})
    before = digest(tree)
    (tree / "real" / "a.txt").write_text("changed")
    after = digest(tree)
    assert after != before  # through real/a.txt, once
    assert context_files(tree) == ["Dockerfile", "alias", "real/a.txt"]


def test_dockerfile_content_changes_digest(tree):
    before = digest(tree)
    (tree / "Dockerfile").write_text("FROM scratch\nCOPY . /other/\n")
    assert digest(tree) != before


def test_dockerfile_outside_context_content_counts_path_does_not(tmp_path):
    tree = make_tree(tmp_path / "ctx", BASE)
    (tree / "Dockerfile").unlink()
    a = tmp_path / "a" / "build.Dockerfile"
    b = tmp_path / "b" / "other.Dockerfile"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text("FROM scratch\nCOPY app.py /\n")
    assert digest(tree, dockerfile=a) == digest(tree, dockerfile=b)
    b.write_text("FROM scratch\nCOPY lib /lib\n")
    assert digest(tree, dockerfile=a) != digest(tree, dockerfile=b)


def test_missing_dockerfile_is_a_clear_error(tmp_path):
    tree = make_tree(tmp_path / "ctx", BASE)
    (tree / "Dockerfile").unlink()
    with pytest.raises(ValueError, match=r"Dockerfile .*does not exist.*dockerfile setting"):
        context_digest(tree)


def test_build_args_values_and_names_change_digest(tree):
    base = digest(tree, build_args={"A": "1"})
    assert digest(tree, build_args={"A": "2"}) != base
    assert digest(tree, build_args={"B": "1"}) != base
    assert digest(tree, build_args={"A": "1", "B": ""}) != base
    assert digest(tree, build_args={"A": "1"}) == base
    assert digest(tree, build_args={}) == digest(tree, build_args=None) == digest(tree)


def test_encoding_is_unambiguous_across_field_boundaries(tree):
    # without length prefixes these pairs would serialize to the same bytes
    assert digest(tree, build_args={"a": "b=c"}) != digest(tree, build_args={"a=b": "c"})
    assert digest(tree, build_args={"ab": "c"}) != digest(tree, build_args={"a": "bc"})
    assert digest(tree, build_args={"a": "", "b": ""}) != digest(tree, build_args={"a": "b"})


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), min_size=2, max_size=6), st.randoms())
def test_build_arg_order_does_not_matter(tmp_path_factory, args, rnd):
    tree = make_tree(tmp_path_factory.mktemp("args") / "ctx", {"a": "a"})
    items = list(args.items())
    rnd.shuffle(items)
    assert context_digest(tree, build_args=dict(items), cache=False) == \
        context_digest(tree, build_args=dict(sorted(args.items())), cache=False)


_names = st.text(alphabet="abcxyz_.-é 01", min_size=1, max_size=6).filter(lambda n: n not in (".", ".."))
_trees = st.dictionaries(st.lists(_names, min_size=1, max_size=3).map("/".join), st.binary(max_size=40),
                         min_size=1, max_size=8).filter(
    # no path may be both a file and a directory prefix of another file
    lambda t: not any(b.startswith(a + "/") for a in t for b in t)
    and not any(k == "Dockerfile" or k.startswith("Dockerfile/") for k in t))


@settings(max_examples=15, deadline=None)
@given(_trees, st.randoms(), st.data())
def test_random_trees_digest_by_content_not_by_history(tmp_path_factory, files, rnd, data):
    base = tmp_path_factory.mktemp("prop")
    items = list(files.items())
    a = make_tree(base / "a", dict(items))
    rnd.shuffle(items)
    b = make_tree(base / "b" / "deeper", dict(items))  # other creation order, other absolute path
    for p in b.rglob("*"):
        os.utime(p, ns=(rnd.randrange(10**18), rnd.randrange(10**18)), follow_symlinks=False)
    assert context_digest(a, cache=False) == context_digest(b, cache=False)
    # ...and any one-byte change (or growth) of any one file moves it
    rel = data.draw(st.sampled_from(sorted(files)))
    content = bytearray(files[rel])
    if content:
        content[data.draw(st.integers(0, len(content) - 1))] ^= data.draw(st.integers(1, 255))
    else:
        content = bytearray(b"x")
    (b / rel).write_bytes(bytes(content))
    assert context_digest(a, cache=False) != context_digest(b, cache=False)


def test_target_and_platform_change_digest(tree):
    base = digest(tree)
    assert digest(tree, target="build") != base
    assert digest(tree, target="") != base  # an empty target is not "no target"
    assert digest(tree, target="build") != digest(tree, target="test")
    assert digest(tree, platform="linux/arm64") != base
    assert digest(tree, platform="linux/amd64") == base


def test_large_file_tree_hash_sees_every_chunk(tmp_path):
    big = bytearray(os.urandom(TREE_CHUNK * 2 + 12345))
    tree = make_tree(tmp_path / "ctx", {"big.bin": bytes(big)})
    before = digest(tree)
    big[TREE_CHUNK + 7] ^= 1  # a byte in the second chunk
    (tree / "big.bin").write_bytes(bytes(big))
    assert digest(tree) != before
    big[TREE_CHUNK + 7] ^= 1
    (tree / "big.bin").write_bytes(bytes(big))
    assert digest(tree) == before


# ---------------------------------------------------------------- what must not change the digest

def test_directory_mtime_and_mode_do_not_change_digest(tree):
    (tree / "uploads").mkdir()
    before = digest(tree)
    for d in (tree / "uploads", tree / "lib", tree / "data"):
        os.utime(d, ns=(123_000_000_000, 456_000_000_000))
    assert digest(tree) == before
    for mode in (0o700, 0o755, 0o777, 0o711, 0o555):
        os.chmod(tree / "uploads", mode)
        os.chmod(tree / "lib", mode | 0o500)
        assert digest(tree) == before, f"directory mode {mode:o} must not change the digest"
    os.chmod(tree / "uploads", 0o755)
    os.chmod(tree / "lib", 0o755)


def test_mtimes_do_not_change_digest(tree):
    before = digest(tree)
    for p in tree.rglob("*"):
        os.utime(p, ns=(1_000_000_000, 1_000_000_000), follow_symlinks=False)
    assert digest(tree) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_owner_does_not_change_digest(tree):
    before = digest(tree)
    for p in tree.rglob("*"):
        os.lchown(p, 4242, 4343)
    assert digest(tree) == before


def test_umask_does_not_change_digest(tmp_path):
    trees = []
    for name, mask in (("loose", 0o000), ("tight", 0o077)):
        code = (
            "import os, sys\n"
            f"os.umask({mask:#o})\n"
            "root = sys.argv[1]\n"
            "for rel, data in [('Dockerfile', 'FROM scratch\\n'), ('a/b.txt', 'b'), ('run.sh', '#!/bin/sh\\n')]:\n"
            "    p = os.path.join(root, rel); os.makedirs(os.path.dirname(p), mode=0o777, exist_ok=True)\n"
            "    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o777 if rel == 'run.sh' else 0o666)\n"
            "    os.write(fd, data.encode()); os.close(fd)\n"
        )
        root = tmp_path / name
        subprocess.run([sys.executable, "-c", code, str(root)], check=True)
        trees.append(root)
    modes = [os.stat(t / "a" / "b.txt").st_mode & 0o777 for t in trees]
    assert modes[0] != modes[1], "the umask had no effect; the test would prove nothing"
    assert digest(trees[0]) == digest(trees[1])


def test_absolute_path_does_not_change_digest(tree, tmp_path):
    before = digest(tree)
    copy = tmp_path / "elsewhere" / "deeper" / "ctx"
    shutil.copytree(tree, copy, symlinks=True)
    assert digest(copy) == before


def test_listing_order_does_not_change_digest(tree, monkeypatch):
    before = digest(tree)
    real_walk = ctx.walk_context

    def reversed_walk(c, d=None, dirs=None):
        out = list(real_walk(c, d, dirs))
        if dirs is not None:
            dirs.reverse()
        return reversed(out)

    def shuffled_walk(c, d=None, dirs=None):
        out = sorted(real_walk(c, d, dirs), key=lambda e: e.rel[::-1])
        if dirs is not None:
            dirs.sort(key=lambda r: r[::-1])
        return out

    (tree / "z").mkdir()
    (tree / "a" / "b").mkdir(parents=True)
    before = digest(tree)
    monkeypatch.setattr(ctx, "walk_context", reversed_walk)
    assert context_digest(tree, cache=False) == before
    monkeypatch.setattr(ctx, "walk_context", shuffled_walk)
    assert context_digest(tree, cache=False) == before


def test_creation_order_does_not_change_digest(tmp_path):
    items = list({f"d{i % 3}/f{i}.txt": f"content {i}" for i in range(30)}.items())
    a = make_tree(tmp_path / "a", dict(items))
    b = make_tree(tmp_path / "b", dict(reversed(items)))
    assert digest(a) == digest(b)


def test_cpu_count_does_not_change_digest(tmp_path, monkeypatch):
    tree = make_tree(tmp_path / "ctx", {"big.bin": os.urandom(TREE_CHUNK * 3 + 1),
                                         **{f"s/{i}": str(i) for i in range(300)}})
    results = set()
    for n in (1, 2, 3, 8):
        monkeypatch.setattr(hashing, "_workers", lambda n=n: n)
        results.add(context_digest(tree, cache=False))
    assert len(results) == 1


def test_digest_is_pinned_across_machines(tmp_path):
    """A fixed tree has a fixed digest on every machine: this value was computed once and must never
    drift (a drift means every user's images rebuild). Change DIGEST_VERSION if the encoding changes."""
    tree = make_tree(tmp_path / "ctx", {"a.txt": "alpha\n", "bin/run": "#!/bin/sh\n", "l": ("link", "a.txt")})
    (tree / "var" / "empty").mkdir(parents=True)
    os.chmod(tree / "a.txt", 0o644)
    os.chmod(tree / "Dockerfile", 0o644)
    os.chmod(tree / "bin" / "run", 0o755)
    got = context_digest(tree, build_args={"V": "1"}, target="final", platform="linux/arm64", cache=False)
    assert got == PINNED_DIGEST

    # The same value rebuilt from the documented encoding, so the pin is an encoding, not a magic number.
    import hashlib

    def f(b: bytes) -> bytes:
        return len(b).to_bytes(8, "big") + b

    def n(i: int) -> bytes:
        return i.to_bytes(8, "big")

    def sha(b: bytes) -> bytes:
        return hashlib.sha256(b).digest()

    dockerfile = b"FROM scratch\nCOPY . /ctx/\n"
    files = [(b"f", b"Dockerfile", dockerfile), (b"f", b"a.txt", b"alpha\n"), (b"x", b"bin/run", b"#!/bin/sh\n")]
    tree = f(b"acr-publish/context-tree/v1") + f(b"files") + n(4)
    for kind, rel, data in files:
        tree += f(kind) + f(rel) + n(len(data)) + sha(data)
    tree += f(b"l") + f(b"l") + f(b"a.txt")
    tree += f(b"dirs") + n(3) + f(b"d") + f(b"bin") + f(b"d") + f(b"var") + f(b"d") + f(b"var/empty")
    enc = f(b"acr-publish/context-digest/v4") + f(b"tree") + sha(tree)
    enc += f(b"dockerfile") + sha(dockerfile)
    enc += f(b"build-args") + n(1) + f(b"V") + f(b"1")
    enc += f(b"target") + b"\1" + f(b"final") + f(b"platform") + f(b"linux/arm64")
    assert hashlib.sha256(enc + f(b"remote-inputs") + n(0)).hexdigest() == PINNED_DIGEST
    # The remote inputs (a base image's digest, a remote ADD source's checksum) in label order.
    base, source = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    remote = {"FROM busybox:1.36": base, "ADD http://127.0.0.1/x": source}
    with ctx.ContextScan(tmp_path / "ctx", cache=False) as scan:
        with_remote = scan.digest({"V": "1"}, "final", "linux/arm64", remote)
    enc += f(b"remote-inputs") + n(2) + f(b"ADD http://127.0.0.1/x") + f(source.encode())
    enc += f(b"FROM busybox:1.36") + f(base.encode())
    assert hashlib.sha256(enc).hexdigest() == with_remote != PINNED_DIGEST


PINNED_DIGEST = "5c9d97d09a225412537f2492a7ef129258ee1eea43cc9fa5adecef20f920ad25"


# ---------------------------------------------------------------- content_tag

def test_content_tag_is_a_valid_docker_tag_and_never_latest(tree):
    import re

    d = digest(tree)
    tag = content_tag(d)
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag)
    assert tag != "latest" and tag.startswith("ctx-") and d.startswith(tag[4:])
    (tree / "app.py").write_text("changed")
    assert content_tag(digest(tree)) != tag


@pytest.mark.parametrize("bad", ["", "abc", "A" * 64, "g" * 64, "0" * 63, None])
def test_content_tag_rejects_what_is_not_a_digest(bad):
    with pytest.raises(ValueError, match="64 lower-case hex"):
        content_tag(bad)


# ---------------------------------------------------------------- the benchmark cannot rot

def test_benchmark_runs_in_quick_mode(tmp_path):
    """Runs bench/context_bench.py end to end at smoke-test sizes; asserts what it reports, never timings."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    bench = PROJECT_ROOT / "bench" / "context_bench.py"
    proc = subprocess.run([sys.executable, str(bench), "--quick", "--work", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for needle in ("acr-publish digest (cold)", "os.walk + lstat (bare)", "plan_builds, 2 images (warm)",
                   "files re-read by a warm run: 0", "history: 2 files", "cold >= 1.8x openssl",
                   "warm plan of 2 images <= 1.5x bare walk", "acr-publish walk, mixed"):
        assert needle in out, f"{needle!r} missing from the benchmark output:\n{out}"
    assert (tmp_path / "quick" / "cache" / "contexts").is_dir(), "the benchmark must keep its cache in its work dir"


# ---------------------------------------------------------------- fifos, sockets, device nodes

def _socket(path: Path) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def test_fifos_sockets_and_devices_are_in_the_digest_by_kind_and_device_numbers(tree):
    """BuildKit sends a fifo and a socket as empty files and a device node as a device: each one's presence and
    kind (and a device's numbers) changes the tag; none is ever opened (a fifo would block the read)."""
    before = digest(tree)
    os.mkfifo(tree / "pipe")
    with_fifo = digest(tree)
    assert with_fifo != before
    (tree / "pipe").unlink()
    _socket(tree / "pipe")
    with_socket = digest(tree)
    assert len({before, with_fifo, with_socket}) == 3
    (tree / "pipe").unlink()
    try:
        os.mknod(tree / "pipe", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD (root); fifo and socket were checked")
    null = digest(tree)
    (tree / "pipe").unlink()
    os.mknod(tree / "pipe", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    zero = digest(tree)
    (tree / "pipe").unlink()
    os.mknod(tree / "pipe", 0o600 | stat.S_IFBLK, os.makedev(1, 3))
    block = digest(tree)
    assert len({before, with_fifo, with_socket, null, zero, block}) == 6
    (tree / "pipe").unlink()
    assert digest(tree) == before


def test_special_files_are_pinned_in_the_documented_encoding(tmp_path):
    import hashlib

    from buildcontext import digest as encoding

    tree = make_tree(tmp_path / "ctx", {})
    os.chmod(tree / "Dockerfile", 0o644)
    os.mkfifo(tree / "p")
    _socket(tree / "s")
    dockerfile = b"FROM scratch\nCOPY . /ctx/\n"
    records = {"Dockerfile": ("f", hashlib.sha256(dockerfile).hexdigest()),
               "p": ("p", ""), "s": ("s", "")}
    try:
        os.mknod(tree / "c", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        records["c"] = ("c", "1:3")
    except PermissionError:
        pass  # without CAP_MKNOD the fifo and socket records are still pinned

    def f(b: bytes) -> bytes:
        return len(b).to_bytes(8, "big") + b

    enc = f(b"acr-publish/context-tree/v1") + f(b"files") + len(records).to_bytes(8, "big")
    for rel in sorted(records):
        kind, value = records[rel]
        enc += f(kind.encode()) + f(rel.encode())
        if kind == "f":
            enc += len(dockerfile).to_bytes(8, "big") + bytes.fromhex(value)
        elif kind == "c":
            enc += (1).to_bytes(8, "big") + (3).to_bytes(8, "big")
    enc += f(b"dirs") + (0).to_bytes(8, "big")
    root = hashlib.sha256(enc).digest()
    expected = encoding.digest_of(root, records["Dockerfile"][1], encoding.options_encoding({}, None, "linux/amd64"))
    assert context_digest(tree, cache=False) == expected


def test_a_fifo_in_the_context_never_blocks_the_scan(tmp_path):
    """Run in a child process with a time bound, so a regression that opens the fifo fails instead of hanging."""
    tree = make_tree(tmp_path / "ctx", {"a": "a"})
    os.mkfifo(tree / "pipe")
    code = f"from buildcontext import context_digest; print(context_digest({str(tree)!r}))"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              cwd=PROJECT_ROOT, env={**os.environ})
    except subprocess.TimeoutExpired:
        pytest.fail("the scan of a context holding a fifo did not end within 60 s")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == context_digest(tree, cache=False)


# ---------------------------------------------------------------- deep trees and long names

DEPTH = 1500


def _deep_tree(root: Path) -> Path:
    make_tree(root, {})
    deep = str(root)
    for _ in range(DEPTH):  # one level at a time: os.makedirs and Path.mkdir(parents=True) recurse
        deep += "/d"
        os.mkdir(deep)
    with open(deep + "/leaf.txt", "w") as f:
        f.write("bottom\n")
    return root


@pytest.fixture
def deep_tree():
    """Makes 1,500-level trees and removes them after the test, one level at a time: Python 3.11's shutil.rmtree
    recurses, so pytest's own clean-up of old temporary directories would crash on them in a later run."""
    made: list[Path] = []

    def make(root: Path) -> Path:
        made.append(root)
        return _deep_tree(root)

    yield make
    for root in made:
        deep = str(root) + "/d" * DEPTH
        for name in os.listdir(deep):
            os.unlink(os.path.join(deep, name))
        while deep != str(root):
            os.rmdir(deep)
            deep = deep[: -len("/d")]
        shutil.rmtree(root)


def _bounded(fn, seconds: float = 120):
    """fn() in a thread; fails (never hangs) past `seconds`; re-raises what fn raised."""
    import threading

    result: dict = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            result["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"did not finish within {seconds} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_a_1500_level_tree_digests_without_recursion(tmp_path, deep_tree):
    assert sys.getrecursionlimit() < DEPTH, "the test needs a tree deeper than the recursion limit"
    tree = deep_tree(tmp_path / "ctx")
    before = _bounded(lambda: context_digest(tree))
    assert before == _bounded(lambda: context_digest(tree, cache=False))
    with open(str(tree) + "/d" * DEPTH + "/leaf.txt", "w") as f:
        f.write("changed\n")
    assert _bounded(lambda: context_digest(tree)) != before
    from buildcontext.dockerignore import context_dirs

    assert len(_bounded(lambda: context_dirs(tree))) == DEPTH
    (tree / ".dockerignore").write_text("d/d/d\n!d/d/d/d/d\n")  # the filtered walk, with a re-include deep down
    assert len(_bounded(lambda: context_dirs(tree))) == DEPTH


def test_a_1500_level_tree_plans_and_explains(tmp_path, monkeypatch, deep_tree):
    from components.image import plan_builds
    from components.config.schema import ImageSettings, RegistrySettings, Settings

    project = tmp_path / "project"
    deep_tree(project / "app")
    settings = Settings(stack="deep", region=None,
                        registry=RegistrySettings(edition="local", namespace=None, server="127.0.0.1:5000"),
                        images=(ImageSettings(name="web", context="app", dockerfile="app/Dockerfile"),),
                        protect=False, retain_on_delete=False, preflight=False, project_root=project)
    plans = _bounded(lambda: plan_builds(settings))
    assert plans["web"].tag == content_tag(context_digest(project / "app", cache=False))
    try:
        proc = subprocess.run([sys.executable, "-m", "cli.explain", str(project / "app")], capture_output=True,
                              text=True, timeout=120, cwd=PROJECT_ROOT, env={**os.environ})
    except subprocess.TimeoutExpired:
        pytest.fail("explain of a 1,500-level tree did not end within 120 s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert plans["web"].tag in proc.stdout


def test_a_path_component_over_255_bytes_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="longer than 255 bytes"):
        context_digest(tmp_path / ("x" * 300))
    tree = make_tree(tmp_path / "ctx", {})
    with pytest.raises(ValueError, match="longer than 255 bytes"):
        context_digest(tree, dockerfile=tmp_path / ("D" * 300))
