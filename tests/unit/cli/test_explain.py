"""`python -m cli.explain`: arguments checked by the stack settings' rules, the manifest of a context, and the
explain history keyed by (project, stack, image) that plan_builds records.

The history tests plan stacks of a throwaway project with the program's own plan_builds and read them back with
the CLI's own main(), so what is proven is the path a user takes (`pulumi preview`/`up`, then explain); the
subprocess tests prove the `python -m` entry point and that errors are messages, not tracebacks.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from buildcontext import context_digest, content_tag, history
from cli import explain as explain_cli
from components.image import plan_builds
from components.config.stackfile import load_stack_file
from tests.harness import PROJECT_ROOT

REPO = PROJECT_ROOT
DOCKERFILE = "FROM scratch AS base\nCOPY . /ctx/\nFROM base AS web\nFROM base AS worker\n"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.explain", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ})


def make_tree(root: Path, spec: dict[str, object]) -> Path:
    """Files (str content) and symlinks (("link", target)) under root; a Dockerfile is added."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, what in {"Dockerfile": DOCKERFILE, **spec}.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(what, tuple):
            os.symlink(what[1], p)
        else:
            p.write_text(what)
    return root


class Project:
    """A throwaway project: stacks/Pulumi.<stack>.yaml files over one `app` context, planned and explained."""

    def __init__(self, root: Path, monkeypatch, capsys):
        self.root, self._capsys = root, capsys
        (root / "stacks").mkdir(parents=True)
        monkeypatch.setattr(explain_cli, "PROJECT_ROOT", root)

    def stack(self, name: str, images: list[dict]) -> None:
        doc = {"config": {"acr-publish:registry": {"edition": "local", "server": "127.0.0.1:5000",
                                                   "namespace": "demo"},
                          "acr-publish:images": images}}
        (self.root / "stacks" / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(doc))

    def plan(self, stack: str) -> dict[str, str]:
        return {n: p.tag for n, p in plan_builds(load_stack_file(stack, self.root)).items()}

    def explain(self, *args: str) -> tuple[int, str, str]:
        self._capsys.readouterr()
        rc = explain_cli.main(list(args))
        out = self._capsys.readouterr()
        return rc, out.out, out.err


WEB = {"name": "web", "context": "app", "target": "web", "buildArgs": {"APP_ENV": "local"}}
WORKER = {"name": "worker", "context": "app", "target": "worker", "buildArgs": {"APP_ENV": "local"}}


@pytest.fixture
def project(tmp_path, monkeypatch, capsys):
    p = Project(tmp_path / "project", monkeypatch, capsys)
    make_tree(p.root / "app", {"keep.txt": "k", "gone.txt": "g", "edit.txt": "1", "run.sh": "#!/bin/sh\n",
                               "link": ("link", "keep.txt")})
    os.chmod(p.root / "app" / "run.sh", 0o644)
    p.stack("s", [WEB, WORKER])
    return p


# ---------------------------------------------------------------- the history, per stack and image

def test_explain_before_any_plan_says_there_is_no_history(project):
    rc, out, _ = project.explain("--stack", "s", "--image", "web")
    assert rc == 0 and "history     none for image 'web' of stack 's'" in out


def test_explain_lists_what_changed_since_the_last_planned_tag_then_why_it_moved(project):
    tags = project.plan("s")
    rc, out, _ = project.explain("--stack", "s", "--image", "web")
    assert rc == 0 and f"tag         {tags['web']}" in out
    assert "unchanged since the last planned tag of image 'web' of stack 's'; no earlier tag recorded" in out

    app = project.root / "app"
    (app / "gone.txt").unlink()
    (app / "new.txt").write_text("n")
    (app / "edit.txt").write_text("2")
    os.chmod(app / "run.sh", 0o755)
    (app / "link").unlink()
    os.symlink("edit.txt", app / "link")
    (app / "Dockerfile").write_text(DOCKERFILE + "# edited\n")
    project.stack("s", [{**WEB, "buildArgs": {"APP_ENV": "two-secret-value"}, "target": "worker"}, WORKER])
    expected = ["  added    new.txt", "  removed  gone.txt", "  changed  edit.txt (content)",
                "  changed  run.sh (executable bit set)", "  changed  link (symlink target)",
                "  changed  (Dockerfile content)", "  build arg APP_ENV changed", "  target 'web' -> 'worker'"]
    rc, out, _ = project.explain("--stack", "s", "--image", "web")
    assert rc == 0 and f"changed since the last planned tag {tags['web']} of image 'web' of stack 's':" in out
    for line in expected:
        assert line in out, f"{line!r} missing from:\n{out}"
    assert "keep.txt" not in out and "two-secret-value" not in out and "local" not in out.split("tag ")[-1]

    # After the plan that moved the tag, explain still says why it moved (against the tag before it).
    new_tags = project.plan("s")
    rc, out, _ = project.explain("--stack", "s", "--image", "web")
    assert f"tag         {new_tags['web']}" in out
    assert f"unchanged since the last planned tag of image 'web' of stack 's'; it replaced {tags['web']} because:" in out
    for line in expected:
        assert line in out, f"{line!r} missing from:\n{out}"


def test_a_new_build_of_one_image_never_changes_another_images_explain(project):
    """web and worker share the context; only worker's build arg changes. web's record is not touched (byte for
    byte), and neither image is ever compared with the other."""
    project.plan("s")
    web_key = history.HistoryKey(project.root, "s", "web")
    web_before = web_key.path().read_bytes()
    _, web_out_before, _ = project.explain("--stack", "s", "--image", "web")
    project.stack("s", [WEB, {**WORKER, "buildArgs": {"APP_ENV": "prod"}}])
    tags = project.plan("s")
    assert web_key.path().read_bytes() == web_before
    _, web_out, _ = project.explain("--stack", "s", "--image", "web")
    assert web_out == web_out_before
    rc, worker_out, _ = project.explain("--stack", "s", "--image", "worker")
    assert rc == 0 and "it replaced" in worker_out and "  build arg APP_ENV changed" in worker_out
    assert "target" not in worker_out.split("because:")[-1], worker_out
    assert tags["web"] in web_out and tags["worker"] in worker_out


def test_each_stack_keeps_its_own_history_of_an_image(project):
    project.stack("other", [{**WEB, "buildArgs": {"APP_ENV": "other"}}])
    project.plan("s")
    project.plan("other")
    _, out_s, _ = project.explain("--stack", "s", "--image", "web")
    _, out_other, _ = project.explain("--stack", "other", "--image", "web")
    assert "unchanged since the last planned tag of image 'web' of stack 's'; no earlier tag" in out_s
    assert "unchanged since the last planned tag of image 'web' of stack 'other'; no earlier tag" in out_other


def test_a_corrupt_or_fifo_history_file_is_a_message_and_the_next_plan_replaces_it(project):
    project.plan("s")
    path = history.HistoryKey(project.root, "s", "web").path()
    path.write_bytes(b"acr-publish-history " + history._layout_version() + b" digest checksum\n{")
    rc, _, err = project.explain("--stack", "s", "--image", "web")
    assert rc == 2 and str(path) in err and "delete it" in err
    path.unlink()
    os.mkfifo(path)
    rc, _, err = project.explain("--stack", "s", "--image", "web")  # O_NONBLOCK + fstat: no hang
    assert rc == 2 and "not a regular file" in err
    (project.root / "app" / "keep.txt").write_text("changed")
    project.plan("s")
    assert path.is_file() and history.load(history.HistoryKey(project.root, "s", "web")) is not None


def test_history_keeps_no_build_arg_value(project):
    project.stack("s", [{**WEB, "buildArgs": {"TOKEN": "s3cr3t-value-xyz"}, "allowSensitive": ["buildArg:TOKEN"]}])
    project.plan("s")
    assert b"s3cr3t-value-xyz" not in history.HistoryKey(project.root, "s", "web").path().read_bytes()


# ---------------------------------------------------------------- explain <context>: the manifest only

def test_explain_a_context_prints_digest_tag_size_and_the_manifest_and_writes_no_history(tmp_path):
    tree = make_tree(tmp_path / "ctx", {"a.txt": "alpha\n", "sub/b.txt": "b", "l": ("link", "a.txt")})
    proc = run_cli(str(tree), "--build-arg", "MODE=x")
    assert proc.returncode == 0, proc.stderr
    d = context_digest(tree, build_args={"MODE": "x"}, cache=False)
    assert f"digest      {d}" in proc.stdout and f"tag         {content_tag(d)}" in proc.stdout
    size = sum(p.lstat().st_size for p in tree.rglob("*") if not p.is_dir())
    assert f"files       4 ({size:,} bytes)" in proc.stdout
    assert "manifest    5 path(s):" in proc.stdout
    import hashlib
    assert f"  f {hashlib.sha256(b'alpha').hexdigest()[:16]}  a.txt" not in proc.stdout
    assert f"  f {hashlib.sha256(b'alpha' + bytes([10])).hexdigest()[:16]}  a.txt" in proc.stdout
    assert "  l a.txt             l" in proc.stdout and "  d -                 sub/" in proc.stdout
    assert not (tmp_path / "cache" / "history").exists()


def test_explain_with_an_outside_dockerfile(tmp_path):
    tree = make_tree(tmp_path / "ctx", {"a": "a"})
    df = tmp_path / "build.Dockerfile"
    df.write_text("FROM scratch\nCOPY a /\n")
    proc = run_cli(str(tree), "--dockerfile", str(df))
    assert proc.returncode == 0, proc.stderr
    assert f"dockerfile  {df}" in proc.stdout
    assert f"digest      {context_digest(tree, dockerfile=df, cache=False)}" in proc.stdout


def test_explain_names_sensitive_paths_without_their_secrets(tmp_path):
    ak = "LTAI" + "9zzFakeFakeFake12"
    tree = make_tree(tmp_path / "ctx", {".env": "TOKEN=abc\n", "cfg.py": f"K = '{ak}'\n"})
    proc = run_cli(str(tree))
    assert proc.returncode == 0, proc.stderr
    assert "sensitive   2 finding(s)" in proc.stdout
    assert "  .env  a dotenv file" in proc.stdout and "  cfg.py  contains an Alibaba Cloud AccessKey id" in proc.stdout
    assert ak not in proc.stdout and ak[4:] not in proc.stdout


# ---------------------------------------------------------------- arguments: the settings' rules, no traceback

@pytest.mark.parametrize("args,needle", [
    (["--platform", "Linux/AMD64"], "--platform 'Linux/AMD64' is invalid: it must be os/arch[/variant]"),
    (["--platform", "foo"], "--platform 'foo' is invalid"),
    (["--target=-x"], "--target '-x' is invalid: it must be a build stage name"),
    (["--build-arg", "1X=v"], "--build-arg #1 name '1X' is invalid"),
])
def test_invalid_arguments_are_refused_by_the_settings_rules(tmp_path, args, needle):
    tree = make_tree(tmp_path / "ctx", {})
    proc = run_cli(str(tree), *args)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("arg", ["LTAI5tQfAkEkEy0123456", "--build-arg=hunter2-secret"])
def test_a_malformed_build_arg_never_echoes_its_value(tmp_path, arg):
    tree = make_tree(tmp_path / "ctx", {})
    args = ["--build-arg", arg] if not arg.startswith("--") else [arg]
    proc = run_cli(str(tree), *args)
    secret = arg.removeprefix("--build-arg=")
    assert proc.returncode == 2 and "write NAME=VALUE" in proc.stderr, proc.stderr
    assert secret not in proc.stderr and secret not in proc.stdout


@pytest.mark.parametrize("args", [
    ["--build-args", "TOKEN=s3cr3t-unknown-1"],  # a misspelt option: its value is an unrecognized argument
    ["TOKEN=s3cr3t-unknown-1"],  # a second positional
    ["--build-args=TOKEN=s3cr3t-unknown-1"],
    ["--tokn", "s3cr3t-unknown-1", "x"],
    ["--build-a", "TOKEN=s3cr3t-unknown-1", "--bu=s3cr3t-unknown-1"],  # abbreviations, one of them ambiguous?
])
def test_unknown_arguments_are_named_by_position_never_echoed(tmp_path, args):
    proc = run_cli(str(make_tree(tmp_path / "ctx", {})), *args)
    assert "s3cr3t-unknown-1" not in proc.stderr and "s3cr3t-unknown-1" not in proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr
    if args[0] != "--build-a":
        assert proc.returncode == 2 and "position" in proc.stderr, proc.stderr


def test_explain_reports_the_dockerfile_and_build_arg_findings_the_plan_refuses(tmp_path):
    """explain shows the same report as plan_builds: besides the files sent, the Dockerfile's text and the
    build args (which land in the image history), never their values."""
    ak = "LTAI" + "9zzFakeFakeFake12"
    tree = make_tree(tmp_path / "ctx", {"Dockerfile": f"FROM scratch\nARG DB_PASSWORD\nENV K={ak}\n", "a.txt": "a"})
    proc = run_cli(str(tree), "--build-arg", "DB_PASSWORD=hunter2-value", "--build-arg", "APP=ok")
    assert proc.returncode == 0, proc.stderr
    assert "sensitive   2 finding(s)" in proc.stdout, proc.stdout
    assert "  Dockerfile  the Dockerfile contains an Alibaba Cloud AccessKey id" in proc.stdout
    assert "  buildArg:DB_PASSWORD  its name says it carries a credential" in proc.stdout
    assert ak[4:] not in proc.stdout and "hunter2-value" not in proc.stdout


def test_a_missing_build_arg_value_is_refused_without_a_traceback(tmp_path):
    proc = run_cli(str(make_tree(tmp_path / "ctx", {})), "--build-arg")
    assert proc.returncode == 2 and "--build-arg" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_contexts_are_messages(tmp_path):
    proc = run_cli(str(tmp_path / "missing"))
    assert proc.returncode == 2 and "build context" in proc.stderr and "does not exist" in proc.stderr
    long = run_cli(str(tmp_path / ("x" * 300)))
    assert long.returncode == 2 and "longer than 255 bytes" in long.stderr and "Traceback" not in long.stderr


@pytest.mark.parametrize("kind", ["fifo", "directory", "link to /dev/zero", "missing"])
def test_a_dockerfile_that_is_no_file_names_the_option_that_chose_it(project, kind):
    """In path mode --dockerfile (or its default, <context>/Dockerfile) chose it; with --stack, the image's setting
    (its config check)."""
    dockerfile = project.root / "app" / "Dockerfile"
    dockerfile.unlink()
    if kind == "fifo":
        os.mkfifo(dockerfile)
    elif kind == "directory":
        dockerfile.mkdir()
    elif kind == "link to /dev/zero":
        dockerfile.symlink_to("/dev/zero")
    for args in ([str(project.root / "app")], [str(project.root / "app"), "--dockerfile", str(dockerfile)]):
        rc, _, err = project.explain(*args)
        assert rc == 2 and "point --dockerfile at " in err and "setting" not in err, err
    rc, _, err = project.explain("--stack", "s", "--image", "web")
    assert rc == 2 and "acr-publish:images[0].dockerfile is unset" in err and "--dockerfile" not in err, err


@pytest.mark.parametrize("content,needle", [
    ("config: [unclosed\n", "is not valid YAML at line"),
    ("- a\n- b\n", "holds a YAML list, and a stack file is a map"),
    ("config: 5\n", "config 5 in "),
])
def test_malformed_stack_files_are_messages(project, content, needle):
    (project.root / "stacks" / "Pulumi.bad.yaml").write_text(content)
    rc, out, err = project.explain("--stack", "bad", "--image", "web")
    assert rc == 2 and needle in err, err


def test_a_long_or_control_character_stack_name_is_a_message(project):
    rc, _, err = project.explain("--stack", "s" * 10_000, "--image", "web")
    assert rc == 2 and "stack name" in err and "10000 characters" in err and len(err) < 1000
    rc, _, err = project.explain("--stack", "a\x1b[31mb", "--image", "web")
    assert rc == 2 and "\x1b" not in err and "\\x1b" in err


def test_unknown_image_names_the_stack_images():
    proc = run_cli("--stack", "local", "--image", "nope")
    assert proc.returncode == 2 and "stack 'local' has no image 'nope'; its images are web, worker" in proc.stderr


def test_context_and_stack_are_exclusive():
    proc = run_cli("app", "--stack", "local", "--image", "web")
    assert proc.returncode == 2 and "either a context path, or --stack and --image" in proc.stderr
    proc = run_cli("--stack", "local", "--image", "web", "--platform", "linux/arm64")
    assert proc.returncode == 2 and "come from the stack file" in proc.stderr


def test_an_empty_platform_or_target_is_refused_not_defaulted(tmp_path):
    tree = make_tree(tmp_path / "ctx", {})
    for args, needle in ((["--platform", ""], "--platform '' is invalid"), (["--target", ""], "--target '' is invalid")):
        proc = run_cli(str(tree), *args)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr


@pytest.mark.parametrize("dockerfile", ["FROM scratch AS \\\n", "FROM scratch\n", "FROM scratch AS build\n"])
def test_explain_refuses_a_target_the_program_refuses_with_its_rule(project, dockerfile):
    """A target naming no stage of the Dockerfile (a stage name broken off by a trailing backslash included): the
    program refuses the stack; explain refuses the same context and target with the same rule, printing no tag."""
    (project.root / "app" / "Dockerfile").write_text(dockerfile)
    project.stack("s", [WEB])
    with pytest.raises(Exception) as program:
        project.plan("s")
    said = str(program.value).split("acr-publish:images[0].target 'web' is invalid: ", 1)[1].splitlines()[0]
    rc, out, err = project.explain(str(project.root / "app"), "--target", "web")
    assert rc == 2 and out == "", out
    assert f"--target 'web' is invalid: {said.replace('app/Dockerfile', str(project.root / 'app' / 'Dockerfile'))}" \
        in err, (said, err)


# ---------------------------------------------------------------- the Dockerfile read as the program reads it

DEEP = "${A:-" * 65 + "x" + "}" * 65
REFUSED = {
    "nested too deep": (f"FROM scratch AS web\nARG A=1\nENV B={DEEP}\n", "line 3", "more than 64 levels deep"),
    "empty trim pattern": ("FROM scratch AS web\nARG A=1\nENV B=${A#}\n", "line 3", "has an empty pattern"),
    "bad substitution": ("FROM scratch AS web\nARG A=1\nENV B=${A!x}\n", "line 3", "unsupported modifier"),
    "mount from a stage number": ("FROM scratch AS base\nFROM scratch AS web\n"
                                  "RUN --mount=type=bind,from=0,target=/b true\n", "line 3",
                                  "only COPY --from counts stages by number"),
    "variable in --from": ("FROM scratch AS web\nARG S=base\nCOPY --from=$S /a /b\n", "line 3",
                           "BuildKit expands no variable in a --from"),
    "remote source with user info": ("FROM scratch AS web\nADD https://u:p@127.0.0.1:9/f /f\n", "line 2",
                                     "holds user info"),
}


def _program_problems(project: Project, image: dict) -> list[str]:
    """The lines the program refuses the stack with (one image), after `acr-publish:images[0] (web): `."""
    project.stack("s", [image])
    with pytest.raises(Exception) as refused:
        project.plan("s")
    prefix = "acr-publish:images[0] (web): "
    return [line.removeprefix(prefix) for line in str(refused.value).splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("kind", REFUSED)
def test_explain_refuses_what_the_program_refuses_with_its_message_in_every_mode(project, kind):
    """Each refusal of the Dockerfile's reading: the program refuses the stack; explain --stack prints the program's
    own lines, explain <context> the same problem for its context, each one line, no tag, status 2."""
    text, line, needle = REFUSED[kind]
    (project.root / "app" / "Dockerfile").write_text(text)
    said = _program_problems(project, {**WEB, "buildArgs": {}})
    assert len(said) == 1 and f"app/Dockerfile {line}: " in said[0] and needle in said[0], said
    rc, out, err = project.explain("--stack", "s", "--image", "web")
    assert (rc, out) == (2, ""), out
    assert err == f"error: acr-publish:images[0] (web): {said[0]}\n", (said, err)
    context = project.root / "app"
    rc, out, err = project.explain(str(context), "--target", "web")
    assert (rc, out) == (2, ""), out
    reason = said[0].split(f"app/Dockerfile {line}: ", 1)[1]
    assert err == f"error: context {context}: {context / 'Dockerfile'} {line}: {reason}\n", (said, err)


@pytest.mark.parametrize("kind", ["empty trim pattern", "nested too deep"])
def test_under_remote_inputs_ignore_explain_refuses_only_what_the_program_refuses(project, kind):
    """remoteInputs: ignore: a word that would crash the engine is still refused by both; one the plan cannot read
    is accepted by both, and explain prints the program's tag (the guard counting every stage as shipped)."""
    text, line, needle = REFUSED[kind]
    (project.root / "app" / "Dockerfile").write_text(text)
    image = {**WEB, "buildArgs": {}, "remoteInputs": "ignore"}
    context = str(project.root / "app")
    if kind == "empty trim pattern":
        said = _program_problems(project, image)
        assert len(said) == 1 and needle in said[0], said
        for args in (["--stack", "s", "--image", "web"], [context, "--target", "web", "--remote-inputs", "ignore"]):
            rc, out, err = project.explain(*args)
            assert (rc, out) == (2, "") and needle in err and err.count("\n") == 1, (args, err)
        return
    project.stack("s", [image])
    tag = project.plan("s")["web"]
    rc, out, err = project.explain("--stack", "s", "--image", "web")
    assert rc == 0 and f"tag         {tag}" in out, err
    inline_cache = load_stack_file("s", project.root).images[0].build_args
    args = [f"--build-arg={k}={v}" for k, v in inline_cache.items()]
    rc, out, err = project.explain(context, "--target", "web", "--remote-inputs", "ignore", *args)
    assert rc == 0 and f"tag         {tag}" in out, err
    rc, out, err = project.explain(context, "--target", "web", *args)
    assert rc == 2 and needle in err, err


def test_an_ordinary_multi_stage_dockerfile_explains_with_the_programs_tag(project):
    """The passing side: the project's multi-stage Dockerfile (web and worker built on one base stage) plans, and
    explain prints the tag the program planned, with the stack and with the same inputs given by hand."""
    tags = project.plan("s")
    for image in ("web", "worker"):
        rc, out, err = project.explain("--stack", "s", "--image", image)
        assert rc == 0 and f"tag         {tags[image]}" in out, err
        build_args = load_stack_file("s", project.root).images[0].build_args
        args = [f"--build-arg={k}={v}" for k, v in build_args.items()]
        rc, out, err = project.explain(str(project.root / "app"), "--target", image, *args)
        assert rc == 0 and f"tag         {tags[image]}" in out, err


def test_a_context_holding_the_staged_dockerfiles_is_refused_by_explain_as_by_the_program(project):
    """A context of `.` would send `.acr-publish/` (the staged Dockerfiles): the program refuses the stack, and so
    does `explain --stack`, with the program's line; once the ignore file excludes it, both give one tag."""
    (project.root / "Dockerfile").write_text("FROM scratch\nCOPY app /app\n")
    (project.root / ".dockerignore").write_text("stacks/\n")
    image = {"name": "web", "context": ".", "dockerfile": "Dockerfile"}
    said = _program_problems(project, image)
    assert len(said) == 1 and said[0].startswith("the context . holds .acr-publish/"), said
    rc, out, err = project.explain("--stack", "s", "--image", "web")
    assert (rc, out) == (2, "") and err.strip().endswith(f"acr-publish:images[0] (web): {said[0]}"), err
    (project.root / ".dockerignore").write_text("stacks/\n.acr-publish/\n")
    tag = project.plan("s")["web"]
    rc, out, err = project.explain("--stack", "s", "--image", "web")
    assert rc == 0 and f"tag         {tag}" in out, err
