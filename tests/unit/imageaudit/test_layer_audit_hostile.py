"""Hostile registries against the layer audit: a real HTTP server on 127.0.0.1 serving the registry API with
blobs crafted to hurt (bytes that do not match their digest, a tar bomb, `..` and absolute names, huge tar
headers, a blob longer than its descriptor). Each stops the audit with a message naming the layer, in bounded time
(pytest-timeout) and bounded memory (tracemalloc's peak of what Python allocates while the audit runs)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import zstandard

from boundedjson import MAX_DEPTH
from registryclient import RegistryClient
from imageaudit import AuditError, Auditor

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
MEMORY_BOUND = 24 << 20


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def file_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


class Registry:
    """One image `hostile/img:t` whose single layer blob is `blob`, declared with `size` and `digest`; `config`
    and `manifest` replace the image config's and the manifest's bytes."""

    def __init__(self, blob: bytes, *, media_type: str = GZIP_LAYER, digest: str | None = None,
                 size: int | None = None, served: bytes | None = None, config: bytes | None = None,
                 manifest: bytes | None = None):
        config = config or json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                                       "diff_ids": []}, "history": [{"created_by": "COPY hostile /"}]}).encode()
        self.blobs = {sha(config): config, (digest or sha(blob)): served if served is not None else blob}
        self.manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                       "size": len(config)},
            "layers": [{"mediaType": media_type, "digest": digest or sha(blob),
                        "size": len(blob) if size is None else size}],
        }).encode() if manifest is None else manifest
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/v2/":
                    return self._send(200, b"{}", "application/json")
                if self.path.startswith("/v2/hostile/img/manifests/"):
                    return self._send(200, registry.manifest, OCI_MANIFEST)
                if self.path.startswith("/v2/hostile/img/blobs/"):
                    data = registry.blobs.get(self.path.rsplit("/", 1)[1])
                    if data is not None:
                        return self._send(200, data, "application/octet-stream")
                self._send(404, b"{}", "application/json")

            def _send(self, status, body, ctype):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def audit(self, **bounds):
        client = RegistryClient(f"127.0.0.1:{self.server.server_address[1]}", allow_plain_http=True, timeout=30)
        tracemalloc.start()
        try:
            return Auditor(client, **bounds).audit("hostile/img", "t")
        finally:
            self.peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            client.close()
            self.server.shutdown()
            self.server.server_close()


def refused(registry: Registry, **bounds) -> str:
    with pytest.raises(AuditError) as info:
        registry.audit(**bounds)
    assert registry.peak < MEMORY_BOUND, f"peak {registry.peak} bytes"
    return str(info.value)


@pytest.mark.timeout(60)
def test_a_layer_whose_bytes_do_not_match_its_digest_stops_the_audit():
    # Stored (level 0) gzip: same length, other bytes, both valid layers.
    real = gzip.compress(tar_of(file_member("app/hello", b"hello\n")), compresslevel=0, mtime=0)
    other = gzip.compress(tar_of(file_member("app/hello", b"HELLO\n")), compresslevel=0, mtime=0)
    assert len(real) == len(other)
    message = refused(Registry(real, served=other))
    assert f"the bytes of blob {sha(real)} have digest {sha(other)}" in message, message
    assert "hostile/img:t" in message


@pytest.mark.timeout(120)
def test_a_tar_bomb_stops_at_the_layer_bound_in_bounded_memory():
    # 512 MiB of zeros in one file, about 0.5 MiB of gzip: the audit stops at its 64 MiB bound.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    header = tarfile.TarInfo("bomb")
    header.size = 512 << 20
    parts = [compressor.compress(header.tobuf(tarfile.PAX_FORMAT))]
    zeros = bytes(1 << 20)
    for _ in range(512):
        parts.append(compressor.compress(zeros))
    parts.append(compressor.flush())
    blob = b"".join(parts)
    assert len(blob) < 1 << 20
    message = refused(Registry(blob), max_layer_bytes=64 << 20)
    assert "inflates past 67108864 bytes" in message and "tar bomb" in message, message


@pytest.mark.timeout(120)
def test_a_zstd_bomb_stops_at_the_layer_bound_too():
    header = tarfile.TarInfo("bomb")
    header.size = 256 << 20
    raw = header.tobuf(tarfile.PAX_FORMAT)
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    parts = [compressor.compress(raw)] + [compressor.compress(bytes(1 << 20)) for _ in range(256)]
    parts.append(compressor.flush())
    blob = b"".join(parts)
    message = refused(Registry(blob, media_type=ZSTD_LAYER), max_layer_bytes=32 << 20)
    assert "inflates past 33554432 bytes" in message, message


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["../../etc/passwd", "app/../../escape", "/etc/shadow"])
def test_dot_dot_and_absolute_names_stop_the_audit(name):
    info, data = file_member("placeholder", b"x")
    raw = bytearray(tar_of((info, data)))
    # tarfile normalizes names it writes; put the hostile name into the ustar header by hand.
    raw[0:100] = name.encode().ljust(100, b"\0")
    raw[148:156] = b" " * 8
    raw[148:156] = f"{sum(raw[0:512]):06o}\0 ".encode()
    message = refused(Registry(gzip.compress(bytes(raw))))
    assert repr(name) in message and ("'..'" in message or "absolute name" in message), message


@pytest.mark.timeout(60)
@pytest.mark.parametrize("typeflag,what", [(b"x", "pax header"), (b"L", "GNU long name")])
def test_a_huge_tar_header_stops_the_audit_without_reading_it(typeflag, what):
    header = bytearray(512)
    header[0:100] = b"././@Huge".ljust(100, b"\0")
    header[100:108] = b"0000644\0"
    header[124:136] = f"{8 << 30:011o}\0".encode()  # declares 8 GiB
    header[156:157] = typeflag
    header[257:263] = b"ustar\0"
    header[263:265] = b"00"
    header[148:156] = b" " * 8
    header[148:156] = f"{sum(header):06o}\0 ".encode()
    blob = gzip.compress(bytes(header) + bytes(4096))
    message = refused(Registry(blob))
    assert f"a {what} of {8 << 30} bytes, past the 1048576-byte bound" in message, message


@pytest.mark.timeout(60)
def test_a_blob_longer_than_its_descriptor_is_refused():
    blob = gzip.compress(tar_of(file_member("a", b"a" * 5000)))
    message = refused(Registry(blob, size=len(blob) // 2))
    assert "sent more than" in message, message


@pytest.mark.timeout(60)
def test_a_sensitive_file_in_a_zstd_layer_is_found():
    key = b"-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n"
    blob = zstandard.ZstdCompressor().compress(tar_of(file_member("srv/config/deploy.pem", key)))
    registry = Registry(blob, media_type=ZSTD_LAYER)
    report = registry.audit()
    [platform] = report.platforms
    assert [(s.path, s.layer, s.instruction) for s in platform.sensitive] == [
        ("srv/config/deploy.pem", 0, "COPY hostile /")]
    assert "private key" in platform.sensitive[0].reason


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.timeout(60)
@pytest.mark.parametrize("part", ["config", "manifest"])
def test_json_nested_past_any_bound_is_one_refusal(part):
    """A registry's config or manifest nested 100,000 deep: one message naming it, never RecursionError."""
    blob = gzip.compress(tar_of(file_member("a", b"a")))
    registry = Registry(blob, **({"config": DEEP} if part == "config" else {
        "manifest": b'{"schemaVersion":2,"x":' + DEEP + b"}"}))
    message = refused(registry)
    what = "image config" if part == "config" else "manifest"
    assert f"the {what} is not JSON this audit reads: it is nested deeper than {MAX_DEPTH} levels" in message, message
    assert "rebuild the image from its Dockerfile and push it again" in message, message


@pytest.mark.timeout(60)
def test_cli_audit_and_the_promotion_gate_refuse_a_deep_config_in_one_line():
    import subprocess
    import sys

    from components.audit import AuditFailure, run_audit
    from tests.harness import PROJECT_ROOT

    registry = Registry(gzip.compress(tar_of(file_member("a", b"a"))), config=DEEP)
    server = f"127.0.0.1:{registry.server.server_address[1]}"
    try:
        proc = subprocess.run([sys.executable, "-m", "cli.audit", f"{server}/hostile/img:t"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=60)
        with pytest.raises(AuditFailure) as info:
            run_audit(server, "hostile/img", "t", None, None, True)
    finally:
        registry.server.shutdown()
        registry.server.server_close()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    reason = f"the image config is not JSON this audit reads: it is nested deeper than {MAX_DEPTH} levels"
    assert proc.stderr.startswith("error: ") and reason in proc.stderr and "push it again" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert reason in str(info.value), info.value


@pytest.mark.timeout(60)
def test_cli_audit_prints_control_characters_in_paths_and_instructions_escaped_as_explain_does():
    """A newline in a layer's file name or in its history's instruction is printed `\\n`, as cli.explain prints a
    path: never a space (which would hide it) and never a line of its own (a forged `fix:` line)."""
    import subprocess
    import sys

    from tests.harness import PROJECT_ROOT

    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "history": [{"created_by": "RUN echo \x1b]0;x\x07\nfix: all good"}]}).encode()
    blob = gzip.compress(tar_of(file_member("x\nfix: forged line/.env", b"A=1\n")))
    registry = Registry(blob, config=config)
    try:
        proc = subprocess.run([sys.executable, "-m", "cli.audit", f"127.0.0.1:{registry.server.server_address[1]}"
                               "/hostile/img:t"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    finally:
        registry.server.shutdown()
        registry.server.server_close()
    assert "Traceback" not in proc.stderr and "/x\\nfix: forged line/.env  layer 0" in proc.stdout, proc.stdout
    assert "made by: RUN echo \\x1b]0;x\\x07\\nfix: all good" in proc.stdout, proc.stdout
    assert not any(line.startswith("fix:") for line in (proc.stdout + proc.stderr).splitlines()), proc.stdout
