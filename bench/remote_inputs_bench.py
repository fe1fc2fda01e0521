"""Benchmark of plan time with base images resolved (remoteInputs: resolve) against the same plan without
(remoteInputs: ignore), side by side in one process.

Run from the project root:  ./venv/bin/python bench/remote_inputs_bench.py   (add --quick for a smoke run)

The stack: 4 images over 3 distinct bases held by a local `docker-registry` (htpasswd, the stack's own registry,
so each resolution logs in and asks a Bearer-free Basic registry like the local edition): web and worker share
one context and Dockerfile (FROM base/a, targets web and worker), api has its own context (FROM base/b), and
jobs shares api's context with another Dockerfile (FROM base/c and COPY --from base/a). Each context holds
--files small files (default 2,000). Before timing, both sides plan once, so the stat cache is warm and trusted and
the explain history holds the current states. The timed call is components/image.py plan_builds, the call the
program makes before declaring anything; the sides run alternately within each repeat so background load hits
them alike. Target: the resolving plan at most 1.25x the ignoring one (median).
"""
from __future__ import annotations

import argparse
import gzip
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.promote_bench import push_image  # noqa: E402
from components import image as image_module  # noqa: E402
from registryclient.login import RegistryLogin  # noqa: E402
from components.config.schema import INLINE_CACHE_ARG, ImageSettings, RegistrySettings, Settings  # noqa: E402
from tests.e2e.registry import RegistryServer, find_registry_binary  # noqa: E402

TARGET = 1.25
USER = "bench"


def write_project(root: Path, server: str, files: int) -> None:
    for ctx in ("web", "api"):
        for i in range(files):
            path = root / ctx / f"d{i % 40}" / f"f{i}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{ctx} {i}\n")
    (root / "web" / "Dockerfile").write_text(
        f"FROM {server}/base/a:source AS base\nCOPY . /srv\nFROM base AS web\nCMD [\"web\"]\n"
        "FROM base AS worker\nCMD [\"worker\"]\n")
    (root / "api" / "Dockerfile").write_text(f"FROM {server}/base/b:source\nCOPY . /srv\n")
    (root / "api" / "jobs.Dockerfile").write_text(
        f"FROM {server}/base/c:source\nCOPY --from={server}/base/a:source /bin /tools\nCOPY . /srv\n")


def settings_for(root: Path, server: str, mode: str) -> Settings:
    args = dict([INLINE_CACHE_ARG])

    def image(name: str, context: str, dockerfile: str, target: str | None = None) -> ImageSettings:
        return ImageSettings(name=name, context=context, dockerfile=f"{context}/{dockerfile}", target=target,
                             build_args=args, remote_inputs=mode)

    images = (image("web", "web", "Dockerfile", "web"), image("worker", "web", "Dockerfile", "worker"),
              image("api", "api", "Dockerfile"), image("jobs", "api", "jobs.Dockerfile"))
    return Settings(stack=f"bench-{mode}", region=None,
                    registry=RegistrySettings(edition="local", namespace=None, server=server), images=images,
                    protect=False, retain_on_delete=False, preflight=False, project_root=root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 files per context, 3 repeats: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per side (default 15; quick 3)")
    parser.add_argument("--files", type=int, default=None, help="files per context (default 2000; quick 200)")
    opts = parser.parse_args(argv)
    repeats = opts.repeats or (3 if opts.quick else 15)
    files = opts.files or (200 if opts.quick else 2000)
    binary = find_registry_binary()
    if binary is None:
        print("docker-registry is not installed (Debian package docker-registry)", file=sys.stderr)
        return 2
    # The ignore side warns once per image per plan: not what is measured, and not printed.
    image_module.pulumi.log.warn = lambda *args, **kwargs: None
    work = Path(tempfile.mkdtemp(prefix="remote-inputs-bench-"))
    os.environ["ACR_PUBLISH_CACHE_DIR"] = str(work / "cache")
    password = secrets.token_urlsafe(18)
    registry = RegistryServer(binary=binary, workdir=work / "registry", username=USER, password=password).start()
    try:
        for name in ("a", "b", "c"):
            push_image(registry.server, password, f"base/{name}", [gzip.compress(secrets.token_bytes(64))], user=USER)
        root = work / "project"
        write_project(root, registry.server, files)
        login = RegistryLogin(registry.server, USER, password, allow_plain_http=True)
        sides = {"resolve": settings_for(root, registry.server, "resolve"),
                 "ignore": settings_for(root, registry.server, "ignore")}
        for mode, settings in sides.items():  # warm: stat cache written and trusted, history recorded
            image_module.plan_builds(settings, login)
        time.sleep(2.5)  # past the stat cache's racy window, so every entry is trusted
        for settings in sides.values():
            image_module.plan_builds(settings, login)
        times: dict[str, list[float]] = {mode: [] for mode in sides}
        for _ in range(repeats):
            for mode, settings in sides.items():
                start = time.perf_counter()
                plans = image_module.plan_builds(settings, login)
                times[mode].append(time.perf_counter() - start)
                assert len(plans) == 4
        resolve, ignore = statistics.median(times["resolve"]), statistics.median(times["ignore"])
        ratio = resolve / ignore
        print(f"stack: 4 images, 3 distinct bases on {registry.server} (htpasswd), {files} files per context, "
              f"{repeats} repeats, warm stat cache")
        for mode, value in (("ignore", ignore), ("resolve", resolve)):
            best_ms = min(times[mode]) * 1000
            print(f"  plan, remoteInputs: {mode:8} median {value * 1000:8.1f} ms  best {best_ms:8.1f} ms")
        best = min(times["resolve"]) / min(times["ignore"])
        print(f"  resolve / ignore: {ratio:.2f}x (best {best:.2f}x); target <= {TARGET}x: "
              f"{'met' if ratio <= TARGET else 'MISSED'}")
        return 0
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
