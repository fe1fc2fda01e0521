"""The sensitive-file guard: which files, Dockerfile text and build args must not go into an image.

It reads no files: the context engine (buildcontext/hashing.py) reads each file once, while hashing it, and hands
the content to `scan_content`, whose flags are cached with the content hash. `findings` combines those flags with
the path rules; `dockerfile_findings` and `build_arg_findings` judge the two inputs the image history records
whatever `.dockerignore` says. Each Finding names the file, the reason and the `.dockerignore` line (or change)
that fixes it; `SensitiveFilesError` is the message a person acts on. The rules themselves (patterns, names,
reasons) are the table in buildcontext/sensitive_rules.py; `check_allow_entry` is the one rule for
allowSensitive entries (a path in the context, or `buildArg:NAME`).
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from buildcontext.credential_files import (
    Window, anonymous_login, holds_credential, jvm_property_secret, netrc_entry_secret, stands_for_value)
from buildcontext.printable import escaped, has_control
from buildcontext.secret_assignments import assigns_secret, command_line_password
from buildcontext.value_literals import holds_reference, read_value
from buildcontext.sensitive_rules import (
    ACCESS_KEY_SECRET, ACCESS_KEY_SECRET_RE, ALIBABA_ACCESS_KEY, ALIBABA_AK_RE, ARG_VALUE_RE, COMMAND_LINE_MARKERS,
    COMMAND_LINE_PASSWORD,
    PASSWORD_HASH, PASSWORD_HASH_RE, URL_TOKEN_HEX_RE, URL_TOKEN_MIN, URL_TOKEN_USER_RE,
    BINARY_SNIFF_BYTES, CONTENT_REASONS, CREDENTIALS, CREDENTIAL_FILES, CREDENTIAL_FILE_SECRETS,
    CREDENTIAL_STORE_ENDINGS, CREDENTIAL_STORE_NAMES,
    JVM_PROPERTY_SECRET, ENV_TEMPLATES, GLUED_ENDINGS, KNOWN_TOKEN, KUBECONFIG_CREDENTIALS, KUBE_CONFIG_RE,
    KUBE_KEY_RE, KUBE_USERS_RE, KUBE_USER_SECRET_RE, NAME_WORD, NETRC_ENTRY, NOT_PASS, PRIVATE_KEY,
    PRIVATE_KEY_RE, RULES_VERSION, SCAN_OVERLAP, SECRET_ASSIGNMENT, SECRET_PAIRS, SECRET_WORDS, SENSITIVE_DIRS, SSH_KEY_RE,
    TERRAFORM_STATE, TOKEN_MARKERS, TOKEN_RE, URL_ADDRESS_TAIL_RE, URL_PASSWORD, URL_PASSWORD_RE)
from errors import AcrPublishError

__all__ = [
    "RULES_VERSION",
    "Finding",
    "SensitiveFilesError",
    "PRIVATE_KEY",
    "ALIBABA_ACCESS_KEY",
    "CREDENTIALS",
    "BINARY_SNIFF_BYTES",
    "SCAN_OVERLAP",
    "is_binary",
    "scan_content",
    "findings",
    "candidates",
    "check_allow_entry",
    "BUILD_ARG_ENTRY",
    "build_arg_findings",
    "dockerfile_findings",
    "image_findings",
    "normalize_allow",
    "dockerignore_escape",
]


def is_binary(head: bytes) -> bool:
    """git's heuristic: a NUL byte among the first 8000 bytes makes a file binary."""
    return b"\0" in head[:BINARY_SNIFF_BYTES]


def _has_bounded_match(regex: re.Pattern[bytes], data: bytes, cut_start: bool, cut_end: bool) -> bool:
    for m in regex.finditer(data):
        # A match touching a cut edge cannot see the byte beyond it, which may extend the run past 30
        # characters; the neighbouring window holds it whole (SCAN_OVERLAP) and judges it there.
        if (cut_start and m.start() == 0) or (cut_end and m.end() == len(data)):
            continue
        return True
    return False


def scan_content(name: str, data: bytes, *, cut_start: bool = False, cut_end: bool = False) -> int:
    """The content flags of text `data` (the whole file, or one chunk plus SCAN_OVERLAP bytes
    before it); `name` is the file's basename. The caller decides that the file is text.

    `cut_start`/`cut_end`: the file goes on before/after `data` (a chunked scan), so the first and
    last byte's neighbours are unknown here."""
    flags = 0
    # `in` (a fast substring search) gates the regular expressions: most files hold neither marker.
    if (b"PRIVATE KEY" in data or b"PuTTY-User-Key-File-" in data) and PRIVATE_KEY_RE.search(data):
        flags |= PRIVATE_KEY
    if b"LTAI" in data and _has_bounded_match(ALIBABA_AK_RE, data, cut_start, cut_end):
        flags |= ALIBABA_ACCESS_KEY
    if any(m in data for m in TOKEN_MARKERS) and _has_bounded_match(TOKEN_RE, data, cut_start, cut_end):
        flags |= KNOWN_TOKEN
    if b"client-key-data" in data and KUBE_KEY_RE.search(data):
        flags |= KUBECONFIG_CREDENTIALS
    elif (b"users" in data and (b"token" in data or b"password" in data) and KUBE_USERS_RE.search(data)
          and KUBE_CONFIG_RE.search(data) and KUBE_USER_SECRET_RE.search(data)):
        flags |= KUBECONFIG_CREDENTIALS
    if b'"terraform_version"' in data and b'"lineage"' in data:
        flags |= TERRAFORM_STATE
    if b"://" in data and b"@" in data and (
            any(_url_password(data, m) for m in URL_PASSWORD_RE.finditer(data))
            or any(_token_user(m.group(1)) for m in URL_TOKEN_USER_RE.finditer(data))):
        flags |= URL_PASSWORD
    if (b"ecret" in data or b"ECRET" in data) and ACCESS_KEY_SECRET_RE.search(data):
        flags |= ACCESS_KEY_SECRET
    window = Window(data, cut_start, cut_end)
    if (b"-D" in data or b"-d" in data) and jvm_property_secret(window):
        flags |= JVM_PROPERTY_SECRET
    if assigns_secret(name, window):
        flags |= SECRET_ASSIGNMENT
    if b"password" in data and netrc_entry_secret(window):
        flags |= NETRC_ENTRY
    if any(m in data for m in COMMAND_LINE_MARKERS) and command_line_password(name, window):
        flags |= COMMAND_LINE_PASSWORD
    if (b"$" in data or b":{SHA}" in data) and PASSWORD_HASH_RE.search(data):
        flags |= PASSWORD_HASH
    kind = CREDENTIAL_FILES.get(name.lower())
    if kind is not None and holds_credential(kind, window):
        flags |= CREDENTIALS
    return flags


def _url_password(data: bytes, m: re.Match[bytes]) -> bool:
    """Whether a URL's password (URL_PASSWORD_RE) is a credential: not a reference or placeholder, and not the
    anonymous FTP login's address (percent-escaped, or unescaped up to the URL's last `@`) or login word."""
    user, password = m.group(1), m.group(2)
    if holds_reference(user):  # `${DB_USER:-app}:${DB_PASSWORD}`: the user ends at a `:` outside its references
        userinfo = user + b":" + password
        user = read_value(userinfo, b":")
        password = userinfo[len(user) + 1:]
    if stands_for_value(password):
        return False
    tail = URL_ADDRESS_TAIL_RE.match(data, m.end())
    address = password + b"@" + tail.group(1) if tail else password
    return not anonymous_login(unquote_to_bytes(user), unquote_to_bytes(address))


def _token_user(user: bytes) -> bool:
    """Whether a URL's user part alone is a token, not a user name: a generated token's shape, digits with upper-
    and lower-case letters, or a long run of lower-case hex."""
    if len(user) < URL_TOKEN_MIN:
        return False
    mixed = any(c.isdigit() for c in user.decode()) and user.lower() != user and user.upper() != user
    return mixed or URL_TOKEN_HEX_RE.fullmatch(user) is not None


@dataclass(frozen=True)
class Finding:
    """One sensitive file (or directory) the build would send."""

    path: str
    """Relative POSIX path in the context; a directory ends with '/'."""
    reason: str
    """Why it is sensitive. Never contains the secret itself."""
    fix: str
    """The .dockerignore line that excludes it (kind "file"), or what to change (other kinds)."""
    kind: str = "file"
    """"file" (sent in the context), "dockerfile" (its text) or "buildArg" (a build arg's name or value)."""


def _escape_pattern(text: str) -> str:
    """`text` as pattern characters matching exactly it: Docker's metacharacters backslash-escaped, and every
    non-printable character (a newline, CR, tab, ESC, an undecodable byte) written as `?`, which matches any one
    character but '/': an ignore file cannot hold a newline inside a line, and Docker refuses a context whose
    patterns hold an ASCII control character (buildcontext/dockerignore.py `read_patterns`)."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch if ch.isprintable() else "?" for ch in text)


def _as_line(pattern: str) -> str:
    """A pattern written as an ignore-file line Docker reads back as that pattern: it trims white space at both
    ends of a line (so a name's own leading or trailing spaces are written as `?`), a leading '#' makes a
    comment and a leading '!' an exception."""
    body = pattern.strip(" ")
    lead, trail = len(pattern) - len(pattern.lstrip(" ")), len(pattern) - len(pattern.rstrip(" "))
    line = "?" * lead + body + "?" * trail if body else "?" * len(pattern)
    if line.startswith(("#", "!")):
        line = "\\" + line
    return line


def dockerignore_escape(rel: str) -> str:
    """A .dockerignore line matching `rel` (Docker's matcher takes backslash escapes; see `_escape_pattern` for
    the characters no line can hold, matched by `?`). Always printable, so it cannot forge a line of a message."""
    return _as_line(_escape_pattern(rel))


def _glob_fix(rel: str, name: str, glob_suffix: str) -> str:
    """`<dir>/*<suffix>` when Docker's case-sensitive matcher would exclude `rel` with it, else `rel` itself."""
    return _as_line(_dir_prefix(rel) + "*" + glob_suffix) if name.endswith(glob_suffix) else dockerignore_escape(rel)


def _name_reason(rel: str, name: str) -> tuple[str, str] | None:
    """(reason, fix) for a regular file flagged by its path alone; names compare case-insensitively."""
    lrel, name_as_is, name = rel.lower(), name, name.lower()
    if name == ".envrc":
        return "a direnv file (.envrc) exports environment variables, usually credentials", dockerignore_escape(rel)
    if name == ".env":
        return "a dotenv file (.env) usually holds credentials", dockerignore_escape(rel)
    if name.startswith(".env.") and name not in ENV_TEMPLATES:
        # the exact path, not `.env.*`: that pattern would also drop the templates this guard accepts
        return ("a dotenv file (.env.*) usually holds credentials (placeholder-only templates named .env.example, "
                ".env.sample, .env.template or .env.dist are allowed)"), dockerignore_escape(rel)
    if SSH_KEY_RE.fullmatch(name):
        return "an SSH private key file (by its name)", dockerignore_escape(rel)
    if name.endswith((".p12", ".pfx")):
        return "a PKCS#12 key store (private key and certificate)", dockerignore_escape(rel)
    if name in CREDENTIAL_STORE_NAMES:
        return CREDENTIAL_STORE_NAMES[name], dockerignore_escape(rel)
    for ending, reason in CREDENTIAL_STORE_ENDINGS:
        if name.endswith(ending):
            return reason, _glob_fix(rel, name_as_is, ending)
    if lrel == ".aws/credentials" or lrel.endswith("/.aws/credentials"):
        return "AWS credentials (.aws/credentials)", dockerignore_escape(rel)
    if lrel == ".docker/config.json" or lrel.endswith("/.docker/config.json"):
        return "a Docker client config (.docker/config.json) can hold registry logins", dockerignore_escape(rel)
    if name == ".dockercfg":
        return "a legacy Docker client config (.dockercfg) holds registry logins", dockerignore_escape(rel)
    if name == ".git-credentials":
        return "git credentials (.git-credentials)", dockerignore_escape(rel)
    if name.endswith(".tfstate"):
        return "Terraform state (*.tfstate) holds resource secrets in clear text", _glob_fix(rel, name_as_is, ".tfstate")
    if name.endswith(".tfstate.backup"):
        return ("a Terraform state backup (*.tfstate.backup) holds resource secrets in clear text",
                _glob_fix(rel, name_as_is, ".tfstate.backup"))
    if ".tfstate." in name:
        return ("a Terraform state file (*.tfstate.*) holds resource secrets in clear text",
                dockerignore_escape(rel))
    if name.startswith("pulumi.") and name.endswith(".yaml") and name != "pulumi.yaml":
        fix = (_as_line(_dir_prefix(rel) + "Pulumi.*.yaml")
               if name_as_is.startswith("Pulumi.") and name_as_is.endswith(".yaml") else dockerignore_escape(rel))
        return "a Pulumi stack configuration (Pulumi.<stack>.yaml) can hold secrets", fix
    return None


def _dir_prefix(rel: str) -> str:
    """The escaped directory part of a .dockerignore pattern naming files next to `rel` ('' at the top)."""
    parent = posixpath.dirname(rel)
    return _escape_pattern(parent) + "/" if parent else ""



def _credential_reason(name: str) -> str:
    kind = CREDENTIAL_FILES[name.lower()]
    return f"{name} holds {CREDENTIAL_FILE_SECRETS[kind]}"


def check_allow_entry(raw: object) -> tuple[str | None, str | None]:
    """One allowSensitive entry: (its normalized path, None), or (None, "<rule>; <fix>") when invalid.

    The one rule for entries, shared by config validation (components/config/image_rules.py) and the guard.
    A valid entry is a path relative to the build context, naming a file or directory inside it;
    './' and a trailing '/' are dropped. `buildArg:NAME` accepts the build arg NAME instead. An entry is judged
    as written (a space around it is part of the name) and holds no control character.
    """
    example = "e.g. 'www/.env'"
    if isinstance(raw, str) and has_control(raw):
        return None, ("it holds a control character (newline, tab, ESC, ...), which no entry may hold: remove it (a "
                      "file whose name holds one cannot be allowed by name: rename it)")
    if isinstance(raw, str) and raw.strip().lower().startswith(BUILD_ARG_ENTRY.lower()):
        return _check_build_arg_entry(raw)
    if not isinstance(raw, str) or not raw.strip():
        return None, f"it must be a non-empty path relative to the build context; write the sensitive file's path, {example}"
    text = raw
    if text.startswith("/"):
        relative = posixpath.normpath(text).lstrip("/")
        hint = f"try {relative!r}" if relative not in ("", ".") else example
        return None, f"it is an absolute path, and entries are relative to the build context; drop the leading '/': {hint}"
    p = posixpath.normpath(text)
    if p == ".." or p.startswith("../"):
        return None, ("it points outside the build context, which the build never sees; name a file or directory "
                      f"inside the context, {example}")
    if p == ".":
        return None, ("it names the whole build context, which would disable the guard; name the sensitive file or "
                      f"directory itself, {example}")
    return p, None


BUILD_ARG_ENTRY = "buildArg:"
_BUILD_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_build_arg_entry(text: str) -> tuple[str | None, str | None]:
    name = text.strip()[len(BUILD_ARG_ENTRY):].strip()
    if not text.startswith(BUILD_ARG_ENTRY):
        fixed = f"{BUILD_ARG_ENTRY}{name}" if name else f"{BUILD_ARG_ENTRY}NAME"
        return None, f"build-arg entries are spelled {BUILD_ARG_ENTRY!r} exactly; write {fixed!r}"
    if not _BUILD_ARG_NAME.fullmatch(text[len(BUILD_ARG_ENTRY):]):
        example = name if _BUILD_ARG_NAME.fullmatch(name) else "NPM_TOKEN"
        return None, (f"{BUILD_ARG_ENTRY}NAME must name a build arg (letters, digits and _, not starting with a "
                      f"digit); write the buildArgs key, e.g. '{BUILD_ARG_ENTRY}{example}'")
    return text, None


def normalize_allow(allow: Iterable[str]) -> tuple[str, ...]:
    """allowSensitive entries as relative POSIX paths without './' or a trailing '/'; ValueError names the
    first invalid entry (stack settings report every one, with its key path, before this runs)."""
    out = []
    for raw in allow:
        path, problem = check_allow_entry(raw)
        if problem is not None:
            raise ValueError(f"allowSensitive entry {raw!r} is invalid: {problem}")
        out.append(path)
    return tuple(out)


def _path_entries(allow: Iterable[str]) -> tuple[str, ...]:
    """The normalized allowSensitive entries that name paths (not `buildArg:NAME`)."""
    return tuple(a for a in normalize_allow(allow) if not a.startswith(BUILD_ARG_ENTRY))


def _allowed(rel: str, allow: tuple[str, ...]) -> bool:
    rel = rel.rstrip("/")
    return any(rel == a or rel.startswith(a + "/") for a in allow)


def _classify(rel: str, kind: str, flags: int) -> str | list[tuple[str, str]] | None:
    """The sensitive directory `rel` lies in (a str), or the (reason, fix) pairs of the file, or None."""
    lrel = rel.lower()
    if ".git/" in lrel or ".pulumi/" in lrel:  # cheap pre-check: most paths are in neither
        parts = rel.split("/")
        for i, part in enumerate(parts[:-1]):
            if part.lower() in SENSITIVE_DIRS:
                return "/".join(parts[: i + 1])
    if kind == "l":
        return None  # a symlink carries only its target path into the image: no name rule applies
    name = rel.rsplit("/", 1)[-1]
    reasons: list[tuple[str, str]] = []
    named = _name_reason(rel, name)
    if named:
        reasons.append(named)
    if flags:
        for flag, text in CONTENT_REASONS:
            if flags & flag:
                reasons.append((text, dockerignore_escape(rel)))
        if flags & CREDENTIALS and name.lower() in CREDENTIAL_FILES:
            reasons.append((_credential_reason(name), dockerignore_escape(rel)))
    return reasons or None


def candidates(files: Iterable[tuple[str, str, int]]) -> list[str]:
    """The paths among `files` that any rule flags, before allowSensitive: a pure function of the
    records, so the context engine caches it while the file set and its content flags are unchanged."""
    return [rel for rel, kind, flags in files if _classify(rel, kind, flags) is not None]


def findings(files: Iterable[tuple[str, str, int]], allow: Iterable[str] = ()) -> tuple[list[Finding], list[Finding]]:
    """(refused, allowed) findings for `files`, an iterable of (rel, kind, content flags) where
    kind is 'f' (file), 'x' (executable file) or 'l' (symlink). `allow` holds allowSensitive
    entries: exact relative paths, or directories whose whole subtree is allowed."""
    allow_t = _path_entries(allow)
    by_path: dict[str, list[tuple[str, str]]] = {}
    dirs: dict[str, list[int]] = {}  # directory -> [refused file count, allowed file count]
    for rel, kind, flags in files:
        c = _classify(rel, kind, flags)
        if isinstance(c, str):
            counts = dirs.setdefault(c, [0, 0])
            counts[1 if _allowed(rel, allow_t) else 0] += 1
        elif c:
            by_path[rel] = c
    refused: list[Finding] = []
    allowed: list[Finding] = []
    for rel, reasons in by_path.items():
        fix = reasons[0][1]
        f = Finding(rel, "; ".join(r for r, _ in reasons), fix)
        (allowed if _allowed(rel, allow_t) else refused).append(f)
    for d, (n_refused, n_allowed) in dirs.items():
        reason = SENSITIVE_DIRS[d.rsplit("/", 1)[-1].lower()]
        if n_refused:
            # Files inside that allowSensitive names are left out of the count, not out of the finding.
            refused.append(Finding(d + "/", f"{reason} ({n_refused} {'file' if n_refused == 1 else 'files'})",
                                   dockerignore_escape(d)))
        else:
            allowed.append(Finding(d + "/", reason, dockerignore_escape(d)))
    refused.sort(key=lambda f: f.path)
    allowed.sort(key=lambda f: f.path)
    return refused, allowed


def _content_reasons(flags: int) -> list[str]:
    return [text for flag, text in CONTENT_REASONS if flags & flag]


def dockerfile_findings(dockerfile: str, rel: str | None, flags: int,
                        allow: Iterable[str] = ()) -> tuple[list[Finding], list[Finding]]:
    """(refused, allowed) for the Dockerfile's own text, whose content flags are `flags`: its
    instructions are recorded in the image's history whether or not the file is sent.

    `dockerfile`: its path as shown; `rel`: its path relative to the context when it lies inside
    (what allowSensitive lists to accept it), else None."""
    reasons = _content_reasons(flags)
    if not reasons:
        return [], []
    allow_here = rel is not None and _allowed(rel, _path_entries(allow))
    how = (f"if deliberate, list {rel!r} in this image's allowSensitive" if rel is not None else
           "a Dockerfile outside the context cannot be allowed: move it into the context to list it in allowSensitive")
    f = Finding(rel if rel is not None else dockerfile,
                "the Dockerfile " + "; ".join(reasons) + " (its instructions are recorded in the image history)",
                "use it only in a builder stage whose output the shipped stage copies (COPY --from=<builder>): the "
                "shipped image's history records only the target's FROM chain (docker.Image passes no build "
                "secrets); " + how,
                "dockerfile")
    return ([], [f]) if allow_here else ([f], [])



def _secret_name(name: str) -> bool:
    """Whether a build arg's name says it carries a credential. Deliberately broad: a name that says password
    or token is refused even when it names something about one (PASSWORD_POLICY_URL, TOKEN_FILE), because a
    false alarm costs one `buildArg:NAME` entry and a missed secret stays in the image history for good."""
    words = [w.lower() for w in NAME_WORD.findall(name)]
    singular = [w[:-1] if w.endswith("keys") else w for w in words]  # API_KEYS says what API_KEY says
    if any(w in SECRET_WORDS for w in words) or any(pair in SECRET_PAIRS for pair in zip(singular, singular[1:])):
        return True
    return any(w.endswith(GLUED_ENDINGS) and w not in NOT_PASS for w in words)



def build_arg_findings(build_args: Mapping[str, str], allow: Iterable[str] = ()) -> tuple[list[Finding], list[Finding]]:
    """(refused, allowed) for build args, whose values the image's history records: a value the
    content rules flag (private keys, AccessKey ids, known token formats) or a name that says it is
    a password, token, secret or key. Never holds a value; `buildArg:NAME` in `allow` accepts NAME."""
    allowed_names = {a[len(BUILD_ARG_ENTRY):] for a in normalize_allow(allow) if a.startswith(BUILD_ARG_ENTRY)}
    refused: list[Finding] = []
    accepted: list[Finding] = []
    for name in sorted(build_args):
        value = build_args[name]
        reasons = _content_reasons(scan_content("", value.encode("utf-8", "surrogatepass")))
        reasons = ["its value " + r.removeprefix("contains ").removeprefix("is ") for r in reasons]
        if ARG_VALUE_RE.search(value):
            reasons.insert(0, "its value is a JSON Web Token or an HTTP Authorization value (Bearer/Basic)")
        if _secret_name(name):
            reasons.insert(0, "its name says it carries a credential")
        if not reasons:
            continue
        entry = BUILD_ARG_ENTRY + name
        f = Finding(entry, "; ".join(reasons) + " (build args are recorded in the image history)",
                    "declare it (ARG) only in a builder stage whose output the shipped stage copies (COPY "
                    "--from=<builder>): the shipped image's history records only the target's FROM chain "
                    f"(docker.Image passes no build secrets); if deliberate, list {entry!r} in this image's "
                    "allowSensitive", "buildArg")
        (accepted if name in allowed_names else refused).append(f)
    return refused, accepted


def image_findings(files: Iterable[tuple[str, str, int]], allow: Iterable[str] = (), *,
                   dockerfile: tuple[str, str | None, int] | None = None,
                   build_args: Mapping[str, str] | None = None) -> tuple[list[Finding], list[Finding]]:
    """(refused, allowed) for everything one image's build records: the files sent (`findings`), the
    Dockerfile's text (`dockerfile`: (path shown, path in the context or None, content flags); see
    `dockerfile_findings`) and the build args. A Dockerfile sent in the context is reported once, as
    the Dockerfile, since excluding it would not take its text out of the history."""
    refused, allowed = findings(files, allow)
    if dockerfile is not None:
        df_refused, df_allowed = dockerfile_findings(*dockerfile, allow)
        if df_refused or df_allowed:
            refused = [f for f in refused if f.path != dockerfile[1]] + df_refused
            allowed = [f for f in allowed if f.path != dockerfile[1]] + df_allowed
    arg_refused, arg_allowed = build_arg_findings(build_args or {}, allow)
    return refused + arg_refused, allowed + arg_allowed


class SensitiveFilesError(AcrPublishError, ValueError):
    """The build context holds files that must not be sent into an image; lists all of them."""

    def __init__(self, found: Iterable[Finding], context: str = ".", ignore_file: str | None = None) -> None:
        self.findings: tuple[Finding, ...] = tuple(found)
        self.context = context
        self.ignore_file = ignore_file or posixpath.join(context, ".dockerignore")
        super().__init__(self._message())

    def _message(self) -> str:
        # Paths, reasons (they can name a file) and the context come from the file system: shown escaped, so a
        # file name cannot forge a line of this message (a `fix:` line, a path to allow).
        files = [f for f in self.findings if f.kind == "file"]
        others = [f for f in self.findings if f.kind != "file"]
        n = len(files)
        context = escaped(self.context)
        lines = []
        if files:
            lines.append(f"the build context {context} would send {n} sensitive "
                         f"{'path' if n == 1 else 'paths'} into the image:")
        else:
            lines.append(f"the build of {context} would record {len(others)} sensitive "
                         f"{'input' if len(others) == 1 else 'inputs'} in the image:")
        width = max((len(escaped(f.path)) for f in self.findings), default=0)
        for f in files:
            lines.append(f"  {escaped(f.path).ljust(width)}  {escaped(f.reason)}")
        if files:
            fixes = list(dict.fromkeys(f.fix for f in files))
            lines.append(f"fix: add these lines to {escaped(self.ignore_file)}:")
            lines.extend(f"  {escaped(line)}" for line in fixes)
            example = ", ".join(repr(f.path.rstrip("/")) for f in files[:3])
            lines.append("or, if sending them is deliberate, list them in this image's `allowSensitive: [paths]` "
                         f"stack setting (e.g. allowSensitive: [{example}]).")
            if others:
                lines.append("and it would record these in the image:")
        for f in others:
            lines.append(f"  {escaped(f.path).ljust(width)}  {escaped(f.reason)}")
            lines.append(f"  {' ' * width}  fix: {escaped(f.fix)}")
        return "\n".join(lines)
