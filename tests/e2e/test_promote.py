"""End to end: promotion copies the digest another stack published, against real registries.

The source image is built for real (`docker build` FROM the locally imported busybox base, tests/e2e/base_image.py)
and pushed to a `docker-registry`; the source stack's exports are given to the StackReference as they would be
read. What the copy does that the real engine's promotion tests (tests/e2e/test_engine_promote.py) cannot arrange:
a push under the target tag while the blobs are copied, two promotions to one tag whose manifest PUTs cross (a
proxy holds one), an image index with its children, a copy's error text, a
large layer streamed across registries without being held, and the benchmark's smoke run (no layer byte read on the
same host).
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import threading
import time
from typing import Callable, Iterator

import docker
import pytest

from components.copy import CopyError, copy_image, registry_client
from registryclient.login import RegistryLogin
from registryclient import OCI_INDEX
from tests.e2e.base_image import base_image  # noqa: F401
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401
from tests.e2e.second_engine import pump
from tests.harness import PROJECT_ROOT, TEST_SECRET

SOURCE_USER = "pusher"
TARGET_USER = "promoter"
LABEL = "acr-publish.e2e"


@pytest.fixture(scope="module")
def source_registry(registry_factory: Callable[..., RegistryServer], docker_engine: str) -> RegistryServer:
    # TEST_SECRET: the harness gives every `secure:` config value that plaintext.
    return registry_factory(username=SOURCE_USER, password=TEST_SECRET,
                            extra_users={"other": secrets.token_urlsafe(12)})


@pytest.fixture(scope="module")
def target_registry(registry_factory: Callable[..., RegistryServer]) -> RegistryServer:
    return registry_factory(username=TARGET_USER, password=TEST_SECRET)


@pytest.fixture(scope="module")
def publish(docker_engine: str, base_image: str, source_registry: RegistryServer, tmp_path_factory
            ) -> Iterator[Callable[[str, str], dict]]:
    """Build a tiny image whose /hello says `marker` and push it to the source registry as demo/<name>:<tag>;
    returns the source stack's export for it."""
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
    made: list[str] = []

    def build(name: str, marker: str) -> dict:
        context = tmp_path_factory.mktemp("promote-image")
        (context / "Dockerfile").write_text(
            f"FROM {base_image}\nRUN echo {marker} > /hello\nCMD [\"cat\", \"/hello\"]\n")
        tag = f"t-{secrets.token_hex(4)}"
        repository = f"{source_registry.server}/demo/{name}"
        subprocess.run([docker_engine, "build", "--platform", "linux/amd64", "--label", LABEL, "-t",
                        f"{repository}:{tag}", str(context)], check=True, capture_output=True, timeout=300)
        made.append(f"{repository}:{tag}")
        for event in client.images.push(repository, tag=tag, stream=True, decode=True,
                                        auth_config={"username": SOURCE_USER, "password": TEST_SECRET}):
            assert "error" not in event, event
        digest = source_registry.manifest_digest(f"demo/{name}", tag)
        return {"repository": repository, "tag": tag, "imageName": f"{repository}:{tag}",
                "ref": f"{repository}@{digest}"}

    yield build
    for ref in made:
        subprocess.run([docker_engine, "image", "rm", "-f", ref], capture_output=True, timeout=60)
    client.close()


def test_a_tag_pushed_while_the_copy_runs_is_never_overwritten(publish, source_registry, target_registry,
                                                                 monkeypatch):
    """Someone pushes other content under the target tag after the first check, while the blobs are copied: the
    check right before the manifest PUT refuses, and the other push's tag survives."""
    from components import copy as copy_module

    one, other = publish("race", "race-1"), publish("race", "race-2")
    src = RegistryLogin(source_registry.server, SOURCE_USER, TEST_SECRET, True)
    dst = RegistryLogin(target_registry.server, TARGET_USER, TEST_SECRET, True)
    other_digest = other["ref"].split("@")[1]
    original = copy_module._Copy._copy_blob
    pushed = []

    def copy_blob_while_another_push_lands(self, digest):
        if not pushed:
            pushed.append(True)
            copy_image(src, "demo/race", other_digest, dst, "release/race", one["tag"])
        return original(self, digest)

    monkeypatch.setattr(copy_module._Copy, "_copy_blob", copy_blob_while_another_push_lands)
    with pytest.raises(CopyError) as err:
        copy_image(src, "demo/race", one["ref"].split("@")[1], dst, "release/race", one["tag"])
    assert pushed, "the concurrent push ran"
    text = str(err.value)
    assert f"release/race:{one['tag']} already exists at {other_digest} (pushed while this promotion" in text, text
    assert "never overwritten" in text and TEST_SECRET not in text
    assert target_registry.manifest_digest("release/race", one["tag"]) == other_digest


def test_an_image_index_is_copied_with_its_children(publish, source_registry, target_registry):
    child = publish("multi", "index-1")
    child_digest = child["ref"].split("@")[1]
    src = RegistryLogin(source_registry.server, SOURCE_USER, TEST_SECRET, True)
    with registry_client(src, time.monotonic() + 60, 60) as client:
        manifest = client.get_manifest("demo/multi", child_digest)
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
            "mediaType": manifest.media_type, "digest": child_digest, "size": len(manifest.content),
            "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
        index_digest = client.put_manifest("demo/multi", "index", OCI_INDEX, index)
    dst = RegistryLogin(target_registry.server, TARGET_USER, TEST_SECRET, True)
    report = copy_image(src, "demo/multi", index_digest, dst, "release/multi", "index")
    assert report.copied and report.manifests == 2 and report.streamed
    assert target_registry.manifest_digest("release/multi", "index") == index_digest
    assert target_registry.manifest_digest("release/multi", child_digest) == child_digest
    again = copy_image(src, "demo/multi", index_digest, dst, "release/multi", "index")
    assert not again.copied and again.manifests == 0


class DelayingProxy:
    """A TCP proxy on 127.0.0.1 to `upstream` that holds the first manifest PUT passing through it for `delay`
    seconds before forwarding it: a push whose PUT is still on its way while another push of the same tag lands."""

    def __init__(self, upstream: str, delay: float) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.delay = delay
        self.held = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.server = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream, timeout=60)
            threading.Thread(target=pump, args=(client, upstream, self._hold), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    def _hold(self, chunk: bytes) -> None:
        if not self.held.is_set() and chunk.startswith(b"PUT ") and b"/manifests/" in chunk:
            self.held.set()
            time.sleep(self.delay)

    def close(self) -> None:
        self.listener.close()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("delayed", ["first", "second"])
def test_two_concurrent_promotions_to_one_tag_never_both_succeed(publish, source_registry, target_registry,
                                                                 delayed: str) -> None:
    """The held promotion starts first; the other starts once the held one's manifest PUT is on its way, and lands
    its own PUT while the held one is still in flight (the held PUT wins the tag). The read back right after each
    PUT sees that promotion's own digest; the read SETTLE_S later tells the loser."""
    one, other = publish("duel", f"duel-{delayed}-1"), publish("duel", f"duel-{delayed}-2")
    tag = f"release-{delayed}"
    proxy = DelayingProxy(target_registry.server, 1.5)
    src = RegistryLogin(source_registry.server, SOURCE_USER, TEST_SECRET, True)
    direct = RegistryLogin(target_registry.server, TARGET_USER, TEST_SECRET, True)
    held = RegistryLogin(proxy.server, TARGET_USER, TEST_SECRET, True)
    results: dict[str, object] = {}

    def promote_one(name: str, target: RegistryLogin, digest: str) -> None:
        try:
            results[name] = copy_image(src, "demo/duel", digest, target, "release/duel", tag, budget=120).digest
        except CopyError as err:
            results[name] = err

    digests = {"first": one["ref"].split("@")[1], "second": other["ref"].split("@")[1]}
    free = "second" if delayed == "first" else "first"
    threads = [threading.Thread(target=promote_one, args=(delayed, held, digests[delayed])),
               threading.Thread(target=promote_one, args=(free, direct, digests[free]))]
    try:
        threads[0].start()
        assert proxy.held.wait(60), "the held promotion never sent its manifest PUT"
        threads[1].start()
        for thread in threads:
            thread.join(150)
    finally:
        proxy.close()
    assert len(results) == 2, "a promotion hung"
    won = [name for name, result in results.items() if isinstance(result, str)]
    final = target_registry.manifest_digest("release/duel", tag)
    assert len(won) == 1, f"both promotions succeeded, the tag is at {final}: {results}"
    assert results[won[0]] == final == digests[won[0]]
    [lost] = [result for result in results.values() if isinstance(result, CopyError)]
    text = str(lost)
    assert final in text and ("another push to that tag landed" in text or "already exists" in text), text
    assert TEST_SECRET not in text


def test_copy_errors_name_both_sides_and_no_secret(source_registry, target_registry):
    src = RegistryLogin(source_registry.server, SOURCE_USER, TEST_SECRET, True)
    dst = RegistryLogin(target_registry.server, TARGET_USER, "wrong-" + TEST_SECRET, True)
    with pytest.raises(CopyError) as err:
        copy_image(src, "demo/web", "sha256:" + "0" * 64, dst, "release/web", "t")
    text = str(err.value)
    assert source_registry.server in text and target_registry.server in text
    assert TEST_SECRET not in text


def test_nothing_is_left_on_the_engine(docker_engine):
    images = subprocess.run([docker_engine, "ps", "-a", "-q", "--filter", f"label={LABEL}"], capture_output=True,
                            text=True, timeout=60).stdout.split()
    assert images == [], "containers of this module are left behind"


def test_the_benchmark_smoke_run_reads_no_layer_byte_on_the_same_host(registry_binary):
    import shutil
    import sys

    if shutil.which("skopeo") is None:
        message = "skopeo is not installed (Debian package skopeo; .ci/provision-docker.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([sys.executable, str(PROJECT_ROOT / "bench" / "promote_bench.py"), "--quick"],
                            capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "same host: layer bytes read from the source = 0: 0  met" in result.stdout, result.stdout
    # The counting proxy does count: skopeo's copy of the same image on the same host reads every layer.
    skopeo_line = next(line for line in result.stdout.splitlines() if line.strip().startswith("skopeo copy "))
    assert int(skopeo_line.split()[-1]) > 0, skopeo_line



def test_a_cross_registry_copy_streams_a_large_layer_without_holding_it(source_registry, target_registry, tmp_path):
    """Peak memory of a process that copies a 128 MiB layer between two registries stays far below the layer."""
    import sys

    from bench.promote_bench import push_image, random_layer

    layer_mib = 128
    digest = push_image(source_registry.server, TEST_SECRET, "demo/large", [random_layer(layer_mib << 20)],
                        user=SOURCE_USER)
    script = f"""
import resource, sys
sys.path.insert(0, {str(PROJECT_ROOT)!r})
from components.copy import copy_image
from registryclient.login import RegistryLogin
src = RegistryLogin({source_registry.server!r}, {SOURCE_USER!r}, {TEST_SECRET!r}, True)
dst = RegistryLogin({target_registry.server!r}, {TARGET_USER!r}, {TEST_SECRET!r}, True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = copy_image(src, "demo/large", {digest!r}, dst, "release/large", "big")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(len(report.streamed), before // 1024, after // 1024)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    streamed, before_mib, after_mib = map(int, result.stdout.split())
    assert streamed == 2, "the config and the layer are streamed"
    assert target_registry.manifest_digest("release/large", "big") == digest
    assert after_mib - before_mib < layer_mib // 4, f"peak RSS grew by {after_mib - before_mib} MiB"


