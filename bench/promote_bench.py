"""Benchmark of the promotion copy (components/copy.py) against `skopeo copy`, on real registries.

Run from the project root:  ./venv/bin/python bench/promote_bench.py   (add --quick for a smoke run)

Two Debian `docker-registry` processes on loopback (tests/e2e/registry.py, htpasswd), the first also behind a
counting reverse proxy that records the bytes of every response body it forwards; an image of random,
incompressible layers (--layers x --layer-mib) pushed to the first. Same host: promote it to another repository
through the proxy; reported: the bytes forwarded from the source repository's blob endpoints (target: 0, every blob
mounted), and the same count for `skopeo copy`. Across registries: promote to the second registry against `skopeo
copy --preserve-digests`, each repeat into repositories neither side has written, the sides alternating; reported:
the median wall time per side and the throughput ratio skopeo / promotion (target: at least 1.0x).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import secrets
import shutil
import socketserver
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from components.copy import copy_image  # noqa: E402
from registryclient.login import RegistryLogin  # noqa: E402
from registryclient import DOCKER_MANIFEST, RegistryClient  # noqa: E402
from tests.e2e.registry import RegistryServer, find_registry_binary  # noqa: E402

MiB = 1 << 20
TARGET = 1.0
USER = "bench"


class CountingProxy(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A reverse proxy to one registry that counts the response body bytes it forwards, per request path."""

    daemon_threads = True

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, int]] = []
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def reset(self) -> None:
        with self.lock:
            self.log.clear()

    def blob_bytes(self, repository: str) -> int:
        """Bytes forwarded in answers to GET /v2/<repository>/blobs/... since the last reset."""
        prefix = f"/v2/{repository}/blobs/sha256:"
        with self.lock:
            return sum(n for method, path, n in self.log if method == "GET" and path.startswith(prefix))


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        proxy: CountingProxy = self.server  # type: ignore[assignment]
        length = self.headers.get("Content-Length")
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        upstream = http.client.HTTPConnection(proxy.upstream, timeout=300)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "transfer-encoding",
                                                                           "content-length", "connection")}
        headers["Host"] = proxy.upstream
        if chunked:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                upstream.putheader(k, v)
            upstream.putheader("Transfer-Encoding", "chunked")
            upstream.endheaders()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                upstream.send(b"%x\r\n" % size + self.rfile.read(size) + b"\r\n")
                self.rfile.readline()
            upstream.send(b"0\r\n\r\n")
        else:
            body = self.rfile.read(int(length)) if length else None
            upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        self.send_response_only(response.status, response.reason)
        for k, v in response.getheaders():
            if k.lower() in ("transfer-encoding", "connection"):
                continue
            if k.lower() == "location" and v.startswith(f"http://{proxy.upstream}"):
                v = v.replace(proxy.upstream, proxy.server, 1)
            self.send_header(k, v)
        data_length = response.getheader("Content-Length")
        forwarded = 0
        if data_length is None and self.command != "HEAD":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while piece := response.read1(MiB):
                self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                forwarded += len(piece)
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.end_headers()
            if self.command != "HEAD":
                while piece := response.read1(MiB):
                    self.wfile.write(piece)
                    forwarded += len(piece)
        upstream.close()
        with proxy.lock:
            proxy.log.append((self.command, self.path.split("?")[0], forwarded))

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward


def random_layer(size: int) -> bytes:
    """A gzipped tar holding one file of random bytes (incompressible, like real compressed layers)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"data-{secrets.token_hex(4)}.bin")
        info.size, info.mtime = size, 0
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


def push_image(server: str, password: str, repository: str, layers: list[bytes], user: str = USER) -> str:
    """Upload layers, a config and a Docker v2 manifest; returns the manifest digest."""
    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [digest(gzip.decompress(l)) for l in layers]}}
                        ).encode()
    with RegistryClient(server, user, password, allow_plain_http=True) as client:
        for blob in (config, *layers):
            client.put_blob(repository, digest(blob), iter([blob]))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                       "digest": digest(config)},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(l),
                        "digest": digest(l)} for l in layers],
        }).encode()
        return client.put_manifest(repository, "source", DOCKER_MANIFEST, manifest)


def skopeo_copy(skopeo: str, src: str, dst: str, password: str, auth_dir: Path) -> float:
    start = time.perf_counter()
    subprocess.run([skopeo, "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false",
                    "--dest-tls-verify=false", "--src-creds", f"{USER}:{password}", "--dest-creds",
                    f"{USER}:{password}", f"docker://{src}", f"docker://{dst}"],
                   check=True, capture_output=True, timeout=900,
                   env={**os.environ, "REGISTRY_AUTH_FILE": str(auth_dir / "auth.json"), "HOME": str(auth_dir)})
    return time.perf_counter() - start


def same_host(proxy: CountingProxy, counted: RegistryLogin, digest: str, skopeo: str, password: str,
              work: Path) -> int:
    """Promote within one registry through the counting proxy, then skopeo; prints the table. Returns the layer
    bytes our promotion read from the source repository."""
    proxy.reset()
    report = copy_image(counted, "demo/big", digest, counted, "release/big", "promoted")
    ours_read = proxy.blob_bytes("demo/big")
    proxy.reset()
    skopeo_copy(skopeo, f"{proxy.server}/demo/big@{digest}", f"{proxy.server}/skopeo/big:promoted", password, work)
    skopeo_read = proxy.blob_bytes("demo/big")
    print("\nsame host (one registry, demo/big -> another repository):")
    print(f"  side                         layer bytes read from the source   blobs mounted   streamed")
    print(f"  acr-publish promotion        {ours_read:>32}   {len(report.mounted):>13}   "
          f"{len(report.streamed):>8}")
    print(f"  skopeo copy                  {skopeo_read:>32}")
    return ours_read


def across_registries(first: RegistryServer, second: RegistryServer, skopeo: str, password: str,
                      work: Path, layers: tuple[int, int], repeats: int) -> tuple[list[float], list[float]]:
    """Each repeat: a fresh image copied by our promotion and by skopeo, alternately first. Returns both times.

    skopeo remembers in its blob-info cache where it has seen each blob and mounts from there on the next copy;
    so every repeat copies a fresh image (new random layers), which neither side has seen."""
    layer_count, layer_mib = layers
    src = RegistryLogin(first.server, USER, password, True)
    dst = RegistryLogin(second.server, USER, password, True)
    ours, theirs = [], []
    for i in range(repeats):
        fresh = [random_layer(layer_mib * MiB) for _ in range(layer_count)]
        repo = f"demo/big{i}"
        image = push_image(first.server, password, repo, fresh)
        def run_ours() -> None:
            start = time.perf_counter()
            copy_image(src, repo, image, dst, f"ours{i}/big", "promoted")
            ours.append(time.perf_counter() - start)

        def run_theirs() -> None:
            theirs.append(skopeo_copy(skopeo, f"{first.server}/{repo}@{image}",
                                      f"{second.server}/skopeo{i}/big:promoted", password, work))
        for side in ((run_ours, run_theirs) if i % 2 == 0 else (run_theirs, run_ours)):
            side()
        assert second.manifest_digest(f"ours{i}/big", "promoted") == image
        assert second.manifest_digest(f"skopeo{i}/big", "promoted") == image
    return ours, theirs


def print_across(ours: list[float], theirs: list[float], size: int) -> tuple[float, float]:
    mo, ms = statistics.median(ours), statistics.median(theirs)
    print("\nacross registries (direct, no proxy):")
    print("  side                         median s    MiB/s   best s   vs skopeo (throughput)")
    print(f"  acr-publish promotion        {mo:>8.3f} {size / MiB / mo:>8.1f} {min(ours):>8.3f}   {ms / mo:.2f}x")
    print(f"  skopeo copy --preserve-digests {ms:>6.3f} {size / MiB / ms:>8.1f} {min(theirs):>8.3f}   1.00x")
    return mo, ms


def compare(first: RegistryServer, second: RegistryServer, skopeo: str, password: str, work: Path,
            layers: tuple[int, int], repeats: int, quick: bool) -> bool:
    """Both comparisons on two running registries; True when the targets are met (--quick: the first only)."""
    layer_count, layer_mib = layers
    p1 = CountingProxy(first.server)
    image_layers = [random_layer(layer_mib * MiB) for _ in range(layer_count)]
    size = sum(map(len, image_layers))
    digest = push_image(p1.server, password, "demo/big", image_layers)
    # Same host through the counting proxy; across registries direct, so the proxy's own speed (one Python
    # thread per connection) limits neither side.
    counted = RegistryLogin(p1.server, USER, password, True)
    print(f"image: {layer_count} layers, {size / MiB:.1f} MiB, {digest}; repeats: {repeats}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    ours_read = same_host(p1, counted, digest, skopeo, password, work)
    ours, theirs = across_registries(first, second, skopeo, password, work, layers, repeats)
    mo, ms = print_across(ours, theirs, size)
    print("\ntargets:")
    print(f"  same host: layer bytes read from the source = 0: {ours_read}  "
          f"{'met' if ours_read == 0 else 'NOT met'}")
    print(f"  across registries >= {TARGET:.1f}x skopeo: {ms / mo:.2f}x  {'met' if ms / mo >= TARGET else 'NOT met'}")
    return ours_read == 0 and (quick or ms / mo >= TARGET)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small image and one repeat: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per side (default 5; quick 1)")
    parser.add_argument("--layers", type=int, default=None, help="layers of the image (default 4; quick 2)")
    parser.add_argument("--layer-mib", type=int, default=None, help="MiB per layer (default 64; quick 2)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)
    layer_count = args.layers or (2 if args.quick else 4)
    layer_mib = args.layer_mib or (2 if args.quick else 64)
    binary, skopeo = find_registry_binary(), shutil.which("skopeo")
    if binary is None or skopeo is None:
        print("needs Debian's docker-registry and skopeo (apt-get install -y docker-registry skopeo; "
              ".ci/provision-docker.sh installs both)", file=sys.stderr)
        return 2
    password = secrets.token_urlsafe(18)
    with tempfile.TemporaryDirectory(prefix="promote-bench-") as tmp:
        work = Path(tmp)
        first = RegistryServer(binary=binary, workdir=work / "r1", username=USER, password=password).start()
        second = RegistryServer(binary=binary, workdir=work / "r2", username=USER, password=password).start()
        try:
            ok = compare(first, second, skopeo, password, work, (layer_count, layer_mib), repeats, args.quick)
        finally:
            first.stop()
            second.stop()
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
