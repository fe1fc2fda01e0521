"""Benchmark of the layer audit (`python -m cli.audit`) against dive, on the same image, side by side.

Run from the project root:  ./venv/bin/python bench/audit_bench.py [--repeats 3] [--big-gib 4]

* the image: 5 layers of random bytes (`--layer-mib`, default 205 MiB each, about 1 GiB in all), built FROM
  scratch with the local engine (BuildKit) and pushed to a Debian `docker-registry` on a loopback port
  (tests/e2e/registry.py); the image stays in the local engine for dive.
* each repeat runs, alternately, `python -m cli.audit <ref> --json` (reading the layers from the registry) and
  `CI=true dive <image> --json <file>` (dive v0.13.1 from scripts/install-dive.sh, reading the image from the local
  engine, its default source), each as a child process whose wall time and peak RSS (GNU time's %M) are
  measured. Reported: the medians, the ratio audit time / dive time (target: at most 0.5) and the audit's peak RSS
  (target: at most 64 MiB) with dive's beside it.
* `--big-gib N`: also an image of N GiB (5 layers of level-1 gzip of seeded pseudo-random bytes, pushed with the
  project's registry client, not through the engine: only the audit reads it) to show the audit's peak RSS does not
  grow with the image.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registryclient import OCI_MANIFEST, RegistryClient  # noqa: E402
from tests.e2e.registry import RegistryServer, find_registry_binary  # noqa: E402

MiB = 1 << 20
DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
DIVE = ROOT / ".tools" / "bin" / "dive"
USER = "bench"
TIME_TARGET = 0.5
RSS_TARGET_MIB = 64


def measured(command: list[str], env: dict[str, str], work: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, exit status) of one child process, through GNU time (Debian package `time`).

    Not `os.wait4` on a child of this script: Linux carries the parent's RSS high-water mark at fork into the
    child's ru_maxrss across exec, so every child would report at least this script's own RSS. GNU time is a small
    C program whose child starts from its few hundred KiB."""
    report = work / "time.out"
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(report), *command], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.monotonic() - start
    err = proc.stderr.decode(errors="replace")
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{command[0]} failed ({proc.returncode}): {err[-2000:]}")
    peak_kib = int(report.read_text().strip().splitlines()[-1])
    return elapsed, peak_kib / 1024, proc.returncode


def build_image(registry: RegistryServer, work: Path, layers: int, layer_mib: int) -> str:
    context = work / "context"
    context.mkdir(parents=True, exist_ok=True)
    for i in range(layers):
        path = context / f"layer{i}.bin"
        if not path.exists() or path.stat().st_size != layer_mib * MiB:
            with open(path, "wb") as f:
                for _ in range(layer_mib):
                    f.write(os.urandom(MiB))
    (context / "Dockerfile").write_text("FROM scratch\n" + "".join(f"COPY layer{i}.bin /data/layer{i}.bin\n"
                                                                  for i in range(layers)))
    name = f"{registry.server}/bench/audit:{layers}x{layer_mib}"
    subprocess.run([DOCKER, "build", "-q", "--platform", "linux/amd64", "-t", name, str(context)], check=True,
                   capture_output=True, timeout=1800, env={**os.environ, "DOCKER_BUILDKIT": "1"})
    login = subprocess.run([DOCKER, "login", "-u", USER, "--password-stdin", registry.server],
                           input=registry.password.encode(), capture_output=True, timeout=60)
    if login.returncode:
        raise SystemExit(login.stderr.decode())
    subprocess.run([DOCKER, "push", "-q", name], check=True, capture_output=True, timeout=3600)
    return name


def _pseudo_random_layer(seed: int, size: int):
    """A tar of one file of `size` seeded pseudo-random bytes, gzip level 1, in chunks."""
    rng = random.Random(seed)
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    info = tarfile.TarInfo(f"data/big{seed}.bin")
    info.size = size
    yield compressor.compress(info.tobuf(tarfile.PAX_FORMAT))
    left = size
    while left:
        n = min(4 * MiB, left)
        yield compressor.compress(rng.randbytes(n))
        left -= n
    yield compressor.compress(bytes(-size % 512) + bytes(1024))
    yield compressor.flush()


def push_big_image(registry: RegistryServer, gib: int) -> str:
    """An image of `gib` GiB in 5 layers, streamed into the registry twice per layer (digest, then upload)."""
    repository, tag = "bench/big", f"{gib}g"
    with RegistryClient(registry.server, USER, registry.password, allow_plain_http=True, timeout=600) as client:
        if client.manifest_digest(repository, tag):
            return f"{registry.server}/{repository}:{tag}"
        size = gib * 1024 * MiB // 5
        layers = []
        for seed in range(5):
            digest, length = hashlib.sha256(), 0
            for piece in _pseudo_random_layer(seed, size):
                digest.update(piece)
                length += len(piece)
            ref = f"sha256:{digest.hexdigest()}"
            client.put_blob(repository, ref, (p for p in _pseudo_random_layer(seed, size) if p))
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ref, "size": length})
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                             "history": [{"created_by": f"bench layer {i}"} for i in range(5)]}).encode()
        config_ref = f"sha256:{hashlib.sha256(config).hexdigest()}"
        client.put_blob(repository, config_ref, iter([config]))
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": config_ref, "size": len(config)}}).encode()
        client.put_manifest(repository, tag, OCI_MANIFEST, manifest)
    return f"{registry.server}/{repository}:{tag}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--layer-mib", type=int, default=205)
    parser.add_argument("--big-gib", type=int, default=0)
    opts = parser.parse_args()
    if not DIVE.exists():
        raise SystemExit(f"dive is not installed at {DIVE}: run scripts/install-dive.sh")
    binary = find_registry_binary()
    if binary is None:
        raise SystemExit("docker-registry is not installed (Debian package docker-registry)")
    work = ROOT / "bench" / ".work" / "audit"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as storage:
        with RegistryServer(binary=binary, workdir=Path(storage), username=USER,
                            password=secrets.token_urlsafe(18)) as registry:
            image = build_image(registry, work, opts.layers, opts.layer_mib)
            env = {**os.environ, "ACR_PUBLISH_REGISTRY_PASSWORD": registry.password, "CI": "true"}
            audit_cmd = [sys.executable, "-m", "cli.audit", image, "--json", "--username", USER]
            dive_out = work / "dive.json"
            dive_cmd = [str(DIVE), image, "--json", str(dive_out)]
            print(f"image {image}: {opts.layers} layers x {opts.layer_mib} MiB; load average "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
            runs: dict[str, list[tuple[float, float]]] = {"audit": [], "dive": []}
            for i in range(opts.repeats):
                for side, command in (("audit", audit_cmd), ("dive", dive_cmd)):
                    seconds, rss, _status = measured(command, env, work)
                    runs[side].append((seconds, rss))
                    print(f"  repeat {i + 1} {side:5}: {seconds:7.2f} s  peak RSS {rss:7.1f} MiB", flush=True)
            audit_t = statistics.median(t for t, _ in runs["audit"])
            dive_t = statistics.median(t for t, _ in runs["dive"])
            audit_rss = max(r for _, r in runs["audit"])
            dive_rss = max(r for _, r in runs["dive"])
            print(f"median: cli.audit {audit_t:.2f} s, dive {dive_t:.2f} s: ratio {audit_t / dive_t:.2f}x "
                  f"(target at most {TIME_TARGET}x)")
            print(f"peak RSS: cli.audit {audit_rss:.1f} MiB (target at most {RSS_TARGET_MIB} MiB), dive "
                  f"{dive_rss:.1f} MiB; load average {os.getloadavg()[0]:.1f} at the end")
            if opts.big_gib:
                big = push_big_image(registry, opts.big_gib)
                seconds, rss, _ = measured([sys.executable, "-m", "cli.audit", big, "--json", "--username", USER],
                                           env, work)
                print(f"{opts.big_gib} GiB image: cli.audit {seconds:.2f} s, peak RSS {rss:.1f} MiB")
            subprocess.run([DOCKER, "image", "rm", "-f", image], capture_output=True, timeout=120)


if __name__ == "__main__":
    main()
