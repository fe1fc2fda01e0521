"""The CI/CD definitions: GitHub workflows and .gitlab-ci.yml validate against their published schemas (the copies
check-jsonschema vendors, so offline), and keep the delivery properties the project promises (docs/reference.md, Delivery)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.harness import PROJECT_ROOT

ROOT = PROJECT_ROOT
WORKFLOWS = ROOT / ".github" / "workflows"
GITLAB = ROOT / ".gitlab-ci.yml"
CLOUD_STACKS = ["dev", "staging", "prod"]
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
EXACT_TAG_PIN = re.compile(r"^[\w.-]+/[\w./-]+@v\d+\.\d+\.\d+$")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def triggers(workflow: dict) -> dict:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    value = workflow.get("on", workflow.get(True))
    return {value: None} if isinstance(value, str) else dict(value)


def pulumi_sdk_version() -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.startswith("pulumi=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError("requirements.txt pins no pulumi==X.Y.Z")


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job.get("steps", []) if str(s.get("uses", "")).startswith(action + "@")]


@pytest.fixture(scope="module")
def preview() -> dict:
    return load(WORKFLOWS / "preview.yml")


@pytest.fixture(scope="module")
def deploy() -> dict:
    return load(WORKFLOWS / "deploy.yml")


@pytest.fixture(scope="module")
def gitlab() -> dict:
    return load(GITLAB)


# --- schemas, offline ------------------------------------------------------------------------------

def run_check_jsonschema(schema: str, files: list[Path]) -> subprocess.CompletedProcess:
    # A proxy that refuses every connection proves the vendored schema is used, not a download.
    env = dict(os.environ, HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="")
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", schema, *map(str, files)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_github_workflows_match_the_schema():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"preview.yml", "deploy.yml"}
    proc = run_check_jsonschema("vendor.github-workflows", files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gitlab_ci_matches_the_schema():
    proc = run_check_jsonschema("vendor.gitlab-ci", [GITLAB])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_can_fail(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  up:\n    runs-on: ubuntu-24.04\n    concurrency: {cancel-in-progress: false}\n"
                   "    steps: [{run: make test, bogus: 1}]\n")
    assert run_check_jsonschema("vendor.github-workflows", [bad]).returncode != 0


# --- both GitHub workflows ---------------------------------------------------------------------------

def test_no_pull_request_target_anywhere():
    for path in WORKFLOWS.glob("*.yml"):
        assert "pull_request_target" not in triggers(load(path)), path
        assert "pull_request_target:" not in path.read_text(), path


def test_every_action_is_pinned():
    for path in WORKFLOWS.glob("*.yml"):
        for job_name, job in load(path)["jobs"].items():
            for step in job.get("steps", []):
                uses = step.get("uses")
                if uses is None:
                    continue
                assert SHA_PIN.match(uses) or EXACT_TAG_PIN.match(uses), f"{path.name}:{job_name}: {uses} is not pinned"
                if uses.startswith("aliyun/"):
                    assert SHA_PIN.match(uses), f"{path.name}:{job_name}: {uses} must be a commit SHA"


def test_pulumi_cli_version_matches_the_sdk_pin(preview, deploy):
    version = pulumi_sdk_version()
    for workflow in (preview, deploy):
        for job in workflow["jobs"].values():
            for step in steps_using(job, "pulumi/actions"):
                assert step["with"]["pulumi-version"] == version


def test_no_long_lived_cloud_keys():
    for path in [*WORKFLOWS.glob("*.yml"), GITLAB]:
        text = path.read_text()
        assert not re.search(r"secrets\.\w*ACCESS_KEY", text), path
        assert "access-key-id:" not in text, path


# --- preview.yml ---------------------------------------------------------------------------------

def test_preview_runs_on_pull_requests_only(preview):
    assert set(triggers(preview)) == {"pull_request"}
    assert preview["permissions"] == {"contents": "read"}


def test_preview_test_job_runs_the_readme_test_command(preview):
    runs = [s.get("run", "") for s in preview["jobs"]["test"]["steps"]]
    assert any(r.strip() == "make test" for r in runs), runs
    assert re.search(r"^test:", (ROOT / "Makefile").read_text(), re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_preview_matrix_covers_the_cloud_stacks(preview):
    job = preview["jobs"]["preview"]
    assert job["needs"] == "test"
    strategy = job["strategy"]
    assert strategy["fail-fast"] is False
    stacks = [entry["stack"] for entry in strategy["matrix"]["include"]]
    assert stacks == CLOUD_STACKS
    for stack in stacks:
        assert (ROOT / "stacks" / f"Pulumi.{stack}.yaml").is_file(), stack
    # pulumi/actions finds the comment to edit by a heading *prefix* (pulumi/actions #1165): no stack name may be
    # a prefix of another, or one stack's preview would overwrite the other's comment.
    for a in stacks:
        for b in stacks:
            assert a == b or not b.startswith(a), f"stack {a!r} is a prefix of {b!r}"


def test_preview_permissions_and_read_only_roles(preview):
    job = preview["jobs"]["preview"]
    assert job["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    assert "environment" not in job  # previews never get an environment's write role
    # Previews build nothing and only check the registry login, so no leg needs the self-hosted VPC runner.
    assert job["runs-on"].startswith("ubuntu-"), job["runs-on"]
    for entry in job["strategy"]["matrix"]["include"]:
        assert entry["role_variable"] == f"ALIYUN_PREVIEW_ROLE_ARN_{entry['stack'].upper()}"
    [oidc] = steps_using(job, "aliyun/configure-aliyun-credentials-action")
    assert oidc["with"]["role-to-assume"] == "${{ vars[matrix.role_variable] }}"
    assert "DEPLOY" not in (WORKFLOWS / "preview.yml").read_text()


def test_preview_runs_pulumi_with_policies_and_one_comment_per_stack(preview):
    [step] = steps_using(preview["jobs"]["preview"], "pulumi/actions")
    w = step["with"]
    assert w["command"] == "preview"
    assert w["stack-name"] == "${{ matrix.stack }}"
    assert w["policyPacks"] == "policies"
    assert w["comment-on-pr"] is True and w["edit-pr-comment"] is True


def test_policy_pack_and_program_virtualenvs_are_where_pulumi_looks(preview, deploy):
    program_venv = load(ROOT / "Pulumi.yaml")["runtime"]["options"]["virtualenv"]
    pack_venv = load(ROOT / "policies" / "PulumiPolicy.yaml")["runtime"]["options"]["virtualenv"]
    for workflow in (preview, deploy):
        for name, job in workflow["jobs"].items():
            if not steps_using(job, "pulumi/actions"):
                continue
            script = "\n".join(s.get("run", "") for s in job["steps"])
            assert f"python -m venv {program_venv} " in script, name
            assert f"python -m venv policies/{pack_venv} " in script, name
            assert "-r policies/requirements.txt" in script, name


# --- deploy.yml ----------------------------------------------------------------------------------

def test_deploy_runs_on_pushes_to_main(deploy):
    assert triggers(deploy) == {"push": {"branches": ["main"]}}


def test_deploy_chain_environments_and_concurrency(deploy):
    jobs = deploy["jobs"]
    assert list(jobs) == [f"up-{s}" for s in CLOUD_STACKS]
    previous = None
    for stack in CLOUD_STACKS:
        job = jobs[f"up-{stack}"]
        assert job.get("needs") == previous, f"up-{stack} must run after {previous}"
        assert job["environment"] == stack
        assert job["concurrency"] == {"group": f"pulumi-{stack}", "cancel-in-progress": False}
        assert job["permissions"]["id-token"] == "write"
        [oidc] = steps_using(job, "aliyun/configure-aliyun-credentials-action")
        # The environment-scoped variable: each environment's own write role.
        assert oidc["with"]["role-to-assume"] == "${{ vars.ALIYUN_DEPLOY_ROLE_ARN }}"
        [up] = steps_using(job, "pulumi/actions")
        assert up["with"]["command"] == "up"
        assert up["with"]["stack-name"] == stack
        assert up["with"]["suppress-outputs"] is True
        assert up["with"]["policyPacks"] == "policies"
        previous = f"up-{stack}"
    assert "Required reviewers" in (WORKFLOWS / "deploy.yml").read_text()


# --- .gitlab-ci.yml ------------------------------------------------------------------------------

def test_gitlab_previews_per_stack_on_merge_requests(gitlab):
    for stack in CLOUD_STACKS:
        job = gitlab[f"preview:{stack}"]
        assert job["extends"] == ".preview"
        assert job["variables"]["STACK"] == stack
        assert job["variables"]["ROLE_ARN"] == f"$ALIYUN_PREVIEW_ROLE_ARN_{stack.upper()}"
    template = gitlab[".preview"]
    assert template["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'}]
    assert "--policy-pack policies" in " ".join(template["script"])
    assert gitlab["test"]["script"][0].startswith("bash .ci/run")


def test_gitlab_deploys_in_order_with_resource_groups(gitlab):
    previous = None
    for stack in CLOUD_STACKS:
        job = gitlab[f"up:{stack}"]
        assert job["extends"] == (".up" if promotes(stack) else ".up-build")
        assert job["needs"] == ([previous] if previous else [])
        assert job["environment"]["name"] == stack
        assert job["resource_group"] == f"pulumi-{stack}"
        assert job["variables"] == {"STACK": stack, "ROLE_ARN": "$ALIYUN_DEPLOY_ROLE_ARN"}
        previous = f"up:{stack}"
    prod_rules = gitlab["up:prod"]["rules"]
    assert prod_rules and all(rule.get("when") == "manual" for rule in prod_rules)
    assert gitlab["up:prod"]["allow_failure"] is False
    assert "--suppress-outputs" in " ".join(gitlab[".up"]["script"])


def gitlab_job(gitlab: dict, name: str) -> dict:
    """A job with its `extends` chain applied as GitLab does: hashes merge key by key, anything else is replaced."""
    def merge(base: dict, override: dict) -> dict:
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
                else value
        return merged

    job = gitlab[name]
    parents = job.get("extends", [])
    resolved: dict = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        resolved = merge(resolved, gitlab_job(gitlab, parent))
    return merge(resolved, {k: v for k, v in job.items() if k != "extends"})


DIND_SERVICE = re.compile(r"^docker:\d+\.\d+\.\d+-dind$")


def promotes(stack: str) -> bool:
    return "acr-publish:promoteFrom" in load(ROOT / "stacks" / f"Pulumi.{stack}.yaml")["config"]


BUILDING_CLOUD_STACKS = [s for s in CLOUD_STACKS if not promotes(s)]
PROMOTING_CLOUD_STACKS = [s for s in CLOUD_STACKS if promotes(s)]


def test_dev_builds_and_staging_and_prod_promote():
    assert BUILDING_CLOUD_STACKS == ["dev"] and PROMOTING_CLOUD_STACKS == ["staging", "prod"]
    sources = {s: load(ROOT / "stacks" / f"Pulumi.{s}.yaml")["config"]["acr-publish:promoteFrom"]
               for s in PROMOTING_CLOUD_STACKS}
    assert sources == {"staging": "dev", "prod": "staging"}


def test_gitlab_promoting_up_jobs_need_no_docker_engine(gitlab):
    for stack in PROMOTING_CLOUD_STACKS:
        job = gitlab_job(gitlab, f"up:{stack}")
        assert "services" not in job, f"up:{stack} promotes: it needs no Docker-in-Docker service"
        assert not {k for k in job.get("variables", {}) if k.startswith("DOCKER_")}, f"up:{stack}"
        assert job["script"] == gitlab_job(gitlab, "up:dev")["script"], "the same pulumi up command"
    assert "no Docker" in GITLAB.read_text()


def test_github_promoting_deploys_need_no_docker_engine(deploy):
    for stack in PROMOTING_CLOUD_STACKS:
        job = deploy["jobs"][f"up-{stack}"]
        uses = [str(step.get("uses", "")) for step in job["steps"]]
        runs = " ".join(str(step.get("run", "")) for step in job["steps"])
        assert not [u for u in uses if u.startswith("docker/")] and "docker " not in runs, f"up-{stack}"
    assert "need no Docker engine" in (WORKFLOWS / "deploy.yml").read_text()


def test_gitlab_up_jobs_build_with_a_pinned_docker_in_docker_service(gitlab):
    for stack in BUILDING_CLOUD_STACKS:
        job = gitlab_job(gitlab, f"up:{stack}")
        services = [s if isinstance(s, dict) else {"name": s} for s in job.get("services", [])]
        dind = [s for s in services if str(s["name"]).startswith("docker:")]
        assert len(dind) == 1, f"up:{stack} needs one docker:<version>-dind service, has {services}"
        assert DIND_SERVICE.match(dind[0]["name"]), f"up:{stack}: {dind[0]['name']} is not an exact dind version"
        # The service is reached under the host name `docker`: its image's name, or the alias when one is set.
        assert dind[0].get("alias", "docker") == "docker", dind[0]
        variables = job["variables"]
        assert variables["DOCKER_HOST"] == "tcp://docker:2376", f"up:{stack}"
        assert variables["DOCKER_TLS_CERTDIR"] == "/certs", f"up:{stack}"
        assert variables["DOCKER_CERT_PATH"] in ("$DOCKER_TLS_CERTDIR/client", "/certs/client"), f"up:{stack}"
        assert str(variables["DOCKER_TLS_VERIFY"]) == "1", f"up:{stack}"
        # The job's own variables survive the merge with the template's.
        assert variables["STACK"] == stack and variables["ROLE_ARN"] == "$ALIYUN_DEPLOY_ROLE_ARN"


def test_gitlab_previews_need_no_docker_and_no_special_runner(gitlab):
    # Previews build nothing (build_on_preview=False) and their preflight only checks the login, so any runner will do.
    for stack in CLOUD_STACKS:
        job = gitlab_job(gitlab, f"preview:{stack}")
        assert "services" not in job and "tags" not in job, f"preview:{stack}"
        assert "DOCKER_HOST" not in job.get("variables", {}), f"preview:{stack}"


def test_gitlab_prod_up_runs_inside_the_vpc(gitlab, deploy):
    # stacks/Pulumi.prod.yaml pushes through the VPC endpoint: the same runner label as deploy.yml's self-hosted runner.
    settings = load(ROOT / "stacks" / "Pulumi.prod.yaml")["config"]["acr-publish:registry"]
    assert settings["endpoint"] == "vpc"
    label = "acr-publish-prod"
    assert label in deploy["jobs"]["up-prod"]["runs-on"]
    assert gitlab_job(gitlab, "up:prod")["tags"] == [label]
    for stack in CLOUD_STACKS:
        if stack != "prod":
            assert label not in gitlab_job(gitlab, f"up:{stack}").get("tags", []), f"up:{stack}"


def test_gitlab_job_resolution_merges_like_gitlab():
    document = {".a": {"variables": {"X": "1", "Y": "1"}, "tags": ["a"], "script": ["a"]},
                ".b": {"extends": ".a", "variables": {"Y": "2"}, "script": ["b"]},
                "job": {"extends": [".b"], "variables": {"Z": "3"}, "tags": ["job"]}}
    assert gitlab_job(document, "job") == {"variables": {"X": "1", "Y": "2", "Z": "3"}, "tags": ["job"],
                                           "script": ["b"]}


def test_gitlab_uses_oidc_and_the_pinned_cli(gitlab):
    template = gitlab[".pulumi"]
    assert template["id_tokens"]["ALIYUN_OIDC_TOKEN"]["aud"] == "sts.aliyuncs.com"
    assert template["image"].endswith(":" + pulumi_sdk_version())
    assert re.search(r"alibabacloud-credentials==\d", " ".join(template["before_script"]))


# --- docs/operations.md ---------------------------------------------------------------------------

OPERATIONS = ROOT / "docs" / "operations.md"


def heredoc_json(text: str) -> dict[str, dict]:
    """The JSON documents the guide writes with `cat > FILE <<'JSON'`, by file name."""
    found = {}
    for match in re.finditer(r"cat > (\S+) <<'JSON'\n(.*?)\n\s*JSON\n", text, re.S):
        found[match.group(1)] = json.loads(match.group(2))
    return found


def test_operations_guide_uses_real_stacks_and_config_keys():
    from components.config.schema import TOP_KEYS

    text = OPERATIONS.read_text()
    stacks = set(re.findall(r"--stack (\S+)", text))
    assert stacks and stacks <= {p.name[len("Pulumi."):-len(".yaml")] for p in (ROOT / "stacks").glob("Pulumi.*.yaml")}
    for key in re.findall(r"(?<![/\w-])acr-publish:([A-Za-z]+)(?![A-Za-z:])", text):
        assert key in TOP_KEYS, f"docs/operations.md names unknown config key acr-publish:{key}"


def test_operations_guide_diy_backend_is_virtual_hosted_with_checksums_relaxed():
    text = OPERATIONS.read_text()
    urls = re.findall(r"PULUMI_BACKEND_URL='(s3://[^']+)'", text)
    assert urls
    for url in urls:
        assert "s3ForcePathStyle" not in url and "use_path_style" not in url
        assert "endpoint=https://s3.oss-" in url and "/acr-publish/" in url
    for path in [OPERATIONS, WORKFLOWS / "preview.yml", WORKFLOWS / "deploy.yml", GITLAB]:
        body = path.read_text()
        assert "AWS_REQUEST_CHECKSUM_CALCULATION" in body and "AWS_RESPONSE_CHECKSUM_VALIDATION" in body, path


def test_operations_guide_json_documents_parse():
    documents = heredoc_json(OPERATIONS.read_text())
    assert {"import-prod.json", "import-personal-example.json", "trust-prod-deploy.json"} <= set(documents)
    trust = documents["trust-prod-deploy.json"]
    assert trust["Statement"][0]["Condition"]["StringEquals"]["oidc:sub"].endswith(":environment:prod")


@pytest.mark.parametrize("stack", ["prod", "personal-example"])
def test_operations_guide_import_files_match_the_program(stack, preflight_calls):
    """The import file's types, names, parents and ids are those the program declares for that stack."""
    from components.config.stackfile import load_stack_file
    from tests.harness import run_stack

    document = heredoc_json(OPERATIONS.read_text())[f"import-{stack}.json"]
    assert f"pulumi import --file import-{stack}.json --stack {stack}" in OPERATIONS.read_text()
    run = run_stack(stack)
    by_name = {r.name: r for r in run.resources}
    settings = load_stack_file(stack)
    instance, namespace = settings.registry.instance_id, settings.registry.namespace
    imported = {entry["name"] for entry in document["resources"]}
    for entry in document["resources"]:
        recorded = by_name[entry["name"]]
        assert entry["type"] == recorded.type, entry
        if entry.get("component"):
            assert "id" not in entry
            continue
        parent = by_name[entry["parent"]]
        assert recorded.parent == parent.urn, entry
        # ACR's import ids: classic `ns`, `ns/repo`; enterprise `instanceId:ns`, `instanceId:ns:repo`.
        repo = recorded.inputs.get("name")
        if recorded.type.endswith("Namespace"):
            assert entry["id"] == (f"{instance}:{namespace}" if instance else namespace)
        else:
            assert entry["id"] == (f"{instance}:{namespace}:{repo}" if instance else f"{namespace}/{repo}")
    registry_resources = {r.name for r in run.resources if r.type.startswith("alicloud:")}
    assert registry_resources <= imported, "every namespace and repository of the stack is in the import file"


def shell_commands(text: str) -> list[str]:
    """The guide's shell commands in reading order: ```sh blocks, continuation lines joined, comments dropped."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in re.sub(r"\s*\\\n\s*", " ", block).splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_operations_guide_creates_each_stack_after_its_passphrase_exists():
    commands = shell_commands(OPERATIONS.read_text())
    # `pulumi stack init` fails with "already exists" the second time; `stack select --create` does not.
    assert not [c for c in commands if c.startswith("pulumi stack init")], "use `pulumi stack select --create`"
    creating = [i for i, c in enumerate(commands) if c.startswith("pulumi stack select --create")]
    assert creating, "the guide never creates a stack"
    for i in creating:
        if "--secrets-provider passphrase" not in commands[i]:
            continue
        before = commands[:i]
        assert any(c.startswith("aliyun kms CreateSecret") for c in before), f"{commands[i]}: no passphrase yet"
        assert any(c.startswith("export PULUMI_CONFIG_PASSPHRASE=") for c in before), commands[i]
        # ...and the backend it is created in is already logged in to.
        assert any(c.startswith('pulumi login "$PULUMI_BACKEND_URL"') for c in before), commands[i]
    # Switching an existing stack's provider comes after the stack can exist and with the passphrase exported.
    for i, command in enumerate(commands):
        if command.startswith("pulumi stack change-secrets-provider passphrase"):
            assert any(c.startswith("export PULUMI_CONFIG_PASSPHRASE=") for c in commands[:i]), command


def test_shell_commands_reads_blocks_in_order():
    text = "x\n```sh\n# note\na one \\\n  two\n```\n```json\n{}\n```\n```sh\nb\n```\n"
    assert shell_commands(text) == ["a one two", "b"]


def test_operations_guide_ram_commands_run_as_written(tmp_path):
    lines = [line.strip() for line in OPERATIONS.read_text().splitlines()
             if line.strip().startswith("./venv/bin/python -m cli.ram ")]
    assert lines
    for line in lines:
        command, _, target = line.partition(" > ")
        args = command.split()[3:]
        proc = subprocess.run([sys.executable, "-m", "cli.ram", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, f"{line}: {proc.stderr}"
        document = json.loads(proc.stdout)
        assert document["Version"] == "1", line
