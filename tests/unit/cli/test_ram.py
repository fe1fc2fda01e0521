"""cli.ram: for every stack in stacks/, valid RAM policy documents with exactly the needed actions, resources
scoped to the stack's region, instance and namespace, deletes only where the stack may delete, previews read-only.

`expected()` spells the grants out independently of the module's tables, from two sources: ACR's documented
least privilege for a CI deployer on Enterprise (GetAuthorizationToken on `*`; namespace actions on the whole
instance, `repository/<instance-id>`, as ACR scopes them; repository actions on
`repository/<instance-id>/<namespace>/*`; the Delete* actions named by this project), and the APIs the program's
`get_registry_enterprise_instances_output(ids=..., enable_details=True)` invoke calls, which that list does not name
(ListInstance on `instance/*`, GetInstanceUsage and ListInstanceEndpoint on `instance/<instance-id>`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest

from cli import ram
from components.config.problems import ConfigError
from components.config.stackfile import load_stack_file
from tests.harness import PROJECT_ROOT, STACKS

ACCOUNT = "1234567890123456"
ANY_WRITE_VERB = re.compile(r"^cr:(Create|Update|Delete|Push|Put|Set|Tag|Untag|Reset|Change)")
CLOUD_STACKS = [s for s in STACKS if load_stack_file(s).registry.edition != "local"]


def actions(document: dict) -> set[str]:
    return {a for statement in document["Statement"] for a in statement["Action"]}


def grants(document: dict) -> set[tuple[str, str]]:
    return {(a, r) for s in document["Statement"] for a in s["Action"] for r in s["Resource"]}


def assert_valid_ram_policy(document: dict) -> None:
    # The RAM policy grammar: Version "1" and Allow statements of Action and Resource lists.
    assert json.loads(json.dumps(document)) == document
    assert set(document) == {"Version", "Statement"} and document["Version"] == "1"
    assert document["Statement"], "a policy needs at least one statement"
    for statement in document["Statement"]:
        assert set(statement) == {"Effect", "Action", "Resource"}
        assert statement["Effect"] == "Allow"
        assert statement["Action"] and all(re.fullmatch(r"cr:[A-Z][A-Za-z]+", a) for a in statement["Action"])
        assert statement["Action"] == sorted(set(statement["Action"]))
        assert statement["Resource"] and all(isinstance(r, str) for r in statement["Resource"])


def expected(settings, *, write: bool) -> set[tuple[str, str]]:
    """The grants, independently of the module's tables: ACR's documented list plus the invoke's instance reads."""
    region, ns = settings.region, settings.registry.namespace
    arn = f"acs:cr:{region}:{ACCOUNT}:repository"
    delete = write and not settings.retain_on_delete
    if settings.registry.edition == "enterprise":
        instance = settings.registry.instance_id
        ns_arn, repo_arn = f"{arn}/{instance}", f"{arn}/{instance}/{ns}/*"
        # GetAuthorizationToken: ACR's list. The three instance reads: not in that list; the
        # get_registry_enterprise_instances invoke (enable_details=True) calls them.
        out = {("cr:GetAuthorizationToken", "*"),
               ("cr:ListInstance", f"acs:cr:{region}:{ACCOUNT}:instance/*"),
               ("cr:GetInstanceUsage", f"acs:cr:{region}:{ACCOUNT}:instance/{instance}"),
               ("cr:ListInstanceEndpoint", f"acs:cr:{region}:{ACCOUNT}:instance/{instance}")}
    else:
        ns_arn, repo_arn = f"{arn}/{ns}", f"{arn}/{ns}/*"
        out = set()
    # PullRepository in previews too: the published-tag check reads each content tag's manifest.
    out |= {("cr:GetRepository", repo_arn), ("cr:PullRepository", repo_arn)}
    if write:
        out |= {(a, repo_arn) for a in ("cr:CreateRepository", "cr:UpdateRepository", "cr:PushRepository")}
    if delete:
        out.add(("cr:DeleteRepository", repo_arn))
    if settings.registry.create_namespace:
        # Instance-wide on Enterprise (ns_arn is repository/<instance-id>), as ACR scopes namespace actions.
        out.add(("cr:GetNamespace", ns_arn))
        if write:
            out |= {("cr:CreateNamespace", ns_arn), ("cr:UpdateNamespace", ns_arn)}
        if delete:
            out.add(("cr:DeleteNamespace", ns_arn))
    return out | source_pull(settings)


def source_pull(settings) -> set[tuple[str, str]]:
    """A promoting stack pulls from its source: PullRepository on the source's repositories, and for an
    Enterprise source the same instance lookup and temporary login the stack's own instance needs."""
    if settings.promotion is None:
        return set()
    source = load_stack_file(settings.promotion.source_stack)
    region, ns, instance = source.region, source.registry.namespace, source.registry.instance_id
    if source.registry.edition == "local":
        return set()
    if source.registry.edition == "personal":
        return {("cr:PullRepository", f"acs:cr:{region}:{ACCOUNT}:repository/{ns}/*")}
    return {("cr:GetAuthorizationToken", "*"),
            ("cr:ListInstance", f"acs:cr:{region}:{ACCOUNT}:instance/*"),
            ("cr:GetInstanceUsage", f"acs:cr:{region}:{ACCOUNT}:instance/{instance}"),
            ("cr:ListInstanceEndpoint", f"acs:cr:{region}:{ACCOUNT}:instance/{instance}"),
            ("cr:PullRepository", f"acs:cr:{region}:{ACCOUNT}:repository/{instance}/{ns}/*")}


def test_promoting_stacks_get_the_pull_grant_on_their_source():
    staging = ram.render("staging", ACCOUNT)
    for name in ("deploy", "preview"):
        assert ("cr:PullRepository", f"acs:cr:cn-hangzhou:{ACCOUNT}:repository/cri-0123456789abcdef/acme-dev/*") \
            in grants(staging[name]), name
        assert ("cr:ListInstanceEndpoint", f"acs:cr:cn-hangzhou:{ACCOUNT}:instance/cri-0123456789abcdef") \
            in grants(staging[name]), name
    prod = ram.render("prod", ACCOUNT)["deploy"]
    assert ("cr:PullRepository", f"acs:cr:cn-hangzhou:{ACCOUNT}:repository/cri-1123456789abcdef/acme-staging/*") \
        in grants(prod)
    assert not [g for g in grants(prod) if "acme-dev" in g[1]], "prod pulls from staging only"


def test_a_source_in_another_project_is_named_not_guessed():
    settings = dataclasses.replace(load_stack_file("staging"), promotion=dataclasses.replace(
        load_stack_file("staging").promotion, source_stack="acme/other-project/dev"))
    with pytest.raises(ValueError, match="names a stack of another project or organization"):
        ram.deploy_policy(settings, ACCOUNT)


def variants(stack: str):
    settings = load_stack_file(stack)
    for retain in (True, False):
        for create in (True, False):
            yield dataclasses.replace(settings, retain_on_delete=retain,
                                      registry=dataclasses.replace(settings.registry, create_namespace=create))


def test_every_edition_is_exercised():
    editions = {load_stack_file(s).registry.edition for s in STACKS}
    assert editions == {"enterprise", "personal", "local"}
    assert CLOUD_STACKS


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_shipped_stack_documents(stack):
    documents = ram.render(stack, ACCOUNT)
    settings = load_stack_file(stack)
    assert set(documents) == {"deploy", "preview"}
    for name, document in documents.items():
        assert_valid_ram_policy(document)
        assert grants(document) == expected(settings, write=name == "deploy"), name


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_exact_grants_for_every_retain_and_adopt_combination(stack):
    for settings in variants(stack):
        deploy = ram.deploy_policy(settings, ACCOUNT)
        preview = ram.preview_policy(settings, ACCOUNT)
        assert grants(deploy) == expected(settings, write=True), settings
        assert grants(preview) == expected(settings, write=False), settings
        deletes = {a for a in actions(deploy) if a.startswith("cr:Delete")}
        assert bool(deletes) == (not settings.retain_on_delete), "delete actions only when the stack may delete"
        if not settings.registry.create_namespace:
            assert not any("Namespace" in a for a in actions(deploy)), "an adopted namespace is never touched"


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_preview_documents_are_read_only(stack):
    for settings in variants(stack):
        preview = ram.preview_policy(settings, ACCOUNT)
        writes = {a for a in actions(preview) if ANY_WRITE_VERB.match(a)}
        assert writes == set(), f"{stack}: preview grants {writes}"
        assert not actions(preview) & ram.WRITE_ACTIONS
        assert actions(preview) < actions(ram.deploy_policy(settings, ACCOUNT))


@pytest.mark.parametrize("stack", CLOUD_STACKS)
def test_resources_are_scoped_to_region_instance_and_namespace(stack):
    settings = load_stack_file(stack)
    for document in ram.render(stack, ACCOUNT).values():
        for action, resource in grants(document):
            if resource == "*":
                assert action == "cr:GetAuthorizationToken", f"only the token request is unscoped, not {action}"
                continue
            assert resource.startswith(f"acs:cr:{settings.region}:{ACCOUNT}:"), resource
            source = load_stack_file(settings.promotion.source_stack) if settings.promotion else None
            namespaces = {settings.registry.namespace} | ({source.registry.namespace} if source else set())
            instances = {settings.registry.instance_id} | ({source.registry.instance_id} if source else set())
            if "Repository" in action:
                assert any(resource.endswith(f"/{ns}/*") for ns in namespaces), resource
                if not resource.endswith(f"/{settings.registry.namespace}/*"):
                    assert action == "cr:PullRepository", f"only pull on the promotion source, not {action}"
            if settings.registry.edition == "enterprise":
                assert any(i in resource for i in instances if i) or resource.endswith(":instance/*"), resource
            else:
                assert ":instance/" not in resource and settings.registry.namespace in resource, resource


def test_account_id_defaults_to_a_wildcard_and_is_validated():
    stack = CLOUD_STACKS[0]
    settings = load_stack_file(stack)
    default = ram.render(stack)
    assert all(f":{settings.region}:*:" in r for _, r in grants(default["deploy"]) if r != "*")
    with pytest.raises(ValueError, match="--account-id 'acme'"):
        ram.render(stack, "acme")


@pytest.mark.parametrize("stack", [s for s in STACKS if s not in CLOUD_STACKS])
def test_local_stack_has_no_ram_policy(stack):
    with pytest.raises(ram.NoRamPolicy, match="needs no RAM policy"):
        ram.render(stack)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.ram", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_renders_json_and_single_documents():
    stack = CLOUD_STACKS[0]
    both = run_cli(stack, "--account-id", ACCOUNT)
    assert both.returncode == 0, both.stderr
    assert json.loads(both.stdout) == ram.render(stack, ACCOUNT)
    only = run_cli(stack, "--document", "preview")
    assert only.returncode == 0 and json.loads(only.stdout) == ram.render(stack)["preview"]


def test_cli_explains_the_local_stack_and_unknown_stacks():
    local = run_cli("local")
    assert local.returncode == 2 and "edition local" in local.stderr and local.stdout == ""
    unknown = run_cli("no-such-stack")
    assert unknown.returncode == 2 and "known stacks are" in unknown.stderr


@pytest.mark.parametrize("content,needle", [
    ("config: [unclosed\n", "is not valid YAML at line 2, column 1"),
    ("- a\n- b\n", "holds a YAML list, and a stack file is a map"),
    ("config: 5\n", "config 5 in "),
])
def test_malformed_stack_files_are_config_errors(tmp_path, content, needle):
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.bad.yaml").write_text(content)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        ram.render("bad", project_root=tmp_path)


def test_cli_names_an_invalid_stack_name_escaped_and_short():
    proc = run_cli("x\x1b[2J" + "s" * 10_000)
    assert proc.returncode == 2 and "stack name" in proc.stderr and "Traceback" not in proc.stderr
    assert "\x1b" not in proc.stderr and len(proc.stderr) < 1000
