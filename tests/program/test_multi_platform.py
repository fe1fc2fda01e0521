"""Images with `platforms` and stacks with `builders`, through the real `__main__.py` under mocks.

The registry checks are the recorder of tests/conftest.py; the builders' Docker API ping is real (a socket that is
not there, a server that answers something else, one that never answers) except where a test is about what the
program declares for a builder that answers, where the answer is scripted (`builder_answers`). What the real
Docker engines do with these resources is tests/e2e/test_multi_platform.py.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import components.builders as builders
from components.builders import BuilderError
from components.config.problems import ConfigError
from tests.harness import DOCKER_PROVIDER, IMAGE, IMAGE_INDEX, PROGRAM_FILES, PROJECT_ROOT, run_stack

DIGEST_A = "sha256:" + "a1" * 32
DIGEST_B = "sha256:" + "b2" * 32
DIGEST_I = "sha256:" + "c3" * 32
TWO = ["linux/amd64", "linux/arm64"]


def images(platforms=TWO, **extra) -> list[dict]:
    # Remote inputs left out unless a test is about them (the sample app's base is resolved per platform there).
    return [{"name": "web", "context": "app", "target": "web", "platforms": platforms, "remoteInputs": "ignore",
             **extra}]


def overrides(**more) -> dict:
    values = {"acr-publish:images": images()}
    values.update({f"acr-publish:{k}": v for k, v in more.items()})
    return values


@pytest.fixture
def builder_answers(monkeypatch):
    """Every builder answers the ping as an engine of the platform it is configured for (an ARM machine for
    linux/arm64); records the builders asked."""
    asked = []

    def answer(builder, timeout=None):
        asked.append(builder)
        os_name, arch, _ = builders.platform_parts(builder.platform)
        return os_name, arch

    monkeypatch.setattr(builders, "engine_platform", answer)
    return asked


def config_problems(values: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        run_stack("local", values)
    return info.value.problems


def test_one_build_per_platform_and_an_index_under_the_image_tag(preflight_calls):
    run = run_stack("local", overrides())
    built = sorted(run.of_type(IMAGE), key=lambda r: r.name)  # registered concurrently: in no fixed order
    assert [r.inputs["build"]["platform"] for r in built] == TWO, [r.urn for r in built]
    assert [r.name for r in built] == ["web-linux-amd64-image", "web-linux-arm64-image"]
    out = run.outputs["images"]["web"]
    tags = {r.inputs["imageName"].rsplit(":", 1)[1] for r in built}
    assert len(tags) == 2 and out["tag"] not in tags, "each platform has its own tag, the index another"
    [index] = run.of_type(IMAGE_INDEX)
    component = [r for r in run.resources if r.type == "acr-publish:index:MultiPlatformImage"]
    assert [r.name for r in component] == ["web"]
    assert index.parent == component[0].urn and all(r.parent == component[0].urn for r in built)
    assert index.inputs["tag"] == out["tag"] and index.inputs["repository"] == "demo/web"
    assert [c["platform"] for c in index.inputs["children"]] == TWO
    assert [c["digest"] for c in index.inputs["children"]] == [r.rsplit("@", 1)[1] for r in
                                                               (out["platforms"][p]["ref"] for p in TWO)]
    assert set(r.urn for r in built) <= set(index.dependencies), "the index waits for both builds"
    # `ref` is the index's, not any one platform's build.
    assert out["ref"].startswith("127.0.0.1:5000/demo/web@sha256:")
    assert out["ref"] not in {out["platforms"][p]["ref"] for p in TWO}
    assert "auth" in index.secret_inputs and index.additional_secret_outputs == ["auth"]
    for platform in TWO:
        assert out["platforms"][platform]["imageName"] in {r.inputs["imageName"] for r in built}


def test_the_published_check_asks_the_index_tag_and_each_platform_tag(preflight_calls):
    run = run_stack("local", overrides())
    [(_, asked)] = preflight_calls.published_calls
    out = run.outputs["images"]["web"]
    assert asked["web"] == ("demo/web", out["tag"])
    for platform in TWO:
        assert asked[("web", platform)] == ("demo/web", out["platforms"][platform]["imageName"].rsplit(":", 1)[1])


def test_a_published_index_declares_no_build_and_no_index(preflight_calls):
    first = run_stack("local", overrides()).outputs["images"]["web"]
    preflight_calls.published = {("demo/web", first["tag"]): DIGEST_I}
    for platform, digest in zip(TWO, (DIGEST_A, DIGEST_B)):
        preflight_calls.published[("demo/web", first["platforms"][platform]["imageName"].rsplit(":", 1)[1])] = digest
    run = run_stack("local", overrides())
    assert run.of_type(IMAGE) == [] and run.of_type(IMAGE_INDEX) == []
    out = run.outputs["images"]["web"]
    assert out["ref"] == f"127.0.0.1:5000/demo/web@{DIGEST_I}"
    assert out["platforms"]["linux/arm64"]["ref"] == f"127.0.0.1:5000/demo/web@{DIGEST_B}"


def test_a_published_platform_is_not_rebuilt_and_the_index_lists_its_digest(preflight_calls):
    first = run_stack("local", overrides()).outputs["images"]["web"]
    amd_tag = first["platforms"]["linux/amd64"]["imageName"].rsplit(":", 1)[1]
    preflight_calls.published = {("demo/web", amd_tag): DIGEST_A}
    run = run_stack("local", overrides())
    assert [r.inputs["build"]["platform"] for r in run.of_type(IMAGE)] == ["linux/arm64"]
    [index] = run.of_type(IMAGE_INDEX)
    assert index.inputs["children"][0] == {"platform": "linux/amd64", "digest": DIGEST_A}


def test_a_changed_platform_list_changes_the_tag_and_every_platform_tag_is_its_own():
    from components.platforms import index_tag

    assert index_tag({"linux/amd64": "ctx-a", "linux/arm64": "ctx-b"}) != index_tag({"linux/amd64": "ctx-a"})
    assert index_tag({"linux/amd64": "ctx-a", "linux/arm64": "ctx-b"}) != \
        index_tag({"linux/amd64": "ctx-a", "linux/arm64": "ctx-c"})


def test_one_platform_images_are_unchanged(preflight_calls):
    run = run_stack("local")
    assert run.of_type(IMAGE_INDEX) == [] and run.of_type(DOCKER_PROVIDER) == []
    assert "platforms" not in run.outputs["images"]["web"]


def test_a_builder_gets_its_own_provider_for_its_platform_only(preflight_calls, builder_answers):
    run = run_stack("local", overrides(builders={"linux/arm64": "unix:///run/arm-builder/docker.sock"}))
    [provider] = run.of_type(DOCKER_PROVIDER)
    assert provider.name == "builder-linux-arm64" and provider.inputs["host"] == "unix:///run/arm-builder/docker.sock"
    by_platform = {r.inputs["build"]["platform"]: r for r in run.of_type(IMAGE)}
    assert by_platform["linux/arm64"].provider.startswith(provider.urn + "::"), by_platform["linux/arm64"].provider
    assert not (by_platform["linux/amd64"].provider or "").startswith(provider.urn), "amd64 builds on the local engine"
    assert [b.host for b in builder_answers] == ["unix:///run/arm-builder/docker.sock"]
    assert not any("QEMU" in w for w in run.warnings), run.warnings


def test_a_tls_builder_provider_gets_the_cert_path(preflight_calls, builder_answers, tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    run = run_stack("local", overrides(builders={"linux/arm64": {"host": "tcp://arm.example:2376",
                                                                 "certPath": str(tmp_path)}}))
    [provider] = run.of_type(DOCKER_PROVIDER)
    assert provider.inputs["certPath"] == str(tmp_path.resolve())


def test_no_provider_for_a_builder_whose_platform_is_published(preflight_calls, builder_answers):
    first = run_stack("local", overrides()).outputs["images"]["web"]
    arm_tag = first["platforms"]["linux/arm64"]["imageName"].rsplit(":", 1)[1]
    preflight_calls.published = {("demo/web", arm_tag): DIGEST_B}
    run = run_stack("local", overrides(builders={"linux/arm64": "unix:///run/arm-builder/docker.sock"}))
    assert run.of_type(DOCKER_PROVIDER) == []
    assert [r.inputs["build"]["platform"] for r in run.of_type(IMAGE)] == ["linux/amd64"]


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "amd64"), reason="the local engine here is not amd64")
def test_a_platform_the_local_engine_cannot_run_is_warned_about_before_anything_is_declared(preflight_calls):
    run = run_stack("local", overrides())
    [warning] = [w for w in run.warnings if "QEMU" in w]
    assert "acr-publish:images[0] (web): linux/arm64 builds on the local Docker engine, which runs linux/amd64" in warning
    assert "binfmt_misc" in warning and "acr-publish:builders: {linux/arm64: ssh://" in warning


# --- builders that cannot be used: nothing is declared ---------------------------------------------------------

def _serve_once(path: Path, answer: bytes | None) -> threading.Thread:
    """A unix socket at `path` that reads a request and answers `answer` (None: never answers)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    stop = threading.Event()

    def run():
        connection, _ = server.accept()
        connection.recv(4096)
        if answer is not None:
            connection.sendall(answer)
        else:
            stop.wait(30)
        connection.close()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.stop = stop
    thread.start()
    return thread


@pytest.mark.parametrize("case", ["missing", "not-docker", "silent"])
def test_a_builder_that_cannot_be_used_stops_the_run_before_anything_is_declared(preflight_calls, case, monkeypatch):
    directory = Path(f"/tmp/ma-{os.getpid()}-{case}")
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir()
    sock = directory / "docker.sock"
    thread = None
    if case == "not-docker":
        thread = _serve_once(sock, b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>hello</html>")
    elif case == "silent":
        monkeypatch.setattr(builders, "BUILDER_TIMEOUT_S", 1.0)
        thread = _serve_once(sock, None)
    records: list = []
    try:
        with pytest.raises(BuilderError) as info:
            run_stack("local", overrides(builders={"linux/arm64": f"unix://{sock}"}), records=records)
    finally:
        if thread is not None:
            thread.stop.set()
        shutil.rmtree(directory, ignore_errors=True)
    message = str(info.value)
    assert message.startswith(f"acr-publish:builders.linux/arm64 unix://{sock}"), message
    assert {"missing": "cannot be reached (No such file or directory): start its Docker engine",
            "not-docker": "answered, but not as a Docker engine (HTTP/1.0 200 OK)",
            "silent": "did not answer within 1s"}[case] in message
    assert records == [], f"declared {[r.urn for r in records]} although a builder cannot be used"


def test_an_unreachable_builder_only_warns_in_a_preview(preflight_calls):
    run = run_stack("local", overrides(builders={"linux/arm64": "unix:///nonexistent/docker.sock"}), preview=True)
    assert any("cannot be reached" in w and "the preview goes on" in w for w in run.warnings), run.warnings
    assert len(run.of_type(IMAGE)) == 2


# --- validation rules ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("image_extra,expected", [
    ({"platform": "linux/amd64"}, "acr-publish:images[0].platform 'linux/amd64' and acr-publish:images[0].platforms "
                                  "are both set: platform builds one platform, platforms builds each listed one and an "
                                  "image index over them under one tag; remove platform (list it in platforms)"),
    ({"platforms": []}, "acr-publish:images[0].platforms [] is invalid: it must be a non-empty list of platforms"),
    ({"platforms": "linux/amd64"}, "acr-publish:images[0].platforms 'linux/amd64' is invalid: it must be a non-empty "
                                   "list"),
    ({"platforms": ["linux/amd64", "linux/arm65"]}, "acr-publish:images[0].platforms[1] 'linux/arm65' is invalid: "
                                                    "Docker cannot build linux for architecture 'arm65'"),
    ({"platforms": ["linux/amd64", 7]}, "acr-publish:images[0].platforms[1] 7 is invalid: it must be a platform "
                                        "string"),
    ({"platforms": ["linux/amd64", "linux/x86_64"]}, "acr-publish:images[0].platforms[1] 'linux/x86_64' is invalid: "
                                                     "it is the platform acr-publish:images[0].platforms[0] "
                                                     "'linux/amd64' already names"),
])
def test_platforms_rules(image_extra, expected):
    item = {"name": "web", "context": "app", "target": "web", "platforms": TWO, **image_extra}
    problems = config_problems({"acr-publish:images": [item]})
    assert any(expected in p for p in problems), problems


def test_builders_rules(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    cases = {
        "linux/arm64": "ssh://builder:hunter22@arm-host",
        "linux/s390x": "unix:///run/s390x.sock",
        "linux/arm65": "ssh://arm-host",
    }
    problems = config_problems(overrides(builders=cases))
    expected = [
        "acr-publish:builders.linux/arm64 'ssh://builder:***@arm-host' is invalid: an ssh:// builder logs in "
        "with the ssh agent or keys, never a password in the URL",
        "acr-publish:builders.linux/s390x is invalid: no image builds linux/s390x (they build linux/amd64, "
        "linux/arm64); add it to an image's platforms, or remove the entry",
        "acr-publish:builders key 'linux/arm65' is invalid: Docker cannot build linux for architecture 'arm65'",
    ]
    for line in expected:
        assert any(line in p for p in problems), (line, problems)
    assert not any("hunter22" in p for p in problems), "a password in a builder URL is never printed"


@pytest.mark.parametrize("key", ["linux/arm64/v8", "linux/arm64/v8.0", "linux/aarch64"])
def test_a_builder_key_in_another_spelling_of_a_built_platform_is_that_platform(key):
    """The builder's key and the image's platforms are compared in containerd's normal form, as everything else
    compares platforms: no spelling is 'built by no image' while the image builds it."""
    # A second, invalid key makes the configuration fail, so the run stops before any registry is asked.
    problems = config_problems(overrides(builders={key: "unix:///run/arm.sock", "linux/arm65": "unix:///x.sock"}))
    assert any("linux/arm65" in p for p in problems) and not any("no image builds" in p for p in problems), problems


@pytest.mark.parametrize("value,expected", [
    ("http://arm-host:2375", "a builder is reached over ssh://, tcp:// (with TLS) or unix://"),
    ("tcp://arm-host:2376", "has no certPath: a Docker engine on plain tcp:// lets anyone who reaches the port run "
                            "as root there"),
    ("tcp://arm-host", "it must be tcp://host:port"),
    ("tcp://arm-host:70000", "port 70000 is not 1-65535"),
    ("ssh://arm-host/path", "it must be ssh://[user@]host[:port] with nothing after the host"),
    ("unix://run/docker.sock", "unix:// takes an absolute socket path"),
    ({"host": "unix:///run/d.sock", "certPath": "/tmp"}, "certPath is only used with a tcp:// host"),
    ({"host": "tcp://arm-host:2376", "certPath": "/nonexistent-certs"}, "lacks ca.pem, cert.pem, key.pem"),
    ({"host": "ssh://arm-host", "tls": True}, "acr-publish:builders.linux/arm64.tls is not a known setting"),
    ("", "it must be a Docker host, e.g. ssh://builder@arm-host"),
    ("ssh://arm host", "holds no spaces or control characters"),
    ("tcp://u:hunter22@arm-host:2376", "'tcp://u:***@arm-host:2376' is invalid: it must be tcp://host:port"),
])
def test_builder_host_rules(value, expected):
    problems = config_problems(overrides(builders={"linux/arm64": value}))
    assert any(expected in p for p in problems), problems


def test_builders_must_be_a_map_and_unused_by_a_promoting_stack():
    assert any("acr-publish:builders ['ssh://a'] is invalid: it must be a map of platform to Docker host" in p
               for p in config_problems(overrides(builders=["ssh://a"])))
    assert any("acr-publish:builders names a platform" in p or "already" in p for p in
               config_problems(overrides(builders={"linux/arm64": "ssh://a", "linux/aarch64": "ssh://b"})))


def test_a_promoting_stack_refuses_builders():
    from components.config.validate import settings_from_values

    with pytest.raises(ConfigError) as info:
        settings_from_values("rel", {"registry": {"edition": "local"}, "promoteFrom": "local",
                                     "builders": {"linux/arm64": "ssh://a"}}, region=None, has_password=False)
    assert any("acr-publish:builders is not used when the stack promotes" in p for p in info.value.problems)


def test_a_config_error_declares_nothing():
    records: list = []
    with pytest.raises(ConfigError):
        run_stack("local", overrides(builders={"linux/arm64": "ftp://x"}), records=records)
    assert records == []


# --- cli.explain per platform ----------------------------------------------------------------------------------

def test_explain_reads_each_platform_history(preflight_calls, tmp_path, monkeypatch):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "project"
    root.mkdir()
    for name in PROGRAM_FILES:
        source = PROJECT_ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, root / name)
    (root / "stacks").mkdir()
    (root / "stacks" / "Pulumi.multi.yaml").write_text(
        "config:\n  acr-publish:registry: {edition: local, namespace: demo}\n"
        "  acr-publish:images:\n    - {name: web, context: app, target: web, platforms: [linux/amd64, linux/arm64],\n"
        "       remoteInputs: ignore}\n")
    # The program runs from the copy, whose registry checks no recorder replaces: off, as no registry is there.
    run = run_stack("local", {"acr-publish:images": images(), "acr-publish:preflight": "false"}, project_root=root,
                    stack_name="multi")
    out = run.outputs["images"]["web"]

    def explain(*args):
        return subprocess.run([sys.executable, "-m", "cli.explain", "--stack", "multi", "--image", "web", *args],
                              cwd=root, capture_output=True, text=True, env=os.environ.copy(), timeout=120)

    for platform in TWO:
        proc = explain("--platform", platform)
        assert proc.returncode == 0, proc.stderr
        assert f"tag         {out['platforms'][platform]['imageName'].rsplit(':', 1)[1]}" in proc.stdout
        assert f"platform    {platform}" in proc.stdout
        assert "unchanged since the last planned tag of image 'web@" + platform in proc.stdout, proc.stdout
    proc = explain()
    assert proc.returncode == 2 and "name one with --platform, e.g. --platform linux/arm64" in proc.stderr
    proc = explain("--platform", "linux/s390x")
    assert proc.returncode == 2 and "--platform 'linux/s390x' is none of them" in proc.stderr

    # cli.audit --stack audits what the image's tag names: the index over the platforms' last planned builds.
    from cli import audit as audit_cli
    from components.config import paths

    monkeypatch.setattr(paths, "PROJECT_ROOT", root)
    server, repository, tag, _, _ = audit_cli._stack_target("multi", "web")
    assert (server, repository, tag) == ("127.0.0.1:5000", "demo/web", out["tag"])


BASE = "127.0.0.1:5000/mirror/busybox:static"


def staged_lines(run, root: Path, keyword: str) -> dict[str, list[str]]:
    """platform -> the lines starting with `keyword` of the Dockerfile its docker.Image builds from."""
    found = {}
    for r in run.of_type(IMAGE):
        text = (root / r.inputs["build"]["dockerfile"]).read_text()
        found[r.inputs["build"]["platform"]] = [line for line in text.splitlines() if line.startswith(keyword)]
    return found


def based(**extra) -> dict:
    return overrides(**{"images": images(remoteInputs="resolve", buildArgs={"BASE_IMAGE": BASE}), **extra})


def test_each_platform_builds_from_its_own_manifest_of_a_base_by_tag(preflight_calls, remote_calls):
    """`FROM ${BASE_IMAGE}` by tag: one manifest request for both platforms, each platform's build pinned to its own
    manifest's digest in its own staged Dockerfile."""
    remote_calls.digests.update({(BASE, "linux/amd64"): DIGEST_A, (BASE, "linux/arm64"): DIGEST_B})
    run = run_stack("local", based())
    assert remote_calls.requests == [(BASE, tuple(TWO))], "one manifest request serves both platforms"
    assert staged_lines(run, PROJECT_ROOT, f"FROM {BASE}") == {"linux/amd64": [f"FROM {BASE}@{DIGEST_A} AS base"],
                                                        "linux/arm64": [f"FROM {BASE}@{DIGEST_B} AS base"]}
    files = {r.inputs["build"]["dockerfile"] for r in run.of_type(IMAGE)}
    assert len(files) == 2 and all(f.startswith(".acr-publish/pinned/local/web/") for f in files), files


def test_a_moved_manifest_changes_only_its_platforms_tag_and_the_index_tag(preflight_calls, remote_calls):
    remote_calls.digests.update({(BASE, "linux/amd64"): DIGEST_A, (BASE, "linux/arm64"): DIGEST_B})
    first = run_stack("local", based()).outputs["images"]["web"]
    remote_calls.digests[(BASE, "linux/arm64")] = DIGEST_I  # the index now lists another arm64 manifest
    run = run_stack("local", based())
    second = run.outputs["images"]["web"]
    assert second["platforms"]["linux/amd64"]["imageName"] == first["platforms"]["linux/amd64"]["imageName"]
    assert second["platforms"]["linux/arm64"]["imageName"] != first["platforms"]["linux/arm64"]["imageName"]
    assert second["tag"] != first["tag"]
    assert staged_lines(run, PROJECT_ROOT, f"FROM {BASE}")["linux/arm64"] == [f"FROM {BASE}@{DIGEST_I} AS base"]


def test_an_add_url_per_architecture_fetches_one_file_per_platform(preflight_calls, remote_calls, project):
    root = project
    (root / "ctx").mkdir()
    (root / "ctx" / "Dockerfile").write_text(
        "FROM busybox:1.36\nARG TARGETARCH\nADD http://127.0.0.1:9/tool-${TARGETARCH}.bin /tool\n")
    sums = {p: "sha256:" + p[-2:] * 32 for p in TWO}
    remote_calls.checksums.update({f"http://127.0.0.1:9/tool-{p.split('/')[1]}.bin": sums[p] for p in TWO})
    run = run_stack("local", overrides(**{"images": [{"name": "web", "context": "ctx", "platforms": TWO}],
                                          "preflight": "false"}), project_root=root)
    assert sorted(remote_calls.urls) == [f"http://127.0.0.1:9/tool-{a}.bin" for a in ("amd64", "arm64")]
    assert remote_calls.requests == [("busybox:1.36", tuple(TWO))]
    assert staged_lines(run, root, "ADD ") == {
        p: [f"ADD --checksum={sums[p]} http://127.0.0.1:9/tool-${{TARGETARCH}}.bin /tool"] for p in TWO}


def test_a_base_for_the_build_platform_and_one_url_are_asked_once(preflight_calls, remote_calls, project):
    root = project
    (root / "ctx").mkdir()
    (root / "ctx" / "Dockerfile").write_text(
        "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\nRUN true\nFROM scratch\n"
        "COPY --from=build /etc/passwd /passwd\nADD http://127.0.0.1:9/same-for-all.txt /same\n")
    run = run_stack("local", overrides(**{"images": [{"name": "web", "context": "ctx", "platforms": TWO}], "preflight": "false"}),
                    project_root=root)
    assert len(run.of_type(IMAGE)) == 2
    # Resolved once, for the build platform, and the one file fetched once: the same for both platforms.
    assert [r for r, _p, _login in remote_calls.references] == ["golang:1.22"]
    assert remote_calls.urls == ["http://127.0.0.1:9/same-for-all.txt"]


def test_pinned_refuses_each_unpinned_line_once_for_all_platforms(preflight_calls, remote_calls):
    from components.image import BuildPlanError

    with pytest.raises(BuildPlanError) as err:
        run_stack("local", overrides(**{"images": images(remoteInputs="pinned", buildArgs={"BASE_IMAGE": BASE})}))
    assert str(err.value).count(f"FROM {BASE} has no digest, and remoteInputs is pinned") == 1, str(err.value)
    assert remote_calls.requests == [] and remote_calls.urls == []


def test_a_base_missing_for_one_platform_is_named_with_that_platform(preflight_calls, remote_calls):
    from components.image import BuildPlanError
    from components.remote_sources import ResolveFailure

    remote_calls.fail[BASE] = ResolveFailure("its index has no manifest for linux/arm64 (it has linux/amd64)",
                                             "platform")
    with pytest.raises(BuildPlanError) as err:
        run_stack("local", based())
    assert "line 8: FROM 127.0.0.1:5000/mirror/busybox:static (host 127.0.0.1:5000) cannot be resolved for " \
        "linux/arm64" in str(err.value), str(err.value)


@pytest.mark.parametrize("platforms", [["linux/arm64", "linux/arm64/v8"], ["linux/arm", "linux/arm/v7"],
                                       ["linux/amd64", "linux/amd64/v1"], ["linux/arm64", "linux/aarch64/v8"]])
def test_default_variants_name_the_same_platform(platforms):
    problems = config_problems(overrides(images=images(platforms)))
    assert any("already names" in p for p in problems), problems


@pytest.mark.parametrize("host", ["ssh://user:pa/ss@arm-host", "ssh://user:p@ss@arm-host",
                                  "tcp://u:se/cret@h:2376", "http://u:se/cret@h"])
def test_a_builder_url_password_is_never_shown(host):
    problems = config_problems(overrides(builders={"linux/arm64": host}))
    assert problems and not any(secret in p for p in problems for secret in ("pa/ss", "p@ss", "se/cret", "ss@")), \
        problems


def test_deeply_nested_json_from_a_registry_or_the_docker_config_is_no_recursion_error(tmp_path, monkeypatch):
    from components.image_index import _same_children
    from components.docker_config import _docker_config

    nested = b"[" * 1100 + b"]" * 1100
    assert _same_children(nested, []) is False
    (tmp_path / "config.json").write_bytes(nested)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert _docker_config() == {}


def test_each_platform_caches_from_its_own_last_build(preflight_calls):
    """The layer cache per platform: each platform's docker.Image caches from that platform's last build, read from
    the stack's own outputs (images.<name>.platforms.<platform>.imageName), never from another platform's."""
    from tests.harness import ORGANIZATION, StackMocks

    first = run_stack("local", overrides())
    out = first.outputs["images"]["web"]
    previous = {**out, "platforms": {
        p: {**out["platforms"][p], "imageName": f"{out['repository']}:ctx-prev-{p.replace('/', '-')}"} for p in TWO}}
    again = run_stack("local", overrides(),
                      mocks=StackMocks(stacks={f"{ORGANIZATION}/acr-publish/local": {"images": {"web": previous}}}))
    built = again.of_type(IMAGE)
    assert len(built) == 2
    for r in built:
        platform = r.inputs["build"]["platform"]
        assert r.inputs["build"]["cacheFrom"] == {"images": [previous["platforms"][platform]["imageName"]]}, r.urn
