"""What the guard reads as a value: a literal written inside or glued to a reference is one (a CI expression's string,
a shell default, text beside `${PREFIX}`), a value that is only references is none; passwords given to commands on
their command line or on standard input (the command-line table); anonymous FTP logins, which hold no credential.
Each rule with its look-alikes that must pass, through ContextScan.report as the program runs it, and the refusal's
message (file, rule, fix, never the value)."""
from __future__ import annotations

import pytest

from buildcontext import ContextScan, SensitiveFilesError, sensitive
from buildcontext.sensitive_rules import COMMAND_LINE_PASSWORD, SECRET_ASSIGNMENT, URL_PASSWORD
from tests.unit.buildcontext.test_guard_credentials import _report

SECRET = "Zq7s3cretK9"

# A literal beside or inside a reference, in the forms the assignment, URL, command-line and credential-file rules
# read a value: each ships the literal.
LITERAL_IN_REFERENCE = [
    ("ci/deploy.yml", f"env:\n  DB_PASSWORD: ${{{{ '{SECRET}' }}}}\n"),
    ("ci/deploy.yml", f"env:\n  DB_PASSWORD: ${{{{ secrets.DB_PASSWORD || '{SECRET}' }}}}\n"),
    ("ci/deploy.yml", f'env:\n  DB_PASSWORD: "${{{{ secrets.DB_PASSWORD || \'{SECRET}\' }}}}"\n'),
    ("azure.yml", f"variables:\n  api_token: $[ coalesce(variables.t, '{SECRET}') ]\n"),
    ("chart/secret.yaml", f'  password: {{{{ .Values.password | default "{SECRET}" }}}}\n'),
    ("run.sh", f"DB_PASSWORD=${{PREFIX}}{SECRET}\n"),
    ("run.sh", f"DB_PASSWORD=$PREFIX-{SECRET}\n"),
    ("run.sh", f"DB_PASSWORD=${{DB_PASSWORD:-{SECRET}}}\n"),
    ("run.sh", f"DB_PASSWORD=${{DB_PASSWORD-{SECRET}}}\n"),
    ("run.sh", f"DB_PASSWORD=${{DB_PASSWORD:={SECRET}}}\n"),
    ("run.sh", f'export DB_PASSWORD="${{DB_PASSWORD:-{SECRET}}}"\n'),
    ("run.sh", f"DB_PASSWORD=${{DB_PASSWORD:-${{FALLBACK:-{SECRET}}}}}\n"),
    ("compose.yml", f"    environment:\n      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:-{SECRET}}}\n"),
    ("login.sh", f"docker login -u ci -p ${{REGISTRY_PASSWORD:-{SECRET}}} registry.example.com\n"),
    ("pip.conf", f"[global]\nindex-url = https://ci:${{PIP_PASSWORD:-{SECRET}}}@pypi.corp.example/simple\n"),
    (".npmrc", f"//npm.corp.example/:_authToken=${{NPM_TOKEN:-{SECRET}}}\n"),
]

# Values that are only references (or hold no literal that looks like a secret): they stay references.
ONLY_REFERENCES = [
    ("ci/deploy.yml", "env:\n  DB_PASSWORD: ${{ secrets.DB_PASSWORD }}\n"),
    ("ci/deploy.yml", "env:\n  DB_PASSWORD: \"${{ secrets.DB_PASSWORD || secrets.FALLBACK }}\"\n"),
    ("ci/deploy.yml", "env:\n  DB_PASSWORD: ${{ secrets[format('{0}_PASSWORD', env.STAGE)] }}\n"),
    ("chart/secret.yaml", "  password: {{ .Values.password | b64enc | quote }}\n"),
    ("chart/secret.yaml", '  password: {{ required "set a password" .Values.password }}\n'),
    ("run.sh", "DB_PASSWORD=$X\n"),
    ("run.sh", "DB_PASSWORD=${X}\n"),
    ("run.sh", "DB_PASSWORD=${X:?msg}\n"),
    ("run.sh", "DB_PASSWORD=${X:?DB_PASSWORD must be set to a strong password}\n"),
    ("run.sh", "DB_PASSWORD=${X:-}\n"),
    ("run.sh", "DB_PASSWORD=${X:-dev}\n"),
    ("run.sh", "DB_PASSWORD=${X:-YOUR_PASSWORD}\n"),
    ("run.sh", "DB_PASSWORD=${X:-$FALLBACK}\n"),
    ("run.sh", "DB_PASSWORD=$(cat /run/secrets/x)\n"),
    ("run.sh", 'DB_PASSWORD="$(cat /run/secrets/db password)"\n'),
    ("run.sh", "DB_PASSWORD=`cat /run/secrets/x`\n"),
    ("run.sh", "DB_PASSWORD=${HOME}/.config/db/password\n"),
    ("run.bat", "set DB_PASSWORD=%DB_PASSWORD%\n"),
    ("login.sh", "docker login -u ci -p ${REGISTRY_PASSWORD:?} registry.example.com\n"),
    ("pip.conf", "[global]\nindex-url = https://ci:${PIP_PASSWORD}@pypi.corp.example/simple\n"),
    (".npmrc", "//npm.corp.example/:_authToken=${NPM_TOKEN}\n"),
]


@pytest.mark.parametrize(("name", "text"), LITERAL_IN_REFERENCE)
def test_a_literal_inside_or_glued_to_a_reference_is_a_value(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == [name]


@pytest.mark.parametrize(("name", "text"), ONLY_REFERENCES)
def test_a_value_that_is_only_references_stays_a_reference(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == []


def test_a_literal_in_a_ci_expression_is_refused_in_the_dockerfile_and_a_build_arg(tmp_path) -> None:
    line = f"RUN DB_PASSWORD=${{DB_PASSWORD:-{SECRET}}} ./migrate\n"
    assert _report(tmp_path, {}, dockerfile="FROM scratch\n" + line) == ["Dockerfile"]
    assert _report(tmp_path, {}, build_args={"DSN": f"postgres://app:${{PW:-{SECRET}}}@db/app"}) == ["buildArg:DSN"]
    assert _report(tmp_path, {}, build_args={"DSN": "postgres://app:${PW}@db/app"}) == []


def test_the_refusal_names_the_file_the_rule_and_the_fix_never_the_literal(tmp_path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "ci").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "ci" / "deploy.yml").write_text(f"env:\n  DB_PASSWORD: ${{{{ secrets.A || '{SECRET}' }}}}\n")
    with pytest.raises(SensitiveFilesError) as err, ContextScan(ctx, cache=False) as scan:
        scan.report({})
    message = str(err.value)
    assert "ci/deploy.yml" in message and "assigned a literal value" in message, message
    assert "fix: add these lines to" in message and "allowSensitive" in message, message
    assert SECRET not in message, message


@pytest.mark.parametrize("text", [
    b"DB_PASSWORD=${X:-Zq7s3cretK9}\n", b"password: ${{ secrets.A || 'Zq7s3cretK9' }}\n",
    b"DB_PASSWORD=${PREFIX}Zq7s3cretK9\n"])
def test_a_literal_in_a_reference_is_judged_by_the_assignment_rule(text) -> None:
    assert sensitive.scan_content("a.txt", text) == SECRET_ASSIGNMENT
    assert sensitive.scan_content("a.txt", text.replace(b"Zq7s3cretK9", b"example1")) == 0


def test_a_url_password_default_is_judged_by_the_url_rule() -> None:
    assert sensitive.scan_content("a.txt", b"https://ci:${PW:-Zq7s3cretK9}@h.example/") == URL_PASSWORD
    assert sensitive.scan_content("a.txt", b"https://ci:${PW:-changeme}@h.example/") == 0
    assert sensitive.scan_content("a.txt", b"docker login -p ${PW:-Zq7s3cretK9} r") == COMMAND_LINE_PASSWORD
