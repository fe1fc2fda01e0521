"""Where each platform builds: the Docker engines named by acr-publish:builders, checked before anything is declared.

`check_builders` asks every configured builder, and every engine a platform will build on, for its Docker version
(`GET /version` of the Engine API, the call `docker version` makes), bounded by BUILDER_TIMEOUT_S per engine:
- unix:// over the socket; tcp:// over TLS with the certPath's ca.pem (the engine's certificate must chain to it
  and name the host) and the client's cert.pem/key.pem, as `docker --tlsverify` does; ssh:// through `ssh
  [-p port] [user@]host docker system dial-stdio` with BatchMode (keys or agent only, never a prompt), as the docker
  CLI reaches an ssh:// host;
- a builder that does not answer, or answers as something other than a Docker engine, is a BuilderError naming the
  builder's setting, the host, what failed and the fix (in a preview a warning: previews build nothing);
- a platform built on an engine of another architecture (the local engine included: this machine's architecture)
  gets one warning: `RUN` steps of that build run under emulation, which needs QEMU registered through binfmt_misc
  on that engine, and are many times slower than a native builder; a Dockerfile of `FROM` and `COPY` needs none.
`builder_providers` declares one `docker.Provider` per builder a build uses, so that platform's `docker.Image`
builds and pushes on that engine. No Docker SDK: the check is one HTTP request, written here.
"""
from __future__ import annotations

import contextlib
import os
import select
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Iterable, Mapping

import pulumi

from boundedjson import parse_json
from buildcontext.stage_args import host_platform_name
from components.docker_rules import normal_platform, platform_parts
from components.platforms import platform_slug
from components.config.builders import TLS_FILES
from components.config.schema import BuilderSettings, Settings
from components.config.shown import shown
from errors import AcrPublishError

BUILDER_TIMEOUT_S = 10.0
RESPONSE_LIMIT = 64 * 1024
_REQUEST = b"GET /version HTTP/1.0\r\nHost: docker\r\nUser-Agent: acr-publish\r\n\r\n"
# OpenSSL's reasons when the other end speaks something other than TLS (a plain HTTP engine answers the hello).
_NOT_TLS = {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG"}


class BuilderError(AcrPublishError):
    """A configured builder cannot be used; every problem, each naming the setting, the host and the fix."""


def _key(builder: BuilderSettings) -> str:
    return f"acr-publish:builders.{builder.platform}"


def _read_until_closed(sock: socket.socket, deadline: float) -> bytes:
    data = b""
    while len(data) <= RESPONSE_LIMIT:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(16384)
        if not chunk:
            break
        data += chunk
    return data


class _Unusable(Exception):
    """What failed on the way to a builder's engine, and the fix: engine_platform puts the builder in front."""

    def __init__(self, what: str, fix: str):
        super().__init__(f"{what}: {fix}")


def _tls_context(cert_path: str) -> ssl.SSLContext:
    """Docker's client TLS from a certPath: its ca.pem checks the engine, cert.pem/key.pem are this client."""
    certs = Path(cert_path)
    missing = [name for name in TLS_FILES if not (certs / name).is_file()]
    if missing:
        raise _Unusable(f"its certPath {cert_path} lacks {', '.join(missing)}",
                        f"it must hold {', '.join(TLS_FILES)} (Docker's client certificate layout): copy them there "
                        "from the builder's TLS setup")
    try:
        context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        context.load_cert_chain(str(certs / "cert.pem"), str(certs / "key.pem"))
    except (OSError, ssl.SSLError) as err:
        reason = getattr(err, "reason", None) or err.strerror or str(err)
        raise _Unusable(f"its certPath {cert_path} cannot be used ({shown(reason)[1:-1]})",
                        f"{', '.join(TLS_FILES)} must be PEM files readable here, key.pem the key of cert.pem: copy "
                        "them from the builder's TLS setup") from None
    return context


def _tls_refusal(err: ssl.SSLError, builder: BuilderSettings) -> _Unusable:
    """An SSLError of the handshake as what failed and the fix, by which side refused."""
    reason = str(err.reason or err)
    host = builder.host.partition("://")[2].rsplit(":", 1)[0]
    if isinstance(err, ssl.SSLCertVerificationError) or reason == "CERTIFICATE_VERIFY_FAILED":
        detail = getattr(err, "verify_message", None) or reason
        return _Unusable(f"the engine's TLS certificate was refused ({shown(detail)[1:-1]})",
                         f"it must be signed by the CA in {builder.cert_path}/ca.pem and name {host}: copy the "
                         "builder's CA certificate (its dockerd --tlscacert) there, or give the engine a "
                         f"certificate for {host}")
    if "ALERT" in reason:
        return _Unusable(f"the engine refused this client's certificate ({shown(reason)[1:-1]})",
                         f"{builder.cert_path}/cert.pem must be signed by the CA the engine trusts (its dockerd "
                         "--tlscacert): issue the client certificate from that CA")
    if reason in _NOT_TLS:
        return _Unusable(f"it answers without TLS ({shown(reason)[1:-1]})",
                         "a Docker engine on plain tcp:// lets anyone who reaches the port run as root there: start "
                         "its dockerd with --tlsverify --tlscacert --tlscert --tlskey, or use ssh://")
    return _Unusable(f"TLS failed ({shown(reason)[1:-1]})",
                     f"the engine's certificate must chain to {builder.cert_path}/ca.pem and name the host, and "
                     "the engine must accept cert.pem")


def _tls_exchange(builder: BuilderSettings, timeout: float, deadline: float) -> bytes:
    host, port = builder.host.partition("://")[2].rsplit(":", 1)
    context = _tls_context(builder.cert_path or "")
    with socket.create_connection((host, int(port)), timeout=timeout) as raw:
        try:
            with context.wrap_socket(raw, server_hostname=host) as sock:
                sock.sendall(_REQUEST)
                return _read_until_closed(sock, deadline)
        except ssl.SSLError as err:
            raise _tls_refusal(err, builder) from None
        except (ConnectionResetError, BrokenPipeError) as err:
            # TLS 1.3 ends the client's handshake before the engine checks the client's certificate: a refusal can
            # arrive as a reset instead of the alert.
            raise _Unusable(f"the engine closed the TLS connection ({err.strerror})",
                            f"it may refuse {builder.cert_path}/cert.pem: the client certificate must be signed by "
                            "the CA the engine trusts (its dockerd --tlscacert)") from None


def _ssh_refusal(stderr: str, returncode: int, target: str, port: str) -> _Unusable:
    """A failed `ssh ... docker system dial-stdio` as what failed and the fix, from ssh's own words."""
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("Warning: Permanently added")]
    said = shown(lines[-1] if lines else f"exit {returncode}")[1:-1]
    host = target.rsplit("@", 1)[-1]
    if "Host key verification failed" in stderr:
        keyscan = f"ssh-keyscan{' -p ' + port if port else ''} {host}"
        return _Unusable(f"ssh refused the builder's host key ({said}: it is not in known_hosts, or it changed)",
                         "check the host's key fingerprint with its administrator, then add it to ~/.ssh/known_hosts "
                         f"(`{keyscan} >> ~/.ssh/known_hosts`, or connect once with "
                         f"`ssh {'-p ' + port + ' ' if port else ''}{target}`)")
    if "Permission denied" in stderr:
        return _Unusable(f"the builder refused every key ssh offered ({said})",
                         "load the key into ssh-agent (`ssh-add`) or name it with IdentityFile for that host in "
                         "~/.ssh/config, and add its public key to the builder user's authorized_keys (a password is "
                         "never asked: BatchMode)")
    if returncode == 127 or "command not found" in stderr:
        return _Unusable(f"the builder has no docker CLI for `docker system dial-stdio` ({said})",
                         "install Docker there, on the PATH of ssh sessions")
    return _Unusable(f"it cannot be reached (ssh failed: {said})",
                     "start its Docker engine, or fix the host in the stack file")


def _read_pipes(proc: subprocess.Popen, deadline: float) -> tuple[bytes, bytes]:
    """stdout until it closes (at most RESPONSE_LIMIT + 1 bytes) and what stderr said meanwhile; TimeoutError at
    the deadline."""
    out, err = b"", b""
    streams = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err"}
    while proc.stdout.fileno() in streams and len(out) <= RESPONSE_LIMIT:
        ready, _, _ = select.select(list(streams), [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError()
        for fd in ready:
            chunk = os.read(fd, 16384)
            if not chunk:
                del streams[fd]
            elif streams[fd] == "out":
                out += chunk
            elif len(err) < RESPONSE_LIMIT:
                err += chunk
    return out[:RESPONSE_LIMIT + 1], err


def _ssh_exchange(builder: BuilderSettings, timeout: float, deadline: float) -> bytes:
    rest = builder.host.partition("://")[2]
    target, _, port = rest.rpartition(":") if ":" in rest.rsplit("@", 1)[-1] else (rest, "", "")
    command = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, int(timeout))}", "-T"]
    command += (["-p", port] if port else []) + ["--", target, "docker", "system", "dial-stdio"]
    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise _Unusable("there is no `ssh` client on this machine", "install openssh-client") from None
    try:
        proc.stdin.write(_REQUEST)
        proc.stdin.flush()
        # stdin stays open until the answer is read, as the docker CLI keeps it: its end half-closes the stream
        # to the engine, which then cancels the request (500 "context canceled").
        out, err = _read_pipes(proc, deadline)
    except BrokenPipeError:
        out, err = _read_pipes(proc, deadline)
    finally:
        with contextlib.suppress(BrokenPipeError):  # ssh ended unread: its stderr says why, not the pipe
            proc.stdin.close()
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    if proc.returncode != 0 and not out:
        raise _ssh_refusal(err.decode("utf-8", "replace"), proc.returncode, target, port)
    return out


def _exchange(builder: BuilderSettings, timeout: float) -> bytes:
    """The raw HTTP answer of the builder's engine to GET /version; _Unusable, OSError or TimeoutError when none
    comes."""
    deadline = time.monotonic() + timeout
    scheme, _, rest = builder.host.partition("://")
    if scheme == "unix":
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(rest)
            sock.sendall(_REQUEST)
            return _read_until_closed(sock, deadline)
    if scheme == "tcp":
        return _tls_exchange(builder, timeout, deadline)
    return _ssh_exchange(builder, timeout, deadline)


def engine_platform(builder: BuilderSettings, timeout: float | None = None) -> tuple[str, str]:
    """(os, architecture) the builder's Docker engine reports; BuilderError naming the fix when it does not."""
    timeout = BUILDER_TIMEOUT_S if timeout is None else timeout
    where = f"{_key(builder)} {builder.host}"
    try:
        raw = _exchange(builder, timeout)
    except (TimeoutError, socket.timeout):
        raise BuilderError(f"{where} did not answer within {timeout:g}s: check that its Docker engine runs and is "
                           "reachable from here") from None
    except _Unusable as err:
        raise BuilderError(f"{where}: {err}") from None
    except OSError as err:
        reason = err.strerror or str(err) or type(err).__name__
        raise BuilderError(f"{where} cannot be reached ({shown(reason)[1:-1]}): start its Docker engine, or fix the "
                           "host in the stack file") from None
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    try:
        version = parse_json(body, limit=RESPONSE_LIMIT) if status.split(" ")[1:2] == ["200"] else None
    except ValueError:
        version = None
    if not isinstance(version, dict) or not isinstance(version.get("Arch"), str) or "ApiVersion" not in version:
        first = shown(status or raw[:80].decode("latin-1"))[1:-1]
        raise BuilderError(f"{where} answered, but not as a Docker engine ({first}): point it at the engine's "
                           "socket or API port")
    return str(version.get("Os") or "linux"), version["Arch"]


def _local_platform() -> tuple[str, str]:
    os_name, _, arch = host_platform_name().partition("/")
    return os_name, arch


def check_builders(settings: Settings, building: Iterable[tuple[int, str, str]]) -> None:
    """Ping every builder; warn for every (image index, image name, platform) in `building` that builds on an
    engine of another architecture. Raises BuilderError listing every builder that cannot be used (a warning in a
    preview, which builds nothing)."""
    engines: dict[str, tuple[str, str] | None] = {}
    problems: list[str] = []
    for builder in settings.builders:
        try:
            engines[builder.platform] = engine_platform(builder)
        except BuilderError as err:
            engines[builder.platform] = None
            problems.append(str(err))
    if problems:
        if not pulumi.runtime.is_dry_run():
            raise BuilderError("\n".join(problems))
        for problem in problems:
            pulumi.log.warn(f"{problem} (the preview goes on: `pulumi up` needs the builder)")
    local = _local_platform()
    for i, name, platform in building:
        builder = builder_for(settings, platform)
        engine = engines.get(builder.platform) if builder is not None else local
        if engine is None:
            continue
        wanted = platform_parts(platform)
        if wanted[:2] != engine:
            where = f"builder {builder.host}" if builder is not None else "the local Docker engine"
            pulumi.log.warn(
                f"acr-publish:images[{i}] ({name}): {platform} builds on {where}, which runs {engine[0]}/{engine[1]}: "
                f"RUN steps of that build need QEMU for {wanted[1]} registered through binfmt_misc on that engine "
                "(else they fail with `exec format error`) and run many times slower under it; a Dockerfile of FROM "
                f"and COPY only needs none. To build natively: acr-publish:builders: {{{platform}: "
                "ssh://user@<a host of that architecture>}")


def builder_for(settings: Settings, platform: str) -> BuilderSettings | None:
    """The builder configured for `platform` (either spelling of it), or None: the local engine."""
    wanted = normal_platform(platform)
    return next((b for b in settings.builders if normal_platform(b.platform) == wanted), None)


def builder_providers(settings: Settings, platforms: Iterable[str]) -> Mapping[str, "pulumi.ProviderResource"]:
    """One docker.Provider per builder that one of `platforms` (the platforms with a build) uses, by the builder's
    platform as configured. Declared only for builders a build uses: an idle builder needs no provider."""
    import pulumi_docker as docker

    providers: dict[str, pulumi.ProviderResource] = {}
    for platform in platforms:
        builder = builder_for(settings, platform)
        if builder is None or builder.platform in providers:
            continue
        providers[builder.platform] = docker.Provider(
            f"builder-{platform_slug(builder.platform)}", host=builder.host, cert_path=builder.cert_path)
    return providers
