"""Benchmark of the build-context engine (buildcontext/) against the tools people compare it with.

Run from the project root:  ./venv/bin/python bench/context_bench.py   (add --quick for a smoke run)

Generates under bench/.work/ (git-ignored, reused): large/ (large files, 1 GiB; --quick 22 MiB) and small/ (20,000
small files in 200 directories; --quick 500). Prints the median over --repeats of: cold digest throughput (stat
cache off) against `openssl dgst -sha256` of the same files (and, for reference, `sha256sum` and `tar | sha256sum`);
warm planning of two images sharing the small context (components/image.py plan_builds, stat cache trusted, the
explain history holding earlier states) against a bare `os.walk` + `os.lstat` of the same tree. Every file is read
once first (warm page cache) and the sides alternate within each repeat. Targets: cold >= 1.8x openssl; warm plan
<= 1.5x the bare walk, on the medians; the best-of columns show the comparison with background load filtered out.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MiB = 1 << 20
COLD_TARGET = 1.8
WARM_TARGET = 1.5


def _layout(quick: bool) -> dict:
    if quick:
        return {"small_dirs": 5, "small_per_dir": 100, "large": [9 * MiB, 8 * MiB, 5 * MiB]}
    return {"small_dirs": 200, "small_per_dir": 100, "large": [384 * MiB, 256 * MiB, 256 * MiB, 128 * MiB]}


def _generate(work: Path, layout: dict) -> tuple[Path, Path]:
    """Create (or reuse, when the layout matches) the two contexts; returns (small, large)."""
    stamp = work / "layout.json"
    small, large = work / "small", work / "large"
    if stamp.exists() and json.loads(stamp.read_text()) == layout:
        return small, large
    for d in (small, large):
        shutil.rmtree(d, ignore_errors=True)
    for d in (small, large):
        d.mkdir(parents=True)
        (d / "Dockerfile").write_text("FROM scratch\nCOPY . /ctx/\n")
    # Small files: 50 bytes to ~4 KiB, like a source tree.
    seed = os.urandom(64 * 1024)
    n = 0
    for i in range(layout["small_dirs"]):
        sub = small / f"pkg{i:03d}"
        sub.mkdir()
        for j in range(layout["small_per_dir"]):
            size = 50 + (n * 7919) % 4000
            off = (n * 104729) % (len(seed) - size)
            (sub / f"mod{j:03d}.py").write_bytes(n.to_bytes(4, "big") + seed[off:off + size])
            n += 1
    # Large files: random 16 MiB blocks, each stamped with its position so no two blocks are equal.
    block = os.urandom(16 * MiB)
    for k, size in enumerate(layout["large"]):
        with open(large / f"blob{k}.bin", "wb") as f:
            for pos in range(0, size, len(block)):
                f.write((k * 1_000_003 + pos).to_bytes(8, "big") + block[8:min(len(block), size - pos)])
    stamp.write_text(json.dumps(layout))
    return small, large


def _files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def _read_all(paths: list[str]) -> None:
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.read(8 * MiB):
                pass


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _timed_both(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): for single-threaded sides the CPU time is the
    figure background load distorts least."""
    c, t = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def _load_note() -> str:
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    note = f"load average {load:.1f} on {cpus} CPUs"
    if load > cpus * 0.75:
        note += " -- the machine is busy: wall-clock figures understate both sides unevenly"
    return note


def _run_shell(cmd: str) -> None:
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL, executable="/bin/bash")


def _bare_walk(root: Path) -> int:
    n = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            os.lstat(os.path.join(dirpath, name))
            n += 1
    return n


DOCKER_CLI = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")


def _pattern_contexts(work: Path, quick: bool) -> dict[str, Path]:
    """Contexts of 2,000 files (--quick: 200) in 100 directories, each with a .dockerignore of 10,000
    patterns (--quick: 1,000): "literal", file paths only (half of them in the tree's directories);
    "mixed", 60% file paths, 20% `dir/*.ext` globs, 10% `**/*.ext`, 10% `**/name` and a few
    exceptions; "none", the same files without a .dockerignore (each side's fixed cost)."""
    import random
    dirs, per_dir, n_patterns = (20, 10, 1000) if quick else (100, 20, 10_000)
    out = {}
    for kind in ("none", "literal", "mixed"):
        root = work / f"patterns-{kind}"
        out[kind] = root
        if (root / "Dockerfile").exists():
            continue
        for i in range(dirs):
            d = root / "src" / f"mod{i:03d}"
            d.mkdir(parents=True)
            for j in range(per_dir):
                (d / f"file{j:02d}.py").write_text(f"{i} {j}\n")
        rnd = random.Random(11)
        lines = []
        for k in range(n_patterns):
            i, j, r = rnd.randrange(dirs), rnd.randrange(2 * per_dir), k % 10
            if kind == "literal" or r < 6:
                lines.append(f"src/mod{i:03d}/file{j:02d}.pyc" if k % 2 else f"build/out{k}/obj{k}.o")
            elif r < 8:
                lines.append(f"src/mod{i:03d}/*.tmp{k}")
            elif r == 8:
                lines.append(f"**/*.ext{k}")
            else:
                lines.append(f"**/cache{k}" if k % 20 else f"!src/mod{i:03d}/file{j:02d}.py")
        if kind != "none":
            (root / ".dockerignore").write_text("\n".join(lines) + "\n")
        (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    return out


def _patterns_bench(work: Path, quick: bool, repeats: int) -> None:
    """Many .dockerignore patterns: our file-set walk against the engine receiving the same context
    (`docker buildx build` of `FROM scratch` + `COPY . /`, exported to /dev/null: the CLI walks and
    filters the context with Go's patternmatcher, then the engine copies it)."""
    from buildcontext.dockerignore import context_files
    contexts = _pattern_contexts(work, quick)
    env = {**os.environ, "BUILDX_NO_DEFAULT_ATTESTATIONS": "1", "BUILDX_GIT_INFO": "0"}

    def engine(root: Path) -> None:
        subprocess.run([DOCKER_CLI, "buildx", "build", "-q", "-o", "type=tar,dest=/dev/null", str(root)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=600)

    problem = None if DOCKER_CLI else "no docker CLI on PATH"
    if problem is None:
        try:
            engine(contexts["none"])  # also warms the engine's build cache for every repeat alike
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            problem = f"docker buildx build failed: {(exc.stderr or b'').decode(errors='replace')[-300:].strip()}"
    sides = {}
    for kind, root in contexts.items():
        sides[f"acr-publish walk, {kind}"] = lambda root=root: context_files(root)
        if problem is None:
            sides[f"docker buildx build, {kind}"] = lambda root=root: engine(root)
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            times[name].append(_timed(fn))
    n_files = sum(1 for _ in contexts["none"].rglob("*.py"))
    n_patterns = len((contexts["literal"] / ".dockerignore").read_text().splitlines())
    print(f"\npatterns: {n_patterns} .dockerignore patterns over {n_files} files; median of {repeats}; {_load_note()}")
    if problem is not None:
        print(f"  (the engine side is not measured: {problem})")
    print(f"  {'side':36} {'seconds':>9} {'best s':>8}")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in sides:
        print(f"  {name:36} {med[name]:9.3f} {min(times[name]):8.3f}")
    if problem is None:
        base = med["docker buildx build, none"]
        for kind in ("literal", "mixed"):
            ours, theirs = med[f"acr-publish walk, {kind}"], med[f"docker buildx build, {kind}"]
            print(f"  {kind}: the engine's build takes {theirs / ours:.1f}x our walk ({theirs:.3f} s vs {ours:.3f} s); "
                  f"its patterns alone (build minus the build without .dockerignore) {(theirs - base) / ours:.1f}x")


def _cold_bench(ctx, large: Path, repeats: int) -> tuple[dict[str, float], float | None]:
    """Cold digest of the large files against openssl and the sha256sum references; prints the table.

    Returns the median seconds per side and openssl's (None when openssl is not installed)."""
    openssl, sha256sum, tar = shutil.which("openssl"), shutil.which("sha256sum"), shutil.which("tar")
    large_files = [p for p in _files(large) if not p.endswith("Dockerfile")]
    large_bytes = sum(os.path.getsize(p) for p in large_files)
    names = " ".join(f"'{p}'" for p in large_files)
    sides = {"acr-publish digest (cold)": lambda: ctx.context_digest(large, cache=False)}
    if openssl:
        sides["openssl dgst -sha256"] = lambda: _run_shell(f"{openssl} dgst -sha256 {names}")
    reference = {}
    if sha256sum:
        reference["sha256sum"] = lambda: _run_shell(f"{sha256sum} {names}")
    if sha256sum and tar:
        reference["tar -c | sha256sum"] = lambda: _run_shell(f"{tar} -C '{large}' -cf - . | {sha256sum}")
    times: dict[str, list[float]] = {k: [] for k in [*sides, *reference]}
    for r in range(repeats):
        for name, fn in sides.items():
            times[name].append(_timed(fn))
        if r < min(repeats, 3):  # the slow references need fewer samples
            for name, fn in reference.items():
                times[name].append(_timed(fn))
    gib = large_bytes / (1 << 30)
    print(f"\ncold: {len(large_files)} large files, {large_bytes / MiB:.0f} MiB; median of {repeats} "
          f"(references: {min(repeats, 3)}); {_load_note()}")
    print(f"  {'side':32} {'seconds':>9} {'GiB/s':>7} {'vs openssl':>11} {'best s':>8} {'vs openssl':>11}")
    med = {k: statistics.median(v) for k, v in times.items() if v}
    best = {k: min(v) for k, v in times.items() if v}
    base = med.get("openssl dgst -sha256")
    base_best = best.get("openssl dgst -sha256")
    for name, t in med.items():
        ratio = f"{base / t:10.2f}x" if base else "        n/a"
        ratio_best = f"{base_best / best[name]:10.2f}x" if base_best else "        n/a"
        print(f"  {name:32} {t:9.3f} {gib / t:7.2f} {ratio} {best[name]:8.3f} {ratio_best}")
    return med, base


def _warm_settings(work: Path):
    """Two images (web, worker) over the small context, on a local registry, with no preflight."""
    from components.config.schema import ImageSettings, RegistrySettings, Settings

    images = tuple(ImageSettings(name=t, context="small", dockerfile="small/Dockerfile", target=t,
                                 build_args={"APP_ENV": "bench"}) for t in ("web", "worker"))
    return Settings(stack="bench", region=None, registry=RegistrySettings(edition="local", namespace=None,
                    server="127.0.0.1:5000"), images=images, protect=False, retain_on_delete=False,
                    preflight=False, project_root=work)


def _publish_earlier_states(small: Path, settings) -> None:
    """Three earlier published states of both images in the history, then a plan of the current one, trusted."""
    from buildcontext.memo import RACY_WINDOW_NS
    from components.image import plan_builds

    probe = sorted(small.rglob("*.py"))[0]
    original = probe.read_bytes()
    for k in range(3):  # three earlier published states of both images
        probe.write_bytes(original + b"# earlier state %d\n" % k)
        plan_builds(settings)
    probe.write_bytes(original)
    # Entries of files whose mtime or ctime is within the racy window are not trusted yet; wait it out, then plan.
    newest = max(max(st.st_mtime_ns, st.st_ctime_ns) for st in map(os.lstat, _files(small)))
    wait = (newest + RACY_WINDOW_NS - time.time_ns()) / 1e9 + 0.1
    if wait > 0:
        time.sleep(wait)
    plan_builds(settings)
    plan_builds(settings)


def _warm_bench(ctx, small: Path, work: Path, repeats: int) -> tuple[float, float, float, float]:
    """Warm plan of two images against a bare walk of the small context; prints the table.

    Returns the median wall and CPU seconds of the bare walk and of the warm plan: (w, d, wc, dc)."""
    from buildcontext.dockerignore import walk_context
    from components.image import plan_builds

    settings = _warm_settings(work)
    _publish_earlier_states(small, settings)
    with ctx.ContextScan(small) as warm_scan:
        warm_reads = warm_scan.reads
    history_files = sorted((work / "cache" / "history").iterdir())
    sides_w = {
        "os.walk + lstat (bare)": lambda: _bare_walk(small),
        "plan_builds, 2 images (warm)": lambda: plan_builds(settings),
        "  context_digest, 1 image (warm)": lambda: ctx.context_digest(small),
        "  of which the file-set walk": lambda: sum(1 for _ in walk_context(small)),
    }
    wall: dict[str, list[float]] = {k: [] for k in sides_w}
    cpu: dict[str, list[float]] = {k: [] for k in sides_w}
    for _ in range(repeats):
        for name, fn in sides_w.items():
            w_, c_ = _timed_both(fn)
            wall[name].append(w_)
            cpu[name].append(c_)
    cold_small = statistics.median(_timed(lambda: ctx.context_digest(small, cache=False)) for _ in range(min(repeats, 3)))
    mw = {k: statistics.median(v) for k, v in wall.items()}
    mc = {k: statistics.median(v) for k, v in cpu.items()}
    w, d = mw["os.walk + lstat (bare)"], mw["plan_builds, 2 images (warm)"]
    wc, dc = mc["os.walk + lstat (bare)"], mc["plan_builds, 2 images (warm)"]
    history_bytes = sum(p.stat().st_size for p in history_files)
    small_count = sum(1 for _ in small.rglob("*.py"))
    print(f"\nwarm: {small_count} small files, 2 images; history: {len(history_files)} files, {history_bytes:,} bytes "
          f"(each image's last and previous published state); median of {repeats}; files re-read by a warm run: "
          f"{warm_reads}; {_load_note()}")
    bw = {k: min(v) for k, v in wall.items()}
    print(f"  {'side':34} {'wall s':>9} {'vs walk':>9} {'CPU s':>9} {'vs walk':>9} {'best s':>8} {'vs walk':>9}")
    for name in sides_w:
        print(f"  {name:34} {mw[name]:9.3f} {mw[name] / w:8.2f}x {mc[name]:9.3f} {mc[name] / wc:8.2f}x "
              f"{bw[name]:8.3f} {bw[name] / bw['os.walk + lstat (bare)']:8.2f}x")
    print(f"  {'context_digest (cold, ref.)':34} {cold_small:9.3f} {cold_small / w:8.2f}x")
    return w, d, wc, dc


def _print_targets(cold_median: float, base: float | None, warm: tuple[float, float, float, float],
                   quick: bool) -> None:
    w, d, wc, dc = warm
    print("\ntargets:")
    if base:
        cold_ratio = base / cold_median
        good = cold_ratio >= COLD_TARGET
        print(f"  cold >= {COLD_TARGET}x openssl: {cold_ratio:.2f}x  {'met' if good else 'NOT met'}")
    else:
        print("  cold: openssl not installed, no comparison")
    good = d / w <= WARM_TARGET
    print(f"  warm plan of 2 images <= {WARM_TARGET}x bare walk: {d / w:.2f}x wall ({dc / wc:.2f}x CPU)  "
          f"{'met' if good else 'NOT met'}")
    if quick:
        print("(--quick sizes are too small for the targets to mean anything)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not a measurement")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per side (default 5; quick 1)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work", help="where contexts are generated")
    parser.add_argument("--patterns-only", action="store_true", help="only the many-patterns comparison")
    opts = parser.parse_args(argv)
    repeats = opts.repeats or (1 if opts.quick else 5)
    work = opts.work / ("quick" if opts.quick else "full")
    if opts.patterns_only:
        _patterns_bench(work, opts.quick, repeats)
        return 0
    # The benchmark's stat cache lives with its contexts, never in the user's cache directory.
    os.environ["ACR_PUBLISH_CACHE_DIR"] = str(work / "cache")
    import buildcontext as ctx

    print(f"generating contexts under {work} ...", flush=True)
    small, large = _generate(work, _layout(opts.quick))
    _read_all(_files(large) + _files(small))  # page cache warm for every side
    cold, base = _cold_bench(ctx, large, repeats)
    warm = _warm_bench(ctx, small, work, repeats)
    _patterns_bench(work, opts.quick, repeats)
    _print_targets(cold["acr-publish digest (cold)"], base, warm, opts.quick)
    return 0

if __name__ == "__main__":
    sys.exit(main())
