"""The config-time target check agrees with the real engine: for each Dockerfile of tests/unit/config/test_config_images.py's
STAGE_CASES, every stage components/docker_rules.py finds builds with `docker build --target`, and a name it does not
find ("fake" hidden in a heredoc, a commented-out stage, an absent one) fails in the engine with "could not be found".

Builds are `FROM scratch` with the output thrown away (`-o type=tar,dest=/dev/null`): no image is made, nothing pulled.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from buildcontext.plan import DockerfileProblem
from buildcontext.stages import read_plan
from components.docker_rules import build_stages
from tests.unit.config.test_config_images import STAGE_CASES

ABSENT = {"heredoc": "fake", "commented-out": "old"}


def engine_build(docker: str, context: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run([docker, "build", "-q", "--target", target, "-o", "type=tar,dest=/dev/null", str(context)],
                          capture_output=True, text=True, timeout=180)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("case", sorted(STAGE_CASES))
def test_the_engine_builds_exactly_the_stages_we_find(docker_engine, tmp_path, case):
    text, _ = STAGE_CASES[case]
    (tmp_path / "Dockerfile").write_text(text)
    (tmp_path / "f").write_text("f\n")
    stages = build_stages(tmp_path / "Dockerfile")
    assert stages, f"{case}: no stage found"
    for stage in stages:
        for spelling in (stage, stage.upper()):
            proc = engine_build(docker_engine, tmp_path, spelling)
            assert proc.returncode == 0, f"{case}: the engine refused --target {spelling}: {proc.stderr[-500:]}"
    for missing in (ABSENT.get(case, "nosuchstage"), "nosuchstage"):
        proc = engine_build(docker_engine, tmp_path, missing)
        assert proc.returncode != 0 and f'target stage "{missing}" could not be found' in proc.stderr, \
            f"{case}: --target {missing}: {proc.stderr[-500:]}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mount, engine_says", [
    ('type=bind,from=b"x"', 'bare "'), ('"type=bind"x,from=b', 'extraneous or missing "'),
])
def test_a_mount_the_plan_refuses_as_bad_csv_fails_in_the_engine_too(docker_engine, tmp_path, mount, engine_says):
    """buildcontext/mount_flags.py reads a --mount value as Go's CSV reader does: what it refuses, BuildKit does."""
    text = f"FROM scratch AS b\nFROM scratch\nRUN --mount='{mount}' true\n"
    (tmp_path / "Dockerfile").write_text(text)
    with pytest.raises(DockerfileProblem, match=engine_says):
        read_plan(text.encode(), {}, None, "linux/amd64")
    proc = subprocess.run([docker_engine, "build", "-q", "-o", "type=tar,dest=/dev/null", str(tmp_path)],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0 and "failed to parse csv mounts" in proc.stderr and engine_says in proc.stderr, \
        proc.stderr[-500:]
