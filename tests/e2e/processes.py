"""Stopping the daemons the tests start (registries, second Docker engines, sshd): terminate, then kill when one
does not stop in time, so no test leaves a process behind or hangs on one."""
from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """Terminate `process` if it runs, and kill it when it does not stop within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
