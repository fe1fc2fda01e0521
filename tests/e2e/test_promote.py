"""End to end: promotion copies the digest another stack published, against real registries.

The source image is built for real (`docker build` FROM the locally imported busybox base, tests/e2e/base_image.py)
and pushed to a `docker-registry`; the source stack's exports are given to the StackReference as they would be
read. The real `__main__.py` of the `local-release` stack then runs under Pulumi mocks in which each Promotion is
carried out by the real dynamic provider in its own `python -m pulumi.dynamic` process, started and called the way
the engine does (tests/e2e/dynamic_engine.py). Same host: the copy mounts every blob (no layer byte read from the
source, counted in bench/promote_bench.py); another registry: the blobs are streamed. Pulled back from the target,
the image runs.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from typing import Callable, Iterator

import docker
import pytest

from components.copy import CopyError, Endpoint, Login, copy_image
from components.registry_client import OCI_INDEX
from tests.e2e.base_image import base_image  # noqa: F401
from tests.e2e.dynamic_engine import DynamicEngine, DynamicProviderError, DynamicProviderProcess
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401
from tests.harness import PROJECT_ROOT, TEST_SECRET, TEST_TOKEN, StackMocks, run_stack

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
def engine(source_registry: RegistryServer) -> Iterator[DynamicEngine]:
    with DynamicProviderProcess(PROJECT_ROOT) as provider:
        yield DynamicEngine(provider)
    # Every secret the provider process was given: it must print none of them, in any encoding.
    secrets_given = [TEST_SECRET, TEST_TOKEN, *source_registry.extra_users.values()]
    provider.assert_printed_no_secret(secrets_given)


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


def source_exports(registry: RegistryServer, images: dict[str, dict]) -> dict:
    return {"registry": registry.server, "registryInstance": {"edition": "local", "instanceId": None, "region": None},
            "images": images}


def release_overrides(target: RegistryServer, user: str, source_user: str | None = None) -> dict:
    overrides = {
        "acr-publish:registry": {"edition": "local", "server": target.server, "namespace": "release",
                                 "username": user},
        "acr-publish:registryPassword": {"secure": "x"},
    }
    if source_user is not None:
        overrides.update({"acr-publish:sourceUsername": source_user, "acr-publish:sourcePassword": {"secure": "x"}})
    return overrides


def promote(engine: DynamicEngine, target: RegistryServer, user: str, exports: dict, *, source_user=None,
            records=None):
    engine.stack = f"local-release-{target.port}"
    return run_stack("local-release", release_overrides(target, user, source_user),
                     mocks=StackMocks(stacks={"local": exports}, promotion_hook=engine), records=records)


def runs_when_pulled(docker_engine: str, registry: RegistryServer, user: str, ref: str) -> str:
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=300)
    try:
        repository, digest = ref.split("@")
        client.images.pull(repository, tag=digest, auth_config={"username": user, "password": TEST_SECRET})
        out = subprocess.run([docker_engine, "run", "--rm", "--label", LABEL, "--platform", "linux/amd64", ref],
                             capture_output=True, text=True, timeout=120, check=True).stdout
        return out.strip()
    finally:
        subprocess.run([docker_engine, "image", "rm", "-f", ref], capture_output=True, timeout=60)
        client.close()


def test_same_host_promotion_copies_the_digest_by_mount_and_reruns_as_nothing(
        engine, publish, source_registry, docker_engine):
    web = publish("web", "same-host-1")
    exports = source_exports(source_registry, {"web": web})
    run = promote(engine, source_registry, SOURCE_USER, exports)
    out = run.outputs["images"]["web"]
    digest = web["ref"].split("@")[1]
    assert out["ref"] == f"{source_registry.server}/release/web@{digest}", out
    assert source_registry.manifest_digest("release/web", web["tag"]) == digest
    assert not run.of_type("docker:index/image:Image"), "a promoting stack builds nothing"
    assert engine.operations[-1].op == "create"
    copied = engine.state[(engine.stack, "web-promote")][2]
    assert copied["copied"] is True
    assert copied["blobs"]["streamed"] == 0 and copied["blobs"]["mounted"] >= 2, copied["blobs"]
    assert runs_when_pulled(docker_engine, source_registry, SOURCE_USER, out["ref"]) == "same-host-1"

    again = promote(engine, source_registry, SOURCE_USER, exports)
    assert engine.operations[-1].op == "same", "a rerun with the same source digest copies nothing"
    assert again.outputs["images"]["web"]["ref"] == out["ref"]


def test_cross_registry_promotion_streams_and_a_new_source_digest_copies_again(
        engine, publish, source_registry, target_registry, docker_engine):
    first = publish("api", "cross-1")
    run = promote(engine, target_registry, TARGET_USER, source_exports(source_registry, {"api": first}),
                  source_user=SOURCE_USER)
    digest = first["ref"].split("@")[1]
    assert run.outputs["images"]["api"]["ref"] == f"{target_registry.server}/release/api@{digest}"
    assert target_registry.manifest_digest("release/api", first["tag"]) == digest
    blobs = engine.state[(engine.stack, "api-promote")][2]["blobs"]
    assert blobs["streamed"] >= 2 and blobs["mounted"] == 0, blobs
    assert runs_when_pulled(docker_engine, target_registry, TARGET_USER, run.outputs["images"]["api"]["ref"]) \
        == "cross-1"

    promote(engine, target_registry, TARGET_USER, source_exports(source_registry, {"api": first}),
            source_user=SOURCE_USER)
    assert engine.operations[-1].op == "same"

    second = publish("api", "cross-2")
    rerun = promote(engine, target_registry, TARGET_USER, source_exports(source_registry, {"api": second}),
                    source_user=SOURCE_USER)
    assert engine.operations[-1].op == "replace", "a new source digest is a new copy"
    new_digest = second["ref"].split("@")[1]
    assert new_digest != digest
    assert rerun.outputs["images"]["api"]["ref"] == f"{target_registry.server}/release/api@{new_digest}"
    assert target_registry.manifest_digest("release/api", second["tag"]) == new_digest
    assert target_registry.manifest_digest("release/api", first["tag"]) == digest, "delete removes nothing"


def test_target_tag_at_another_digest_is_refused(engine, publish, source_registry, target_registry):
    one, other = publish("db", "tag-1"), publish("db", "tag-2")
    # Someone pushed other content under the tag the promotion would use.
    copy_image(Endpoint(source_registry.server, Login(SOURCE_USER, TEST_SECRET), True), "demo/db",
               other["ref"].split("@")[1], Endpoint(target_registry.server, Login(TARGET_USER, TEST_SECRET), True),
               "release/db", one["tag"])
    with pytest.raises(DynamicProviderError) as err:
        promote(engine, target_registry, TARGET_USER, source_exports(source_registry, {"db": one}),
                source_user=SOURCE_USER)
    text = str(err.value)
    assert f"release/db:{one['tag']} already exists at {other['ref'].split('@')[1]}" in text
    assert "never overwritten" in text and TEST_SECRET not in text
    assert target_registry.manifest_digest("release/db", one["tag"]) == other["ref"].split("@")[1]


def test_a_tag_pushed_while_the_copy_runs_is_never_overwritten(publish, source_registry, target_registry,
                                                                 monkeypatch):
    """Someone pushes other content under the target tag after the first check, while the blobs are copied: the
    check right before the manifest PUT refuses, and the other push's tag survives."""
    from components import copy as copy_module

    one, other = publish("race", "race-1"), publish("race", "race-2")
    src = Endpoint(source_registry.server, Login(SOURCE_USER, TEST_SECRET), True)
    dst = Endpoint(target_registry.server, Login(TARGET_USER, TEST_SECRET), True)
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


def test_bad_source_credentials_fail_before_anything_is_declared(engine, publish, source_registry, target_registry):
    from components.promotion import PromotionError

    web = publish("bad", "bad-creds")
    records: list = []
    with pytest.raises(PromotionError) as err:
        promote(engine, target_registry, TARGET_USER, source_exports(source_registry, {"bad": web}),
                source_user="other", records=records)
    assert "credentials" in str(err.value) and "acr-publish:sourceUsername" in str(err.value), str(err.value)
    assert TEST_SECRET not in str(err.value)
    assert records == [], f"declared although the source login failed: {[r.urn for r in records]}"


def test_refresh_notices_a_deleted_target_tag(engine, publish, source_registry, target_registry):
    web = publish("gone", "refresh-1")
    exports = source_exports(source_registry, {"gone": web})
    promote(engine, target_registry, TARGET_USER, exports, source_user=SOURCE_USER)
    api = target_registry.api()
    digest = web["ref"].split("@")[1]
    response = api._get("DELETE", f"/v2/release/gone/manifests/{digest}", "repository:release/gone:delete")
    assert response.status_code == 202, response.status_code
    engine.refresh()
    assert (engine.stack, "gone-promote") not in engine.state, "refresh must drop the promotion of a deleted tag"
    promote(engine, target_registry, TARGET_USER, exports, source_user=SOURCE_USER)
    assert engine.operations[-1].op == "create"
    assert target_registry.manifest_digest("release/gone", web["tag"]) == digest


def test_an_image_index_is_copied_with_its_children(publish, source_registry, target_registry):
    child = publish("multi", "index-1")
    child_digest = child["ref"].split("@")[1]
    src = Endpoint(source_registry.server, Login(SOURCE_USER, TEST_SECRET), True)
    with src.client(time.monotonic() + 60, 60) as client:
        manifest = client.get_manifest("demo/multi", child_digest)
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
            "mediaType": manifest.media_type, "digest": child_digest, "size": len(manifest.content),
            "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
        index_digest = client.put_manifest("demo/multi", "index", OCI_INDEX, index)
    dst = Endpoint(target_registry.server, Login(TARGET_USER, TEST_SECRET), True)
    report = copy_image(src, "demo/multi", index_digest, dst, "release/multi", "index")
    assert report.copied and report.manifests == 2 and report.streamed
    assert target_registry.manifest_digest("release/multi", "index") == index_digest
    assert target_registry.manifest_digest("release/multi", child_digest) == child_digest
    again = copy_image(src, "demo/multi", index_digest, dst, "release/multi", "index")
    assert not again.copied and again.manifests == 0


def test_the_serialized_provider_holds_no_credential_and_imports_from_the_project(
        engine, publish, source_registry, target_registry):
    import base64

    from pulumi.dynamic.dynamic import serialize_provider

    from components.promotion import PromotionProvider

    blob = base64.b64decode(serialize_provider(PromotionProvider()))
    assert b"components.promotion" in blob, "the provider is pickled by reference to the project's module"
    assert TEST_SECRET.encode() not in blob and len(blob) < 2000
    from components.promotion import SECRET_INPUTS

    promote(engine, target_registry, TARGET_USER, source_exports(source_registry, {"state": publish("state", "s")}),
            source_user=SOURCE_USER)
    for (_, _name), (_id, _inputs, outputs) in engine.state.items():
        assert base64.b64decode(outputs["__provider"]) == blob
        # What the state would hold: every output carrying a credential is one the program lists in
        # additional_secret_outputs (tests/test_promotion.py checks the registration), so the engine encrypts it.
        carrying = {key for key, value in outputs.items() if TEST_SECRET in json.dumps(value)}
        assert carrying and carrying <= set(SECRET_INPUTS), carrying


def test_copy_errors_name_both_sides_and_no_secret(source_registry, target_registry):
    src = Endpoint(source_registry.server, Login(SOURCE_USER, TEST_SECRET), True)
    dst = Endpoint(target_registry.server, Login(TARGET_USER, "wrong-" + TEST_SECRET), True)
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
from components.copy import Endpoint, Login, copy_image
src = Endpoint({source_registry.server!r}, Login({SOURCE_USER!r}, {TEST_SECRET!r}), True)
dst = Endpoint({target_registry.server!r}, Login({TARGET_USER!r}, {TEST_SECRET!r}), True)
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


def test_the_secret_check_of_the_provider_output_finds_every_encoding():
    import base64
    import urllib.parse

    from tests.e2e.dynamic_engine import secret_forms

    forms = secret_forms(TEST_SECRET)
    for prefix in ("", "u:", "us:", "use:"):
        text = (prefix + TEST_SECRET).encode()
        for printed in (base64.b64encode(text), base64.urlsafe_b64encode(text), text,
                        urllib.parse.quote(prefix + TEST_SECRET + "/&", safe="").encode()):
            assert any(form in b"Authorization: Basic " + printed for form in forms), printed
    assert not any(form in base64.b64encode(b"u:" + TEST_SECRET[:8].encode()) for form in forms), "no false alarm"


class DelayingProxy:
    """A TCP proxy on 127.0.0.1 to `upstream` that holds the first manifest PUT passing through it for `delay`
    seconds before forwarding it: a push whose PUT is still on its way while another push of the same tag lands."""

    def __init__(self, upstream: str, delay: float) -> None:
        import socket
        import threading

        self.upstream = upstream.rsplit(":", 1)
        self.delay = delay
        self.held = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.server = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((self.upstream[0], int(self.upstream[1])), timeout=60)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source, sink, outbound: bool) -> None:
        try:
            while data := source.recv(65536):
                if outbound and not self.held.is_set() and data.startswith(b"PUT ") and b"/manifests/" in data:
                    self.held.set()
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(2)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("delayed", ["first", "second"])
def test_two_concurrent_promotions_to_one_tag_never_both_succeed(publish, source_registry, target_registry,
                                                                 delayed: str) -> None:
    import threading

    one, other = publish("duel", f"duel-{delayed}-1"), publish("duel", f"duel-{delayed}-2")
    tag = f"release-{delayed}"
    proxy = DelayingProxy(target_registry.server, 1.5)
    src = Endpoint(source_registry.server, Login(SOURCE_USER, TEST_SECRET), True)
    direct = Endpoint(target_registry.server, Login(TARGET_USER, TEST_SECRET), True)
    held = Endpoint(proxy.server, Login(TARGET_USER, TEST_SECRET), True)
    results: dict[str, object] = {}

    def promote_one(name: str, target: Endpoint, digest: str) -> None:
        try:
            results[name] = copy_image(src, "demo/duel", digest, target, "release/duel", tag).digest
        except CopyError as err:
            results[name] = err

    digests = {"first": one["ref"].split("@")[1], "second": other["ref"].split("@")[1]}
    free = "second" if delayed == "first" else "first"
    # The held promotion goes first; the other starts once the held one's manifest PUT is on its way, and lands its
    # own PUT while the held one is still in flight.
    threads = [threading.Thread(target=promote_one, args=(delayed, held, digests[delayed])),
               threading.Thread(target=promote_one, args=(free, direct, digests[free]))]
    try:
        threads[0].start()
        assert proxy.held.wait(60), "the held promotion never sent its manifest PUT"
        threads[1].start()
        for thread in threads:
            thread.join(120)
    finally:
        proxy.close()
    assert len(results) == 2, "a promotion hung"
    won = [name for name, result in results.items() if isinstance(result, str)]
    final = target_registry.manifest_digest("release/duel", tag)
    assert len(won) == 1, f"both promotions succeeded, the tag is at {final}: {results}"
    assert results[won[0]] == final
    [lost] = [result for result in results.values() if isinstance(result, CopyError)]
    assert final in str(lost) and ("another push to that tag landed" in str(lost) or "already exists" in str(lost))
    assert TEST_SECRET not in str(lost)
