"""The local registry `make up` pushes to: 127.0.0.1:5000 unless ACR_PUBLISH_LOCAL_REGISTRY_PORT says otherwise.

Owns the one exchange with the port that every request of the set-up goes through, bounded in all (`exchange`),
telling a registry from anything else on the port (`probe_registry`), starting one (Debian's
`docker-registry serve` with scripts/local-registry.yml when installed, else the `registry:2` image; storage under
`.registry-data/`), and stopping the one it started (`--stop-registry`). Standard library only.
"""
from __future__ import annotations

import http.client
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from local_run import DOCKER_INFO_TIMEOUT_S, EXIT_PORT_TAKEN, EXIT_REGISTRY_FAILED, StopRun, step

DEFAULT_REGISTRY_PORT = 5000  # stacks/Pulumi.local.yaml pushes to 127.0.0.1:5000
REGISTRY_CONTAINER = "acr-publish-registry"
REGISTRY_IMAGE = "registry:2"
PROJECT_LABEL = "acr-publish.project"  # on the container, so --stop-registry removes only this project's one
REGISTRY_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LocalRegistry:
    """Where the project's local registry listens (`addr`, on loopback only) and keeps its images, pid and log."""

    project: Path
    port: int
    addr: str
    data: Path
    pid_file: Path
    log: Path

    @classmethod
    def of(cls, project: Path, port: int) -> "LocalRegistry":
        data = project / ".registry-data"
        return cls(project=project, port=port, addr=f"127.0.0.1:{port}", data=data, pid_file=data / "registry.pid",
                   log=data / "registry.log")


class Stalled(Exception):
    """An exchange with the local port did not end within its budget; str() says which request stalled."""


def exchange(port: int, method: str, path: str, timeout: float,
             headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """The status and headers of `method path` on 127.0.0.1:`port`, within `timeout` seconds in all, not per read:
    when it runs out the socket is shut down (a server trickling its headers is cut off) and Stalled names the
    request. Every request the set-up scripts send goes through here; OSError and HTTPException as http.client
    raises them."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    outcome: list[http.client.HTTPResponse | BaseException] = []

    def run() -> None:
        try:
            conn.request(method, path, headers=headers or {})
            outcome.append(conn.getresponse())
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, name=f"local-registry {method} {path}", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        if conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        worker.join(1.0)
        conn.close()
        raise Stalled(f"it did not finish answering {method} {path} within {timeout:g}s")
    conn.close()
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def probe_registry(port: int, timeout: float = 2.0) -> str:
    """'registry', 'free' (connection refused) or why what holds the port is not a registry.

    Only a registry's answer to GET /v2/ counts: 200 or 401 with the registry API's `Docker-Distribution-API-Version:
    registry/2.0` header (distribution sends it on every answer, a login challenge included); a web page or another
    service's 401 is not one. `timeout` bounds the whole exchange (`exchange`)."""
    try:
        response = exchange(port, "GET", "/v2/", timeout)
    except Stalled as stalled:
        return str(stalled)
    except ConnectionRefusedError:
        return "free"
    except (OSError, http.client.HTTPException) as exc:
        return f"it does not speak HTTP ({type(exc).__name__}: {ascii(str(exc))[1:-1][:200]})"
    return _registry_verdict(response.status, response.getheader("Docker-Distribution-API-Version", ""))


def _registry_verdict(status: int, version: str) -> str:
    if status not in (200, 401):
        return f"GET /v2/ answered HTTP {status}, not 200 or 401"
    if version.strip() != "registry/2.0":
        return (f"GET /v2/ answered HTTP {status} without the registry API's header "
                "Docker-Distribution-API-Version: registry/2.0 (a web server or another service, not a registry)")
    return "registry"


def registry_binary(env: dict[str, str]) -> str | None:
    return shutil.which("docker-registry", path=env.get("PATH"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its new parent) is not a running registry
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_registry_process(pid: int, registry: LocalRegistry) -> bool:
    """True when `pid` is a docker-registry serving this project's storage (guards against a recycled pid)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _pid_alive(pid)  # no /proc (macOS): trust the pid file
    wanted = f"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY={registry.data}".encode()
    return any(part.endswith(b"docker-registry") for part in cmdline[:1]) and wanted in environ


def _wait_for_registry(registry: LocalRegistry, alive) -> str:
    """'' once the registry answers; else the last problem seen. `alive()` False stops the wait early."""
    deadline = time.monotonic() + REGISTRY_START_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not alive():
            return "the registry process exited"
        last = probe_registry(registry.port, timeout=1.0)
        if last == "registry":
            return ""
        time.sleep(0.1)
    return f"no answer on http://{registry.addr}/v2/ within {REGISTRY_START_TIMEOUT_S:.0f}s ({last})"


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


def start_debian_registry(registry: LocalRegistry, binary: str, env: dict[str, str]) -> None:
    config = Path(__file__).resolve().parent / "local-registry.yml"
    registry.data.mkdir(parents=True, exist_ok=True)
    # REGISTRY_* variables override the config file; drop any the user has set so the registry is exactly the
    # documented one, then set the two that place it in this project.
    child_env = {k: v for k, v in env.items() if not k.startswith("REGISTRY_")}
    child_env["REGISTRY_HTTP_ADDR"] = registry.addr
    child_env["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] = str(registry.data)
    # One instance, so any secret works; setting it keeps distribution's "no HTTP secret" warning out of the log.
    child_env["REGISTRY_HTTP_SECRET"] = secrets.token_hex(16)
    with open(registry.log, "ab") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=child_env, cwd=registry.data, start_new_session=True,  # outlives this script
        )
    registry.pid_file.write_text(f"{process.pid}\n")
    problem = _wait_for_registry(registry, lambda: process.poll() is None)
    if problem:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
        registry.pid_file.unlink(missing_ok=True)
        raise StopRun(f"docker-registry did not start on {registry.addr}: {problem}\n"
                      f"--- last lines of {registry.log} ---\n{_log_tail(registry.log)}",
                      EXIT_REGISTRY_FAILED)
    print(f"    started docker-registry (pid {process.pid}) on {registry.addr}, storage "
          f"{registry.data}, log {registry.log}")


def start_registry_container(registry: LocalRegistry, docker: str, env: dict[str, str]) -> None:
    registry.data.mkdir(parents=True, exist_ok=True)
    # A container of ours that exists but does not answer on this port (stopped, or made for another port) is
    # replaced; the images stay in the bind-mounted .registry-data.
    subprocess.run([docker, "rm", "-f", REGISTRY_CONTAINER], capture_output=True, env=env)
    run = subprocess.run(
        [docker, "run", "-d", "--name", REGISTRY_CONTAINER, "--label", f"{PROJECT_LABEL}={registry.project}",
         "-p", f"{registry.addr}:5000", "-v", f"{registry.data}:/var/lib/registry",
         REGISTRY_IMAGE],
        capture_output=True, text=True, env=env,
    )
    if run.returncode != 0:
        raise StopRun(f"`docker run {REGISTRY_IMAGE}` failed (exit {run.returncode}): {run.stderr.strip()}\n"
                      "Install Debian's docker-registry instead (`apt-get install docker-registry`), or make the "
                      f"{REGISTRY_IMAGE} image available to the engine.", EXIT_REGISTRY_FAILED)

    def running() -> bool:
        state = subprocess.run([docker, "inspect", "-f", "{{.State.Running}}", REGISTRY_CONTAINER],
                               capture_output=True, text=True, env=env)
        return state.returncode == 0 and state.stdout.strip() == "true"

    problem = _wait_for_registry(registry, running)
    if problem:
        logs = subprocess.run([docker, "logs", "--tail", "20", REGISTRY_CONTAINER],
                              capture_output=True, text=True, env=env)
        raise StopRun(f"the {REGISTRY_IMAGE} container '{REGISTRY_CONTAINER}' did not start on "
                      f"{registry.addr}: {problem}\n--- docker logs --tail 20 {REGISTRY_CONTAINER} ---\n"
                      f"{(logs.stdout + logs.stderr).strip()}", EXIT_REGISTRY_FAILED)
    print(f"    started container {REGISTRY_CONTAINER} ({REGISTRY_IMAGE}) on {registry.addr}, "
          f"storage {registry.data}")


def check_registry_port(registry: LocalRegistry) -> bool:
    """True when a registry already answers; False when the port is free; StopRun when something else holds it."""
    state = probe_registry(registry.port)
    if state == "registry":
        return True
    if state == "free":
        return False
    raise StopRun(f"Port {registry.port} on 127.0.0.1 is taken by something that is not a registry: "
                  f"{state}. Stop that program (`ss -ltnp 'sport = :{registry.port}'` or "
                  f"`lsof -i :{registry.port}` shows which), then run `make up` again.", EXIT_PORT_TAKEN)


def ensure_registry(registry: LocalRegistry, docker: str, env: dict[str, str], already_answering: bool) -> None:
    step(f"Local registry on {registry.addr}")
    if already_answering:
        print(f"    reusing the registry that already answers on http://{registry.addr}/v2/")
        return
    binary = registry_binary(env)
    if binary:
        start_debian_registry(registry, binary, env)
    else:
        print(f"    docker-registry is not installed; running the {REGISTRY_IMAGE} image instead")
        start_registry_container(registry, docker, env)


def _container_project(docker: str, env: dict[str, str]) -> str | None:
    """The project directory our registry container was started for; None when there is no such container."""
    try:
        inspect = subprocess.run(
            [docker, "container", "inspect", "-f", f'{{{{index .Config.Labels "{PROJECT_LABEL}"}}}}',
             REGISTRY_CONTAINER], capture_output=True, text=True, env=env, timeout=DOCKER_INFO_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return inspect.stdout.strip() if inspect.returncode == 0 else None


def stop_registry(registry: LocalRegistry, docker_cli: str | None, env: dict[str, str]) -> int:
    step("Stopping the local registry")
    stopped = False
    pid = _read_pid(registry.pid_file)
    if pid is not None and _pid_alive(pid) and _is_our_registry_process(pid, registry):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it when it happens to be our child
            except ChildProcessError:
                pass
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        print(f"    stopped docker-registry (pid {pid})")
        stopped = True
    registry.pid_file.unlink(missing_ok=True)
    if docker_cli and _container_project(docker_cli, env) == str(registry.project):
        removed = subprocess.run([docker_cli, "rm", "-f", REGISTRY_CONTAINER],
                                 capture_output=True, text=True, env=env)
        if removed.returncode == 0:
            print(f"    removed container {REGISTRY_CONTAINER}")
            stopped = True
    if not stopped:
        print("    no registry started by `make up` is running")
    print(f"    images stay in {registry.data}")
    return 0

