"""The version constants of what the build-context engine stores, held by golden digests computed by the real code.

A stored value made by other code must not be trusted, so each store names its format in a version constant:
memo.LAYOUT_VERSION (the stat cache's file format), memo.ENCODING_VERSION (what its entries and summary hold),
sensitive_rules.RULES_VERSION (the guard's verdicts it caches) and history.LAYOUT_VERSION (the explain history's
format). Each test below computes a digest of a fixed input through the real code and pins it next to the
constant: when the digest moves, the constant must move with it, and the failure names the constant to bump.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

import buildcontext
from buildcontext import history, memo, sensitive, sensitive_rules
from buildcontext.context import ContextScan
from buildcontext.digest import TREE_CHUNK
from buildcontext.hashing import READ_SIZE
from buildcontext.memo import StatCache, Summary, make_entry, parse_entry

# constant -> (its value, the golden digest of what it versions). Update both together, never one alone.
GOLDEN = {
    "memo.LAYOUT_VERSION":
        ("memo-1", "b14aee6a3c0cb264d40ebac4b83f08984c83bd682b4301afc2722bcceb48ae0d"),
    "memo.ENCODING_VERSION": ("encoding-1", "90aaaee9a7c9c34b7f61a8be08ca85db07b5f692300be687534344a142075ac9"),
    "sensitive_rules.RULES_VERSION": ("rules-13", "62f30ebff9397fd8a3245595be52755246e3840c175c2e9ec59af08e6d9632db"),
    "history.LAYOUT_VERSION": ("history-1", "1d6f59447d8911e06b5c2061a98b9fb8e543e7101862de291192f7a955b96346"),
}


def _hold(constant: str, value: str, digest: str, what: str) -> None:
    pinned_value, pinned_digest = GOLDEN[constant]
    if digest != pinned_digest:
        pytest.fail(f"{what} changed (golden digest {pinned_digest}, now {digest}): stores written by the old code "
                    f"must not be trusted, so bump {constant} and set GOLDEN[{constant!r}] in this file to "
                    f"({value if value != pinned_value else '<the new version>'!r}, {digest!r})")
    assert value == pinned_value, (f"{constant} is {value!r} but the golden digest was pinned at {pinned_value!r}: "
                                   f"set GOLDEN[{constant!r}] to ({value!r}, {digest!r})")


def _sha(doc: object) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(root))
    return root


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)


def _golden_context(root: Path) -> Path:
    """A small context holding one of each kind of entry, content flags, and a file over TREE_CHUNK whose chunks
    and read windows a private key and an AccessKey id straddle."""
    _write(root / "Dockerfile", b"FROM scratch\nARG TOKEN=ghp_" + b"a" * 36 + b"\nCOPY . /\n")
    _write(root / "a.txt", b"alpha\n")
    _write(root / "run.sh", b"#!/bin/sh\necho hi\n", 0o755)
    _write(root / "sub" / "b.txt", b"beta\n")
    _write(root / "sub" / "key.pem", b"-----BEGIN RSA PRIVATE KEY-----\nMII\n")
    _write(root / ".env", b"A=1\n")
    _write(root / ".npmrc", b"//r.example/:_authToken=abc\n")
    _write(root / "bin.dat", b"\0LTAI" + b"A" * 16)
    key = b"-----BEGIN OPENSSH PRIVATE KEY-----"
    ak = b" LTAI" + b"B" * 20 + b" "
    large = bytearray(b"x" * (TREE_CHUNK + 4096))
    large[READ_SIZE - 10:READ_SIZE - 10 + len(key)] = key
    large[TREE_CHUNK - 12:TREE_CHUNK - 12 + len(ak)] = ak
    _write(root / "large.txt", bytes(large))
    (root / "empty").mkdir()
    os.symlink("a.txt", root / "link")
    os.mkfifo(root / "pipe")
    return root


def test_the_cache_encoding_is_held_by_its_version(tmp_path, cache_root):
    """What a scan stores (every entry's kind, value and flags; the summary) for a fixed context."""
    root = _golden_context(tmp_path / "ctx")
    with ContextScan(root) as scan:
        scan.digest()
    stored = StatCache.load(root, root / "Dockerfile")
    assert stored.problem is None and stored.summary is not None
    s = stored.summary
    doc = {"entries": {rel.replace(memo.DOCKERFILE_KEY, "<dockerfile>"): list(parse_entry(e))
                       for rel, e in stored.entries.items()},
           "summary": [s.tree, s.dockerfile, s.dockerfile_flags, sorted(list(f) for f in s.flagged), s.file_count,
                       s.total_bytes]}
    _hold("memo.ENCODING_VERSION", memo.ENCODING_VERSION, _sha(doc), "what the stat cache stores for a scan")


def test_the_stat_cache_layout_is_held_by_its_version(tmp_path):
    """The bytes of a stat cache file with fixed entries and summary (the header's versions left out)."""
    st = SimpleNamespace(st_size=6, st_mtime_ns=1_700_000_000_123_456_789, st_ctime_ns=1_700_000_001_000_000_000,
                         st_ino=4242, st_mode=0o100644)
    entries = {"a.txt": make_entry(st, "f", "ab" * 32, 0, True), "key.pem": make_entry(st, "x", "cd" * 32, 1, False),
               "link": make_entry(st, "l", "a.txt", 0, True), "sub/": memo.DIR_ENTRY,
               memo.DOCKERFILE_KEY: make_entry(st, "f", "ef" * 32, 8, True)}
    summary = Summary("01" * 32, "23" * 32, "ef" * 32, 8, (("key.pem", "x", 1),), 3, 17)
    store = StatCache(tmp_path / "memo.json", "/ctx", "/ctx/Dockerfile")
    assert store.save(entries, summary)
    raw = (tmp_path / "memo.json").read_bytes()
    assert memo.versions() in raw.partition(b"\n")[0]
    digest = hashlib.sha256(raw.replace(memo.versions(), b"<versions>", 1)).hexdigest()
    _hold("memo.LAYOUT_VERSION", memo.LAYOUT_VERSION, digest, "the stat cache's file format")


def _canonical(value: object) -> object:
    if isinstance(value, re.Pattern):
        pattern = value.pattern
        return ["re", pattern.hex() if isinstance(pattern, bytes) else pattern, value.flags]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if isinstance(value, (set, frozenset)):
        return ["set", sorted((_canonical(v) for v in value), key=repr)]
    if isinstance(value, dict):
        return ["dict", sorted(([_canonical(k), _canonical(v)] for k, v in value.items()), key=repr)]
    if isinstance(value, (tuple, list)):
        return [_canonical(v) for v in value]
    assert isinstance(value, (int, str)), f"sensitive_rules holds a {type(value).__name__}: teach _canonical it"
    return value


# Samples the guard's verdicts are pinned on: (basename, content) for the content rules, paths for the path rules.
_CONTENT_SAMPLES = [
    ("a.txt", b"-----BEGIN EC PRIVATE KEY-----"), ("a.txt", b"PuTTY-User-Key-File-3: ssh-ed25519"),
    ("a.txt", b"id=LTAI" + b"x1" * 8), ("a.txt", b"LTAI" + b"x" * 40), ("a.txt", b"ghp_" + b"A" * 36),
    ("a.txt", b"AKIA" + b"A" * 16), ("a.txt", b"npm_" + b"a" * 36), ("a.txt", b"xoxb-1234567890-abc"),
    ("config", b"apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: abc\n"),
    ("config", b"users:\n- user:\n    client-key-data: QUJD\n"),
    ("s.tfstate", b'{"terraform_version": "1.5.0", "lineage": "x"}'),
    ("pip.conf", b"index-url = https://u:hunter2@pypi.example/simple"),
    ("pip.conf", b"index-url = https://u:${PIP_PASSWORD}@pypi.example/simple"),
    ("env.sh", b"ALIBABA_CLOUD_ACCESS_KEY_SECRET=" + b"k" * 30),
    (".npmrc", b"//r/:_authToken=abc"), (".npmrc", b"//r/:_authToken=${NPM_TOKEN}"), (".pypirc", b"password = x"),
    (".netrc", b"machine m login l password p"), (".yarnrc.yml", b'npmAuthToken: "abc"'),
    (".yarnrc.yml", b'npmAuthToken: "${NPM_TOKEN}"'), ("settings.xml", b"<password>pw</password>"),
    ("settings.xml", b"<password>${env.PW}</password>"), ("a.txt", b"nothing to see"),
    # Every credential file kind, holding a credential and holding none, and the Java system property rule.
    (".yarnrc", b'"//r/:_authToken": "abc"'), (".yarnrc", b'"//r/:_authToken" ${NPM_TOKEN} # ci'),
    ("auth.json", b'{"custom-headers": {"r": ["X-Token: abc"]}}'), ("auth.json", b'{"bearer": {"r": ""}}'),
    ("auth.json", b'{"pass\\u0077ord": "abc", '), ("auth.json", b'{"github-oauth": {"g": "${T}"}, '),
    ("credentials", b":github: Bearer abc\n"), ("credentials", b"rubygems_api_key: ${KEY}\n"),
    ("credentials", b"registry.token = 'abc'\n"), ("credentials.toml", b'corp = { token = """abc""" }\n'),
    ("credentials.toml", b'token = ""\n'), ("NuGet.Config", b'<add value="abc"\n key="ClearTextPassword"/>'),
    ("NuGet.Config", b'<add key="ClearTextPassword" value="%PW%"/>'), ("gradle.properties", b"\fgpr.key \\\n  abc"),
    ("gradle.properties", b"useSecret=false\norg.gradle.token=x\np.password=${P}"),
    ("a.sh", b"-Daws.secretKey='abc'"), ("a.sh", b'-Dx.password="<your password>" -Dy.token=YOUR_TOKEN'),
    ("compose.yml", b"DB_PASSWORD: ${DB_PASSWORD:?DB_PASSWORD must be set}\n"),
]
_PATHS = [".env", ".env.local", ".env.example", ".ENV", ".envrc", "id_rsa", "id_ed25519_sk", "id_rsa.pub",
          "k.p12", "k.pfx", ".aws/credentials", "x/.docker/config.json", ".dockercfg", ".git-credentials",
          "s.tfstate", "s.tfstate.backup", "s.tfstate.1", "Pulumi.dev.yaml", "Pulumi.yaml", ".git/HEAD",
          "a/.pulumi/x", "src/app.py"]


def test_the_guard_rules_are_held_by_their_version():
    """The rule table (every pattern, name and reason in sensitive_rules) and the matcher's verdicts on fixed
    samples, and on the guard's corpus with a chunked scan's window edges at every offset across each text: the
    content flags and the paths flagged are what the stat cache keeps."""
    table = {name: _canonical(value) for name, value in vars(sensitive_rules).items()
             if not name.startswith("__") and name not in ("RULES_VERSION", "annotations")
             and not isinstance(value, (types.ModuleType, types.FunctionType, type))}
    flags = [sensitive.scan_content(name, data) for name, data in _CONTENT_SAMPLES]
    flag_bits = [flag for flag, _ in sensitive_rules.CONTENT_REASONS] + [sensitive_rules.CREDENTIALS]
    files = [(p, kind, 0) for p in _PATHS for kind in ("f", "l")] + [
        (name, "f", 1 << bit) for name in ("a.txt", *sensitive_rules.CREDENTIAL_FILES)
        for bit in range(max(flag_bits).bit_length())]
    doc = {"table": table, "flags": flags, "candidates": sensitive.candidates(files), "corpus": _corpus_verdicts(),
           "edges": _edge_verdicts()}
    _hold("sensitive_rules.RULES_VERSION", sensitive_rules.RULES_VERSION, _sha(doc), "the guard's rules")


def _guard_corpus() -> list[tuple[str, bytes]]:
    """Every text the guard's own tests judge (the parametrized cases of test_guard_credentials, test_guard_values
    and test_sensitive), as (basename, bytes): a change of the matcher's verdict on any of them is a rule change."""
    from tests.unit.buildcontext import test_guard_credentials, test_guard_values, test_sensitive

    corpus = []
    for module in (test_guard_credentials, test_guard_values, test_sensitive):
        for function in vars(module).values():
            for mark in getattr(function, "pytestmark", []):
                if mark.name != "parametrize":
                    continue
                for case in mark.args[1]:
                    values = [v for v in (case if isinstance(case, tuple) else (case,)) if isinstance(v, str)]
                    if values:
                        name = values[0].rsplit("/", 1)[-1] if len(values) > 1 else "a.txt"
                        corpus.append((name, values[-1].encode("utf-8", "surrogatepass")))
    return corpus


def _corpus_verdicts() -> list[tuple[int, int]]:
    """Each corpus text's flags scanned whole and read in 129-byte pieces past the binary sniff (a chunked scan, as
    large files and image layers are read): both are cached."""
    from imageaudit.audit import _SensitiveScan

    verdicts = []
    for name, data in _guard_corpus():
        chunked = []
        for pad, piece in ((8300, 129), (8300 + 61, 64), (8300 + 127, 1000)):
            padded = b"#" * pad + b"\n" + data
            scan = _SensitiveScan(name)
            for i in range(0, len(padded), piece):
                scan(padded[i:i + piece])
            scan(b"")
            chunked.append(scan.flags)
        verdicts.append((sensitive.scan_content(name, data), *chunked))
    return verdicts


_PIECE = 256
"""The read size of the edge sweep: past the binary sniff (BINARY_SNIFF_BYTES, read whole as the first window), each
window is the SCAN_OVERLAP bytes before it and one piece."""


_PLACEHOLDER_LINE = b"//r.example/:_authToken=<your-token>"
_EDGE_TEXTS = [(".npmrc", _PLACEHOLDER_LINE.replace(b"/:", b"/" + b"p" * (size - len(_PLACEHOLDER_LINE)) + b"/:"))
               for size in range(sensitive.SCAN_OVERLAP - 2, sensitive.SCAN_OVERLAP + 3)]
"""Credential lines about as long as the overlap whose value is a placeholder, not a credential, with its last byte
the `>`: a window that judges one seeing a byte less of it than the overlap takes the cut value for a credential."""


def _edge_verdicts() -> list[list[int]]:
    """Each corpus text's flags with the chunked scan's window edges at every offset across it: the text starts
    from just before the second window's first byte (where a match start passes from one window's say to the next)
    to just after, and from just before the first window's end (where a match touching the cut is left to the next
    window) to just after. Whatever shifts an edge by one byte (the overlap, Window.matches' last start, the cut
    rules) moves some match across it, and its verdict."""
    from imageaudit.audit import _SensitiveScan

    head = -(-sensitive.BINARY_SNIFF_BYTES // _PIECE) * _PIECE
    window_end = head + _PIECE
    next_start = window_end - sensitive.SCAN_OVERLAP
    verdicts = []
    for name, data in dict.fromkeys(_guard_corpus() + _EDGE_TEXTS):
        flags = []
        for edge in (next_start, window_end):
            for start in range(edge - len(data) - 2, edge + 3):
                padded = b"#" * (start - 1) + b"\n" + data + b"\n" + b"#" * _PIECE
                scan = _SensitiveScan(name)
                scan(padded[:head])  # the sniff's bytes in one read: the same first window, fewer calls
                for i in range(head, len(padded), _PIECE):
                    scan(padded[i:i + _PIECE])
                scan(b"")
                flags.append(scan.flags)
        verdicts.append(flags)
    return verdicts


def test_the_explain_history_layout_is_held_by_its_version(cache_root):
    """The bytes of a history file recorded twice (so it has a `previous`) for a fixed key."""
    key = history.HistoryKey(Path("/golden/project"), "dev", "web")
    first = history.BuildState("0" * 64, "t1", "1" * 64, {"A": "2" * 64}, None, "linux/amd64")
    second = history.BuildState("3" * 64, "t2", "1" * 64, {}, "app", "linux/arm64", {"FROM alpine": "4" * 64})
    assert history.record(key, first, lambda: {"a.txt": ["f", "5" * 64], "d/": ["d", ""]})
    assert history.record(key, second, lambda: {"link": ["l", "a.txt"]})
    raw = key.path().read_bytes()
    layout = history.LAYOUT_VERSION.encode()
    assert raw.split(b" ")[1] == layout
    digest = hashlib.sha256(raw.replace(b" " + layout + b" ", b" <layout> ", 1)).hexdigest()
    _hold("history.LAYOUT_VERSION", history.LAYOUT_VERSION, digest, "the explain history's file format")


_IMPORT_GRAPH = r"""
import builtins, importlib.util, json, sys, types
package, first = sys.argv[1], sys.argv[2]
# The package without its __init__ (which imports the whole engine): each module is imported on its own.
stub = types.ModuleType(package)
stub.__path__ = list(importlib.util.find_spec(package).submodule_search_locations)
sys.modules[package] = stub
edges = set()
real_import = builtins.__import__

def tracing_import(name, globals=None, locals=None, fromlist=(), level=0):
    module = real_import(name, globals, locals, fromlist, level)
    importer = (globals or {}).get("__name__", "")
    if importer.startswith(package + ".") and level == 0 and (name == package or name.startswith(package + ".")):
        targets = [name] if name != package else []
        targets += [f"{name}.{item}" for item in fromlist or () if f"{name}.{item}" in sys.modules]
        edges.update((importer, t) for t in targets if t != importer)
    return module

builtins.__import__ = tracing_import
importlib.import_module(f"{package}.{first}")
print(json.dumps(sorted(edges)))
"""


def _cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in list(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_each_engine_module_imports_alone_and_the_imports_have_no_cycle():
    """Every module of the package imports in a fresh interpreter without the package's __init__, and the imports
    they make (traced as they run) form no cycle."""
    package_dir = Path(buildcontext.__file__).parent
    modules = sorted(p.stem for p in package_dir.glob("*.py") if p.stem != "__init__")
    assert {"context", "memo", "history", "sensitive", "sensitive_rules"} <= set(modules)
    edges: set[tuple[str, str]] = set()
    for name in modules:
        proc = subprocess.run([sys.executable, "-c", _IMPORT_GRAPH, "buildcontext", name], capture_output=True,
                              text=True, timeout=120, cwd=package_dir.parent)
        assert proc.returncode == 0, f"buildcontext.{name} does not import on its own:\n{proc.stderr}"
        edges.update(tuple(e) for e in json.loads(proc.stdout))
    assert ("buildcontext.context", "buildcontext.memo") in edges, "the tracer saw no import: it proves nothing"
    cycle = _cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
