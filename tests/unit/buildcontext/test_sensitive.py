"""The sensitive-file guard: each rule both ways, the error message, allowSensitive, masking, and that
the guard rides on the digest's walk and cache.

Secret-looking strings are assembled at run time so this file itself holds no key material a scanner
would (rightly) complain about.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cli import explain as explain_cli
from buildcontext import sensitive
from buildcontext import content_tag, context_digest
from buildcontext.context import ContextScan, SensitiveFilesError
from buildcontext.digest import TREE_CHUNK
from buildcontext.dockerignore import walk_context
from buildcontext.hashing import READ_SIZE


def find_sensitive(root: Path, *, allow_sensitive=()) -> list[sensitive.Finding]:
    """The guard's refused findings for `root`, through the engine's one entry (as the explain CLI asks)."""
    with ContextScan(root) as scan:
        return scan.sensitive(allow_sensitive)


def check_context(root: Path, dockerfile: Path | None = None, *, allow_sensitive=(), build_args=None, target=None,
                  platform="linux/amd64"):
    """One image's report for `root`, through the engine's one entry (as plan_builds asks)."""
    with ContextScan(root, dockerfile) as scan:
        return scan.report(build_args, target, platform, allow_sensitive)

BEGIN, END = "-----BEGIN ", "-----END "
AK = "LTAI" + "5tQfAkEkEy0123456"  # LTAI + 17 letters/digits: the shape of a real AccessKey id
KEY_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun"


def pem(kind: str) -> str:
    label = f"{kind} PRIVATE KEY" if kind else "PRIVATE KEY"
    return f"{BEGIN}{label}-----\n{KEY_BODY}\n{END}{label}-----\n"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ACR_PUBLISH_CACHE_DIR", str(tmp_path / "cache"))


def tree(root: Path, files: dict[str, str | bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    files = {"Dockerfile": "FROM scratch\nCOPY . /\n", **files}
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
    return root


def flagged(tmp_path: Path, files: dict[str, str | bytes]) -> dict[str, str]:
    root = tree(tmp_path / "ctx", files)
    return {f.path: f.reason for f in find_sensitive(root)}


# ---------------------------------------------------------------- content rules

@pytest.mark.parametrize("kind", ["RSA", "OPENSSH", "EC", "DSA", "ENCRYPTED", ""])
def test_pem_private_keys_of_every_type_are_flagged(tmp_path, kind):
    assert "private key" in flagged(tmp_path, {"certs/server.txt": pem(kind)})["certs/server.txt"]


def test_pgp_and_putty_private_keys_are_flagged(tmp_path):
    found = flagged(tmp_path, {"a.asc": f"{BEGIN}PGP PRIVATE KEY BLOCK-----\nxx\n",
                               "b.ppk": "PuTTY-User-Key-" + "File-3: ssh-ed25519\nEncryption: none\n"})
    assert set(found) == {"a.asc", "b.ppk"}


@pytest.mark.parametrize("text", [
    f"{BEGIN}PUBLIC KEY-----\nMIIB\n{END}PUBLIC KEY-----\n",
    f"{BEGIN}CERTIFICATE-----\nMIIB\n{END}CERTIFICATE-----\n",
    "# load the private key from the vault, never from this repo\n",
    "PRIVATE KEY----- without a BEGIN line\n",
])
def test_public_material_and_prose_are_not_flagged(tmp_path, text):
    assert flagged(tmp_path, {"notes.txt": text}) == {}


def test_binary_files_are_not_scanned(tmp_path):
    # git's rule: a NUL in the first 8000 bytes makes a file binary; its content is not scanned
    assert flagged(tmp_path, {"blob.bin": b"\0\1\2" + pem("RSA").encode() + AK.encode()}) == {}
    assert "private key" in flagged(tmp_path / "t", {"blob.txt": b"\1\2" + pem("RSA").encode()})["blob.txt"]


def test_key_deep_inside_a_large_text_file_and_across_a_chunk_boundary(tmp_path):
    filler = (b"x" * 99 + b"\n") * ((TREE_CHUNK * 2) // 100)
    marker = pem("RSA").encode()
    cut = TREE_CHUNK - 12  # the marker straddles the first chunk boundary
    split = filler[:cut] + marker + filler[cut:]
    late = filler + b"\n" + AK.encode() + b"\n"
    found = flagged(tmp_path, {"split.log": split, "late.log": late, "clean.log": filler})
    assert set(found) == {"split.log", "late.log"}
    assert "private key" in found["split.log"] and "AccessKey" in found["late.log"]


@pytest.mark.parametrize("text,hit", [
    (f"ALIBABA_CLOUD_ACCESS_KEY_ID={AK}\n", True),
    (f"key: '{AK}'", True),
    ("LTAI" + "a" * 12, True),   # the shortest id
    ("LTAI" + "a" * 30, True),   # the longest id
    ("LTAI" + "a" * 11, False),  # too short
    ("LTAI" + "a" * 31, False),  # too long: not word-bounded within 30
    ("x" + AK, False),           # not word-bounded on the left
    ("LTAI_" + "a" * 16, False),
    ("a LTAI is not a key", False),
    # Boundaries are letters and digits only: '_' (identifiers, env names) does not hide an id.
    (f"AK_{AK}", True),
    (f"{AK}_old", True),
    (f"ALIBABA_AK_{AK}_BACKUP=1", True),
    ("key_LTAI" + "a" * 30 + "_x", True),
    ("key_LTAI" + "a" * 31 + "_x", False),  # 31 letters: longer than any id, also between underscores
    ("LTAI" + "a" * 40, False),
    ("7" + AK, False),                       # a digit on the left extends the token
    (AK + "9" * 14, False),                  # ... and on the right, past 30
])
def test_alibaba_access_key_ids(tmp_path, text, hit):
    found = flagged(tmp_path, {"settings.py": text})
    assert ("settings.py" in found) is hit
    if hit:
        assert "Alibaba Cloud AccessKey id (LTAI****)" in found["settings.py"]


# ---------------------------------------------------------------- name rules

@pytest.mark.parametrize("rel", [".env", ".env.production", "svc/.env", "svc/.env.local", "id_rsa", "id_dsa",
                                 "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk", "home/.ssh/id_rsa",
                                 ".aws/credentials", "x/.aws/credentials", ".docker/config.json",
                                 "terraform.tfstate", "infra/prod.tfstate", "terraform.tfstate.backup",
                                 "Pulumi.dev.yaml", "infra/Pulumi.prod.yaml", "certs/client.p12", "c.pfx",
                                 ".git-credentials",
                                 # direnv, any case, every Terraform state file name
                                 ".envrc", "svc/.envrc", ".ENV", ".Env.Production", "ID_RSA", "Id_Ed25519",
                                 "X.P12", ".AWS/Credentials", ".Docker/Config.json", ".GIT-CREDENTIALS",
                                 "TERRAFORM.TFSTATE", "terraform.tfstate.json", "infra/terraform.tfstate.1700000000.backup",
                                 "PROD.TFSTATE.BACKUP", "pulumi.dev.yaml", "PULUMI.PROD.YAML"])
def test_sensitive_names_are_flagged(tmp_path, rel):
    assert rel in flagged(tmp_path, {rel: "placeholder\n"})


@pytest.mark.parametrize("rel", [".env.example", ".env.sample", ".env.template", ".env.dist", "env",
                                 ".environment", "id_rsa.pub", "id_ed25519.pub", "rsa_id", "credentials",
                                 ".aws/config", "config.json", "docker/config.json", "tfstate.md",
                                 "Pulumi.yaml", "pulumi.yaml", ".ENV.EXAMPLE", ".gitignore", ".github/workflows/ci.yml",
                                 ".gitattributes", "src/.git_keep", "tfstate.json", "terraform.tf", ".envrc.example"])
def test_lookalike_names_are_not_flagged(tmp_path, rel):
    assert flagged(tmp_path, {rel: "placeholder\n"}) == {}


def test_env_templates_are_still_scanned_for_content(tmp_path):
    found = flagged(tmp_path, {".env.example": f"ACCESS_KEY_ID={AK}\n"})
    assert "AccessKey" in found[".env.example"]


TEMPLATES = [".env.example", ".env.sample", ".env.template", ".env.dist"]


@pytest.mark.parametrize("name", TEMPLATES)
@pytest.mark.parametrize("content,reason", [
    (f"ALIBABA_CLOUD_ACCESS_KEY_ID={AK}\n", "contains an Alibaba Cloud AccessKey id"),
    (f"TLS_KEY=\"{pem('RSA')}\"\n", "contains a private key"),
])
def test_an_env_template_holding_a_secret_is_refused(tmp_path, name, content, reason):
    """The templates' exemption is by name only: a build that would ship one holding a key is refused."""
    root = tree(tmp_path / "ctx", {f"config/{name}": content, "app.py": "print()\n"})
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root)
    [finding] = err.value.findings
    assert finding.path == f"config/{name}" and finding.reason.startswith(reason), finding
    assert AK not in str(err.value) and KEY_BODY not in str(err.value)


@pytest.mark.parametrize("name", TEMPLATES)
def test_a_placeholder_env_template_ships(tmp_path, name):
    root = tree(tmp_path / "ctx", {name: "ALIBABA_CLOUD_ACCESS_KEY_ID=\nDB_PASSWORD=change-me\n"})
    assert check_context(root).allowed == ()


def test_a_refused_env_file_names_the_templates_that_ship(tmp_path):
    found = flagged(tmp_path, {".env.production": "A=1\n"})
    assert ".env.example" in found[".env.production"] and "allowed" in found[".env.production"]


@pytest.mark.parametrize("name,text,hit", [
    (".npmrc", "//npm.example.test/:_authToken=npm_abcdef0123456789\n", True),
    (".npmrc", "_auth=dXNlcjpwYXNz\nalways-auth=true\n", True),
    (".npmrc", "//npm.example.test/:_password=cGFzcw==\n", True),
    (".npmrc", "//npm.example.test/:_authToken=${NPM_TOKEN}\n", False),  # an env reference holds no token
    (".npmrc", "registry=https://npm.example.test/\nsave-exact=true\n", False),
    (".npmrc", "; _authToken=commented-out\n", False),
    (".pypirc", "[pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmc\n", True),
    (".pypirc", "[distutils]\nindex-servers = pypi\n[pypi]\nusername = __token__\n", False),
    (".netrc", "machine git.example.test login me password hunter2\n", True),
    (".netrc", "machine git.example.test login me\n", False),
])
def test_credential_files_only_when_they_hold_credentials(tmp_path, name, text, hit):
    found = flagged(tmp_path, {f"cfg/{name}": text})
    assert (f"cfg/{name}" in found) is hit, found


def test_upper_case_git_directory_is_reported(tmp_path):
    assert set(flagged(tmp_path, {".GIT/HEAD": "x", "src/.Pulumi/x.json": "{}"})) == {".GIT/", "src/.Pulumi/"}


def test_credential_files_are_matched_whatever_their_case(tmp_path):
    assert "npm auth token" in flagged(tmp_path, {".NPMRC": "_authToken=abc\n"})[".NPMRC"]


# Assembled at run time (see the module docstring); each has the exact shape of its format.
TOKENS = {
    "github": "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8",
    "github-fine-grained": "github_pat_" + "11ABCDEFG0a1B2c3D4e5F6" + "_" + "a1B2c3D4e5" * 5 + "x1y2z3w4e",
    "gitlab": "glpat-" + "Ab3dEf6hIj9lMn2pQr5t",
    "aws": "AKIA" + "IOSFODNN7EXAMPL2",
    "slack": "xoxb-" + "1234567890-abcdefghij",
    "npm": "npm_" + "a1B2c3D4e5" * 3 + "F6g7H8",
    "pypi": "pypi-AgEIcHlwaS5vcmc" + "CJDc4YmM0ZTUyLTQ" * 4,
    "google": "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6q",
    "stripe": "sk_" + "live_" + "4eC39HqLyjWDarjtT1zdp7dc",
}


@pytest.mark.parametrize("name", sorted(TOKENS))
def test_known_token_formats_in_file_content(tmp_path, name):
    token = TOKENS[name]
    found = flagged(tmp_path, {"app/settings.py": f"TOKEN = '{token}'\n"})
    assert "access token of a known format" in found["app/settings.py"]
    assert flagged(tmp_path / "longer", {"a.txt": f"x{token}y9\n"}) == {}, "a longer run is not that token"


def test_token_lookalikes_are_not_flagged(tmp_path):
    assert flagged(tmp_path, {"a.md": "use ghp_ tokens, AKIA prefixes and npm_ packages; sk_live_ is Stripe's\n",
                              "b.txt": "ghp_" + "a" * 35 + "\n"}) == {}


KUBECONFIG = ("apiVersion: v1\nkind: Config\nclusters:\n- cluster: {server: 'https://k.example.test'}\n  name: c\n"
              "users:\n- name: u\n  user:\n")


@pytest.mark.parametrize("user,hit", [
    ("    client-key-data: " + "TFMwdExTMUNSVWRKVGlCUw==\n", True),
    ("    token: " + "eyJhbGciOiJSUzI1NiJ9.abc\n", True),
    ("    password: hunter2\n", True),
    ("    client-certificate-data: TFMwdExT\n    exec: {command: aws}\n", False),
    ("    token:\n", False),
])
def test_kubeconfig_with_credentials_whatever_its_name(tmp_path, user, hit):
    found = flagged(tmp_path, {"deploy/cluster.yaml": KUBECONFIG + user, ".kube/config": KUBECONFIG + user})
    assert (set(found) == {"deploy/cluster.yaml", ".kube/config"}) is hit, found
    if hit:
        assert "kubeconfig holding credentials" in found[".kube/config"]
        assert "hunter2" not in found[".kube/config"]


def test_token_in_other_yaml_is_not_a_kubeconfig(tmp_path):
    assert flagged(tmp_path, {"ci.yml": "steps:\n  - token: ${{ secrets.X }}\nusers:\n  - a\n"}) == {}


def test_terraform_state_by_content_whatever_its_name(tmp_path):
    state = '{\n  "version": 4,\n  "terraform_version": "1.9.0",\n  "serial": 3,\n  "lineage": "3f2a",\n  "resources": []\n}\n'
    found = flagged(tmp_path, {"backup/state.json": state, "other.json": '{"terraform_version": "1.9.0"}\n'})
    assert set(found) == {"backup/state.json"} and "Terraform state" in found["backup/state.json"]


def test_git_and_pulumi_directories_are_reported_once_each(tmp_path):
    files = {".git/HEAD": "ref: refs/heads/main\n", ".git/config": "[core]\n", ".git/objects/ab/cd": "x",
             "vendor/lib/.git/HEAD": "x", ".pulumi/stacks/dev.json": "{}", "src/app.py": "print()\n",
             "mod/.git": "gitdir: ../.git/modules/mod\n"}  # a submodule's .git FILE only points elsewhere
    found = flagged(tmp_path, files)
    assert set(found) == {".git/", "vendor/lib/.git/", ".pulumi/"}
    assert "(3 files)" in found[".git/"] and "(1 file)" in found["vendor/lib/.git/"]


def test_symlinks_are_not_flagged_by_name(tmp_path):
    root = tree(tmp_path / "ctx", {"ok.txt": "fine\n"})
    os.symlink("/run/secrets/env", root / ".env")
    assert find_sensitive(root) == []


def test_dockerignored_files_are_not_flagged(tmp_path):
    root = tree(tmp_path / "ctx", {".env": "A=1\n", ".git/HEAD": "x", "app.py": "print()\n",
                                   ".dockerignore": ".env\n.git\n"})
    assert find_sensitive(root) == []


def test_the_suggested_fix_lines_really_exclude_every_finding(tmp_path):
    files = {".env": "A=1\n", "svc/.env.prod": "B=2\n", "odd [name]/id_rsa": "x", "#hash/.env": "x",
             "up/.ENV": "x", "up/X.TFSTATE": "{}", "up/a.tfstate": "{}", "up/terraform.tfstate.json": "{}",
             "up/PULUMI.dev.yaml": "x", ".envrc": "export A=1\n",
             "!bang/.env": "x", "infra/a.tfstate": "{}", "infra/Pulumi.dev.yaml": "config: {}\n",
             ".git/HEAD": "x", "sub dir/.pulumi/x.json": "{}", "keys/k.txt": pem("EC"), "conf.py": AK,
             "keep.txt": "keep\n", "svc/.env.example": "A=\n"}
    root = tree(tmp_path / "ctx", files)
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root)
    fixes = [f.fix for f in err.value.findings]
    (root / ".dockerignore").write_text("\n".join(fixes) + "\n")
    check_context(root)  # no longer raises
    sent = {e.rel for e in walk_context(root)}
    assert {"keep.txt", "svc/.env.example", "Dockerfile"} <= sent, "a fix line excluded more than its finding"
    assert "up/a.tfstate" not in sent and "up/X.TFSTATE" not in sent  # Docker matches case-sensitively


# ---------------------------------------------------------------- the error a person acts on

def test_error_lists_every_file_reason_and_fix_and_never_the_secret(tmp_path):
    root = tree(tmp_path / "ctx", {".env": "DB_PASSWORD=hunter2\n", "deploy/key.pem": pem("OPENSSH"),
                                   "app/config.py": f"AK = '{AK}'\n", ".git/HEAD": "x", "ok.py": "print()\n"})
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root)
    msg = str(err.value)
    for path, reason, fix in [(".env", "dotenv", ".env"), ("deploy/key.pem", "private key", "deploy/key.pem"),
                              ("app/config.py", "AccessKey id (LTAI****)", "app/config.py"),
                              (".git/", "git repository", ".git")]:
        line = next((ln for ln in msg.splitlines() if ln.strip().startswith(path + " ")), None)
        assert line is not None and reason in line, f"{path} / {reason} missing from:\n{msg}"
        assert f"\n  {fix}\n" in msg + "\n", f"fix line {fix!r} missing from:\n{msg}"
    assert "ok.py" not in msg
    assert str(root / ".dockerignore") in msg
    assert "allowSensitive" in msg and "4 sensitive paths" in msg
    for secret in (AK, AK[4:], KEY_BODY, "hunter2"):
        assert secret not in msg, "the error must never print secret material"
    assert isinstance(err.value, ValueError)
    assert [f.path for f in err.value.findings] == [".env", ".git/", "app/config.py", "deploy/key.pem"]


def test_error_names_the_dockerfile_specific_ignore_file_when_in_use(tmp_path):
    root = tree(tmp_path / "ctx", {".env": "A=1\n", "Dockerfile.dockerignore": "*.md\n"})
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root)
    assert str(root / "Dockerfile.dockerignore") in str(err.value)


# ---------------------------------------------------------------- allowSensitive

def test_allow_sensitive_exact_path_and_directory(tmp_path):
    root = tree(tmp_path / "ctx", {".env.production": "A=1\n", "fixtures/keys/test.key": pem("RSA"),
                                   "fixtures/keys/other.key": pem("EC"), ".git/HEAD": "x"})
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root, allow_sensitive=[".env.production", "fixtures/keys"])
    assert [f.path for f in err.value.findings] == [".git/"]
    report = check_context(root, allow_sensitive=["./.env.production", "fixtures/keys/", ".git"])
    assert [f.path for f in report.allowed] == [".env.production", ".git/", "fixtures/keys/other.key",
                                                "fixtures/keys/test.key"]


def test_allow_sensitive_is_exact_not_a_string_prefix(tmp_path):
    root = tree(tmp_path / "ctx", {".env.prod": "A=1\n", ".env.production": "A=1\n"})
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root, allow_sensitive=[".env.prod"])
    assert [f.path for f in err.value.findings] == [".env.production"]


def test_allowing_part_of_a_git_directory_still_refuses_the_rest(tmp_path):
    root = tree(tmp_path / "ctx", {".git/HEAD": "x", ".git/config": "y"})
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root, allow_sensitive=[".git/HEAD"])
    assert err.value.findings[0].path == ".git/" and "(1 file)" in err.value.findings[0].reason


@pytest.mark.parametrize("bad", [".", "/", "..", "../secrets", "", "   "])
def test_allow_sensitive_rejects_entries_that_would_disable_the_guard(tmp_path, bad):
    root = tree(tmp_path / "ctx", {"a.txt": "a"})
    with pytest.raises(ValueError, match="allowSensitive entry"):
        check_context(root, allow_sensitive=[bad])


# ---------------------------------------------------------------- one walk, one read

def test_check_context_report_matches_the_digest(tmp_path):
    root = tree(tmp_path / "ctx", {"a.txt": "aaa", "b/c.txt": "cc"})
    os.symlink("a.txt", root / "l")
    report = check_context(root, build_args={"A": "1"}, target="t", platform="linux/arm64")
    assert report.tag == content_tag(context_digest(root, build_args={"A": "1"}, target="t",
                                                            platform="linux/arm64", cache=False))
    assert report.allowed == ()
    with ContextScan(root) as scan:
        assert scan.file_count == 4
        assert scan.total_bytes == len("FROM scratch\nCOPY . /\n") + 3 + 2 + len("a.txt")


def test_guard_reuses_the_cache_unchanged_files_are_not_read_again(tmp_path, monkeypatch, short_racy_window):
    root = tree(tmp_path / "ctx", {"conf.py": f"K = '{AK}'\n", "key.txt": pem("RSA"), "ok.py": "x = 1\n"})
    hour_ago = 1_700_000_000 * 10**9
    for p in root.rglob("*"):
        os.utime(p, ns=(hour_ago, hour_ago))
    short_racy_window()  # trusted only once the ctimes utime moved are out of the racy window
    with pytest.raises(SensitiveFilesError) as first:
        check_context(root)
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: (opened.append(os.fsdecode(p)), real_open(p, *a, **k))[1])
    with pytest.raises(SensitiveFilesError) as second:
        check_context(root)
    assert second.value.findings == first.value.findings
    assert not [p for p in opened if p.startswith(str(root) + os.sep)], opened


def test_fix_lines_escape_pattern_characters():
    assert sensitive.dockerignore_escape("a*b/[x]?.env") == "a\\*b/\\[x\\]\\?.env"
    assert sensitive.dockerignore_escape("#x") == "\\#x"
    assert sensitive.dockerignore_escape("!x") == "\\!x"


def test_cached_verdict_follows_every_change_of_the_file_set(tmp_path):
    root = tree(tmp_path / "ctx", {"app.py": "print()\n", "conf.py": "X = 1\n"})
    for p in root.rglob("*"):
        os.utime(p, ns=(1_700_000_000 * 10**9,) * 2)
    check_context(root)
    check_context(root)  # warm: the verdict comes from the cache
    (root / ".env").write_text("A=1\n")
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root)
    assert [f.path for f in err.value.findings] == [".env"]
    (root / ".env").unlink()
    (root / "conf.py").write_text(f"X = '{AK}'\n")  # content, not name: found while hashing
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root)
    assert [f.path for f in err.value.findings] == ["conf.py"]
    with pytest.raises(SensitiveFilesError):
        check_context(root)  # and still refused once the cache vouches for the file
    (root / "conf.py").write_text("X = 1\n")
    check_context(root)


@pytest.mark.parametrize("token,ends_at,hit", [
    # 'LTAI' + 30 letters end exactly at the first read boundary: only the next read shows whether the run goes on.
    ("LTAI" + "a" * 31, READ_SIZE + 1, False),
    ("LTAI" + "a" * 30, READ_SIZE, True),
    # The next read's window starts SCAN_OVERLAP bytes back, here exactly at 'LTAI': the 'x' before it is unseen.
    ("x" + "LTAI" + "a" * 16, READ_SIZE - sensitive.SCAN_OVERLAP + 20, False),
    ("_" + "LTAI" + "a" * 16, READ_SIZE - sensitive.SCAN_OVERLAP + 20, True),
])
def test_access_key_id_bounds_are_judged_across_read_boundaries(tmp_path, token, ends_at, hit):
    # Files above TREE_CHUNK are read and scanned READ_SIZE bytes at a time, each window led by SCAN_OVERLAP bytes.
    before = ends_at - len(token)
    data = b" " * before + token.encode() + b"\n" + b"y\n" * (TREE_CHUNK // 2)
    assert len(data) > TREE_CHUNK
    assert ("big.log" in flagged(tmp_path, {"big.log": data})) is hit


# ---------------------------------------------------------------- the Dockerfile and build args

AK_DOCKERFILE = f"FROM scratch\nENV ALIBABA_CLOUD_ACCESS_KEY_ID={AK}\nCOPY . /\n"


@pytest.mark.parametrize("where", ["sent", "ignored", "outside"])
def test_a_credential_in_the_dockerfile_is_refused_wherever_it_lies(tmp_path, where):
    """Its instructions land in the image history, so excluding it or keeping it outside changes nothing."""
    root = tree(tmp_path / "ctx", {"app.py": "print()\n", ".dockerignore": "Dockerfile\n" if where == "ignored" else ""})
    dockerfile = root / "Dockerfile"
    if where == "outside":
        dockerfile = tmp_path / "build" / "app.Dockerfile"
        dockerfile.parent.mkdir()
    dockerfile.write_text(AK_DOCKERFILE)
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root, dockerfile)
    [finding] = err.value.findings  # a Dockerfile sent in the context is reported once
    assert finding.kind == "dockerfile" and "AccessKey id" in finding.reason and "image history" in finding.reason
    assert finding.path == (str(dockerfile) if where == "outside" else "Dockerfile")
    msg = str(err.value)
    assert "COPY --from=<builder>" in msg and "mount=type=secret" not in msg and AK not in msg and AK[4:] not in msg
    assert ("cannot be allowed" in msg) is (where == "outside")


def test_a_dockerfile_in_the_context_is_allowed_by_its_path(tmp_path):
    root = tree(tmp_path / "ctx", {"Dockerfile": AK_DOCKERFILE, "app.py": "print()\n"})
    report = check_context(root, allow_sensitive=["Dockerfile"])
    assert [(f.path, f.kind) for f in report.allowed] == [("Dockerfile", "dockerfile")]


@pytest.mark.parametrize("text", [pem("RSA"), "RUN echo " + TOKENS["github"] + "\n"])
def test_private_keys_and_tokens_in_the_dockerfile(tmp_path, text):
    root = tree(tmp_path / "ctx", {"Dockerfile": "FROM scratch\n" + text, ".dockerignore": "Dockerfile\n"})
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root)
    assert [f.kind for f in err.value.findings] == ["dockerfile"]


@pytest.mark.parametrize("name,value,why", [
    ("ALIYUN_KEY", AK, "its value an Alibaba Cloud AccessKey id"),
    ("TLS", pem("EC"), "its value a private key"),
    ("GH", TOKENS["github"], "its value an access token of a known format"),
    ("DB_PASSWORD", "change-me-2", "its name says it carries a credential"),
    ("npmToken", "value-of-npm", "its name says it carries a credential"),
    ("API_KEY", "value-of-api", "its name says it carries a credential"),
    ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMIbPxRfiCYEXAMPLEKEY", "its name says it carries a credential"),
    ("SECRETKEY", "value-of-secretkey", "its name says it carries a credential"),
    # glued and abbreviated names
    ("dbpassword", "value-of-dbpassword", "its name says it carries a credential"),
    ("GITHUBTOKEN", "value-of-githubtoken", "its name says it carries a credential"),
    ("DBPASS", "value-of-dbpass", "its name says it carries a credential"),
    ("SSH_KEY", "value-of-ssh-key", "its name says it carries a credential"),
    ("mysql_root_pw", "value-of-root-pw", "its name says it carries a credential"),
    ("ROOTPWD", "value-of-rootpwd", "its name says it carries a credential"),
    ("ADMINPW", "value-of-adminpw", "its name says it carries a credential"),
    ("API_KEYS", "value-of-api-keys", "its name says it carries a credential"),
    ("APIKEYS", "value-of-apikeys", "its name says it carries a credential"),
    ("DBPASSWORDS", "value-of-dbpasswords", "its name says it carries a credential"),
    ("GPGKEY", "value-of-gpgkey", "its name says it carries a credential"),
    ("PASSWORD_POLICY_URL", "https://policy.example.test", "its name says it carries a credential"),  # by choice
    # values that are credentials whatever the name
    ("UPSTREAM", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjaSJ9.c2lnbmF0dXJlLXZhbHVl", "its value is a JSON Web Token"),
    ("UPSTREAM_HEADER", "Bearer 0123456789abcdefXYZ", "its value is a JSON Web Token or an HTTP Authorization"),
    ("UPSTREAM_LINE", "Authorization: Bearer abcdefgh12345", "its value is a JSON Web Token or an HTTP Authorization"),
])
def test_sensitive_build_args_are_refused_without_printing_the_value(tmp_path, name, value, why):
    root = tree(tmp_path / "ctx", {"app.py": "print()\n"})
    with pytest.raises(SensitiveFilesError) as err:
        check_context(root, build_args={name: value, "APP_ENV": "prod", "AUTHOR": "me"})
    [finding] = err.value.findings
    assert (finding.path, finding.kind) == (f"buildArg:{name}", "buildArg")
    assert finding.reason.startswith(why), finding.reason
    msg = str(err.value)
    assert f"list 'buildArg:{name}' in this image's allowSensitive" in msg and "image history" in msg
    assert value not in msg and value[4:] not in msg, "a build-arg value must never be printed"


def test_an_allowed_build_arg_is_reported_as_allowed(tmp_path):
    root = tree(tmp_path / "ctx", {"app.py": "print()\n"})
    report = check_context(root, build_args={"NPM_TOKEN": TOKENS["npm"]}, allow_sensitive=["buildArg:NPM_TOKEN"])
    assert [(f.path, f.kind) for f in report.allowed] == [("buildArg:NPM_TOKEN", "buildArg")]
    assert TOKENS["npm"] not in repr(report)
    with pytest.raises(SensitiveFilesError):  # an entry for one arg does not cover another
        check_context(root, build_args={"NPM_TOKEN": "x", "GH_TOKEN": "y"}, allow_sensitive=["buildArg:NPM_TOKEN"])


@pytest.mark.parametrize("entry,rule", [
    ("buildarg:NPM_TOKEN", "write 'buildArg:NPM_TOKEN'"),
    ("BUILDARG:X", "write 'buildArg:X'"),
    ("buildArg:", "must name a build arg"),
    ("buildArg:1X", "must name a build arg"),
    ("buildArg:A-B", "must name a build arg"),
])
def test_build_arg_entries_are_checked(entry, rule):
    assert sensitive.check_allow_entry("buildArg:NPM_TOKEN") == ("buildArg:NPM_TOKEN", None)
    normalized, problem = sensitive.check_allow_entry(entry)
    assert normalized is None and rule in problem, problem


def test_a_build_arg_entry_never_allows_a_file(tmp_path):
    root = tree(tmp_path / "ctx", {".env": "A=1\n"})
    with pytest.raises(SensitiveFilesError):
        check_context(root, allow_sensitive=["buildArg:env"])


def test_harmless_build_args_pass(tmp_path):
    root = tree(tmp_path / "ctx", {"app.py": "print()\n"})
    args = {"APP_ENV": "prod", "AUTHOR": "me", "BYPASS_CACHE": "1", "KEY_PREFIX": "app", "TOKENIZER_MODEL": "bpe",
            "PASSENGER_MODE": "on", "BASE_IMAGE": "busybox", "VERSION": "LTAI-is-not-a-key",
            "COMPASS_URL": "x", "KEYBOARD": "us", "PASSENGERS": "4", "MONKEY": "yes", "GREETING": "Bearer of news",
            "TOKENIZER": "bpe", "RELEASE_NOTES": "eyJ is how a JWT starts"}
    assert check_context(root, build_args=args).allowed == ()


def test_invalid_build_args_are_named_never_shown(tmp_path):
    root = tree(tmp_path / "ctx", {"app.py": "print()\n"})
    with pytest.raises(TypeError) as err:
        check_context(root, build_args={"DB_PORT": 5432, "OK": "x"})
    assert "'DB_PORT'" in str(err.value) and "5432" not in str(err.value)
    problems: list[str] = []
    explain_cli._build_args(["=" + AK, "NOSEP" + AK], problems)
    assert problems and AK not in " ".join(problems) and "NAME=VALUE" in " ".join(problems)


_KUBE_JSON = ('{"apiVersion": "v1", "kind": "Config", "clusters": [{"name": "c", "cluster": {"server": '
              '"https://k.example.test"}}], "users": [{"name": "u", "user": {%s}}]}\n')


@pytest.mark.parametrize("text", [
    _KUBE_JSON % '"client-key-data": "TFMwdExTMUNSVWRKVGlCUw=="',
    _KUBE_JSON % '"token": "eyJhbGciOiJSUzI1NiJ9.abc"',
    _KUBE_JSON.replace(", ", ",\n  ") % '"password": "hunter2"',
    # no kind line: its other sections say it is a kubeconfig
    "apiVersion: v1\nclusters:\n- cluster: {server: 'https://k'}\n  name: c\nusers:\n- name: u\n  user:\n"
    "    token: abcdef\n",
    "current-context: c\nusers:\n- name: u\n  user: {password: hunter2}\n",
    'kind: "Config"\nusers:\n- name: u\n  user:\n    token: abcdef\n',
    "kind: Config # the file kubectl writes\nusers:\n- name: u\n  user:\n    token: abcdef\n",
    "kind: 'Config'\nusers: [{name: u, user: {token: abcdef}}]\n",  # flow style
    KUBECONFIG + "    auth-provider:\n      name: oidc\n      config:\n        id-token: eyJhbGciOi.x.y\n",
    KUBECONFIG + "    auth-provider:\n      config:\n        refresh-token: 1//0gabc\n",
    KUBECONFIG + "    auth-provider:\n      name: gcp\n      config: {access-token: ya29.abc}\n",
    "\ufeffkind: Config\nusers:\n- name: u\n  user:\n    token: abcdef123\n",  # a byte-order mark first
], ids=["json-client-key-data", "json-token", "json-password", "no-kind-clusters", "no-kind-current-context",
        "kind-quoted", "kind-commented", "flow-style", "oidc-id-token", "oidc-refresh-token", "gcp-access-token",
        "byte-order-mark"])
def test_kubeconfig_credentials_in_every_form_kubectl_reads(tmp_path, text):
    found = flagged(tmp_path, {"deploy/k.conf": text})
    assert "kubeconfig holding credentials" in found.get("deploy/k.conf", ""), (text, found)
    assert "hunter2" not in found["deploy/k.conf"] and "abcdef" not in found["deploy/k.conf"]


@pytest.mark.parametrize("text", [
    _KUBE_JSON % '"token": ""',
    _KUBE_JSON % '"token": null',
    "kind: Config\nusers:\n- name: u\n  user: {exec: {command: aws}}\n",
    "kind: ConfigMap\nusers:\n- name: u\ndata:\n  token: abcdef\n",  # a Kubernetes ConfigMap, not a kubeconfig
    "users:\n- name: bob\n  token: abcdef\n",  # users and a token, but nothing says kubeconfig
    '{"users": [{"name": "bob", "token": "abcdef"}]}\n',
], ids=["json-empty-token", "json-null-token", "exec-plugin", "configmap", "plain-yaml", "plain-json"])
def test_kubeconfig_lookalikes_without_credentials_are_not_flagged(tmp_path, text):
    assert flagged(tmp_path, {"deploy/k.conf": text}) == {}
