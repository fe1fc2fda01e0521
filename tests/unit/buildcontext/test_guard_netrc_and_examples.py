"""Content the guard judges by what it is, not by the file's name: a netrc entry (`machine HOST login USER password
VALUE`) in any file, and prose naming the same words without one; documentation that shows a Java system property
with an ellipsis or a Markdown code span for its value, next to the literal secrets the `-D` rule still refuses.
Through ContextScan.report as the program runs it."""
from __future__ import annotations

import time


import pytest

from buildcontext import ContextScan, SensitiveFilesError, sensitive
from tests.unit.buildcontext.test_guard_credentials import _report
from buildcontext.sensitive_rules import SECRET_ASSIGNMENT
from tests.harness import PROJECT_ROOT


NETRC_ENTRIES = [
    "machine registry.example.com login deployer password Zq7-s3cret\n",
    "machine git.example.com\n  login ci\n  password ghx_8f3kQ2\n",
    "machine h.example password Zq7s3cret9 login u\n",
    "machine a.example login x password 1 port 443\nmachine b.example login y password Kx9mQ2vLp8\n",
    "default login deployer password me@corp.net\n",
    "machine h.example account acme login u password 'Zq7 s3cret'\n",
]


@pytest.mark.parametrize("text", NETRC_ENTRIES)
@pytest.mark.parametrize("name", ["netrc.txt", "ci/netrc", "setup.sh", "conf/auth"])
def test_a_netrc_entry_with_a_password_is_refused_in_a_file_of_any_name(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == [name]


def test_the_refusal_names_the_netrc_rule_and_never_the_password(tmp_path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "creds").write_text("machine h.example login u password Zq7-s3cret\n")
    with pytest.raises(SensitiveFilesError) as err, ContextScan(ctx, cache=False) as scan:
        scan.report({})
    assert "netrc entry with a password" in str(err.value) and "Zq7-s3cret" not in str(err.value), err.value


NETRC_PROSE = [
    "The build machine asks for a password and a login when the registry is private.\n",
    "Every machine needs a login; the password comes from the CI secret store.\n",
    "The default password admin123 must be changed on first login.\n",
    "machine learning password strength estimators\n",
    'printf "machine %s login %s password %s\\n" "$HOST" "$USER" "$TOKEN" > ~/.netrc\n',
    'echo "machine $HOST login $USER password ${NETRC_PASSWORD}" > ~/.netrc\n',
    "machine h.example login u password $NETRC_PASSWORD\n",
    "machine h.example login u password\n",
    "Each build machine runs login once; password rotation is handled by Vault.\n",
    "After install, the default login admin password is shown on the console.\n",
    "machine example.com login USERNAME password PASSWORD\n",
    "machine example.com login USERNAME password TOKEN\n",
    "machine example.com login you password YOUR_TOKEN\n",
    "machine example.com login you password <token>\n",
    "machine example.com login you password GITHUB_TOKEN\n",
    "machine runs login once; password rotation\n",
]


@pytest.mark.parametrize("text", NETRC_PROSE)
def test_prose_references_and_documented_netrc_placeholders_pass(tmp_path, text) -> None:
    assert _report(tmp_path, {"README.md": text, "setup.sh": text, "docs/setup.md": text, "notes.txt": text}) == []


JVM_EXAMPLES = [
    "a Java system property (`-Dmaven.repo.password=...`, `-Dhttps.proxyPassword=\"...\"`, `-Daws.secretKey=...`).",
    "set `-Dpassword=…` in JAVA_TOOL_OPTIONS",
    "RUN java -Dkeystore.password=`cat /run/secrets/ks` -jar app.jar",
]


@pytest.mark.parametrize("text", JVM_EXAMPLES)
def test_a_java_property_example_with_an_ellipsis_or_a_command_passes(tmp_path, text) -> None:
    assert _report(tmp_path, {"docs/guide.md": text + "\n"}) == []


@pytest.mark.parametrize("text", ["run with `-Dmaven.repo.password=hunter22x`.",
                                  "-Dhttps.proxyPassword=...hunter22", "-Daws.secretKey=wJalrXUtnFEMI`"])
def test_a_literal_java_property_secret_in_markdown_is_still_report(tmp_path, text) -> None:
    assert _report(tmp_path, {"docs/guide.md": text + "\n"}) == ["docs/guide.md"]


def test_the_projects_own_docs_in_a_context_pass_the_guard(tmp_path) -> None:
    """The README and docs/ describe every rule with examples: shipped in a context, none is a credential."""
    docs = {f"docs/{p.name}": p.read_text() for p in (PROJECT_ROOT / "docs").glob("*.md")}
    assert _report(tmp_path, {"README.md": (PROJECT_ROOT / "README.md").read_text(), **docs}) == []


_BUILDKIT_NETRC = ("FROM scratch\nRUN --mount=type=secret,id=tok <<EOF\nmachine git.corp\nlogin ci\npassword {value}\n"
                   "EOF\n")
REFERENCE_VALUES = ["$(cat /run/secrets/tok)", "`cat /run/secrets/tok`", '"$GIT_TOKEN"', "$GIT_TOKEN",
                    '"${GIT_TOKEN}"', "{{ git_token }}", "{{git_token}}", "{% raw %}", "<%= token %>"]


@pytest.mark.parametrize("value", REFERENCE_VALUES)
def test_a_netrc_password_that_is_a_command_variable_or_template_passes(tmp_path, value) -> None:
    """BuildKit's documented secret mount: the password is read from the mounted secret, never written."""
    assert _report(tmp_path, {"Dockerfile": _BUILDKIT_NETRC.format(value=value), "setup.sh":
                               f"machine git.corp login ci password {value}\n"}) == []


@pytest.mark.parametrize("value", ["ghx8f3kQ2Lm", "'Zq7s3cret9'", "s3cret$(x)"])
def test_a_literal_netrc_password_in_the_same_heredoc_is_report(tmp_path, value) -> None:
    assert _report(tmp_path, {"Dockerfile": _BUILDKIT_NETRC.format(value=value)}) == ["Dockerfile"]


@pytest.mark.parametrize("name, text", [
    (".npmrc", '//r.example/:_authToken="$NPM_TOKEN"\n'),
    (".npmrc", "//r.example/:_authToken={{ npm_token }}\n"),
    ("pip.conf", "[global]\nindex-url = https://USERNAME:PASSWORD@pypi.example/simple\n"),
    ("app.env.j2", "DB_PASSWORD={{ db_password }}\n"),
    ("run.sh", "curl https://ci:$(cat /run/secrets/pw)@repo.example/x\n"),
])
def test_the_reference_rule_is_shared_by_the_other_rules(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == []


@pytest.mark.parametrize("name, text", [
    (".npmrc", "//r.example/:_authToken=Zq7s3cret9Abc\n"),
    ("pip.conf", "[global]\nindex-url = https://ci:Zq7s3cret9@pypi.example/simple\n"),
    ("app.env.j2", "DB_PASSWORD=Zq7s3cret9\n"),
])
def test_the_same_rules_still_refuse_a_literal(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == [name]


@pytest.mark.parametrize("text", ["password = ${PYPI_TOKEN}\n", "password = <your PyPI token>\n",
                                  "password = $PYPI_TOKEN\n", "password: PASSWORD\n"])
def test_a_pypirc_password_reference_or_placeholder_passes(tmp_path, text) -> None:
    assert _report(tmp_path, {".pypirc": "[pypi]\nusername = __token__\n" + text}) == []


@pytest.mark.parametrize("text", ["password = Zq7s3cret9\n", "password: 'Zq7s3cret9'\n"])
def test_a_pypirc_literal_password_is_still_report(tmp_path, text) -> None:
    assert _report(tmp_path, {".pypirc": "[pypi]\nusername = u\n" + text}) == [".pypirc"]


@pytest.mark.parametrize("text", ["machine h.example login u password $NETRC_PASSWORD\n",
                                  "machine h.example login u password PASSWORD\n"])
def test_a_netrc_file_reference_or_placeholder_passes_and_a_literal_is_report(tmp_path, text) -> None:
    assert _report(tmp_path, {".netrc": text}) == []
    assert _report(tmp_path, {".netrc": "machine h.example login u password Zq7s3cret9\n"}) == [".netrc"]


@pytest.mark.parametrize("line", [
    'RUN echo "machine git.corp login ci password ghx8f3kQ2Lm" > /root/.netrc',
    "RUN echo 'machine git.corp login ci password ghx8f3kQ2Lm' > /root/.netrc",
    "RUN printf 'machine git.corp\\nlogin ci\\npassword ghx8f3kQ2Lm\\n' > /root/.netrc",
    "RUN printf 'machine git.corp login ci password ghx8f3kQ2Lm\\n' >> /root/.netrc",
    "RUN echo machine git.corp login ci password ghx8f3kQ2Lm > /root/.netrc",
    "RUN echo -n machine git.corp login ci password ghx8f3kQ2Lm > /root/.netrc",
    "RUN echo -e 'machine git.corp login ci password ghx8f3kQ2Lm' > /root/.netrc",
])
def test_a_netrc_entry_written_by_echo_or_printf_is_report(tmp_path, line) -> None:
    assert _report(tmp_path, {"Dockerfile": f"FROM scratch\n{line}\n"}) == ["Dockerfile"]


@pytest.mark.parametrize("line", [
    'RUN echo "machine git.corp login ci password $GIT_TOKEN" > /root/.netrc',
    "RUN printf 'machine git.corp\\nlogin ci\\npassword %s\\n' \"$GIT_TOKEN\" > /root/.netrc",
    'RUN echo "see the machine docs: login once, password later" > /README',
])
def test_a_netrc_entry_written_with_a_reference_passes(tmp_path, line) -> None:
    assert _report(tmp_path, {"Dockerfile": f"FROM scratch\n{line}\n"}) == []


CI_WORKFLOW = """jobs:
  build:
    steps:
      - run: echo "machine github.com login x password {value}" > ~/.netrc
      - run: |
          cat > ~/.netrc <<EOF
          machine git.corp login ci password {value}
          EOF
"""


@pytest.mark.parametrize("value", ["${{ secrets.GH_TOKEN }}", "${{secrets.GH_TOKEN}}", "$[ variables.token ]",
                                   "$(GIT_TOKEN)"])
def test_a_ci_systems_expression_for_a_netrc_password_passes(tmp_path, value) -> None:
    """GitHub Actions' and Azure Pipelines' expressions are references, as `${VAR}` is, in every rule."""
    assert _report(tmp_path, {".github/workflows/ci.yml": CI_WORKFLOW.format(value=value),
                               "azure-pipelines.yml": f"variables:\n  REG_PASSWORD: {value}\n"}) == []


def test_a_literal_netrc_password_in_a_ci_workflow_is_refused_at_any_indent(tmp_path) -> None:
    one_line = CI_WORKFLOW.replace("git.corp login ci password {value}", "git.corp login ci password x")
    heredoc = CI_WORKFLOW.replace('github.com login x password {value}"', 'github.com"')
    assert _report(tmp_path, {"a.yml": one_line.format(value="ghx8f3kQ2Lm"),
                               "b.yml": heredoc.format(value="ghx8f3kQ2Lm")}) == ["a.yml", "b.yml"]


GRAPHQL_SCHEMA = """input LoginInput {{
  email: String!
  password: {value}
}}

type Session {{
  token: {value}
  refreshToken: [String!]!
  apiKey: ID!
}}
"""


@pytest.mark.parametrize("value", ["String!", "Secret!", "String", "[String!]!"])
def test_a_graphql_schemas_field_types_pass(tmp_path, value) -> None:
    assert _report(tmp_path, {"schema.graphql": GRAPHQL_SCHEMA.format(value=value),
                               "types.ts": f"interface Login {{ password: {value}; }}\n"}) == []


@pytest.mark.parametrize("value", ["Zq7s3cret9!", "hunter22!x", '"String!"'])
def test_a_literal_after_a_graphql_like_field_is_still_report(tmp_path, value) -> None:
    assert _report(tmp_path, {"schema.graphql": GRAPHQL_SCHEMA.format(value=value)}) == ["schema.graphql"]


@pytest.mark.parametrize("value", ["your-token", "MyToken", "your_password", "s3cret-example", "hunter"])
def test_a_netrc_password_is_judged_by_the_assignment_value_rule(tmp_path, value) -> None:
    """A word or an example is not a credential after `password` in a netrc entry, as after `password=`."""
    entry = f"machine registry.corp login me password {value}\n"
    assert _report(tmp_path, {"docs/setup.md": entry, "setup.sh": entry, ".netrc": entry,
                               "app.env": f"PASSWORD={value}\n"}) == []


@pytest.mark.parametrize("value", ["guest@", "anonymous@", "me@corp.net", "ftp@mirror.corp"])
@pytest.mark.parametrize("login", ["anonymous", "ftp"])
def test_an_anonymous_ftp_entry_with_an_address_for_a_password_passes(tmp_path, login, value) -> None:
    entry = f"default login {login} password {value}\n"
    assert _report(tmp_path, {".netrc": entry, "ci/netrc": entry}) == []


@pytest.mark.parametrize("entry", ["default login anonymous password Zq7s3cret9\n",
                                   "default login deployer password guest@corp.net\n",
                                   "machine h.corp login anonymous password guest@\nmachine g.corp login ci\n"
                                   "password Zq7s3cret9\n"])
def test_an_anonymous_login_with_a_real_password_or_a_user_with_an_address_is_report(tmp_path, entry) -> None:
    assert _report(tmp_path, {".netrc": entry, "ci/netrc": entry}) == [".netrc", "ci/netrc"]


@pytest.mark.parametrize("text", [
    b"      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?required}\n",
    b"      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}\n",
    b"      - POSTGRES_PASSWORD=${POSTGRES_PASSWORD:?required}\n",
    b"DB_PASSWORD=${DB_PASSWORD?set it in the CI secrets}\n",
])
def test_a_required_variables_error_message_is_no_value(text) -> None:
    """`${NAME:?message}` (shell, docker compose): the text after `?` is the error shown when NAME is unset."""
    assert sensitive.scan_content("docker-compose.yml", text) == 0
    assert sensitive.scan_content(".env", text) == 0


@pytest.mark.parametrize("text", [b"POSTGRES_PASSWORD: Zq7s3cret9Kx\n", b"DB_PASSWORD=Zq7s3cret9Kx\n"])
def test_a_literal_beside_the_required_variable_form_is_still_report(text) -> None:
    assert sensitive.scan_content("docker-compose.yml", text) == SECRET_ASSIGNMENT


_NETRC_FOUR_MIB = 4 * 1024 * 1024


def _big_netrc(head: bytes, line: bytes, tail: bytes = b"") -> bytes:
    return head + line * ((_NETRC_FOUR_MIB - len(head) - len(tail)) // len(line)) + tail


@pytest.mark.parametrize(("data", "refused"), [
    (_big_netrc(b"machine h.corp login u\n", b"password abcdef\n"), False),
    (_big_netrc(b"machine h.corp login u\n", b"password abcdef\n", b"password Zq7s3cretK9\n"), True),
    (_big_netrc(b"default login anonymous\n", b"password guest@corp.net\n"), False),
    (_big_netrc(b"default login anonymous\n", b"password guest@corp.net\n", b"machine g.corp login ci\n"
                b"password guest@corp.net\n"), True),
    (_big_netrc(b"", b"machine h.corp login anonymous password guest@\n"), False),
])
def test_a_four_mib_netrc_of_many_passwords_is_judged_in_one_pass(tmp_path, data, refused) -> None:
    """Each password is judged with its entry's login carried forward, not read back to the entry's start: a
    file of many passwords takes time in proportion to its length. The bound only turns a hang into a failure."""
    started = time.monotonic()
    flagged = sensitive.scan_content(".netrc", data)
    assert time.monotonic() - started < 30, "the .netrc scan did not finish in 30 s"
    assert bool(flagged) is refused
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (tmp_path / "ctx" / ".netrc").write_bytes(data)
    started = time.monotonic()
    with ContextScan(tmp_path / "ctx", cache=False) as scan:
        if refused:
            with pytest.raises(SensitiveFilesError):
                scan.report({})
        else:
            scan.report({})
    assert time.monotonic() - started < 30, "the context scan of the .netrc did not finish in 30 s"
