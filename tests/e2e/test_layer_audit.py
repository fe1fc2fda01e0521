"""End to end: the layer audit of images built for real and pushed to a real `docker-registry`, with dive as oracle.

One image, built with BuildKit FROM the locally imported busybox base (tests/e2e/base_image.py), holds every case
the audit must see: a key copied then removed (a whiteout), a large file overwritten by a later layer, a directory
removed and recreated (an opaque directory), files removed by their parent directory's removal, a `.env` removed
later, a hard link that keeps a removed file's bytes reachable, and a symlink overwritten. An index of two
platforms (amd64 and arm64 images built FROM scratch) is audited per platform.

The oracle: dive v0.13.1 (`scripts/install-dive.sh` builds it from the Go module proxy into .tools/bin) run with
`--json` on the same image in the local engine. The relations, exactly:
- paths: dive lists a path when it appears as a leaf in two or more layers. Its file paths are exactly our hidden
  copies whose hider is a whiteout of that path (`removed`) or a new entry at it (`overwritten`); it lists no file
  hidden by an opaque directory (dive skips `.wh..wh..opq`) or by a removed parent directory (a directory is no
  leaf in the layer that adds its files, so its whiteout is its only leaf). The rest of dive's list are
  directories re-listed by several layers (0 bytes each), which hide nothing.
- bytes: dive's inefficientBytes = the sum, over its listed paths, of every non-whiteout copy's size (a whiteout of
  a file counts 0). For this image that is our `removed`/`overwritten` hidden bytes (hard-linked ones included)
  plus the visible last copy of each overwritten file; our wasted bytes add the opaque and parent-removed files
  and leave out bytes a visible hard link still reaches.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import docker
import pytest

from components.audit import ImageAuditProvider, AuditFailure
from registryclient import OCI_INDEX, RegistryClient
from imageaudit import Auditor
from tests.e2e.base_image import base_image  # noqa: F401
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401
from tests.harness import PROJECT_ROOT, TEST_SECRET

USER = "pusher"
LABEL = "acr-publish.e2e"
DIVE = PROJECT_ROOT / ".tools" / "bin" / "dive"
KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n"
BIG1, BIG2 = 2_000_000, 3_000_000
WASTED = BIG1 + len(KEY) + 20 + (2 + 50_000 + 2) + (100_000 + 2)
"""big1.bin, the key, .env, /opt/tree's three files, /var/gone's two."""
SCENARIO = """\
ARG BASE
FROM ${BASE}
COPY secret/id_rsa /root/.ssh/id_rsa
RUN /bin/busybox rm /root/.ssh/id_rsa
COPY big1.bin /data/big.bin
COPY big2.bin /data/big.bin
COPY tree/ /opt/tree/
RUN /bin/busybox rm -rf /opt/tree && /bin/busybox mkdir -p /opt/tree && echo new > /opt/tree/new.txt
COPY gone/ /var/gone/
RUN /bin/busybox rm -rf /var/gone
COPY app.env /app/.env
RUN /bin/busybox rm /app/.env
RUN /bin/busybox mkdir -p /h && echo hardlinked > /h/a && /bin/busybox ln /h/a /h/b && /bin/busybox ln -s /data/big.bin /data/link
RUN /bin/busybox rm /h/a && /bin/busybox ln -sf /opt/tree /data/link
"""


def _context(root: Path) -> Path:
    (root / "secret").mkdir()
    (root / "secret" / "id_rsa").write_bytes(KEY)
    (root / "big1.bin").write_bytes(os.urandom(BIG1))
    (root / "big2.bin").write_bytes(os.urandom(BIG2))
    (root / "tree" / "sub").mkdir(parents=True)
    (root / "tree" / "a.txt").write_text("a\n")
    (root / "tree" / "b.bin").write_bytes(os.urandom(50_000))
    (root / "tree" / "sub" / "c.txt").write_text("c\n")
    (root / "gone").mkdir()
    (root / "gone" / "x.log").write_bytes(os.urandom(100_000))
    (root / "gone" / "y.log").write_text("y\n")
    (root / "app.env").write_text("DB_PASSWORD=hunter2\n")
    (root / "Dockerfile").write_text(SCENARIO)
    return root


@pytest.fixture(scope="module")
def registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:
    return registry_factory(username=USER, password=TEST_SECRET)


@pytest.fixture(scope="module")
def push(docker_engine: str, registry: RegistryServer) -> Iterator[Callable[..., str]]:
    """Build `context` (with build args) and push it as <registry>/<repository>:<tag>; returns the local name."""
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
    made: list[str] = []

    def build(context: Path, repository: str, *, platform: str = "linux/amd64", **args: str) -> str:
        tag = f"t-{secrets.token_hex(4)}"
        name = f"{registry.server}/{repository}:{tag}"
        command = [docker_engine, "build", "--platform", platform, "--label", LABEL, "-t", name]
        for key, value in args.items():
            command += ["--build-arg", f"{key}={value}"]
        subprocess.run(command + [str(context)], check=True, capture_output=True, timeout=300,
                       env={**os.environ, "DOCKER_BUILDKIT": "1"})
        made.append(name)
        for event in client.images.push(f"{registry.server}/{repository}", tag=tag, stream=True, decode=True,
                                        auth_config={"username": USER, "password": TEST_SECRET}):
            assert "error" not in event, event
        return name

    yield build
    for name in made:
        subprocess.run([docker_engine, "image", "rm", "-f", name], capture_output=True, timeout=60)
    client.close()


@pytest.fixture(scope="module")
def scenario(push, base_image: str, tmp_path_factory) -> str:
    return push(_context(tmp_path_factory.mktemp("audit-scenario")), "audit/scenario", BASE=base_image)


def audit(registry: RegistryServer, name: str):
    repository, tag = name.split("/", 1)[1].rsplit(":", 1)
    with RegistryClient(registry.server, USER, TEST_SECRET, allow_plain_http=True) as client:
        return Auditor(client).audit(repository, tag)


def test_every_case_is_found_with_its_layer_and_instruction(registry, scenario):
    [p] = audit(registry, scenario).platforms
    hidden = {(h.path, h.how, h.wasted) for h in p.hidden}
    assert hidden == {
        ("root/.ssh/id_rsa", "removed", True), ("app/.env", "removed", True),
        ("data/big.bin", "overwritten", True), ("data/link", "overwritten", False),
        ("opt/tree/a.txt", "opaque", True), ("opt/tree/b.bin", "opaque", True), ("opt/tree/sub/c.txt", "opaque", True),
        ("var/gone/x.log", "parent removed", True), ("var/gone/y.log", "parent removed", True),
        ("h/a", "removed", False),  # /h/b, a hard link stored with it, still reaches its bytes
    }, hidden
    assert p.hidden[0].path == "data/big.bin" and p.hidden[0].size == BIG1, "largest first"
    assert p.wasted_bytes == WASTED
    assert abs(p.efficiency - (1 - p.wasted_bytes / p.file_bytes)) < 1e-12
    by_path = {s.path: s for s in p.sensitive}
    assert set(by_path) == {"root/.ssh/id_rsa", "app/.env"}
    key = by_path["root/.ssh/id_rsa"]
    assert key.hidden and key.instruction.startswith("COPY secret/id_rsa /root/.ssh/id_rsa")
    assert p.layers[key.layer].instruction == key.instruction
    assert "private key" in key.reason and "SSH private key" in key.reason
    opaque = next(layer for layer in p.layers if layer.instruction and "mkdir -p /opt/tree" in layer.instruction)
    assert opaque.removed == 4 and opaque.added == 1  # a.txt, b.bin, sub, sub/c.txt; new.txt
    # Each layer of the scenario after the base is one instruction of the Dockerfile, in order.
    assert [layer.instruction.split(" # ")[0].replace("/bin/sh -c ", "") for layer in p.layers[1:]] == \
        SCENARIO.splitlines()[2:]


def test_dive_agrees_on_the_hidden_paths_and_the_stated_byte_relation(docker_engine, registry, scenario, tmp_path):
    if not DIVE.exists():
        message = f"dive is not installed at {DIVE}: run scripts/install-dive.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    report = audit(registry, scenario)
    [p] = report.platforms
    out = tmp_path / "dive.json"
    proc = subprocess.run([str(DIVE), scenario, "--json", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CI": "true"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dive = json.loads(out.read_text())
    dirs = {"/" + f["path"].lstrip("/") for layer in dive["layer"] for f in layer["fileList"] if f["isDir"]}
    listed = {ref["file"]: ref for ref in dive["image"]["fileReference"]}
    dive_files = {path for path in listed if path not in dirs}
    ours = {"/" + h.path for h in p.hidden if h.how in ("removed", "overwritten")}
    assert dive_files == ours, (dive_files, ours)
    # What dive misses, by its design: the opaque directory's and the removed directory's files.
    assert {"/" + h.path for h in p.hidden} - dive_files == {
        "/opt/tree/a.txt", "/opt/tree/b.bin", "/opt/tree/sub/c.txt", "/var/gone/x.log", "/var/gone/y.log"}
    assert all(listed[d]["sizeBytes"] == 0 for d in set(listed) - dive_files)
    hidden_bytes = sum(h.size for h in p.hidden if h.how in ("removed", "overwritten"))
    assert dive["image"]["inefficientBytes"] == hidden_bytes + BIG2  # + the visible last copy of /data/big.bin
    assert p.wasted_bytes == hidden_bytes - 11 + (50_000 + 2 + 2) + (100_000 + 2)  # - /h/a, + opaque, + removed dir


def test_an_index_of_two_platforms_is_audited_per_platform(push, registry, tmp_path):
    names = {}
    for arch in ("amd64", "arm64"):
        context = tmp_path / arch
        context.mkdir()
        (context / "payload").write_bytes(os.urandom(10_000 if arch == "amd64" else 20_000))
        (context / "Dockerfile").write_text("FROM scratch\nCOPY payload /payload\nCOPY Dockerfile /payload\n")
        names[arch] = push(context, "audit/multi", platform=f"linux/{arch}")
    with RegistryClient(registry.server, USER, TEST_SECRET, allow_plain_http=True) as client:
        manifests = []
        for arch, name in names.items():
            m = client.get_manifest("audit/multi", name.rsplit(":", 1)[1])
            manifests.append({"mediaType": m.media_type, "digest": m.digest, "size": len(m.content),
                              "platform": {"os": "linux", "architecture": arch}})
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
        client.put_manifest("audit/multi", "index", OCI_INDEX, index)
        report = Auditor(client).audit("audit/multi", "index")
    assert report.media_type == OCI_INDEX
    assert [(p.platform, p.wasted_bytes, [h.size for h in p.hidden]) for p in report.platforms] == [
        ("linux/amd64", 10_000, [10_000]), ("linux/arm64", 20_000, [20_000])]
    assert report.summary()["wastedBytes"] == 20_000


def test_cli_json_exit_status_and_thresholds(registry, scenario):
    env = {**os.environ, "ACR_PUBLISH_REGISTRY_PASSWORD": TEST_SECRET}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cli.audit", *args, "--username", USER], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=300, env=env)

    found = run(scenario, "--json")
    assert found.returncode == 1, found.stderr
    doc = json.loads(found.stdout)
    assert doc["schemaVersion"] == 1 and doc["summary"]["sensitive"] == 2
    assert {b.split(" in layer")[0] for b in doc["breaches"]} == {
        "linux/amd64: sensitive file /root/.ssh/id_rsa", "linux/amd64: sensitive file /app/.env"}
    allowed = run(scenario, "--allow-sensitive", "/root/.ssh", "--allow-sensitive", "app/.env")
    assert allowed.returncode == 0 and "hidden files, largest first" in allowed.stdout, allowed.stderr
    assert "/data/big.bin" in allowed.stdout.split("hidden files, largest first:")[1].splitlines()[1]
    over = run(scenario, "--allow-sensitive", "root", "--allow-sensitive", "app", "--max-wasted-percent", "1")
    assert over.returncode == 1 and "over threshold: linux/amd64:" in over.stdout
    missing = run(f"{registry.server}/audit/none:t")
    assert missing.returncode == 2 and missing.stdout == ""
    assert f"{registry.server}/audit/none:t does not exist" in missing.stderr and "Traceback" not in missing.stderr
    assert TEST_SECRET not in found.stdout + found.stderr + missing.stderr


def test_the_audit_provider_audits_once_per_digest_and_judges_thresholds_on_stored_findings(
        registry, scenario, monkeypatch):
    repository, tag = scenario.split("/", 1)[1].rsplit(":", 1)
    digest = registry.manifest_digest(repository, tag)
    provider = ImageAuditProvider()
    props = {"server": registry.server, "repository": repository, "digest": digest, "plainHttp": True,
             "auth": {"username": USER, "password": TEST_SECRET},
             "settings": {"maxWastedBytes": None, "maxWastedPercent": None, "failOnSensitive": False,
                          "allowSensitive": []}}
    created = provider.create(dict(props))
    summary = created.outs["summary"]
    assert (summary["wastedBytes"], summary["hiddenFiles"], summary["sensitive"]) == (WASTED, 10, 2)
    assert {f["path"] for f in created.outs["findings"]} == {"root/.ssh/id_rsa", "app/.env"}
    assert TEST_SECRET not in json.dumps({k: v for k, v in created.outs.items() if k != "auth"})
    # From here on no layer may be read: a diff, an update of thresholds and a refresh use the stored findings.
    from components import audit as audit_module

    def no_reads(*_args, **_kwargs):
        raise AssertionError("the audit read the registry again")

    monkeypatch.setattr(audit_module, "run_audit", no_reads)
    same = provider.diff(created.id, created.outs, dict(props))
    assert not same.changes and not same.replaces
    assert provider.read(created.id, created.outs).outs == created.outs
    strict = {**props, "settings": {**props["settings"], "failOnSensitive": True, "allowSensitive": ["app/.env"]}}
    changed = provider.diff(created.id, created.outs, strict)
    assert changed.changes and not changed.replaces
    with pytest.raises(AuditFailure) as failure:
        provider.update(created.id, created.outs, strict)
    text = str(failure.value)
    assert "/root/.ssh/id_rsa" in text and "COPY secret/id_rsa /root/.ssh/id_rsa" in text and "/app/.env" not in text
    assert "layer 1" in text and "hidden by a later layer" in text
    moved = provider.diff(created.id, created.outs, {**props, "digest": "sha256:" + "0" * 64})
    assert moved.replaces == ["digest"]


def test_a_promotion_refuses_a_source_with_a_sensitive_file_before_copying(registry_factory, registry, scenario):
    from components.promotion import PromotionProvider

    target = registry_factory(username="promoter", password=TEST_SECRET)
    repository, tag = scenario.split("/", 1)[1].rsplit(":", 1)
    props = {
        "sourceServer": registry.server, "sourceRepository": repository,
        "sourceDigest": registry.manifest_digest(repository, tag), "sourcePlainHttp": True,
        "sourceAuth": {"username": USER, "password": TEST_SECRET}, "targetServer": target.server,
        "targetRepository": "release/scenario", "targetPlainHttp": True,
        "targetAuth": {"username": "promoter", "password": TEST_SECRET}, "tag": tag, "auditAllow": ["app/.env"],
    }
    with pytest.raises(AuditFailure) as refused:
        PromotionProvider().create(dict(props))
    text = str(refused.value)
    assert "promotion refused before copying anything" in text
    assert "/root/.ssh/id_rsa in layer 1" in text and "made by COPY secret/id_rsa /root/.ssh/id_rsa" in text
    assert "/app/.env" not in text and TEST_SECRET not in text
    assert target.list_tags("release/scenario") == [], "nothing was copied"
    copied = PromotionProvider().create({**props, "auditAllow": ["app/.env", "root/.ssh/id_rsa"]})
    assert copied.outs["digest"] == props["sourceDigest"]
    assert target.list_tags("release/scenario") == [tag]
