"""Ctrl-C once everything is declared: the program ends at once, without a traceback.

(Ctrl-C before that is reported by `__main__.py`, with every AcrPublishError, as a one-line `pulumi.RunError`.)
"""
from __future__ import annotations

import os
import signal
import sys


def leave_quietly_on_interrupt() -> None:
    """From here on, SIGINT ends the program at once, without a traceback.

    Called once everything is declared: the only work left is the SDK waiting on the engine, and a SIGINT then comes
    from the engine stopping the run (it prints why, e.g. a provider plugin it cannot start) or from a Ctrl-C the CLI
    handles itself. Python's default would print a KeyboardInterrupt traceback from the SDK's event loop."""
    def leave(signum: int, frame: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, leave)
