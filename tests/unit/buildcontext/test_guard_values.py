"""What the guard reads as a value: a literal written inside or glued to a reference is one (a CI expression's string,
a shell default, text beside `${PREFIX}`), a value that is only references is none; passwords given to commands on
their command line or on standard input (the command-line table); anonymous FTP logins, which hold no credential.
Each rule with its look-alikes that must pass, through ContextScan.report as the program runs it, and the refusal's
message (file, rule, fix, never the value)."""
from __future__ import annotations

import pytest

from buildcontext import ContextScan, SensitiveFilesError, sensitive
from buildcontext.sensitive_rules import COMMAND_LINE_PASSWORD, SECRET_ASSIGNMENT, URL_PASSWORD
from buildcontext.value_literals import literal_parts
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


# Passwords given to a command on its command line or its standard input: one table, each tool's short and long
# options, in a script of any name.
COMMAND_LINES = [
    "echo Zq7s3cretK9 | docker login --password-stdin -u ci registry.example.com",
    "echo 'Zq7s3cretK9' | sudo podman login -u ci --password-stdin registry.example.com",
    "printf Zq7s3cretK9 | docker login --password-stdin -u ci registry.example.com",
    "printf '%s' \"Zq7s3cretK9\" | helm registry login registry.example.com -u ci --password-stdin",
    "docker login -u ci --password-stdin registry.example.com <<< Zq7s3cretK9",
    "oras login -u ci --password-stdin registry.example.com <<<'Zq7s3cretK9'",
    "crane auth login registry.example.com -u ci -p Zq7s3cretK9",
    "crane auth login registry.example.com -u ci --password Zq7s3cretK9",
    "crane auth login registry.example.com -u ci --password=Zq7s3cretK9",
    "regctl registry login registry.example.com -u ci --pass Zq7s3cretK9",
    "skopeo login -u ci --password Zq7s3cretK9 registry.example.com",
    "sqlcmd -S db.example.com -U sa -P Zq7s3cretK9 -Q 'SELECT 1'",
    "sqlcmd -S db.example.com -U sa -P 'Zq7s3cretK9'",
    "keytool -genkeypair -alias app -keystore app.p12 -storepass Zq7s3cretK9",
    "keytool -importkeystore -srckeystore a.p12 -srcstorepass Zq7s3cretK9 -destkeystore b.p12",
    "keytool -genkeypair -alias app -keypass Zq7s3cretK9",
    "jarsigner -keystore app.jks -storepass Zq7s3cretK9 app.jar app",
    "ldapsearch -x -H ldap://ldap.example.com -D cn=admin,dc=example -w Zq7s3cretK9",
    "ldapadd -x -D cn=admin,dc=example -wZq7s3cretK9 -f users.ldif",
    "ldappasswd -x -D cn=admin -W -s Zq7s3cretK9 uid=app,dc=example",
    "smbclient //files.example.com/share -U ci%Zq7s3cretK9 -c ls",
    "smbclient //files.example.com/share --user=ci%Zq7s3cretK9",
    "rpcclient -U 'CORP\\ci%Zq7s3cretK9' files.example.com",
    "rabbitmqctl add_user app Zq7s3cretK9",
    "rabbitmqctl change_password app 'Zq7s3cretK9'",
    "redis-server --requirepass Zq7s3cretK9",
    "redis-cli CONFIG SET requirepass Zq7s3cretK9",
    "requirepass Zq7s3cretK9",
    "masterauth \"Zq7s3cretK9\"",
    "openssl pkcs12 -export -in c.pem -inkey k.pem -passout pass:Zq7s3cretK9 -out c.p12",
    "htpasswd -b -c /etc/nginx/conf.d/sites-available/registry.example.com/htpasswd admin Zq7s3cretK9",
    "htpasswd -Bbn a-deployment-user-with-a-long-name-for-the-registry-of-the-team Zq7s3cretK9",
]

# The same commands without a password on the command line: a reference, a prompt, a file or a variable's name.
COMMAND_LINES_WITHOUT_A_PASSWORD = [
    'echo "$REGISTRY_PASSWORD" | docker login --password-stdin -u ci registry.example.com',
    "echo ${{ secrets.REGISTRY_PASSWORD }} | docker login --password-stdin -u ci registry.example.com",
    "cat /run/secrets/registry | docker login --password-stdin -u ci registry.example.com",
    "echo done | tee log.txt",
    "echo Zq7s3cretK9done | sha256sum",
    "docker login -u ci --password-stdin registry.example.com <<< \"$REGISTRY_PASSWORD\"",
    "crane auth login registry.example.com -u ci -p \"$REGISTRY_PASSWORD\"",
    "sqlcmd -S db.example.com -U sa -P \"$SA_PASSWORD\"",
    "sqlcmd -S db.example.com -U sa -Q 'SELECT 1'",
    "keytool -genkeypair -alias app -storepass:env STORE_PASSWORD -keypass:file /run/secrets/kp",
    "keytool -genkeypair -alias app -storepass \"$STORE_PASSWORD\"",
    "ldapsearch -x -D cn=admin -W -b dc=example",
    "ldapsearch -x -D cn=admin -y /run/secrets/ldap -s sub uid=app",
    "smbclient //files.example.com/share -U ci -A /run/secrets/smb",
    "smbclient //files.example.com/share -U ci%$SMB_PASSWORD",
    "rabbitmqctl add_user app \"$RABBITMQ_PASSWORD\"",
    "rabbitmqctl add_vhost production-2024",
    "redis-server --requirepass \"$REDIS_PASSWORD\"",
    "requirepass foobared",
    "# requirepass <your password>",
    "openssl pkcs12 -export -in c.pem -passout env:P12_PASSWORD -out c.p12",
    "htpasswd -b -c /etc/nginx/conf.d/sites-available/registry.example.com/htpasswd admin \"$ADMIN_PASSWORD\"",
]


@pytest.mark.parametrize("line", COMMAND_LINES)
def test_a_password_on_a_command_line_or_standard_input_is_refused(tmp_path, line) -> None:
    assert _report(tmp_path, {"scripts/setup.sh": line + "\n"}) == ["scripts/setup.sh"]
    assert sensitive.scan_content("setup.sh", line.encode()) & COMMAND_LINE_PASSWORD


@pytest.mark.parametrize("line", COMMAND_LINES_WITHOUT_A_PASSWORD)
def test_the_same_commands_without_a_literal_password_pass(tmp_path, line) -> None:
    assert _report(tmp_path, {"scripts/setup.sh": line + "\n"}) == []


def test_a_requirepass_in_a_file_of_any_name_names_the_file_and_the_rule(tmp_path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "conf").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "conf" / "redis-6379.conf").write_text("port 6379\nrequirepass Zq7s3cretK9\n")
    with pytest.raises(SensitiveFilesError) as err, ContextScan(ctx, cache=False) as scan:
        scan.report({})
    message = str(err.value)
    assert "conf/redis-6379.conf" in message and "requirepass" in message, message
    assert "  conf/redis-6379.conf\n" in message.split("fix:")[1], message
    assert "Zq7s3cretK9" not in message, message


def test_a_password_in_a_run_line_names_the_dockerfile_and_a_builder_stage_fix(tmp_path) -> None:
    dockerfile = "FROM scratch\nRUN echo Zq7s3cretK9 | docker login --password-stdin -u ci r.example.com\n"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    with pytest.raises(SensitiveFilesError) as err, ContextScan(ctx, cache=False) as scan:
        scan.report({})
    message = str(err.value)
    assert "Dockerfile" in message and "password-stdin" in message and "COPY --from=<builder>" in message, message
    assert "Zq7s3cretK9" not in message, message


# Anonymous FTP: the login names nobody, and its password is an address or a login word by convention.
ANONYMOUS_URLS = [
    "ftp://anonymous:anonymous@ftp.example.org/pub/",
    "ftp://ftp:ftp@ftp.example.org/pub/",
    "ftp://anonymous:guest@ftp.example.org/pub/",
    "ftp://anonymous:me@example.com@ftp.example.org/pub/",
    "ftp://Anonymous:me%40example.com@ftp.example.org/pub/",
    "ftp://anonymous:me@@ftp.example.org/pub/",
]


@pytest.mark.parametrize("url", ANONYMOUS_URLS)
def test_an_anonymous_ftp_url_is_no_credential(tmp_path, url) -> None:
    text = f"Mirror: {url}\nRUN curl -O {url}README\n"
    assert _report(tmp_path, {"docs/mirrors.md": text}, build_args={"MIRROR": url}) == []


@pytest.mark.parametrize("url", [
    "ftp://anonymous:Zq7s3cretK9@ftp.example.org/pub/",
    "ftp://deployer:me%40example.com@ftp.example.org/pub/",
    "ftp://admin:guest@ftp.example.org/pub/",
    "https://anonymous:${FTP_PASSWORD:-Zq7s3cretK9}@ftp.example.org/pub/",
])
def test_an_anonymous_login_with_a_real_password_or_a_named_user_with_an_address_is_refused(tmp_path, url) -> None:
    assert _report(tmp_path, {"docs/mirrors.md": f"Mirror: {url}\n"}) == ["docs/mirrors.md"]
    assert sensitive.scan_content("a.txt", url.encode()) & URL_PASSWORD


@pytest.mark.parametrize("name,text", LITERAL_IN_REFERENCE + ONLY_REFERENCES + [
    ("setup.sh", line + "\n") for line in COMMAND_LINES + COMMAND_LINES_WITHOUT_A_PASSWORD])
def test_a_file_scanned_in_pieces_gets_the_verdict_of_a_whole_scan(name, text) -> None:
    from tests.unit.buildcontext.test_guard_credentials import whole_scans_agreeing_with_pieces
    for whole in whole_scans_agreeing_with_pieces(name, text, 11):
        assert bool(whole) is ((name, text) in LITERAL_IN_REFERENCE or text.rstrip("\n") in COMMAND_LINES)


@pytest.mark.parametrize("entry,refused", [
    ("machine ftp.corp.net login anonymous password guest@corp.net\n", False),
    ("default login ftp password me@corp.net\n", False),
    ("machine ftp.corp.net\n  login anonymous\n  password guest@\n", False),
    ("machine ftp.corp.net login deployer password guest@corp.net\n", True),
    ("machine ftp.corp.net login anonymous password Zq7s3cret9\n", True),
])
def test_a_large_netrcs_anonymous_entries_are_judged_with_their_login_across_window_edges(entry, refused) -> None:
    """Every offset of the entries against the window edges of a chunked scan (as a .netrc over the whole-read size
    and an image layer are read): the window that sees the entry's login judges its password."""
    from imageaudit.audit import _SensitiveScan
    for pad in range(8300, 8300 + 200):
        data = b"#" * pad + b"\n" + entry.encode() * 3
        whole = sensitive.scan_content(".netrc", data)
        assert bool(whole) is refused, (entry, pad)
        for size in (64, 129, 300):
            scan = _SensitiveScan(".netrc")
            for i in range(0, len(data), size):
                scan(data[i:i + size])
            scan(b"")
            assert scan.flags == whole, (entry, pad, size)


# A string literal an expression gives as its result (whole, an `||` / `&&` operand, a branch, an assignment, a
# default's or a format's substituted argument) ships as written.
EXPRESSION_RESULTS = [
    f"DB_PASSWORD: ${{{{secrets.A||'{SECRET}'}}}}",
    f"DB_PASSWORD: ${{{{ secrets.A != '' && secrets.A || '{SECRET}' }}}}",
    f"TOKEN: ${{{{ github.event_name == 'push' && '{SECRET}' || secrets.T }}}}",
    f"DB_PASSWORD: ${{{{ format('{{0}}', '{SECRET}') }}}}",
    f'password: {{{{ default "{SECRET}" .Values.password }}}}',
    f'password: {{{{- .Values.password | default "{SECRET}" | b64enc | quote -}}}}',
    f'password: {{{{ coalesce .Values.a .Values.b "{SECRET}" }}}}',
    f'password: {{{{ .Values.token | default (default "{SECRET}" .Values.b) }}}}',
    f"password = {{{{ db_password | default('{SECRET}') }}}}",
    f"password = {{{{ '{SECRET}' if prod else db_password }}}}",
    f"{{% set password = '{SECRET}' %}}",
    f"password: <%= ENV.fetch('DB_PASSWORD', '{SECRET}') %>",
    # Functions and forms that give their argument back (quoting, encoding, choosing, concatenating, formatting).
    f'password: {{{{ or .Values.pw "{SECRET}" }}}}',
    f'password: {{{{ quote "{SECRET}" }}}}',
    f'password: {{{{ b64enc "{SECRET}" }}}}',
    f'password: {{{{ ternary "{SECRET}" "b" true }}}}',
    f'password: {{{{ eq 1 1 | ternary "{SECRET}" "x" }}}}',
    f"TOKEN: ${{{{ format('{SECRET}{{0}}', 'x') }}}}",
    f"TOKEN: ${{{{ toJSON('{SECRET}') }}}}",
    f"TOKEN: $[ iif(eq(variables.a,'b'), '{SECRET}', 'c') ]",
    f"TOKEN: $[ lower('{SECRET}') ]",
    f"password = {{{{ '{SECRET}' ~ '' }}}}",
    f"password = {{{{ '{SECRET}' + '' }}}}",
    f"password = {{{{ '{SECRET}' if pw is none }}}}",
]

# Literals an expression only tests or passes to a function: a comparison's operand, an index, a function's
# argument (a format string, a file pattern, a prefix, a lookup or include name). Each is no value.
EXPRESSION_OPERANDS = [
    "DEPLOY_TOKEN: ${{ github.ref == 'refs/heads/release-2.x' && secrets.PROD || secrets.DEV }}",
    "TOKEN: ${{ matrix.os == 'ubuntu-22.04' && secrets.A || secrets.B }}",
    "TOKEN: ${{ startsWith(github.ref, 'refs/tags/v2') && secrets.T || '' }}",
    "TOKEN: ${{ contains(github.ref, 'release-v2x') && secrets.A || secrets.B }}",
    "TOKEN: ${{ secrets[format('DEPLOY_TOKEN_{0}', matrix.region)] }}",
    "TOKEN: ${{ format('DEPLOY_TOKEN_{0}', matrix.region) }}",
    "TOKEN: ${{ hashFiles('**/package-lock.json') }}",
    'secret: {{ (lookup "v1" "Secret" .Release.Namespace "db-creds-v2").data.password }}',
    'token: {{ .Values.token | default (include "app.token-v2" .) }}',
    'password: {{ index .Values "db-pass-v2" }}',
    "password: {% if env == 'prod-v2x' %}{{ db_password }}{% endif %}",
]


@pytest.mark.parametrize("line", EXPRESSION_RESULTS)
def test_a_literal_an_expression_gives_as_its_result_is_a_value(tmp_path, line) -> None:
    assert _report(tmp_path, {"ci/deploy.yml": f"env:\n  {line}\n"}) == ["ci/deploy.yml"]


@pytest.mark.parametrize("line", EXPRESSION_OPERANDS)
def test_a_literal_an_expression_compares_or_passes_to_a_function_is_no_value(tmp_path, line) -> None:
    assert _report(tmp_path, {"ci/deploy.yml": f"env:\n  {line}\n"}) == []


def test_an_expression_nested_past_the_reading_depth_keeps_every_literal_a_value() -> None:
    """Deep nesting is judged as before value positions were read (every literal is a value), never a crash."""
    deep = b"(" * 2000 + b"startsWith(github.ref, 'Zq7s3cretK9')" + b")" * 2000
    assert (b"Zq7s3cretK9", True) in literal_parts(b"${{ " + deep + b" }}")
    assert (b"Zq7s3cretK9", True) not in literal_parts(b"${{ ((startsWith(github.ref, 'Zq7s3cretK9'))) }}")


# Source code building a command line: the quote right after the option closes the code's string, the argument is
# an expression joined on (Java, JavaScript, Python, PHP, Lua, SQL). None holds a literal password.
CONCATENATED_COMMANDS = [
    ("Deploy.java", 'String cmd = "docker login -u ci -p " + password + " registry";\n'),
    ("Db.java", 'String cmd = "sqlcmd -S db -U sa -P " + pw + " -Q x";\n'),
    ("Tls.java", 'String c = "keytool -importcert -storepass " + storePassword + " -file " + f;\n'),
    ("tls.py", "cmd = 'openssl rsa -passin pass:' + pw + ' -in k'\n"),
    ("ldap.js", "const cmd = 'ldapsearch -x -w ' + pw + ' -b dc=x';\n"),
    ("cache.py", "os.system('redis-cli -a ' + pw + ' ping')\n"),
    ("ssh.py", "cmd = 'sshpass -p ' + get_pw() + ' ssh h'\n"),
    ("db.php", '$c = "mysql -uroot -p" . $pw . " db";\n'),
    ("init.lua", 'os.execute("redis-cli -a " .. pw .. " ping")\n'),
]

# The same commands with the password written inside the string: each is refused.
LITERAL_COMMANDS = [
    ("Deploy.java", f'String cmd = "docker login -u ci -p {SECRET} registry";\n'),
    ("tls.py", f"cmd = 'openssl rsa -passin pass:{SECRET} -in k'\n"),
    ("login.sh", f"docker login -u ci -p '.{SECRET}' registry\n"),
    ("login.sh", f'redis-cli -a "+{SECRET}" ping\n'),
    # Outside source code the quotes are the shell's: `" + S + "` is the password, quotes and all.
    ("login.sh", f'docker login -u ci -p " + {SECRET} + " r.example.com\n'),
    ("Dockerfile", f"FROM scratch\nRUN docker login -u ci -p '+{SECRET}+' r\n"),
]


@pytest.mark.parametrize(("name", "text"), CONCATENATED_COMMANDS)
def test_code_joining_a_password_onto_a_command_line_holds_none(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == []


@pytest.mark.parametrize(("name", "text"), LITERAL_COMMANDS)
def test_a_password_written_inside_a_command_lines_string_is_refused(tmp_path, name, text) -> None:
    assert sensitive.scan_content(name, text.encode()) == COMMAND_LINE_PASSWORD


@pytest.mark.parametrize(("name", "text"), [
    ("package.json", '{"dependencies": {"jsonwebtoken": "^9.0.2", "js-tokens": "4.0.0"}}\n'),
    ("package.json", '{"dependencies": {"csrf-token": "1.0.1", "oauth-token": "^1.2.0",\n'
                     '  "auth-token": "~2.1.0-beta.1"}}\n'),
    ("package.json", '{"devDependencies": {"jsonwebtoken": ">=8.5.1", "api-token": "1.x", "auth-token": "2.0.0-rc1"}}\n'),
    ("package-lock.json", '  "packages": {\n    "": {\n      "dependencies": {\n        "jsonwebtoken": "^9.0.0",\n'),
])
def test_a_dependency_named_like_a_secret_with_its_version_range_passes(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == []


@pytest.mark.parametrize("value", [SECRET, f"1.0.0-{SECRET}", f"^1.2.{SECRET}", "^8.31-hjqkzvwpx",
                                   "4.7-mzqxkwrtplvbnhgd.ydhqpwxz", "483920571.918273645.12345", "v9.9-qwkzjx",
                                   "1.x-kqzvwprtmnbcsdfg.jxhqtrmv.plkjhgfdsz"])
def test_a_secret_beside_a_version_like_text_is_still_refused(tmp_path, value) -> None:
    assert _report(tmp_path, {"package.json": f'{{"config": {{"token": "{value}"}}}}\n'}) == ["package.json"]


@pytest.mark.parametrize("text", ["password=Contrase\\u00f1a\n", "login.password=Mot de passe oubli\\u00e9\n",
                                  "password=\\u041f\\u0430\\u0440\\u043e\\u043b\\u044c\n"])
def test_a_locale_bundles_escaped_translation_passes(tmp_path, text) -> None:
    assert _report(tmp_path, {"messages_es.properties": text, "i18n/messages.properties": text}) == []


def test_a_secret_holding_an_escaped_letter_is_still_refused(tmp_path) -> None:
    assert _report(tmp_path, {"app.properties": "password=Zq7\\u00f1s3cret9\n"}) == ["app.properties"]


@pytest.mark.parametrize("url", ["postgres://${DB_USER:-app}:${DB_PASSWORD}@${DB_HOST:-db}:5432/app",
                                 "postgres://${DB_USER:-app}:${DB_PASSWORD:?set it}@db/app",
                                 "redis://${REDIS_USER:-default}:$REDIS_PASSWORD@cache:6379/0"])
def test_a_url_whose_user_has_a_default_and_password_is_a_reference_passes(tmp_path, url) -> None:
    assert _report(tmp_path, {"compose.yml": f"services:\n  app:\n    environment:\n      DATABASE_URL: {url}\n"}) == []


@pytest.mark.parametrize("url", [f"postgres://${{DB_USER:-app}}:{SECRET}@db/app",
                                 f"postgres://${{DB_USER:-app}}:${{PW:-{SECRET}}}@db/app"])
def test_a_url_whose_user_has_a_default_and_password_is_a_literal_is_refused(url) -> None:
    assert sensitive.scan_content("compose.yml", f"      DATABASE_URL: {url}\n".encode()) == URL_PASSWORD


@pytest.mark.parametrize(("name", "text"), [
    ("init.sql", f"CREATE USER app WITH PASSWORD '{SECRET}';\n"),
    ("init.sql", f"ALTER ROLE app WITH LOGIN PASSWORD '{SECRET}';\n"),
    ("init.sql", f"CREATE USER 'app'@'%' IDENTIFIED BY '{SECRET}';\n"),
    ("login.sh", f"docker -H tcp://build.internal:2376 login -u ci -p {SECRET} registry.example.com\n"),
    ("login.sh", f"docker --config /tmp/c login -u ci -p {SECRET} registry.example.com\n"),
])
def test_sql_and_a_login_after_global_options_giving_a_literal_password_are_refused(name, text) -> None:
    assert sensitive.scan_content(name, text.encode()) == COMMAND_LINE_PASSWORD


@pytest.mark.parametrize(("name", "text"), [
    ("init.sql", "CREATE USER app WITH PASSWORD :'pw';\nALTER USER app IDENTIFIED BY ${DB_PASSWORD};\n"),
    ("init.sql", "CREATE ROLE app WITH LOGIN PASSWORD NULL;\n"),
    ("README.md", "Sign in with your password first, then log in with password authentication.\n"),
    ("login.sh", 'docker --config /tmp/c login -u ci --password-stdin r\ndocker -H tcp://h login -u ci -p "$PW" r\n'),
    ("login.sh", "docker --debug login -u ci -p ${REGISTRY_PASSWORD:?} registry.example.com\n"),
])
def test_sql_and_logins_after_global_options_without_a_literal_pass(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == []
