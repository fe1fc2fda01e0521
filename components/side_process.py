"""Work run in a forked child process beside this one, for its result: the remote-input resolution
(components/remote_inputs.py), which waits on sockets while the context scans of the same plan hash and stat files.

Why a process and not threads: each resolving thread needs the interpreter lock again after every blocking call,
and the scan beside it releases and re-takes that lock at every `stat`, so the two slow each other down (measured
in bench/README.md); a child has its own interpreter lock and runs on the other core. It is made with the standard
library's `multiprocessing` "fork" context (the project runs on Linux): it starts in about a millisecond and needs
no re-import. The child runs only code that makes no Pulumi or gRPC call and ends with `os._exit` (no atexit
handler, no gRPC shutdown); SIGINT ends it at once (the parent reports the interrupt itself). What it returns
comes back pickled over a pipe; an exception in it comes back as its formatted traceback. The parent kills it
when it stops waiting (`close`), so no child outlives the plan that started it."""
from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

_FORK = multiprocessing.get_context("fork")


class SideProcessError(Exception):
    """The child ended without an answer (killed, crashed, or past its time limit); says which."""


def _run(work: Callable[[], Any], answer: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        outcome: tuple[str, Any] = ("ok", work())
    except BaseException:  # noqa: BLE001 - every failure goes back to the parent, which raises it
        outcome = ("error", traceback.format_exc())
    answer.send(outcome)
    answer.close()


class SideProcess:
    """`work()` running in a forked child; `result()` waits for what it returned (at most `limit_s` seconds)."""

    def __init__(self, work: Callable[[], Any], limit_s: float, what: str) -> None:
        self.what = what
        self.deadline = time.monotonic() + limit_s
        self._answers, answer = _FORK.Pipe(duplex=False)
        self._child = _FORK.Process(target=_run, args=(work, answer), daemon=True, name=what)
        self._child.start()
        answer.close()

    def result(self) -> Any:
        """What `work()` returned; SideProcessError when the child ended without an answer or ran past the
        limit (it is killed then); RuntimeError carrying the child's traceback when `work()` raised."""
        try:
            if not self._answers.poll(max(0.0, self.deadline - time.monotonic())):
                raise SideProcessError(f"{self.what} was still running at its time limit and was stopped")
            try:
                kind, value = self._answers.recv()
            except EOFError:
                self._child.join(timeout=5)
                raise SideProcessError(f"{self.what} ended without an answer ({_ending(self._child.exitcode)})"
                                       ) from None
        finally:
            self.close()
        if kind == "error":
            raise RuntimeError(f"{self.what} failed:\n{value}")
        return value

    def close(self) -> None:
        """Stop the child if it still runs (a plan that ended early leaves nothing behind)."""
        if self._child.is_alive():
            self._child.kill()
        self._child.join(timeout=5)
        self._answers.close()


def _ending(code: int | None) -> str:
    if code is None:
        return "it did not end"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"
