"""Stack files read without the engine (load_stack_file, used by the CLIs): the shipped ones are valid, and every way
a file can be broken (not YAML, not UTF-8, too large, a FIFO, a repeated key, a bad stack name) is a ConfigError
naming the file, which the CLIs print without a traceback.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from components.config.problems import PROBLEMS_MAX, ConfigError
from components.config.schema import Settings
from components.config.stackfile import load_stack_file
from tests.harness import PROGRAM_FILES, PROJECT_ROOT, STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_stack_files_are_valid(stack):
    assert isinstance(load_stack_file(stack), Settings)


def test_the_classic_example_leaves_its_password_to_the_user():
    """No placeholder ciphertext (it could never decrypt): until the user sets it, the message says how."""
    with pytest.raises(ConfigError) as err:
        load_stack_file("personal-example", secrets_set=False)
    assert err.value.problems == [
        "acr-publish:registryPassword is missing: edition personal needs the registry login password; set it with "
        "`pulumi config set --secret acr-publish:registryPassword <password> -s personal-example`"
    ]


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


def test_a_misspelled_project_namespace_is_not_ignored(tmp_path):
    assert shipped_stack_with(tmp_path, "local", "  acr-publsh:preflight: false\n").problems == ["acr-publsh:preflight is not a known setting: its namespace is not 'acr-publish'; "
                                  "did you mean 'acr-publish:preflight'?"]
