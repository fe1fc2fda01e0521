"""`make up` (scripts/up-local.sh): the set-up around `pulumi up` on a local stack, in an order that never half-runs.

Owns the run's options (command line and environment), the Pulumi CLI (found, built or installed at the pinned
version), the Docker engine check, the local stack's base image, and the state backend and stack; the local
registry is scripts/local_registry.py. `--help` prints HELP, which lists the environment overrides. Standard
library only, so it runs before the project's virtualenv has its packages.
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from local_base import BUSYBOX, MIRROR_REPOSITORY, MIRROR_TAG, is_static_elf, root_filesystem_tar
from local_registry import (DEFAULT_REGISTRY_PORT, LocalRegistry, Stalled, check_registry_port, ensure_registry, exchange,
                            stop_registry)
from local_run import (DOCKER_INFO_TIMEOUT_S, EXIT_NO_BASE, EXIT_NO_DOCKER, EXIT_NO_PULUMI, EXIT_STACK_FAILED,
                       EXIT_USAGE, StopRun, step)

HELP = """The README's main job on a laptop (`make up`, or `bash scripts/up-local.sh [pulumi up args]`).

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
"""What `--help` prints."""
STACK = "local"
LOCAL_STACKS = (STACK, "local-release")
"""The stacks this script runs: both on the local registry, neither holds a secret."""
PROMOTE_HINT = (
    "when this run has published the images, promote them (copied by digest into the namespace release, "
    "nothing rebuilt): bash scripts/up-local.sh --stack local-release"
)
DEFAULT_INSTALL_URL = "https://get.pulumi.com/install.sh"  # Pulumi's official installer (`curl ... | sh`)
INSTALLER_CONNECT_TIMEOUT_S = 10
INSTALLER_MAX_TIME_S = 60
# The `local` stack holds no secret (no registry password, no cloud credential), so a fixed, published passphrase
# protects nothing that needs protecting; it only spares a newcomer a prompt. A user's own
# PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE always wins.
LOCAL_ONLY_PASSPHRASE = "acr-publish-local-only"


@dataclass(frozen=True)
class RunOptions:
    """The run's options from the environment, resolved once (the stack files are read by `pulumi` itself)."""

    project: Path
    pulumi_version: str | None  # None: requirements.txt has no pulumi pin (only matters when installing)
    install_url: str
    registry: LocalRegistry
    docker_cli: str | None
    cli_root: Path  # where the CLI is built or installed when it is not on PATH
    state_dir: Path  # the file state backend

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "RunOptions":
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
            registry=LocalRegistry.of(project, int(raw_port)),
            docker_cli=docker_cli,
            cli_root=project / ".pulumi-cli",
            state_dir=project / ".pulumi-state",
        )


class _UsageParser(argparse.ArgumentParser):
    """argparse, with a usage problem reported like every other reason to stop (exit 64, no traceback)."""

    def error(self, message: str):  # type: ignore[override]
        raise StopRun(f"{message} (see --help)", EXIT_USAGE)


OWN_OPTIONS = ("-h", "--help", "--stop-registry", "--stack")


def parse_arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The script's own option and every other argument, in its order, for `pulumi up`. Only the first argument
    can be the script's own (`--stack` with the one after it): anything later, the same words included, is
    `pulumi up`'s, so `make up ARGS="--yes --stack x"` means what pulumi makes of it."""
    parser = _UsageParser(prog="up-local.sh", add_help=False, allow_abbrev=False)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--stop-registry", action="store_true")
    parser.add_argument("--stack", nargs="?", const="", default=STACK)
    if argv[:1] == ["--stack"]:  # its value as given, even one that starts with '-' (checked_stack names it)
        return parser.parse_args([f"--stack={argv[1]}"] if len(argv) > 1 else ["--stack"]), argv[2:]
    if argv[:1] and argv[0] in OWN_OPTIONS:
        return parser.parse_args(argv[:1]), argv[1:]
    return parser.parse_args([]), argv


def checked_stack(stack: str) -> str:
    if stack not in LOCAL_STACKS:
        raise StopRun(f"--stack takes one of {', '.join(LOCAL_STACKS)} (the stacks on the local registry); "
                      f"got {stack or 'nothing'}", EXIT_USAGE)
    return stack


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


def install_instructions(options: RunOptions) -> str:
    return "\n".join([
        "Install the Pulumi CLI in one of these ways, then run `make up` again:",
        f"  curl -fsSL https://get.pulumi.com | sh -s -- --version {options.pulumi_version or 'X.Y.Z'} "
        f"--install-root {options.cli_root}",
        "  brew install pulumi/tap/pulumi",
        "  or see https://www.pulumi.com/docs/iac/download-install/",
        f"Putting `pulumi` on PATH, or the binary at {options.cli_root / 'bin' / 'pulumi'}, is enough.",
    ])


def find_pulumi(options: RunOptions, env: dict[str, str]) -> str | None:
    on_path = shutil.which("pulumi", path=env.get("PATH"))
    if on_path:
        return on_path
    local = options.cli_root / "bin" / "pulumi"
    return str(local) if os.access(local, os.X_OK) else None


def build_engine(options: RunOptions, env: dict[str, str], *, first: bool = True) -> str | None:
    """Build the pinned engine from Go modules into .pulumi-cli/bin when Go is installed; None when it is not.

    Also run for an engine already there (`first=False`): the build does nothing when it matches the pins, and
    rebuilds one the pins have moved past."""
    if shutil.which("go", path=env.get("PATH")) is None:
        return None
    script = options.project / "tools" / "pulumi-engine" / "build.sh"
    if first:
        print("    building the pinned Pulumi engine from Go modules (once; about 7 minutes on 2 cores with a cold "
              f"Go build cache): bash {script.relative_to(options.project)}", flush=True)
    run = subprocess.run(["bash", str(script)], env=env)
    binary = options.cli_root / "bin" / "pulumi"
    if run.returncode != 0 or not os.access(binary, os.X_OK):
        raise StopRun(f"Building the Pulumi engine failed (exit {run.returncode}); its message is above. Nothing "
                      "was started.\n" + install_instructions(options), EXIT_NO_PULUMI)
    return str(binary)


def install_pulumi(options: RunOptions, env: dict[str, str]) -> str:
    """Install the pinned CLI into .pulumi-cli/ with Pulumi's installer; StopRun when it cannot."""
    if options.pulumi_version is None:
        raise StopRun(f"The Pulumi CLI is not installed and {options.project / 'requirements.txt'} has no "
                      "`pulumi==X.Y.Z` pin to choose its version: set PULUMI_VERSION=X.Y.Z (the SDK's version) "
                      "or restore the pin.\n" + install_instructions(options), EXIT_NO_PULUMI)
    curl = shutil.which("curl", path=env.get("PATH"))
    if curl is None:
        raise StopRun("The Pulumi CLI is not installed, and curl (needed to fetch Pulumi's installer) is not "
                      "on PATH.\n" + install_instructions(options), EXIT_NO_PULUMI)
    with tempfile.TemporaryDirectory(prefix="acr-publish-pulumi-installer-") as tmp:
        script = Path(tmp) / "install.sh"
        # The fetch is bounded so a machine without internet stops in seconds, not at curl's default timeouts.
        fetch = subprocess.run(
            [curl, "-fsSL", "--connect-timeout", str(INSTALLER_CONNECT_TIMEOUT_S),
             "--max-time", str(INSTALLER_MAX_TIME_S), "-o", str(script), options.install_url],
            capture_output=True, text=True, env=env,
        )
        if fetch.returncode != 0:
            reason = fetch.stderr.strip() or f"curl exited with {fetch.returncode}"
            raise StopRun(f"The Pulumi CLI is not installed and Pulumi's installer could not be fetched from "
                          f"{options.install_url} ({reason}). Nothing was started.\n"
                          + install_instructions(options), EXIT_NO_PULUMI)
        existed = options.cli_root.exists()
        # The same arguments Pulumi's own automation API passes to this installer; --no-edit-path keeps the
        # user's shell profile untouched (the script finds the CLI in .pulumi-cli/ by itself).
        run = subprocess.run(
            ["sh", str(script), "--no-edit-path", "--install-root", str(options.cli_root),
             "--version", options.pulumi_version],
            env=env,
        )
    binary = options.cli_root / "bin" / "pulumi"
    if run.returncode != 0 or not os.access(binary, os.X_OK):
        if not existed:
            shutil.rmtree(options.cli_root, ignore_errors=True)  # leave no half-installed CLI behind
        raise StopRun(f"Pulumi's installer did not install the CLI {options.pulumi_version} into "
                      f"{options.cli_root} (exit {run.returncode}). Nothing was started.\n"
                      + install_instructions(options), EXIT_NO_PULUMI)
    return str(binary)


def ensure_pulumi(options: RunOptions, env: dict[str, str]) -> str:
    step("Pulumi CLI")
    found = find_pulumi(options, env)
    if found and Path(found).parent == options.cli_root / "bin" and \
            (options.project / "tools" / "pulumi-engine" / "build.sh").is_file():
        build_engine(options, env, first=False)  # the project's own build: brought up to its pins
    if found:
        print(f"    using {found}")
        return found
    print(f"    not on PATH and not in {options.cli_root}")
    binary = build_engine(options, env)
    if binary is None:
        print(f"    no Go toolchain to build it; installing Pulumi {options.pulumi_version} with Pulumi's installer")
        binary = install_pulumi(options, env)
    print(f"    installed {binary}")
    return binary


# --- 2. Docker engine ---------------------------------------------------------------------------------------------

def ensure_docker(options: RunOptions, env: dict[str, str]) -> str:
    step("Docker engine")
    help_text = ("Start Docker (Docker Desktop, or `sudo systemctl start docker` on Linux) or install it "
                 "(https://docs.docker.com/engine/install/; on Debian: `apt-get install docker.io`), then run "
                 "`make up` again. Nothing was started.")
    if not options.docker_cli:
        raise StopRun("No docker CLI found (not at /usr/bin/docker, not on PATH). " + help_text, EXIT_NO_DOCKER)
    try:
        info = subprocess.run([options.docker_cli, "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=DOCKER_INFO_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise StopRun(f"`{options.docker_cli} info` got no answer within {DOCKER_INFO_TIMEOUT_S}s. " + help_text,
                      EXIT_NO_DOCKER) from None
    except OSError as exc:
        raise StopRun(f"`{options.docker_cli} info` could not run ({exc}). " + help_text, EXIT_NO_DOCKER) from None
    version = info.stdout.strip()
    if info.returncode != 0 or not version:
        detail = info.stderr.strip().splitlines()[-1] if info.stderr.strip() else f"exit {info.returncode}"
        raise StopRun(f"No Docker engine answers `{options.docker_cli} info` ({detail}). " + help_text,
                      EXIT_NO_DOCKER)
    print(f"    engine {version} answers ({options.docker_cli})")
    return options.docker_cli


# --- 3. The local stack's base image (the registry itself: local_registry.py) -----------------------------------

MANIFEST_ACCEPT = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.oci.image.index.v1+json"))
BASE_PUSH_TIMEOUT_S = 300


def base_image_present(options: RunOptions, timeout: float = 5.0) -> bool:
    """Whether the local registry holds the local stack's base image (a HEAD of its manifest answers 200 within
    `timeout` seconds in all); StopRun when the registry stalls."""
    path = f"/v2/{MIRROR_REPOSITORY}/manifests/{MIRROR_TAG}"
    try:
        return exchange(options.registry.port, "HEAD", path, timeout, {"Accept": MANIFEST_ACCEPT}).status == 200
    except Stalled as stalled:
        raise StopRun(f"The registry on 127.0.0.1:{options.registry.port} answered GET /v2/, but {stalled}, so it "
                      "cannot take the base image: stop what holds the port (or set ACR_PUBLISH_LOCAL_REGISTRY_PORT to "
                      "another port) and run `make up` again.", EXIT_NO_BASE) from None
    except (OSError, http.client.HTTPException):
        return False


def ensure_base_image(options: RunOptions, docker: str, env: dict[str, str]) -> None:
    """Push the local stack's base (scripts/local_base.py) into the local registry unless it is there already."""
    name = f"{options.registry.addr}/{MIRROR_REPOSITORY}:{MIRROR_TAG}"
    step(f"Base image {name}")
    if base_image_present(options):
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

def backend_env(options: RunOptions, env: dict[str, str]) -> dict[str, str]:
    """The environment for every pulumi call: the project's file backend and a passphrase."""
    out = dict(env)
    url = f"file://{options.state_dir}"
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


def ensure_stack(options: RunOptions, pulumi: str, env: dict[str, str], stack: str = STACK) -> dict[str, str]:
    step(f"State backend {options.state_dir} and stack '{stack}'")
    options.state_dir.mkdir(parents=True, exist_ok=True)
    env = backend_env(options, env)
    # The pulumi binary's own directory goes first on PATH: the language host (pulumi-language-python) ships
    # beside it and must be found even when the CLI came from .pulumi-cli/. The project's virtualenv comes next:
    # the language host built here (docs/engine.md) runs the program, its dynamic providers and the policy pack
    # with the first `python3` on PATH.
    env["PATH"] = os.pathsep.join([str(Path(pulumi).parent), str(options.project / "venv" / "bin"),
                                   env.get("PATH", "")])
    if Path(pulumi).parent == options.cli_root / "bin":
        # A locally built engine has no plugin to download from anywhere: every plugin it runs is beside it.
        env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
    select = subprocess.run(
        [pulumi, "stack", "select", "--create", stack, "--secrets-provider", "passphrase"],
        cwd=options.project, env=env,
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

def prepare(options: RunOptions, env: dict[str, str], stack: str) -> tuple[str, dict[str, str]]:
    """Every step before `pulumi up`; the CLI and its environment. Every check that can stop the run comes before
    anything is started or created."""
    pulumi = ensure_pulumi(options, env)
    docker = ensure_docker(options, env)
    already_answering = check_registry_port(options.registry)
    ensure_registry(options.registry, docker, env, already_answering)
    if stack == STACK:
        ensure_base_image(options, docker, env)
    return pulumi, ensure_stack(options, pulumi, env, stack)


def exec_pulumi_up(options: RunOptions, pulumi: str, pulumi_env: dict[str, str], stack: str,
                   pulumi_args: list[str]) -> None:
    """Replace this process with `pulumi up --stack <stack> <args>`."""
    if stack == STACK and not docker_provider_found(pulumi_env):
        print("    note: no pulumi-resource-docker plugin (on PATH or in the Pulumi plugin cache); it cannot be built "
              "here (docs/engine.md): images the registry already holds are exported, an image that needs a build "
              "stops the run at its docker.Image")
    command = [pulumi, "up", "--stack", stack, *pulumi_args]
    if stack == STACK:
        print(f"    next: {PROMOTE_HINT}")
    step("pulumi " + " ".join(command[1:]))
    sys.stdout.flush()
    os.chdir(options.project)
    os.execve(pulumi, command, pulumi_env)


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    try:
        options = RunOptions.from_env(env)
        args, pulumi_args = parse_arguments(argv)
        if args.help:
            print(HELP)
            return 0
        if args.stop_registry:
            return stop_registry(options.registry, options.docker_cli, env)
        stack = checked_stack(args.stack)
        pulumi, pulumi_env = prepare(options, env, stack)
    except StopRun as stop:
        print(f"error: {stop}", file=sys.stderr, flush=True)
        return stop.exit_code
    exec_pulumi_up(options, pulumi, pulumi_env, stack, pulumi_args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
