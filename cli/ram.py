"""Least-privilege RAM policy documents for a stack's deployers, rendered from its settings.

`python -m cli.ram <stack>` prints, as JSON, the policy a `pulumi up` of that stack needs (`deploy`) and the
read-only one its pull-request previews need (`preview`), scoped to the stack's region, instance and namespace.
Delete actions appear only when the stack may really delete (`acr-publish:retainOnDelete: false`); namespace actions
are left out when the stack adopts its namespace (`createNamespace: false`). The local edition talks to no cloud and
has no policy. The account id is not known from the stack file: resources use `*` for it unless `--account-id` is
given. Enterprise: a temporary login, namespace actions on the whole instance (`repository/<instance-id>`: ACR
scopes namespace actions instance-wide), repository actions on `repository/<instance-id>/<namespace>/*`, and the
instance reads the registry lookup makes. Personal Edition: the same namespace and repository actions on
`repository/<namespace>` and `repository/<namespace>/*`, and no token or instance actions (it logs in with the
configured password). A promoting stack (`acr-publish:promoteFrom`) also pulls its source's repositories, with the
source instance's lookup and temporary login for an Enterprise source, in `up` and in previews.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from components.config.paths import PROJECT_ROOT
from components.config.problems import ConfigError
from components.config.schema import Settings
from components.config.stackfile import load_stack_file

VERSION = "1"
_ACCOUNT_ID = re.compile(r"(\*|[0-9]{10,20})")

# Delete actions: ACR's least-privilege guidance for a CI deployer says "delete actions only where a stack may
# really delete" without naming them; cr:DeleteNamespace and cr:DeleteRepository, on the same resources as the other
# namespace and repository actions, are this module's reading of it.
NAMESPACE_WRITE = ("cr:CreateNamespace", "cr:UpdateNamespace")
NAMESPACE_DELETE = ("cr:DeleteNamespace",)
NAMESPACE_READ = ("cr:GetNamespace",)
REPOSITORY_WRITE = ("cr:CreateRepository", "cr:UpdateRepository", "cr:PushRepository")
REPOSITORY_DELETE = ("cr:DeleteRepository",)
REPOSITORY_READ = ("cr:GetRepository",)
IMAGE_PULL = ("cr:PullRepository",)
# Instance reads: components/registry.py reads the registry host and the temporary login with the
# `get_registry_enterprise_instances(ids=[<instance-id>], enable_details=True)` invoke, whose provider implementation
# (terraform-provider-alicloud, data_source_alicloud_cr_ee_instances.go) calls ListInstance and filters the ids itself
# (so ListInstance, on `instance/*`, cannot be narrowed to one instance), then, per instance, GetInstanceUsage and
# ListInstanceEndpoint (on `instance/<instance-id>`) and, with enable_details, GetAuthorizationToken (on `*`).
# Previews run that invoke too, so all of them are reads that `preview` keeps.
INSTANCE_LOOKUP = ("cr:GetInstanceUsage", "cr:ListInstanceEndpoint")
INSTANCE_LIST = ("cr:ListInstance",)
TEMPORARY_LOGIN = ("cr:GetAuthorizationToken",)

WRITE_ACTIONS = frozenset(NAMESPACE_WRITE + NAMESPACE_DELETE + REPOSITORY_WRITE + REPOSITORY_DELETE)
"""Every action here that changes something: none of them may appear in a preview policy."""


class NoRamPolicy(Exception):
    """The stack needs no RAM policy (the local edition)."""


def _statement(actions: tuple[str, ...], resources: list[str]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": sorted(set(actions)), "Resource": resources}


def _arn(settings: Settings, account_id: str, resource: str) -> str:
    return f"acs:cr:{settings.region}:{account_id}:{resource}"


def _check(settings: Settings, account_id: str) -> None:
    if settings.registry.edition == "local":
        raise NoRamPolicy(
            f"stack '{settings.stack}' uses edition local (a registry on this machine): it calls no Alibaba Cloud "
            "API, so it needs no RAM policy; render one for an enterprise or personal stack instead."
        )
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError(f"--account-id {account_id!r} is invalid: give the numeric Alibaba Cloud account id "
                         "(console > account > Account ID) or '*'")


def _namespace_and_repositories(settings: Settings, write: bool, namespace_arn: str,
                                repositories_arn: str) -> list[dict[str, Any]]:
    """The namespace and repository grants, the same on both cloud editions but for their resource names."""
    namespace_actions: tuple[str, ...] = NAMESPACE_READ
    # Pull in previews too: the published-tag check reads each content tag's manifest before anything is declared.
    repository_actions: tuple[str, ...] = REPOSITORY_READ + IMAGE_PULL
    if write:
        if settings.registry.create_namespace:
            namespace_actions += NAMESPACE_WRITE
            if not settings.retain_on_delete:
                namespace_actions += NAMESPACE_DELETE
        repository_actions += REPOSITORY_WRITE
        if not settings.retain_on_delete:
            repository_actions += REPOSITORY_DELETE
    statements = []
    if settings.registry.create_namespace:
        statements.append(_statement(namespace_actions, [namespace_arn]))
    statements.append(_statement(repository_actions, [repositories_arn]))
    return statements


def _enterprise(settings: Settings, account_id: str, *, write: bool) -> list[dict[str, Any]]:
    instance = settings.registry.instance_id
    namespace = settings.registry.namespace
    return [
        _statement(TEMPORARY_LOGIN, ["*"]),
        _statement(INSTANCE_LIST, [_arn(settings, account_id, "instance/*")]),
        _statement(INSTANCE_LOOKUP, [_arn(settings, account_id, f"instance/{instance}")]),
    ] + _namespace_and_repositories(
        settings, write, _arn(settings, account_id, f"repository/{instance}"),
        _arn(settings, account_id, f"repository/{instance}/{namespace}/*"),
    )


def _personal(settings: Settings, account_id: str, *, write: bool) -> list[dict[str, Any]]:
    # Classic Personal Edition: the login is the configured registry password, so no GetAuthorizationToken; its
    # resources are named without an instance: repository/<namespace>[/<repository>].
    namespace = settings.registry.namespace
    return _namespace_and_repositories(
        settings, write, _arn(settings, account_id, f"repository/{namespace}"),
        _arn(settings, account_id, f"repository/{namespace}/*"),
    )


def _promotion_source(settings: Settings, account_id: str) -> list[dict[str, Any]]:
    """A promoting stack reads its source's images, in `up` and in previews (the source check runs in both): pull on
    the source repositories, plus, for an Enterprise source, the lookup and temporary login of the source instance
    (components/promotion.py calls the same instances invoke with the source's id and region)."""
    if settings.promotion is None:
        return []
    source_name = settings.promotion.source_stack
    if "/" in source_name:
        raise ValueError(f"acr-publish:promoteFrom {source_name!r} names a stack of another project or organization: "
                         "its stack file is not here, so its pull grant cannot be rendered; render the policy in "
                         "that project and grant cr:PullRepository on its repositories")
    source = load_stack_file(source_name, settings.project_root)
    if source.registry.edition == "local":
        return []
    namespace = source.registry.namespace
    if source.registry.edition == "personal":
        return [_statement(IMAGE_PULL, [_arn(source, account_id, f"repository/{namespace}/*")])]
    instance = source.registry.instance_id
    return [
        _statement(TEMPORARY_LOGIN, ["*"]),
        _statement(INSTANCE_LIST, [_arn(source, account_id, "instance/*")]),
        _statement(INSTANCE_LOOKUP, [_arn(source, account_id, f"instance/{instance}")]),
        _statement(IMAGE_PULL, [_arn(source, account_id, f"repository/{instance}/{namespace}/*")]),
    ]


def _document(settings: Settings, account_id: str, *, write: bool) -> dict[str, Any]:
    _check(settings, account_id)
    build = _enterprise if settings.registry.edition == "enterprise" else _personal
    statements = build(settings, account_id, write=write)
    statements += [s for s in _promotion_source(settings, account_id) if s not in statements]
    return {"Version": VERSION, "Statement": statements}


def deploy_policy(settings: Settings, account_id: str = "*") -> dict[str, Any]:
    """What `pulumi up` of the stack needs."""
    return _document(settings, account_id, write=True)


def preview_policy(settings: Settings, account_id: str = "*") -> dict[str, Any]:
    """What `pulumi preview` (and `--refresh`) of the stack needs: reads only."""
    return _document(settings, account_id, write=False)


def render(stack: str, account_id: str = "*", project_root: Path = PROJECT_ROOT) -> dict[str, dict[str, Any]]:
    settings = load_stack_file(stack, project_root)
    return {"deploy": deploy_policy(settings, account_id), "preview": preview_policy(settings, account_id)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cli.ram",
        description="Render the RAM policy documents a stack's deployer (pulumi up) and previewer need.",
    )
    parser.add_argument("stack", help="stack name, i.e. stacks/Pulumi.<stack>.yaml")
    parser.add_argument("--account-id", default="*",
                        help="Alibaba Cloud account id to put in the resource ARNs (default: '*')")
    parser.add_argument("--document", choices=("deploy", "preview"),
                        help="print only this policy document (ready for `aliyun ram CreatePolicy --PolicyDocument`)")
    args = parser.parse_args(argv)
    try:
        documents = render(args.stack, args.account_id)
    except (NoRamPolicy, ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(documents[args.document] if args.document else documents, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
