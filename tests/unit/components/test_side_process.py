"""components/side_process.py: work run in a forked child, its answer, and every way the child can end without one."""
from __future__ import annotations

import os
import signal
import time

import pytest

from buildcontext.stages import read_plan
from components import remote_inputs
from components.side_process import SideProcess, SideProcessError

HANG_BOUND_S = 60  # generous: turns a hang into a failure, never a timing assertion


def test_the_answer_comes_back_from_another_process() -> None:
    side = SideProcess(lambda: {"pid": os.getpid(), "bytes": b"\x00\xff"}, HANG_BOUND_S, "the test work")
    answer = side.result()
    assert answer["pid"] != os.getpid() and answer["bytes"] == b"\x00\xff"


def test_an_exception_in_the_child_is_raised_with_its_traceback() -> None:
    def work() -> None:
        raise ValueError("the child's own words")

    with pytest.raises(RuntimeError, match=r"(?s)the test work failed:.*ValueError: the child's own words"):
        SideProcess(work, HANG_BOUND_S, "the test work").result()


def test_a_child_killed_without_an_answer_is_named_with_its_signal() -> None:
    def work() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(SideProcessError, match=r"^the test work ended without an answer \(killed by SIGKILL\)$"):
        SideProcess(work, HANG_BOUND_S, "the test work").result()


def test_a_child_past_its_limit_is_stopped_and_named() -> None:
    side = SideProcess(lambda: time.sleep(HANG_BOUND_S), 0.5, "the test work")
    with pytest.raises(SideProcessError, match=r"^the test work was still running at its time limit and was stopped$"):
        side.result()
    assert not side._child.is_alive()


def test_close_stops_a_child_nobody_waits_for() -> None:
    side = SideProcess(lambda: time.sleep(HANG_BOUND_S), HANG_BOUND_S, "the test work")
    side.close()
    assert not side._child.is_alive() and side._child.exitcode == -signal.SIGKILL


def test_sigint_ends_the_child_at_once_without_a_traceback(capfd) -> None:
    def work() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(HANG_BOUND_S)

    with pytest.raises(SideProcessError, match=r"\(killed by SIGINT\)"):
        SideProcess(work, HANG_BOUND_S, "the test work").result()
    assert "Traceback" not in capfd.readouterr().err


def test_a_plans_requests_are_made_in_another_process(monkeypatch, remote_calls) -> None:
    """The resolution runs beside the plan, not in its threads (what bench/remote_inputs_bench.py measures)."""
    monkeypatch.setattr(remote_inputs, "run_aside", remote_calls.saved["run_aside"])  # the program's own
    monkeypatch.setattr(remote_inputs, "_resolve_host", lambda host, keys, stack, deadline: {
        key: f"sha256:{os.getpid():064d}" for key in keys})
    plan = read_plan(b"FROM registry.invalid/base:1\n", {}, None, "linux/amd64")
    image = remote_inputs.ImageInputs("img", "Dockerfile", "resolve", plan, "linux/amd64")
    resolved = remote_inputs.resolve_all([image], None).result()
    (label, digest), = resolved[("img", "linux/amd64")].labels.items()
    assert label == "FROM registry.invalid/base:1" and int(digest.removeprefix("sha256:")) != os.getpid()


def test_a_resolution_killed_midway_is_one_error_saying_so(monkeypatch, remote_calls) -> None:
    monkeypatch.setattr(remote_inputs, "run_aside", remote_calls.saved["run_aside"])
    monkeypatch.setattr(remote_inputs, "_resolve_host", lambda *args: os.kill(os.getpid(), signal.SIGKILL))
    plan = read_plan(b"FROM registry.invalid/base:1\n", {}, None, "linux/amd64")
    image = remote_inputs.ImageInputs("img", "Dockerfile", "resolve", plan, "linux/amd64")
    with pytest.raises(remote_inputs.RemoteInputError, match=r"^the resolution of base images and remote sources "
                       r"ended without an answer \(killed by SIGKILL\); nothing was declared; fix: run again"):
        remote_inputs.resolve_all([image], None).result()
