"""The layer audit reads a tar as Go's archive/tar does (what Docker and containerd apply), so no file a layer
installs is hidden from it. Each case's expected listing is what Go's archive/tar lists for the same bytes (checked
with a Go lister over these exact tars). Where this reader cannot be exact (GNU sparse files) the layer is
refused."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from components.audit import AuditFailure, breaches, refuse_sensitive_source, run_audit
from imageaudit import AuditError
from imageaudit.audit import BYTES_PER_ENTRY
from imageaudit.layerstream import LayerStream
from imageaudit.tarscan import TarError, entries
from tests.harness import PROJECT_ROOT
from tests.tarcraft import ENV, GNU, KEY, end, file, header, long_name, pad, pax
from tests.unit.imageaudit.test_layer_audit_hostile import Registry, sha

TAR_LAYER = "application/vnd.oci.image.layer.v1.tar"
HIDDEN = file("root/.ssh/id_rsa", KEY)

CASES = {
    # Directory, link, device and fifo headers carry no data whatever size they declare.
    "dir with a size": (header("root/", b"5", len(HIDDEN)) + HIDDEN + file("app/ok.txt", b"ok\n") + end(),
                        ["root", "root/.ssh/id_rsa", "app/ok.txt"]),
    "symlink with a size": (header("l", b"2", len(HIDDEN), "x") + HIDDEN + end(), ["l", "root/.ssh/id_rsa"]),
    "hard link with a size": (file("a", b"x") + header("b", b"1", len(HIDDEN), "a") + HIDDEN + end(),
                              ["a", "b", "root/.ssh/id_rsa"]),
    "fifo with a size": (header("f", b"6", len(HIDDEN)) + HIDDEN + end(), ["f", "root/.ssh/id_rsa"]),
    "char device with a size": (header("c", b"3", len(HIDDEN)) + HIDDEN + end(), ["c", "root/.ssh/id_rsa"]),
    "legacy type with a slash is a directory": (header("root/", b"\0", len(HIDDEN)) + HIDDEN + end(),
                                                ["root", "root/.ssh/id_rsa"]),
    # A global pax header applies to no later entry (and drops the pending local headers).
    "global pax path": (pax(b"g", path="harmless.txt") + file("app/.env", ENV) + end(), ["app/.env"]),
    "pax header before a global one": (pax(path="harmless.txt") + pax(b"g", mtime="0") + file("app/.env", ENV)
                                       + end(), ["app/.env"]),
    "long name before a global one": (long_name("harmless.txt") + pax(b"g", mtime="0") + file("app/.env", ENV)
                                      + end(), ["app/.env"]),
    # Of two pax headers in a row only the last applies.
    "two pax headers": (pax(path="harmless.txt") + pax(mtime="0") + file("app/.env", ENV) + end(), ["app/.env"]),
    # A GNU long name wins over a pax path, in either order; an empty pax path keeps the header's name.
    "long name then pax path": (long_name("app/.env") + pax(path="harmless.txt") + file("x", ENV) + end(),
                                ["app/.env"]),
    "pax path then long name": (pax(path="harmless.txt") + long_name("app/.env") + file("x", ENV) + end(),
                                ["app/.env"]),
    "empty pax path": (pax(path="") + file("app/.env", ENV) + end(), ["app/.env"]),
    # Pax record lengths count bytes: a multibyte value must not move the next record's boundary.
    "pax value with multibyte characters": (pax(comment="\u00e9" * 17, path="app/.env") + file("harmless.txt", ENV)
                                            + end(), ["app/.env"]),
    # The prefix field, per format.
    "ustar prefix": (file("id_rsa", KEY, prefix=b"root/.ssh") + end(), ["root/.ssh/id_rsa"]),
    "GNU header with a prefix where its times do not parse": (file("id_rsa", KEY, magic=GNU, prefix=b"root/.ssh")
                                                              + end(), ["root/.ssh/id_rsa"]),
    "GNU header whose times parse": (file("id_rsa", KEY, magic=GNU, prefix=b"0000") + end(), ["id_rsa"]),
    # Numbers as Go parses them.
    "size with leading NULs": (header("a", b"0", size_field=b"\0" * 8 + b"3\0\0\0") + pad(b"ok\n")
                               + file("app/.env", ENV) + end(), ["a", "app/.env"]),
    "pax size with a plus sign": (pax(size="+3") + header("a", b"0", 100) + pad(b"ok\n") + file("app/.env", ENV)
                                  + end(), ["a", "app/.env"]),
    "last entry without padding": (header("a", b"0", 3) + b"ok\n", ["a"]),
}

REFUSED = {
    "size with an underscore": (header("a", b"0", size_field=b"0000000_003\0") + pad(b"ok\n") + end(),
                                "size field is not a number"),
    "a zero block then a header": (file("a", b"x") + bytes(512) + file("app/.env", ENV) + end(),
                                   "a zero block followed by a header"),
    "pax GNU sparse 0.1": (pax(GNU__sparse__major="0", GNU__sparse__minor="1", GNU__sparse__map=f"0,{len(ENV)}",
                               GNU__sparse__name="app/.env", GNU__sparse__realsize=str(len(ENV)))
                           + file("app/GNUSparseFile.0/harmless", ENV) + end(), "GNU sparse file in pax form"),
    "pax GNU sparse 0.0": (pax(GNU__sparse__numblocks="1", GNU__sparse__offset="0",
                               GNU__sparse__numbytes=str(len(ENV)), GNU__sparse__name="app/.env",
                               GNU__sparse__size=str(len(ENV)))
                           + file("app/GNUSparseFile.0/harmless", ENV) + end(), "GNU sparse file in pax form"),
    "pax GNU sparse 1.0": (pax(GNU__sparse__major="1", GNU__sparse__minor="0", GNU__sparse__name="app/.env",
                               GNU__sparse__realsize=str(len(ENV)))
                           + file("app/GNUSparseFile.0/harmless", b"1\n0\n20\n" + bytes(505) + ENV) + end(),
                           "GNU sparse file in pax form"),
    "pax record without its newline": (header("PaxHeaders/x", b"x", 12) + pad(b"12 path=abc ") + file("a", b"x")
                                       + end(), "malformed pax record"),
}


def listing(tar: bytes) -> list[str]:
    stream = LayerStream(iter([tar]), TAR_LAYER, len(tar), "layer 0")
    return [e.name for e in entries(stream, "layer 0")]


@pytest.mark.parametrize("case", CASES)
def test_the_tar_is_listed_as_go_archive_tar_lists_it(case):
    tar, expected = CASES[case]
    assert listing(tar) == expected


@pytest.mark.parametrize("case", REFUSED)
def test_what_go_refuses_or_the_audit_cannot_name_exactly_is_refused(case):
    tar, message = REFUSED[case]
    with pytest.raises(TarError) as info:
        listing(tar)
    assert message in str(info.value)
    assert "layer 0" in str(info.value)


@pytest.mark.timeout(60)
def test_the_audit_finds_the_key_a_sized_directory_header_would_hide():
    tar = CASES["dir with a size"][0]
    report = Registry(tar, media_type=TAR_LAYER).audit()
    assert [(s.path, s.layer) for s in report.platforms[0].sensitive] == [("root/.ssh/id_rsa", 0)]


@pytest.mark.timeout(60)
def test_the_audit_refuses_a_sparse_file_layer():
    tar, message = REFUSED["pax GNU sparse 0.1"]
    with pytest.raises(AuditError) as info:
        Registry(tar, media_type=TAR_LAYER).audit()
    assert message in str(info.value)


def gate_refusal(layer: bytes) -> str:
    """The promotion gate's refusal of an image of one uncompressed `layer` served by a fake registry."""
    registry = Registry(layer, media_type=TAR_LAYER)
    try:
        with pytest.raises(AuditFailure) as info:
            refuse_sensitive_source({"sourceServer": f"127.0.0.1:{registry.server.server_address[1]}",
                                     "sourceRepository": "hostile/img", "sourceDigest": sha(registry.manifest),
                                     "sourcePlainHttp": True})
    finally:
        registry.server.shutdown()
        registry.server.server_close()
    return str(info.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case, path", [("dir with a size", "root/.ssh/id_rsa"), ("global pax path", "app/.env"),
                                        ("two pax headers", "app/.env"), ("long name then pax path", "app/.env")])
def test_the_promotion_gate_refuses_the_hidden_file(case, path):
    refusal = gate_refusal(CASES[case][0])
    assert "promotion refused before copying anything" in refusal
    assert f"  /{path} in layer 0" in refusal


@pytest.mark.timeout(60)
def test_a_hard_link_with_a_sensitive_name_is_found_by_its_name_and_its_targets_content():
    tar = (file("app/settings", ENV) + header("app/.env", b"1", 0, "app/settings")
           + file("app/notes", KEY) + header("root/.ssh/id_rsa", b"1", 0, "app/notes") + end())
    report = Registry(tar, media_type=TAR_LAYER).audit()
    found = {s.path: s.reason for s in report.platforms[0].sensitive}
    # app/settings holds the .env's `DB_PASSWORD=hunter2` under an ordinary name: found by its content alone
    assert set(found) == {"app/.env", "app/settings", "app/notes", "root/.ssh/id_rsa"}, found
    assert "dotenv" in found["app/.env"], found
    assert found["app/settings"].startswith("contains a password, secret, token or key assigned"), found
    assert "by its name" in found["root/.ssh/id_rsa"] and "contains a private key" in found["root/.ssh/id_rsa"]


def _same_paths_image(paths: int, layers: int) -> Registry:
    """`layers` layers, each the same `paths` one-byte files: every copy but the last is hidden."""
    tar = b"".join(header(f"d{i // 1000:03d}/f{i % 1000:03d}", b"0", 1) + pad(b"y") for i in range(paths)) + end()
    registry = Registry(tar, media_type=TAR_LAYER)
    manifest = json.loads(registry.manifest)
    manifest["layers"] = manifest["layers"] * layers
    registry.manifest = json.dumps(manifest).encode()
    return registry


@pytest.mark.timeout(120)
def test_the_entry_bound_counts_across_the_layers_of_the_image():
    with pytest.raises(AuditError) as info:
        _same_paths_image(400, 3).audit(max_entries=1000)  # each layer is under the bound, the image is not
    message = str(info.value)
    assert "more than 1000 tar entries across its layers" in message and "--max-entries" in message, message


@pytest.mark.timeout(300)
def test_the_bookkeeping_stays_within_its_stated_bytes_per_entry():
    paths, layers = 20_000, 3
    registry = _same_paths_image(paths, layers)
    report = registry.audit()
    assert len(report.platforms[0].hidden) == paths * (layers - 1)
    assert registry.peak < paths * layers * BYTES_PER_ENTRY, registry.peak / (paths * layers)


class _SlowBlobRegistry(Registry):
    """Serves the layer blob 8 KiB every 0.2 s: far above the registry client's stall pace, so only the audit's
    time limit can end it."""

    def __init__(self, blob: bytes):
        super().__init__(blob, media_type=TAR_LAYER)
        handler = self.server.RequestHandlerClass
        layer_digest = sha(blob)
        plain_get = handler.do_GET

        def do_GET(request):
            if not request.path.endswith(layer_digest):
                return plain_get(request)
            request.send_response(200)
            request.send_header("Content-Type", "application/octet-stream")
            request.send_header("Content-Length", str(len(blob)))
            request.end_headers()
            try:
                for start in range(0, len(blob), 8192):
                    request.wfile.write(blob[start:start + 8192])
                    request.wfile.flush()
                    time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                pass

        handler.do_GET = do_GET


@pytest.mark.timeout(60)
def test_the_stack_audit_ends_at_its_time_limit_on_a_slow_blob():
    blob = file("big", bytes(16 << 20)) + end()  # 16 MiB at 40 KiB/s: minutes without the limit
    registry = _SlowBlobRegistry(blob)
    started = time.monotonic()
    try:
        with pytest.raises(AuditFailure) as info:
            run_audit(f"127.0.0.1:{registry.server.server_address[1]}", "hostile/img", sha(registry.manifest),
                      None, None, True, budget=3.0)
    finally:
        registry.server.shutdown()
        registry.server.server_close()
    assert time.monotonic() - started < 30
    assert "layer audit time limit of 3s" in str(info.value), str(info.value)


@pytest.mark.timeout(60)
def test_cli_audit_ends_at_its_time_limit_on_a_slow_blob():
    registry = _SlowBlobRegistry(file("big", bytes(16 << 20)) + end())
    try:
        proc = subprocess.run([sys.executable, "-m", "cli.audit",
                               f"127.0.0.1:{registry.server.server_address[1]}/hostile/img:t", "--time-limit", "3"],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=50)
    finally:
        registry.server.shutdown()
        registry.server.server_close()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "audit time limit (--time-limit) of 3s" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def _bad_json_registry(case: str) -> Registry:
    registry = Registry(file("a", b"x") + end(), media_type=TAR_LAYER)
    if case == "history":
        manifest = json.loads(registry.manifest)
        config = json.dumps({"architecture": "amd64", "os": "linux", "history": 5}).encode()
        registry.blobs[sha(config)] = config
        manifest["config"].update(digest=sha(config), size=len(config))
        registry.manifest = json.dumps(manifest).encode()
    elif case == "platform":
        registry.manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                       "digest": sha(b"x"), "size": 1,
                                                       "platform": "linux/amd64"}]}).encode()
    elif case == "layers":
        manifest = json.loads(registry.manifest)
        manifest["layers"] = 5
        registry.manifest = json.dumps(manifest).encode()
    return registry


BAD_JSON = {"history": "history is not a list", "platform": "manifests[0].platform is not an object",
            "layers": "the manifest has no layers list"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", BAD_JSON)
def test_bad_registry_json_is_one_error_from_the_cli_and_the_provider(case):
    registry = _bad_json_registry(case)
    server = f"127.0.0.1:{registry.server.server_address[1]}"
    try:
        proc = subprocess.run([sys.executable, "-m", "cli.audit", f"{server}/hostile/img:t"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=50)
        with pytest.raises(AuditFailure) as info:
            run_audit(server, "hostile/img", sha(registry.manifest), None, None, True)
    finally:
        registry.server.shutdown()
        registry.server.server_close()
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert BAD_JSON[case] in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert BAD_JSON[case] in str(info.value)


CONTROL_NAME = "app/\x1b[2J\x1b[31mevil\n/.env"


@pytest.mark.timeout(60)
def test_paths_and_instructions_in_the_stacks_messages_are_escaped():
    gate = gate_refusal(file(CONTROL_NAME, ENV) + end())
    assert "\x1b" not in gate and "app/\\x1b[2J\\x1b[31mevil\\n/.env" in gate, gate
    outs = {"image": "img", "findings": [{"path": CONTROL_NAME, "reason": "a dotenv file", "layer": 0,
                                          "instruction": "RUN echo \x1b[31m > /x\n", "hidden": False}]}
    (problem,) = breaches(outs, {"failOnSensitive": True})
    assert "\x1b" not in problem and "\n" not in problem, problem
    assert "app/\\x1b[2J\\x1b[31mevil\\n/.env" in problem and "RUN echo \\x1b[31m > /x\\n" in problem, problem


def test_the_promotion_gates_failure_to_reach_the_source_names_the_source_stack():
    """The source's host comes from the source stack: the advice names it, never this stack's registry setting."""
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AuditFailure) as info:
        refuse_sensitive_source({"sourceServer": f"127.0.0.1:{port}", "sourceRepository": "src/app",
                                 "sourceDigest": "sha256:" + "a" * 64, "sourcePlainHttp": True})
    text = str(info.value)
    assert "start the source stack's registry or fix the port in the source stack's `registry` export" in text, text
    assert "acr-publish:registry.server" not in text and "make up" not in text, text
