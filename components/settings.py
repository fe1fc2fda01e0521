"""Stack configuration -> validated, typed settings.

This is the only module that reads `pulumi.Config`. Everything is validated before any resource is declared,
and every problem found is reported at once: each message names the key path, the value given, the rule it broke
and how to fix it. `settings_from_values` is the pure core (no engine needed); `load_settings` feeds it from the
Pulumi engine and `load_stack_file` from a `stacks/Pulumi.<stack>.yaml` file (used by tools such as
`cli.ram` that render things from a stack without running Pulumi).
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from buildcontext import DEFAULT_PLATFORM
from buildcontext.sensitive import check_allow_entry

PROJECT = "acr-publish"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

EDITIONS = ("enterprise", "personal", "local")
ENDPOINTS = ("public", "vpc")
VISIBILITIES = ("PRIVATE", "PUBLIC")
DEFAULT_LOCAL_SERVER = "127.0.0.1:5000"

TOP_KEYS = ("registry", "registryPassword", "images", "protect", "retainOnDelete", "preflight")
REGISTRY_KEYS = ("edition", "instanceId", "endpoint", "namespace", "createNamespace", "visibility", "server", "username")
IMAGE_KEYS = (
    "name", "context", "dockerfile", "target", "platform", "buildArgs", "summary", "tagImmutability", "allowSensitive",
)

# ACR-FACTS.md: names and limits.
_INSTANCE_ID = re.compile(r"^(cri|crpi)-[a-z0-9]{8,32}$")
_REGION = re.compile(r"^[a-z]{2}-[a-z0-9]+(-[a-z0-9]+)*$")
_CLASSIC_NAMESPACE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,29}$")
_ENTERPRISE_NAMESPACE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,118}[a-z0-9])$")
# Docker's path-component grammar (distribution/reference), limited to ACR's 2-30 chars for repositories.
_DOCKER_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")
_TARGET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_BUILD_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SERVER = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9a-fA-F:]+\](:[0-9]{1,5})?$")
SUMMARY_MAX = 80
# Pulumi stack names: letters, digits, -, _ and . (at most 100 characters).
_STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class ConfigError(Exception):
    """Every problem found in a stack's configuration, one per line."""

    def __init__(self, stack: str, problems: list[str]):
        self.stack = stack
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"stack '{stack}' has {len(self.problems)} configuration problem(s) "
            f"(stacks/Pulumi.{stack}.yaml):\n{lines}"
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
    """Docker build args."""
    summary: str = ""
    """Repository summary (1-80 chars)."""
    tag_immutability: bool | None = None
    """Enterprise repositories only: existing tags can never be overwritten."""
    allow_sensitive: tuple[str, ...] = ()
    """Context paths the user deliberately accepts despite the sensitive-file guard."""


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

    def path(self, relative: str) -> Path:
        """Absolute path of a project-relative path."""
        return self.project_root / relative


def _suggest(key: str, valid: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else "valid keys: " + ", ".join(valid)
    return hint


def _unknown_keys(path: str, given: Mapping[str, Any], valid: tuple[str, ...], problems: list[str]) -> None:
    for key in given:
        if key not in valid:
            problems.append(f"{path}.{key} is not a known setting: {_suggest(key, valid)}")


def _bool(path: str, value: Any, default: bool, problems: list[str]) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append(f"{path} {value!r} is invalid: it must be true or false")
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
    problems.append(f"{path} {value!r} is invalid: it must be one of {', '.join(choices)}{fix}")
    return default


def _str(path: str, value: Any, problems: list[str]) -> str | None:
    if value is None or isinstance(value, str):
        return value
    problems.append(f"{path} {value!r} is invalid: it must be a string; quote it in the stack file")
    return None


def _suggest_name(value: str, limit: int) -> str:
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-_")
    return cleaned[:limit] or "app"


def _check_namespace(edition: str, ns: str, problems: list[str]) -> None:
    path = "acr-publish:registry.namespace"
    if edition == "enterprise":
        if not _ENTERPRISE_NAMESPACE.match(ns):
            problems.append(
                f"{path} {ns!r} is invalid: Enterprise namespaces are 2-120 chars of a-z 0-9 _ - . and must not start "
                f"or end with a delimiter; try {_suggest_name(ns, 120)!r}"
            )
    elif not _is_classic_name(ns):
        problems.append(
            f"{path} {ns!r} is invalid: namespaces are 2-30 chars of a-z 0-9 - _ and must start and end with a letter "
            f"or digit; try {_suggest_name(ns, 30)!r}"
        )


def _is_classic_name(name: str) -> bool:
    """ACR's 2-30 chars of a-z 0-9 - _ that docker also accepts as a path component (classic namespaces, repos)."""
    return bool(_CLASSIC_NAMESPACE.match(name) and _DOCKER_COMPONENT.match(name))


def _check_repo_name(path: str, name: str, problems: list[str]) -> None:
    if not _is_classic_name(name):
        problems.append(
            f"{path} {name!r} is invalid: repository names are 2-30 chars of a-z 0-9 - _ , start and end with a letter "
            f"or digit, with no '_-' runs; try {_suggest_name(name, 30)!r}"
        )


def _registry(raw: Any, stack: str, has_password: bool, region: str | None, problems: list[str]) -> RegistrySettings:
    path = "acr-publish:registry"
    if raw is None:
        problems.append(
            f"{path} is missing: set it in stacks/Pulumi.{stack}.yaml, e.g. registry: {{edition: local}} "
            "(see README, 'Configuring a stack')"
        )
        raw = {"edition": "local"}
    if not isinstance(raw, Mapping):
        problems.append(f"{path} {raw!r} is invalid: it must be a map of registry settings")
        raw = {"edition": "local"}
    _unknown_keys(path, raw, REGISTRY_KEYS, problems)

    edition = _choice(f"{path}.edition", raw.get("edition"), EDITIONS, None, problems)
    if raw.get("edition") is None:
        problems.append(f"{path}.edition is missing: set it to one of {', '.join(EDITIONS)}")

    instance_id = _str(f"{path}.instanceId", raw.get("instanceId"), problems)
    endpoint = _choice(f"{path}.endpoint", raw.get("endpoint"), ENDPOINTS, "public", problems)
    namespace = _str(f"{path}.namespace", raw.get("namespace"), problems)
    create_ns = _bool(f"{path}.createNamespace", raw.get("createNamespace"), True, problems)
    visibility = _choice(f"{path}.visibility", raw.get("visibility"), VISIBILITIES, "PRIVATE", problems)
    server = _str(f"{path}.server", raw.get("server"), problems)
    username = _str(f"{path}.username", raw.get("username"), problems)

    def not_for(key: str, editions: str) -> None:
        problems.append(f"{path}.{key} {raw.get(key)!r} is not used by edition {edition!r}: it applies to {editions} "
                        f"only; remove it from stacks/Pulumi.{stack}.yaml")

    if edition == "enterprise":
        if not instance_id:
            problems.append(
                f"{path}.instanceId is missing: edition enterprise needs the instance id (cri-... or crpi-...) shown "
                "in the Container Registry console"
            )
        elif not _INSTANCE_ID.match(instance_id):
            problems.append(
                f"{path}.instanceId {instance_id!r} is invalid: it must look like cri-<8-32 lowercase letters or "
                "digits> or crpi-<...>; copy it from the Container Registry console"
            )
    elif instance_id is not None and edition:
        not_for("instanceId", "enterprise")

    if edition == "local":
        server = server or DEFAULT_LOCAL_SERVER
        if not _SERVER.match(server):
            problems.append(
                f"{path}.server {server!r} is invalid: it must be host[:port] without a scheme or path, "
                f"e.g. {DEFAULT_LOCAL_SERVER}"
            )
        for key in ("endpoint", "createNamespace"):
            if raw.get(key) is not None:
                not_for(key, "enterprise and personal")
        if bool(username) != has_password:
            problems.append(
                f"{path}.username and acr-publish:registryPassword must be set together for a local registry "
                f"(username is {'set' if username else 'unset'}, password is {'set' if has_password else 'unset'})"
            )
    elif edition:
        if server is not None:
            not_for("server", "local")
        if not namespace:
            problems.append(f"{path}.namespace is missing: edition {edition} needs a namespace, e.g. namespace: acme")
        if not region:
            problems.append(
                "alicloud:region is missing: the alicloud provider would silently use cn-beijing; set it with "
                f"`pulumi config set alicloud:region cn-hangzhou -s {stack}`"
            )
        elif not _REGION.match(region):
            problems.append(
                f"alicloud:region {region!r} is invalid: it must be a region id such as cn-hangzhou or ap-southeast-1"
            )

    if edition == "personal":
        if not username:
            problems.append(
                f"{path}.username is missing: edition personal logs in with your Alibaba Cloud account name or RAM "
                "user (Container Registry console > Access Credential)"
            )
        if not has_password:
            problems.append(
                "acr-publish:registryPassword is missing: edition personal needs the registry login password; set it "
                f"with `pulumi config set --secret acr-publish:registryPassword <password> -s {stack}`"
            )
    if edition == "enterprise":
        if username is not None:
            not_for("username", "personal and local (enterprise uses temporary credentials)")
        if has_password:
            problems.append(
                "acr-publish:registryPassword is not used by edition enterprise: temporary credentials come from the "
                f"instance; remove it with `pulumi config rm acr-publish:registryPassword -s {stack}`"
            )

    if namespace and edition:
        _check_namespace(edition, namespace, problems)

    return RegistrySettings(
        edition=edition or "", namespace=namespace or None, instance_id=instance_id, endpoint=endpoint or "public",
        create_namespace=create_ns, visibility=visibility or "PRIVATE", server=server, username=username,
    )


def _relative_path(path: str, value: Any, root: Path, problems: list[str], *, want_dir: bool) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{path} {value!r} is invalid: it must be a non-empty path relative to the project root")
        return None
    p = Path(value)
    if p.is_absolute():
        problems.append(
            f"{path} {value!r} is invalid: paths are relative to the project root so every machine computes the same "
            "tag; write it relative, e.g. app"
        )
        return None
    full = root / p
    kind = "directory" if want_dir else "file"
    ok = full.is_dir() if want_dir else full.is_file()
    if not ok:
        problems.append(
            f"{path} {value!r} is invalid: no {kind} {full} exists; paths are relative to the project root {root}"
        )
        return None
    return p.as_posix()


def check_platform(path: str, platform: str, problems: list[str]) -> None:
    """The rule for an image's platform (also applied to `python -m cli.explain --platform`)."""
    if not _PLATFORM.match(platform):
        problems.append(
            f"{path} {platform!r} is invalid: it must be os/arch[/variant] in lowercase, "
            "e.g. linux/amd64 or linux/arm64/v8"
        )


def check_target(path: str, target: str | None, problems: list[str]) -> None:
    """The rule for an image's target (also applied to `python -m cli.explain --target`)."""
    if target is not None and not _TARGET.match(target):
        problems.append(
            f"{path} {target!r} is invalid: it must be a build stage name (letters, digits, _ . -)"
        )


def check_build_arg_name(path: str, name: Any, problems: list[str]) -> None:
    """The rule for a build arg's name (also applied to `python -m cli.explain --build-arg`). Names only: values
    can be secrets and never appear in a message."""
    if not isinstance(name, str) or not _BUILD_ARG.match(name):
        problems.append(
            f"{path} {name!r} is invalid: build arg names are letters, digits and _ and do not start with a digit"
        )


def _images(raw: Any, edition: str, root: Path, problems: list[str]) -> tuple[ImageSettings, ...]:
    path = "acr-publish:images"
    if raw is None:
        problems.append(f"{path} is missing: list at least one image, e.g. images: [{{name: web, context: app}}]")
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append(f"{path} {raw!r} is invalid: it must be a non-empty list of images")
        return ()
    images: list[ImageSettings] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        ipath = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{ipath} {item!r} is invalid: each image is a map with at least name and context")
            continue
        _unknown_keys(ipath, item, IMAGE_KEYS, problems)
        name = _str(f"{ipath}.name", item.get("name"), problems)
        if not name:
            problems.append(f"{ipath}.name is missing: it is the repository name, e.g. name: web")
            name = f"image{i}"
        else:
            _check_repo_name(f"{ipath}.name", name, problems)
            if name in seen:
                problems.append(
                    f"{ipath}.name {name!r} is a duplicate of {path}[{seen[name]}].name: image names must be unique "
                    "in a stack; rename one"
                )
            seen.setdefault(name, i)
        if item.get("context") is None:
            problems.append(f"{ipath}.context is missing: the build context directory relative to the project root")
        context = _relative_path(f"{ipath}.context", item.get("context"), root, problems, want_dir=True)
        dockerfile = _relative_path(f"{ipath}.dockerfile", item.get("dockerfile"), root, problems, want_dir=False)
        if dockerfile is None and item.get("dockerfile") is None and context is not None:
            default = (Path(context) / "Dockerfile").as_posix()
            if not (root / default).is_file():
                problems.append(
                    f"{ipath}.dockerfile is unset and the default {default!r} does not exist: add a Dockerfile to the "
                    "context or set dockerfile"
                )
            dockerfile = default
        platform = _str(f"{ipath}.platform", item.get("platform"), problems) or DEFAULT_PLATFORM
        check_platform(f"{ipath}.platform", platform, problems)
        target = _str(f"{ipath}.target", item.get("target"), problems)
        check_target(f"{ipath}.target", target, problems)
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
                        f"{ipath}.buildArgs.{k} is a {type(v).__name__}, not a string: build args are strings; quote "
                        f"the value in the stack file, e.g. {k}: \"...\""
                    )
                else:
                    build_args[str(k)] = v
        summary = _str(f"{ipath}.summary", item.get("summary"), problems)
        if summary is None:
            summary = f"{name} image"
        elif not 1 <= len(summary) <= SUMMARY_MAX:
            problems.append(
                f"{ipath}.summary is {len(summary)} chars: ACR summaries are 1-{SUMMARY_MAX} chars; shorten it"
            )
        immut_raw = item.get("tagImmutability")
        if immut_raw is not None and edition not in ("enterprise", ""):
            problems.append(
                f"{ipath}.tagImmutability {immut_raw!r} is not used by edition {edition!r}: only Enterprise "
                "repositories support it; remove it"
            )
        immut = _bool(f"{ipath}.tagImmutability", immut_raw, True, problems) if edition == "enterprise" else None
        allow = item.get("allowSensitive") or []
        if not isinstance(allow, list):
            problems.append(
                f"{ipath}.allowSensitive {allow!r} is invalid: it must be a list of paths relative to the context, "
                "e.g. allowSensitive: [www/.env]"
            )
            allow = []
        # The guard's own rule for entries (buildcontext/sensitive.py), so config and build never disagree.
        valid_allow = []
        for j, entry in enumerate(allow):
            _, rule = check_allow_entry(entry)
            if rule is None:
                valid_allow.append(entry)
            else:
                problems.append(f"{ipath}.allowSensitive[{j}] {entry!r} is invalid: {rule}")
        allow = valid_allow
        images.append(ImageSettings(
            name=name, context=context or ".", dockerfile=dockerfile or "Dockerfile", platform=platform,
            target=target, build_args=build_args, summary=summary, tag_immutability=immut,
            allow_sensitive=tuple(allow),
        ))
    return tuple(images)


def settings_from_values(
    stack: str,
    values: Mapping[str, Any],
    *,
    region: str | None,
    has_password: bool,
    project_root: Path = PROJECT_ROOT,
) -> Settings:
    """Validate the `acr-publish:*` values of one stack (keys without the project prefix) into Settings.

    Raises ConfigError listing every problem found.
    """
    problems: list[str] = []
    _unknown_keys("acr-publish", {k: v for k, v in values.items() if k != "registryPassword"}, TOP_KEYS, problems)
    registry = _registry(values.get("registry"), stack, has_password, region, problems)
    images = _images(values.get("images"), registry.edition, project_root, problems)
    protect = _bool("acr-publish:protect", values.get("protect"), stack.startswith("prod"), problems)
    retain = _bool("acr-publish:retainOnDelete", values.get("retainOnDelete"), True, problems)
    preflight = _bool("acr-publish:preflight", values.get("preflight"), True, problems)
    if problems:
        raise ConfigError(stack, problems)
    return Settings(
        stack=stack, region=region if registry.edition != "local" else None, registry=registry, images=images,
        protect=protect, retain_on_delete=retain, preflight=preflight,
        project_root=project_root,
    )


def _edition_needs_password(values: Mapping[str, Any]) -> bool:
    registry = values.get("registry")
    return isinstance(registry, Mapping) and registry.get("edition") == "personal"


def _decode(value: Any) -> Any:
    """Pulumi hands structured config to programs as JSON strings."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def load_settings():
    """Read and validate the running stack's configuration from the Pulumi engine.

    Returns (settings, registry_password) where registry_password is a secret Output or None.
    """
    import pulumi
    from pulumi.runtime import config as runtime_config

    stack = pulumi.get_stack()
    cfg = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    prefix = f"{PROJECT}:"
    for key, raw in runtime_config.CONFIG.get().items():
        if key.startswith(prefix):
            values[key[len(prefix):]] = _decode(raw)
    for env_key, raw in runtime_config.get_config_env().items():
        if env_key.startswith(prefix):
            values.setdefault(env_key[len(prefix):], _decode(raw))
    password = cfg.get_secret("registryPassword")
    problems_extra: list[str] = []
    if password is not None and not runtime_config.is_config_secret(f"{PROJECT}:registryPassword"):
        problems_extra.append(
            "acr-publish:registryPassword is stored in plain text in the stack file: it must be a secret; set it with "
            f"`pulumi config set --secret acr-publish:registryPassword <password> -s {stack}`"
        )
    region = pulumi.Config("alicloud").get("region")
    try:
        settings = settings_from_values(stack, values, region=region, has_password=password is not None)
    except ConfigError as err:
        raise ConfigError(stack, err.problems + problems_extra) from None
    if problems_extra:
        raise ConfigError(stack, problems_extra)
    return settings, password


def load_stack_file(stack: str, project_root: Path = PROJECT_ROOT, *, secrets_set: bool = True) -> Settings:
    """Validate stacks/Pulumi.<stack>.yaml without the Pulumi engine.

    A shipped stack file holds no secret its user has yet to set (the classic edition's registryPassword is set with
    `pulumi config set --secret` on first use), so tools that render from the file (RAM policies, explain) take
    secrets as set by default; `secrets_set=False` checks their presence in the file, as `pulumi up` would.
    """
    import yaml

    known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in (project_root / "stacks").glob("Pulumi.*.yaml"))
    if not _STACK_NAME.match(stack):
        shown = repr(stack) if len(stack) <= 100 else repr(stack[:100]) + f"... ({len(stack)} characters)"
        raise ConfigError("<invalid name>", [f"stack name {shown} is invalid: stack names are 1-100 letters, digits, "
                                  f"'-', '_' and '.'; known stacks are {', '.join(known)}"])
    path = project_root / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise ConfigError(stack, [f"no stack file {path}: known stacks are {', '.join(known)}"])
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ConfigError(stack, [f"{path} is not valid YAML{at}: fix the syntax (see `pulumi config` to "
                                  "write it for you)"]) from None
    doc = {} if doc is None else doc
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(config, (dict, type(None))):
        what = type(doc).__name__ if not isinstance(doc, dict) else f"its config is a {type(config).__name__}"
        raise ConfigError(stack, [f"{path} is invalid: a stack file is a map with a `config:` map ({what}); "
                                  "write config: {acr-publish:registry: ...}"])
    config = config or {}
    values = {k[len(PROJECT) + 1:]: v for k, v in config.items() if k.startswith(f"{PROJECT}:")}
    return settings_from_values(
        stack, values, region=config.get("alicloud:region"),
        has_password="registryPassword" in values or (secrets_set and _edition_needs_password(values)),
        project_root=project_root,
    )
