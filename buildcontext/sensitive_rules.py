"""The guard's rule table: what each sensitive-file rule matches and the reason a finding gives.

The matcher (buildcontext/sensitive.py) walks these tables; the context engine caches the content flags and the
paths they flag, so a change here must bump RULES_VERSION (tests/unit/buildcontext/test_cache_versions.py holds a golden digest of
this table and fails naming it). Content rules flag private keys, AccessKey ids and secrets, tokens of known
formats, kubeconfig credentials, Terraform state, URLs and Java system properties with a password, a secret
assigned a literal value in any text, netrc entries, command-line passwords, password hashes, and credential files
that hold one; name rules flag dotenv files, SSH keys,
key stores, cloud, Docker, git, PostgreSQL, MySQL and Vault credential files, Terraform state and Pulumi stack files;
`.git/` and `.pulumi/` directories are flagged whatever they hold; build args are judged by value and by name.
"""
from __future__ import annotations

import re

# Bump when a rule, table or constant here (or the matcher's verdict on the same input) changes: every cached
# verdict of the stat cache is then re-read. Held by tests/unit/buildcontext/test_cache_versions.py.
RULES_VERSION = "rules-13"

# Content flags, cached per file next to its content hash.
PRIVATE_KEY = 1
ALIBABA_ACCESS_KEY = 2
CREDENTIALS = 4
KNOWN_TOKEN = 8
KUBECONFIG_CREDENTIALS = 16
TERRAFORM_STATE = 32
URL_PASSWORD = 64
ACCESS_KEY_SECRET = 128
JVM_PROPERTY_SECRET = 256
SECRET_ASSIGNMENT = 512
NETRC_ENTRY = 1024
COMMAND_LINE_PASSWORD = 2048
PASSWORD_HASH = 4096

# A NUL byte among a file's first this many bytes makes it binary, and not scanned (git's buffer_is_binary()).
# The rules needing two markers (kubeconfig `token:`, Terraform state) see them in a file over 4 MiB only when both
# lie in one 1 MiB read window (hashing.READ_SIZE); kubeconfigs and state files are far smaller.
BINARY_SNIFF_BYTES = 8000
# A chunked scan re-reads this many bytes before each chunk so a marker split across chunks is seen;
# longer than the longest marker either regex can match.
SCAN_OVERLAP = 128

PRIVATE_KEY_RE = re.compile(
    rb"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----|PuTTY-User-Key-File-\d+:")
# Bounded by any character that is not a letter or digit ('_' included: `AK_LTAI...`, `LTAI..._old`), so a
# run of more than 30 letters and digits after LTAI is not an id, as in Alibaba Cloud's own format.
ALIBABA_AK_RE = re.compile(rb"(?<![A-Za-z0-9])LTAI[A-Za-z0-9]{12,30}(?![A-Za-z0-9])")

# Tokens whose format says what they are: a fixed prefix and a known length or alphabet, bounded like the
# AccessKey id. The longest match (github_pat_ + 82) is shorter than SCAN_OVERLAP.
TOKEN_RE = re.compile(
    rb"(?<![A-Za-z0-9])(?:"
    rb"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82}"  # GitHub
    rb"|(?:AKIA|ASIA)[A-Z0-9]{16}"  # AWS access key id
    rb"|xox[abposr]-[A-Za-z0-9-]{10,48}"  # Slack
    rb"|npm_[A-Za-z0-9]{36}"  # npm
    rb"|AIza[0-9A-Za-z_-]{35}"  # Google API key
    rb"|[sr]k_live_[0-9A-Za-z]{24,99}"  # Stripe live secret / restricted key
    rb")(?![A-Za-z0-9])"
    # Tokens that run on for a length their issuer does not fix: only their start is matched (bounded on the left
    # only). PyPI (the prefix is base64 of its macaroon header); HashiCorp Vault service and batch tokens; GitLab
    # tokens (personal, deploy, pipeline trigger, runner, feed); OpenAI and Anthropic API keys; Terraform
    # Cloud user and team tokens (an id, `.atlasv1.`, the secret); Slack incoming-webhook and workflow URLs.
    rb"|(?<![A-Za-z0-9])(?:pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50}|hv[sb]\.[A-Za-z0-9_-]{20}"
    rb"|gl(?:pat|dt|ptt|rt|ft|cbt|soat)-[A-Za-z0-9_-]{20}|sk-(?:proj|ant|svcacct|admin)-[A-Za-z0-9_-]{20}"
    rb"|[A-Za-z0-9]{6,20}\.atlasv1\.[A-Za-z0-9_-]{20})"
    rb"|hooks\.slack\.com/(?:services|workflows|triggers)/T[A-Za-z0-9_]{6,16}/[A-Za-z0-9_]{6,24}/[A-Za-z0-9_]{8}")
TOKEN_MARKERS = (b"gh", b"github_pat_", b"glpat-", b"gldt-", b"glptt-", b"glrt-", b"glft-", b"glcbt-", b"glsoat-",
                 b"AKIA", b"ASIA", b"xox", b"npm_", b"pypi-", b"AIza", b"k_live_",
                 b"hvs.", b"hvb.", b"sk-", b".atlasv1.", b"hooks.slack.com/")
# Kubeconfigs in any of the forms kubectl reads: block YAML, flow YAML (`users: [{user: {token: x}}]`) and JSON
# (`"token": "x"`). A key is matched at a line start or after `{`, `,` or whitespace, bare or quoted, with a
# non-empty value (`token: ""`, `token:` and `token: null` hold none).
_KEY_START = rb"""(?:^(?:\xef\xbb\xbf)?|[\s{,])["']?"""  # a UTF-8 byte-order mark may open the file
_KEY_END = rb"""["']?[ \t]*:[ \t]*"""
KUBE_KEY_RE = re.compile(_KEY_START + rb"client-key-data" + _KEY_END + rb"""["']?[A-Za-z0-9+/=]""", re.MULTILINE)
# The user's secrets: a bearer token, a basic-auth password, an auth-provider's id/refresh/access token.
KUBE_USER_SECRET_RE = re.compile(
    _KEY_START + rb"(?:token|password|id-token|refresh-token|access-token)" + _KEY_END
    + rb"""(?!null\b)["']?[^\s"'#,}\]]""", re.MULTILINE)
KUBE_USERS_RE = re.compile(_KEY_START + rb"users" + _KEY_END, re.MULTILINE)
# What makes a file with `users` and a secret a kubeconfig: `kind: Config` (bare, quoted or with a comment
# after it), or a kubeconfig's other sections (a kubeconfig need not say its kind).
KUBE_CONFIG_RE = re.compile(
    _KEY_START + rb"kind" + _KEY_END + rb"""["']?Config["']?[ \t]*(?:[,}#\r\n]|$)"""
    + rb"|" + _KEY_START + rb"(?:clusters|contexts|current-context)" + _KEY_END, re.MULTILINE)

# Credential lines of the files that may or may not hold one. The matchers (buildcontext/credential_files.py) read
# each kind's own syntax and judge the value; every whitespace run is bounded so that a match of an ordinary line
# fits SCAN_OVERLAP and a chunked scan judges it as a whole-file scan does.
NPMRC_SECRET_RE = re.compile(
    rb"^[ \t]{0,32}(?:[^=\s;#]{0,256}:)?(?:_authToken|_auth|_password|password)[ \t]{0,32}=[ \t]{0,32}(\S[^\r\n]*?)"
    rb"[ \t]{0,32}\r?$", re.MULTILINE)
# MySQL option files: `password = value` in any group, the value bare or quoted. Group 1: the rest of the line.
MYSQL_SECRET_RE = re.compile(rb"^[ \t]{0,32}password[ \t]{0,32}=[ \t]{0,32}([^\r\n]{0,64})", re.MULTILINE)
# Redis's redis.conf: `requirepass` / `masterauth` and the password after blanks. Group 1: the rest of the line.
REDIS_SECRET_RE = re.compile(rb"^[ \t]{0,32}(?:requirepass|masterauth)[ \t]{1,32}([^\r\n]{0,64})", re.MULTILINE)
# .pypirc's `password = VALUE` and a .netrc's `password VALUE`. Group 1: the value (judged: a reference is none).
PYPIRC_SECRET_RE = re.compile(rb"^[ \t]{0,32}password[ \t]{0,32}[=:][ \t]{0,32}(\S[^\r\n]{0,63})", re.MULTILINE)
NETRC_SECRET_RE = re.compile(rb"(?:^|\s)password\s{1,32}(\S{1,64})")
# A netrc entry in any file (a .netrc under another name, a heredoc, echo or printf writing one in a script), read
# by netrc's grammar: `machine NAME` or `default` where an entry starts (a line start, after a quote, a printf `\n`
# or `echo `), then only netrc's own `keyword value` pairs, a `login` among them, and `password VALUE`; the names
# and values are tokens (no quote, and no end in prose punctuation: `login once;`). Prose using the words ("Each
# build machine runs login once; password ...", "the default login admin password is ...") starts no entry or
# breaks the pairs. Groups: 1 the pairs before the password, 2 the password, quoted whole or up to white space
# (judged as an assigned value: a reference is none), 3 a `login` right after it.
_NETRC_SEP = rb"""(?:[ \t\r\n]|\\n){1,32}"""
_NETRC_TOKEN = rb"""[^\s"'\\]{0,63}[^\s"'\\.,;:!?]"""
NETRC_ENTRY_RE = re.compile(
    rb"""(?:^|(?<=["'])|(?<=\\n)|(?<=echo )|(?<=echo -n )|(?<=echo -e )|(?<=echo -ne ))[ \t]{0,32}(?:machine""" + _NETRC_SEP + _NETRC_TOKEN + rb"""|default)"""
    rb"""((?:""" + _NETRC_SEP + rb"""(?:login|account|port)""" + _NETRC_SEP + _NETRC_TOKEN + rb"""){0,3})"""
    + _NETRC_SEP + rb"""password""" + _NETRC_SEP + rb"""("[^"\r\n]{1,62}"|'[^'\r\n]{1,62}'|\S{1,64})(""" + _NETRC_SEP + rb"""login""" + _NETRC_SEP
    + rb"""[^\s"'\\])?""", re.MULTILINE)
# The separators between a netrc entry's tokens (white space, or printf's `\n`).
NETRC_SPLIT_RE = re.compile(rb"""(?:\s|\\n)+""")
# A `login USER` pair among a netrc's tokens (split as NETRC_SPLIT_RE splits them), the user read ahead so that
# `login login u` gives both pairs. Group 1: the user.
NETRC_LOGIN_PAIR_RE = re.compile(rb"""(?:^|(?<=\s)|(?<=\\n))login(?=(?:\s|\\n)+((?:(?!\\n)\S)+))""")
NETRC_KEYWORDS = frozenset({b"machine", b"default", b"login", b"password", b"account", b"port", b"macdef"})
# The anonymous FTP login, in a netrc entry (`default login anonymous password guest@`) or a URL
# (`ftp://anonymous:guest%40example.com@host/`, `ftp://ftp:ftp@host/`): by convention its password is an e-mail
# address, a bare `user@` or a login word, which logs in nobody in particular. A URL may hold the address unescaped
# (`ftp://anonymous:me@example.com@host/`): its domain is the text up to the last `@` (URL_ADDRESS_TAIL_RE).
# NETRC_LOGIN_RE reads an entry's login (group 1).
ANONYMOUS_LOGINS = frozenset({b"anonymous", b"ftp"})
ANONYMOUS_PASSWORD_RE = re.compile(
    rb"""(?i:anonymous|ftp|guest)|[^\s@]{0,64}@(?:[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8})?""")
URL_ADDRESS_TAIL_RE = re.compile(rb"""((?:[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8})?)@""")
NETRC_LOGIN_RE = re.compile(rb"""(?:^|\s)login\s{1,32}(\S{1,64})""")
CREDENTIAL_FILES = {".npmrc": "npm", ".pypirc": "pypi", ".netrc": "netrc", "_netrc": "netrc",
                     ".yarnrc.yml": "yarn", ".yarnrc.yaml": "yarn", ".yarnrc": "yarn1", "settings.xml": "maven",
                     "settings-security.xml": "maven", "auth.json": "composer", "credentials": "gem-or-cargo",
                     ".my.cnf": "mysql", "my.cnf": "mysql", "redis.conf": "redis", ".terraformrc": "terraform", "terraform.rc": "terraform",
                     "credentials.toml": "cargo", "nuget.config": "nuget", "gradle.properties": "gradle"}
# Yarn 1's .yarnrc (the lockfile syntax): `key value` or `key: value`, the key and value bare or quoted
# (`"//npm.corp/:_authToken" "abc"`, `"//npm.corp/:_authToken": "abc"`, `_auth abc`); a `#` after white space
# starts a comment. Group 1: the quote around the key; group 2: the rest of the line (the value).
YARNRC1_SECRET_RE = re.compile(
    rb"""^[ \t]{0,32}(["']?)(?:[^\s"'#]{0,128}:)?(?:_authToken|_auth|_password)\1"""
    rb"""(?:[ \t]{0,32}:[ \t]{0,32}|[ \t]{1,32})([^\r\n]{0,256})""", re.MULTILINE)
# Composer's auth.json. Parsed as JSON when it is valid JSON of at most COMPOSER_JSON_LIMIT bytes: a credential is
# a string under a secret key anywhere (an http-basic password, a client-certificate passphrase, a gitlab-token
# or forgejo-token {username, token}, a bitbucket-oauth consumer-secret), a host's string under a token section, or
# a header value under custom-headers. Otherwise (a chunk of a large file, or invalid JSON) the same three shapes
# are matched, bounded: a secret key (JSON-escaped or not) with a string value; a token section's first host with a
# string value; a custom header ("Name: value") as an array item.
COMPOSER_JSON_LIMIT = 256 << 10
COMPOSER_SECRET_KEYS = frozenset({"password", "passphrase", "token", "consumer-secret"})
COMPOSER_TOKEN_SECTIONS = frozenset({"github-oauth", "gitlab-oauth", "gitlab-token", "bearer", "forgejo-token"})
COMPOSER_HEADERS_SECTION = "custom-headers"
# KEY: group 1, the key as written (JSON escapes undone by the matcher), then (the value's first bytes, its closing
# quote if seen) as groups 2 and 3; SECTION and HEADER: those two as groups 1 and 2.
COMPOSER_KEY_RE = re.compile(rb"""["]([^"\r\n]{1,48})["][ \t\r\n]{0,4}:[ \t\r\n]{0,8}["]([^"\r\n]{0,48})(["]?)""")
COMPOSER_SECTION_RE = re.compile(
    rb"""["](?:github-oauth|gitlab-oauth|gitlab-token|bearer|forgejo-token)["][ \t\r\n]{0,4}:[ \t\r\n]{0,4}\{"""
    rb"""[ \t\r\n]{0,24}["][^"\\\r\n]{1,32}["][ \t\r\n]{0,4}:[ \t\r\n]{0,4}["]([^"\r\n]{0,32})(["]?)""")
COMPOSER_HEADER_RE = re.compile(rb"""[\[,][ \t\r\n]{0,24}["][A-Za-z0-9_-]{1,40}:[ \t]{0,8}([^"\r\n]{0,48})(["]?)""")
# RubyGems' ~/.gem/credentials: YAML holding only credentials (`:rubygems_api_key: rubygems_...`, a named key used
# with `gem push --key`, a host's key, bare or quoted, with or without the symbol's colon). Group 1: the value.
GEM_SECRET_RE = re.compile(
    rb"""^[ \t]{0,32}:?(?:"[^"\r\n]{1,128}"|'[^'\r\n]{1,128}'|[^\s"'#:-][^\s]{0,128}?)[ \t]{0,32}:"""
    rb"""(?:[ \t]{1,32}([^\r\n]{0,128})|[ \t]{0,32}\r?$)""", re.MULTILINE)
# Cargo's ~/.cargo/credentials(.toml): a `token` (or a `secret-key`) key, bare, quoted or the last part of a dotted
# key (`registry.token`), at a line start or in an inline table (`corp = { token = "..." }`), with a string value
# of any of TOML's four kinds. Group 1: the opening delimiter; 2: what follows it on the line (a multi-line string
# may open with a line break).
CARGO_SECRET_RE = re.compile(
    rb"""(?:^|[{,])[ \t]{0,32}(?:(?:[A-Za-z0-9_-]{1,64}|"[^"\r\n]{0,64}"|'[^'\r\n]{0,64}')[ \t]{0,8}\.[ \t]{0,8}){0,3}"""
    rb"""(?:token|"token"|'token'|secret-key|"secret-key"|'secret-key')[ \t]{0,32}=[ \t]{0,32}"""
    rb"""("{3}|'{3}|["'])((?:\r?\n)?[^\r\n]{0,96})""", re.MULTILINE)
# NuGet.Config's packageSourceCredentials in clear text: an <add> element whose key attribute is ClearTextPassword,
# its attributes in any order and on any lines. Group 1: the element's attributes (bounded).
NUGET_ADD_RE = re.compile(rb"""(?i)<add\b([^<>]{0,240})""")
XML_ATTRIBUTE_RE = re.compile(rb"""([\w:.-]{1,64})[ \t\r\n]{0,32}=[ \t\r\n]{0,32}(?:"([^"]*)"?|'([^']*)'?)""")
NUGET_PASSWORD_KEY = "cleartextpassword"
# gradle.properties in java.util.Properties syntax: a key (with `\` escapes), then `=`, `:` or white space (space,
# tab, form feed), then a value that a trailing `\` continues on the next line. Group 1: the key; 2: the value;
# both as written (the matcher undoes escapes and continuations).
GRADLE_PROPERTY_RE = re.compile(
    rb"""^[ \t\f]{0,32}((?:[^\s=:\\#!]|\\(?:u[0-9A-Fa-f]{4}|[^\r\n]))(?:[^\s=:\\]|\\(?:u[0-9A-Fa-f]{4}|[^\r\n])){0,95})"""
    rb"""(?:[ \t\f]{0,32}[=:][ \t\f]{0,32}|[ \t\f]{1,32})((?:[^\r\n\\]|\\(?:\r\n|[\r\n])[ \t\f]{0,32}|\\[^\r\n]){0,96})""",
    re.MULTILINE)
PROPERTIES_ESCAPE_RE = re.compile(rb"""\\(?:\r\n|[\r\n])[ \t\f]*|\\(u[0-9A-Fa-f]{4}|[^\r\n]?)""")
# A property name that says it holds a credential (its end), or GitHub Packages' documented token property; the
# `org.gradle.` settings are Gradle's own and hold none; `true`/`false` are switches (`useSecret=false`).
GRADLE_SECRET_NAME_RE = re.compile(r"(?:password|passwd|passphrase|token|secret)$|^gpr\.key$")
GRADLE_OWN_PREFIX = "org.gradle."
BOOLEAN_VALUES = frozenset({b"true", b"false"})
# Yarn Berry's registry login (`npmAuthToken`, `npmAuthIdent`, also under npmScopes/npmRegistries), with a value that
# is not an environment reference (`npmAuthToken: "${NPM_TOKEN}"` holds none).
YARNRC_SECRET_RE = re.compile(
    rb"""^[ \t]{0,32}["']?(?:npmAuthToken|npmAuthIdent|npmPassword)["']?[ \t]{0,32}:[ \t]{0,32}([^\r\n]*)""",
    re.MULTILINE)
# Maven's settings.xml server logins (<password>, <passphrase>, <privateKey> is a path and fine) and
# settings-security.xml's <master>, unless the value is a property reference (`${env.MAVEN_PASSWORD}`).
MAVEN_SECRET_RE = re.compile(rb"<(password|passphrase|master)>[ \t\r\n]{0,32}(?!\$\{)[^<\s][^<]*</\1>")

# A JVM system property holding a password, token, secret or secret key on a command line or in
# MAVEN_OPTS/JAVA_OPTS/JAVA_TOOL_OPTIONS (`-Dmaven.repo.password=...`, `-Dhttps.proxyPassword="..."`,
# `-Daws.secretKey=...`), anywhere: the Dockerfile's text, a script, a build arg. Group 1: the value, quoted (also
# with shell-escaped quotes), a `<...>`/`{...}` placeholder or a `$(...)` substitution whole, else up to white space,
# a quote or a backquote (a shell command substitution, or the end of Markdown code); the matcher judges it.
JVM_PROPERTY_SECRET_RE = re.compile(
    rb"""(?i)(?<![\w-])-D[\w.-]{0,96}?(?:password|passwd|passphrase|token|secret|secret[_.-]?(?:access[_.-]?)?key)="""
    rb"""(\\?"[^"\r\n]{0,64}\\?"|'[^'\r\n]{0,64}'|<[^<>\r\n]{0,64}>?|\{[^{}\r\n]{0,64}\}?|\$\([^)\r\n]{0,64}\)?"""
    rb"""|[^\s'"<>`]{0,64})""")
# An all-capitals name whose words name the thing it stands for (PASSWORD, TOKEN, PYPI_TOKEN, API_KEY, USERNAME) is
# a documentation placeholder, the name of a credential, not one; so are `YOUR_...`, `..._HERE`, CHANGEME,
# REPLACE_ME, xxx. Narrow on purpose: a real secret can be all capitals, so only these shapes, which no secret takes,
# pass.
CAPS_PLACEHOLDER_RE = re.compile(
    rb"""YOUR_[A-Z0-9_]+|[A-Z0-9_]+_HERE|CHANGE_?ME|REPLACE_?ME|[xX]{3,}"""
    rb"""|(?:[A-Z0-9]+_){0,4}(?:PASSWORD|PASSWD|PASS|PASSPHRASE|TOKEN|SECRET|KEY|CREDENTIALS?|USER|USERNAME|LOGIN)"""
    rb"""(?:_[A-Z0-9]+){0,4}""")
# References a value may hold (buildcontext/value_literals.py takes them out and judges what remains): a CI system's
# or a template's expression, from its opening to its closing mark (GitHub Actions' and Azure Pipelines'
# `${{ ... }}`, Azure's `$[ ... ]`, `{{ ... }}`, `{% ... %}`, `<% ... %>`), whose string literals (STRING_LITERAL_RE)
# are values; a command substitution `$(...)` or backquote; a shell parameter `${NAME...}` (SHELL_PARAMETER_RE:
# group 1 its operator, where a default or alternative after `-`, `=`, `+` is a value, a message after `?` none);
# `$NAME`, `$1`, `$@` (SHELL_NAME_RE); a batch file's `%NAME%`, `%1`, `%~1`; a `<placeholder>`.
VALUE_EXPRESSIONS = ((b"${{", b"}}"), (b"$[", b"]"), (b"{{", b"}}"), (b"{%", b"%}"), (b"<%", b"%>"))
STRING_LITERAL_RE = re.compile(rb"""'([^'\r\n]*)'?|"([^"\r\n]*)"?""")
SHELL_PARAMETER_RE = re.compile(rb"""\$\{[#!]?(?:[A-Za-z_][A-Za-z0-9_.]*|[0-9]+|[@*#?$!-])(:?[-=+?]|)""")
SHELL_NAME_RE = re.compile(rb"""\$(?:[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-])""")
BATCH_REFERENCE_RE = re.compile(rb"""%(?:[A-Za-z_][A-Za-z0-9_]*%|~?[0-9*](?![0-9A-Fa-f]))""")  # not a URL's `%40`
ANGLE_PLACEHOLDER_RE = re.compile(rb"""<[A-Za-z][^<>\r\n]*>?""")
# Where a value that holds references ends, outside them: a quoted value at its closing quote, a bare one at white
# space, a quote or shell or YAML syntax (as ASSIGNMENT_TAIL_RE's and COMMAND_LINE_PASSWORDS' bare values end).
BARE_VALUE_END = b" \t\r\n\"'`,;|&<>(){}[]"
# What makes a value's text worth reading again for references: a byte that may open one.
REFERENCE_OPENERS = (b"$", b"{{", b"{%", b"<", b"%", b"`")
# A URL whose userinfo holds a password (`scheme://user:password@host`; group 1 the user, 2 the password), anywhere: pip.conf's index-url, a RUN
# line's --extra-index-url, a build arg, a git remote, a database URL. Bounded runs, so no backtracking can grow.
URL_PASSWORD_RE = re.compile(rb"""://([^\s/?#@:'"<>]{0,256}):([^\s/?#@'"]{1,256})@""")
# A URL whose userinfo is a token alone (`https://TOKEN@host/simple`, as GitHub and package indexes take one): a run
# of a generated token's alphabet that the matcher judges by its shape (sensitive.py `_token_user`), so a user name
# (`ssh://git@`, `https://x-access-token@`, `oauth2accesstoken@`) is none. Group 1: the user part.
URL_TOKEN_USER_RE = re.compile(rb"""://([A-Za-z0-9_-]{16,128})@""")
URL_TOKEN_HEX_RE = re.compile(rb"""[0-9a-f]{32,128}""")
URL_TOKEN_MIN = 16
# A password given to a command on its command line or its standard input, in a RUN line, a script, a config file or
# a build arg: a registry login's `-p V`/`--password V`/`--pass V` (docker, podman, buildah, nerdctl, skopeo, oras,
# cosign, `helm|oras|regctl registry login`, `crane auth login`), or V piped (`echo V |`, `printf '%s' V |`) or
# here-string'd (`<<< V`) into one with `--password-stdin`; `sshpass -p V`; MySQL's `-pV` (glued: `-p V` prompts
# and V is a database); `redis-cli -a V`, and Redis's `requirepass V`/`masterauth V` directive in any file or as a
# `redis-server --requirepass V` flag; `curl -u user:V` (or `-uuser:V`); skopeo's/podman's/buildah's `--creds user:V`
# (`--src-creds`, `--dest-creds`); `sqlcmd`/`bcp`/`osql -P V`; `keytool`/`jarsigner -storepass V`, `-keypass V`
# (`-srcstorepass`, `-deststorepass`, ..., keytool's `-new V`; `-storepass:env NAME` names a variable and passes);
# OpenLDAP's `ldapsearch -w V` (ldapadd, ldapmodify, ...; ldappasswd's `-a`/`-s` too); `smbclient -U user%V`
# (rpcclient, smbcacls, smbget, `--user=`); `rabbitmqctl add_user NAME V` (`change_password`); openssl's
# `-passin pass:V` (`-passout`, `-pass`; `env:NAME`, `file:PATH` pass); `htpasswd -b[c] [FILE] USER V`, and
# `echo 'user:V' | chpasswd` (with `-e` V is a hash: PASSWORD_HASH_RE). The gaps are bounded (a line continuation
# included) so that a match fits SCAN_OVERLAP; htpasswd's file and user arguments are not: the password is the
# argument after them whatever their length (a longer match is judged whole in a file read at once, and like any
# other in a chunked scan: see Window.matches). Group 1 of each: the value, quoted whole or bare up to shell syntax
# (judged as an assigned value: a reference is none; quoted whole it is one argument, spaces and all).
# What a text holds when a command-line rule can match in it (a fast substring search gates the patterns).
# Source code building a command line: a quote right after the option closes the code's string, and the "quoted
# value" is an operator joining an expression on and one opening the next string (`"docker login -p " + password +
# " r"`, PHP's `.`, Lua's `..`, SQL's `||`, VB's `&`), no literal. Matched whole against the text inside the quotes.
_JOIN = rb"""[ \t]{0,8}(?:\+|\.\.?|&|\|\|)[ \t]{0,8}"""
CONCATENATED_ARGUMENT_RE = re.compile(_JOIN + rb"""[\w$.()\[\]]{1,48}""" + _JOIN)
COMMAND_LINE_MARKERS = (b"-", b"PASSWORD", b"password", b"IDENTIFIED", b"identified", b"chpasswd", b"requirepass",
                        b"masterauth", b"rabbitmqctl")
_COMMAND_GAP = rb"""(?:[^\r\n`;|&\\]|\\\r?\n){0,96}?"""
_COMMAND_VALUE = rb"""("[^"\r\n]{0,56}"|'[^'\r\n]{0,56}'|[^\s"'`;|&<>()]{1,56})"""
_COMMAND_USER = rb"""["']?[^\s:"'@]{1,24}:"""
_COMMAND_ARG = rb"""[ \t]{1,4}[^\s"'`;|&<>()-][^\s"'`;|&<>()]*+"""
# A client's global options may come before `login` (`docker -H tcp://h login`, `docker --config /tmp/c login`).
_GLOBAL_OPTIONS = rb"""(?:[ \t]{1,4}--?[A-Za-z][A-Za-z-]{0,15}(?:(?:[ \t]{1,4}|=)[^\s;|&`-][^\s;|&`]{0,63})?){0,3}"""
_REGISTRY_LOGIN = (rb"""(?:(?:docker|podman|buildah|nerdctl|skopeo|oras|cosign)""" + _GLOBAL_OPTIONS
                   + rb"""|(?:helm|oras|regctl)[ \t]{1,4}registry"""
                   rb"""|crane[ \t]{1,4}auth)[ \t]{1,4}login\b""")
_PASSWORD_STDIN = rb"""[ \t]--password-stdin\b"""
COMMAND_LINE_PASSWORDS = (
    # The lookahead holds the first byte of every command below: a position holding none is passed over at once.
    re.compile(
        rb"""(?=[bcdhjklmnoprs-])(?<![\w.-])(?:""" + _REGISTRY_LOGIN + _COMMAND_GAP
        + rb"""[ \t](?:-p(?:[ \t]{1,8}|=)?|--pass(?:word)?(?:[ \t]{1,8}|=))"""
        rb"""|""" + _REGISTRY_LOGIN + _COMMAND_GAP + _PASSWORD_STDIN + _COMMAND_GAP + rb"""<<<[ \t]{0,8}"""
        rb"""|sshpass\b""" + _COMMAND_GAP + rb"""[ \t]-p[ \t]{0,8}"""
        rb"""|(?:mysql|mysqladmin|mysqldump|mysqlimport|mariadb|mariadb-dump)\b""" + _COMMAND_GAP + rb"""[ \t]-p"""
        rb"""|redis-cli\b""" + _COMMAND_GAP + rb"""[ \t](?:-a|--pass)[ \t]{1,8}"""
        rb"""|(?:--)?(?:requirepass|masterauth)[ \t]{1,8}"""
        rb"""|curl\b""" + _COMMAND_GAP + rb"""[ \t](?:-u|--user)(?:[ \t]{1,8}|=)?""" + _COMMAND_USER
        + rb"""|(?:skopeo|podman|buildah)\b""" + _COMMAND_GAP + rb"""[ \t]--(?:src-|dest-)?creds(?:[ \t]{1,8}|=)"""
        + _COMMAND_USER
        + rb"""|(?:sqlcmd|bcp|osql)\b""" + _COMMAND_GAP + rb"""[ \t]-P[ \t]{0,8}"""
        rb"""|(?:keytool|jarsigner)\b""" + _COMMAND_GAP + rb"""[ \t]-(?:(?:src|dest)?(?:store|key)pass|new)[ \t]{1,8}"""
        rb"""|ldap(?:search|add|modify|delete|whoami|passwd|modrdn|compare|exop|url)\b""" + _COMMAND_GAP
        + rb"""[ \t]-w[ \t]{0,8}"""
        rb"""|ldappasswd\b""" + _COMMAND_GAP + rb"""[ \t]-[as][ \t]{0,8}"""
        rb"""|(?:smbclient|rpcclient|smbcacls|smbget|smbtree|smbcquotas)\b""" + _COMMAND_GAP
        + rb"""[ \t](?:-U[ \t]{0,8}|--user(?:name)?(?:[ \t]{1,8}|=))["']?[^\s%"'@]{1,24}%"""
        rb"""|rabbitmqctl\b""" + _COMMAND_GAP + rb"""[ \t](?:add_user|change_password)[ \t]{1,8}["']?[^\s"']{1,64}["']?"""
        rb"""[ \t]{1,8}"""
        rb"""|openssl\b""" + _COMMAND_GAP + rb"""[ \t]-(?:passin|passout|pass|password)[ \t]{1,8}["']?pass:"""
        rb""")""" + _COMMAND_VALUE),
    # SQL giving a user its password: `CREATE USER app WITH PASSWORD '...'`, `ALTER ROLE r WITH LOGIN PASSWORD`,
    # MySQL's and Oracle's `IDENTIFIED BY '...'`.
    re.compile(rb"""(?i)\b(?:(?:user|role)[ \t]{1,8}[^\s;]{1,64}[ \t]{1,8}with(?:[ \t]{1,8}[a-z]{1,16}){0,3}?"""
               rb"""[ \t]{1,8}password|identified[ \t]{1,8}by)[ \t]{1,8}"""
               + _COMMAND_VALUE),
    re.compile(rb"""(?<![\w.-])htpasswd(?:[ \t]{1,4}-[A-Za-z]{1,6}){0,2}?[ \t]{1,4}-[A-Za-z]{0,5}b[A-Za-z]{0,5}"""
               rb"""(?:[ \t]{1,4}-[A-Za-z]{1,6}){0,2}(?:""" + _COMMAND_ARG + rb"""){0,2}[ \t]{1,4}""" + _COMMAND_VALUE),
    re.compile(rb"""(?<![\w.-])(?:echo|printf)(?:[ \t]{1,4}-[a-z]{1,3}){0,2}[ \t]{1,4}["']?[^\s:"'$]{1,32}:"""
               rb"""(?=[^\s"'`;|&<>()]{1,56}["']?[ \t]{0,8}\|[ \t]{0,8}(?:sudo[ \t]{1,4})?chpasswd\b)"""
               + _COMMAND_VALUE),
    re.compile(rb"""(?<![\w.-])(?:echo|printf)(?:[ \t]{1,4}-[A-Za-z]{1,3}){0,2}(?:[ \t]{1,4}["']?%s(?:\\n)?["']?)?"""
               rb"""[ \t]{1,4}""" + _COMMAND_VALUE + rb"""(?=[ \t]{0,8}\|[ \t]{0,8}(?:sudo[ \t]{1,4})?"""
               + _REGISTRY_LOGIN + _COMMAND_GAP + _PASSWORD_STDIN + rb""")"""))
# Password hashes as htpasswd (`user:$2y$...`, `$apr1$`, `{SHA}`) and shadow files (`$5$`, `$6$` crypt, `$y$`
# yescrypt, the default of Debian and Ubuntu) hold them, anywhere (Distribution's own `auth/htpasswd`, a `user:HASH`
# line piped to `chpasswd -e`, `useradd -p 'HASH'`): a crypt hash its full length, not after a run of its alphabet
# (not part of a longer word); `{SHA}` after a `user:`.
_HASH_CHARS = rb"""[./A-Za-z0-9]"""
PASSWORD_HASH_RE = re.compile(
    rb"""(?<![./A-Za-z0-9$])(?:\$2[abxy]?\$[0-9]{2}\$""" + _HASH_CHARS + rb"""{53}|\$apr1\$""" + _HASH_CHARS
    + rb"""{1,8}\$""" + _HASH_CHARS + rb"""{22}|\$[156]\$(?:rounds=[0-9]{1,9}\$)?""" + _HASH_CHARS + rb"""{1,16}\$"""
    + _HASH_CHARS + rb"""{22,86}|\$g?y\$""" + _HASH_CHARS + rb"""{1,16}\$""" + _HASH_CHARS + rb"""{1,43}\$"""
    + _HASH_CHARS + rb"""{43})"""
    rb"""|^[ \t]{0,32}[^\s:#]{1,64}:\{SHA\}[A-Za-z0-9+/]{27}=""", re.MULTILINE)
# A password part that only stands for one: an environment or template reference, a format placeholder, a mask, an
# ellipsis (`...`, `…`: an example leaving the value out).
PLACEHOLDER_RE = re.compile(
    rb"""\$\{?[A-Za-z_][A-Za-z0-9_.]*\}?|\$\([^)]*\)|%(?:\([A-Za-z_]\w*\))?s|\{[^@]*\}|<[^<>]*>|\*+|%[A-Za-z_]\w*%"""
    rb"""|\.{3,}|\xe2\x80\xa6""")
# An AccessKey secret assigned under the names Alibaba Cloud's and AWS's tools use (ALIBABA_CLOUD_ACCESS_KEY_SECRET,
# ALICLOUD_SECRET_KEY, access_key_secret, AccessKeySecret, aws_secret_access_key), in a script, an env file, an INI,
# YAML or JSON file: the secret alone, without its LTAI id, is half a key pair and still a credential. The value is
# the secret's alphabet (a `$VAR` or `${VAR}` reference does not match it). After `:` or `=`, or after blanks as the
# official CLI (`aliyun configure set --access-key-secret VALUE`) and a legacy `ENV NAME VALUE` write it: there the
# value must mix digits, upper- and lower-case letters as a generated secret does, so a long identifier or word
# after the name in prose or code is none.
_SECRET_ALPHABET = rb"""[A-Za-z0-9/+]"""
ACCESS_KEY_SECRET_RE = re.compile(
    rb"""(?i)(?:access[_-]?key[_-]?secret|secret[_-]?access[_-]?key|ali(?:cloud|yun|baba[_-]?cloud)[_-]?secret[_-]?key)"""
    rb"""(?:["']?[ \t]*[:=][ \t]*["']?|[ \t]{1,8}["']?(?-i:(?=[A-Za-z/+]{0,63}[0-9])(?=[A-Z0-9/+]{0,63}[a-z])"""
    rb"""(?=[a-z0-9/+]{0,63}[A-Z])))""" + _SECRET_ALPHABET + rb"""{20,64}(?![A-Za-z0-9/+=])""")

# A secret assigned a value in any text (buildcontext/secret_assignments.py): the key, found around one of these
# roots (lower-case), is a run of letters, digits, `_`, `.` and `-` of at most ASSIGNMENT_KEY_MAX bytes, bare or
# quoted, after `--`, `$` or `@` or not; the key's last word must name a secret (ASSIGNMENT_*).
ASSIGNMENT_ROOTS = (b"pass", b"pwd", b"secret", b"token", b"key", b"auth")
ASSIGNMENT_KEY_MAX = 40
# What follows the key: group 1, the key's closing quote (and a `]`: `config['SECRET_KEY'] = ...`); then `=`, `:`, `:=`, `=>`, or `,` after a quoted key
# (PHP's define('DB_PASSWORD', '...'), a default in getenv("API_TOKEN", "...")) as group 2, or blanks after a
# `--flag` as group 3; then the value, quoted (4: its quote, 5: its text) or bare (6: up to a blank, quote,
# separator or bracket, or a template's `{{`/`{%` opening it; 7: the `(` or `[` after it, which makes it code). Or,
# after `<key`, an XML element's text (8). A value that may hold references is read again from its start, up to its
# end outside them (buildcontext/value_literals.py `read_value`), within ASSIGNMENT_VALUE_MAX bytes. Bounded so that
# key and value fit SCAN_OVERLAP: a value is judged by its first 56 bytes.
ASSIGNMENT_VALUE_MAX = 56
ASSIGNMENT_TAIL_RE = re.compile(
    rb"""(["']?)\]?(?:[ \t]{0,8}(:=|=>|=(?![=~])|:(?![:/\\])|,)[ \t]{0,8}|([ \t]{1,8}))"""
    rb"""(?:(["'`])([^"'`\r\n]{0,56})|((?:\{\{|\{%|[^\s"'`,;&<>(){}\[\]])[^\s"'`,;&<>(){}\[\]]{0,55})([(\[]?))"""
    rb"""|>[ \t]{0,8}([^<\s]{1,56})[ \t]{0,8}</""")
ASSIGNMENT_KEY_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
# The key's last word (its words as NAME_WORD splits them, lower-case) or last two words that say it holds a
# secret; a last word ending with one of ASSIGNMENT_GLUED says it too (`dbpassword`, `githubtoken`).
ASSIGNMENT_WORDS = frozenset({"password", "passwd", "pwd", "pass", "passphrase", "passcode", "secret", "token",
                              "apikey", "secretkey", "accesskey", "privatekey", "accountkey", "authtoken",
                              "clientsecret"})
ASSIGNMENT_PAIRS = frozenset({("api", "key"), ("access", "key"), ("secret", "key"), ("private", "key"),
                              ("account", "key"), ("signing", "key"), ("encryption", "key"), ("master", "key"),
                              ("app", "key"), ("deploy", "key"), ("license", "key"), ("key", "base")})
ASSIGNMENT_GLUED = ("password", "passwd", "passphrase", "secret", "token", "apikey", "secretkey", "accesskey",
                    "privatekey", "accountkey")
# `auth` (Docker's and npm's `auth`/`_auth`) holds base64 of `user:password`; `Authorization` an HTTP scheme and
# its credentials.
AUTH_WORD = "auth"
AUTHORIZATION_WORD = "authorization"
AUTHORIZATION_VALUE_RE = re.compile(rb"""(?i)(?:bearer|basic|token)[ \t]{1,8}([A-Za-z0-9._~+/=-]{8,48})""")
# A value too short to be a secret, or that is code or a word rather than one: `(` `[` after a bare value
# (a call, an index), a dotted name starting with a lower-case word (`self.password`, `process.env.TOKEN`,
# `db.example.com`), a path, a URL (the URL rule judges its userinfo), a value starting with a reference, template,
# YAML alias or tag, or comment sign. A value with no digit and no sign but `_`, `-`, `.` is a word or a name
# (`hashedPassword`, `same-origin`, `Passwort`): a secret of letters only is caught by its format, not here.
ASSIGNMENT_MIN_VALUE = 6
# A GraphQL schema's (or a type annotation's) non-null type after a field name (`password: String!`): a
# capitalised name of letters and a `!`, which no generated secret ends with.
TYPE_ANNOTATION_RE = re.compile(rb"""[A-Z][A-Za-z]{0,63}!""")
CODE_NAME_RE = re.compile(rb"""[a-z_$][a-z0-9_$]*(?:(?:\.|->|::)[A-Za-z_$][\w$]*)+""")
PATH_VALUE_RE = re.compile(rb"""(?:\.{0,2}/|~/|[A-Za-z]:\\)[\w./\\-]*|[a-z][a-z0-9+.-]*://.*""", re.DOTALL)
NOT_A_VALUE_START = b"$%{[<@`*&!#:"
NOT_A_QUOTED_VALUE_START = b"$%{<"
# A name/value attribute pair (Spring's and Ant's <property name="password" value="..."/>, .NET's <add key=...
# value=...>): group 1 the name, group 2 the value.
ATTRIBUTE_PAIR_RE = re.compile(
    rb"""(?<![\w-])(?:name|key)[ \t]{0,4}=[ \t]{0,4}["']([^"'<>\r\n]{1,40})["'][ \t\r\n]{1,8}"""
    rb"""value[ \t]{0,4}=[ \t]{0,4}["']([^"'\r\n]{0,56})""")
WORD_LIKE_RE = re.compile(rb"""[A-Za-z_.:/-]*""")
# A character written as a `\uXXXX` escape (Java .properties, JSON, JavaScript): a locale bundle's translation
# (`password=Contrase\u00f1a`) is a word once its escapes are read.
UNICODE_ESCAPE_RE = re.compile(rb"""\\u([0-9A-Fa-f]{4})""")
# A dependency's version or version range (`^9.0.2`, `~2.1.0-beta.1`, `>=8.5.1`, `1.x`), as package.json and its
# lock file give one for a package named like a secret (`jsonwebtoken`, `csrf-token`): no secret. Its numbers are
# short (a major or minor of at most 4 digits, a patch of at most 8) and a pre-release tag is one of the words
# release tools write (`-rc1`, `-beta.3`), so a secret written as or after a version-like text is still one.
_PRE_RELEASE = rb"""(?:alpha|beta|rc|pre|preview|next|canary|dev|snapshot|nightly|final|stable|insiders)\d{0,4}"""
VERSION_RANGE_RE = re.compile(
    rb"""(?:[\^~]|[<>]=?|=)?v?\d{1,4}\.(?:\d{1,4}|[xX*])(?:\.(?:\d{1,8}|[xX*]))?"""
    rb"""(?:-""" + _PRE_RELEASE + rb"""(?:\.(?:""" + _PRE_RELEASE + rb"""|\d{1,4}))*)?""")
# A value that says it is an example, or masks its middle (`abcd****`), stands for a secret.
EXAMPLE_VALUE_RE = re.compile(rb"""(?i)example|sample|dummy|placeholder|redacted|changeme|^your|\*{3}|x{4}""")
# In source code a bare value is an identifier or an expression (`password: PKCS7PrivateKeyTypes`,
# `is_secret=d1.is_secret`): only a quoted literal can be a secret there. Source code by its file name's ending.
SOURCE_CODE_ENDINGS = (".py", ".pyi", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".mts", ".cts", ".tsx", ".vue", ".svelte",
                       ".go", ".java", ".kt", ".kts", ".scala", ".groovy", ".rb", ".php", ".cs", ".rs", ".c", ".h",
                       ".cc", ".cpp", ".hpp", ".swift", ".m", ".dart", ".lua", ".pl", ".pm", ".ex", ".exs", ".erl",
                       ".hs", ".clj", ".r", ".jl", ".fs")

# Files that are credential stores by their name, whatever they hold: (lower-case name, reason), and by their
# ending (binary key stores: their content is not scanned).
CREDENTIAL_STORE_NAMES = {
    ".pgpass": "a PostgreSQL password file (.pgpass)",
    ".vault-token": "a HashiCorp Vault token file (.vault-token)",
    ".mylogin.cnf": "a MySQL login path file (.mylogin.cnf): its passwords are only obfuscated",
    "credentials.tfrc.json": "Terraform CLI credentials (credentials.tfrc.json)",
}
CREDENTIAL_STORE_ENDINGS = (
    (".jks", "a Java key store (*.jks) holds private keys"),
    (".jceks", "a Java key store (*.jceks) holds private keys"),
    (".keystore", "a key store (*.keystore) holds private keys"),
    (".bks", "a Bouncy Castle key store (*.bks) holds private keys"),
    (".htpasswd", "an HTTP server password file (.htpasswd): its hashes can be cracked"),
)

# `.env` templates are not flagged by name: they are the conventional, committed, placeholder-only siblings of
# `.env`, meant to ship, and flagging them would push users to blanket allowSensitive entries that then hide a
# real `.env`. Their content is still scanned like any other text file.
ENV_TEMPLATES = frozenset({".env.example", ".env.sample", ".env.template", ".env.dist"})
SSH_KEY_RE = re.compile(r"id_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?")
SENSITIVE_DIRS = {
    ".git": "a git repository: its history can hold secrets and source you did not mean to ship",
    ".pulumi": "Pulumi state or credentials (.pulumi/)",
}


CONTENT_REASONS = (
    (PRIVATE_KEY, "contains a private key (-----BEGIN ... PRIVATE KEY-----)"),
    (ALIBABA_ACCESS_KEY, "contains an Alibaba Cloud AccessKey id (LTAI****)"),
    (KNOWN_TOKEN, "contains an access token of a known format (GitHub, GitLab, AWS, Slack token or webhook, npm, "
                   "PyPI, Google, Stripe, Vault, Terraform Cloud, OpenAI, Anthropic)"),
    (KUBECONFIG_CREDENTIALS, "is a kubeconfig holding credentials (client-key-data, token or password)"),
    (TERRAFORM_STATE, "is Terraform state (terraform_version, lineage), which holds resource secrets in clear text"),
    (URL_PASSWORD, "contains a URL with a password or token in it (scheme://user:password@host, "
                   "scheme://token@host)"),
    (ACCESS_KEY_SECRET, "contains an AccessKey secret (an access_key_secret or secret_access_key with a value)"),
    (JVM_PROPERTY_SECRET, "contains a Java system property with a password, token or secret (-D...password=...)"),
    (SECRET_ASSIGNMENT, "contains a password, secret, token or key assigned a literal value (password=..., "
                        "\"token\": \"...\", <password>...</password>, AccountKey=...)"),
    (NETRC_ENTRY, "contains a netrc entry with a password (machine HOST login USER password ...)"),
    (COMMAND_LINE_PASSWORD, "contains a password on a command line (docker login -p, echo ... | docker login "
                            "--password-stdin, <<<, sshpass -p, mysql -p<password>, redis-cli -a, requirepass, "
                            "masterauth, curl -u user:password, --creds user:password, sqlcmd -P, keytool -storepass, "
                            "ldapsearch -w, smbclient -U user%password, rabbitmqctl add_user, openssl -passin pass:, "
                            "htpasswd -b, chpasswd)"),
    (PASSWORD_HASH, "contains password hashes (user:$2y$..., $apr1$, {SHA}, $6$, $y$: an htpasswd or shadow file, "
                    "chpasswd -e, useradd -p), which can be cracked"),
)

# What each credential file holds when its content rule flags it (the reason names the file).
CREDENTIAL_FILE_SECRETS = {"npm": "an npm auth token or password", "pypi": "a PyPI password or token",
                           "netrc": "a login password", "yarn": "a Yarn registry token (npmAuthToken/npmAuthIdent)",
                           "maven": "a Maven server password (<password>, <passphrase> or <master>)",
                           "yarn1": "a Yarn 1 registry token (_authToken, _auth or _password)",
                           "composer": ("a Composer registry password, passphrase, token or header (http-basic, "
                                        "github-oauth, client-certificate, custom-headers, ...)"),
                           "gem-or-cargo": "a RubyGems API key or a Cargo registry token",
                           "cargo": "a Cargo registry token", "nuget": "a NuGet ClearTextPassword",
                           "gradle": "a Gradle property holding a password, token or secret",
                           "mysql": "a MySQL password (password=...)",
                           "redis": "a Redis password (requirepass or masterauth)", "terraform": "a Terraform Cloud token"}

# Words of a build arg's name that say it carries a credential, alone or as the pair (e.g. API + KEY).
SECRET_WORDS = frozenset({"password", "passwd", "pwd", "pw", "pass", "passphrase", "secret", "secrets", "token",
                           "tokens", "credential", "credentials", "creds", "apikey", "privatekey", "secretkey",
                           "accesskey", "signingkey", "authtoken", "clientsecret", "auth", "sshkey"})
SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
                           ("signing", "key"), ("client", "secret"), ("auth", "token"), ("ssh", "key"),
                           ("gpg", "key"), ("pgp", "key"), ("encryption", "key"), ("master", "key"),
                           ("deploy", "key"), ("client", "key")})
# A word that ends with one of these says it too, glued to what it is for (`dbpassword`, `GITHUBTOKEN`, `DBPASS`).
GLUED_ENDINGS = ("password", "passwords", "passwd", "passphrase", "secret", "secrets", "token", "tokens", "credential",
                  "credentials", "creds", "apikey", "apikeys", "privatekey", "secretkey", "accesskey", "sshkey",
                  "gpgkey", "pgpkey", "masterkey", "deploykey", "signingkey", "pass", "pwd", "pw")
# Words ending in "pass" that are not passwords.
NOT_PASS = frozenset({"bypass", "compass", "encompass", "overpass", "underpass", "surpass", "trespass"})
NAME_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

# Values that are credentials whatever their name: a JSON Web Token (base64url of `{"` starts every header:
# `eyJ`; three dot-separated parts, the signature empty for alg none) and an HTTP Authorization value.
ARG_VALUE_RE = re.compile(
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
    r"|(?:^|(?<=[\s:]))(?:Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)  # also in `Authorization: …`
