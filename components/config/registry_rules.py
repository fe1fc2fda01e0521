"""acr-publish:registry as a rule table: which keys each edition uses and needs, and the ACR names and limits.

The rows also cover the two stack keys the edition decides about (acr-publish:registryPassword, alicloud:region);
a registry host's grammar is Docker's (components/docker_rules.py). `registry_settings` walks the table.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from components.config.rules import Rule, Scope, walk
from components.config.schema import (
    DEFAULT_LOCAL_SERVER, EDITIONS, ENDPOINTS, REGISTRY_KEYS, VISIBILITIES, RegistrySettings,
)
from components.config.shown import shown, shown_name
from components.config.values import unknown_keys
from registryclient.references import PATH_COMPONENT, server_problem
from registryclient.scrub import ENCODED_FORMS_MAX

# ACR-FACTS.md: names and limits.
_INSTANCE_ID = re.compile(r"(cri|crpi)-[a-z0-9]{8,32}")
_REGION = re.compile(r"[a-z]{2}-[a-z0-9]+(-[a-z0-9]+)*")
_CLASSIC_NAMESPACE = re.compile(r"[a-z0-9][a-z0-9_-]{1,29}")
_ENTERPRISE_NAMESPACE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,118}[a-z0-9])")
PASSWORD_LENGTHS = (8, 32)
"""ACR registry login passwords (Container Registry console > Access Credential) are 8-32 characters."""
LOCAL_PASSWORD_MIN = 4
"""The local edition's shortest password: the scrubber's MIN_SCRUB_LEN (registryclient/scrub.py), below which it
looks for nothing (such strings are in ordinary words), so a shorter password could reach a message."""
LOCAL_PASSWORD_MAX = ENCODED_FORMS_MAX
"""The local edition's (and sourcePassword's) longest password: the longest secret whose every encoded echo
(percent-encoded, HTML- or JSON-escaped, base64) the scrubber masks (registryclient/scrub.py's
ENCODED_FORMS_MAX); the registry's htpasswd login (bcrypt) reads only its first 72 bytes anyway."""
PASSWORD_KEY = "acr-publish:registryPassword"
REGION_KEY = "alicloud:region"


def local_password_problem(key: str, length: int, fix: str) -> str | None:
    """The rule a local registry password of `length` characters breaks (never its value), or None."""
    if LOCAL_PASSWORD_MIN <= length <= LOCAL_PASSWORD_MAX:
        return None
    side = "shorter" if length < LOCAL_PASSWORD_MIN else "longer"
    return (f"acr-publish:{key} (a secret, not shown) is invalid: it is {side} than allowed; passwords here are "
            f"{LOCAL_PASSWORD_MIN}-{LOCAL_PASSWORD_MAX} characters (shorter ones cannot be kept out of messages, "
            f"and a registry's htpasswd login reads only the first 72 bytes); {fix}")


def suggest_name(value: str, limit: int) -> str:
    """A name ACR would take, made from a refused one (the fix a message offers)."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", value.lower()).strip("-_")
    return cleaned[:limit] or "app"


def is_classic_name(name: str) -> bool:
    """ACR's 2-30 chars of a-z 0-9 - _ that docker also accepts as a path component (classic namespaces, repos)."""
    return bool(_CLASSIC_NAMESPACE.fullmatch(name) and PATH_COMPONENT.fullmatch(name))


def is_repository_name(name: Any) -> bool:
    """An image (repository) name as acr-publish:images[].name allows it: ACR's rule and docker's."""
    return isinstance(name, str) and is_classic_name(name)


def is_instance_id(value: Any) -> bool:
    """An ACR Enterprise instance id (cri-... or crpi-...), as acr-publish:registry.instanceId allows it."""
    return isinstance(value, str) and bool(_INSTANCE_ID.fullmatch(value))


def is_region(value: Any) -> bool:
    """An Alibaba Cloud region id (cn-hangzhou), as alicloud:region allows it."""
    return isinstance(value, str) and bool(_REGION.fullmatch(value))


def _instance_id(scope: Scope, where: str, value: str | None) -> str | None:
    if value is not None and not _INSTANCE_ID.fullmatch(value):
        scope.add(f"{where} {shown(value)} is invalid: it must look like cri-<8-32 lowercase letters or digits> or "
                  "crpi-<...>; copy it from the Container Registry console")
    return value


def _namespace(scope: Scope, where: str, ns: str | None) -> str | None:
    if not ns or not scope.edition:
        return ns
    if scope.edition == "enterprise":
        if not _ENTERPRISE_NAMESPACE.fullmatch(ns):
            scope.add(f"{where} {shown(ns)} is invalid: Enterprise namespaces are 2-120 chars of a-z 0-9 _ - . and "
                      f"must not start or end with a delimiter; try {suggest_name(ns, 120)!r}")
    elif not is_classic_name(ns):
        scope.add(f"{where} {shown(ns)} is invalid: namespaces are 2-30 chars of a-z 0-9 - _ and must start and end "
                  f"with a letter or digit; try {suggest_name(ns, 30)!r}")
    return ns


def _server(scope: Scope, where: str, server: str | None) -> str | None:
    """The local registry's host[:port]; absent, the default."""
    if scope.given.get("server") is None:
        return DEFAULT_LOCAL_SERVER
    rule = server_problem(server)
    if rule:
        example = "" if "e.g." in rule else f"; e.g. {DEFAULT_LOCAL_SERVER}"
        scope.add(f"{where} {shown(server)} is invalid: {rule}{example}")
    return server


def _login_pair(scope: Scope, where: str, username: str | None) -> str | None:
    """A local registry is logged in to with a user and a password, or as nobody: never one without the other."""
    has_password = scope.given.get(PASSWORD_KEY) is not None
    if scope.edition == "local" and (username is None) != (not has_password):
        scope.add(f"{where} and {PASSWORD_KEY} must be set together for a local registry (username is "
                  f"{'unset' if username is None else 'set'}, password is {'set' if has_password else 'unset'})")
    return username


def _password_length(scope: Scope, where: str, length: int | None) -> int | None:
    """The password's length rule by edition (the value is a secret: say which side it breaks, never the value or
    its length); -1 is a length the caller cannot know (a stack file's ciphertext)."""
    stack = shown_name(scope.stack)
    if length is None or length < 0:
        return length
    if scope.edition == "personal" and not PASSWORD_LENGTHS[0] <= length <= PASSWORD_LENGTHS[1]:
        side = "shorter" if length < PASSWORD_LENGTHS[0] else "longer"
        scope.add(f"{where} (a secret, not shown) is invalid: it is {side} than ACR allows, and registry login "
                  f"passwords are {PASSWORD_LENGTHS[0]}-{PASSWORD_LENGTHS[1]} characters; set the password from "
                  f"Container Registry console > Access Credential with `pulumi config set --secret {where} "
                  f"<password> -s {stack}`")
    elif scope.edition == "local" and (problem := local_password_problem(
            "registryPassword", length, "set one on the local registry and with `pulumi config set --secret "
            f"{where} <password> -s {stack}`")):
        scope.add(problem)
    return length


def _region(scope: Scope, where: str, region: Any) -> Any:
    if region is not None and not is_region(region):
        scope.add(f"{where} {shown(region)} is invalid: it must be a region id such as cn-hangzhou or ap-southeast-1")
    return region


def _local_or(local: str, other: str):
    return lambda scope: local if scope.edition == "local" else other


EDITION = Rule("edition", "choice", choices=EDITIONS, required=True, missing=f"set it to one of {', '.join(EDITIONS)}")
REGISTRY_TABLE = (
    Rule("instanceId", editions=("enterprise",), applies_to="enterprise", required=("enterprise",),
         missing="edition enterprise needs the instance id (cri-... or crpi-...) shown in the Container Registry "
                 "console",
         if_empty="copy the instance id (cri-... or crpi-...) from the Container Registry console", check=_instance_id),
    Rule("endpoint", "choice", default="public", choices=ENDPOINTS, editions=("enterprise", "personal"),
         applies_to="enterprise and personal"),
    Rule("namespace", required=("enterprise", "personal"),
         missing="edition {edition} needs a namespace, e.g. namespace: acme", check=_namespace,
         if_empty=_local_or("remove the key to push to <server>/<image> without a namespace, or name one, e.g. demo",
                            "name the namespace, e.g. namespace: acme")),
    Rule("createNamespace", "bool", default=True, editions=("enterprise", "personal"),
         applies_to="enterprise and personal"),
    Rule("visibility", "choice", default="PRIVATE", choices=VISIBILITIES),
    Rule("server", editions=("local",), applies_to="local", check=_server,
         if_empty=f"remove the key to use the default {DEFAULT_LOCAL_SERVER}, or give host[:port]"),
    Rule("username", "user", editions=("personal", "local"), check=_login_pair, required=("personal",),
         applies_to="personal and local (enterprise uses temporary credentials)",
         missing="edition personal logs in with your Alibaba Cloud account name or RAM user (Container Registry "
                 "console > Access Credential)",
         if_empty=_local_or("give the registry login user, or remove the key (and the password) to log in as nobody",
                            "give the registry login user")),
    Rule(PASSWORD_KEY, "given", editions=("personal", "local"), required=("personal",), check=_password_length,
         missing="edition personal needs the registry login password; set it with `pulumi config set --secret "
                 f"{PASSWORD_KEY} <password> -s {{stack}}`",
         not_used=f"{PASSWORD_KEY} is not used by edition enterprise: temporary credentials come from the instance; "
                  f"remove it with `pulumi config rm {PASSWORD_KEY} -s {{stack}}`"),
    Rule(REGION_KEY, "given", editions=("enterprise", "personal"), required=("enterprise", "personal"),
         check=_region,
         missing="the alicloud provider would silently use cn-beijing; set it with `pulumi config set "
                 f"{REGION_KEY} cn-hangzhou -s {{stack}}`"),
)
"""The keys of acr-publish:registry after its edition, then the stack keys the edition decides about."""


def registry_settings(raw: Any, stack: str, password_length: int | None, region: Any,
                      problems: list[str]) -> RegistrySettings:
    """`password_length` is None when no registryPassword is set, -1 when one is set but its length is unknown (a
    stack file's ciphertext)."""
    path = "acr-publish:registry"
    if raw is None:
        problems.append(
            f"{path} is missing: set it in stacks/Pulumi.{shown_name(stack)}.yaml, e.g. registry: {{edition: local}} "
            "(see README, 'Configuring a stack')"
        )
        raw = {"edition": "local"}
    if not isinstance(raw, Mapping):
        problems.append(f"{path} {shown(raw)} is invalid: it must be a map of registry settings")
        raw = {"edition": "local"}
    unknown_keys(path, raw, REGISTRY_KEYS, problems)
    given = {**raw, PASSWORD_KEY: password_length, REGION_KEY: region}
    edition = walk((EDITION,), Scope(path, given, "", stack, problems))["edition"] or ""
    v = walk(REGISTRY_TABLE, Scope(path, given, edition, stack, problems))
    return RegistrySettings(
        edition=edition, namespace=v["namespace"], instance_id=v["instanceId"], endpoint=v["endpoint"] or "public",
        create_namespace=v["createNamespace"], visibility=v["visibility"] or "PRIVATE", server=v["server"],
        username=v["username"],
    )
