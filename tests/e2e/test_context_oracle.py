"""buildcontext.dockerignore against the real engine: hand-written cases and a property test.

Each case's tree is written to disk once; the engine builds `FROM scratch` + `COPY . /ctx/` from it
(tests/e2e/oracle.py); the files it copied must equal `context_files` and the directories it created
`context_dirs` for the same directory (an empty directory changes the image as much as a file).
All hand cases are built up front in a small thread pool so the whole module stays well under a
minute and a half.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildcontext.dockerignore import context_dirs, context_files
from tests.e2e.oracle import Case, EmptyDir, EngineBuildError, Link, engine_tree, materialize

# A tree most cases share: names that patterns can hit at several depths.
BASE: dict[str, object] = {
    "README.md": "r",
    "readme.md": "r2",
    "a.txt": "a",
    "b.txt": "b",
    "sub/a.txt": "a",
    "sub/b.txt": "b",
    "sub/.hidden": "h",
    "docs/keep.md": "k",
    "docs/other.md": "o",
    "docs/deep/x.md": "x",
    "docs/deep/y.txt": "y",
    "src/app.py": "p",
    "src/cache/keep": "k",
    "src/cache/junk": "j",
    "src/lib/cache/keep": "k",
    "src/lib/cache/junk": "j",
    "node_modules/m/index.js": "m",
    "web/node_modules/m/index.js": "m",
    ".env": "E",
    ".git/config": "g",
}


def base(**extra: object) -> dict[str, object]:
    return {**BASE, **extra}


CASES: list[Case] = [
    # --- no or trivial ignore files
    Case("no-ignore-file", base()),
    Case("only-comments-and-blanks", base(), "# a comment\n\n   \n#README.md\n"),
    # --- anchoring, cleaning, trimming
    Case("file-anchored-at-root", base(), "b.txt\n", note="sub/b.txt stays"),
    Case("dir-excludes-everything-below", base(), "docs\n"),
    Case("trailing-slash-on-dir", base(), "docs/\n"),
    Case("trailing-slash-on-file", base(), "a.txt/\n"),
    Case("leading-slash", base(), "/docs\n/sub/a.txt\n"),
    Case("leading-dot-slash", base(), "./docs\n./sub/./a.txt\n"),
    Case("dot-segments-inside", base(), "sub/./b.txt\nsrc//app.py\n"),
    Case("dotdot-cleaned-inside", base(), "sub/../a.txt\nx/../../b.txt\n",
         note="x/../../b.txt cleans to ../b.txt, which never matches"),
    Case("dotdot-leading-never-matches", base(), "../a.txt\n../docs\n"),
    Case("dotdot-after-root-slash", base(), "/../a.txt\n", note="/../a.txt cleans to /a.txt -> a.txt"),
    Case("whitespace-trimmed", base(), "   a.txt   \n\tdocs\t\n"),
    Case("crlf-line-endings", base(), "a.txt\r\ndocs\r\n!docs/keep.md\r\n"),
    Case("utf8-bom", base(), "\ufeffa.txt\nb.txt\n"),
    Case("hash-not-in-first-column-is-a-pattern",
         base(**{"# notes": "n", "#x": "x"}), "#x\n  # notes\n"),
    Case("case-sensitive", base(), "README.md\n", note="readme.md stays (SDK-1)"),
    # --- wildcards
    Case("star-one-level", base(), "*/a.txt\n"),
    Case("star-does-not-cross-slash", base(), "*.txt\n", note="sub/*.txt stays"),
    Case("doublestar-any-depth", base(), "**/*.txt\n"),
    Case("doublestar-prefix-dir", base(), "**/node_modules\n"),
    Case("doublestar-slash-dir-deep", base(), "**/cache\n", note="SDK-4: deep parents"),
    Case("dir-doublestar", base(), "src/**\n"),
    Case("doublestar-alone", base(), "**\n"),
    Case("doublestar-glued-suffix", base(**{"xkeep": "x", "sub/mykeep": "m"}), "**keep\n",
         note="SDK-7: suffix match"),
    Case("prefix-doublestar", base(**{"srcx/y": "y"}), "src**\n"),
    Case("star-slash-star", base(), "*/*\n"),
    Case("trailing-star-slash", base(), "*/\n"),
    Case("question-mark", base(**{"ab.txt": "x"}), "?.txt\n"),
    Case("char-class", base(**{"c.txt": "c"}), "[ab].txt\n"),
    Case("char-class-range", base(**{"c.txt": "c", "z.txt": "z"}), "[b-y].txt\n"),
    Case("negated-class-caret", base(**{"c.txt": "c", "!.txt": "!"}), "[^a].txt\n", note="SDK-2"),
    Case("bang-in-class-is-literal", base(**{"c.txt": "c", "!.txt": "!"}), "[!a].txt\n", note="SDK-2"),
    Case("posix-class", base(**{"1.txt": "1", "22.txt": "2"}), "[[:digit:]].txt\n"),
    Case("escaped-star", {"a*b": "1", "axb": "2", "a\\b": "3"}, "a\\*b\n", note="SDK-6"),
    Case("escaped-question", {"a?b": "1", "axb": "2"}, "a\\?b\n"),
    Case("escaped-bracket", {"[x]": "1", "x": "2"}, "\\[x\\]\n"),
    # --- exceptions
    Case("exception-last-wins", base(), "*.md\n!README.md\n"),
    Case("exception-first-loses", base(), "!README.md\n*.md\n"),
    Case("reinclude-file-in-excluded-dir", base(), "docs\n!docs/keep.md\n"),
    Case("reinclude-deep-literal", base(), "docs\n!docs/deep/y.txt\n"),
    Case("reinclude-wildcard-in-excluded-dir", base(), "docs\n!docs/**/*.md\n"),
    Case("reinclude-under-doublestar", base(), "**/cache\n!**/cache/keep\n", note="SDK-5"),
    Case("reinclude-star-dir", base(), "src/*\n!src/*/keep\n"),
    Case("everything-but-src", base(), "*\n!src\n"),
    Case("everything-but-one-file", base(), "*\n!src/app.py\n"),
    Case("doublestar-but-dir", base(), "**\n!docs\n"),
    Case("reinclude-then-exclude-again", base(), "src\n!src/lib\nsrc/lib/cache/junk\n"),
    Case("exception-of-parent-after-child", base(), "src/cache\n!src\n",
         note="SDK-10: the child pattern still wins below src"),
    Case("exception-with-space-after-bang", base(), "*.md\n! README.md\n"),
    Case("escaped-bang-and-hash-are-literal", {"!a": "1", "a": "2", "!!a": "3", "#c": "4", "b": "5"},
         "\\!a\n\\#c\n"),
    Case("exception-of-a-name-starting-with-bang", {"!a": "1", "a": "2", "!!a": "3", "b": "4"},
         "*\n! !a\n!!!a\n", note="one '!' is the exception marker, the rest is the name"),
    Case("exception-dir-slash-doublestar", base(), "docs\n!docs/deep/**\n"),
    # --- special files in the context
    Case("ignore-the-dockerignore", base(), ".dockerignore\n", note="SDK-3"),
    Case("ignore-dotfiles", base(), ".*\n"),
    Case("exclude-everything", base(), "*\n"),
    Case("nested-dockerignore-is-not-read", base(**{"sub/.dockerignore": "*\n"}), "docs\n"),
    Case("dockerfile-inside-kept", base(), "docs\n", dockerfile="Dockerfile"),
    Case("dockerfile-inside-ignored", base(), "Dockerfile\n.dockerignore\n", dockerfile="Dockerfile",
         note="SDK-3: BuildKit does not force the Dockerfile into the context"),
    Case("dockerfile-in-subdir-ignored", base(), "build\n", dockerfile="build/app.Dockerfile"),
    Case("dockerfile-specific-ignore-inside", base(), "docs\n", dockerfile="Dockerfile",
         dockerfile_ignore="src\n", note="Dockerfile.dockerignore wins over .dockerignore"),
    Case("dockerfile-specific-ignore-in-subdir", base(), "docs\n", dockerfile="build/web.Dockerfile",
         dockerfile_ignore="src\nbuild\n"),
    Case("dockerfile-outside-specific-ignore", base(), "docs\n", dockerfile_name="web.Dockerfile",
         dockerfile_ignore="src\n*.md\n"),
    Case("dockerfile-outside-context-ignore", base(), "src\n", dockerfile_name="web.Dockerfile"),
    Case("dockerfile-outside-context-specific-ignore-in-context-unused",
         base(**{"Dockerfile.dockerignore": "src\n"}), "docs\n",
         note="only <Dockerfile>.dockerignore NEXT TO the Dockerfile counts"),
    Case("plain-dockerignore-next-to-dockerfile-unused",
         base(**{"build/.dockerignore": "src\n"}), "docs\n", dockerfile="build/Dockerfile"),
    # --- links, empty directories, odd names
    Case("symlinks", base(**{"lnk": Link("a.txt"), "dlink": Link("docs"), "dangling": Link("nowhere"),
                             "sub/up": Link("../src")}), "docs\n"),
    Case("symlink-excluded-by-name", base(**{"lnk": Link("a.txt"), "dlink": Link("docs")}),
         "lnk\ndlink\n"),
    Case("pattern-through-dir-link-does-not-apply",
         base(**{"dlink": Link("docs")}), "dlink/keep.md\ndlink/**\n"),
    Case("empty-dirs", base(**{"empty": EmptyDir(), "sub/empty2": EmptyDir()}), "a.txt\n"),
    # --- which directories are sent
    Case("excluded-empty-dir-is-absent", base(**{"uploads": EmptyDir(), "tmp/a/b": EmptyDir()}),
         "uploads\ntmp/a\n", note="tmp stays (not excluded, now empty), tmp/a and uploads go"),
    Case("contents-excluded-dir-stays", base(**{"cache/x": EmptyDir()}), "docs/*\ncache/*\n",
         note="the directory itself is not excluded, so it is sent empty"),
    Case("reinclude-empty-dir-below-excluded-dir", {"a/b/c": EmptyDir(), "a/x": "1", "y": "2"},
         "a\n!a/b/c\n", note="a and a/b are sent as parents of the re-included a/b/c"),
    Case("reinclude-empty-dir-by-wildcard", {"a/b/c": EmptyDir(), "a/x": "1", "d/e": EmptyDir()},
         "a\nd\n!**/c\n"),
    Case("wildcard-exception-matching-nothing-sends-no-dir",
         {"a/b/c": EmptyDir(), "a/x": "1", "y": "2"}, "a\n!**/zz\n",
         note="the walk enters a (the exception could match below it) but sends nothing, so not a"),
    Case("excluded-dir-with-reincluded-dir-only", {"a/b/x": "1", "a/c/y": "2", "a/d": EmptyDir()},
         "a\n!a/b\n"),
    Case("spaces-and-non-ascii",
         base(**{"my file.txt": "m", "ünï cödé/ß.txt": "s", "ünï cödé/b.txt": "b", "日本/語.md": "j"}),
         "my file.txt\nünï*/ß.txt\n日本\n"),
    Case("newlines-in-names", {"a\nb/c": "1", "x\ny": "2", "d/e\nf": "3", "q/r\ns": "4"},
         "**/**y\n**/r*s\n", note="`.` stops at a newline in both engines, `[^/]` does not"),
    Case("non-utf8-names-exact", {"caf\udce9": "1", "caf\udce8": "2", "caf\ufffd": "3", "cafe": "4",
                                   "x/\udcff\udcfe": "5", "x/y": "6"},
         b"caf\xe9\nx/??\n", note="the pattern's stray byte travels as U+FFFD"),
    Case("non-utf8-names-wildcard", {"caf\udce9": "1", "caf\udce8": "2", "caf\ufffd": "3", "cafe": "4"},
         b"caf\xe9*\n", note="Go's regexp reads each stray byte of a name as U+FFFD"),
    Case("regex-metacharacters-in-names",
         {"a+b": "1", "aab": "2", "(x)": "3", "x": "4", "$HOME": "5", "c.d": "6", "cxd": "7",
          "e|f": "8", "{g}": "9", "h^i": "10"},
         "a+b\n(x)\n$*\nc.d\ne|f\n{g}\nh^i\n"),
    Case("regex-metacharacters-with-wildcards",
         {"a+b.txt": "1", "aab.txt": "2", "(x)/y": "3", "x/y": "4", "h^i.txt": "5"},
         "a+*.txt\n(x)/?\nh^*\n"),
    Case("pipe-is-alternation", {"ab": "1", "x/y": "2"}, "a|*\n",
         note="SDK-11: `|` is not escaped, so `^a|[^/]*$` matches every path"),
    Case("pipe-in-exact-pattern-is-literal", {"a|b": "1", "a": "2", "b": "3"}, "a|b\n"),
    Case("braces-are-repetition", {"xx": "1", "xxa": "2", "x{2}": "3", "x": "4", "x{,2}": "5"},
         "x{2}*\nx{,2}*\n", note="SDK-11: {2} repeats, {,2} is literal in Go"),
    Case("regexp-letter-escape", {"a1": "1", "ad": "2", "a\\d": "3"}, "a\\d\n"),
    Case("regexp-hex-octal-quote-escapes",
         {"A1": "1", "B2": "2", "C3": "3", "D4": "4", "a*x": "5", "a*": "6", "E": "7"},
         "\\x41*\n\\x{42}*\n\\103*\n[\\x44-\\x44]?\n\\Qa*\\E*\n"),
    Case("regexp-unicode-and-negated-posix-classes",
         {"é1": "1", "a1": "2", "11": "3", "α": "4", "ab": "5", "_x": "6", "1x": "7"},
         "\\pL\\d\n\\p{Greek}\n[[:^digit:]]x\n", note="RE2 classes Python's re lacks reach the engine"),
    # --- errors the engine refuses, and the ones it never meets
    Case("regexp-any-byte-escape-fails", base(), "\\C*\n", note="Go's regexp is RE2 without \\C"),
    Case("regexp-any-byte-escape-inside-quote-is-literal", {"\\C": "1", "C": "2"}, "\\Q\\C\\E*\n"),
    Case("malformed-class-fails", base(), "[\n"),
    Case("lone-bang-fails", base(), "!\n"),
    Case("malformed-second-chunk-fails-when-evaluated", base(), "a*/[x\n"),
    Case("malformed-exception-never-evaluated", base(), "!a*/[x\n",
         note="Go compiles lazily; an exception with nothing excluded before it is never checked"),
    Case("repeat-over-1000-fails", base(), "x{1001}*\n"),
    Case("trailing-backslash-in-later-chunk",
         {"b": "1", "ab/x../$": "2", "ab/x../$x": "3", "ab/x../y": "4", "c/x../$/z": "5"},
         "[a-x]*/x../\\\n",
         note="Go's `$` after a lone trailing backslash becomes a literal, unanchored `\\$`"),
]


@pytest.fixture(scope="module")
def engine_results(docker_engine, tmp_path_factory):
    """id -> (context, dockerfile, EngineTree or EngineBuildError), all built concurrently."""
    prepared = {}
    for case in CASES:
        workdir = tmp_path_factory.mktemp(case.id)
        prepared[case.id] = materialize(case, workdir)

    def build(case_id):
        context, dockerfile = prepared[case_id]
        try:
            return engine_tree(docker_engine, context, dockerfile)
        except EngineBuildError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(prepared, pool.map(build, prepared)))
    return {cid: (*prepared[cid], results[cid]) for cid in prepared}


def test_case_ids_unique_and_enough():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case id"
    assert len(ids) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_context_files_match_engine(case, engine_results):
    context, dockerfile, expected = engine_results[case.id]
    if isinstance(expected, EngineBuildError):
        with pytest.raises(ValueError):
            context_files(context, dockerfile)
        with pytest.raises(ValueError):
            context_dirs(context, dockerfile)
        return
    assert context_files(context, dockerfile) == expected.files, case.note
    assert context_dirs(context, dockerfile) == expected.dirs, case.note


def test_relative_dockerfile_path_resolves_from_cwd(engine_results, monkeypatch):
    """A relative `dockerfile` is taken from the current directory, as `docker build -f` does."""
    context, dockerfile, expected = engine_results["dockerfile-outside-specific-ignore"]
    monkeypatch.chdir(dockerfile.parent.parent)
    assert context_files(context, Path(dockerfile.parent.name) / dockerfile.name) == expected.files


# ----------------------------------------------------------------------------------------------
# Property test: random small trees and pattern lists against the engine
# ----------------------------------------------------------------------------------------------

# Mostly plain letters, dots and spaces, now and then a character that means something to a
# pattern or to Go's regexp engine, so names and patterns collide in the interesting ways.
_name_char = st.one_of(st.sampled_from("ab.x -"), st.sampled_from("ab.x -*?[]\\!^|{}+(#é"))
_names = st.text(alphabet=_name_char, min_size=1, max_size=3).filter(
    lambda n: n not in (".", "..") and n.strip() == n and not n.startswith("-"))


@st.composite
def trees(draw):
    """(leaf paths (depth <= 3), the directories above them, the leaves that are empty directories
    rather than files); no leaf is also used as a directory."""
    paths = draw(st.lists(st.lists(_names, min_size=1, max_size=3).map("/".join),
                          min_size=1, max_size=10, unique=True))
    files: list[str] = []
    dirs: set[str] = set()
    for p in sorted(paths, key=lambda p: p.count("/"), reverse=True):
        parts = p.split("/")
        prefixes = {"/".join(parts[:i]) for i in range(1, len(parts))}
        if p in dirs or any(pre in files for pre in prefixes):
            continue
        files.append(p)
        dirs |= prefixes
    empties = draw(st.sets(st.sampled_from(files), max_size=2))
    return files, sorted(dirs), empties


_PIECES = ["*", "**", "?", "*.x", "a*", "**a", "[ab]", "[^a]*", "[!a]", ".*", "\\*", "x\\?", ".."]


@st.composite
def tree_and_patterns(draw):
    """(tree: path -> content, EmptyDir or Link, ignore-file lines) built from the tree's own names."""
    files, dirs, empties = draw(trees())
    segments = sorted({seg for p in files for seg in p.split("/")})
    piece = st.one_of(st.sampled_from(segments), st.sampled_from(_PIECES))
    pattern = st.lists(piece, min_size=1, max_size=3).map("/".join)
    pattern = st.one_of(pattern, st.sampled_from(files + dirs))
    line = st.tuples(st.booleans(), st.sampled_from(["", "/", "./", " "]), pattern,
                     st.sampled_from(["", "/", " ", "/**", "/*"])).map(
        lambda t: ("!" if t[0] else "") + t[1] + t[2] + t[3])
    lines = draw(st.lists(line, min_size=1, max_size=5))
    tree: dict[str, object] = {f: EmptyDir() if f in empties else f for f in files}
    if dirs and draw(st.booleans()):
        # a symlink to one of the directories: sent as a link, never followed
        tree["lnk"] = Link(draw(st.sampled_from(dirs)))
    return tree, lines


_PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=os.environ.get("CI", "").lower() == "true",
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@_PROPERTY_SETTINGS
@given(data=tree_and_patterns())
def test_random_trees_and_patterns_match_engine(docker_engine, data):
    tree, lines = data
    case = Case("property", tree, "\n".join(lines) + "\n")
    tmp = tempfile.mkdtemp(prefix="oracle-prop-")
    try:
        context, dockerfile = materialize(case, Path(tmp))
        try:
            expected = engine_tree(docker_engine, context, dockerfile)
        except EngineBuildError:
            with pytest.raises(ValueError):
                context_files(context, dockerfile)
            return
        empty = sorted(k for k, v in tree.items() if isinstance(v, EmptyDir))
        where = f"patterns={lines!r} tree={sorted(tree)!r} empty dirs={empty!r}"
        assert context_files(context, dockerfile) == expected.files, where
        assert context_dirs(context, dockerfile) == expected.dirs, where
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
