"""The main job's set-up (`make up` = scripts/up-local.sh) up to the `pulumi` call, without Docker.

Each test runs the real script against a temporary copy of the project files it reads (Pulumi.yaml, stacks/),
with a PATH that holds only what the test puts there: a recording fake `pulumi`, a fake `docker` CLI
(ACR_PUBLISH_DOCKER_CLI), and, where a test needs one, a stand-in registry (an HTTP server answering `/v2/`).
tests/e2e/test_up_local.py starts the real docker-registry. The helpers here are shared with it.
"""
from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import time
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from tests.harness import PROJECT_ROOT

ROOT = PROJECT_ROOT
SCRIPT = ROOT / "scripts" / "up-local.sh"
BASH = shutil.which("bash") or "/bin/bash"
LOCAL_ONLY_PASSPHRASE = "acr-publish-local-only"
SDK_PIN = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
RUN_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


FAKE_PULUMI = """#!{python}
# Fake Pulumi CLI: records each call, then exits with FAKE_PULUMI_EXIT_<subcommand> (default 0).
import json, os, sys
record = {{
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "backend_url": os.environ.get("PULUMI_BACKEND_URL"),
    "passphrase_set": bool(os.environ.get("PULUMI_CONFIG_PASSPHRASE")),
    "passphrase_is_local_default": os.environ.get("PULUMI_CONFIG_PASSPHRASE") == {default!r},
    "path_first": os.environ.get("PATH", "").split(os.pathsep)[0],
}}
with open({log!r}, "a") as log:
    log.write(json.dumps(record) + "\\n")
sys.exit(int(os.environ.get("FAKE_PULUMI_EXIT_" + (sys.argv[1] if len(sys.argv) > 1 else ""), "0")))
"""


def write_fake_pulumi(path: Path, log: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(FAKE_PULUMI.format(python=sys.executable, log=str(log), default=LOCAL_ONLY_PASSPHRASE))
    path.chmod(0o755)
    return path


FAKE_DOCKER = """#!{python}
# Fake docker CLI: records each call; `info` answers like an engine unless FAKE_DOCKER_INFO_FAILS is set;
# `run` starts a stand-in registry (an HTTP server answering /v2/) on the published port, like registry:2 would.
import json, os, subprocess, sys
args = sys.argv[1:]
state = {state!r}
with open({log!r}, "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] == ["info"]:
    if os.environ.get("FAKE_DOCKER_INFO_FAILS"):
        print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock", file=sys.stderr)
        sys.exit(1)
    print("26.1.5")
elif args[:1] == ["run"]:
    port = args[args.index("-p") + 1].split(":")[1]
    label = args[args.index("--label") + 1].split("=", 1)[1]
    proc = subprocess.Popen([sys.executable, {server!r}, port], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    json.dump({{"pid": proc.pid, "label": label}}, open(state, "w"))
    print("0123456789ab")
elif args[:1] == ["inspect"]:
    print("true" if os.path.exists(state) else "false")
elif args[:2] == ["container", "inspect"]:
    if not os.path.exists(state):
        sys.exit(1)
    print(json.load(open(state))["label"])
elif args[:2] == ["rm", "-f"]:
    if os.path.exists(state):
        os.kill(json.load(open(state))["pid"], 15)
        os.remove(state)
"""

STAND_IN_REGISTRY = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/v2/" else 404)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


@dataclass
class UpLocal:
    """A temporary project plus the fakes one run of scripts/up-local.sh is given."""

    project: Path
    bin: Path
    pulumi_log: Path
    docker_log: Path
    docker_state: Path
    port: int
    env: dict[str, str]

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([BASH, str(SCRIPT), *args], env={**self.env, **extra_env}, capture_output=True,
                              text=True, timeout=RUN_TIMEOUT_S, cwd=self.project)

    def pulumi_calls(self) -> list[dict]:
        if not self.pulumi_log.exists():
            return []
        return [json.loads(line) for line in self.pulumi_log.read_text().splitlines()]

    def docker_calls(self) -> list[list[str]]:
        if not self.docker_log.exists():
            return []
        return [json.loads(line) for line in self.docker_log.read_text().splitlines()]

    def add_fake_pulumi(self) -> Path:
        return write_fake_pulumi(self.bin / "pulumi", self.pulumi_log)

    def link_tool(self, name: str) -> None:
        target = shutil.which(name)
        assert target, f"{name} is needed on this machine to run the test"
        (self.bin / name).symlink_to(target)

    def add_recording_registry_binary(self) -> Path:
        """A `docker-registry` on PATH that only records that it was started; returns the record's path."""
        marker = self.project.parent / "docker-registry-started"
        binary = self.bin / "docker-registry"
        binary.write_text(f'#!/bin/sh\necho "$@" > "{marker}"\nexit 1\n')
        binary.chmod(0o755)
        return marker

    def created(self) -> list[str]:
        """Which of the directories the run may create exist in the project."""
        return [d for d in (".pulumi-cli", ".pulumi-state", ".registry-data") if (self.project / d).exists()]


def make_up_local(tmp_path: Path) -> UpLocal:
    project = tmp_path / "project"
    (project / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    shutil.copy(ROOT / "stacks" / "Pulumi.local.yaml", project / "stacks" / "Pulumi.local.yaml")
    shutil.copy(ROOT / "requirements.txt", project / "requirements.txt")  # the SDK pin the CLI version follows
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)  # the wrapper's interpreter (the temp project has no venv)
    server = tmp_path / "stand_in_registry.py"
    server.write_text(STAND_IN_REGISTRY)
    docker_log, docker_state = tmp_path / "docker-calls.jsonl", tmp_path / "docker-container.json"
    docker = tmp_path / "fake-docker" / "docker"
    docker.parent.mkdir()
    docker.write_text(FAKE_DOCKER.format(python=sys.executable, log=str(docker_log), state=str(docker_state),
                                         server=str(server)))
    docker.chmod(0o755)
    env = {
        # Only what the test provides is found on PATH: no real pulumi, docker-registry or docker.
        "PATH": str(bin_dir),
        "HOME": str(tmp_path / "home"),
        "ACR_PUBLISH_PROJECT_DIR": str(project),
        "ACR_PUBLISH_DOCKER_CLI": str(docker),
        "ACR_PUBLISH_LOCAL_REGISTRY_PORT": str(free_port()),
    }
    return UpLocal(project=project, bin=bin_dir, pulumi_log=tmp_path / "pulumi-calls.jsonl",
                   docker_log=docker_log, docker_state=docker_state,
                   port=int(env["ACR_PUBLISH_LOCAL_REGISTRY_PORT"]), env=env)


class _StandInRegistryHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    held: set[str] = set()
    """Manifest paths (/v2/<repository>/manifests/<tag>) the stand-in holds: a HEAD of one answers 200."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path == "/v2/" else 404)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200 if self.path in self.held else 404)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def serve_http(port: int, status: int) -> http.server.HTTPServer:
    handler = type("Handler", (_StandInRegistryHandler,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def up(tmp_path: Path) -> Iterator[UpLocal]:
    run = make_up_local(tmp_path)
    yield run
    if run.docker_state.exists():  # a stand-in started through the fake `docker run` is still serving
        os.kill(json.loads(run.docker_state.read_text())["pid"], 15)


@pytest.fixture
def answering_registry(up: UpLocal) -> Iterator[http.server.HTTPServer]:
    """A stand-in registry already answering GET /v2/ with 200 on the run's port."""
    server = serve_http(up.port, 200)
    yield server
    server.shutdown()
    server.server_close()


# --- the Pulumi CLI can be neither found nor installed ---------------------------------------------------------

def assert_install_help(stderr: str) -> None:
    assert f"curl -fsSL https://get.pulumi.com | sh -s -- --version {SDK_PIN} --install-root" in stderr, stderr
    assert "brew install pulumi/tap/pulumi" in stderr, stderr
    assert "https://www.pulumi.com/docs/iac/download-install/" in stderr, stderr
    assert "on PATH" in stderr and ".pulumi-cli/bin/pulumi" in stderr, stderr


def test_no_cli_and_installer_unreachable_stops_before_anything(up: UpLocal) -> None:
    up.link_tool("curl")
    registry_started = up.add_recording_registry_binary()
    closed = free_port()  # nothing listens there: the fetch is refused at once
    result = up.run("--yes", PULUMI_INSTALL_URL=f"http://127.0.0.1:{closed}/install.sh")
    assert result.returncode == 2, result.stderr
    assert f"could not be fetched from http://127.0.0.1:{closed}/install.sh" in result.stderr
    assert "Nothing was started" in result.stderr
    assert_install_help(result.stderr)
    assert up.created() == [], "a run that cannot find the CLI must create nothing"
    assert up.docker_calls() == [], "a run that cannot find the CLI must not reach Docker"
    assert not port_answers(up.port) and not registry_started.exists(), "no registry may be started"
    assert "==> Docker engine" not in result.stdout


def test_no_cli_and_no_curl_says_how_to_install(up: UpLocal) -> None:
    result = up.run()
    assert result.returncode == 2
    assert "curl (needed to fetch Pulumi's installer) is not on PATH" in result.stderr
    assert_install_help(result.stderr)
    assert up.created() == [] and up.docker_calls() == []


INSTALLER = """#!/bin/sh
# Stand-in for Pulumi's installer: records its arguments; installs a recording fake CLI under --install-root.
"{python}" - "$@" <<'PY'
import json, os, sys
args = sys.argv[1:]
json.dump(args, open({args_log!r}, "w"))
if {fail}:
    print("error: failed to download the release", file=sys.stderr)
    os.makedirs(os.path.join(args[args.index("--install-root") + 1], "bin"), exist_ok=True)  # a half install
    sys.exit(1)
bin_dir = os.path.join(args[args.index("--install-root") + 1], "bin")
os.makedirs(bin_dir, exist_ok=True)
open(os.path.join(bin_dir, "pulumi"), "w").write({fake!r})
os.chmod(os.path.join(bin_dir, "pulumi"), 0o755)
PY
"""


@pytest.fixture
def installer_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serves tmp_path/www over HTTP; yields (base URL, directory)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = http.server.HTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www
    server.shutdown()
    server.server_close()


def write_installer(www: Path, up: UpLocal, *, fail: bool) -> Path:
    args_log = up.project.parent / "installer-args.json"
    fake = FAKE_PULUMI.format(python=sys.executable, log=str(up.pulumi_log), default=LOCAL_ONLY_PASSPHRASE)
    (www / "install.sh").write_text(INSTALLER.format(python=sys.executable, args_log=str(args_log),
                                                     fail=fail, fake=fake))
    return args_log


def test_missing_cli_is_installed_pinned_into_project_then_used(
        up: UpLocal, installer_server: tuple[str, Path], answering_registry: object) -> None:
    base_url, www = installer_server
    args_log = write_installer(www, up, fail=False)
    up.link_tool("curl")
    up.link_tool("sh")
    result = up.run("--yes", PULUMI_INSTALL_URL=f"{base_url}/install.sh")
    assert result.returncode == 0, result.stderr
    cli_root = up.project / ".pulumi-cli"
    assert json.loads(args_log.read_text()) == [
        "--no-edit-path", "--install-root", str(cli_root), "--version", SDK_PIN]
    calls = up.pulumi_calls()
    assert [c["argv"][:2] for c in calls] == [["stack", "select"], ["up", "--stack"]]
    assert calls[-1]["path_first"] == str(cli_root / "bin"), "the installed CLI's directory leads PATH"


def test_pulumi_version_is_overridable(up: UpLocal, installer_server: tuple[str, Path],
                                       answering_registry: object) -> None:
    base_url, www = installer_server
    args_log = write_installer(www, up, fail=False)
    up.link_tool("curl")
    up.link_tool("sh")
    result = up.run(PULUMI_INSTALL_URL=f"{base_url}/install.sh", PULUMI_VERSION="3.999.1")
    assert result.returncode == 0, result.stderr
    assert json.loads(args_log.read_text())[-2:] == ["--version", "3.999.1"]


def test_cli_version_follows_the_sdk_pin(up: UpLocal, installer_server: tuple[str, Path],
                                        answering_registry: object) -> None:
    """The pulumi pin in requirements.txt decides the CLI version (PULUMI_VERSION aside)."""
    base_url, www = installer_server
    args_log = write_installer(www, up, fail=False)
    up.link_tool("curl")
    up.link_tool("sh")
    (up.project / "requirements.txt").write_text("# pins\npulumi-docker==5.2.0\npulumi==3.300.2  # SDK\n")
    assert up.run(PULUMI_INSTALL_URL=f"{base_url}/install.sh").returncode == 0
    assert json.loads(args_log.read_text())[-2:] == ["--version", "3.300.2"]


def test_no_sdk_pin_and_no_version_is_named(up: UpLocal) -> None:
    up.link_tool("curl")
    (up.project / "requirements.txt").unlink()
    result = up.run()
    assert result.returncode == 2
    assert "has no `pulumi==X.Y.Z` pin to choose its version: set PULUMI_VERSION=X.Y.Z" in result.stderr
    assert up.created() == [] and up.docker_calls() == []


def test_failed_install_leaves_nothing_behind(up: UpLocal, installer_server: tuple[str, Path]) -> None:
    base_url, www = installer_server
    write_installer(www, up, fail=True)
    up.link_tool("curl")
    up.link_tool("sh")
    result = up.run(PULUMI_INSTALL_URL=f"{base_url}/install.sh")
    assert result.returncode == 2
    assert f"did not install the CLI {SDK_PIN}" in result.stderr
    assert_install_help(result.stderr)
    assert up.created() == [], "a half-installed .pulumi-cli must be removed"
    assert up.docker_calls() == [] and up.pulumi_calls() == []


def test_cli_in_project_dir_is_found_without_path(up: UpLocal, answering_registry: object) -> None:
    write_fake_pulumi(up.project / ".pulumi-cli" / "bin" / "pulumi", up.pulumi_log)
    result = up.run()
    assert result.returncode == 0, result.stderr
    assert f"using {up.project / '.pulumi-cli' / 'bin' / 'pulumi'}" in result.stdout
    assert [c["argv"][0] for c in up.pulumi_calls()] == ["stack", "up"]


# --- backend, secrets provider, stack and the pulumi up call ---------------------------------------------------

def test_pulumi_calls_backend_and_passthrough(up: UpLocal, answering_registry: object) -> None:
    up.add_fake_pulumi()
    result = up.run("--yes", "--skip-preview")
    assert result.returncode == 0, result.stderr
    calls = up.pulumi_calls()
    assert [c["argv"] for c in calls] == [
        ["stack", "select", "--create", "local", "--secrets-provider", "passphrase"],
        ["up", "--stack", "local", "--yes", "--skip-preview"],
    ]
    state = up.project / ".pulumi-state"
    for call in calls:
        assert call["backend_url"] == f"file://{state}", call
        assert call["cwd"] == str(up.project), call
        assert call["passphrase_set"] and call["passphrase_is_local_default"], call
    assert state.is_dir()
    assert LOCAL_ONLY_PASSPHRASE not in result.stdout + result.stderr, "the passphrase is never printed"
    steps = [line for line in result.stdout.splitlines() if line.startswith("==> ")]
    assert steps[0] == "==> Pulumi CLI" and steps[-1] == "==> pulumi up --stack local --yes --skip-preview"
    assert "reusing the registry that already answers" in result.stdout
    assert ["info", "--format", "{{.ServerVersion}}"] in up.docker_calls()


def test_make_up_prints_how_to_promote_and_runs_local_release(up: UpLocal, answering_registry: object) -> None:
    up.add_fake_pulumi()
    result = up.run("--yes")
    assert result.returncode == 0, result.stderr
    assert "bash scripts/up-local.sh --stack local-release" in result.stdout
    promote = up.run("--stack", "local-release", "--yes")
    assert promote.returncode == 0, promote.stderr
    assert [c["argv"] for c in up.pulumi_calls()][-2:] == [
        ["stack", "select", "--create", "local-release", "--secrets-provider", "passphrase"],
        ["up", "--stack", "local-release", "--yes"],
    ]
    assert "--stack local-release" not in promote.stdout.split("==> pulumi")[0], "no promote hint when promoting"


def test_only_the_local_stacks_can_be_run(up: UpLocal) -> None:
    result = up.run("--stack", "prod")
    assert result.returncode == 64
    assert "--stack takes one of local, local-release" in result.stderr and "got prod" in result.stderr
    assert up.pulumi_calls() == []


def test_users_own_passphrase_and_backend_choice(up: UpLocal, answering_registry: object) -> None:
    up.add_fake_pulumi()
    mine = "my-own-passphrase-1234"
    result = up.run(PULUMI_CONFIG_PASSPHRASE=mine, PULUMI_BACKEND_URL="https://api.example.invalid")
    assert result.returncode == 0, result.stderr
    for call in up.pulumi_calls():
        assert call["passphrase_set"] and not call["passphrase_is_local_default"], "the user's value is kept"
        assert call["backend_url"] == f"file://{up.project / '.pulumi-state'}"
    assert mine not in result.stdout + result.stderr
    assert "PULUMI_BACKEND_URL from your environment is not used" in result.stdout


def test_stack_failure_stops_before_up(up: UpLocal, answering_registry: object) -> None:
    up.add_fake_pulumi()
    result = up.run("--yes", FAKE_PULUMI_EXIT_stack="255")
    assert result.returncode == 6
    assert "pulumi stack select --create local --secrets-provider passphrase` failed (exit 255)" in result.stderr
    assert [c["argv"][0] for c in up.pulumi_calls()] == ["stack"], "pulumi up must not run"


def test_up_exit_code_is_the_scripts(up: UpLocal, answering_registry: object) -> None:
    up.add_fake_pulumi()
    assert up.run(FAKE_PULUMI_EXIT_up="3").returncode == 3


# --- Docker engine and the registry port -------------------------------------------------------------------------

def test_no_docker_engine_stops_before_anything(up: UpLocal) -> None:
    up.add_fake_pulumi()
    registry_started = up.add_recording_registry_binary()
    result = up.run(FAKE_DOCKER_INFO_FAILS="1")
    assert result.returncode == 3
    assert "No Docker engine answers" in result.stderr and "Cannot connect to the Docker daemon" in result.stderr
    assert "systemctl start docker" in result.stderr and "https://docs.docker.com/engine/install/" in result.stderr
    assert up.created() == [] and up.pulumi_calls() == []
    assert not port_answers(up.port) and not registry_started.exists()


@pytest.mark.parametrize("status", [404, 500])
def test_port_taken_by_something_else(up: UpLocal, status: int) -> None:
    up.add_fake_pulumi()
    server = serve_http(up.port, status)
    try:
        result = up.run()
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 4
    assert f"Port {up.port} on 127.0.0.1 is taken by something that is not a registry" in result.stderr
    assert f"GET /v2/ answered HTTP {status}" in result.stderr
    assert up.created() == [] and up.pulumi_calls() == []


def test_port_taken_by_non_http_listener(up: UpLocal) -> None:
    up.add_fake_pulumi()

    def ssh_banner(conn: socket.socket) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.close()

    listener = _serve_raw(up.port, ssh_banner)
    try:
        result = up.run()
    finally:
        listener.close()
    assert result.returncode == 4
    assert "does not speak HTTP" in result.stderr
    assert up.created() == [] and up.pulumi_calls() == []


def test_bad_port_setting_is_named(up: UpLocal) -> None:
    result = up.run(ACR_PUBLISH_LOCAL_REGISTRY_PORT="50x0")
    assert result.returncode == 64
    assert "ACR_PUBLISH_LOCAL_REGISTRY_PORT '50x0' is not a TCP port" in result.stderr


# --- starting the registry ----------------------------------------------------------------------------------------

def test_registry_image_when_docker_registry_is_missing(up: UpLocal) -> None:
    up.add_fake_pulumi()
    result = up.run("--yes")
    assert result.returncode == 0, result.stderr
    data = up.project / ".registry-data"
    run = [c for c in up.docker_calls() if c[:1] == ["run"]]
    assert run == [["run", "-d", "--name", "acr-publish-registry", "--label", f"acr-publish.project={up.project}",
                    "-p", f"127.0.0.1:{up.port}:5000", "-v", f"{data}:/var/lib/registry", "registry:2"]]
    assert "running the registry:2 image instead" in result.stdout
    assert port_answers(up.port)
    assert up.pulumi_calls()[-1]["argv"] == ["up", "--stack", "local", "--yes"]

    stop = up.run("--stop-registry")
    assert stop.returncode == 0 and "removed container acr-publish-registry" in stop.stdout
    assert ["rm", "-f", "acr-publish-registry"] in up.docker_calls()


def test_registry_that_does_not_start_shows_its_log(up: UpLocal) -> None:
    up.add_fake_pulumi()
    broken = up.bin / "docker-registry"
    broken.write_text("#!/bin/sh\necho 'configuration error: open /nonexistent: no such file or directory'\nexit 1\n")
    broken.chmod(0o755)
    result = up.run()
    assert result.returncode == 5
    assert "docker-registry did not start" in result.stderr and "the registry process exited" in result.stderr
    assert "configuration error: open /nonexistent" in result.stderr, "the log tail is shown"
    assert up.pulumi_calls() == [], "pulumi never runs without a registry"
    assert not (up.project / ".registry-data" / "registry.pid").exists()


def test_help_lists_the_overrides(up: UpLocal) -> None:
    result = up.run("--help")
    assert result.returncode == 0
    for name in ("ACR_PUBLISH_LOCAL_REGISTRY_PORT", "PULUMI_VERSION", "PULUMI_INSTALL_URL", "--stop-registry"):
        assert name in result.stdout
    assert up.created() == [] and up.docker_calls() == []


def test_wrapper_prefers_project_venv(up: UpLocal, answering_registry: object) -> None:
    """The .sh runs the script with <project>/venv/bin/python when it exists (as after `make venv`)."""
    up.add_fake_pulumi()
    venv_python = up.project / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    marker = up.project.parent / "venv-python-used"
    venv_python.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        : > "{marker}"
        exec "{sys.executable}" "$@"
        """))
    venv_python.chmod(0o755)
    (up.bin / "python3").unlink()  # no other Python on PATH
    result = up.run()
    assert result.returncode == 0, result.stderr
    assert marker.exists()
    assert os.access(SCRIPT, os.X_OK)


def test_the_docker_provider_is_found_on_path_or_in_the_plugin_cache_only(tmp_path):
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    try:
        import up_local
    finally:
        sys.path.pop(0)
    empty, home = tmp_path / "bin", tmp_path / "home"
    empty.mkdir()
    env = {"PATH": str(empty), "PULUMI_HOME": str(home)}
    assert not up_local.docker_provider_found(env)
    plugin = home / "plugins" / "resource-docker-v5.2.0" / "pulumi-resource-docker"
    plugin.parent.mkdir(parents=True)
    plugin.write_text("")
    assert up_local.docker_provider_found(env)
    plugin.unlink()
    on_path = empty / "pulumi-resource-docker"
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert up_local.docker_provider_found(env)


def test_with_go_and_no_cli_the_pinned_engine_is_built_into_the_project_then_used(
        up: UpLocal, answering_registry: object) -> None:
    """`go` on PATH: the engine build script of the project runs (here a stand-in that writes a fake CLI where the
    real one puts it) instead of Pulumi's installer, and its CLI runs `pulumi up` with plugin downloads off."""
    script = up.project / "tools" / "pulumi-engine" / "build.sh"
    script.parent.mkdir(parents=True)
    fake = FAKE_PULUMI.format(python=sys.executable, log=str(up.pulumi_log), default=LOCAL_ONLY_PASSPHRASE)
    script.write_text(f"mkdir -p '{up.project}/.pulumi-cli/bin'\ncat > '{up.project}/.pulumi-cli/bin/pulumi' <<'FAKE'\n"
                      f"{fake}\nFAKE\nchmod 755 '{up.project}/.pulumi-cli/bin/pulumi'\n")
    go = up.bin / "go"
    go.write_text("#!/bin/sh\nexit 0\n")
    go.chmod(0o755)
    up.link_tool("bash")
    up.link_tool("mkdir")
    up.link_tool("cat")
    up.link_tool("chmod")
    result = up.run("--yes")
    assert result.returncode == 0, result.stderr
    assert "building the pinned Pulumi engine from Go modules" in result.stdout
    calls = up.pulumi_calls()
    assert [c["argv"][:2] for c in calls] == [["stack", "select"], ["up", "--stack"]]
    assert calls[-1]["path_first"] == str(up.project / ".pulumi-cli" / "bin")

def _serve_raw(port: int, answer: Callable[[socket.socket], None]) -> socket.socket:
    """A listener on the run's port that answers every connection with `answer(conn)`."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def _html_page(conn: socket.socket) -> None:
    conn.recv(65536)
    body = b"<html><body>Welcome to nginx!</body></html>"
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    conn.close()


def _other_login(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="admin"\r\nContent-Length: 0\r\n\r\n')
    conn.close()


def _json_200(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    conn.close()


def _trickled_headers(conn: socket.socket) -> None:
    conn.recv(65536)
    try:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(600):  # bounded: a minute of one byte every 0.1 s
            conn.sendall(b"X")
            time.sleep(0.1)
    except OSError:
        pass
    finally:
        conn.close()


def _silent(conn: socket.socket) -> None:
    conn.settimeout(60)
    try:
        conn.recv(65536)
        conn.recv(65536)
    except OSError:
        pass
    finally:
        conn.close()


@pytest.mark.parametrize("answer,reason", [
    (_html_page, "without the registry API's header"),
    (_other_login, "without the registry API's header"),
    (_json_200, "without the registry API's header"),
    (_trickled_headers, "did not finish answering GET /v2/ within"),
    (_silent, "did not finish answering GET /v2/ within"),
])
def test_only_a_registrys_own_answer_counts_as_the_registry(up: UpLocal, answer, reason: str) -> None:
    up.add_fake_pulumi()
    listener = _serve_raw(up.port, answer)
    started = time.monotonic()
    try:
        result = up.run()
    finally:
        listener.close()
    assert time.monotonic() - started < 30, "the port check did not end within its budget"
    assert result.returncode == 4, result.stderr
    assert f"Port {up.port} on 127.0.0.1 is taken by something that is not a registry" in result.stderr
    assert reason in result.stderr, result.stderr
    assert up.created() == [] and up.pulumi_calls() == []


BASE_MANIFEST = "/v2/mirror/busybox/manifests/static"


def test_the_local_stacks_base_is_made_and_pushed_when_the_registry_lacks_it(
        up: UpLocal, answering_registry: object) -> None:
    up.add_fake_pulumi()
    result = up.run("--yes")
    assert result.returncode == 0, result.stderr
    name = f"127.0.0.1:{up.port}/mirror/busybox:static"
    calls = up.docker_calls()
    assert ["import", "--change", 'CMD ["sh"]', "-", name] in calls and ["push", name] in calls, calls
    assert calls.index(["push", name]) > calls.index(["import", "--change", 'CMD ["sh"]', "-", name])
    assert "==> Base image" in result.stdout and "made from /bin/busybox and pushed" in result.stdout


def _registry_trickling_the_base_manifest(conn: socket.socket) -> None:
    """A registry's answer to GET /v2/; to anything else a status line, then one header byte every 0.2 s."""
    head = b""
    while b"\r\n\r\n" not in head:
        piece = conn.recv(65536)
        if not piece:
            return conn.close()
        head += piece
    try:
        if head.startswith(b"GET /v2/ "):
            conn.sendall(b"HTTP/1.1 200 OK\r\nDocker-Distribution-API-Version: registry/2.0\r\nContent-Length: 2"
                         b"\r\n\r\n{}")
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(300):  # bounded: a minute
            conn.sendall(b"X")
            time.sleep(0.2)
    except OSError:
        pass
    finally:
        conn.close()


def test_a_registry_trickling_the_base_manifest_stops_the_run_within_its_budget(up: UpLocal) -> None:
    up.add_fake_pulumi()
    listener = _serve_raw(up.port, _registry_trickling_the_base_manifest)
    started = time.monotonic()
    try:
        result = up.run("--yes")
    finally:
        listener.close()
    assert time.monotonic() - started < 30, "the base image check did not end within its budget"
    assert result.returncode == 7, result.stderr
    assert (f"The registry on 127.0.0.1:{up.port} answered GET /v2/, but it did not finish answering HEAD "
            f"{BASE_MANIFEST} within 5s, so it cannot take the base image") in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and up.pulumi_calls() == []


def test_a_base_the_registry_holds_is_not_made_again(up: UpLocal, answering_registry: object) -> None:
    _StandInRegistryHandler.held.add(BASE_MANIFEST)
    try:
        up.add_fake_pulumi()
        result = up.run("--yes")
    finally:
        _StandInRegistryHandler.held.discard(BASE_MANIFEST)
    assert result.returncode == 0, result.stderr
    assert not [c for c in up.docker_calls() if c[:1] in (["import"], ["push"])]
    assert "present in the local registry" in result.stdout


@pytest.mark.parametrize("argv,stack,passed", [
    (["--yes"], "local", ["--yes"]),
    (["--stack", "local-release", "--yes"], "local-release", ["--yes"]),
    # Only the first argument can be the script's own: later ones, the same words included, are pulumi's.
    (["--yes", "-h"], "local", ["--yes", "-h"]),
    (["--message", "--help"], "local", ["--message", "--help"]),
    (["--yes", "--stack", "local-release"], "local", ["--yes", "--stack", "local-release"]),
    (["--target", "--stop-registry"], "local", ["--target", "--stop-registry"]),
    (["--stop-registry=1"], "local", ["--stop-registry=1"]),
])
def test_only_the_first_argument_is_the_scripts_own(monkeypatch, argv, stack, passed):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "scripts"))
    import up_local

    args, rest = up_local.parse_arguments(argv)
    assert (up_local.checked_stack(args.stack), rest, args.help, args.stop_registry) == (stack, passed, False, False)


@pytest.mark.parametrize("argv,shown", [(["--stack"], "nothing"), (["--stack", "--yes"], "--yes"),
                                        (["--stack", "foo", "--yes"], "foo")])
def test_a_bad_stack_names_what_was_given(monkeypatch, argv, shown):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "scripts"))
    import up_local
    from local_run import StopRun

    with pytest.raises(StopRun, match=f"--stack takes one of local, local-release .*; got {re.escape(shown)}$"):
        up_local.checked_stack(up_local.parse_arguments(argv)[0].stack)
