"""Benchmark of the registry layer cache: an update on an emptied engine with `cacheFrom` against without.

Run from the project root:  ./venv/bin/python bench/cache_bench.py   (add --quick for a smoke run)

Needs the Docker engine (buildx), Debian's docker-registry and busybox-static, as the e2e suite; everything goes
through the pulumi-docker stand-in (tests/e2e/docker_harness.py) against a real registry with htpasswd auth on a
loopback port, as a CI runner with an empty engine runs `pulumi up`. Per repeat: a fresh sample (a dependency stage
taking --dep-seconds, then a small app layer; tests/e2e/layer_cache.py) built with BUILDKIT_INLINE_CACHE=1 and
pushed as the stack's last image, one app file changed, then side "without" (engine emptied, update) and side
"with cacheFrom" (engine emptied, update with `build.cacheFrom` = the last image). The sides alternate and their
order flips every repeat; the ratio of the medians is judged (target: at most 0.3x). Only what the benchmark made
is removed; the locally made base image is kept, as a CI runner's base layers would be.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.base_image import make_base_image, session_image_name  # noqa: E402
from tests.e2e.docker_harness import DockerImageProvider, _Inputs  # noqa: E402
from tests.e2e.layer_cache import DEP_STEP, cache_ids, empty_engine, new_token, step_cached, write_sample  # noqa: E402
from tests.e2e.registry import RegistryServer, find_registry_binary  # noqa: E402

DOCKER = "/usr/bin/docker"
TARGET = 0.3
USER = "bench"
STACK = "bench-cache"


def _inputs(repository: str, tag: str, base: str, registry: RegistryServer, cache_from: str | None) -> dict:
    build = {"context": "sample", "dockerfile": "sample/Dockerfile", "platform": "linux/amd64",
             "args": {"BASE_IMAGE": base, "BUILDKIT_INLINE_CACHE": "1"}, "builderVersion": "BuilderBuildKit"}
    if cache_from:
        build["cacheFrom"] = {"images": [cache_from]}
    return {"imageName": f"{repository}:{tag}", "build": build, "skipPush": False,
            "registry": {"server": registry.server, "username": USER, "password": registry.password}}


def _repeat(work: Path, registry: RegistryServer, base: str, dep_seconds: int, with_first: bool) -> dict[str, float]:
    """One repeat: returns {"without": seconds, "with": seconds} of the two timed updates."""
    token = new_token()
    before = cache_ids(DOCKER)
    project = work / token
    write_sample(project / "sample", token, dep_seconds)
    repository = f"{registry.server}/bench/{token}"
    provider = DockerImageProvider(project / "state", DOCKER, project_root=project)
    last = f"{repository}:v1"
    try:
        provider.apply(STACK, "app-image", _Inputs(_inputs(repository, "v1", base, registry, None)))
        (project / "sample" / "app" / "main.txt").write_text(f"version 2 of {token}\n")
        times: dict[str, float] = {}
        for side in (["with", "without"] if with_first else ["without", "with"]):
            empty_engine(DOCKER, token, sorted(provider.image_names) + provider.image_ids, before)
            inputs = _inputs(repository, f"v2-{side}", base, registry, last if side == "with" else None)
            start = time.perf_counter()
            provider.apply(STACK, "app-image", _Inputs(inputs))
            times[side] = time.perf_counter() - start
            cached = step_cached(provider.builds[-1].log, DEP_STEP)
            if cached is not (side == "with"):
                raise SystemExit(f"side {side!r}: BuildKit reported the dependency step cached={cached}; "
                                 "the comparison would be meaningless")
        return times
    finally:
        empty_engine(DOCKER, token, sorted(provider.image_names) + provider.image_ids
                     + [p.image for p in provider.pulls], before)
        provider.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dep-seconds", type=int, default=6, help="how long the dependency stage takes")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, a 2 s dependency stage")
    options = parser.parse_args(argv)
    repeats, dep_seconds = (1, 2) if options.quick else (options.repeats, options.dep_seconds)
    binary = find_registry_binary()
    if binary is None:
        raise SystemExit("docker-registry is not installed (Debian package docker-registry)")
    with tempfile.TemporaryDirectory(prefix="acr-publish-cache-bench-") as tmp:
        work = Path(tmp)
        base = make_base_image(DOCKER, session_image_name())
        registry = RegistryServer(binary=binary, workdir=work / "registry", username=USER).start()
        try:
            runs = [_repeat(work, registry, base, dep_seconds, with_first=i % 2 == 1) for i in range(repeats)]
        finally:
            registry.stop()
            subprocess.run([DOCKER, "image", "rm", base], capture_output=True, timeout=60)
    without = statistics.median(r["without"] for r in runs)
    with_cache = statistics.median(r["with"] for r in runs)
    ratio = with_cache / without
    load = os.getloadavg()[0]
    print(f"update of a changed app file on an emptied engine; dependency stage {dep_seconds} s; "
          f"median of {repeats}; load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"  {'side':36} {'median s':>9} {'best s':>8} {'vs without':>11}")
    print(f"  {'without cacheFrom (build + push)':36} {without:9.2f} {min(r['without'] for r in runs):8.2f} "
          f"{1.0:10.2f}x")
    print(f"  {'cacheFrom (pull + build + push)':36} {with_cache:9.2f} {min(r['with'] for r in runs):8.2f} "
          f"{ratio:10.2f}x")
    verdict = "meets" if ratio <= TARGET else "MISSES"
    print(f"cacheFrom takes {ratio:.2f}x the time without: {verdict} the target of at most {TARGET}x")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
