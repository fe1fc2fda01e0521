"""acr-publish:images of a stack that builds: each rule with its message (name, platform, target, build args,
allowSensitive, summary, audit); where contexts and Dockerfiles may point is tests/unit/config/test_config_paths.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from components import docker_rules
from components.config.schema import AuditSettings
from components.config.validate import settings_from_values
from tests.configcases import DOCKERFILE, EE, WEB, one, problems, write


@pytest.mark.parametrize("name", ["Web", "w", "web_-api", "-web", "x" * 31, "web/api"])
def test_repository_name_rule(name):
    msg = one(images=[{**WEB, "name": name}])
    assert f"acr-publish:images[0].name {name!r} is invalid: repository names are 2-30 chars" in msg and "try" in msg


def test_image_name_required():
    assert "acr-publish:images[0].name is missing" in one(images=[{"context": "app"}])


def test_unique_image_names():
    msg = one(images=[WEB, {**WEB}])
    assert "acr-publish:images[1].name 'web' is a duplicate of acr-publish:images[0].name" in msg


def test_images_required():
    assert "acr-publish:images is missing" in problems(images=None, values={"registry": EE, "images": None})[0]


def test_summary_length():
    msg = one(images=[{**WEB, "summary": "s" * 81}])
    assert "acr-publish:images[0].summary is 81 chars" in msg and "1-80" in msg


@pytest.mark.parametrize("platform", ["amd64", "linux", "Linux/AMD64", "linux/amd64/v8/x"])
def test_platform_format(platform):
    msg = one(images=[{**WEB, "platform": platform}])
    assert f"acr-publish:images[0].platform {platform!r} is invalid: it must be os/arch[/variant]" in msg


def test_platform_variant_is_accepted():
    assert problems(images=[{**WEB, "platform": "linux/arm64/v8"}]) == []


def test_context_must_exist():
    msg = one(images=[{**WEB, "context": "nope"}])
    assert "acr-publish:images[0].context 'nope' is invalid: no directory" in msg and "relative to the project root" in msg


def test_context_must_be_relative():
    assert "write it relative" in one(images=[{**WEB, "context": "/abs/app"}])


def test_context_required():
    assert "acr-publish:images[0].context is missing" in one(images=[{"name": "web"}])


def test_dockerfile_must_exist():
    msg = one(images=[{**WEB, "dockerfile": "app/Dockerfile.nope"}])
    assert "acr-publish:images[0].dockerfile 'app/Dockerfile.nope' is invalid: no file" in msg


def test_default_dockerfile_must_exist():
    msg = one(images=[{**WEB, "context": "app/www"}])
    assert "acr-publish:images[0].dockerfile is unset and the default 'app/www/Dockerfile' does not exist" in msg


def test_build_args_are_strings_and_their_values_are_never_printed():
    msg = one(images=[{**WEB, "buildArgs": {"API_TOKEN": 918273645}}])
    assert "acr-publish:images[0].buildArgs.API_TOKEN is a int, not a string: build args are strings; quote" in msg
    assert "918273645" not in msg, "a build arg value (possibly a secret) reached the message"


def test_build_args_must_be_a_map():
    msg = one(images=[{**WEB, "buildArgs": ["SECRET=abc123"]}])
    assert "acr-publish:images[0].buildArgs is a list, not a map" in msg and "abc123" not in msg


def test_build_arg_names():
    assert "buildArgs key '1X' is invalid" in one(images=[{**WEB, "buildArgs": {"1X": "a"}}])


def test_target_name():
    assert "acr-publish:images[0].target 'no stage' is invalid" in one(images=[{**WEB, "target": "no stage"}])


def test_tag_immutability_only_with_enterprise():
    msg = one(registry={"edition": "local"}, images=[{**WEB, "tagImmutability": True}])
    assert "acr-publish:images[0].tagImmutability True is not used by edition 'local'" in msg


@pytest.mark.parametrize("bad,rule", [
    ("..", "it points outside the build context"),
    ("../etc", "it points outside the build context"),
    ("www/../..", "it points outside the build context"),
    (".", "it names the whole build context"),
    ("./", "it names the whole build context"),
    ("/etc/passwd", "it is an absolute path"),
    ("", "it must be a non-empty path"),
    ("  ", "it must be a non-empty path"),
])
def test_allow_sensitive_entries_are_checked_like_the_guard_does(bad, rule):
    msg = one(images=[{**WEB, "allowSensitive": ["www/.env", bad]}])
    assert msg.startswith(f"acr-publish:images[0].allowSensitive[1] {bad!r} is invalid: {rule}"), msg
    assert "; " in msg.split(rule, 1)[1], f"no fix given: {msg}"


@pytest.mark.parametrize("entry,rule", [
    ("buildArg:APP_ENV\n", "it holds a control character"),
    ("www/.env\n", "it holds a control character"),
    ("www/\x1b[31m.env", "it holds a control character"),
    ("www/.env\t", "it holds a control character"),
    ("buildArg: APP_ENV", "must name a build arg (letters, digits and _, not starting with a digit); write the "
                          "buildArgs key, e.g. 'buildArg:APP_ENV'"),
    ("buildArg:APP_ENV ", "must name a build arg"),
    (" buildArg:APP_ENV", "build-arg entries are spelled 'buildArg:' exactly; write 'buildArg:APP_ENV'"),
])
def test_allow_sensitive_entries_are_judged_as_written(entry, rule):
    """Nothing is stripped before the rules judge an entry: a newline, ESC or a space around a build arg name is
    refused with the fix, never accepted as another entry."""
    image = {**WEB, "buildArgs": {"APP_ENV": "prod"}, "allowSensitive": [entry]}
    msg = one(images=[image])
    assert msg.startswith(f"acr-publish:images[0].allowSensitive[0] {entry!r} is invalid: "), msg
    assert rule in msg, msg
    audit = one(images=[{**WEB, "audit": {"allowSensitive": ["etc/ok", "etc/\x1b]0;x\x07key"]}}])
    assert "acr-publish:images[0].audit.allowSensitive[1] 'etc/\\x1b]0;x\\x07key' is invalid: it holds a control " \
           "character" in audit, audit


def test_allow_sensitive_absolute_path_suggests_the_relative_one():
    assert "try 'www/.env'" in one(images=[{**WEB, "allowSensitive": ["/www/.env"]}])


def test_allow_sensitive_must_be_a_list_of_strings():
    assert "acr-publish:images[0].allowSensitive 'www/.env' is invalid: it must be a list" in one(
        images=[{**WEB, "allowSensitive": "www/.env"}])
    assert "acr-publish:images[0].allowSensitive[0] 3 is invalid: it must be a non-empty path" in one(
        images=[{**WEB, "allowSensitive": [3]}])


def test_valid_allow_sensitive_entries_are_kept():
    s = settings_from_values("dev", {"registry": EE, "images": [{**WEB, "allowSensitive": ["www/.env", "./keys/"]}]},
                             region="cn-hangzhou", has_password=False)
    assert s.images[0].allow_sensitive == ("www/.env", "./keys/")


def test_audit_defaults_report_only_except_sensitive_in_prod():
    dev = settings_from_values("dev", {"registry": EE, "images": [WEB]}, region="cn-hangzhou", has_password=False)
    assert dev.images[0].audit == AuditSettings(None, None, False, ())
    prod = settings_from_values("prod-eu", {"registry": EE, "images": [WEB]}, region="cn-hangzhou",
                                has_password=False)
    assert prod.images[0].audit.fail_on_sensitive is True


def test_audit_values_are_read():
    image = {**WEB, "audit": {"maxWastedBytes": 1048576, "maxWastedPercent": 12.5, "failOnSensitive": False,
                              "allowSensitive": ["/etc/ssl/private/", "./srv/key.pem"]}}
    s = settings_from_values("prod", {"registry": EE, "images": [image]}, region="cn-hangzhou", has_password=False)
    assert s.images[0].audit == AuditSettings(1048576, 12.5, False, ("etc/ssl/private", "srv/key.pem"))


@pytest.mark.parametrize("audit,expected", [
    ("yes", "acr-publish:images[0].audit 'yes' is invalid: it must be a map"),
    ({"maxWastedBytes": -1}, "acr-publish:images[0].audit.maxWastedBytes -1 is invalid: it must be a whole number"),
    ({"maxWastedBytes": "10MB"}, "acr-publish:images[0].audit.maxWastedBytes '10MB' is invalid"),
    ({"maxWastedBytes": True}, "acr-publish:images[0].audit.maxWastedBytes True is invalid"),
    ({"maxWastedPercent": 101}, "acr-publish:images[0].audit.maxWastedPercent 101 is invalid: it must be a number "
                                "from 0 to 100"),
    ({"failOnSensitive": "no"}, "acr-publish:images[0].audit.failOnSensitive"),
    ({"allowSensitive": "etc"}, "acr-publish:images[0].audit.allowSensitive 'etc' is invalid: it must be a list"),
    ({"allowSensitive": ["../x"]}, "acr-publish:images[0].audit.allowSensitive[0] '../x' is invalid: it points "
                                   "outside the image"),
    ({"allowSensitive": ["buildArg:TOKEN"]}, "acr-publish:images[0].audit.allowSensitive[0] 'buildArg:TOKEN' is "
                                             "invalid: build args are not in an image's layers"),
    ({"maxWastedPercnt": 5}, "acr-publish:images[0].audit.maxWastedPercnt is not a known setting"),
])
def test_audit_rules(audit, expected):
    message = one(images=[{**WEB, "audit": audit}])
    assert message.startswith(expected), message


def test_a_promoting_stack_takes_audit_per_image():
    values = {"registry": EE, "promoteFrom": "staging",
              "images": [{"name": "web", "audit": {"allowSensitive": ["etc/ssl/private/snakeoil.key"]}}]}
    s = settings_from_values("prod", values, region="cn-hangzhou", has_password=False)
    assert s.promoted_images[0].audit == AuditSettings(None, None, True, ("etc/ssl/private/snakeoil.key",))
    bad = {**values, "images": [{"name": "web", "audit": {"maxWastedPercent": -3}}]}
    assert "acr-publish:images[0].audit.maxWastedPercent -3 is invalid" in one(bad, stack="prod")


@pytest.mark.parametrize("key,fix", [
    ("platform", "remove the key to build for linux/amd64"),
    ("target", "remove the key to build the last stage"),
    ("summary", "remove the key to use 'web image'"),
    ("name", "it is the repository name"),
])
def test_empty_image_strings_are_refused_not_defaults(key, fix):
    assert one(images=[{**WEB, key: ""}]).startswith(f"acr-publish:images[0].{key} '' is invalid: it is empty; {fix}")


@pytest.mark.parametrize("value", ["", 0, False, {}])
def test_allow_sensitive_must_be_a_list_even_when_falsy(value):
    msg = one(images=[{**WEB, "allowSensitive": value}])
    assert msg.startswith(f"acr-publish:images[0].allowSensitive {value!r} is invalid: it must be a list"), msg
    assert "write [] or remove the key to allow nothing" in msg


def test_an_empty_allow_sensitive_list_is_fine():
    assert problems(images=[{**WEB, "allowSensitive": []}]) == []


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
    msg = one(images=[{**WEB, "platform": platform}])
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
    msg = one(images=[{**WEB, "target": "wrker"}], root=root)
    assert msg == ("acr-publish:images[0].target 'wrker' is invalid: app/Dockerfile has no stage 'wrker' (its stages: "
                   "base, web, worker); did you mean 'worker'?")
    assert problems(images=[{**WEB, "target": "WORKER"}], root=root) == [], "BuildKit matches stages case-insensitively"


def test_a_dockerfile_with_no_named_stage(tmp_path):
    root = stage_project(tmp_path, "FROM scratch\nCOPY f /f\n")
    assert "names no build stage (no `FROM ... AS <name>` line); add `AS web` to a FROM line or remove target" in one(
        images=[WEB], root=root)


def test_a_stage_index_is_not_a_target():
    assert "must be a build stage name (a letter, then" in one(images=[{**WEB, "target": "0"}])


def test_an_unparseable_dockerfile_is_reported_when_a_target_needs_its_stages(tmp_path):
    root = stage_project(tmp_path, "FROM scratch AS web\nRUN <<EOF\nno end\n")
    msg = one(images=[WEB], root=root)
    assert msg.startswith("acr-publish:images[0].target 'web' is invalid: it cannot be checked: the Dockerfile "
                          "'app/Dockerfile' is refused by BuildKit's parser (unterminated heredoc)"), msg
    assert problems(images=[{k: v for k, v in WEB.items() if k != "target"}], root=root) == [], \
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
    assert "it cannot be checked: the Dockerfile 'app/Dockerfile' cannot be read (Permission denied)" in one(
        images=[WEB], root=root)


@pytest.mark.timeout(60)
def test_a_huge_dockerfile_is_parsed_in_bounded_time(tmp_path):
    root = stage_project(tmp_path, "".join(f"FROM scratch AS s{i}\nCOPY f /f{i}\n" for i in range(20_000)))
    msg = one(images=[{**WEB, "target": "nope"}], root=root)
    assert "(its stages: s0, s1, s2, s3, s4, s5, s6, s7, s8, s9 and 19990 more)" in msg


@pytest.mark.parametrize("given,normal", [
    ("linux/x86_64", "linux/amd64"), ("linux/x86-64", "linux/amd64"), ("linux/amd64/v1", "linux/amd64"),
    ("linux/aarch64", "linux/arm64"), ("linux/arm64/v8", "linux/arm64"), ("linux/aarch64/8", "linux/arm64"),
    ("linux/armhf", "linux/arm/v7"), ("linux/armel", "linux/arm/v6"),
    ("linux/arm", "linux/arm/v7"), ("linux/arm/6", "linux/arm/v6"), ("linux/i386", "linux/386"),
    ("macos/arm64", "darwin/arm64"),
    # already normal: unchanged, and so are the tags built from them
    ("linux/amd64", "linux/amd64"), ("linux/arm64", "linux/arm64"), ("linux/arm/v7", "linux/arm/v7"),
    ("linux/amd64/v3", "linux/amd64/v3"), ("linux/arm64/v8.2", "linux/arm64/v8.2"),
])
def test_the_platform_is_read_in_containerds_normal_form(given, normal):
    """As BuildKit reads --platform (containerd's platforms.Normalize): the plan, the tag, the build and the index
    all see one spelling, and TARGETARCH / TARGETVARIANT are BuildKit's."""
    one_platform = settings_from_values("dev", {"registry": EE, "images": [{**WEB, "platform": given}]},
                                        region="cn-hangzhou", has_password=False)
    assert one_platform.images[0].platform == normal
    listed = settings_from_values("dev", {"registry": EE, "images": [{**WEB, "platforms": ["linux/s390x", given]}]},
                                  region="cn-hangzhou", has_password=False)
    assert listed.images[0].platforms == ("linux/s390x", normal)
