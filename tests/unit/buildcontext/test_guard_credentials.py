"""The guard's credential rules by their root: a URL whose userinfo holds a password, wherever it appears (a file, the
Dockerfile's text, a build arg); credential-bearing config files by name and content (Yarn, Maven, Composer,
RubyGems, Cargo, NuGet, Gradle, MySQL, Terraform, the legacy .dockercfg); Java system properties holding a secret;
an AccessKey secret assigned without its id; any secret assigned a literal value, in any file, Dockerfile line or
build arg, and the ordinary config, code and docs that name a secret without holding one; credential stores by name. Each rule with variants, and what it must let through (references and placeholders),
through ContextScan.report as the program runs it."""
from __future__ import annotations

from pathlib import Path

import pytest

from buildcontext import ContextScan, SensitiveFilesError


def _report(tmp_path: Path, files: dict[str, str], dockerfile: str = "FROM scratch\nCOPY . /\n",
            build_args: dict[str, str] | None = None) -> list[str]:
    """The paths (or buildArg: entries) the guard refuses; [] when it lets the build through."""
    ctx = tmp_path / "ctx"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for rel, text in files.items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(text)
    try:
        with ContextScan(ctx, cache=False) as scan:
            scan.report(build_args or {})
    except SensitiveFilesError as err:
        return [f.path for f in err.findings]
    return []


URL_SECRETS = [
    "https://user:s3cr3t-Pass@pypi.example.com/simple",
    "http://deploy:hunter22@10.0.0.5:8080/repo",
    "https://:tokenonly123@git.example.com/org/repo.git",
    "postgres://app:Zx9!kq@db.internal:5432/app",
    "git+https://ci:glpat_not_known_format@gitlab.example/group/pkg.git",
    "https://u:p%40ss%3Aword@host/simple",
]


@pytest.mark.parametrize("url", URL_SECRETS)
def test_a_build_arg_holding_a_url_password_is_refused_whatever_its_name(tmp_path, url) -> None:
    for name in ("PIP_EXTRA_INDEX_URL", "INDEX", "REPO_URL"):
        assert _report(tmp_path, {}, build_args={name: url}) == [f"buildArg:{name}"], (name, url)


@pytest.mark.parametrize("url", URL_SECRETS)
def test_a_dockerfile_line_holding_a_url_password_is_refused(tmp_path, url) -> None:
    dockerfile = f"FROM scratch\nRUN pip install --extra-index-url {url} app\n"
    assert _report(tmp_path, {}, dockerfile=dockerfile) == ["Dockerfile"]


@pytest.mark.parametrize("name,text", [
    ("pip.conf", "[global]\nindex-url = https://alice:{pw}@pypi.corp/simple\n"),
    ("etc/pip.ini", "[global]\nextra-index-url =\n    https://bob:{pw}@mirror.corp/simple\n"),
    ("requirements.txt", "--extra-index-url https://ci:{pw}@pkgs.corp/simple\nrequests==2.31.0\n"),
    ("app/.env.example", "DATABASE_URL=mysql://root:{pw}@localhost/app\n"),
    ("conf/gitconfig", '[remote "origin"]\n\turl = https://me:{pw}@github.example/org/r.git\n'),
])
def test_a_file_holding_a_url_password_is_refused(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text.format(pw="Sup3rS3cret")}) == [name]


@pytest.mark.parametrize("url", [
    "https://user:${PIP_PASSWORD}@pypi.example.com/simple", "https://user:$PIP_PASSWORD@host/simple",
    "https://user:$(cat /run/secrets/pw)@host/simple", "https://%s:%s@%s/simple", "https://{user}:{password}@{host}",
    "https://user:<password>@host/simple", "https://user:***@host", "https://user@host/simple",
    "git@github.com:org/repo.git", "http://127.0.0.1:5000/v2/", "https://example.com/a:b@c",
    "https://host/path?x=a:b@c",
])
def test_references_placeholders_and_passwordless_urls_pass(tmp_path, url) -> None:
    assert _report(tmp_path, {"notes.txt": url + "\n"}, build_args={"INDEX": url},
                   dockerfile=f"FROM scratch\nRUN echo {url}\n") == []


@pytest.mark.parametrize("text", [
    'npmAuthToken: "abcdef0123456789"\n', "npmAuthToken: abcdef0123456789\n",
    "npmScopes:\n  corp:\n    npmAuthToken: abcdef0123456789\n",
    "npmRegistries:\n  //npm.corp:\n    npmAuthIdent: dXNlcjpwYXNzd29yZA==\n",
])
@pytest.mark.parametrize("name", [".yarnrc.yml", "web/.yarnrc.yml", ".yarnrc.yaml"])
def test_a_yarnrc_with_a_registry_token_is_refused(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == [name]


@pytest.mark.parametrize("text", ['npmAuthToken: "${NPM_TOKEN}"\n', "npmAuthToken: ${NPM_TOKEN}\n",
                                  "npmAuthToken: ''\n", "npmRegistryServer: https://npm.corp\n"])
def test_a_yarnrc_without_a_token_passes(tmp_path, text) -> None:
    assert _report(tmp_path, {".yarnrc.yml": text}) == []


@pytest.mark.parametrize("name,text", [
    ("settings.xml", "<settings><servers><server><id>corp</id><username>u</username>"
                     "<password>hunter22</password></server></servers></settings>"),
    (".m2/settings.xml", "<server>\n  <id>x</id>\n  <passphrase>\n    keypass\n  </passphrase>\n</server>"),
    (".m2/settings-security.xml", "<settingsSecurity><master>{jSMOWnoPFgsHVpMvz5VrIt5kRbzGpI8u}</master>"
                                  "</settingsSecurity>"),
])
def test_maven_settings_with_a_password_are_refused(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == [name]


@pytest.mark.parametrize("text", ["<server><password>${env.MAVEN_PASSWORD}</password></server>",
                                  "<server><username>u</username></server>", "<password></password>"])
def test_maven_settings_without_a_password_pass(tmp_path, text) -> None:
    assert _report(tmp_path, {"settings.xml": text}) == []


@pytest.mark.parametrize("name", [".dockercfg", "home/.dockercfg", ".DockerCfg"])
def test_a_legacy_docker_config_is_refused_by_its_name(tmp_path, name) -> None:
    assert _report(tmp_path, {name: "{}"}) == [name]


SECRET = "Ab3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1"  # 30 characters, an AccessKey secret's shape


@pytest.mark.parametrize("text", [
    f"export ALIBABA_CLOUD_ACCESS_KEY_SECRET={SECRET}\n", f"ALICLOUD_SECRET_KEY='{SECRET}'\n",
    f"[default]\naccess_key_secret = {SECRET}\n", f'{{"AccessKeySecret": "{SECRET}"}}',
    f"aliyun:\n  access-key-secret: {SECRET}\n", f"aws_secret_access_key={SECRET}AbCdEfGhIj\n",
    f"set -e\nexport ALIYUN_SECRET_KEY={SECRET}; ./deploy\n",
    f"aliyun configure set --profile ci --access-key-secret {SECRET} --region cn-hangzhou\n",
    f"ENV ALIBABA_CLOUD_ACCESS_KEY_SECRET {SECRET}\n", f"aliyun configure set --access-key-secret '{SECRET}'\n",
])
@pytest.mark.parametrize("name", ["deploy.sh", "conf/credentials.ini"])
def test_an_access_key_secret_without_its_id_is_refused(tmp_path, name, text) -> None:
    assert "LTAI" not in text
    assert _report(tmp_path, {name: text}) == [name]


@pytest.mark.parametrize("text", [
    "export ALIBABA_CLOUD_ACCESS_KEY_SECRET=$SECRET\n", 'ALICLOUD_SECRET_KEY="${ALICLOUD_SECRET_KEY}"\n',
    "access_key_secret = \n", "# set ALIBABA_CLOUD_ACCESS_KEY_SECRET in the CI settings\n",
    "SECRET_KEY = 'django-insecure-abc'\n",
    'aliyun configure set --access-key-secret "$ALIBABA_CLOUD_ACCESS_KEY_SECRET"\n',
    "ENV ALIBABA_CLOUD_ACCESS_KEY_SECRET ${ALIBABA_CLOUD_ACCESS_KEY_SECRET}\n",
    "# pass the access key secret environmentVariableFromTheCiSettings\n",
    "AccessKeySecret    string `json:\"access_key_secret\"`\n",
])
def test_references_to_an_access_key_secret_pass(tmp_path, text) -> None:
    assert _report(tmp_path, {"deploy.sh": text}) == []


@pytest.mark.parametrize("line", [f"RUN aliyun configure set --access-key-id LTAIx --access-key-secret {SECRET}",
                                  f"ENV ALIBABA_CLOUD_ACCESS_KEY_SECRET {SECRET}"])
def test_an_access_key_secret_after_blanks_is_refused_in_the_dockerfile(tmp_path, line) -> None:
    assert _report(tmp_path, {}, dockerfile=f"FROM scratch\n{line}\n") == ["Dockerfile"]


def test_the_guard_message_names_the_rule_and_never_the_secret(tmp_path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "pip.conf").write_text("[global]\nindex-url = https://alice:Sup3rS3cret@pypi.corp/simple\n")
    with pytest.raises(SensitiveFilesError) as err:
        with ContextScan(ctx, cache=False) as scan:
            scan.report({"PIP_EXTRA_INDEX_URL": "https://bob:An0therOne@h/simple"})
    text = str(err.value)
    assert "URL with a password" in text and "buildArg:PIP_EXTRA_INDEX_URL" in text
    assert "Sup3rS3cret" not in text and "An0therOne" not in text


@pytest.mark.parametrize("name,text", [
    (".yarnrc", '"//npm.corp/:_authToken" "abcdef0123456789"\n'),
    ("web/.yarnrc", "_auth dXNlcjpwYXNzd29yZA==\n"),
    ("auth.json", '{"http-basic": {"repo.corp": {"username": "u", "password": "hunter22"}}}'),
    ("app/auth.json", '{\n  "github-oauth": {\n    "github.com": "abc123def456"\n  }\n}'),
    ("auth.json", '{"bitbucket-oauth": {"bitbucket.org": {"consumer-key": "k", "consumer-secret": "s"}}}'),
    (".gem/credentials", "---\n:rubygems_api_key: rubygems_0123456789abcdef\n"),
    (".cargo/credentials.toml", '[registry]\ntoken = "cio0123456789abcdef"\n'),
    (".cargo/credentials", '[registries.corp]\ntoken = "Bearer abc"\n'),
    ("NuGet.Config", '<packageSourceCredentials><corp><add key="Username" value="u" />'
                     '<add key="ClearTextPassword" value="hunter22" /></corp></packageSourceCredentials>'),
    ("gradle.properties", "org.gradle.jvmargs=-Xmx2g\nmavenPassword=hunter22\n"),
    ("android/gradle.properties", "systemProp.https.proxyPassword = s3cret\n"),
])
def test_credential_files_of_other_package_managers_are_refused(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == [name]


@pytest.mark.parametrize("name,text", [
    (".yarnrc", '"//npm.corp/:_authToken" "${NPM_TOKEN}"\nregistry "https://npm.corp"\n'),
    ("auth.json", '{"http-basic": {"repo.corp": {"username": "u", "password": "$COMPOSER_PASSWORD"}}}'),
    ("auth.json", '{"name": "not composer", "password_policy": "strong"}'),
    (".cargo/credentials.toml", '[registry]\ntoken = "$CARGO_TOKEN"\n'),
    ("NuGet.Config", '<add key="ClearTextPassword" value="%NUGET_PASSWORD%" />'),
    ("gradle.properties", "mavenPassword=${MAVEN_PASSWORD}\norg.gradle.caching=true\n"),
])
def test_credential_files_holding_references_only_pass(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == []


@pytest.mark.parametrize("line", ['ENV MAVEN_OPTS="-Dmaven.repo.password=hunter22"',
                                  "RUN mvn -Dhttps.proxyPassword=s3cret deploy",
                                  "RUN java -Dapi.token=abc123 -jar app.jar"])
def test_a_java_system_property_with_a_secret_is_refused_in_the_dockerfile_and_build_args(tmp_path, line) -> None:
    assert _report(tmp_path, {}, dockerfile=f"FROM scratch\n{line}\n") == ["Dockerfile"]
    value = line.split(" ", 1)[1].split("=", 1)[1] if line.startswith("ENV") else line.split(" ", 2)[2]
    assert _report(tmp_path, {}, build_args={"JAVA_OPTS": value}) == ["buildArg:JAVA_OPTS"]


@pytest.mark.parametrize("line", ["RUN mvn -Dmaven.repo.password=$MAVEN_PASSWORD deploy",
                                  'ENV MAVEN_OPTS="-Dmaven.repo.password=${MAVEN_PASSWORD}"',
                                  "RUN java -Dpassword.policy.file=/etc/policy -jar app.jar"])
def test_java_system_properties_without_a_secret_pass(tmp_path, line) -> None:
    assert _report(tmp_path, {}, dockerfile=f"FROM scratch\n{line}\n") == []


# Credential files in every form their tools accept: (file name, content). Each holds the secret "hunter22".
CREDENTIAL_FILE_VARIANTS = [
    ("NuGet.Config", '<add value="hunter22" key="ClearTextPassword" />'),
    ("NuGet.Config", '<packageSourceCredentials><corp>\n  <add\n    value="hunter22"\n    key="ClearTextPassword"\n'
                     '  />\n</corp></packageSourceCredentials>'),
    ("nuget.config", "<add key='cleartextpassword'\tvalue='hunter22'/>"),
    ("gradle.properties", "mavenPassword hunter22\n"),
    ("gradle.properties", "mavenPassword\thunter22\n"),
    ("gradle.properties", "mavenPassword: hunter22\n"),
    ("gradle.properties", "mavenPassword=\\\n    hunter22\n"),
    ("gradle.properties", "mavenPassword=\\u0068unter22\n"),
    ("gradle.properties", "maven\\u0050assword=hunter22\n"),
    ("gradle.properties", "\fmavenPassword=hunter22\n"),
    ("gradle.properties", "gpr.key=hunter22\n"),
    ("gradle.properties", "gpr.user=me\r\ngpr.key = hunter22\r\n"),
    (".cargo/credentials.toml", 'registry.token = "hunter22"\n'),
    (".cargo/credentials.toml", 'registry = { token = "hunter22" }\n'),
    (".cargo/credentials.toml", '[registry]\ntoken = """hunter22"""\n'),
    (".cargo/credentials.toml", '[registry]\ntoken = """\nhunter22"""\n'),
    (".cargo/credentials.toml", '[registry]\n"token" = "hunter22"\n'),
    (".cargo/credentials.toml", "[registry]\ntoken = '''hunter22'''\n"),
    (".cargo/credentials", '[registries]\ncorp = { index = "sparse+https://c/", token = "hunter22" }\n'),
    (".cargo/credentials.toml", '[registries]\ncorp = { token = "hunter22" }\n'),
    (".yarnrc", '"//npm.corp/:_authToken": "hunter22"\n'),
    (".yarnrc", "//npm.corp/:_password hunter22 # the CI login\n"),
    (".gem/credentials", "---\n:github: Bearer hunter22\n"),
    (".gem/credentials", "---\nrubygems_api_key: hunter22\n"),
    (".gem/credentials", '---\n"https://rubygems.corp": hunter22\n'),
    (".gem/credentials", "---\n:\"https://rubygems.corp/\": 'hunter22'\n"),
    ("auth.json", '{"client-certificate": {"repo.corp": {"local_cert": "/c.pem", "passphrase": "hunter22"}}}'),
    ("auth.json", '{"forgejo-token": {"forgejo.corp": {"username": "me", "token": "hunter22"}}}'),
    ("auth.json", '{"custom-headers": {"repo.corp": ["API-TOKEN: hunter22"]}}'),
    ("auth.json", '{"http-basic": {"repo.corp": {"username": "u", "pass\\u0077ord": "hunter22"}}}'),
    ("auth.json", '{\n    "bearer": {\n        "repo.corp": "hunter22"\n    }\n}'),
    ("auth.json", '{"gitlab-token": {"gitlab.corp": "hunter22"}}'),
]


@pytest.mark.parametrize("name,text", CREDENTIAL_FILE_VARIANTS)
def test_credential_files_in_every_form_their_tools_accept_are_refused(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == [name]


CREDENTIAL_FILE_NON_SECRETS = [
    ("NuGet.Config", '<add key="Username" value="hunter22" />\n<add value="" key="ClearTextPassword" />'),
    ("NuGet.Config", '<add\n  value="%NUGET_PASSWORD%"\n  key="ClearTextPassword" />'),
    ("gradle.properties", "useSecret=false\nenableToken=true\nsigning.useGpgToken = FALSE\n"),
    ("gradle.properties", "org.gradle.jvmargs=-Xmx2g\norg.gradle.configuration-cache.token=abc\n"),
    ("gradle.properties", "mavenPassword=${MAVEN_PASSWORD}\ngpr.key=${GPR_KEY}\nsonarToken = \n"),
    ("gradle.properties", "# mavenPassword=hunter\n! gpr.key=hunter22\ntokenExpiry=3600\n"),
    ("gradle.properties", "mavenPassword=YOUR_PASSWORD\n"),
    (".cargo/credentials.toml", '[registry]\ntoken = ""\nregistry.token = "$CARGO_TOKEN"\n'),
    (".cargo/credentials.toml", '[registries.corp]\nindex = "sparse+https://c/"\ntokens_url = "https://c/t"\n'),
    (".yarnrc", '"//npm.corp/:_authToken" ${NPM_TOKEN} # set by CI\n'),
    (".yarnrc", '"//npm.corp/:_authToken": "${NPM_TOKEN}"\nalways-auth true\n'),
    (".gem/credentials", "---\n:rubygems_api_key: ${GEM_HOST_API_KEY}\n:github:\n# :corp: hunter22\n"),
    ("auth.json", '{"github-oauth": {"github.com": "${GITHUB_TOKEN}"}}'),
    ("auth.json", '{"gitlab-token": {"gitlab.corp": ""}, "bearer": {"r.corp": ""}}'),
    ("auth.json", '{"client-certificate": {"repo.corp": "/etc/ssl/client.pem"}}'),
    ("auth.json", '{"http-basic": {"repo.corp": {"username": "u", "password": "$COMPOSER_PASSWORD"}}}'),
]


@pytest.mark.parametrize("name,text", CREDENTIAL_FILE_NON_SECRETS)
def test_credential_files_without_a_credential_pass(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == []


def test_a_refused_credential_file_message_never_holds_the_secret(tmp_path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    for i, (name, text) in enumerate(CREDENTIAL_FILE_VARIANTS):
        (ctx / str(i) / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / str(i) / name).write_text(text)
    with pytest.raises(SensitiveFilesError) as err:
        with ContextScan(ctx, cache=False) as scan:
            scan.report({"JAVA_TOOL_OPTIONS": "-Djavax.net.ssl.keyStorePassword=\"hunter22\""})
    assert len(err.value.findings) == len(CREDENTIAL_FILE_VARIANTS) + 1
    text = str(err.value)
    assert "hunter22" not in text and "hunter" not in text.lower()


JVM_SECRETS = [
    '-Dhttps.proxyPassword="s3cret"', "-Dx.password='s3cret'", "-Daws.secretKey=wJalrXUtnFEMI",
    '-Djavax.net.ssl.keyStorePassword=\\"Hunt3rSecret\\"', "-Dsigning.passphrase=s3cret",
]


@pytest.mark.parametrize("prop", JVM_SECRETS)
def test_a_java_system_property_with_a_quoted_or_named_secret_is_refused_everywhere(tmp_path, prop) -> None:
    assert _report(tmp_path / "file", {"run.sh": f"exec java {prop} -jar app.jar\n"}) == ["run.sh"]
    assert _report(tmp_path / "dockerfile", {},
                   dockerfile=f"FROM scratch\nENV JAVA_TOOL_OPTIONS='{prop}'\n") == ["Dockerfile"]
    assert _report(tmp_path / "arg", {}, build_args={"OPTS": prop}) == ["buildArg:OPTS"]


def test_java_tool_options_with_a_quoted_password_is_refused(tmp_path) -> None:
    line = "ENV JAVA_TOOL_OPTIONS='-Djavax.net.ssl.keyStorePassword=\"Hunt3rSecret\"'"
    assert _report(tmp_path / "dockerfile", {}, dockerfile=f"FROM scratch\n{line}\n") == ["Dockerfile"]
    assert _report(tmp_path / "arg", {}, build_args={"OPTS": line.split("=", 1)[1]}) == ["buildArg:OPTS"]


@pytest.mark.parametrize("prop", [
    "-Dx.password=<your password>", '-Dx.password="<your password>"', "-Dx.password=***", "-Dx.password={password}",
    "-Dx.password=$PW", "-Dx.password=${PW}", '-Dx.password="${PW}"', "-Dx.password=$(cat /run/secrets/pw)",
    "-Dx.password=%PW%", "-Dx.password=YOUR_PASSWORD", "-Dapi.token=TOKEN_HERE", "-Dx.password=", '-Dx.password=""',
    "-Dtoken.file=/run/t", "-Dsecret.store.type=pkcs12",
])
def test_java_system_properties_holding_a_placeholder_pass(tmp_path, prop) -> None:
    assert _report(tmp_path, {"run.sh": f"exec java {prop} -jar app.jar\n"}, build_args={"OPTS": prop},
                   dockerfile=f"FROM scratch\nENV JAVA_OPTS='{prop}'\n") == []


def _padded(name: str, text: str, pad: int) -> bytes:
    """`text` after `pad` bytes of the format's own comment (inside the object for JSON), so the file is longer
    than the binary sniff and its lines fall on other window edges as `pad` moves."""
    if name.endswith(".json"):
        return ('{"_readme": "' + "x" * pad + '", ' + text.lstrip()[1:]).encode()
    if name.lower().endswith((".config", ".xml")):
        return ("<!--" + "x" * (pad - 8) + "-->\n" + text).encode()
    line = "#" + "x" * 62 + "\n"
    return (line * (pad // len(line)) + "#" * (pad % len(line)) + "\n" + text).encode()


@pytest.mark.parametrize("name,text", CREDENTIAL_FILE_VARIANTS + CREDENTIAL_FILE_NON_SECRETS + [
    ("run.sh", f"java {p} -jar a.jar\n") for p in JVM_SECRETS] + [("run.sh", "java -Dx.password=${PW} -jar a\n")])
def test_a_file_scanned_in_pieces_as_the_layer_audit_reads_it_gets_the_flags_of_a_whole_scan(name, text) -> None:
    from buildcontext import sensitive
    from imageaudit.audit import _SensitiveScan
    base = name.rsplit("/", 1)[-1]
    for pad in (8300, 8300 + 41, 8300 + 97):
        data = _padded(name, text, pad)
        whole = sensitive.scan_content(base, data)
        for size in (7, 64, 128, 129, 300, 4096):
            scan = _SensitiveScan(base)
            for i in range(0, len(data), size):
                scan(data[i:i + size])
            scan(b"")
            assert scan.flags == whole, (name, text, pad, size)
        assert bool(whole) is ((name, text) not in CREDENTIAL_FILE_NON_SECRETS and "${PW}" not in text), (name, text)


@pytest.mark.parametrize("name,text", [
    ("src/Main.java", 'args.add("-Dpassword=" + password);\ncmd.add("-Djavax.net.ssl.trustStorePassword=" + pass);\n'),
    ("src/Build.kt", 'val a = listOf("-Dtoken=", token)\nsystemProperty("-Dtoken=", System.getenv("T"))\n'),
    ("pom.xml", "<argLine>-Dpassword=${db.password}</argLine>\n"),
    ("run.sh", 'java -Dpassword=$1 -Dtoken="${API_TOKEN:?}" -Dsecret=${S:-x} -jar a.jar\n'),
    ("run.bat", "java -Dpassword=%1 -Dtoken=%~2 -jar a.jar\n"),
    (".npmrc", "//r.corp/:_authToken=${NPM_TOKEN?}\n"),
    (".yarnrc.yml", 'npmAuthToken: "${NPM_TOKEN:-}"\n'),
])
def test_source_code_building_a_property_and_shell_references_pass(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == []


# A secret assigned a literal value in any text, in the forms config files, scripts and code write it; the values are
# of other shapes than the ones any probe used (mixed case, signs, digits, base64), and the keys of other spellings.
ASSIGNED_SECRETS = [
    ("config/database.yml", "production:\n  adapter: postgresql\n  password: Zx9!kq2mW\n"),
    ("config/secrets.yaml", "db:\n  db_password: 'p4ss-W0rd'\n  host: db\n"),
    ("src/main/resources/application.properties", "spring.datasource.url=jdbc:h2:mem\nspring.datasource.password=Qm7#vL2x\n"),
    ("application.yml", "spring:\n  datasource:\n    password: \"Qm7vL2x9\"\n"),
    ("settings.py", "DATABASES = {'default': {'NAME': 'app', 'PASSWORD': 'Zx9kq2mW'}}\n"),
    ("wp-config.php", "define( 'DB_PASSWORD', 'Zx9kq2mW!' );\n"),
    ("config.rb", "  :password => 'Zx9kq2mW',\n"),
    ("main.go", 'cfg := Config{\n\tPassword: "Zx9kq2mW",\n}\nconst apiKey = "Ab12Cd34Ef"\n'),
    ("src/client.js", "const API_TOKEN = 'tok_4f9a8b7c6d';\n"),
    ("conf/app.xml", "<db>\n  <password>Zx9kq2mW</password>\n</db>\n"),
    ("Web.config", '<add name="db" connectionString="Server=db;User Id=app;Password=Zx9kq2mW;" />\n'),
    ("conn.txt", "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=" + "cXdlcnR5dWlvcA" * 6 + "==;\n"),
    ("appsettings.json", '{"Bus": "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=Root;'
                         'SharedAccessKey=abc123DEF456ghi789jkl="}'),
    ("deploy.sh", "#!/bin/sh\nexport GITHUB_TOKEN=Zx9kq2mW1234\n"),
    ("deploy.sh", 'curl -H "Authorization: Bearer abc123def456ghi" https://api.corp/\n'),
    ("backup.sh", "mysqldump --password Zx9kq2mW1 app > /b.sql\n"),
    ("hook.txt", "https://api.corp/v1/items?limit=5&access_token=Zx9kq2mW1234\n"),
    ("kube.yaml", "users:\n- user:\n    token: eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjaSJ9.c2lnbmF0dXJl\n"),
    ("ci/registry.json", '{"auths": {"r.corp:5000": {"auth": "Y2k6UEBzc3cwcmQtOTk="}}}'),
    ("npm.cfg", "_auth = Y2k6UEBzc3cwcmQtOTk=\n"),
    ("conf/.my.cnf", "[client]\nuser = app\npassword = \"hunter\"\n"),
    ("my.cnf", "[mysqld]\npassword=s3cr3t\n"),
    (".terraformrc", 'credentials "tfe.corp" {\n  token = "abcdef123456"\n}\n'),
    ("terraform.rc", 'credentials "app.terraform.io" {\n  token = "Zq7Xw3Vb9KZq7X.atlasv1.' + "Zq7Xw3Vb9K" * 6 + '"\n}\n'),
    ("env/vault.sh", "VAULT_TOKEN=hvs.CAESIAbCdEfGhIjKlMnOpQrStUv\n"),
    ("batch.txt", "hvb.AAAAAQJaBcDeFgHiJkLmNoPqRsTu\n"),
    ("notify.json", '{"url": "https://hooks.slack.com/services/T0AB12CD3/B0EF45GH6/aBcDeFgHiJkLmNoPqRsTuVwX"}'),
    ("gl.txt", "GITLAB=glpat-" + "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op" + "\n"),
    ("deploy.txt", "gldt-Ab1Cd2Ef3Gh4Ij5Kl6Mn7\n"),
    ("ai.env.sh", "OPENAI_KEY=sk-proj-Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8\n"),
    ("app.py", "app.config['SECRET_KEY'] = 'Wq8vN2pLx9'\n"),
    ("env.sh", "export SECRET_KEY_BASE='9f8e7d6c5b4a'\n"),
    ("a.yaml", "password: '!Wq8v#N2pL'\n"),
    ("beans.xml", '<property name="dataSource.password" value="Wq8vN2pLx9"/>\n'),
    ("conf/redis.conf", "port 6379\nrequirepass Zx9kq2mW\n"),
    ("redis.conf", 'masterauth "hunter"\n'),
]

ASSIGNED_NON_SECRETS = [
    # Locale files: a translation under a credential-named key is a word in any script, not a secret.
    ("locales/es.yml", "es:\n  password: Contraseña\n  token: Código\n"),
    ("locales/de.yml", "token: Zugangsschlüssel\npassword: Kennwörter\n"),
    ("locales/ru.json", '{"password": "Пароль", "token": "Токен"}\n'),
    ("locales/zh.json", '{"password": "密码", "secret": "秘密问题"}\n'),
    ("locales/ja.json", '{"password": "パスワード", "token": "トークンの有効期限が切れました"}\n'),
    ("config/app.ini", "password_min_length=8\ntoken_ttl: 3600\nPASSWORD_FIELD=password\nmax_tokens = 4096\n"),
    ("docs/setup.md", "Set `password: <your password>` and `token: ${API_TOKEN}`, `api_key: YOUR_API_KEY`.\n"
                      "password: ********\nsecret: ...\n"),
    ("config/database.yml", "production:\n  password: <%= ENV['DB_PASSWORD'] %>\n  secret_key_base: {{ .Values.s }}\n"),
    ("application.properties", "spring.datasource.password=${DB_PASSWORD}\nspring.x.client-secret=${X_SECRET}\n"),
    ("src/login.py", 'password = request.form["password"]\ntoken = generate_token(32)\nself.password = password\n'
                     'secret: str = ""\napi_key = os.environ.get("API_KEY")\nprivate_key: ed25519.Ed25519PrivateKey\n'
                     'pw_hash = hashlib.sha256(password.encode())\nkey = PKCS7PrivateKeyTypes\n'),
    ("src/login.ts", "const body = { password: hashedPassword2, token: req.headers.token };\npassword: string;\n"
                     "fetch(u, { credentials: 'include' })\n"),
    ("i18n/de.json", '{"password": "Passwort", "token": "Token", "forgot_password": "Passwort vergessen?"}\n'),
    ("k8s/deploy.yaml", "env:\n- name: DB_PASSWORD\n  valueFrom:\n    secretKeyRef:\n      name: db\n      key: password\n"),
    ("run.sh", 'PASSWORD=$(cat /run/secrets/db)\nexport TOKEN="$1"\nmysql --password="$DB_PASSWORD"\n'
               'pulumi config set --secret acr-publish:registryPassword "$PW"\nmysql --password-stdin app\n'),
    ("docs/api.md", "| password | string | the user's password |\n`auth: basic`\nauth: oauth2\n"),
    (".github/workflows/ci.yml", "with:\n  token: ${{ secrets.GITHUB_TOKEN }}\n  password: ${{ secrets.PW }}\n"),
    ("config.yml", "password_file: /run/secrets/db\nauth_url: https://id.example.com/token\nPWD=/app\n"
                   "token: ./secrets/token.txt\n"),
    ("examples.md", 'client = Client(password="YourPassword123", token="example-token-1234", secret="abcd****")\n'),
    ("app.json", '{"auth": "none", "mode": "oauth2", "token_type": "bearer", "token": "pulumi:providers:docker"}\n'),
    ("jwt.txt", 'jwt.encode(payload, "secret", algorithm="HS256")\nparser.add_argument("--access-token", type=str)\n'),
    ("conf/.my.cnf", "[client]\nuser = app\npassword =\n"),
    (".terraformrc", 'provider_installation {\n  network_mirror { url = "https://mirror.corp/" }\n}\n'),
    ("notes.txt", "hvs.short and hooks.slack.com/services/ are where the tokens go\n"),
    ("beans.xml", '<property name="password" value="${db.password}"/>\n<add key="ApiKey" value="example-1234"/>\n'),
    ("redis.conf", "# requirepass foobared\nport 6379\nrequirepass ${REDIS_PASSWORD}\n"),
]


@pytest.mark.parametrize("name,text", ASSIGNED_SECRETS)
def test_a_secret_assigned_a_value_is_refused_in_any_file(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == [name]


@pytest.mark.parametrize("name,text", ASSIGNED_NON_SECRETS)
def test_ordinary_config_code_and_docs_naming_secrets_pass(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: text}) == []


ASSIGNED_ARG_VALUES = [
    "password=pässwörd9", "token: Пароль2024",  # letters of any script with a digit are no word
    "password=Zx9kq2mW", "DB_PASS=Qm7#vL2x", "//npm.corp/:_authToken=npm-abc123XYZ", "--password=Zx9kq2mW",
    "api_key: Zx9kq2mW12", "spring.datasource.password=Qm7vL2x9",
    "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=" + "cXdlcnR5dWlvcA" * 6 + "==",
    "https://hooks.slack.com/workflows/T0AB12CD3/A0EF45GH6/123456789012/aBcDeFgH",
    "hvs.CAESIAbCdEfGhIjKlMnOpQrStUv", "hvb.AAAAAQJaBcDeFgHiJkLmNoPqRsTu",
    '{"auths":{"r":{"auth":"Y2k6UEBzc3cwcmQtOTk="}}}',
]


@pytest.mark.parametrize("value", ASSIGNED_ARG_VALUES)
def test_a_build_arg_value_assigning_a_secret_is_refused_whatever_its_name(tmp_path, value) -> None:
    for name in ("APP_ENV", "CONFIG"):
        assert _report(tmp_path, {}, build_args={name: value}) == [f"buildArg:{name}"], (name, value)


@pytest.mark.parametrize("value", ["password_min_length=8", "https://example.com/?token=${T}", "token_ttl=3600",
                                   "mode=password", "auth=none", "--password-file=/run/secrets/db"])
def test_build_arg_values_naming_secrets_without_one_pass(tmp_path, value) -> None:
    assert _report(tmp_path, {}, build_args={"APP_ENV": value}) == []


@pytest.mark.parametrize("line", ["ENV DB_PASSWORD=Zx9kq2mW1", 'RUN echo "password=Zx9kq2mW" > /etc/app.cnf',
                                  "ARG API_KEY=Ab12Cd34Ef", "RUN curl -o /a https://h/a?access_token=Zx9kq2mW12"])
def test_a_dockerfile_line_assigning_a_secret_is_refused(tmp_path, line) -> None:
    assert _report(tmp_path, {}, dockerfile=f"FROM scratch\n{line}\n") == ["Dockerfile"]


@pytest.mark.parametrize("line", ["ENV PASSWORD_MIN_LENGTH=8", 'RUN echo "//r/:_authToken=${NPM_TOKEN}" > .npmrc',
                                  "ARG NPM_TOKEN", "ENV TOKEN_FILE=/run/secrets/token"])
def test_dockerfile_lines_naming_secrets_without_one_pass(tmp_path, line) -> None:
    assert _report(tmp_path, {}, dockerfile=f"FROM scratch\nARG NPM_TOKEN\n{line}\n") == []


@pytest.mark.parametrize("name", [".pgpass", "home/.pgpass", ".vault-token", "conf/.htpasswd", "conf/users.htpasswd",
                                  "keystore.jks", "android/app/release.keystore", "certs/app.JKS", "k.jceks", "k.bks",
                                  ".mylogin.cnf", ".terraform.d/credentials.tfrc.json"])
def test_credential_stores_are_refused_by_their_name(tmp_path, name) -> None:
    ctx = tmp_path / "ctx"
    (ctx / name).parent.mkdir(parents=True, exist_ok=True)
    (ctx / name).write_bytes(b"\xfe\xed\xfe\xed\0binary" if name.lower().endswith(("jks", "store", "bks")) else b"x\n")
    assert _report(tmp_path, {}) == [name]


@pytest.mark.parametrize("name", ["docs/pgpass.md", "vault-token.md", "htpasswd.go", "jks.txt", "keystore.py"])
def test_files_merely_named_after_a_credential_store_pass(tmp_path, name) -> None:
    assert _report(tmp_path, {name: "about the file\n"}) == []


def test_a_refused_assignment_names_the_file_the_rule_and_the_fix_and_never_the_value(tmp_path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "config").mkdir()
    (ctx / "config" / "database.yml").write_text("production:\n  password: Zx9!kq2mW\n")
    with pytest.raises(SensitiveFilesError) as err:
        with ContextScan(ctx, cache=False) as scan:
            scan.report({"APP_CONFIG": "password=Qm7#vL2x"})
    text = str(err.value)
    assert "config/database.yml" in text and "assigned a literal value" in text
    assert "  config/database.yml\n" in text and "allowSensitive" in text and "buildArg:APP_CONFIG" in text
    assert "COPY --from=<builder>" in text
    assert "Zx9!kq2mW" not in text and "Qm7#vL2x" not in text


def whole_scans_agreeing_with_pieces(name: str, text: str, step: int) -> list[int]:
    """The whole scan's flags of `text` padded across a window edge (every `step` bytes), each asserted equal to
    what a scan in pieces of 64, 129 and 300 bytes finds (the layer audit's)."""
    from buildcontext import sensitive
    from imageaudit.audit import _SensitiveScan
    base = name.rsplit("/", 1)[-1]
    found = []
    for pad in range(8300, 8300 + 130, step):
        data = _padded(name, text, pad)
        whole = sensitive.scan_content(base, data)
        for size in (64, 129, 300):
            scan = _SensitiveScan(base)
            for i in range(0, len(data), size):
                scan(data[i:i + size])
            scan(b"")
            assert scan.flags == whole, (name, text, pad, size)
        found.append(whole)
    return found


@pytest.mark.parametrize("name,text", ASSIGNED_SECRETS + ASSIGNED_NON_SECRETS)
def test_a_file_scanned_in_pieces_gets_the_assignment_verdict_of_a_whole_scan(name, text) -> None:
    for whole in whole_scans_agreeing_with_pieces(name, text, 7):
        assert bool(whole) is ((name, text) in ASSIGNED_SECRETS), (name, text)


COMMAND_LINE_PASSWORDS = [
    "docker login -u ci -p Zq7s3cret9 registry.corp", "podman login --username ci -p 'Zq7s3cret9' registry.corp",
    "helm registry login r.corp -u ci --password=Zq7s3cret9", "curl -fsSL -u u:Zq7s3cret9 https://repo.corp/x",
    'curl --user "deploy:Zq7s3cret9" https://repo.corp/x', "mysql -h db -u root -pZq7s3cret9 app",
    "mysqldump -uroot -p'Zq7s3cret9' app", "sshpass -p Zq7s3cret9 ssh ci@host true",
    "docker login \\\n  -u ci \\\n  -p Zq7s3cret9 registry.corp",
    "curl -uadmin:S3cr3tPass1 https://repo.corp/x", "mysql -uroot -p'S3cr3t Pass1' app",
    "echo 'root:S3cr3tPass1' | chpasswd", "printf 'ci:S3cr3tPass1' | sudo chpasswd",
    "htpasswd -bc /etc/nginx/htpasswd admin S3cr3tPass1", "htpasswd -b /etc/nginx/htpasswd admin S3cr3tPass1",
    "htpasswd -Bbn admin S3cr3tPass1 > auth/htpasswd", "redis-cli -h cache -a S3cr3tPass1 ping",
    "skopeo copy --dest-creds ci:S3cr3tPass1 oci:a docker://r.corp/a", "skopeo copy --src-creds=ci:S3cr3tPass1 a b",
    "skopeo inspect --creds 'ci:S3cr3tPass1' docker://r.corp/a", "podman pull --creds ci:S3cr3tPass1 r.corp/a",
]
COMMAND_LINE_REFERENCES = [
    'docker login -u ci -p "$PASS" registry.corp', "docker login -u ci --password-stdin registry.corp",
    "docker login -u USER -p PASSWORD registry.example", "mysql -h db -u root -p app", 'mysql -p"$MYSQL_PWD" app',
    'curl -u "$USER:$TOKEN" https://repo.corp/x', "curl -u ci: https://repo.corp/x", "sshpass -e ssh ci@host",
    "sshpass -p $(cat /run/secrets/pw) ssh h", "docker login -p flag is insecure: use --password-stdin",
    'curl -u"$USER:$TOKEN" https://repo.corp/x', 'echo "root:$ROOT_PASSWORD" | chpasswd', "echo root:root | chpasswd",
    'htpasswd -Bbn admin "$ADMIN_PASSWORD" > auth/htpasswd', "htpasswd -c /etc/nginx/htpasswd admin",
    'redis-cli -a "$REDIS_PASSWORD" ping', "redis-cli --askpass ping",
    'skopeo copy --dest-creds "$REG_USER:$REG_PASSWORD" a b', "skopeo copy --dest-creds ci:${{ secrets.REG }} a b",
]


@pytest.mark.parametrize("line", COMMAND_LINE_PASSWORDS)
def test_a_password_on_a_command_line_is_refused_in_a_run_line_and_a_script(tmp_path, line) -> None:
    assert _report(tmp_path, {"ci/login.sh": line + "\n"}, dockerfile=f"FROM scratch\nRUN {line}\n") == [
        "ci/login.sh", "Dockerfile"]


@pytest.mark.parametrize("line", COMMAND_LINE_REFERENCES)
def test_a_command_line_password_reference_or_prompt_passes(tmp_path, line) -> None:
    assert _report(tmp_path, {"ci/login.sh": line + "\n"}, dockerfile=f"FROM scratch\nRUN {line}\n") == []


PASSWORD_HASHES = [
    "admin:$2y$05$" + "aB3./cD4" * 6 + "eF5gH\n", "ci:$apr1$Zq7s3cr$" + "aB3./cD4eF5gH6iJ7kL8mN" + "\n",
    "ci:{SHA}" + "qUqP5cyxm6YcTAhz05Hph5gvu9M=" + "\n", "root:$6$salt1234$" + "aB3./cD4eF5" * 8 + ":19000:0:99999:7:::\n",
    "RUN echo 'root:$6$salt1234$" + "aB3./cD4eF5" * 8 + "' | chpasswd -e\n",
    "RUN useradd -m -p '$6$salt1234$" + "aB3./cD4eF5" * 8 + "' app\n",
    "root:$y$j9T$" + "aB3./cD4eF5gH6iJ7kL8mN" + "$" + "aB3./cD4eF5" * 3 + "gH6iJ7kL8m\n",
    "          usermod -p '$y$j9T$" + "aB3./cD4eF5gH6iJ7kL8mN" + "$" + "aB3./cD4eF5" * 3 + "gH6iJ7kL8m' app\n",
]


@pytest.mark.parametrize("text", PASSWORD_HASHES)
@pytest.mark.parametrize("name", ["auth/htpasswd", "registry/users.txt"])
def test_password_hashes_are_refused_in_a_file_of_any_name(tmp_path, name, text) -> None:
    assert _report(tmp_path, {name: "# users\n" + text}) == [name]


@pytest.mark.parametrize("text", ["# generate with: htpasswd -Bbn user pass > auth/htpasswd\n",
                                  "hashes look like user:$2y$05$... (bcrypt)\n", "root:x:0:0:root:/root:/bin/sh\n",
                                  "root:*:19000:0:99999:7:::\n",
                                  "yescrypt hashes start with $y$ and SHA-512 ones with $6$ (crypt(5))\n",
                                  "RUN useradd -m -p \"$(openssl passwd -6 -stdin < /run/secrets/pw)\" app\n"])
def test_a_password_file_without_a_hash_passes(tmp_path, text) -> None:
    assert _report(tmp_path, {"auth/htpasswd": text}) == []


URL_TOKEN_USERS = ["https://Zq7s3cret9Abcdef@pypi.corp/simple",
                   "https://0123456789abcdef0123456789abcdef01234567@git.corp/org/repo.git"]
URL_USER_NAMES = ["git clone ssh://git@github.com/org/repo.git", "git@github.com:org/repo.git",
                  "https://x-access-token@github.com/org/repo", "mail deploy-user-2024@example.com",
                  "https://oauth2accesstoken@gcr.example/v2/", "https://deploybot2024@git.corp/org/repo.git",
                  "https://${GIT_TOKEN}@git.corp/org/repo.git"]


@pytest.mark.parametrize("url", URL_TOKEN_USERS)
def test_a_url_whose_user_part_is_a_token_is_refused_in_a_file_and_a_build_arg(tmp_path, url) -> None:
    assert _report(tmp_path, {"pip.conf": f"[global]\nindex-url = {url}\n"}, build_args={"INDEX": url}) == [
        "pip.conf", "buildArg:INDEX"]


@pytest.mark.parametrize("url", URL_USER_NAMES)
def test_a_url_or_address_with_a_user_name_passes(tmp_path, url) -> None:
    assert _report(tmp_path, {"notes.txt": url + "\n"}, build_args={"INDEX": url}) == []
