"""End to end: builders reached over tcp:// with TLS and over ssh://, against a real second Docker engine.

The engine is tests/e2e/second_engine.py's (its own dockerd in a network namespace holding only loopback). For
tcp:// it also listens with --tlsverify, its CA, server and client certificates made here (tests/e2e/engine_tls.py).
For ssh:// an sshd of this machine's OpenSSH runs on 127.0.0.1:<free port> as the current user (tests/e2e/sshd.py),
its sessions' DOCKER_HOST the second engine's socket. Each proves the preflight (components/builders.py) reads the
engine's platform through that transport, that every way it can fail is one error naming the setting, the host,
what failed and the fix, and that a two-platform publish through the pulumi-docker stand-in builds linux/arm64 on
that engine (tests/e2e/test_multi_platform.py's pattern).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from components.builders import BUILDER_TIMEOUT_S, BuilderError, engine_platform
from components.config.schema import BuilderSettings
from tests.e2e import second_engine, sshd
from tests.e2e.base_image import base_image  # noqa: F401
from tests.e2e.engine_tls import EngineTLS, make_ca, make_client, make_tls
from tests.e2e.publishing import NAMESPACE, Publisher, copy_project, publisher  # noqa: F401
from tests.e2e.registry import RegistryServer, registry_binary, registry_factory  # noqa: F401
from tests.e2e.test_multi_platform import (PLATFORMS, indexes, multi_config, read_index, registry,  # noqa: F401
                                           write_context)
from tests.harness import PROJECT_ROOT

ARM = "linux/arm64"


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> EngineTLS:
    return make_tls(tmp_path_factory.mktemp("engine-tls"))


@pytest.fixture(scope="module")
def tls_engine(registry: RegistryServer, tls: EngineTLS, docker_engine: str) -> Iterator[second_engine.SecondEngine]:
    engine = second_engine.start([int(registry.server.rsplit(":", 1)[1])], PROJECT_ROOT, tls=tls)
    yield engine
    engine.stop()


def refusal(builder: BuilderSettings) -> str:
    with pytest.raises(BuilderError) as err:
        engine_platform(builder, timeout=10)
    message = str(err.value)
    assert message.startswith(f"acr-publish:builders.{ARM} {builder.host}: ") and "\n" not in message, message
    return message


def published_on(engine: second_engine.SecondEngine, out: dict, registry: RegistryServer, docker_engine: str,
                 inspect) -> None:
    """The index lists both platforms at the children's digests; the arm64 build is on `engine` only."""
    _, index = read_index(registry, out["tag"])
    listed = {(m["platform"]["os"] + "/" + m["platform"]["architecture"]): m["digest"] for m in index["manifests"]}
    assert listed == {p: out["platforms"][p]["ref"].split("@", 1)[1] for p in PLATFORMS}
    arm_name = out["platforms"][ARM]["imageName"]
    inspected = inspect("image", "inspect", "--format", "{{.Architecture}}", arm_name)
    assert inspected.returncode == 0 and inspected.stdout.strip() == "arm64", inspected.stderr
    assert subprocess.run([docker_engine, "image", "inspect", arm_name], capture_output=True,
                          timeout=60).returncode != 0, "the local engine must not hold the arm64 build"
    assert engine.docker("image", "inspect", out["platforms"]["linux/amd64"]["imageName"]).returncode != 0
    assert engine.network_links() == ["lo"], "the builder's namespace holds loopback only"


# --- tcp:// with TLS -------------------------------------------------------------------------------------------

def test_the_preflight_reads_a_tls_engines_platform(tls_engine, tls: EngineTLS):
    answer = engine_platform(BuilderSettings(ARM, tls_engine.tcp_host, str(tls.client)))
    version = tls_engine.tls_docker("version", "--format", "{{.Server.Os}}/{{.Server.Arch}}")
    assert version.returncode == 0, version.stderr
    assert "/".join(answer) == version.stdout.strip()
    # The name the engine's certificate holds besides the address.
    assert engine_platform(BuilderSettings(ARM, tls_engine.tcp_host.replace("127.0.0.1", "localhost"),
                                           str(tls.client))) == answer


def test_a_ca_that_did_not_sign_the_engine_is_one_error_with_the_fix(tls_engine, tls: EngineTLS, tmp_path: Path):
    certs = tmp_path / "certs"
    shutil.copytree(tls.client, certs)
    make_ca(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "ca.pem", certs / "ca.pem")
    message = refusal(BuilderSettings(ARM, tls_engine.tcp_host, str(certs)))
    assert "the engine's TLS certificate was refused (unable to get local issuer certificate)" in message, message
    assert f"it must be signed by the CA in {certs}/ca.pem and name 127.0.0.1" in message, message
    # The docker CLI refuses the same certPath: the check is not stricter or looser than the client that builds.
    env_cli = subprocess.run(["/usr/bin/docker", "version"], capture_output=True, text=True, timeout=60,
                             env={"DOCKER_HOST": tls_engine.tcp_host, "DOCKER_TLS_VERIFY": "1",
                                  "DOCKER_CERT_PATH": str(certs), "PATH": "/usr/bin:/bin"})
    assert env_cli.returncode != 0 and "certificate signed by unknown authority" in env_cli.stderr, env_cli.stderr


def test_a_client_certificate_the_engine_does_not_trust_is_refused_by_the_engine(
        tls_engine, tls: EngineTLS, tmp_path: Path):
    # The client trusts the engine (the right ca.pem), but its own certificate comes from a CA the engine does not
    # know: dockerd --tlsverify refuses the handshake.
    certs = make_client(tmp_path / "certs", make_ca(tmp_path / "other"), tls.ca)
    message = refusal(BuilderSettings(ARM, tls_engine.tcp_host, str(certs)))
    assert ": the engine refused this client's certificate (" in message \
        or ": the engine closed the TLS connection (" in message, message
    assert f"{certs}/cert.pem must be signed by the CA the engine trusts" in message \
        or f"it may refuse {certs}/cert.pem" in message, message


def test_a_cert_path_without_the_files_is_one_error_with_the_fix(tls_engine, tls: EngineTLS, tmp_path: Path):
    # The configuration refuses such a certPath before the run; these are files gone or broken after that.
    empty = tmp_path / "empty"
    empty.mkdir()
    message = refusal(BuilderSettings(ARM, tls_engine.tcp_host, str(empty)))
    assert f": its certPath {empty} lacks ca.pem, cert.pem, key.pem: it must hold" in message, message
    broken = tmp_path / "broken"
    shutil.copytree(tls.client, broken)
    (broken / "key.pem").write_text("not a key\n")
    message = refusal(BuilderSettings(ARM, tls_engine.tcp_host, str(broken)))
    assert f": its certPath {broken} cannot be used (" in message and "must be PEM files" in message, message


def test_a_plain_tcp_engine_is_one_error_with_the_fix(tls_engine, tls: EngineTLS):
    plain = tls_engine.plain_tcp_host()
    message = refusal(BuilderSettings(ARM, plain, str(tls.client)))
    assert ": it answers without TLS (" in message and "start its dockerd with --tlsverify" in message, message


def test_two_platforms_with_the_arm64_builder_on_tcp_with_tls(
        publisher: Publisher, registry: RegistryServer, tls_engine, tls: EngineTLS, indexes, docker_engine: str,
        tmp_path: Path):
    project = copy_project(tmp_path / "project")
    write_context(project, "built over TLS\n")
    builder = {"host": tls_engine.tcp_host, "certPath": str(tls.client)}
    run = publisher.run(project, "multi-tls", tmp_path / "state", config=multi_config(builder),
                        index_hook=indexes(project))
    out = run.image("multi")
    builds = {b.platform: b.host for b in run.provider.builds}
    assert builds == {"linux/amd64": None, ARM: tls_engine.tcp_host}
    assert {p.image_name: p.host for p in run.provider.pushes}[out["platforms"][ARM]["imageName"]] \
        == tls_engine.tcp_host
    published_on(tls_engine, out, registry, docker_engine, tls_engine.tls_docker)


# --- ssh:// ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ssh_server(tls_engine) -> Iterator[sshd.SshServer]:
    if not os.access(sshd.SSHD, os.X_OK):
        message = f"no {sshd.SSHD} (openssh-server; .ci/provision-docker.sh installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    server = sshd.start(tls_engine.host)
    yield server
    server.stop()


@pytest.fixture
def ssh_client(ssh_server: sshd.SshServer, monkeypatch, tmp_path: Path):
    """PATH starts with an `ssh` that knows the server's host key and holds the authorized key; returns a
    function making other clients (`trust_host`, `key`) for a test to put there instead."""
    def use(**options) -> Path:
        directory = ssh_server.client(tmp_path / f"client-{len(options)}-{time.monotonic_ns()}", **options)
        monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{os.environ['PATH']}")
        return directory
    use()
    return use


def bounded_refusal(builder: BuilderSettings) -> str:
    """refusal(), which BatchMode makes quick: it never waits for a prompt (the generous bound turns a hang into a
    failure)."""
    started = time.monotonic()
    message = refusal(builder)
    assert time.monotonic() - started < BUILDER_TIMEOUT_S + 10, message
    return message


def test_the_preflight_reads_the_engines_platform_over_ssh(tls_engine, ssh_server, ssh_client):
    answer = engine_platform(BuilderSettings(ARM, ssh_server.host))
    version = tls_engine.docker("version", "--format", "{{.Server.Os}}/{{.Server.Arch}}")
    assert "/".join(answer) == version.stdout.strip(), version.stderr
    assert f"Accepted publickey for {ssh_server.user} from 127.0.0.1" in ssh_server.log, ssh_server.log[-2000:]


def test_an_unknown_host_key_is_one_error_with_the_fix(ssh_server, ssh_client):
    ssh_client(trust_host=False)
    message = bounded_refusal(BuilderSettings(ARM, ssh_server.host))
    assert ": ssh refused the builder's host key (Host key verification failed." in message, message
    assert f"`ssh-keyscan -p {ssh_server.port} 127.0.0.1 >> ~/.ssh/known_hosts`" in message, message


def test_a_refused_key_is_one_error_with_the_fix(ssh_server, ssh_client, tmp_path: Path):
    ssh_client(key=sshd.keygen(tmp_path / "stranger"))
    message = bounded_refusal(BuilderSettings(ARM, ssh_server.host))
    assert ": the builder refused every key ssh offered (" in message and "Permission denied (publickey)" in message
    assert "load the key into ssh-agent (`ssh-add`) or name it with IdentityFile" in message, message


def test_an_ssh_server_that_never_answers_is_bounded(ssh_client):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        builder = BuilderSettings(ARM, f"ssh://builder@127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(BuilderError) as err:
            engine_platform(builder, timeout=2)
        assert time.monotonic() - started < 30
    assert str(err.value) == (f"acr-publish:builders.{ARM} {builder.host} did not answer within 2s: check that its "
                              "Docker engine runs and is reachable from here")



def test_ssh_that_exits_before_reading_the_request_is_reported_in_its_own_words(ssh_client, monkeypatch):
    """ssh ends before it reads the request (here: nothing listens on the port): writing to it breaks the pipe,
    and ssh's own message is still the one reported. Popen returns once ssh has exited, so that the write always
    meets a closed pipe."""
    from components import builders

    popen = subprocess.Popen

    def exited(*args, **kwargs):
        proc = popen(*args, **kwargs)
        proc.wait(timeout=60)
        return proc

    monkeypatch.setattr(builders.subprocess, "Popen", exited)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: ssh's connection is refused
        builder = BuilderSettings(ARM, f"ssh://builder@127.0.0.1:{port}")
        message = bounded_refusal(builder)
    assert message.startswith(f"acr-publish:builders.{ARM} {builder.host}: it cannot be reached (ssh failed: ") \
        and "Connection refused" in message, message

def test_two_platforms_with_the_arm64_builder_over_ssh(
        publisher: Publisher, registry: RegistryServer, tls_engine, ssh_server, ssh_client, indexes,
        docker_engine: str, tmp_path: Path):
    # The preflight, the build's docker CLI (DOCKER_HOST=ssh://...) and the push's Docker SDK (use_ssh_client) all
    # run `ssh`, as the provider's client does.
    project = copy_project(tmp_path / "project")
    write_context(project, "built over ssh\n")
    run = publisher.run(project, "multi-ssh", tmp_path / "state", config=multi_config(ssh_server.host),
                        index_hook=indexes(project))
    out = run.image("multi")
    assert {b.platform: b.host for b in run.provider.builds} == {"linux/amd64": None, ARM: ssh_server.host}
    assert {p.image_name: p.host for p in run.provider.pushes}[out["platforms"][ARM]["imageName"]] \
        == ssh_server.host
    published_on(tls_engine, out, registry, docker_engine, tls_engine.docker)
