"""Config values against their grammars: each grammar matches the whole value (a trailing newline is no match),
scalar values are the strings the stack file holds (only structured keys are JSON), and login users are users
HTTP Basic authentication can carry.
"""
from __future__ import annotations


import pytest

from cli import ram
from cli.audit import UsageError, parse_reference
from components.docker_rules import platform_problem
from registryclient.references import repository_path_problem, server_problem, tag_problem
from components.promotion_source import PromotionError, check_exports
from components.config.problems import ConfigError
from components.config.stackfile import load_stack_file
from components.config.validate import settings_from_values
from tests.configcases import EE, PERSONAL, WEB, problems
from tests.harness import PROJECT_ROOT

LOCAL = {"edition": "local", "server": "127.0.0.1:5000", "namespace": "demo"}
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("end", ["\n", "\r\n", "\n\n", " \n"])
@pytest.mark.parametrize("case", [
    "image name", "enterprise namespace", "classic namespace", "local namespace", "instanceId", "region",
    "build-arg name", "target", "host-only server", "server with port", "promoteFrom", "promoted image name",
])
def test_a_value_with_a_trailing_line_break_is_refused(case: str, end: str) -> None:
    kwargs: dict = {}
    if case == "image name":
        kwargs["images"] = [{**WEB, "name": "web" + end}]
    elif case == "enterprise namespace":
        kwargs["registry"] = {**EE, "namespace": "acme" + end}
    elif case == "classic namespace":
        kwargs.update(registry={**PERSONAL, "namespace": "acme" + end}, has_password=True)
    elif case == "local namespace":
        kwargs["registry"] = {**LOCAL, "namespace": "demo" + end}
    elif case == "instanceId":
        kwargs["registry"] = {**EE, "instanceId": "cri-0123456789abcdef" + end}
    elif case == "region":
        kwargs["region"] = "cn-hangzhou" + end
    elif case == "build-arg name":
        kwargs["images"] = [{**WEB, "buildArgs": {"APP_ENV" + end: "x"}}]
    elif case == "target":
        kwargs["images"] = [{**WEB, "target": "web" + end}]
    elif case == "host-only server":
        kwargs["registry"] = {**LOCAL, "server": "localhost" + end}
    elif case == "server with port":
        kwargs["registry"] = {**LOCAL, "server": "127.0.0.1:5000" + end}
    elif case == "promoteFrom":
        return _assert_refused(_promote_problems("dev" + end), case)
    elif case == "promoted image name":
        return _assert_refused(_promote_problems("dev", images=[{"name": "web" + end}]), case)
    _assert_refused(problems(**kwargs), case)


def _promote_problems(source: str, images=None) -> list[str]:
    values: dict = {"registry": EE, "promoteFrom": source}
    if images is not None:
        values["images"] = images
    try:
        settings_from_values("staging", values, region="cn-hangzhou", has_password=False)
    except ConfigError as err:
        return err.problems
    return []


def _assert_refused(found: list[str], case: str) -> None:
    assert found, f"{case} with a trailing line break was accepted"
    assert any("invalid" in p or "not" in p for p in found), found


@pytest.mark.parametrize("value", ["web\n", "web\r", "web\n\n"])
def test_the_shared_grammars_match_the_whole_value(value: str) -> None:
    assert tag_problem(value) is not None
    assert repository_path_problem(value) is not None
    assert repository_path_problem(f"acme/{value}") is not None
    assert server_problem(value) is not None
    assert server_problem(f"registry.example.com{value.replace('web', '')}") is not None


@pytest.mark.parametrize("export", ["tag", "digest", "repository"])
def test_source_exports_with_a_trailing_line_break_are_refused(export: str) -> None:
    settings = settings_from_values("staging", {"registry": EE, "promoteFrom": "dev"}, region="cn-hangzhou",
                                    has_password=False)
    registry = "acme-registry.cn-hangzhou.cr.aliyuncs.com"
    web = {"repository": f"{registry}/acme/web", "tag": "v1", "ref": f"{registry}/acme/web@{DIGEST}"}
    if export == "tag":
        web["tag"] = "v1\n"
    elif export == "digest":
        web["ref"] += "\n"
    else:
        web = {"repository": f"{registry}/acme/web\n", "tag": "v1", "ref": f"{registry}/acme/web\n@{DIGEST}"}
    exports = {"registry": registry, "images": {"web": web},
               "registryInstance": {"edition": "enterprise", "instanceId": "cri-0123456789abcdef",
                                    "region": "cn-hangzhou"}}
    with pytest.raises(PromotionError, match="is not|invalid"):
        check_exports(settings, exports, set())


def _refused_by_parse_reference(value: str) -> bool:
    try:
        parse_reference(value)
    except UsageError:
        return True
    return False


def _refused_by_the_ram_policy(account_id: str) -> bool:
    settings = settings_from_values("dev", {"registry": EE, "images": [WEB]}, region="cn-hangzhou",
                                    has_password=False)
    try:
        ram.deploy_policy(settings, account_id)
    except ValueError:
        return True
    return False


def _refused_as_a_platform(value: str) -> bool:
    return bool(problems(images=[{**WEB, "platforms": [value]}]))


def _refused_as_a_stack_name(value: str) -> bool:
    try:
        load_stack_file(value)
    except ConfigError as err:
        return "stack name" in str(err)
    return False


@pytest.mark.parametrize("end", ["\n", "\r\n"])
@pytest.mark.parametrize(("refused", "valid"), [
    (tag_problem, "v1"),
    (repository_path_problem, "acme/web"),
    (server_problem, "registry.example.com:5000"),
    (platform_problem, "linux/arm64/v8"),
    (_refused_as_a_platform, "linux/amd64"),
    (_refused_as_a_stack_name, "dev"),
    (_refused_by_parse_reference, "127.0.0.1:5000/demo/web:v1"),
    (_refused_by_parse_reference, f"127.0.0.1:5000/demo/web@{DIGEST}"),
    (_refused_by_the_ram_policy, "1234567890123456"),
], ids=lambda v: getattr(v, "__name__", v))
def test_every_other_grammar_matches_the_whole_value(refused, valid: str, end: str) -> None:
    """`$` also matches before a final newline: each grammar refuses the valid value with a line break after it."""
    assert not refused(valid), f"{refused.__name__} refused the valid value {valid!r}"
    assert refused(valid + end), f"{refused.__name__} accepted {valid + end!r}"


# --- scalar config values are the strings the stack file holds ------------------------------------------------

@pytest.mark.parametrize("user", ["a:b", "deployer:", ":x", "acme:deploy:er"])
def test_a_login_user_with_a_colon_is_refused(user: str) -> None:
    found = problems(registry={**PERSONAL, "username": user}, has_password=True)
    assert any("registry.username" in p and "':'" in p for p in found), found
    found = problems(registry={**LOCAL, "username": user}, has_password=True)
    assert any("registry.username" in p and "':'" in p for p in found), found
    found = _promote_source_user(user)
    assert [p for p in found if "sourceUsername" in p and "':'" in p] and not any(
        "sourceUsername is not" in p for p in found), found


def _promote_source_user(user: str) -> list[str]:
    try:
        settings_from_values("staging", {"registry": EE, "promoteFrom": "dev", "sourceUsername": user},
                             region="cn-hangzhou", has_password=False, has_source_password=True)
    except ConfigError as err:
        return err.problems
    return []


# --- a source's exported registryInstance names nothing before it is checked ------------------------------------

@pytest.mark.parametrize("value,expected", [(2024, "2024"), ("2024", "2024"), (True, "true"), ("null", "null")])
def test_the_stack_file_reader_takes_scalars_as_the_engine_hands_them(tmp_path, value, expected) -> None:
    """Tools that read stacks/Pulumi.<stack>.yaml themselves (cli.explain, cli.ram) agree with `pulumi up`: the
    engine hands `promoteFrom: 2024` to the program as the text 2024."""
    import shutil

    import yaml

    (tmp_path / "stacks").mkdir()
    shutil.copy(PROJECT_ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    config = {"acr-publish:registry": EE, "acr-publish:promoteFrom": value, "alicloud:region": "cn-hangzhou"}
    (tmp_path / "stacks" / "Pulumi.staging.yaml").write_text(yaml.safe_dump({"config": config}))
    settings = load_stack_file("staging", tmp_path)
    assert settings.promotion is not None and settings.promotion.source_stack == expected
