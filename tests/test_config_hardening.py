"""Issue 11's configuration classes: no escape from the repository, no traceback from a stack file, no silent
acceptance of a bad value, ACR's password length; each message names the key, the value, the rule and the fix.

Every tree here is generated in a tmp dir (a monorepo-style git repository with the project in a subfolder, links to
/etc, over-long names); the pathological inputs run under a pytest-timeout bound, so a hang fails the test.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from components import docker_rules
from components.config.paths import repository_root
from components.config.problems import PROBLEMS_MAX, ConfigError
from components.config.stackfile import load_stack_file
from components.config.validate import settings_from_values
from tests import harness
from tests.harness import PROGRAM_FILES, PROJECT_ROOT, run_stack

EE = {"edition": "enterprise", "instanceId": "cri-0123456789abcdef", "namespace": "acme"}
LOCAL = {"edition": "local"}
DOCKERFILE = "FROM scratch AS web\nCOPY f /f\n"


def problems_of(images, *, registry=None, root: Path = PROJECT_ROOT, region="cn-hangzhou", **kwargs) -> list[str]:
    values = {"registry": registry or EE, "images": images}
    values.update(kwargs.pop("top", {}))
    try:
        settings_from_values("dev", values, region=region, has_password=kwargs.pop("has_password", False),
                             project_root=root, **kwargs)
    except ConfigError as err:
        return err.problems
    return []


def only(*args, **kwargs) -> str:
    found = problems_of(*args, **kwargs)
    assert len(found) == 1, found
    return found[0]


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def git_dir(path: Path) -> Path:
    """What git itself takes for a repository directory: HEAD, objects/ and refs/."""
    write(path / "HEAD", "ref: refs/heads/main\n")
    (path / "objects").mkdir()
    (path / "refs").mkdir()
    return path


@pytest.fixture
def monorepo(tmp_path) -> Path:
    """repo/.git, the project in repo/infra (its own app/), a shared context in repo/shared/app; returns infra."""
    repo = tmp_path / "repo"
    git_dir(repo / ".git")
    project = repo / "infra"
    write(project / "Pulumi.yaml", "name: acr-publish\n")
    write(project / "app" / "Dockerfile", DOCKERFILE)
    write(repo / "shared" / "app" / "Dockerfile", DOCKERFILE)
    write(tmp_path / "elsewhere" / "app" / "Dockerfile", DOCKERFILE)
    return project


# --- item 3: contexts and Dockerfiles resolve inside the repository that holds the project -------------------------

def test_the_repository_is_the_git_work_tree_holding_the_project(monorepo):
    assert repository_root(monorepo) == monorepo.parent.resolve()


def test_a_worktree_git_file_marks_the_repository_too(monorepo, tmp_path):
    shutil.rmtree(monorepo.parent / ".git")
    git_dir(tmp_path / "main" / ".git")
    write(tmp_path / "main" / ".git" / "worktrees" / "x" / "HEAD", "ref: refs/heads/x\n")
    write(tmp_path / "main" / ".git" / "worktrees" / "x" / "commondir", "../..\n")
    write(monorepo.parent / ".git", f"gitdir: {tmp_path}/main/.git/worktrees/x\n")
    assert repository_root(monorepo) == monorepo.parent.resolve()
    assert problems_of([{"name": "web", "context": "../shared/app"}], root=monorepo) == []
    write(monorepo.parent / ".git", "gitdir: ../main/.git/worktrees/x\n")  # relative to the .git file, as git reads it
    assert repository_root(monorepo) == monorepo.parent.resolve()


@pytest.mark.parametrize("marker", ["empty file", "dangling gitdir", "not a gitdir", "directory without HEAD",
                                    "directory with only HEAD", "gitdir of the root", "symlink to a directory"])
def test_a_stray_git_entry_does_not_widen_the_repository(monorepo, tmp_path, marker):
    """An empty /tmp/.git (or a dangling worktree file) in some parent must not make everything below it the
    repository: the project alone is then the boundary, and ../elsewhere stays refused."""
    shutil.rmtree(monorepo.parent / ".git")
    outer = tmp_path / ".git"
    if marker == "empty file":
        write(outer, "")
    elif marker == "dangling gitdir":
        write(outer, "gitdir: /nonexistent/.git\n")
    elif marker == "not a gitdir":
        write(outer, "hello\n")
    elif marker == "directory without HEAD":
        outer.mkdir()
    elif marker == "directory with only HEAD":
        write(outer / "HEAD", "")
    elif marker == "gitdir of the root":
        write(outer, "gitdir: /\n")
    else:
        outer.symlink_to(git_dir(tmp_path / "real-git"))
    assert repository_root(monorepo) == monorepo.resolve(), marker
    msg = only([{"name": "web", "context": "../../elsewhere/app"}], root=monorepo)
    assert "outside the repository that holds the project" in msg


def test_without_git_the_project_directory_is_the_boundary(monorepo):
    shutil.rmtree(monorepo.parent / ".git")
    assert repository_root(monorepo) == monorepo.resolve()
    msg = only([{"name": "web", "context": "../shared/app"}], root=monorepo)
    assert "outside the repository that holds the project" in msg and str(monorepo.resolve()) in msg


def test_a_monorepo_project_builds_from_a_sibling_folder(monorepo):
    s = settings_from_values("dev", {"registry": EE, "images": [
        {"name": "web", "context": "../shared/app"},
        {"name": "api", "context": "app", "dockerfile": "../shared/app/Dockerfile"},
    ]}, region="cn-hangzhou", has_password=False, project_root=monorepo)
    assert [(i.context, i.dockerfile) for i in s.images] == [
        ("../shared/app", "../shared/app/Dockerfile"), ("app", "../shared/app/Dockerfile")]


def test_a_context_outside_the_repository_is_refused(monorepo):
    msg = only([{"name": "web", "context": "../../elsewhere/app"}], root=monorepo)
    elsewhere = (monorepo.parent.parent / "elsewhere" / "app").resolve()
    assert msg.startswith("acr-publish:images[0].context '../../elsewhere/app' is invalid: "
                          f"it resolves to {elsewhere}, outside the repository that holds the project "
                          f"({monorepo.parent.resolve()})"), msg
    assert "through a symlink" not in msg and "point it at a directory inside" in msg


def test_a_context_symlink_to_etc_is_refused_before_anything_is_walked(monorepo):
    (monorepo / "some_link").symlink_to("/etc")
    msg = only([{"name": "web", "context": "some_link"}], root=monorepo)
    assert "context 'some_link' is invalid: it resolves to /etc, outside the repository" in msg
    assert "through a symlink on the way" in msg and "move what the build needs into the repository" in msg


def test_a_link_on_the_way_counts_too(monorepo):
    (monorepo / "vendor").symlink_to(monorepo.parent.parent / "elsewhere")
    assert "through a symlink on the way" in only([{"name": "web", "context": "vendor/app"}], root=monorepo)


def test_a_dockerfile_outside_the_repository_is_refused(monorepo):
    rel = os.path.relpath("/etc/passwd", monorepo)
    msg = only([{"name": "web", "context": "app", "dockerfile": rel}], root=monorepo)
    assert msg.startswith(f"acr-publish:images[0].dockerfile {rel!r} is invalid: it resolves to /etc/passwd, "
                          "outside the repository"), msg
    assert "the build would read files from elsewhere" in msg


def test_a_default_dockerfile_linked_out_of_the_repository_is_refused(monorepo):
    (monorepo / "app" / "Dockerfile").unlink()
    (monorepo / "app" / "Dockerfile").symlink_to("/etc/passwd")
    msg = only([{"name": "web", "context": "app"}], root=monorepo)
    assert "dockerfile is unset and the default 'app/Dockerfile' is invalid: it resolves to /etc/passwd" in msg


def test_links_that_stay_inside_the_repository_are_fine(monorepo):
    (monorepo / "current").symlink_to(monorepo.parent / "shared" / "app")
    (monorepo / "app" / "Dockerfile.link").symlink_to("../../shared/app/Dockerfile")
    assert problems_of([{"name": "web", "context": "current", "dockerfile": "app/Dockerfile.link"}],
                       root=monorepo) == []


@pytest.mark.timeout(30)
def test_a_symlink_loop_is_a_message(monorepo):
    (monorepo / "loop").symlink_to(monorepo / "loop")
    assert "a symlink on the way loops" in only([{"name": "web", "context": "loop"}], root=monorepo)


@pytest.mark.timeout(30)
def test_a_fifo_dockerfile_is_refused_without_opening_it(monorepo):
    os.mkfifo(monorepo / "app" / "Dockerfile.fifo")
    msg = only([{"name": "web", "context": "app", "dockerfile": "app/Dockerfile.fifo", "target": "web"}],
               root=monorepo)
    assert "is not a regular file, and it must be a regular file" in msg


def test_a_directory_is_not_a_dockerfile_and_a_file_is_not_a_context(monorepo):
    found = problems_of([{"name": "web", "context": "app/Dockerfile", "dockerfile": "app"}], root=monorepo)
    assert any("context 'app/Dockerfile' is invalid:" in p and "must be a directory" in p for p in found), found
    assert any("dockerfile 'app' is invalid:" in p and "is a directory" in p for p in found), found


def test_the_program_refuses_an_escape_before_declaring_anything(preflight_calls):
    records: list = []
    images = [{"name": "web", "context": os.path.relpath("/etc", PROJECT_ROOT), "target": "web"}]
    with pytest.raises(ConfigError, match="outside the repository that holds the project") as err:
        run_stack("local", {"acr-publish:images": images}, records=records)
    assert isinstance(err.value, pulumi.RunError)
    assert records == [] and not preflight_calls


# --- item 5: over-long names, broken stack files: a message, never a traceback -------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("key", ["context", "dockerfile"])
def test_a_path_component_over_255_bytes_is_a_rule_not_an_oserror(key):
    long = "a" * 300
    image = {"name": "web", "context": "app", key: f"app/{long}"}
    msg = only([image])
    assert f"acr-publish:images[0].{key} " in msg and "is 300 bytes, and a file name is at most 255 bytes" in msg
    assert len(msg) < 1000, "the over-long value is shown shortened"


@pytest.mark.timeout(30)
def test_multibyte_names_are_measured_in_bytes():
    assert "is 258 bytes" in only([{"name": "web", "context": "é" * 129}])


@pytest.mark.timeout(30)
def test_a_path_over_path_max_is_a_rule():
    assert "and a path is at most 4096 bytes" in only([{"name": "web", "context": "/".join(["a" * 200] * 30)}])


@pytest.mark.parametrize("bad,rule", [("app\0x", "NUL character"), ("app/\ud800", "unpaired surrogate")])
def test_unrepresentable_paths_are_rules(bad, rule):
    assert rule in only([{"name": "web", "context": bad}])


def test_undecodable_and_control_characters_in_paths_are_shown_escaped():
    msg = only([{"name": "web", "context": "app/\udc80\x1b[2J"}])
    assert msg.encode("utf-8") and "\x1b" not in msg and "\\udc80\\x1b[2J" in msg, msg


def test_the_program_reports_a_long_component_as_a_config_error(preflight_calls):
    with pytest.raises(ConfigError, match="is 300 bytes, and a file name is at most 255 bytes") as err:
        run_stack("local", {"acr-publish:images": [{"name": "web", "context": "a" * 300}]})
    assert isinstance(err.value, pulumi.RunError), "the engine would print a traceback for a plain exception"


def project_copy(tmp_path: Path) -> Path:
    """A copy of the project (program, components, engine, CLIs, app, stacks) to put broken stack files into."""
    root = tmp_path / "project"
    subprocess.run(["cp", "-r", *(str(PROJECT_ROOT / p) for p in (*PROGRAM_FILES, "stacks")),
                    str(root.mkdir() or root)], check=True)
    return root


BROKEN_STACK_FILES = {
    "unclosed": ("config:\n  acr-publish:images: [unclosed\n", "is not valid YAML at line 3, column 1"),
    "tab": ("config:\n\tacr-publish:registry: {}\n", "is not valid YAML at line 2, column 1"),
    "list": ("- config\n- 5\n", "holds a YAML list, and a stack file is a map with a config: key"),
    "scalar": ("just text\n", "holds a YAML str, and a stack file is a map"),
    "config5": ("config: 5\n", "config 5 in "),
    "configlist": ("config: [a, b]\n", "config ['a', 'b'] in "),
    "intkey": ("config:\n  5: x\n  acr-publish:registry: {edition: local}\n", "config key 5 in "),
    "date": ("config:\n  when: 2024-13-45\n", "holds a value YAML cannot build"),
    "alias": ("config:\n  x: *nope\n", "found undefined alias"),
    "nested": ("config:\n  x: " + "[" * 20000 + "]" * 20000 + "\n", "nests values deeper than any stack needs"),
}


def write_stack(root: Path, name: str, text: str | bytes) -> None:
    target = root / "stacks" / f"Pulumi.{name}.yaml"
    target.write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(BROKEN_STACK_FILES))
def test_a_broken_stack_file_is_a_config_error(tmp_path, name):
    root = project_copy(tmp_path)
    text, expected = BROKEN_STACK_FILES[name]
    write_stack(root, name, text)
    with pytest.raises(ConfigError) as err:
        load_stack_file(name, root)
    assert expected in str(err.value), str(err.value)
    assert str(root / "stacks" / f"Pulumi.{name}.yaml") in str(err.value)


@pytest.mark.timeout(60)
def test_a_stack_file_that_is_not_utf8_or_too_large(tmp_path):
    root = project_copy(tmp_path)
    write_stack(root, "latin1", b"config:\n  acr-publish:registry: {edition: caf\xe9}\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 45 is 0xe9\); save it as UTF-8"):
        load_stack_file("latin1", root)
    write_stack(root, "huge", b"# " + b"x" * (2 << 20) + b"\n")
    with pytest.raises(ConfigError, match="is over 1024 KiB"):
        load_stack_file("huge", root)


def make_odd_stack_files(root: Path) -> dict[str, str]:
    """Stack files that are no regular file (a directory, a FIFO, a link to /dev/zero), a dangling link, and one
    with a key given twice; each with what its error must say."""
    stacks = root / "stacks"
    (stacks / "Pulumi.adir.yaml").mkdir()
    os.mkfifo(stacks / "Pulumi.afifo.yaml")  # opened, it would block until a writer came
    (stacks / "Pulumi.zero.yaml").symlink_to("/dev/zero")
    (stacks / "Pulumi.dangling.yaml").symlink_to(root / "nowhere.yaml")
    (stacks / "Pulumi.dup.yaml").write_text(
        "config:\n  acr-publish:preflight: true\n  acr-publish:registry: {edition: local}\n"
        "  acr-publish:preflight: false\n")
    return {"adir": "is a directory, not a regular file", "afifo": "is a FIFO (named pipe), not a regular file",
            "zero": "is a character device, not a regular file", "dangling": "(a link to nothing)",
            "dup": "is not valid YAML at line 4, column 3: the key 'acr-publish:preflight' is given twice (first at "
                   "line 2, column 3); keep one"}


@pytest.mark.timeout(60)
def test_a_stack_file_that_is_no_regular_file_or_repeats_a_key_says_so(tmp_path):
    root = project_copy(tmp_path)
    for name, expected in make_odd_stack_files(root).items():
        with pytest.raises(ConfigError) as err:
            load_stack_file(name, root)
        assert expected in str(err.value), str(err.value)
        assert "no stack file" not in str(err.value) or name == "dangling", str(err.value)
    with pytest.raises(ConfigError) as err:
        load_stack_file("nosuch", root)
    known = str(err.value).split("known stacks are ", 1)[1]
    assert "dup" in known.split(", ") and not {"adir", "afifo", "zero", "dangling"} & set(known.split(", ")), known


def test_merge_keys_may_still_be_overridden(tmp_path):
    root = project_copy(tmp_path)
    write_stack(root, "merged", "base: &base {edition: local, server: '127.0.0.1:5000'}\nconfig:\n"
                "  acr-publish:registry: {<<: *base, server: '127.0.0.1:5001'}\n"
                "  acr-publish:images: [{name: web, context: app, target: web}]\n")
    assert load_stack_file("merged", root).registry.server == "127.0.0.1:5001"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("tool", ["ram", "explain"])
def test_the_clis_say_what_an_odd_stack_file_is(tmp_path, tool):
    root = project_copy(tmp_path)
    for stack, expected in make_odd_stack_files(root).items():
        args = ("cli.ram", stack) if tool == "ram" else ("cli.explain", "--stack", stack, "--image", "web")
        proc = cli(root, *args)
        err = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode == 2 and "Traceback" not in err and expected in err, (stack, err)


def shipped_stack_with(tmp_path: Path, stack: str, extra: str) -> ConfigError:
    """The ConfigError load_stack_file raises for a copy of a shipped stack file with `extra` added to its config.

    `extra` goes right after the `config:` line: a stack file may end with other top-level keys (the
    `encryptionsalt:` line Pulumi adds on the first `pulumi up`)."""
    root = project_copy(tmp_path)
    text = (root / "stacks" / f"Pulumi.{stack}.yaml").read_text()
    assert "\nconfig:\n" in "\n" + text, f"stacks/Pulumi.{stack}.yaml has no `config:` line"
    head, tail = ("\n" + text).split("\nconfig:\n", 1)
    write_stack(root, "changed", head.lstrip("\n") + "\nconfig:\n" + extra + tail)
    with pytest.raises(ConfigError) as err:
        load_stack_file("changed", root)
    return err.value


def test_a_plaintext_password_in_a_stack_file_is_refused(tmp_path):
    err = shipped_stack_with(tmp_path, "personal-example", "  acr-publish:registryPassword: hunter2-plaintext\n")
    assert "registryPassword is stored in plain text" in str(err) and "hunter2" not in str(err)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("stack,expected", [
    ("x" * 10_000, "(10000 characters, Pulumi's rule is 1-100 characters of A-Z a-z 0-9 _ . -)"),
    ("dev\x1b[31m", r"stack name 'dev\x1b[31m' is invalid"),
    ("../../etc/passwd", "give the stack's own name, e.g. 'passwd'"),
    ("acme/acr-publish/dev", "give the stack's own name, e.g. 'dev'"),
    ("", "is invalid"),
])
def test_stack_names_follow_pulumis_rule_before_any_file_is_touched(stack, expected):
    with pytest.raises(ConfigError) as err:
        load_stack_file(stack)
    message = str(err.value)
    assert expected in message and "\x1b" not in message and len(message) < 2000, message


@pytest.mark.timeout(60)
def test_thousands_of_bad_entries_are_reported_in_bounded_time_and_length(tmp_path):
    root = project_copy(tmp_path)
    entry = "{" + ", ".join(f"k{i}: 1" for i in range(200)) + "}"
    write_stack(root, "many", f"config:\n  acr-publish:registry: {{edition: local}}\n  acr-publish:x: &e {entry}\n"
                + "  acr-publish:images: [" + ", ".join(["*e"] * 5000) + "]\n")
    with pytest.raises(ConfigError) as err:
        load_stack_file("many", root)
    # Collection stops once PROBLEMS_MAX are found (an entry in progress may add a few more); the message lists
    # PROBLEMS_MAX and says how many more there are.
    assert len(err.value.problems) < 2 * PROBLEMS_MAX
    assert str(err.value).count("\n") <= PROBLEMS_MAX + 2 and "more; fix these first" in str(err.value)


# --- the CLIs read stack files through load_stack_file: exit 2 with the message, no traceback -----------------------

def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=root, capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})


CLI_CASES = ["unclosed", "list", "config5", "nested"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("tool", ["ram", "explain"])
def test_the_clis_print_stack_file_problems_without_a_traceback(tmp_path, tool):
    root = project_copy(tmp_path)
    for name in CLI_CASES:
        write_stack(root, name, BROKEN_STACK_FILES[name][0])
    long_component = (root / "stacks" / "Pulumi.local.yaml").read_text().replace("context: app", "context: " + "a" * 300)
    write_stack(root, "longpath", long_component)
    cases = {**{n: BROKEN_STACK_FILES[n][1] for n in CLI_CASES}, "longpath": "is 300 bytes",
             "x" * 10_000: "Pulumi's rule is 1-100", "dev\x1b]0;owned\x07": r"'dev\x1b]0;owned\x07' is invalid"}
    for stack, expected in cases.items():
        args = ("cli.ram", stack) if tool == "ram" else ("cli.explain", "--stack", stack,
                                                                "--image", "web")
        proc = cli(root, *args)
        err = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode == 2, (stack[:40], err)
        assert err.startswith("error: ") and "Traceback" not in err and expected in err, (stack[:40], err)
        assert b"\x1b" not in proc.stderr and b"\x07" not in proc.stderr, "control characters reached the terminal"


# --- item 6: ACR's registry password length, never the value ------------------------------------------------------

PERSONAL = {"edition": "personal", "namespace": "acme", "username": "deployer"}


@pytest.mark.parametrize("length,ok", [(3, False), (7, False), (8, True), (32, True), (33, False)])
def test_personal_passwords_are_8_to_32_characters(length, ok):
    found = problems_of([{"name": "web", "context": "app", "target": "web"}], registry=PERSONAL, has_password=True,
                        password_length=length)
    if ok:
        assert found == []
    else:
        side = "shorter" if length < 8 else "longer"
        assert found == [
            f"acr-publish:registryPassword (a secret, not shown) is invalid: it is {side} than ACR allows, and "
            "registry login passwords are 8-32 characters; set the password from Container Registry console > "
            "Access Credential with `pulumi config set --secret acr-publish:registryPassword <password> -s dev`"
        ]
        assert str(length) not in found[0].replace("8-32", ""), "the message must not reveal the length"


@pytest.mark.parametrize("length,ok", [(1, False), (3, False), (4, True), (128, True), (129, False), (200, False),
                                       (131_072, False)])
def test_local_registry_passwords_are_within_what_the_scrubber_masks(length, ok):
    """The scrubber leaves shorter strings alone (they would mangle ordinary words), so a 1-3 character password
    could be shown; and it builds its masks per character, so an endless one is refused too (the registry's
    htpasswd login reads 72 bytes of it anyway)."""
    found = problems_of([{"name": "web", "context": "app", "target": "web"}],
                        registry={"edition": "local", "username": "dev"}, has_password=True, password_length=length)
    if ok:
        assert found == []
    else:
        side = "shorter" if length < 4 else "longer"
        assert found == [
            f"acr-publish:registryPassword (a secret, not shown) is invalid: it is {side} than allowed; passwords "
            "here are 4-128 characters (shorter ones cannot be kept out of messages, and a registry's htpasswd "
            "login reads only the first 72 bytes); set one on the local registry and with "
            "`pulumi config set --secret acr-publish:registryPassword <password> -s dev`"
        ]


def test_the_local_password_rule_is_the_scrubbers_bound():
    from components.registry_client import MIN_SCRUB_LEN, Scrubber
    from components.config.registry_rules import LOCAL_PASSWORD_MIN

    assert LOCAL_PASSWORD_MIN == MIN_SCRUB_LEN
    scrub = Scrubber()
    scrub.add("w" * LOCAL_PASSWORD_MIN)
    assert scrub("login wwww refused") == "login *** refused"


def test_the_program_measures_the_decrypted_password(monkeypatch, preflight_calls):
    monkeypatch.setattr(harness, "TEST_SECRET", "abc")
    with pytest.raises(ConfigError) as err:
        run_stack("personal-example")
    assert err.value.problems == [
        "acr-publish:registryPassword (a secret, not shown) is invalid: it is shorter than ACR allows, and registry "
        "login passwords are 8-32 characters; set the password from Container Registry console > Access Credential "
        "with `pulumi config set --secret acr-publish:registryPassword <password> -s personal-example`"
    ]
    assert "abc" not in str(err.value) and not preflight_calls


# --- item 7: nothing accepted silently ---------------------------------------------------------------------------

WEB = {"name": "web", "context": "app", "target": "web"}


@pytest.mark.parametrize("server,rule", [
    ("127.0.0.1:99999", "the port 99999 is out of range: ports are 1-65535"),
    ("127.0.0.1:0", "the port 0 is out of range: ports are 1-65535"),
    ("127.0.0.1:", "the port '' is not a number"),
    ("127.0.0.1:5k", "the port '5k' is not a number"),
    ("reg_istry:5000", "the host must be a name or address"),
    ("-registry", "the host must be a name or address"),
    ("a..b", "the host must be a name or address"),
    ("::1", "an IPv6 address must be written in brackets"),
    ("[::1", "must be closed by ']'"),
    ("[nope]:5000", "is not an IPv6 address"),
    ("[::1]x", "only ':port' may follow"),
    ("http://127.0.0.1:5000", "without a scheme or path"),
])
def test_local_server_is_host_and_a_usable_port(server, rule):
    msg = only([WEB], registry={"edition": "local", "server": server})
    assert msg.startswith(f"acr-publish:registry.server {server!r} is invalid: ") and rule in msg, msg
    assert msg.count("e.g.") == 1 and ":80" not in msg


@pytest.mark.parametrize("server", ["127.0.0.1:5000", "localhost", "[::1]:5000", "registry.local:443", "10.0.0.1"])
def test_valid_local_servers(server):
    assert problems_of([WEB], registry={"edition": "local", "server": server}) == []


def test_a_bad_port_is_refused_with_the_preflight_off(preflight_calls):
    records: list = []
    with pytest.raises(ConfigError, match="port 99999 is out of range"):
        run_stack("local", {"acr-publish:registry": {"edition": "local", "server": "127.0.0.1:99999"},
                            "acr-publish:preflight": False}, records=records)
    assert records == [] and not preflight_calls


@pytest.mark.parametrize("key,registry,fix", [
    ("server", {"edition": "local"}, "remove the key to use the default 127.0.0.1:5000"),
    ("namespace", {"edition": "local"}, "remove the key to push to <server>/<image> without a namespace"),
    ("namespace", EE, "name the namespace, e.g. namespace: acme"),
    ("username", {"edition": "local"}, "give the registry login user"),
    ("instanceId", EE, "copy the instance id"),
])
@pytest.mark.parametrize("empty", ["", "  "])
def test_empty_registry_strings_are_refused_not_defaults(key, registry, fix, empty):
    found = problems_of([WEB], registry={**registry, key: empty})
    mine = [p for p in found if p.startswith(f"acr-publish:registry.{key} ")]
    assert mine == [p for p in mine if f"{empty!r} is invalid: it is empty; {fix}" in p] and len(mine) == 1, found


@pytest.mark.parametrize("key,fix", [
    ("platform", "remove the key to build for linux/amd64"),
    ("target", "remove the key to build the last stage"),
    ("summary", "remove the key to use 'web image'"),
    ("name", "it is the repository name"),
])
def test_empty_image_strings_are_refused_not_defaults(key, fix):
    assert only([{**WEB, key: ""}]).startswith(f"acr-publish:images[0].{key} '' is invalid: it is empty; {fix}")


@pytest.mark.parametrize("value", ["", 0, False, {}])
def test_allow_sensitive_must_be_a_list_even_when_falsy(value):
    msg = only([{**WEB, "allowSensitive": value}])
    assert msg.startswith(f"acr-publish:images[0].allowSensitive {value!r} is invalid: it must be a list"), msg
    assert "write [] or remove the key to allow nothing" in msg


def test_an_empty_allow_sensitive_list_is_fine():
    assert problems_of([{**WEB, "allowSensitive": []}]) == []


@pytest.mark.parametrize("platform", sorted(docker_rules.GO_PLATFORMS) + [
    "linux/x86_64", "linux/aarch64", "linux/i386", "linux/armhf", "linux/armel", "macos/arm64", "linux/arm/v7",
    "linux/arm/v6", "linux/arm64/v8", "linux/arm64/v9.2", "linux/amd64/v3",
])
def test_every_platform_docker_knows_is_accepted(platform):
    assert docker_rules.platform_problem(platform) is None


@pytest.mark.parametrize("platform,rule", [
    ("foo/bar", "Docker knows no operating system 'foo'"),
    ("linux/bar", "Docker cannot build linux for architecture 'bar'"),
    ("darwin/s390x", "Docker cannot build darwin for architecture 's390x'"),
    ("linux/sparc64", "Docker cannot build linux for architecture 'sparc64'"),
    ("linux/arm/v9", "'v9' is not a variant of arm"),
    ("linux/amd64/v5", "'v5' is not a variant of amd64"),
    ("linux/386/v2", "architecture 386 has no variants in Docker"),
    ("linux/armhf/v6", "'armhf' already means arm/v7"),
    ("linux", "it must be os/arch[/variant]"),
    ("Linux/amd64", "it must be os/arch[/variant] in lowercase"),
    ("linux/amd64/", "it must be os/arch[/variant]"),
])
def test_unknown_platforms_are_refused(platform, rule):
    msg = only([{**WEB, "platform": platform}])
    assert msg.startswith(f"acr-publish:images[0].platform {platform!r} is invalid: {rule}"), msg


# Dockerfiles whose stages BuildKit reads differently from a naive line scan (tests/e2e/test_target_stages.py runs
# the same cases through the real engine).
STAGE_CASES = {
    "continued": ("FROM scratch \\\n  AS \\\n  web\nCOPY f /f\n", ["web"]),
    "comment-inside": ("FROM scratch \\\n# a comment between\n  as web\nCOPY f /f\n", ["web"]),
    "escape-directive": ("# escape=`\nFROM scratch `\n  AS web\nCOPY f /f\n", ["web"]),
    "heredoc": ("FROM scratch AS real\nCOPY <<EOF /x\nFROM scratch AS fake\nEOF\n", ["real"]),
    "mixed-case": ("from scratch As Web\nCOPY f /f\n", ["Web"]),
    "commented-out": ("# FROM scratch AS old\nFROM scratch AS new\nCOPY f /f\n", ["new"]),
    "platform-flag": ("FROM --platform=linux/amd64 scratch AS web\nCOPY f /f\n", ["web"]),
}


@pytest.mark.parametrize("case", sorted(STAGE_CASES))
def test_build_stages_are_read_as_buildkit_reads_them(tmp_path, case):
    text, stages = STAGE_CASES[case]
    assert docker_rules.build_stages(write(tmp_path / "Dockerfile", text)) == stages


def stage_project(tmp_path: Path, text: str) -> Path:
    write(tmp_path / "app" / "Dockerfile", text)
    return tmp_path


def test_a_missing_target_stage_is_refused_with_the_stages_named(tmp_path):
    root = stage_project(tmp_path, "FROM scratch AS base\nFROM base AS web\nFROM base AS worker\n")
    msg = only([{**WEB, "target": "wrker"}], root=root)
    assert msg == ("acr-publish:images[0].target 'wrker' is invalid: app/Dockerfile has no stage 'wrker' (its stages: "
                   "base, web, worker); did you mean 'worker'?")
    assert problems_of([{**WEB, "target": "WORKER"}], root=root) == [], "BuildKit matches stages case-insensitively"


def test_a_dockerfile_with_no_named_stage(tmp_path):
    root = stage_project(tmp_path, "FROM scratch\nCOPY f /f\n")
    assert "names no build stage (no `FROM ... AS <name>` line); add `AS web` to a FROM line or remove target" in only(
        [WEB], root=root)


def test_a_stage_index_is_not_a_target():
    assert "must be a build stage name (a letter, then" in only([{**WEB, "target": "0"}])


def test_an_unparseable_dockerfile_is_reported_when_a_target_needs_its_stages(tmp_path):
    root = stage_project(tmp_path, "FROM scratch AS web\nRUN <<EOF\nno end\n")
    msg = only([WEB], root=root)
    assert msg.startswith("acr-publish:images[0].target 'web' is invalid: it cannot be checked: the Dockerfile "
                          "'app/Dockerfile' BuildKit's parser refuses it (unterminated heredoc)"), msg
    assert problems_of([{k: v for k, v in WEB.items() if k != "target"}], root=root) == [], \
        "without a target the Dockerfile is left to the engine"


def test_an_unreadable_dockerfile_is_reported_when_a_target_needs_its_stages(tmp_path, monkeypatch):
    """As root every file is readable, so the read fails by injection: the message is what a user without the
    permission would see."""
    root = stage_project(tmp_path, DOCKERFILE)
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "Dockerfile":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert "it cannot be checked: the Dockerfile 'app/Dockerfile' it cannot be read (Permission denied)" in only(
        [WEB], root=root)


@pytest.mark.timeout(60)
def test_a_huge_dockerfile_is_parsed_in_bounded_time(tmp_path):
    root = stage_project(tmp_path, "".join(f"FROM scratch AS s{i}\nCOPY f /f{i}\n" for i in range(20_000)))
    msg = only([{**WEB, "target": "nope"}], root=root)
    assert "(its stages: s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 and 19990 more)" in msg


def test_every_silent_acceptance_is_reported_at_once(tmp_path):
    found = problems_of(
        [{"name": "web", "context": "app", "target": "nosuchstage", "platform": "foo/bar", "allowSensitive": ""},
         {"name": "api", "context": "app", "target": "web", "platform": ""}],
        registry={"edition": "local", "server": "127.0.0.1:0", "namespace": ""})
    keys = sorted(p.split(" ", 1)[0] for p in found)
    assert keys == ["acr-publish:images[0].allowSensitive", "acr-publish:images[0].platform",
                    "acr-publish:images[0].target", "acr-publish:images[1].platform",
                    "acr-publish:registry.namespace", "acr-publish:registry.server"], found


# --- also: key names, one line per key, escaped stack names -------------------------------------------------------

def test_an_unknown_top_level_key_is_named_with_the_project_colon():
    assert "acr-publish:imagez is not a known setting: did you mean 'images'?" in problems_of(
        [WEB], top={"imagez": []})


def test_a_misspelled_project_namespace_is_not_ignored(tmp_path):
    assert shipped_stack_with(tmp_path, "local", "  acr-publsh:preflight: false\n").problems == ["acr-publsh:preflight is not a known setting: its namespace is not 'acr-publish'; "
                                  "did you mean 'acr-publish:preflight'?"]


@pytest.mark.parametrize("key,registry,image", [
    ("acr-publish:images[0].name", EE, {"name": 5}),
    ("acr-publish:registry.instanceId", {**EE, "instanceId": 5}, {}),
    ("acr-publish:registry.namespace", {**EE, "namespace": 5}, {}),
    ("acr-publish:registry.username", {**PERSONAL, "username": 5}, {}),
    ("acr-publish:registry.edition", {**EE, "edition": 5}, {}),
    ("acr-publish:images[0].context", EE, {"context": 5}),
])
def test_a_wrong_type_is_one_line_not_also_missing(key, registry, image):
    found = problems_of([{**WEB, **image}], registry=registry, has_password=True)
    assert len([p for p in found if p.startswith(key + " ")]) == 1, found
    assert not any(f"{key} is missing" in p for p in found), found


def test_config_errors_escape_control_characters_of_the_stack_name():
    with pytest.raises(ConfigError) as err:
        settings_from_values("dev\x1b[2J", {"registry": LOCAL}, region=None, has_password=False)
    assert "\x1b" not in str(err.value) and r"stack 'dev\x1b[2J'" in str(err.value)


def test_a_source_password_shorter_than_the_scrubbers_bound_is_refused(monkeypatch, preflight_calls):
    """sourcePassword goes into registry messages' scrubber like registryPassword: a 1-3 character one could be
    shown, so it is refused by the same bound, measured on the decrypted value and never printed."""
    monkeypatch.setattr(harness, "TEST_SECRET", "abc")
    with pytest.raises(ConfigError) as err:
        run_stack("local-release", {"acr-publish:sourceUsername": "u", "acr-publish:sourcePassword": {"secure": "x"}})
    assert any(p.startswith("acr-publish:sourcePassword (a secret, not shown) is invalid: it is shorter than "
                            "allowed; passwords here are 4-128 characters")
               for p in err.value.problems), err.value.problems
    assert "abc" not in str(err.value) and not preflight_calls
