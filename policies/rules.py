"""The acr-publish guardrails as pure functions over plain data.

Each rule takes a `ResourceInput` (resource type, camelCase input properties, stack name, the resource
options a policy can see, and, where known, which input paths are secret) and returns the violation
messages; an empty list means the resource passes. Nothing here imports the Pulumi engine or the policy
SDK: `policies/__main__.py` wires these rules into `pulumi_policy` objects, and the tests apply them to
plain dictionaries and to the resources recorded under the Pulumi mocks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

PACK_NAME = "acr-publish-guardrails"

DOCKER_IMAGE = "docker:index/image:Image"
ENTERPRISE_NAMESPACE = "alicloud:cs/registryEnterpriseNamespace:RegistryEnterpriseNamespace"
ENTERPRISE_REPO = "alicloud:cs/registryEnterpriseRepo:RegistryEnterpriseRepo"
CLASSIC_NAMESPACE = "alicloud:cr/namespace:Namespace"
CLASSIC_REPO = "alicloud:cr/repo:Repo"

IMAGE_AUDIT = "pulumi-python:dynamic/acr-publish:ImageAudit"
AUDIT_WASTED_PERCENT_ADVISORY = 20.0
"""The wasted share (of the layers' file bytes) over which the advisory audit rule speaks."""

NAMESPACE_TYPES = frozenset({ENTERPRISE_NAMESPACE, CLASSIC_NAMESPACE})
REPO_TYPES = frozenset({ENTERPRISE_REPO, CLASSIC_REPO})

# Docker's reference grammar for a tag (distribution/reference): 128 chars, no leading '.' or '-'. A copy of
# registryclient/references.py's TAG: the policy pack runs in the policy engine's own process, which loads the pack's
# directory alone and imports nothing of the program.
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")

Enforcement = Literal["mandatory", "advisory"]


@dataclass(frozen=True)
class ResourceInput:
    """One resource as a policy sees it, in plain data: its type token (e.g. `docker:index/image:Image`), logical
    name, the stack being deployed (prod rules apply when it starts with `prod`), its input properties with the
    provider's camelCase names, its `protect` option, and the input paths that hold secrets ("registry.password";
    None when the caller cannot tell)."""

    type: str
    name: str
    stack: str
    props: Mapping[str, Any]
    protect: bool = False
    secret_paths: Collection[str] | None = None


@dataclass(frozen=True)
class Rule:
    """A named guardrail: which resources it looks at and how it judges one."""

    name: str
    description: str
    enforcement: Enforcement
    resource_types: frozenset[str]
    check: Callable[[ResourceInput], list[str]]
    needs_secret_paths: bool = False
    """True when the rule can only judge with `secret_paths` known (see `policies/README.md`)."""


@dataclass(frozen=True)
class Violation:
    policy: str
    enforcement: Enforcement
    resource: str
    message: str


def is_prod_stack(stack: str) -> bool:
    return stack.startswith("prod")


def stack_from_urn(urn: str) -> str:
    """`urn:pulumi:<stack>::<project>::<type>::<name>` -> `<stack>`."""
    prefix = "urn:pulumi:"
    if not urn.startswith(prefix) or "::" not in urn:
        raise ValueError(f"not a Pulumi resource URN: {urn!r}")
    return urn[len(prefix):].split("::", 1)[0]


def split_image_reference(reference: str) -> tuple[str, str | None, str | None]:
    """Split `host[:port]/path[:tag][@digest]` into (repository, tag, digest).

    The tag is the text after the last ':' of the final path component only, so the port in
    `127.0.0.1:5000/web` is not mistaken for a tag, and a digest is cut off first so that
    `web@sha256:…` does not yield the tag `…`.
    """
    remainder, _, digest = reference.partition("@")
    last_slash = remainder.rfind("/")
    last_colon = remainder.rfind(":")
    if last_colon > last_slash:
        return remainder[:last_colon], remainder[last_colon + 1:], digest or None
    return remainder, None, digest or None


def _get(props: Mapping[str, Any], key: str) -> Any:
    # Mapping.get so the policy SDK's proxies (Mappings, not dicts) raise their unknown-value error.
    return props.get(key) if isinstance(props, Mapping) else None


def check_image_tag(resource: ResourceInput) -> list[str]:
    image_name = _get(resource.props, "imageName")
    if not isinstance(image_name, str) or not image_name:
        return [f"docker.Image '{resource.name}' has no imageName: set image_name to "
                "'<host>/<namespace>/<repository>:<content tag>'."]
    repository, tag, digest = split_image_reference(image_name)
    if tag is None:
        why = "a digest alone cannot be pushed to" if digest else "Docker would push it as 'latest'"
        return [f"docker.Image '{resource.name}' imageName '{image_name}' has no tag ({why}): "
                f"use '{repository}:<content tag>' computed by buildcontext/context.py."]
    if tag == "latest":
        return [f"docker.Image '{resource.name}' imageName '{image_name}' uses the floating tag 'latest': "
                f"use '{repository}:<content tag>' so every push is traceable and deployments pin a digest."]
    if not _TAG_RE.fullmatch(tag):
        return [f"docker.Image '{resource.name}' imageName '{image_name}' has the invalid tag '{tag}': "
                "a tag is 1-128 chars of [A-Za-z0-9_.-], not starting with '.' or '-'."]
    return []


def check_prod_repo_private(resource: ResourceInput) -> list[str]:
    if not is_prod_stack(resource.stack):
        return []
    repo_type = _get(resource.props, "repoType")
    if repo_type == "PRIVATE":
        return []
    return [f"repository '{resource.name}' in stack '{resource.stack}' has repoType {repo_type!r}: "
            "repositories in stacks whose name starts with 'prod' must be PRIVATE; "
            "set acr-publish:registry.visibility to PRIVATE (or remove it: PRIVATE is the default)."]


def check_prod_tag_immutability(resource: ResourceInput) -> list[str]:
    if not is_prod_stack(resource.stack):
        return []
    value = _get(resource.props, "tagImmutability")
    if value is True:
        return []
    return [f"Enterprise repository '{resource.name}' in stack '{resource.stack}' has tagImmutability "
            f"{value!r}: prod repositories must never let a tag be overwritten; set tagImmutability: true "
            "on the image in acr-publish:images (or remove it: true is the default)."]


def check_namespace_no_auto_create(resource: ResourceInput) -> list[str]:
    value = _get(resource.props, "autoCreate")
    if value is True:
        return [f"namespace '{resource.name}' has autoCreate true: a push to a mistyped repository name "
                "would silently create a new repository; set auto_create=False and declare every "
                "repository explicitly."]
    return []


def check_registry_password_secret(resource: ResourceInput) -> list[str]:
    registry = _get(resource.props, "registry")
    if not isinstance(registry, Mapping) or _get(registry, "password") in (None, ""):
        return []
    if resource.secret_paths is None:
        raise ValueError("check_registry_password_secret needs secret_paths: the policy SDK cannot see "
                         "secretness, so this rule runs under the Pulumi mocks (policies/README.md)")
    if "registry.password" in resource.secret_paths or "registry" in resource.secret_paths:
        return []
    return [f"docker.Image '{resource.name}' passes registry.password as plain text: wrap it with "
            "pulumi.Output.secret (or read it with config.require_secret) so it never reaches the "
            "state, outputs or logs unencrypted."]


def check_prod_protected(resource: ResourceInput) -> list[str]:
    if not is_prod_stack(resource.stack) or resource.protect:
        return []
    kind = "namespace" if resource.type in NAMESPACE_TYPES else "repository"
    return [f"{kind} '{resource.name}' in stack '{resource.stack}' is not protected: set "
            f"acr-publish:protect: true (the default for stacks whose name starts with 'prod') so "
            "a `pulumi destroy` or a rename cannot delete it."]


def check_public_repository(resource: ResourceInput) -> list[str]:
    if _get(resource.props, "repoType") != "PUBLIC":
        return []
    return [f"repository '{resource.name}' is PUBLIC: anyone can pull its images without logging in; "
            "make sure that is intended (acr-publish:registry.visibility)."]


def check_prod_builds_nothing(resource: ResourceInput) -> list[str]:
    if not is_prod_stack(resource.stack):
        return []
    return [f"docker.Image '{resource.name}' in stack '{resource.stack}' builds an image in production: prod "
            "should run the bytes an earlier stack built and tested; set acr-publish:promoteFrom (e.g. staging) "
            "and list only the image names under acr-publish:images, so prod copies their digests instead."]


def check_audit_wasted_share(resource: ResourceInput) -> list[str]:
    """On an ImageAudit's outputs (a stack policy sees them after the update): the exported summary's wasted share."""
    summary = resource.props.get("summary")
    if not isinstance(summary, Mapping):
        return []
    share = summary.get("wastedPercent")
    if not isinstance(share, (int, float)) or share <= AUDIT_WASTED_PERCENT_ADVISORY:
        return []
    return [f"image audit '{resource.name}': {share:.1f}% of the bytes in the image's layers "
            f"({summary.get('wastedBytes')} bytes) are files a later layer hides, over "
            f"{AUDIT_WASTED_PERCENT_ADVISORY:g}%: every node still pulls them. Remove files in the same RUN that "
            "creates them, or copy only what the image needs (multi-stage builds); `python -m cli.audit <ref>` "
            "lists them, largest first."]


STACK_RULES: tuple[Rule, ...] = (
    Rule("image-audit-wasted-share",
         f"An image's layer audit finds at most {AUDIT_WASTED_PERCENT_ADVISORY:g}% of its layers' bytes hidden by "
         "later layers (advisory).",
         "advisory", frozenset({IMAGE_AUDIT}), check_audit_wasted_share),
)
"""Rules judged on resource outputs after the update (pulumi_policy's stack validation)."""


RULES: tuple[Rule, ...] = (
    Rule("docker-image-tag-not-latest",
         "A docker.Image's imageName carries an explicit tag that is not 'latest'.",
         "mandatory", frozenset({DOCKER_IMAGE}), check_image_tag),
    Rule("prod-repository-private",
         "Repositories in stacks whose name starts with 'prod' are PRIVATE.",
         "mandatory", REPO_TYPES, check_prod_repo_private),
    Rule("prod-enterprise-repository-tag-immutability",
         "Enterprise repositories in stacks whose name starts with 'prod' have tag immutability on.",
         "mandatory", frozenset({ENTERPRISE_REPO}), check_prod_tag_immutability),
    Rule("namespace-no-auto-create",
         "Namespaces never auto-create repositories.",
         "mandatory", NAMESPACE_TYPES, check_namespace_no_auto_create),
    Rule("docker-image-registry-password-secret",
         "A docker.Image's registry password is a Pulumi secret.",
         "mandatory", frozenset({DOCKER_IMAGE}), check_registry_password_secret, needs_secret_paths=True),
    Rule("prod-registry-resources-protected",
         "Namespaces and repositories in stacks whose name starts with 'prod' are protected.",
         "mandatory", NAMESPACE_TYPES | REPO_TYPES, check_prod_protected),
    Rule("prod-promotes-not-builds",
         "Stacks whose name starts with 'prod' declare no docker.Image (advisory: promote instead).",
         "advisory", frozenset({DOCKER_IMAGE}), check_prod_builds_nothing),
    Rule("public-repository",
         "A repository is PUBLIC (advisory: anyone can pull it).",
         "advisory", REPO_TYPES, check_public_repository),
)



def evaluate(resources: Iterable[ResourceInput], rules: Iterable[Rule] = RULES) -> list[Violation]:
    """Apply every rule to every resource it covers; the whole pack over a recorded stack."""
    rules = tuple(rules)
    violations: list[Violation] = []
    for resource in resources:
        for rule in rules:
            if resource.type not in rule.resource_types:
                continue
            for message in rule.check(resource):
                violations.append(Violation(rule.name, rule.enforcement, resource.name, message))
    return violations
