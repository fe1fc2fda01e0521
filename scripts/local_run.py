"""What every step of `make up` shares: the reason to stop (`StopRun`, one exit code per reason) and the step line.

Standard library only, plus the project's error base (errors.py, itself standard library only), so the steps run
before the project's virtualenv has its packages.
"""
from __future__ import annotations

import sys
from pathlib import Path

# scripts/ is the import root when the script runs; the project's error base sits one directory up.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from errors import AcrPublishError  # noqa: E402

# Exit codes, one per reason to stop (documented in the README's troubleshooting).
EXIT_USAGE = 64
EXIT_NO_PULUMI = 2
EXIT_NO_DOCKER = 3
EXIT_PORT_TAKEN = 4
EXIT_REGISTRY_FAILED = 5
EXIT_STACK_FAILED = 6
EXIT_NO_BASE = 7
DOCKER_INFO_TIMEOUT_S = 30


class StopRun(AcrPublishError):
    """A reason to stop before `pulumi up`, with the message a person can act on and the exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def step(message: str) -> None:
    print(f"==> {message}", flush=True)
