"""Driving the real Pulumi CLI (built into .pulumi-cli/bin by `make engine`) as a user does.

Owns `pulumi_engine` (the engine's bin directory; skips with the reason when it is not built, fails under CI=true)
and `Workspace`: one checkout of the project at its own path, with its own file backend, passphrase, PULUMI_HOME and
stat-cache directory, so no two tests share state or stack names. A Workspace runs `pulumi` commands and reads the
engine's own summaries: `preview --json` (changeSummary and steps), the summaryEvent of `up --json`, `stack
history --json`, `stack output --json`, `stack export`.

`publish_by_hand` is the manual flow (`docker build`, `docker push`) under the content tag the checkout's own
`cli.explain` computes: the docker provider cannot be built here (docs/engine.md), so the engine e2e starts from a
registry that already holds the stack's images, which is the state after any publish.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.e2e.publishing import checkout
from tests.harness import PROGRAM_FILES, PROJECT_ROOT

ENGINE_BIN = PROJECT_ROOT / ".pulumi-cli" / "bin"
ENGINE_FILES = ("pulumi", "pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-pulumi-python")
ENGINE_PROJECT_FILES = (*PROGRAM_FILES, "policies")
COMMAND_TIMEOUT_S = 600  # a generous bound that turns a hang into a failure, never a speed assertion
CHANGE_OPS = ("create", "update", "delete", "replace", "create-replacement", "delete-replaced")


def _engine_problem() -> str | None:
    missing = [name for name in ENGINE_FILES if not os.access(ENGINE_BIN / name, os.X_OK)]
    if missing:
        return (f"the Pulumi engine is not built ({', '.join(missing)} missing in .pulumi-cli/bin): run `make "
                "engine` (about 7 minutes with a cold Go build cache)")
    return None


@pytest.fixture(scope="session")
def pulumi_engine() -> Path:
    """The bin directory of the real engine; fails under CI=true and skips elsewhere when it is not built."""
    problem = _engine_problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return ENGINE_BIN


@dataclass
class Outcome:
    """One finished `pulumi` command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout + self.stderr

    def check(self) -> "Outcome":
        assert self.returncode == 0, f"pulumi {' '.join(self.args)} exited {self.returncode}:\n{self.text[-4000:]}"
        return self


def changes(summary: dict[str, int]) -> dict[str, int]:
    """The entries of an engine change summary that change something (anything but `same`)."""
    return {op: count for op, count in summary.items() if op in CHANGE_OPS and count}


class Workspace:
    """A checkout of the project with its own backend, passphrase and Pulumi home, driven through the real CLI."""

    def __init__(self, root: Path, engine_bin: Path, *, umask: int = 0o022, project: Path | None = None):
        self.root = root
        self.project = project or checkout(root / "project", umask, ENGINE_PROJECT_FILES)
        (self.project / "stacks").mkdir(exist_ok=True)
        # Pulumi.yaml's `virtualenv: venv`: the engine points the dynamic provider at <project>/venv.
        if not (self.project / "venv").exists():
            (self.project / "venv").symlink_to(sys.prefix)
        self.backend = root / "state"
        self.backend.mkdir(parents=True, exist_ok=True)
        self.passphrase = secrets.token_urlsafe(16)
        self.env = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("PULUMI_", "ACR_PUBLISH_")) and key not in ("DOCKER_CONFIG",)
        }
        self.env.update({
            # The engine's directory first (language host, dynamic-provider script), then the test run's own
            # virtualenv: the language host built here runs the program with the first python3 on PATH.
            "PATH": os.pathsep.join([str(engine_bin), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "PULUMI_BACKEND_URL": f"file://{self.backend}",
            "PULUMI_CONFIG_PASSPHRASE": self.passphrase,
            "PULUMI_HOME": str(root / "pulumi-home"),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "ACR_PUBLISH_CACHE_DIR": str(root / "cache"),
            "NO_COLOR": "1",
        })

    def sibling(self, name: str, *, umask: int = 0o022) -> "Workspace":
        """Another checkout of the same commit at another path, sharing this workspace's backend and passphrase."""
        other = Workspace(self.root / name, Path(self.env["PATH"].split(os.pathsep)[0]), umask=umask)
        other.backend, other.passphrase = self.backend, self.passphrase
        other.env.update({"PULUMI_BACKEND_URL": self.env["PULUMI_BACKEND_URL"],
                          "PULUMI_CONFIG_PASSPHRASE": self.passphrase})
        return other

    # -- commands
    def pulumi(self, *args: str, input: str | None = None) -> Outcome:
        proc = subprocess.run(["pulumi", *args, "--non-interactive"], cwd=self.project, env=self.env, input=input,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        return Outcome(args, proc.returncode, proc.stdout, proc.stderr)

    def new_stack(self, config: dict, name: str | None = None) -> str:
        """A stack with a name no other test uses and `config` as its stack file."""
        name = name or f"t{secrets.token_hex(4)}"
        self.write_config(name, config)
        self.pulumi("stack", "init", name, "--secrets-provider", "passphrase").check()
        return name

    def write_config(self, stack: str, config: dict) -> None:
        path = self.project / "stacks" / f"Pulumi.{stack}.yaml"
        current = yaml.safe_load(path.read_text()) if path.exists() else {}
        current = current or {}
        current["config"] = {key: value for key, value in config.items()}
        path.write_text(yaml.safe_dump(current, sort_keys=False))

    def set_secret(self, stack: str, key: str, value: str) -> None:
        """`pulumi config set --secret` with the value on stdin (never on a command line)."""
        self.pulumi("config", "set", "--secret", key, "--stack", stack, input=value).check()

    def up(self, stack: str, *extra: str) -> tuple[Outcome, dict]:
        """`pulumi up --yes --json`; returns the outcome and the engine's summaryEvent (empty when there is none)."""
        outcome = self.pulumi("up", "--yes", "--json", "--stack", stack, *extra)
        return outcome, _summary_event(outcome.stdout)

    def preview(self, stack: str, *extra: str) -> tuple[Outcome, dict]:
        """`pulumi preview --json`; returns the outcome and the parsed document (changeSummary, steps)."""
        outcome = self.pulumi("preview", "--json", "--stack", stack, *extra)
        try:
            document = json.loads(outcome.stdout)
        except json.JSONDecodeError:
            document = {}
        return outcome, document

    def refresh(self, stack: str) -> tuple[Outcome, dict]:
        outcome = self.pulumi("refresh", "--yes", "--json", "--stack", stack)
        return outcome, _summary_event(outcome.stdout)

    def destroy(self, stack: str) -> tuple[Outcome, dict]:
        outcome = self.pulumi("destroy", "--yes", "--json", "--stack", stack)
        return outcome, _summary_event(outcome.stdout)

    def outputs(self, stack: str) -> dict:
        return json.loads(self.pulumi("stack", "output", "--json", "--stack", stack).check().stdout)

    def export(self, stack: str) -> str:
        return self.pulumi("stack", "export", "--stack", stack).check().stdout

    def history(self, stack: str) -> list[dict]:
        return json.loads(self.pulumi("stack", "history", "--json", "--stack", stack).check().stdout)

    def explain_tag(self, stack: str, image: str) -> str:
        """The content tag the checkout's own `cli.explain` computes for `image` of `stack`."""
        proc = subprocess.run([sys.executable, "-m", "cli.explain", "--stack", stack, "--image", image],
                              cwd=self.project, env=self.env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT_S)
        match = re.search(r"^tag\s+(\S+)$", proc.stdout, re.MULTILINE)
        assert proc.returncode == 0 and match, f"cli.explain failed for {stack}/{image}:\n{proc.stdout}{proc.stderr}"
        return match.group(1)


def _summary_event(stdout: str) -> dict:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") and '"summaryEvent"' in line:
            return json.loads(line)["summaryEvent"]
    return {}


def publish_by_hand(workspace: Workspace, stack: str, server: str, username: str, password: str,
                    docker_cli: str) -> dict[str, str]:
    """Build and push every image of `stack` as the manual flow does, under the checkout's content tags.

    Returns {image name: tag}. The Docker login goes to a config directory of the workspace's own.
    """
    config = yaml.safe_load((workspace.project / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    registry = config["acr-publish:registry"]
    docker_env = {**workspace.env, "DOCKER_CONFIG": str(workspace.root / "docker-config")}
    subprocess.run([docker_cli, "login", "--username", username, "--password-stdin", server], input=password,
                   env=docker_env, capture_output=True, text=True, check=True, timeout=120)
    tags = {}
    for image in config["acr-publish:images"]:
        tag = workspace.explain_tag(stack, image["name"])
        name = f"{server}/{registry['namespace']}/{image['name']}:{tag}"
        build = [docker_cli, "buildx", "build", "--load", "--platform", image.get("platform", "linux/amd64"),
                 "-t", name, "-f", str(workspace.project / image["context"] / "Dockerfile")]
        if image.get("target"):
            build += ["--target", image["target"]]
        for key, value in (image.get("buildArgs") or {}).items():
            build += ["--build-arg", f"{key}={value}"]
        subprocess.run([*build, str(workspace.project / image["context"])], env=docker_env, capture_output=True,
                       text=True, check=True, timeout=COMMAND_TIMEOUT_S)
        subprocess.run([docker_cli, "push", name], env=docker_env, capture_output=True, text=True, check=True,
                       timeout=COMMAND_TIMEOUT_S)
        subprocess.run([docker_cli, "image", "rm", name], env=docker_env, capture_output=True, timeout=120)
        tags[image["name"]] = tag
    return tags


@pytest.fixture
def workspace(tmp_path: Path, pulumi_engine: Path) -> Iterator[Workspace]:
    yield Workspace(tmp_path, pulumi_engine)
