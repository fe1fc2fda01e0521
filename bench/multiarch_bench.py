"""Benchmark: an image for linux/amd64 and linux/arm64 published by the program against the manual flow.

Run from the project root:  ./venv/bin/python bench/multiarch_bench.py [--repeats 5]

A `docker-registry` on loopback (htpasswd), a second dockerd as the linux/arm64 builder (tests/e2e/second_engine.py:
own socket and roots, loopback-only network namespace), the busybox base imported on both. Each repeat changes one
file of app/www, so both sides build both platforms anew, then runs alternately: the program (the real
`__main__.py` of the local stack with `web` on both platforms and the second engine as arm64 builder, under mocks,
each `docker.Image` carried out by the pulumi-docker stand-in, the two platforms side by side on their engines as
the Pulumi engine runs independent resources in parallel, the index by the real `ImageIndex` provider in a
`python -m pulumi.dynamic` process, real preflight and published checks) and the manual flow, one step after the
other as the commands are typed (`docker build
--platform` per engine, `docker push` each, `docker manifest create` + `push`). Reported: the median wall time of
each side and the ratio program / manual (target: at most 1.1x).
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

from tests.e2e import second_engine  # noqa: E402
from tests.e2e.base_image import make_base_image, root_filesystem_tar, session_image_name  # noqa: E402
from tests.e2e.dynamic_engine import DynamicEngine, DynamicProviderProcess  # noqa: E402
from tests.e2e.publishing import NAMESPACE, USER, Publisher, copy_project  # noqa: E402
from tests.e2e.registry import RegistryServer, find_registry_binary  # noqa: E402
from tests.harness import TEST_SECRET  # noqa: E402

DOCKER = "/usr/bin/docker"
PLATFORMS = ["linux/amd64", "linux/arm64"]


def prepare_project(work: Path, engine, base: str) -> Path:
    """The base imported on the builder as linux/arm64; the project copy the program runs from."""
    subprocess.run([DOCKER, "-H", engine.host, "import", "--platform", "linux/arm64", "--change", 'CMD ["sh"]', "-",
                    base], input=root_filesystem_tar(), capture_output=True, check=True, timeout=120)
    return copy_project(work / "project")  # the program's files, buildcontext/ included


def docker_login(registry, engine, env: dict[str, str]) -> None:
    """`docker login` on both engines, for the manual side's pushes."""
    subprocess.run([DOCKER, "login", "-u", USER, "--password-stdin", registry.server], input=TEST_SECRET, env=env,
                   capture_output=True, text=True, check=True, timeout=60)
    subprocess.run([DOCKER, "-H", engine.host, "login", "-u", USER, "--password-stdin", registry.server],
                   input=TEST_SECRET, env=env, capture_output=True, text=True, check=True, timeout=60)


def manual_publish(registry, engine, base: str, project: Path, env: dict[str, str], repeat: int) -> None:
    """Build and push each platform on its engine, then create and push the manifest list."""
    repository = f"{registry.server}/{NAMESPACE}/manual"
    children = []
    for platform in PLATFORMS:
        host = ["-H", engine.host] if platform == "linux/arm64" else []
        name = f"{repository}:{repeat}-{platform.split('/')[1]}"
        subprocess.run([DOCKER, *host, "build", "-q", "--platform", platform, "--target", "web",
                        "--build-arg", f"BASE_IMAGE={base}", "--build-arg", "APP_ENV=bench",
                        "--build-arg", "BUILDKIT_INLINE_CACHE=1", "-t", name, str(project / "app")],
                       env=env, capture_output=True, check=True, timeout=600)
        subprocess.run([DOCKER, *host, "push", "-q", name], env=env, capture_output=True, check=True,
                       timeout=600)
        children.append(name)
    subprocess.run([DOCKER, "manifest", "create", "--insecure", f"{repository}:{repeat}", *children],
                   env=env, capture_output=True, check=True, timeout=300)
    subprocess.run([DOCKER, "manifest", "push", "--insecure", f"{repository}:{repeat}"], env=env,
                   capture_output=True, check=True, timeout=300)


def run_repeats(registry, engine, base: str, work: Path, project: Path, repeats: int) -> dict[str, list[float]]:
    """Each repeat: a changed file, then the program's publish and the manual flow, timed."""
    marker = project / "app" / "www" / "bench-marker.txt"
    # The base is an image in each engine's own store, in no registry: nothing to resolve (remoteInputs: ignore).
    config = {"acr-publish:images": [{"name": "web", "context": "app", "target": "web", "platforms": PLATFORMS,
                                      "buildArgs": {"BASE_IMAGE": base, "APP_ENV": "bench"},
                                      "remoteInputs": "ignore"}],
              "acr-publish:builders": {"linux/arm64": engine.host}}
    env = {**os.environ, "DOCKER_CONFIG": str(work / "docker-config")}
    docker_login(registry, engine, env)
    publisher = Publisher(registry, base, DOCKER)
    provider = DynamicProviderProcess(project).start()
    times: dict[str, list[float]] = {"program": [], "manual": []}
    try:
        for repeat in range(repeats):
            marker.write_text(f"program {repeat} {time.time_ns()}\n")
            started = time.perf_counter()
            run = publisher.run(project, "bench", work / "state", config=config, index_hook=DynamicEngine(provider))
            times["program"].append(time.perf_counter() - started)
            assert len(run.provider.builds) == 2 and run.stack.outputs["images"]["web"]["ref"]

            marker.write_text(f"manual {repeat} {time.time_ns()}\n")
            started = time.perf_counter()
            manual_publish(registry, engine, base, project, env, repeat)
            times["manual"].append(time.perf_counter() - started)
            print(f"repeat {repeat}: program {times['program'][-1]:.2f}s  manual {times['manual'][-1]:.2f}s",
                  flush=True)
    finally:
        provider.stop()
        publisher.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="multiarch-bench-cache-"))
    work = Path(tempfile.mkdtemp(prefix="multiarch-bench-"))
    registry = RegistryServer(binary=find_registry_binary(), workdir=work / "registry", username=USER,
                              password=TEST_SECRET).start()
    engine = second_engine.start([int(registry.server.rsplit(":", 1)[1])], ROOT)
    base = make_base_image(DOCKER, session_image_name())
    try:
        project = prepare_project(work, engine, base)
        times = run_repeats(registry, engine, base, work, project, options.repeats)
    finally:
        engine.stop()
        registry.stop()
        subprocess.run([DOCKER, "image", "rm", base], capture_output=True, timeout=60)
    program, manual = statistics.median(times["program"]), statistics.median(times["manual"])
    load = os.getloadavg()[0]
    print(f"median of {options.repeats}: program {program:.2f}s, manual {manual:.2f}s, ratio {program / manual:.2f}x "
          f"(target: at most 1.1x; load average {load:.1f})")
    return 0

if __name__ == "__main__":
    sys.exit(main())
