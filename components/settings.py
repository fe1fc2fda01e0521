"""Stack configuration -> validated, typed settings.

This is the only module that reads `pulumi.Config`. Everything is validated before any resource is declared,
and every problem found is reported at once: each message names the key path, the value given, the rule it broke
and how to fix it. `settings_from_values` is the pure core (no engine needed); `load_settings` feeds it from the
Pulumi engine and `load_stack_file` from a `stacks/Pulumi.<stack>.yaml` file (used by tools such as
`cli.ram` that render things from a stack without running Pulumi).

Paths (`context`, `dockerfile`) must resolve, symlinks followed, inside the repository that holds the project
(`repository_root`). What Docker itself accepts (platforms, registry host[:port], build stages) is checked with
components/docker_rules.py. Values are shown shortened and escaped (`_shown`), never a password or build-arg value.
"""
from __future__ import annotations

import difflib
import functools
import json
import os
import re
import reprlib
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from buildcontext import DEFAULT_PLATFORM
from buildcontext.printable import escaped, has_control
from buildcontext.sensitive import BUILD_ARG_ENTRY, check_allow_entry
from components.docker_rules import DockerfileUnreadable, build_stages, platform_parts, platform_problem
from components.errors import engine_class
from registryclient.references import PATH_COMPONENT, server_problem
from registryclient.scrub import ENCODED_FORMS_MAX

PROJECT = "acr-publish"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

EDITIONS = ("enterprise", "personal", "local")

# --- promotion (issue 9): a stack that copies the images another stack published instead of building them ---
PROMOTION_KEYS = ("promoteFrom", "sourceUsername", "sourcePassword")
PROMOTED_IMAGE_KEYS = ("name", "summary", "tagImmutability", "audit")
"""The only keys a promoted image may carry: the build keys would be silently ignored, so they are refused."""
# Pulumi's stack and project name grammar; a StackReference takes `stack` (same project and organization) or
# `organization/project/stack`.
_STACK_PART = re.compile(r"[A-Za-z0-9_.-]{1,100}")

ENDPOINTS = ("public", "vpc")
VISIBILITIES = ("PRIVATE", "PUBLIC")
DEFAULT_LOCAL_SERVER = "127.0.0.1:5000"

TOP_KEYS = ("registry", "registryPassword", "images", "protect", "retainOnDelete", "preflight", "builders") + PROMOTION_KEYS
REGISTRY_KEYS = ("edition", "instanceId", "endpoint", "namespace", "createNamespace", "visibility", "server", "username")
IMAGE_KEYS = (
    "name", "context", "dockerfile", "target", "platform", "buildArgs", "summary", "tagImmutability", "allowSensitive",
    "cacheFrom", "remoteInputs", "platforms", "audit",
)
REMOTE_INPUT_MODES = ("resolve", "pinned", "ignore")
"""How an image's base images and remote ADD sources enter its content tag (components/remote_inputs.py): resolved
at plan time (default), required pinned in the Dockerfile, or left out (a moved base never rebuilds)."""
AUDIT_KEYS = ("maxWastedBytes", "maxWastedPercent", "failOnSensitive", "allowSensitive")
"""Per image `audit:` (the layer audit, imageaudit/): thresholds, and the image paths a sensitive finding may have."""
# Every image is built with this build arg, so what it pushes carries BuildKit's inline cache metadata and can serve
# as the registry cache of the stack's next build (components/image.py); it is a build input, so part of the tag.
INLINE_CACHE_ARG = ("BUILDKIT_INLINE_CACHE", "1")

# ACR-FACTS.md: names and limits.
_INSTANCE_ID = re.compile(r"(cri|crpi)-[a-z0-9]{8,32}")
_REGION = re.compile(r"[a-z]{2}-[a-z0-9]+(-[a-z0-9]+)*")
_CLASSIC_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_-]{1,29}")
_ENTERPRISE_NAMESPACE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,118}[a-z0-9])")
# Docker's path-component grammar (distribution/reference), limited to ACR's 2-30 chars for repositories.
_DOCKER_COMPONENT = PATH_COMPONENT
# BuildKit's stage-name rule ("name can't start with a number or contain symbols"), matched case-insensitively.
_TARGET = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_BUILD_ARG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Pulumi's stack-name rule (pkg/backend validateStackName): 1-100 of A-Z a-z 0-9 _ . -
_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
SUMMARY_MAX = 80
PASSWORD_LENGTHS = (8, 32)
"""ACR registry login passwords (Container Registry console > Access Credential) are 8-32 characters."""
LOCAL_PASSWORD_MIN = 4
"""The local edition's shortest password: components/registry_client.py's MIN_SCRUB_LEN, below which the scrubber
masks nothing (it would mangle ordinary words), so a shorter password could reach a message."""
LOCAL_PASSWORD_MAX = ENCODED_FORMS_MAX
"""The local edition's (and sourcePassword's) longest password: the longest secret whose every encoded echo
(percent-encoded, HTML- or JSON-escaped, base64) the scrubber masks (components/registry_client.py
ENCODED_FORMS_MAX); the registry's htpasswd login (bcrypt) reads only its first 72 bytes anyway."""


def local_password_problem(key: str, length: int, fix: str) -> str | None:
    """The rule a local registry password of `length` characters breaks (never its value), or None."""
    if LOCAL_PASSWORD_MIN <= length <= LOCAL_PASSWORD_MAX:
        return None
    side = "shorter" if length < LOCAL_PASSWORD_MIN else "longer"
    return (f"acr-publish:{key} (a secret, not shown) is invalid: it is {side} than allowed; passwords here are "
            f"{LOCAL_PASSWORD_MIN}-{LOCAL_PASSWORD_MAX} characters (shorter ones cannot be kept out of messages, "
            f"and a registry's htpasswd login reads only the first 72 bytes); {fix}")
NAME_MAX = 255
"""Bytes in one path component on Linux (and most file systems Docker runs on)."""
PATH_MAX = 4096
PROBLEMS_MAX = 100
"""Problems listed in one ConfigError; validation stops collecting past it, so a stack file of thousands of bad
entries (or YAML aliases repeating one) is reported in bounded time and length."""
STACK_FILE_MAX = 1 << 20
"""A stack file is a few KB; past this it is not one, and reading on would only grow memory."""

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 160
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple, _REPR.maxset = 3, 6, 6, 6, 6


def _shown(value: Any) -> str:
    """A config value as messages show it: repr (control characters escaped), bounded in length and depth."""
    return _REPR.repr(value)


def _shown_path(path: Path | str) -> str:
    """A file system path in a message: control characters and undecodable bytes escaped, length bounded."""
    text = str(path)
    return escaped(text) if len(text) <= 160 else _shown(text)[1:-1]


def _shown_name(name: str) -> str:
    """A stack name as it appears in prose: itself when valid, else escaped and bounded."""
    return name if isinstance(name, str) and _STACK_NAME.fullmatch(name) else _shown(name)[1:-1]


class ConfigError(Exception):
    """Every problem found in a stack's configuration, one per line."""

    def __init__(self, stack: str, problems: list[str]):
        self.stack = stack
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems[:PROBLEMS_MAX])
        if len(self.problems) > PROBLEMS_MAX:
            lines += f"\n  - ... and {len(self.problems) - PROBLEMS_MAX} more; fix these first"
        name = _shown_name(stack)
        super().__init__(
            f"stack '{name}' has {len(self.problems)} configuration problem(s) "
            f"(stacks/Pulumi.{name}.yaml):\n{lines}"
        )


@dataclass(frozen=True)
class RegistrySettings:
    """Where the stack's images go, per acr-publish:registry."""

    edition: str
    """enterprise | personal | local."""
    namespace: str | None
    """ACR namespace (optional for local)."""
    instance_id: str | None = None
    """Enterprise (cri-) or new Personal (crpi-) instance id; enterprise only."""
    endpoint: str = "public"
    """public | vpc: which registry host images are pushed to."""
    create_namespace: bool = True
    """False adopts an existing namespace instead of declaring it."""
    visibility: str = "PRIVATE"
    """Repository (and namespace default) visibility."""
    server: str | None = None
    """Registry host[:port]; local edition only."""
    username: str | None = None
    """Registry login user; personal (required) and local (optional)."""


@dataclass(frozen=True)
class AuditSettings:
    """What the layer audit of one published or promoted image may find before the run fails, per `audit:`."""

    max_wasted_bytes: int | None = None
    """Fail when a platform of the image wastes more bytes than this (None: report only)."""
    max_wasted_percent: float | None = None
    """Fail when a platform wastes more than this share (0-100) of its layers' file bytes (None: report only)."""
    fail_on_sensitive: bool = False
    """Fail on a sensitive file in any layer (default true in stacks whose name starts with `prod`)."""
    allow_sensitive: tuple[str, ...] = ()
    """Paths in the image (relative to its root; a directory allows what is under it) accepted as sensitive
    findings: by the audit's thresholds and by a promotion of an image holding them."""


@dataclass(frozen=True)
class ImageSettings:
    """One image to build and push, per an entry of acr-publish:images."""

    name: str
    """Repository name, unique in the stack."""
    context: str
    """Build context, POSIX path relative to the project root."""
    dockerfile: str
    """Dockerfile, POSIX path relative to the project root."""
    platform: str = DEFAULT_PLATFORM
    """os/arch[/variant]; never the host's architecture implicitly."""
    target: str | None = None
    """Build stage to stop at."""
    build_args: Mapping[str, str] = field(default_factory=dict)
    """Docker build args: the configured ones plus BUILDKIT_INLINE_CACHE=1 (INLINE_CACHE_ARG), as the build gets them."""
    summary: str = ""
    """Repository summary (1-80 chars)."""
    tag_immutability: bool | None = None
    """Enterprise repositories only: existing tags can never be overwritten."""
    allow_sensitive: tuple[str, ...] = ()
    """Context paths the user deliberately accepts despite the sensitive-file guard."""
    cache_from: bool = True
    """Build with the image this stack published last for this name as BuildKit's registry cache."""
    remote_inputs: str = REMOTE_INPUT_MODES[0]
    """resolve | pinned | ignore: how base images and remote ADD sources enter the content tag."""
    platforms: tuple[str, ...] = ()
    """acr-publish:images[].platforms: one build per platform and an image index over them under one tag (`platform`
    is then the first of them); empty for a one-platform image (`platform`)."""
    audit: AuditSettings = field(default_factory=AuditSettings)
    """The layer audit's thresholds for this image."""


@dataclass(frozen=True)
class PromotedImageSettings:
    """One image copied from the source stack, per an entry of acr-publish:images of a promoting stack."""

    name: str
    """Repository name: the image the source stack exports under this name."""
    summary: str = ""
    """Repository summary (1-80 chars)."""
    tag_immutability: bool | None = None
    """Enterprise repositories only: existing tags can never be overwritten."""
    audit: AuditSettings = field(default_factory=AuditSettings)
    """The layer audit's thresholds; its allowSensitive also lets a promotion copy an image holding those paths."""


@dataclass(frozen=True)
class PromotionSettings:
    """Where a promoting stack copies its images from, per acr-publish:promoteFrom."""

    source_stack: str
    """The source stack: `stack` of this project, or `organization/project/stack`."""
    images_configured: bool
    """False when acr-publish:images was omitted: every image the source exports is promoted."""
    source_username: str | None = None
    """Login user of a local-edition source registry on another host (acr-publish:sourceUsername)."""
    has_source_password: bool = False
    """acr-publish:sourcePassword is set (a secret; its value is handed to the program separately)."""


@dataclass(frozen=True)
class BuilderSettings:
    """The Docker engine one platform's builds run on, per an entry of acr-publish:builders."""

    platform: str
    """The platform as the images name it (os/arch[/variant])."""
    host: str
    """ssh://[user@]host[:port], tcp://host:port (TLS) or unix:///path: what the docker.Provider's `host` takes."""
    cert_path: str | None = None
    """tcp:// only: absolute directory holding ca.pem, cert.pem and key.pem (Docker's DOCKER_CERT_PATH layout)."""


@dataclass(frozen=True)
class Settings:
    """The whole validated configuration of one stack."""

    stack: str
    region: str | None
    registry: RegistrySettings
    images: tuple[ImageSettings, ...]
    protect: bool
    retain_on_delete: bool
    preflight: bool
    project_root: Path = PROJECT_ROOT
    promotion: PromotionSettings | None = None
    """Set when the stack promotes (acr-publish:promoteFrom): `images` is then empty and `promoted_images` holds
    the configured names (empty when every image of the source is promoted)."""
    promoted_images: tuple[PromotedImageSettings, ...] = ()
    builders: tuple[BuilderSettings, ...] = ()
    """acr-publish:builders: the Docker engine each listed platform builds on (others build on the local engine)."""

    def path(self, relative: str) -> Path:
        """Absolute path of a project-relative path."""
        return self.project_root / relative


def _suggest(key: Any, valid: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6) if isinstance(key, str) else []
    hint = f"did you mean '{close[0]}'?" if close else "valid keys: " + ", ".join(valid)
    return hint


def _unknown_keys(path: str, given: Mapping[str, Any], valid: tuple[str, ...], problems: list[str],
                  sep: str = ".") -> None:
    """`sep` joins path and key: '.' inside a setting, ':' after the project name (`acr-publish:imagez`)."""
    for key in given:
        if len(problems) >= PROBLEMS_MAX:
            return
        if key not in valid:
            shown = key if isinstance(key, str) and key.isprintable() and len(key) <= 80 else _shown(key)
            problems.append(f"{path}{sep}{shown} is not a known setting: {_suggest(key, valid)}")


def _bool(path: str, value: Any, default: bool, problems: list[str]) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append(f"{path} {_shown(value)} is invalid: it must be true or false")
    return default


def _choice(path: str, value: Any, choices: tuple[str, ...], default: str | None, problems: list[str]) -> str | None:
    if value is None:
        return default
    if value in choices:
        return value
    fix = ""
    if isinstance(value, str):
        for c in choices:
            if c.lower() == value.lower():
                fix = f"; try '{c}'"
    problems.append(f"{path} {_shown(value)} is invalid: it must be one of {', '.join(choices)}{fix}")
    return default


def _str(path: str, value: Any, problems: list[str], *, if_empty: str = "give a value or remove the key") -> str | None:
    """A string setting, or None when absent or refused. An empty (or blank) string is refused, never taken as
    "unset": `if_empty` is the fix, e.g. what removing the key does."""
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append(f"{path} {_shown(value)} is invalid: it must be a string; quote it in the stack file")
        return None
    if not value.strip():
        problems.append(f"{path} {_shown(value)} is invalid: it is empty; {if_empty}")
        return None
    return value


def _login_user(path: str, value: Any, problems: list[str], **kwargs: str) -> str | None:
    """A registry login user (`_str`), or None when absent or refused. It holds no control character (the name is
    printed in messages, where one would move the cursor or start a forged line) and no ':', which HTTP Basic
    authentication cannot carry in a user name (RFC 7617: the first ':' of `user:password` ends the user)."""
    user = _str(path, value, problems, **kwargs)
    if user is not None and has_control(user):
        problems.append(f"{path} {_shown(user)} is invalid: a user name holds no control characters (newline, tab, "
                        "ESC and the like); retype the login name")
        return None
    if user is not None and ":" in user:
        problems.append(f"{path} {_shown(user)} is invalid: a registry login user cannot contain ':' (HTTP Basic "
                        "authentication ends the user name at the first ':'); give the user name exactly as the "
                        "registry knows it")
    return user


def _suggest_name(value: str, limit: int) -> str:
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-_")
    return cleaned[:limit] or "app"


def _check_namespace(edition: str, ns: str, problems: list[str]) -> None:
    path = "acr-publish:registry.namespace"
    if edition == "enterprise":
        if not _ENTERPRISE_NAMESPACE.fullmatch(ns):
            problems.append(
                f"{path} {_shown(ns)} is invalid: Enterprise namespaces are 2-120 chars of a-z 0-9 _ - . and must not "
                f"start or end with a delimiter; try {_suggest_name(ns, 120)!r}"
            )
    elif not _is_classic_name(ns):
        problems.append(
            f"{path} {_shown(ns)} is invalid: namespaces are 2-30 chars of a-z 0-9 - _ and must start and end with a "
            f"letter or digit; try {_suggest_name(ns, 30)!r}"
        )


def _is_classic_name(name: str) -> bool:
    """ACR's 2-30 chars of a-z 0-9 - _ that docker also accepts as a path component (classic namespaces, repos)."""
    return bool(_CLASSIC_NAMESPACE.fullmatch(name) and _DOCKER_COMPONENT.fullmatch(name))


def is_repository_name(name: Any) -> bool:
    """An image (repository) name as acr-publish:images[].name allows it: ACR's rule and docker's."""
    return isinstance(name, str) and _is_classic_name(name)


def is_instance_id(value: Any) -> bool:
    """An ACR Enterprise instance id (cri-... or crpi-...), as acr-publish:registry.instanceId allows it."""
    return isinstance(value, str) and bool(_INSTANCE_ID.fullmatch(value))


def is_region(value: Any) -> bool:
    """An Alibaba Cloud region id (cn-hangzhou), as alicloud:region allows it."""
    return isinstance(value, str) and bool(_REGION.fullmatch(value))


def shown(value: Any) -> str:
    """A value read from outside (config, another stack's exports) as messages show it: escaped and bounded."""
    return _shown(value)


def _check_repo_name(path: str, name: str, problems: list[str]) -> None:
    if not _is_classic_name(name):
        problems.append(
            f"{path} {_shown(name)} is invalid: repository names are 2-30 chars of a-z 0-9 - _ , start and end with a "
            f"letter or digit, with no '_-' runs; try {_suggest_name(name, 30)!r}"
        )


def _registry(raw: Any, stack: str, password_length: int | None, region: Any,
              problems: list[str]) -> RegistrySettings:
    """`password_length` is None when no registryPassword is set, -1 when one is set but its length is unknown (a
    stack file's ciphertext)."""
    path = "acr-publish:registry"
    has_password = password_length is not None
    if raw is None:
        problems.append(
            f"{path} is missing: set it in stacks/Pulumi.{_shown_name(stack)}.yaml, e.g. registry: {{edition: local}} "
            "(see README, 'Configuring a stack')"
        )
        raw = {"edition": "local"}
    if not isinstance(raw, Mapping):
        problems.append(f"{path} {_shown(raw)} is invalid: it must be a map of registry settings")
        raw = {"edition": "local"}
    _unknown_keys(path, raw, REGISTRY_KEYS, problems)

    edition = _choice(f"{path}.edition", raw.get("edition"), EDITIONS, None, problems)
    if raw.get("edition") is None:
        problems.append(f"{path}.edition is missing: set it to one of {', '.join(EDITIONS)}")

    local = edition == "local"
    instance_id = _str(f"{path}.instanceId", raw.get("instanceId"), problems,
                       if_empty="copy the instance id (cri-... or crpi-...) from the Container Registry console")
    endpoint = _choice(f"{path}.endpoint", raw.get("endpoint"), ENDPOINTS, "public", problems)
    namespace = _str(
        f"{path}.namespace", raw.get("namespace"), problems,
        if_empty="remove the key to push to <server>/<image> without a namespace, or name one, e.g. demo" if local
        else "name the namespace, e.g. namespace: acme",
    )
    create_ns = _bool(f"{path}.createNamespace", raw.get("createNamespace"), True, problems)
    visibility = _choice(f"{path}.visibility", raw.get("visibility"), VISIBILITIES, "PRIVATE", problems)
    server = _str(f"{path}.server", raw.get("server"), problems,
                  if_empty=f"remove the key to use the default {DEFAULT_LOCAL_SERVER}, or give host[:port]")
    username = _login_user(f"{path}.username", raw.get("username"), problems,
                    if_empty="give the registry login user, or remove the key (and the password) to log in as nobody"
                    if local else "give the registry login user")
    # "is missing" only for a key that is absent: a value already refused above is not reported twice.
    absent = {key for key in REGISTRY_KEYS if raw.get(key) is None}

    def not_for(key: str, editions: str) -> None:
        problems.append(f"{path}.{key} {_shown(raw.get(key))} is not used by edition {edition!r}: it applies to "
                        f"{editions} only; remove it from stacks/Pulumi.{_shown_name(stack)}.yaml")

    if edition == "enterprise":
        if "instanceId" in absent:
            problems.append(
                f"{path}.instanceId is missing: edition enterprise needs the instance id (cri-... or crpi-...) shown "
                "in the Container Registry console"
            )
        elif instance_id is not None and not _INSTANCE_ID.fullmatch(instance_id):
            problems.append(
                f"{path}.instanceId {_shown(instance_id)} is invalid: it must look like cri-<8-32 lowercase letters "
                "or digits> or crpi-<...>; copy it from the Container Registry console"
            )
    elif "instanceId" not in absent and edition:
        not_for("instanceId", "enterprise")

    if local:
        if "server" in absent:
            server = DEFAULT_LOCAL_SERVER
        elif server is not None:
            rule = server_problem(server)
            if rule:
                example = "" if "e.g." in rule else f"; e.g. {DEFAULT_LOCAL_SERVER}"
                problems.append(f"{path}.server {_shown(server)} is invalid: {rule}{example}")
        for key in ("endpoint", "createNamespace"):
            if key not in absent:
                not_for(key, "enterprise and personal")
        refused = "username" not in absent and username is None  # already reported above
        if not refused and ("username" in absent) != (not has_password):
            problems.append(
                f"{path}.username and acr-publish:registryPassword must be set together for a local registry "
                f"(username is {'unset' if 'username' in absent else 'set'}, password is "
                f"{'set' if has_password else 'unset'})"
            )
    elif edition:
        if "server" not in absent:
            not_for("server", "local")
        if "namespace" in absent:
            problems.append(f"{path}.namespace is missing: edition {edition} needs a namespace, e.g. namespace: acme")
        if region is None:
            problems.append(
                "alicloud:region is missing: the alicloud provider would silently use cn-beijing; set it with "
                f"`pulumi config set alicloud:region cn-hangzhou -s {_shown_name(stack)}`"
            )
        elif not isinstance(region, str) or not _REGION.fullmatch(region):
            problems.append(
                f"alicloud:region {_shown(region)} is invalid: it must be a region id such as cn-hangzhou or "
                "ap-southeast-1"
            )

    if edition == "personal":
        if "username" in absent:
            problems.append(
                f"{path}.username is missing: edition personal logs in with your Alibaba Cloud account name or RAM "
                "user (Container Registry console > Access Credential)"
            )
        if not has_password:
            problems.append(
                "acr-publish:registryPassword is missing: edition personal needs the registry login password; set it "
                f"with `pulumi config set --secret acr-publish:registryPassword <password> -s {_shown_name(stack)}`"
            )
        elif password_length >= 0 and not PASSWORD_LENGTHS[0] <= password_length <= PASSWORD_LENGTHS[1]:
            # The value is a secret: say which side of the rule it breaks, never the value or its length.
            side = "shorter" if password_length < PASSWORD_LENGTHS[0] else "longer"
            problems.append(
                f"acr-publish:registryPassword (a secret, not shown) is invalid: it is {side} than ACR allows, and "
                f"registry login passwords are {PASSWORD_LENGTHS[0]}-{PASSWORD_LENGTHS[1]} characters; set the "
                "password from Container Registry console > Access Credential with "
                f"`pulumi config set --secret acr-publish:registryPassword <password> -s {_shown_name(stack)}`"
            )
    if edition == "enterprise":
        if "username" not in absent:
            not_for("username", "personal and local (enterprise uses temporary credentials)")
        if has_password:
            problems.append(
                "acr-publish:registryPassword is not used by edition enterprise: temporary credentials come from the "
                f"instance; remove it with `pulumi config rm acr-publish:registryPassword -s {_shown_name(stack)}`"
            )

    if local and has_password and password_length >= 0 and (problem := local_password_problem(
            "registryPassword", password_length, "set one on the local registry and with `pulumi config set --secret "
            f"acr-publish:registryPassword <password> -s {_shown_name(stack)}`")):
        problems.append(problem)
    if namespace and edition:
        _check_namespace(edition, namespace, problems)

    return RegistrySettings(
        edition=edition or "", namespace=namespace, instance_id=instance_id, endpoint=endpoint or "public",
        create_namespace=create_ns, visibility=visibility or "PRIVATE", server=server, username=username,
    )


def repository_root(project_root: Path) -> Path:
    """The repository that holds the project: the git work tree containing Pulumi.yaml (the nearest directory up
    with a `.git` directory holding HEAD, or a `.git` file whose gitdir exists, as a worktree or submodule has),
    else the project directory itself.

    Build contexts and Dockerfiles must resolve inside it, so a project in a monorepo subfolder may build from
    `../shared/app`, while nothing can send or read files from elsewhere on the machine.
    """
    start = project_root.resolve()
    for directory in (start, *start.parents):
        if _is_git_marker(directory / ".git"):
            return directory
    return start


def _is_git_marker(git: Path) -> bool:
    """Whether `git` makes its directory a git work tree: a `.git` directory holding HEAD, or a `.git` file whose
    `gitdir:` line names an existing directory (relative to the file's directory, as git reads it). Any other
    `.git` (an empty file, a dangling gitdir, a stray one in /tmp) would widen the allowed root, so it counts for
    nothing."""
    try:
        mode = git.lstat().st_mode
        if stat.S_ISDIR(mode):
            return _is_git_directory(git)
        if not stat.S_ISREG(mode):
            return False
        with git.open("rb") as handle:
            first = handle.read(4096).split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    except OSError:
        return False
    if not first.startswith("gitdir:"):
        return False
    target = first[len("gitdir:"):].strip()
    return bool(target) and _is_git_directory(git.parent / target)


def _is_git_directory(path: Path) -> bool:
    """Git's own test of a repository directory (setup.c is_git_directory): a HEAD file, and objects/ and refs/
    directories (a worktree's gitdir has a commondir file pointing at the shared objects/ and refs/ instead)."""
    try:
        if not (path / "HEAD").is_file():
            return False
        common = path
        if (path / "commondir").is_file():
            common = path / (path / "commondir").read_text(encoding="utf-8", errors="replace").strip()
        return (common / "objects").is_dir() and (common / "refs").is_dir()
    except OSError:
        return False


class _Located:
    """Where a context or Dockerfile setting points: its project-relative POSIX path and resolved location, or the
    rule it breaks (`missing` when nothing exists there)."""

    def __init__(self, relative: str | None = None, resolved: Path | None = None, rule: str | None = None,
                 missing: bool = False):
        self.relative, self.resolved, self.rule, self.missing = relative, resolved, rule, missing


def _locate(value: Any, root: Path, repo: Path, *, want_dir: bool) -> _Located:
    """Resolve a project-relative path (symlinks followed) and check it stays inside the repository `repo`.

    Checks lengths before touching the file system, so an over-long name is a rule broken, not an OSError.
    """
    kind = "directory" if want_dir else "file"
    if not isinstance(value, str) or not value.strip():
        return _Located(rule="it must be a non-empty path relative to the project root")
    if "\0" in value:
        return _Located(rule="it contains a NUL character, which no file name can hold; remove it")
    try:
        encoded = os.fsencode(value)
    except UnicodeEncodeError:
        return _Located(rule="it is not valid text for a file name (an unpaired surrogate escape); retype the path")
    for part in value.split("/"):
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            return _Located(rule=f"its component {_shown(part)} is {size} bytes, and a file name is at most "
                                 f"{NAME_MAX} bytes, so nothing can exist there; shorten it")
    if len(encoded) > PATH_MAX:
        return _Located(rule=f"it is {len(encoded)} bytes, and a path is at most {PATH_MAX} bytes; shorten it")
    p = Path(value)
    if p.is_absolute():
        return _Located(rule="paths are relative to the project root so every machine computes the same tag; write "
                             "it relative, e.g. app")
    full = root / p
    try:
        resolved = full.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        return _Located(rule=f"no {kind} {_shown_path(full)} exists; paths are relative to the project root "
                             f"{_shown_path(root)}", missing=True)
    except RuntimeError:  # Python 3.11's report of a symlink loop
        return _Located(rule="it cannot be resolved: a symlink on the way loops; fix or remove the link")
    except OSError as err:
        return _Located(rule=f"it cannot be resolved ({err.strerror or type(err).__name__}); check the path")
    if not resolved.is_relative_to(repo):
        lexical = Path(os.path.normpath(full))
        via = ", through a symlink on the way" if lexical.is_relative_to(repo) else ""
        return _Located(rule=(
            f"it resolves to {_shown_path(resolved)}, outside the repository that holds the project "
            f"({_shown_path(repo)}){via}; the build would {'send' if want_dir else 'read'} files from elsewhere on "
            f"this machine; point it at a {kind} inside {_shown_path(repo)}, or move what the build needs into the "
            "repository"
        ))
    try:
        mode = resolved.stat().st_mode
    except OSError as err:
        return _Located(rule=f"{_shown_path(resolved)} cannot be examined ({err.strerror or type(err).__name__})")
    ok = stat.S_ISDIR(mode) if want_dir else stat.S_ISREG(mode)
    if not ok:
        actual = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        return _Located(rule=f"{_shown_path(resolved)} is {actual}, and it must be a {'directory' if want_dir else 'regular file'}")
    return _Located(relative=p.as_posix(), resolved=resolved)


def _target_problem(target: str, dockerfile: _Located) -> str | None:
    """Why `target` names no stage of the Dockerfile, or None when it does."""
    try:
        stages = build_stages(dockerfile.resolved)
    except DockerfileUnreadable as err:
        return (f"it cannot be checked: the Dockerfile {dockerfile.relative!r} {err}; Docker reads the same file, so "
                "the build would fail on it too: fix the Dockerfile or point dockerfile at another one")
    if any(stage.lower() == target.lower() for stage in stages):
        return None
    if not stages:
        return (f"{dockerfile.relative} names no build stage (no `FROM ... AS <name>` line); add `AS {target}` to a "
                "FROM line or remove target")
    close = difflib.get_close_matches(target.lower(), [s.lower() for s in stages[:1000]], n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"set target to one of them or add `AS {target}` to a FROM line"
    shown = ", ".join(_shown(s)[1:-1] for s in stages[:10]) + (f" and {len(stages) - 10} more" if len(stages) > 10 else "")
    return f"{dockerfile.relative} has no stage {target!r} (its stages: {shown}); {hint}"


def _repository_settings(ipath: str, item: Mapping[str, Any], name: str, edition: str,
                         problems: list[str]) -> tuple[str, bool | None]:
    """An image's repository summary and tag immutability: the same rules for built and promoted images."""
    summary = _str(f"{ipath}.summary", item.get("summary"), problems,
                   if_empty=f"remove the key to use '{name} image', or write 1-{SUMMARY_MAX} chars")
    if summary is None:
        summary = f"{name} image"
    elif not 1 <= len(summary) <= SUMMARY_MAX:
        problems.append(
            f"{ipath}.summary is {len(summary)} chars: ACR summaries are 1-{SUMMARY_MAX} chars; shorten it"
        )
    immut_raw = item.get("tagImmutability")
    if immut_raw is not None and edition not in ("enterprise", ""):
        problems.append(
            f"{ipath}.tagImmutability {_shown(immut_raw)} is not used by edition {edition!r}: only Enterprise "
            "repositories support it; remove it"
        )
    immut = _bool(f"{ipath}.tagImmutability", immut_raw, True, problems) if edition == "enterprise" else None
    return summary, immut


def check_platform(path: str, platform: str, problems: list[str]) -> None:
    """The rule for an image's platform (also applied to `python -m cli.explain --platform`)."""
    rule = platform_problem(platform)
    if rule:
        problems.append(f"{path} {_shown(platform)} is invalid: {rule}")


def check_target(path: str, target: str | None, problems: list[str]) -> None:
    """The rule for an image's target (also applied to `python -m cli.explain --target`)."""
    if target is not None and not _TARGET.fullmatch(target):
        problems.append(
            f"{path} {_shown(target)} is invalid: it must be a build stage name (a letter, then letters, digits, _ . -)"
        )


def check_build_arg_name(path: str, name: Any, problems: list[str]) -> None:
    """The rule for a build arg's name (also applied to `python -m cli.explain --build-arg`). Names only: values
    can be secrets and never appear in a message."""
    if not isinstance(name, str) or not _BUILD_ARG.fullmatch(name):
        problems.append(
            f"{path} {_shown(name)} is invalid: build arg names are letters, digits and _ and do not start with a digit"
        )


def audit_settings(path: str, raw: Any, stack: str, problems: list[str]) -> AuditSettings:
    """One image's `audit:` map; defaults: report only, except failOnSensitive in stacks named prod*."""
    default_fail = stack.startswith("prod")
    if raw is None:
        return AuditSettings(fail_on_sensitive=default_fail)
    if not isinstance(raw, Mapping):
        problems.append(f"{path} {_shown(raw)} is invalid: it must be a map, e.g. audit: {{maxWastedPercent: 10, "
                        "failOnSensitive: true}}; remove the key for the defaults")
        return AuditSettings(fail_on_sensitive=default_fail)
    _unknown_keys(path, raw, AUDIT_KEYS, problems)
    max_bytes = raw.get("maxWastedBytes")
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0):
        problems.append(f"{path}.maxWastedBytes {_shown(max_bytes)} is invalid: it must be a whole number of bytes, "
                        "0 or more, e.g. maxWastedBytes: 10485760 (10 MiB); remove the key to only report")
        max_bytes = None
    max_percent = raw.get("maxWastedPercent")
    if max_percent is not None and (isinstance(max_percent, bool) or not isinstance(max_percent, (int, float))
                                    or not 0 <= max_percent <= 100):
        problems.append(f"{path}.maxWastedPercent {_shown(max_percent)} is invalid: it must be a number from 0 to "
                        "100 (a share of the layers' file bytes), e.g. maxWastedPercent: 10; remove the key to only "
                        "report")
        max_percent = None
    fail = _bool(f"{path}.failOnSensitive", raw.get("failOnSensitive"), default_fail, problems)
    allow = raw.get("allowSensitive")
    entries: list[str] = []
    if allow is not None and not isinstance(allow, list):
        problems.append(f"{path}.allowSensitive {_shown(allow)} is invalid: it must be a list of paths in the image, "
                        "e.g. allowSensitive: [etc/ssl/private/snakeoil.key]; write [] or remove the key to allow "
                        "nothing")
    for j, entry in enumerate(allow if isinstance(allow, list) else []):
        normalized, rule = (None, "build args are not in an image's layers; name a path in the image") \
            if isinstance(entry, str) and entry.strip().lower().startswith(BUILD_ARG_ENTRY.lower()) \
            else check_allow_entry(entry.lstrip("/") if isinstance(entry, str) else entry)
        if rule is None:
            entries.append(normalized)
        else:
            problems.append(f"{path}.allowSensitive[{j}] {_shown(entry)} is invalid: {rule.replace('build context', 'image')}")
    return AuditSettings(max_wasted_bytes=max_bytes, max_wasted_percent=float(max_percent) if max_percent is not None
                         else None, fail_on_sensitive=fail, allow_sensitive=tuple(entries))


def _images(raw: Any, edition: str, root: Path, problems: list[str], stack: str = "") -> tuple[ImageSettings, ...]:
    path = "acr-publish:images"
    if raw is None:
        problems.append(f"{path} is missing: list at least one image, e.g. images: [{{name: web, context: app}}]")
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append(f"{path} {_shown(raw)} is invalid: it must be a non-empty list of images")
        return ()
    repo = repository_root(root)
    images: list[ImageSettings] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        if len(problems) >= PROBLEMS_MAX:
            break
        ipath = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{ipath} {_shown(item)} is invalid: each image is a map with at least name and context")
            continue
        _unknown_keys(ipath, item, IMAGE_KEYS, problems)
        name = _str(f"{ipath}.name", item.get("name"), problems, if_empty="it is the repository name, e.g. name: web")
        if item.get("name") is None:
            problems.append(f"{ipath}.name is missing: it is the repository name, e.g. name: web")
        if name is None:
            name = f"image{i}"
        else:
            _check_repo_name(f"{ipath}.name", name, problems)
            if name in seen:
                problems.append(
                    f"{ipath}.name {_shown(name)} is a duplicate of {path}[{seen[name]}].name: image names must be "
                    "unique in a stack; rename one"
                )
            seen.setdefault(name, i)
        context = dockerfile = None
        if item.get("context") is None:
            problems.append(f"{ipath}.context is missing: the build context directory relative to the project root")
        else:
            context = _locate(item["context"], root, repo, want_dir=True)
            if context.rule:
                problems.append(f"{ipath}.context {_shown(item['context'])} is invalid: {context.rule}")
                context = None
        if item.get("dockerfile") is not None:
            dockerfile = _locate(item["dockerfile"], root, repo, want_dir=False)
            if dockerfile.rule:
                problems.append(f"{ipath}.dockerfile {_shown(item['dockerfile'])} is invalid: {dockerfile.rule}")
                dockerfile = None
        elif context is not None:
            default = (Path(context.relative) / "Dockerfile").as_posix()
            dockerfile = _locate(default, root, repo, want_dir=False)
            if dockerfile.missing:
                problems.append(
                    f"{ipath}.dockerfile is unset and the default {default!r} does not exist: add a Dockerfile to the "
                    "context or set dockerfile"
                )
                dockerfile = None
            elif dockerfile.rule:
                problems.append(f"{ipath}.dockerfile is unset and the default {default!r} is invalid: "
                                f"{dockerfile.rule}")
                dockerfile = None
        platform = _str(f"{ipath}.platform", item.get("platform"), problems,
                        if_empty=f"remove the key to build for {DEFAULT_PLATFORM}, or name a platform")
        if platform is None:
            platform = DEFAULT_PLATFORM
        else:
            check_platform(f"{ipath}.platform", platform, problems)
        platforms = _platforms(ipath, item, problems)
        if platforms:
            platform = platforms[0]
        target = _str(f"{ipath}.target", item.get("target"), problems,
                      if_empty="remove the key to build the last stage, or name a stage")
        if target is not None:
            before = len(problems)
            check_target(f"{ipath}.target", target, problems)
            if len(problems) == before and dockerfile is not None:
                rule = _target_problem(target, dockerfile)
                if rule:
                    problems.append(f"{ipath}.target {_shown(target)} is invalid: {rule}")
        build_args: dict[str, str] = {}
        raw_args = item.get("buildArgs")
        if raw_args is not None and not isinstance(raw_args, Mapping):
            # Build arg values may carry secrets: messages name keys and types, never values.
            problems.append(f"{ipath}.buildArgs is a {type(raw_args).__name__}, not a map: write NAME: \"value\" "
                            "pairs")
        elif raw_args:
            for k, v in raw_args.items():
                check_build_arg_name(f"{ipath}.buildArgs key", k, problems)
                if not isinstance(v, str):
                    problems.append(
                        f"{ipath}.buildArgs.{_shown(k)[1:-1]} is a {type(v).__name__}, not a string: build args are "
                        f"strings; quote the value in the stack file, e.g. {_shown(k)[1:-1]}: \"...\""
                    )
                elif k == INLINE_CACHE_ARG[0]:
                    problems.append(
                        f"{ipath}.buildArgs.{k} is set by acr-publish: every image is built with "
                        f"{k}={INLINE_CACHE_ARG[1]} so it can serve as the registry cache of the next build; remove "
                        f"it (turn the cache off with {ipath}.cacheFrom: false)"
                    )
                else:
                    build_args[str(k)] = v
        build_args[INLINE_CACHE_ARG[0]] = INLINE_CACHE_ARG[1]
        cache_from = _bool(f"{ipath}.cacheFrom", item.get("cacheFrom"), True, problems)
        remote_inputs = _choice(f"{ipath}.remoteInputs", item.get("remoteInputs"), REMOTE_INPUT_MODES,
                                REMOTE_INPUT_MODES[0], problems) or REMOTE_INPUT_MODES[0]
        audit = audit_settings(f"{ipath}.audit", item.get("audit"), stack, problems)
        summary, immut = _repository_settings(ipath, item, name, edition, problems)
        allow = item.get("allowSensitive")
        if allow is None:
            allow = []
        elif not isinstance(allow, list):
            # An empty string, 0 or {} is a mistake too, never "nothing allowed" (that is `[]` or no key).
            problems.append(
                f"{ipath}.allowSensitive {_shown(allow)} is invalid: it must be a list of paths relative to the "
                "context or buildArg:NAME entries, e.g. allowSensitive: [www/.env, buildArg:NPM_TOKEN]; write [] or "
                "remove the key to allow nothing"
            )
            allow = []
        # The guard's own rule for entries (buildcontext/sensitive.py), so config and build never disagree.
        valid_allow = []
        for j, entry in enumerate(allow):
            normalized, rule = check_allow_entry(entry)
            if rule is None and normalized.startswith(BUILD_ARG_ENTRY) and normalized[len(BUILD_ARG_ENTRY):] not in build_args:
                passed = ", ".join(sorted(build_args)) or "none"
                rule = (f"this image passes no build arg {normalized[len(BUILD_ARG_ENTRY):]!r} (its buildArgs: {passed}); "
                        "name one of its buildArgs keys, or remove the entry")
            if rule is None:
                valid_allow.append(entry)
            else:
                problems.append(f"{ipath}.allowSensitive[{j}] {entry!r} is invalid: {rule}")
        allow = valid_allow
        images.append(ImageSettings(
            name=name, context=context.relative if context else ".",
            dockerfile=dockerfile.relative if dockerfile else "Dockerfile", platform=platform,
            target=target, build_args=build_args, summary=summary, tag_immutability=immut,
            allow_sensitive=tuple(allow), cache_from=cache_from, remote_inputs=remote_inputs, platforms=platforms,
            audit=audit,
        ))
    return tuple(images)


def _misspelled_project(keys: Any) -> list[str]:
    """Config keys whose namespace is a near miss of the project's (`acr-publsh:images`): Pulumi hands them to the
    program like any provider's key, so without this they would be ignored without a word."""
    found = []
    for key in keys:
        if not isinstance(key, str) or ":" not in key:
            continue
        namespace, _, name = key.partition(":")
        if namespace != PROJECT and difflib.SequenceMatcher(None, namespace.lower(), PROJECT).ratio() >= 0.8:
            found.append(f"{_shown(key)[1:-1]} is not a known setting: its namespace is not {PROJECT!r}; did you mean "
                         f"'{PROJECT}:{_shown(name)[1:-1]}'?")
    return found


def _plaintext_password(stack: str, key: str = "registryPassword") -> str:
    return (f"acr-publish:{key} is stored in plain text in the stack file: it must be a secret; set it with "
            f"`pulumi config set --secret acr-publish:{key} <password> -s {_shown_name(stack)}`")


# --- promotion (issue 9) -----------------------------------------------------------------------------------------

def split_stack_name(name: str) -> tuple[str | None, str | None, str]:
    """(organization, project, stack) of a StackReference name: `stack` or `organization/project/stack`."""
    parts = name.split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else (None, None, parts[-1])


def _promotion(values: Mapping[str, Any], stack: str, organization: str | None, has_source_password: bool,
               problems: list[str]) -> PromotionSettings | None:
    raw = values.get("promoteFrom")
    username = _login_user("acr-publish:sourceUsername", values.get("sourceUsername"), problems)
    if raw is None:
        for key, given in (("sourceUsername", username is not None), ("sourcePassword", has_source_password)):
            if given:
                problems.append(
                    f"acr-publish:{key} is only used with acr-publish:promoteFrom (the login of the registry images "
                    f"are promoted from); remove it with `pulumi config rm acr-publish:{key} -s {stack}`"
                )
        return None
    path = "acr-publish:promoteFrom"
    source = _str(path, raw, problems)
    if source is None:
        return None
    parts = source.split("/")
    if len(parts) not in (1, 3) or not all(_STACK_PART.fullmatch(p) for p in parts):
        problems.append(
            f"{path} {source!r} is invalid: it must name a stack of this project (e.g. dev) or a fully qualified "
            "organization/project/stack (letters, digits, _ . - in each part)"
        )
        return None
    org, project, name = split_stack_name(source)
    same_project = project in (None, PROJECT)
    same_org = org is None or organization is None or org == organization
    if name == stack and same_project and same_org:
        problems.append(
            f"{path} {source!r} is this stack ({stack!r}): a stack cannot promote its own images; name the stack "
            f"that builds them, e.g. promoteFrom: dev in stacks/Pulumi.{stack}.yaml"
        )
    if bool(username) != has_source_password and username is not None:
        problems.append(
            "acr-publish:sourceUsername is set but acr-publish:sourcePassword is not: set the source registry's "
            f"password with `pulumi config set --secret acr-publish:sourcePassword <password> -s {stack}`"
        )
    elif has_source_password and not username:
        problems.append(
            "acr-publish:sourcePassword is set but acr-publish:sourceUsername is not: set the user it belongs to with "
            f"`pulumi config set acr-publish:sourceUsername <user> -s {stack}`"
        )
    return PromotionSettings(source_stack=source, images_configured=values.get("images") is not None,
                             source_username=username, has_source_password=has_source_password)


def _promoted_images(raw: Any, edition: str, source: str, problems: list[str],
                     stack: str = "") -> tuple[PromotedImageSettings, ...]:
    """acr-publish:images of a promoting stack: optional; names (and repository settings) only."""
    path = "acr-publish:images"
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append(
            f"{path} {raw!r} is invalid: with acr-publish:promoteFrom it is a non-empty list of image names to "
            f"promote from {source!r}, e.g. images: [{{name: web}}], or omit it to promote every image {source!r} "
            "exports"
        )
        return ()
    images: list[PromotedImageSettings] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        ipath = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{ipath} {item!r} is invalid: each promoted image is a map with a name, e.g. name: web")
            continue
        for key in item:
            if key in IMAGE_KEYS and key not in PROMOTED_IMAGE_KEYS:
                problems.append(
                    f"{ipath}.{key} is not used when the stack promotes (acr-publish:promoteFrom: {source}): the "
                    f"image is copied from {source!r} as it was built there, never rebuilt; remove {key} (only "
                    f"{', '.join(PROMOTED_IMAGE_KEYS)} apply)"
                )
            elif key not in PROMOTED_IMAGE_KEYS:
                problems.append(f"{ipath}.{key} is not a known setting: {_suggest(key, PROMOTED_IMAGE_KEYS)}")
        name = _str(f"{ipath}.name", item.get("name"), problems)
        if not name:
            problems.append(f"{ipath}.name is missing: name the image of {source!r} to promote, e.g. name: web")
            continue
        _check_repo_name(f"{ipath}.name", name, problems)
        if name in seen:
            problems.append(f"{ipath}.name {name!r} is a duplicate of {path}[{seen[name]}].name: list each image "
                            "once")
        seen.setdefault(name, i)
        summary, immut = _repository_settings(ipath, item, name, edition, problems)
        audit = audit_settings(f"{ipath}.audit", item.get("audit"), stack, problems)
        images.append(PromotedImageSettings(name=name, summary=summary, tag_immutability=immut, audit=audit))
    return tuple(images)


def promoted_image_defaults(name: str, edition: str, stack: str = "") -> PromotedImageSettings:
    """A source image promoted without an entry in acr-publish:images: the defaults a configured entry gets."""
    problems: list[str] = []
    summary, immut = _repository_settings("", {}, name, edition, problems)
    return PromotedImageSettings(name=name, summary=summary, tag_immutability=immut,
                                 audit=audit_settings("", None, stack, problems))


def settings_from_values(
    stack: str,
    values: Mapping[str, Any],
    *,
    region: Any,
    has_password: bool,
    password_length: int | None = None,
    project_root: Path = PROJECT_ROOT,
    has_source_password: bool = False,
    organization: str | None = None,
) -> Settings:
    """Validate the `acr-publish:*` values of one stack (keys without the project prefix) into Settings.

    `password_length` is the registry password's length where the caller can know it (the engine hands the program
    the decrypted value); the password itself never comes here. Raises ConfigError listing every problem found.
    """
    problems: list[str] = []
    _unknown_keys(PROJECT, {k: v for k, v in values.items() if k not in ("registryPassword", "sourcePassword")},
                  TOP_KEYS, problems, sep=":")
    length = (password_length if password_length is not None else -1) if has_password else None
    registry = _registry(values.get("registry"), stack, length, region, problems)
    promotion = _promotion(values, stack, organization, has_source_password, problems)
    if promotion is None:
        images = _images(values.get("images"), registry.edition, project_root, problems, stack)
        promoted: tuple[PromotedImageSettings, ...] = ()
    else:
        images = ()
        promoted = _promoted_images(values.get("images"), registry.edition, promotion.source_stack, problems, stack)
    protect = _bool("acr-publish:protect", values.get("protect"), stack.startswith("prod"), problems)
    retain = _bool("acr-publish:retainOnDelete", values.get("retainOnDelete"), True, problems)
    preflight = _bool("acr-publish:preflight", values.get("preflight"), True, problems)
    builders = _builders(values.get("builders"), images, promotion, project_root, problems)
    if problems:
        raise ConfigError(stack, problems)
    return Settings(
        stack=stack, region=region if registry.edition != "local" else None, registry=registry, images=images,
        protect=protect, retain_on_delete=retain, preflight=preflight,
        project_root=project_root, promotion=promotion, promoted_images=promoted, builders=builders,
    )


def _edition_needs_password(values: Mapping[str, Any]) -> bool:
    registry = values.get("registry")
    return isinstance(registry, Mapping) and registry.get("edition") == "personal"


STRUCTURED_KEYS = ("registry", "images", "builders")
"""The keys whose values are objects or lists: Pulumi hands those to programs as JSON text. Every other value
reaches the program as the string the stack file holds (`promoteFrom: "2024"` is the string 2024, and so is an
unquoted 2024), so only these are parsed; true/false keys take the strings true and false (`_bool`)."""


def _decode(key: str, value: Any) -> Any:
    """A config value as the program takes it: JSON text parsed for a structured key, anything else as given."""
    if key in STRUCTURED_KEYS and isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth: a string to validate
            return value
    return value


def _as_engine_hands_it(key: str, value: Any) -> Any:
    """A stack file's value as the engine hands it to the program: a scalar of a key that is not structured is its
    text (`promoteFrom: 2024` is the stack name 2024, `preflight: false` the string false), as `load_settings` gets
    it; structured keys keep their YAML."""
    if key in STRUCTURED_KEYS or isinstance(value, (str, Mapping, list)) or value is None:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int) else value


def load_settings():
    """Read and validate the running stack's configuration from the Pulumi engine.

    Returns (settings, registry_password) where registry_password is a secret Output or None; a promoting stack's
    acr-publish:sourcePassword is read where the source login is assembled (`source_password_value`). A configuration
    problem is raised as a ConfigError that is also a `pulumi.RunError`, which the engine prints without a traceback.
    """
    import pulumi
    from pulumi.runtime import config as runtime_config

    stack = pulumi.get_stack()
    cfg = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    prefix = f"{PROJECT}:"
    all_config = runtime_config.CONFIG.get()
    for key, raw in all_config.items():
        if key.startswith(prefix):
            values[key[len(prefix):]] = _decode(key[len(prefix):], raw)
    for env_key, raw in runtime_config.get_config_env().items():
        if env_key.startswith(prefix):
            values.setdefault(env_key[len(prefix):], _decode(env_key[len(prefix):], raw))
    password = cfg.get_secret("registryPassword")
    source_password = cfg.get_secret("sourcePassword")
    # The plaintext is only measured (ACR's length rule), never kept or shown.
    plain = runtime_config.get_config(f"{PROJECT}:registryPassword")
    password_length = len(plain) if isinstance(plain, str) else None
    del plain
    problems_extra = _misspelled_project(all_config)
    source_plain = runtime_config.get_config(f"{PROJECT}:sourcePassword")
    if isinstance(source_plain, str) and (problem := local_password_problem(
            "sourcePassword", len(source_plain), "give the source registry a password within that range")):
        problems_extra.append(problem)
    del source_plain
    for key, value in (("registryPassword", password), ("sourcePassword", source_password)):
        if value is not None and not runtime_config.is_config_secret(f"{PROJECT}:{key}"):
            problems_extra.append(_plaintext_password(stack, key))
    region = pulumi.Config("alicloud").get("region")
    error = engine_class(ConfigError)  # printed by the engine without a traceback (components/errors.py)
    try:
        settings = settings_from_values(stack, values, region=region, has_password=password is not None,
                                        password_length=password_length,
                                        has_source_password=source_password is not None,
                                        organization=pulumi.get_organization())
    except ConfigError as err:
        raise error(stack, err.problems + problems_extra) from None
    if problems_extra:
        raise error(stack, problems_extra)
    return settings, password


def _known_stacks(project_root: Path) -> str:
    try:
        # Only regular files (links to one included): a directory or FIFO of that name is no stack.
        names = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in (project_root / "stacks").glob("Pulumi.*.yaml")
                       if p.is_file())
    except OSError:
        names = []
    return ", ".join(_shown_name(n) for n in names) or "none"


_FILE_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device",
               stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


@functools.cache
def _stack_file_loader() -> type:
    """PyYAML's SafeLoader refusing a key given twice in one mapping (it keeps the last silently; Pulumi refuses
    the file). Merge keys (`<<: *base`) may still be overridden, as YAML means them to be."""
    import yaml

    class StackFileLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:  # an unhashable key: SafeLoader's own error follows
                        continue
                    if first is not key_node:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"the key {_shown(key)} is given twice (first at line "
                            f"{first.start_mark.line + 1}, column {first.start_mark.column + 1}); keep one",
                            key_node.start_mark)
            return super().construct_mapping(node, deep=deep)

    return StackFileLoader


def _read_stack_file(stack: str, path: Path, project_root: Path) -> Any:
    """The parsed YAML of a stack file; every way it can be unreadable is a ConfigError naming the file."""
    import yaml

    def fail(problem: str) -> ConfigError:
        return ConfigError(stack, [problem])

    def not_a_file(mode: int) -> ConfigError:
        kind = _FILE_KINDS.get(stat.S_IFMT(mode), "not a regular file")
        return fail(f"stack file {_shown_path(path)} is {kind}, not a regular file: a stack file is YAML text; "
                    "replace it with one (see stacks/Pulumi.local.yaml)")

    try:
        try:
            mode = path.stat().st_mode  # follows a link: what it points to is what would be read
        except FileNotFoundError:
            how = " (a link to nothing)" if os.path.islink(path) else ""
            raise fail(f"no stack file {_shown_path(path)}{how}: known stacks are "
                       f"{_known_stacks(project_root)}") from None
        if not stat.S_ISREG(mode):
            raise not_a_file(mode)
        # Non-blocking, and checked again once open: a FIFO put there since the stat must not hang the read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise not_a_file(mode)
            data = handle.read(STACK_FILE_MAX + 1)
    except OSError as err:
        raise fail(f"stack file {_shown_path(path)} cannot be read ({err.strerror or type(err).__name__}); check its "
                   "permissions") from None
    if len(data) > STACK_FILE_MAX:
        raise fail(f"stack file {_shown_path(path)} is over {STACK_FILE_MAX // 1024} KiB, which no stack file needs: it is not a "
                   "stack file, or something was pasted into it; cut it back to the settings")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise fail(f"stack file {_shown_path(path)} is not UTF-8 text (byte {err.start} is {data[err.start]:#04x}); save it as "
                   "UTF-8") from None
    try:
        return yaml.load(text, Loader=_stack_file_loader())  # noqa: S506 (a SafeLoader that refuses duplicate keys)
    except yaml.MarkedYAMLError as err:
        # Line, column and the parser's reason; never the file's text around it (it may hold a ciphertext).
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = _shown(err.problem or err.context or type(err).__name__)[1:-1]
        raise fail(f"stack file {_shown_path(path)} is not valid YAML{where}: {reason}; fix the YAML there (the Pulumi CLI "
                   "refuses it too)") from None
    except yaml.YAMLError as err:
        raise fail(f"stack file {_shown_path(path)} is not valid YAML ({type(err).__name__}); fix it") from None
    except RecursionError:
        raise fail(f"stack file {_shown_path(path)} nests values deeper than any stack needs; flatten it") from None
    except (ValueError, OverflowError) as err:
        # PyYAML builds values as it parses: an impossible date (2024-13-45) or an integer past Python's digit limit.
        reason = _shown(str(err))[1:-1]
        raise fail(f"stack file {_shown_path(path)} holds a value YAML cannot build ({reason}); quote it as a string or fix "
                   "it") from None


def source_password_value() -> str | None:
    """The plain value of the secret acr-publish:sourcePassword (validated by load_settings), for the source login
    and check before anything is declared; everything declared gets it as a secret."""
    import pulumi

    return pulumi.Config(PROJECT).get("sourcePassword")


def load_stack_file(stack: str, project_root: Path = PROJECT_ROOT, *, secrets_set: bool = True) -> Settings:
    """Validate stacks/Pulumi.<stack>.yaml without the Pulumi engine.

    A shipped stack file holds no secret its user has yet to set (the classic edition's registryPassword is set with
    `pulumi config set --secret` on first use), so tools that render from the file (RAM policies, explain) take
    secrets as set by default; `secrets_set=False` checks their presence in the file, as `pulumi up` would.

    Every problem with the name or the file (unreadable, not YAML, not a map, too large) is a ConfigError too, so a
    tool that prints ConfigError and exits never shows a traceback.
    """
    if not isinstance(stack, str) or not _STACK_NAME.fullmatch(stack):
        own = stack.rsplit("/", 1)[-1] if isinstance(stack, str) else ""
        fix = (f"give the stack's own name, e.g. {own!r}" if "/" in str(stack) and _STACK_NAME.fullmatch(own)
               else f"known stacks are {_known_stacks(project_root)}")
        length = f"{len(stack)} characters, " if isinstance(stack, str) and len(stack) > 100 else ""
        raise ConfigError(str(stack), [
            f"stack name {_shown(stack)} is invalid ({length}Pulumi's rule is 1-100 characters of A-Z a-z 0-9 _ . -); "
            f"{fix}"
        ])
    path = project_root / "stacks" / f"Pulumi.{stack}.yaml"
    doc = _read_stack_file(stack, path, project_root)
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise ConfigError(stack, [f"stack file {_shown_path(path)} holds a YAML {type(doc).__name__}, and a stack file is a map "
                                  "with a config: key (see stacks/Pulumi.local.yaml)"])
    config = doc.get("config")
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ConfigError(stack, [f"config {_shown(config)} in {_shown_path(path)} is invalid: it must be a map of "
                                  "<namespace>:<key>: value, e.g. acr-publish:registry: {edition: local}"])
    bad_keys = [k for k in config if not isinstance(k, str)]
    values = {k[len(PROJECT) + 1:]: _as_engine_hands_it(k[len(PROJECT) + 1:], v) for k, v in config.items()
              if isinstance(k, str) and k.startswith(f"{PROJECT}:")}
    problems = [f"config key {_shown(k)} in {_shown_path(path)} is invalid: keys are <namespace>:<name> strings, e.g. "
                "acr-publish:images" for k in bad_keys[:20]]
    problems += _misspelled_project(config)
    for key in ("registryPassword", "sourcePassword"):
        if isinstance(values.get(key), str):
            problems.append(_plaintext_password(stack, key))
    try:
        settings = settings_from_values(
            stack, values, region=config.get("alicloud:region"),
            has_password="registryPassword" in values or (secrets_set and _edition_needs_password(values)),
            project_root=project_root, has_source_password="sourcePassword" in values,
        )
    except ConfigError as err:
        raise ConfigError(stack, problems + err.problems) from None
    if problems:
        raise ConfigError(stack, problems)
    return settings


def registry_password_value() -> str | None:
    """The plain value of the secret acr-publish:registryPassword, for the registry login and checks that run
    before anything is declared; it stays in memory (everything declared gets the secret Output)."""
    import pulumi

    return pulumi.Config(PROJECT).get("registryPassword")


# --- several platforms per image, and the engines they build on ----------------------------------------------------

BUILDER_KEYS = ("host", "certPath")
BUILDER_SCHEMES = ("ssh", "tcp", "unix")
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")
"""What a tcp:// builder's certPath holds: Docker's DOCKER_CERT_PATH layout, which the docker.Provider's cert_path
reads."""
_SSH_USER_HOST = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?")


_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}
"""containerd's default variant per architecture: `linux/arm64` is `linux/arm64/v8`, `linux/arm` is `linux/arm/v7`."""


def same_platform(a: str, b: str) -> bool:
    """Whether two valid platform spellings name one platform (`linux/x86_64` is `linux/amd64`, `linux/arm64/v8` is
    `linux/arm64`)."""
    def canonical(value: str) -> tuple[str, str, str | None]:
        os_name, arch, variant = platform_parts(value)
        return os_name, arch, variant or _DEFAULT_VARIANT.get(arch)
    return canonical(a) == canonical(b)


def image_platforms(image: ImageSettings) -> tuple[str, ...]:
    """Every platform an image is built for: its `platforms`, or its one `platform`."""
    return image.platforms or (image.platform,)


def _platforms(ipath: str, item: Mapping[str, Any], problems: list[str]) -> tuple[str, ...]:
    """acr-publish:images[i].platforms: a list of distinct valid platforms, or () when the key is absent."""
    raw = item.get("platforms")
    if raw is None:
        return ()
    path = f"{ipath}.platforms"
    if item.get("platform") is not None:
        problems.append(
            f"{ipath}.platform {_shown(item.get('platform'))} and {path} are both set: platform builds one platform, "
            f"platforms builds each listed one and an image index over them under one tag; remove platform (list it "
            f"in platforms), or remove platforms to build one platform"
        )
    if not isinstance(raw, list) or not raw:
        problems.append(f"{path} {_shown(raw)} is invalid: it must be a non-empty list of platforms, e.g. "
                        "platforms: [linux/amd64, linux/arm64]")
        return ()
    found: list[str] = []
    for j, value in enumerate(raw):
        where = f"{path}[{j}]"
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where} {_shown(value)} is invalid: it must be a platform string, e.g. linux/arm64")
            continue
        rule = platform_problem(value)
        if rule:
            problems.append(f"{where} {_shown(value)} is invalid: {rule}")
            continue
        twin = next((k for k, other in enumerate(found) if same_platform(other, value)), None)
        if twin is not None:
            problems.append(f"{where} {_shown(value)} is invalid: it is the platform {path}[{raw.index(found[twin])}] "
                            f"{found[twin]!r} already names (an image index lists each platform once); remove one")
            continue
        found.append(value)
    return tuple(found) if len(found) == len(raw) else ()


def _builders(raw: Any, images: tuple[ImageSettings, ...], promotion: PromotionSettings | None, root: Path,
              problems: list[str]) -> tuple[BuilderSettings, ...]:
    """acr-publish:builders: {platform: host} or {platform: {host, certPath}}; every platform one an image builds."""
    path = "acr-publish:builders"
    if raw is None:
        return ()
    if promotion is not None:
        problems.append(f"{path} is not used when the stack promotes (acr-publish:promoteFrom): it builds nothing; "
                        "remove builders")
        return ()
    if not isinstance(raw, Mapping) or not raw:
        problems.append(f"{path} {_shown(raw)} is invalid: it must be a map of platform to Docker host, e.g. "
                        "builders: {linux/arm64: ssh://builder@arm-host}; remove it to build every platform here")
        return ()
    built = [p for image in images for p in image_platforms(image)]
    builders: list[BuilderSettings] = []
    for key, value in raw.items():
        if len(problems) >= PROBLEMS_MAX:
            break
        where = f"{path}.{_shown(key)[1:-1] if isinstance(key, str) else _shown(key)}"
        if not isinstance(key, str) or (rule := platform_problem(key)):
            problems.append(f"{path} key {_shown(key)} is invalid: "
                            f"{rule if isinstance(key, str) else 'it must be a platform, e.g. linux/arm64'}")
            continue
        if any(same_platform(key, b.platform) for b in builders):
            problems.append(f"{where} names a platform another key of {path} names already; keep one")
            continue
        if images and not any(same_platform(key, p) for p in built):
            problems.append(f"{where} is invalid: no image builds {key} (they build "
                            f"{', '.join(sorted(set(built)))}); add it to an image's platforms, or remove the entry")
            continue
        if isinstance(value, Mapping):
            _unknown_keys(where, value, BUILDER_KEYS, problems)
            host, cert_path = value.get("host"), value.get("certPath")
        else:
            host, cert_path = value, None
        builder = _builder(where, key, host, cert_path, root, problems)
        if builder is not None:
            builders.append(builder)
    return tuple(builders)


def _masked_host(host: Any) -> Any:
    """A builder host as messages show it: any password in its user info replaced by ***.

    The user info is everything between `://` and the last `@` (a password may hold `/` or `@` itself); only the
    user name before its first `:` is kept."""
    if not isinstance(host, str):
        return host
    scheme, sep, rest = host.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return host
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hostpart}"


def _builder(where: str, platform: str, host: Any, cert_path: Any, root: Path,
             problems: list[str]) -> BuilderSettings | None:
    # A password in a URL is never printed: the value is shown with it masked.
    example = "ssh://builder@arm-host, tcp://arm-host:2376 with certPath, or unix:///run/arm/docker.sock"
    if not isinstance(host, str) or not host.strip():
        problems.append(f"{where} {_shown(_masked_host(host))} is invalid: it must be a Docker host, e.g. {example}")
        return None
    scheme, sep, rest = host.partition("://")
    if not sep or scheme not in BUILDER_SCHEMES:
        problems.append(f"{where} {_shown(_masked_host(host))} is invalid: a builder is reached over ssh://, tcp:// (with TLS) or "
                        f"unix://, e.g. {example}")
        return None
    if has_control(host) or any(c.isspace() for c in host):
        problems.append(f"{where} {_shown(_masked_host(host))} is invalid: a Docker host holds no spaces or control characters")
        return None
    rule = None
    if scheme == "unix":
        if not rest.startswith("/") or "\0" in rest:
            rule = "unix:// takes an absolute socket path, e.g. unix:///run/arm/docker.sock"
    elif scheme == "ssh":
        if ":" in rest.split("@", 1)[0] and "@" in rest:
            rule = ("an ssh:// builder logs in with the ssh agent or keys, never a password in the URL; remove "
                    "':<password>' and load the key into ssh-agent")
        elif not _SSH_USER_HOST.fullmatch(rest):
            rule = "it must be ssh://[user@]host[:port] with nothing after the host, e.g. ssh://builder@arm-host"
    elif not re.fullmatch(r"[A-Za-z0-9.-]+:[0-9]{1,5}", rest):
        rule = "it must be tcp://host:port, e.g. tcp://arm-host:2376"
    if rule is None and scheme in ("ssh", "tcp") and ":" in rest.rsplit("@", 1)[-1]:
        port = int(rest.rsplit(":", 1)[1])
        if not 1 <= port <= 65535:
            rule = f"port {port} is not 1-65535"
    if rule:
        problems.append(f"{where} {_shown(_masked_host(host))} is invalid: {rule}")
        return None
    if scheme != "tcp":
        if cert_path is not None:
            problems.append(f"{where}.certPath is only used with a tcp:// host ({scheme}:// brings its own "
                            "authentication); remove it")
            return None
        return BuilderSettings(platform, host)
    if cert_path is None:
        problems.append(f"{where} {_shown(_masked_host(host))} has no certPath: a Docker engine on plain tcp:// lets anyone who "
                        "reaches the port run as root there; give {host: tcp://..., certPath: <directory with "
                        f"{', '.join(TLS_FILES)}>}} (the engine's --tlsverify client certificates), or use ssh://")
        return None
    if not isinstance(cert_path, str) or not cert_path.strip():
        problems.append(f"{where}.certPath {_shown(cert_path)} is invalid: it must be a directory path")
        return None
    directory = Path(cert_path) if os.path.isabs(cert_path) else root / cert_path
    missing = [name for name in TLS_FILES if not (directory / name).is_file()]
    if missing:
        problems.append(f"{where}.certPath {_shown(cert_path)} is invalid: {_shown_path(directory)} lacks "
                        f"{', '.join(missing)} (Docker's client certificate layout: {', '.join(TLS_FILES)}); copy "
                        "them there from the builder's TLS setup")
        return None
    return BuilderSettings(platform, host, str(directory.resolve()))
