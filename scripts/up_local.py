"""The README's main job on a laptop (`make up`, or `bash scripts/up-local.sh [pulumi up args]`).

Owns the set-up around `pulumi up` on the `local` stack, in an order that never half-runs: every check that can
stop the run (Pulumi CLI found or installed, Docker engine answering, port free or already a registry) comes
before anything is started or created.

1. Find the Pulumi CLI: `pulumi` on PATH, else `.pulumi-cli/bin/pulumi` in the project; else install the pinned
   version (PULUMI_VERSION, default the `pulumi==` SDK pin in requirements.txt) there with Pulumi's official
   installer. When the installer cannot
   be reached, stop and say how to install the CLI.
2. Check that a Docker engine answers (`docker info`).
3. Start a registry on 127.0.0.1:5000 (ACR_PUBLISH_LOCAL_REGISTRY_PORT overrides the port) unless one answers
   there already: Debian's `docker-registry` when installed, else the `registry:2` image; storage under
   `.registry-data/`.
4. Use the project's file state backend (`.pulumi-state/`) and a passphrase secrets provider; create the `local`
   stack when missing.
5. Print how to promote what this run publishes (the `local-release` stack), then replace this process with
   `pulumi up --stack local <args>`.

`--stop-registry` stops the registry a previous run started and exits. `--stack local-release` (first argument)
runs the same steps for the `local-release` stack instead, which promotes the `local` stack's images into the
namespace `release` of the same registry (stacks/Pulumi.local-release.yaml).

Only the standard library is used, so the script runs before the project's virtualenv has its packages.
Environment overrides (documented in the README): ACR_PUBLISH_PROJECT_DIR, PULUMI_VERSION, PULUMI_INSTALL_URL,
ACR_PUBLISH_LOCAL_REGISTRY_PORT, ACR_PUBLISH_DOCKER_CLI, PULUMI_CONFIG_PASSPHRASE(_FILE).
"""
from __future__ import annotations

import http.client
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from local_base import BUSYBOX, MIRROR_REPOSITORY, MIRROR_TAG, is_static_elf, root_filesystem_tar

STACK = "local"
LOCAL_STACKS = (STACK, "local-release")
"""The stacks this script runs: both on the local registry, neither holds a secret."""
PROMOTE_HINT = (
    "when this run has published the images, promote them (copied by digest into the namespace release, "
    "nothing rebuilt): bash scripts/up-local.sh --stack local-release"
)
DEFAULT_INSTALL_URL = "https://get.pulumi.com/install.sh"  # Pulumi's official installer (`curl ... | sh`)
DEFAULT_REGISTRY_PORT = 5000  # stacks/Pulumi.local.yaml pushes to 127.0.0.1:5000
REGISTRY_CONTAINER = "acr-publish-registry"
REGISTRY_IMAGE = "registry:2"
PROJECT_LABEL = "acr-publish.project"  # on the container, so --stop-registry removes only this project's one
REGISTRY_START_TIMEOUT_S = 30.0
INSTALLER_CONNECT_TIMEOUT_S = 10
INSTALLER_MAX_TIME_S = 60
DOCKER_INFO_TIMEOUT_S = 30
# The `local` stack holds no secret (no registry password, no cloud credential), so a fixed, published passphrase
# protects nothing that needs protecting; it only spares a newcomer a prompt. A user's own
# PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE always wins.
LOCAL_ONLY_PASSPHRASE = "acr-publish-local-only"

# Exit codes, one per reason to stop (documented in the README's troubleshooting).
EXIT_USAGE = 64
EXIT_NO_PULUMI = 2
EXIT_NO_DOCKER = 3
EXIT_PORT_TAKEN = 4
EXIT_REGISTRY_FAILED = 5
EXIT_STACK_FAILED = 6
EXIT_NO_BASE = 7


class StopRun(Exception):
    """A reason to stop before `pulumi up`, with the message a person can act on and the exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


@dataclass(frozen=True)
class Settings:
    """Everything the run reads from the environment, resolved once."""

    project: Path
    pulumi_version: str | None  # None: requirements.txt has no pulumi pin (only matters when installing)
    install_url: str
    registry_port: int
    docker_cli: str | None

    @property
    def cli_root(self) -> Path:
        return self.project / ".pulumi-cli"

    @property
    def state_dir(self) -> Path:
        return self.project / ".pulumi-state"

    @property
    def registry_data(self) -> Path:
        return self.project / ".registry-data"

    @property
    def registry_pid_file(self) -> Path:
        return self.registry_data / "registry.pid"

    @property
    def registry_log(self) -> Path:
        return self.registry_data / "registry.log"

    @property
    def registry_addr(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "Settings":
        project = Path(env.get("ACR_PUBLISH_PROJECT_DIR") or Path(__file__).resolve().parent.parent).resolve()
        if not (project / "Pulumi.yaml").is_file():
            raise StopRun(f"ACR_PUBLISH_PROJECT_DIR '{project}' has no Pulumi.yaml: point it at the acr-publish "
                          "project directory (or unset it to use the one this script lives in)", EXIT_USAGE)
        raw_port = env.get("ACR_PUBLISH_LOCAL_REGISTRY_PORT") or str(DEFAULT_REGISTRY_PORT)
        if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
            raise StopRun(f"ACR_PUBLISH_LOCAL_REGISTRY_PORT '{raw_port}' is not a TCP port (1-65535); unset it "
                          f"to use {DEFAULT_REGISTRY_PORT}", EXIT_USAGE)
        docker_cli = env.get("ACR_PUBLISH_DOCKER_CLI") or (
            # The engine's own client; some machines put a different `docker` earlier on PATH.
            "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker", path=env.get("PATH"))
        )
        return cls(
            project=project,
            pulumi_version=env.get("PULUMI_VERSION") or sdk_pin(project),
            install_url=env.get("PULUMI_INSTALL_URL") or DEFAULT_INSTALL_URL,
            registry_port=int(raw_port),
            docker_cli=docker_cli,
        )


# --- 1. Pulumi CLI ------------------------------------------------------------------------------------------------

def sdk_pin(project: Path) -> str | None:
    """The `pulumi==X.Y.Z` pin of requirements.txt: the CLI installed is the release of the SDK the program uses."""
    try:
        lines = (project / "requirements.txt").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        match = re.fullmatch(r"pulumi==([0-9][0-9A-Za-z.+-]*)", line.split("#", 1)[0].strip())
        if match:
            return match.group(1)
    return None


def install_instructions(settings: Settings) -> str:
    return "\n".join([
        "Install the Pulumi CLI in one of these ways, then run `make up` again:",
        f"  curl -fsSL https://get.pulumi.com | sh -s -- --version {settings.pulumi_version or 'X.Y.Z'} "
        f"--install-root {settings.cli_root}",
        "  brew install pulumi/tap/pulumi",
        "  or see https://www.pulumi.com/docs/iac/download-install/",
        f"Putting `pulumi` on PATH, or the binary at {settings.cli_root / 'bin' / 'pulumi'}, is enough.",
    ])


def find_pulumi(settings: Settings, env: dict[str, str]) -> str | None:
    on_path = shutil.which("pulumi", path=env.get("PATH"))
    if on_path:
        return on_path
    local = settings.cli_root / "bin" / "pulumi"
    return str(local) if os.access(local, os.X_OK) else None


def build_engine(settings: Settings, env: dict[str, str], *, first: bool = True) -> str | None:
    """Build the pinned engine from Go modules into .pulumi-cli/bin when Go is installed; None when it is not.

    Also run for an engine already there (`first=False`): the build does nothing when it matches the pins, and
    rebuilds one the pins have moved past."""
    if shutil.which("go", path=env.get("PATH")) is None:
        return None
    script = settings.project / "tools" / "pulumi-engine" / "build.sh"
    if first:
        print("    building the pinned Pulumi engine from Go modules (once; about 7 minutes on 2 cores with a cold "
              f"Go build cache): bash {script.relative_to(settings.project)}", flush=True)
    run = subprocess.run(["bash", str(script)], env=env)
    binary = settings.cli_root / "bin" / "pulumi"
    if run.returncode != 0 or not os.access(binary, os.X_OK):
        raise StopRun(f"Building the Pulumi engine failed (exit {run.returncode}); its message is above. Nothing "
                      "was started.\n" + install_instructions(settings), EXIT_NO_PULUMI)
    return str(binary)


def install_pulumi(settings: Settings, env: dict[str, str]) -> str:
    """Install the pinned CLI into .pulumi-cli/ with Pulumi's installer; StopRun when it cannot."""
    if settings.pulumi_version is None:
        raise StopRun(f"The Pulumi CLI is not installed and {settings.project / 'requirements.txt'} has no "
                      "`pulumi==X.Y.Z` pin to choose its version: set PULUMI_VERSION=X.Y.Z (the SDK's version) "
                      "or restore the pin.\n" + install_instructions(settings), EXIT_NO_PULUMI)
    curl = shutil.which("curl", path=env.get("PATH"))
    if curl is None:
        raise StopRun("The Pulumi CLI is not installed, and curl (needed to fetch Pulumi's installer) is not "
                      "on PATH.\n" + install_instructions(settings), EXIT_NO_PULUMI)
    with tempfile.TemporaryDirectory(prefix="acr-publish-pulumi-installer-") as tmp:
        script = Path(tmp) / "install.sh"
        # The fetch is bounded so a machine without internet stops in seconds, not at curl's default timeouts.
        fetch = subprocess.run(
            [curl, "-fsSL", "--connect-timeout", str(INSTALLER_CONNECT_TIMEOUT_S),
             "--max-time", str(INSTALLER_MAX_TIME_S), "-o", str(script), settings.install_url],
            capture_output=True, text=True, env=env,
        )
        if fetch.returncode != 0:
            reason = fetch.stderr.strip() or f"curl exited with {fetch.returncode}"
            raise StopRun(f"The Pulumi CLI is not installed and Pulumi's installer could not be fetched from "
                          f"{settings.install_url} ({reason}). Nothing was started.\n"
                          + install_instructions(settings), EXIT_NO_PULUMI)
        existed = settings.cli_root.exists()
        # The same arguments Pulumi's own automation API passes to this installer; --no-edit-path keeps the
        # user's shell profile untouched (the script finds the CLI in .pulumi-cli/ by itself).
        run = subprocess.run(
            ["sh", str(script), "--no-edit-path", "--install-root", str(settings.cli_root),
             "--version", settings.pulumi_version],
            env=env,
        )
    binary = settings.cli_root / "bin" / "pulumi"
    if run.returncode != 0 or not os.access(binary, os.X_OK):
        if not existed:
            shutil.rmtree(settings.cli_root, ignore_errors=True)  # leave no half-installed CLI behind
        raise StopRun(f"Pulumi's installer did not install the CLI {settings.pulumi_version} into "
                      f"{settings.cli_root} (exit {run.returncode}). Nothing was started.\n"
                      + install_instructions(settings), EXIT_NO_PULUMI)
    return str(binary)


def ensure_pulumi(settings: Settings, env: dict[str, str]) -> str:
    step("Pulumi CLI")
    found = find_pulumi(settings, env)
    if found and Path(found).parent == settings.cli_root / "bin" and \
            (settings.project / "tools" / "pulumi-engine" / "build.sh").is_file():
        build_engine(settings, env, first=False)  # the project's own build: brought up to its pins
    if found:
        print(f"    using {found}")
        return found
    print(f"    not on PATH and not in {settings.cli_root}")
    binary = build_engine(settings, env)
    if binary is None:
        print(f"    no Go toolchain to build it; installing Pulumi {settings.pulumi_version} with Pulumi's installer")
        binary = install_pulumi(settings, env)
    print(f"    installed {binary}")
    return binary


# --- 2. Docker engine ---------------------------------------------------------------------------------------------

def ensure_docker(settings: Settings, env: dict[str, str]) -> str:
    step("Docker engine")
    help_text = ("Start Docker (Docker Desktop, or `sudo systemctl start docker` on Linux) or install it "
                 "(https://docs.docker.com/engine/install/; on Debian: `apt-get install docker.io`), then run "
                 "`make up` again. Nothing was started.")
    if not settings.docker_cli:
        raise StopRun("No docker CLI found (not at /usr/bin/docker, not on PATH). " + help_text, EXIT_NO_DOCKER)
    try:
        info = subprocess.run([settings.docker_cli, "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=DOCKER_INFO_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise StopRun(f"`{settings.docker_cli} info` got no answer within {DOCKER_INFO_TIMEOUT_S}s. " + help_text,
                      EXIT_NO_DOCKER) from None
    except OSError as exc:
        raise StopRun(f"`{settings.docker_cli} info` could not run ({exc}). " + help_text, EXIT_NO_DOCKER) from None
    version = info.stdout.strip()
    if info.returncode != 0 or not version:
        detail = info.stderr.strip().splitlines()[-1] if info.stderr.strip() else f"exit {info.returncode}"
        raise StopRun(f"No Docker engine answers `{settings.docker_cli} info` ({detail}). " + help_text,
                      EXIT_NO_DOCKER)
    print(f"    engine {version} answers ({settings.docker_cli})")
    return settings.docker_cli


# --- 3. Local registry --------------------------------------------------------------------------------------------

def probe_registry(port: int, timeout: float = 2.0) -> str:
    """'registry', 'free' (connection refused) or why what holds the port is not a registry.

    Only a registry's answer to GET /v2/ counts: 200 or 401 with the registry API's `Docker-Distribution-API-Version:
    registry/2.0` header (distribution sends it on every answer, a login challenge included); a web page or another
    service's 401 is not one. `timeout` bounds the whole exchange, not each read: a server that trickles its headers
    is cut off when it runs out (a watchdog shuts the socket down)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    outcome: list[str] = []

    def exchange() -> None:
        try:
            conn.request("GET", "/v2/")
            response = conn.getresponse()
            version = response.getheader("Docker-Distribution-API-Version", "")
            outcome.append(_registry_verdict(response.status, version))
        except ConnectionRefusedError:
            outcome.append("free")
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(f"it does not speak HTTP ({type(exc).__name__}: {ascii(str(exc))[1:-1][:200]})")

    worker = threading.Thread(target=exchange, name="registry-port-probe", daemon=True)
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
        return f"it did not finish answering GET /v2/ within {timeout:g}s"
    conn.close()
    return outcome[0]


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


def _is_our_registry_process(pid: int, settings: Settings) -> bool:
    """True when `pid` is a docker-registry serving this project's storage (guards against a recycled pid)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _pid_alive(pid)  # no /proc (macOS): trust the pid file
    wanted = f"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY={settings.registry_data}".encode()
    return any(part.endswith(b"docker-registry") for part in cmdline[:1]) and wanted in environ


def _wait_for_registry(settings: Settings, alive) -> str:
    """'' once the registry answers; else the last problem seen. `alive()` False stops the wait early."""
    deadline = time.monotonic() + REGISTRY_START_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not alive():
            return "the registry process exited"
        last = probe_registry(settings.registry_port, timeout=1.0)
        if last == "registry":
            return ""
        time.sleep(0.1)
    return f"no answer on http://{settings.registry_addr}/v2/ within {REGISTRY_START_TIMEOUT_S:.0f}s ({last})"


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


def start_debian_registry(settings: Settings, binary: str, env: dict[str, str]) -> None:
    config = Path(__file__).resolve().parent / "local-registry.yml"
    settings.registry_data.mkdir(parents=True, exist_ok=True)
    # REGISTRY_* variables override the config file; drop any the user has set so the registry is exactly the
    # documented one, then set the two that place it in this project.
    child_env = {k: v for k, v in env.items() if not k.startswith("REGISTRY_")}
    child_env["REGISTRY_HTTP_ADDR"] = settings.registry_addr
    child_env["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"] = str(settings.registry_data)
    # One instance, so any secret works; setting it keeps distribution's "no HTTP secret" warning out of the log.
    child_env["REGISTRY_HTTP_SECRET"] = secrets.token_hex(16)
    with open(settings.registry_log, "ab") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=child_env, cwd=settings.registry_data, start_new_session=True,  # outlives this script
        )
    settings.registry_pid_file.write_text(f"{process.pid}\n")
    problem = _wait_for_registry(settings, lambda: process.poll() is None)
    if problem:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
        settings.registry_pid_file.unlink(missing_ok=True)
        raise StopRun(f"docker-registry did not start on {settings.registry_addr}: {problem}\n"
                      f"--- last lines of {settings.registry_log} ---\n{_log_tail(settings.registry_log)}",
                      EXIT_REGISTRY_FAILED)
    print(f"    started docker-registry (pid {process.pid}) on {settings.registry_addr}, storage "
          f"{settings.registry_data}, log {settings.registry_log}")


def start_registry_container(settings: Settings, docker: str, env: dict[str, str]) -> None:
    settings.registry_data.mkdir(parents=True, exist_ok=True)
    # A container of ours that exists but does not answer on this port (stopped, or made for another port) is
    # replaced; the images stay in the bind-mounted .registry-data.
    subprocess.run([docker, "rm", "-f", REGISTRY_CONTAINER], capture_output=True, env=env)
    run = subprocess.run(
        [docker, "run", "-d", "--name", REGISTRY_CONTAINER, "--label", f"{PROJECT_LABEL}={settings.project}",
         "-p", f"{settings.registry_addr}:5000", "-v", f"{settings.registry_data}:/var/lib/registry",
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

    problem = _wait_for_registry(settings, running)
    if problem:
        logs = subprocess.run([docker, "logs", "--tail", "20", REGISTRY_CONTAINER],
                              capture_output=True, text=True, env=env)
        raise StopRun(f"the {REGISTRY_IMAGE} container '{REGISTRY_CONTAINER}' did not start on "
                      f"{settings.registry_addr}: {problem}\n--- docker logs --tail 20 {REGISTRY_CONTAINER} ---\n"
                      f"{(logs.stdout + logs.stderr).strip()}", EXIT_REGISTRY_FAILED)
    print(f"    started container {REGISTRY_CONTAINER} ({REGISTRY_IMAGE}) on {settings.registry_addr}, "
          f"storage {settings.registry_data}")


def check_registry_port(settings: Settings) -> bool:
    """True when a registry already answers; False when the port is free; StopRun when something else holds it."""
    state = probe_registry(settings.registry_port)
    if state == "registry":
        return True
    if state == "free":
        return False
    raise StopRun(f"Port {settings.registry_port} on 127.0.0.1 is taken by something that is not a registry: "
                  f"{state}. Stop that program (`ss -ltnp 'sport = :{settings.registry_port}'` or "
                  f"`lsof -i :{settings.registry_port}` shows which), then run `make up` again.", EXIT_PORT_TAKEN)


def ensure_registry(settings: Settings, docker: str, env: dict[str, str], already_answering: bool) -> None:
    step(f"Local registry on {settings.registry_addr}")
    if already_answering:
        print(f"    reusing the registry that already answers on http://{settings.registry_addr}/v2/")
        return
    binary = registry_binary(env)
    if binary:
        start_debian_registry(settings, binary, env)
    else:
        print(f"    docker-registry is not installed; running the {REGISTRY_IMAGE} image instead")
        start_registry_container(settings, docker, env)


def _container_project(docker: str, env: dict[str, str]) -> str | None:
    """The project directory our registry container was started for; None when there is no such container."""
    try:
        inspect = subprocess.run(
            [docker, "container", "inspect", "-f", f'{{{{index .Config.Labels "{PROJECT_LABEL}"}}}}',
             REGISTRY_CONTAINER], capture_output=True, text=True, env=env, timeout=DOCKER_INFO_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return inspect.stdout.strip() if inspect.returncode == 0 else None


def stop_registry(settings: Settings, env: dict[str, str]) -> int:
    step("Stopping the local registry")
    stopped = False
    pid = _read_pid(settings.registry_pid_file)
    if pid is not None and _pid_alive(pid) and _is_our_registry_process(pid, settings):
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
    settings.registry_pid_file.unlink(missing_ok=True)
    if settings.docker_cli and _container_project(settings.docker_cli, env) == str(settings.project):
        removed = subprocess.run([settings.docker_cli, "rm", "-f", REGISTRY_CONTAINER],
                                 capture_output=True, text=True, env=env)
        if removed.returncode == 0:
            print(f"    removed container {REGISTRY_CONTAINER}")
            stopped = True
    if not stopped:
        print("    no registry started by `make up` is running")
    print(f"    images stay in {settings.registry_data}")
    return 0


# --- 3b. The local stack's base image ---------------------------------------------------------------------------

MANIFEST_ACCEPT = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"))
BASE_PUSH_TIMEOUT_S = 300


def base_image_present(settings: Settings, timeout: float = 5.0) -> bool:
    """Whether the local registry holds the local stack's base image (a HEAD of its manifest answers 200)."""
    conn = http.client.HTTPConnection("127.0.0.1", settings.registry_port, timeout=timeout)
    try:
        conn.request("HEAD", f"/v2/{MIRROR_REPOSITORY}/manifests/{MIRROR_TAG}", headers={"Accept": MANIFEST_ACCEPT})
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def ensure_base_image(settings: Settings, docker: str, env: dict[str, str]) -> None:
    """Push the local stack's base (scripts/local_base.py) into the local registry unless it is there already."""
    name = f"{settings.registry_addr}/{MIRROR_REPOSITORY}:{MIRROR_TAG}"
    step(f"Base image {name}")
    if base_image_present(settings):
        print("    present in the local registry")
        return
    if not (os.path.exists(BUSYBOX) and is_static_elf(BUSYBOX)):
        raise StopRun(f"The local stack builds FROM {name}, which `make up` makes from Debian's statically linked "
                      f"busybox ({BUSYBOX}): it is missing or not statically linked. Install it (`apt-get install "
                      "busybox-static`) or push a base image of your own under that name, then run `make up` again. "
                      "The registry is running.", EXIT_NO_BASE)
    try:
        tar = root_filesystem_tar()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        raise StopRun(f"Could not read {BUSYBOX} to make the base image ({exc}).", EXIT_NO_BASE) from None
    for command, stdin in (([docker, "import", "--change", 'CMD ["sh"]', "-", name], tar),
                           ([docker, "push", name], None)):
        try:
            proc = subprocess.run(command, input=stdin, capture_output=True, timeout=BASE_PUSH_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise StopRun(f"`docker {command[1]}` of {name} got no answer within {BASE_PUSH_TIMEOUT_S}s.",
                          EXIT_NO_BASE) from None
        if proc.returncode != 0:
            lines = proc.stderr.decode(errors="replace").strip().splitlines()
            raise StopRun(f"`docker {command[1]}` of {name} failed ({lines[-1] if lines else f'exit {proc.returncode}'})"
                          "; the registry is running: fix the problem and run `make up` again.", EXIT_NO_BASE)
    # The builds pull it from the registry, as they would a base mirrored into ACR.
    subprocess.run([docker, "image", "rm", name], capture_output=True, timeout=60, env=env)
    print(f"    made from {BUSYBOX} and pushed")


# --- 4. State backend, secrets provider, stack --------------------------------------------------------------------

def backend_env(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """The environment for every pulumi call: the project's file backend and a passphrase."""
    out = dict(env)
    url = f"file://{settings.state_dir}"
    if env.get("PULUMI_BACKEND_URL") and env["PULUMI_BACKEND_URL"] != url:
        # The main job promises a local state backend; a global login (Pulumi Cloud, a bucket) is not used here.
        print(f"    PULUMI_BACKEND_URL from your environment is not used for the local stack; using {url}")
    out["PULUMI_BACKEND_URL"] = url
    # Same rule as the CLI: a set PULUMI_CONFIG_PASSPHRASE (even empty) or a non-empty _FILE is the user's choice.
    if "PULUMI_CONFIG_PASSPHRASE" in env or env.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        print("    passphrase: from your PULUMI_CONFIG_PASSPHRASE / PULUMI_CONFIG_PASSPHRASE_FILE")
    else:
        out["PULUMI_CONFIG_PASSPHRASE"] = LOCAL_ONLY_PASSPHRASE
        print("    passphrase: the project's documented local-only passphrase (the local stack holds no secret)")
    # Offline laptops would otherwise wait on the CLI's version check.
    out.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return out


def ensure_stack(settings: Settings, pulumi: str, env: dict[str, str], stack: str = STACK) -> dict[str, str]:
    step(f"State backend {settings.state_dir} and stack '{stack}'")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    env = backend_env(settings, env)
    # The pulumi binary's own directory goes first on PATH: the language host (pulumi-language-python) ships
    # beside it and must be found even when the CLI came from .pulumi-cli/. The project's virtualenv comes next:
    # the language host built here (docs/engine.md) runs the program, its dynamic providers and the policy pack
    # with the first `python3` on PATH.
    env["PATH"] = os.pathsep.join([str(Path(pulumi).parent), str(settings.project / "venv" / "bin"),
                                   env.get("PATH", "")])
    if Path(pulumi).parent == settings.cli_root / "bin":
        # A locally built engine has no plugin to download from anywhere: every plugin it runs is beside it.
        env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
    select = subprocess.run(
        [pulumi, "stack", "select", "--create", stack, "--secrets-provider", "passphrase"],
        cwd=settings.project, env=env,
    )
    if select.returncode != 0:
        raise StopRun(f"`pulumi stack select --create {stack} --secrets-provider passphrase` failed "
                      f"(exit {select.returncode}); its message is above. The registry is running; fix the "
                      "problem and run `make up` again.", EXIT_STACK_FAILED)
    return env


def docker_provider_found(env: dict[str, str]) -> bool:
    """Whether the engine can find the docker provider: on PATH, or in the plugin cache under PULUMI_HOME."""
    if shutil.which("pulumi-resource-docker", path=env.get("PATH")):
        return True
    home = Path(env.get("PULUMI_HOME") or Path.home() / ".pulumi")
    return any((home / "plugins").glob("resource-docker-v*/pulumi-resource-docker"))


# --- main ---------------------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    env = dict(os.environ)
    try:
        settings = Settings.from_env(env)
        if argv[:1] in (["-h"], ["--help"]):
            print(__doc__)
            return 0
        if argv[:1] == ["--stop-registry"]:
            return stop_registry(settings, env)
        stack = STACK
        if argv[:1] == ["--stack"]:
            if len(argv) < 2 or argv[1] not in LOCAL_STACKS:
                raise StopRun(f"--stack takes one of {', '.join(LOCAL_STACKS)} (the stacks on the local registry); "
                              f"got {argv[1] if len(argv) > 1 else 'nothing'}", EXIT_USAGE)
            stack, argv = argv[1], argv[2:]
        # Every check that can stop the run comes before anything is started or created.
        pulumi = ensure_pulumi(settings, env)
        docker = ensure_docker(settings, env)
        already_answering = check_registry_port(settings)
        ensure_registry(settings, docker, env, already_answering)
        if stack == STACK:
            ensure_base_image(settings, docker, env)
        pulumi_env = ensure_stack(settings, pulumi, env, stack)
    except StopRun as stop:
        print(f"error: {stop}", file=sys.stderr, flush=True)
        return stop.exit_code
    if stack == STACK and not docker_provider_found(pulumi_env):
        print("    note: no pulumi-resource-docker plugin (on PATH or in the Pulumi plugin cache); it cannot be built "
              "here (docs/engine.md): images the registry already holds are exported, an image that needs a build "
              "stops the run at its docker.Image")
    command = [pulumi, "up", "--stack", stack, *argv]
    if stack == STACK:
        print(f"    next: {PROMOTE_HINT}")
    step("pulumi " + " ".join(command[1:]))
    sys.stdout.flush()
    os.chdir(settings.project)
    os.execve(pulumi, command, pulumi_env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
