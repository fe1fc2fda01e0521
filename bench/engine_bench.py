"""Benchmark of `pulumi up` / `pulumi preview` of the local stack (the real engine) against the manual flow.

Run from the project root:  ./venv/bin/python bench/engine_bench.py   (--repeats N, default 5; needs `make engine`)

One Debian `docker-registry` on loopback (htpasswd), the locally imported busybox base, a project checkout with its
own file backend (tests/e2e/engine.py). The stack's images are published first by the manual flow under the content
tags `cli.explain` computes, and the stack brought up once; then, alternately within each repeat, timed as whole
processes: the manual rerun (per image `docker build`, `docker tag ... :latest`, `docker push`), (b) `pulumi up
--yes` with nothing changed (target at most 1.0x the manual rerun) and (c) `pulumi preview` (target at most 0.8x).
(a), the first publish, needs the docker provider, which cannot be built here (docs/engine.md): not measured.
Where `pulumi up`'s time goes is read from one extra, untimed run with the engine's log (`-v=7 --logtostderr`).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.base_image import make_base_image, session_image_name  # noqa: E402
from tests.e2e.engine import ENGINE_BIN, Workspace, _engine_problem, publish_by_hand  # noqa: E402
from tests.e2e.publishing import USER, local_stack_overrides  # noqa: E402
from tests.e2e.registry import RegistryServer, find_registry_binary  # noqa: E402

DOCKER = "/usr/bin/docker"
TARGET_UP, TARGET_PREVIEW = 1.0, 0.8


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=600, **kwargs)
    return time.perf_counter() - start


def manual_rerun(workspace: Workspace, stack: str, server: str) -> float:
    """The manual flow once more for every image of the stack, nothing changed: build, tag, push."""
    import yaml

    config = yaml.safe_load((workspace.project / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    env = {**workspace.env, "DOCKER_CONFIG": str(workspace.root / "docker-config")}
    total = 0.0
    for image in config["acr-publish:images"]:
        tag = workspace.explain_tag(stack, image["name"])
        name = f"{server}/{config['acr-publish:registry']['namespace']}/{image['name']}"
        build = [DOCKER, "build", "--platform", image["platform"], "--target", image["target"], "-t", f"{name}:{tag}"]
        for key, value in image["buildArgs"].items():
            build += ["--build-arg", f"{key}={value}"]
        total += timed([*build, str(workspace.project / image["context"])], env=env)
        total += timed([DOCKER, "tag", f"{name}:{tag}", f"{name}:latest"], env=env)
        total += timed([DOCKER, "push", f"{name}:{tag}"], env=env)
    return total


def phases(workspace: Workspace, stack: str) -> dict[str, float]:
    """Where one `pulumi up` with nothing changed spends its time, from the engine's own log."""
    start = time.time()
    proc = subprocess.run(["pulumi", "up", "--yes", "--stack", stack, "--non-interactive", "-v=7", "--logtostderr"],
                          cwd=workspace.project, env=workspace.env, capture_output=True, text=True, timeout=600)
    end = time.time()
    marks: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        at = datetime.fromisoformat(record["time"].replace("Z", "+00:00")[:26] + "+00:00").timestamp()
        message = record.get("msg", "")
        marks.setdefault("first", at)
        if message.startswith("langhost[python].Run(") and "executing" in message:
            marks.setdefault("run", at)
        elif message.startswith("langhost[python].Run(") and ("success" in message or "failed" in message):
            marks["ran"] = at
    return {"CLI start": marks["first"] - start, "plugins": marks["run"] - marks["first"],
            "program": marks["ran"] - marks["run"], "steps and finish": end - marks["ran"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    problem = _engine_problem()
    binary = find_registry_binary()
    if problem or binary is None:
        print(f"error: {problem or 'docker-registry is not installed (.ci/provision-docker.sh)'}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        root = Path(tmp)
        base = make_base_image(DOCKER, session_image_name())
        registry = RegistryServer(binary=binary, workdir=root / "registry", username=USER)
        (root / "registry").mkdir()
        registry.start()
        try:
            workspace = Workspace(root / "ws", ENGINE_BIN)
            config = local_stack_overrides(registry.server, base)
            del config["acr-publish:registryPassword"]
            stack = workspace.new_stack(config)
            workspace.set_secret(stack, "acr-publish:registryPassword", registry.password)
            publish_by_hand(workspace, stack, registry.server, registry.username, registry.password, DOCKER)
            workspace.up(stack)[0].check()
            manual, up, preview = [], [], []
            for _ in range(args.repeats):
                manual.append(manual_rerun(workspace, stack, registry.server))
                up.append(timed(["pulumi", "up", "--yes", "--stack", stack, "--non-interactive"],
                                cwd=workspace.project, env=workspace.env))
                preview.append(timed(["pulumi", "preview", "--stack", stack, "--non-interactive"],
                                     cwd=workspace.project, env=workspace.env))
            spent = phases(workspace, stack)
        finally:
            registry.stop()
            subprocess.run([DOCKER, "image", "rm", base], capture_output=True, timeout=120)
    m, u, p = (statistics.median(x) for x in (manual, up, preview))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; repeats: {args.repeats}; engine: pulumi "
          f"{subprocess.run([str(ENGINE_BIN / 'pulumi'), 'version'], capture_output=True, text=True).stdout.strip()}")
    print("(a) first publish: not measured (the docker provider cannot be built here; docs/engine.md)")
    print(f"manual rerun (build+tag+push x2): median {m:.2f} s  {[round(x, 2) for x in manual]}")
    print(f"(b) pulumi up, nothing changed:   median {u:.2f} s  ratio {u / m:.2f}x (target <= {TARGET_UP}x)")
    print(f"(c) pulumi preview, nothing changed: median {p:.2f} s  ratio {p / m:.2f}x (target <= {TARGET_PREVIEW}x)")
    print("where one `pulumi up` (nothing changed) spends its time: "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in spent.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
