"""The layer audit in the stack: one `ImageAudit` resource per published or promoted image, and the gate a
promotion applies to its source digest.

`ImageAudit` is a dynamic-provider resource whose inputs are the image's registry, repository and digest, so it
runs once per new digest (same digest: no change, no layer read; changed thresholds are judged on the stored
findings; a refresh reads nothing). Its outputs hold the summary the stack exports beside `ref`, the sensitive
findings (path, layer, instruction; never content) and the largest hidden files. A threshold breach
(`maxWastedBytes`, `maxWastedPercent`, `failOnSensitive`) fails the resource with `AuditFailure`, naming the image,
the figure and the setting. `refuse_sensitive_source` runs in the Promotion's Create before anything is copied and
refuses a source with a sensitive finding `audit.allowSensitive` does not cover. docs/layer-audit.md has the rules.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pulumi
import pulumi.dynamic as dynamic

from buildcontext.printable import escaped
from components.config.schema import AuditSettings
from components.provider_errors import serve_messages_alone
from errors import AcrPublishError

# Loaded by the provider process to unpickle the provider: its failures reach the engine as their message.
serve_messages_alone()

AUDIT_TYPE = "pulumi-python:dynamic/acr-publish:ImageAudit"
REPLACING_INPUTS = ("server", "repository", "digest")
AUDIT_TIMEOUT_S = 300.0
AUDIT_BUDGET_S = 3600.0
"""The whole audit's time limit (every layer of every platform): a registry feeding a blob just above the stall
pace cannot hold `pulumi up` or a promotion longer."""
HIDDEN_KEPT = 20
"""Largest hidden files kept in the outputs (the CLI lists them all)."""


class AuditFailure(AcrPublishError):
    """An audit found more than the stack's `audit:` settings allow, or could not run; the message says which."""


def _allowed(path: str, allow: Sequence[str]) -> bool:
    return any(path == a or path.startswith(a.rstrip("/") + "/") for a in allow)


def run_audit(server: str, repository: str, digest: str, username: str | None, password: str | None,
              allow_plain_http: bool, *, budget: float = AUDIT_BUDGET_S, source: bool = False, **bounds):
    """Audit `<server>/<repository>@<digest>` through the project's registry client within `budget` seconds;
    AuditFailure on error. `source`: a promotion's source registry (messages name the source stack)."""
    from components.copy import is_loopback_server as _loopback
    from components.stack_advice import SOURCE_ADVICE, STACK_ADVICE
    from registryclient import RegistryClient
    from imageaudit import AuditError, Auditor

    client = RegistryClient(server, username, password, allow_plain_http=allow_plain_http and _loopback(server),
                            timeout=min(AUDIT_TIMEOUT_S, budget), deadline=time.monotonic() + budget, budget=budget,
                            label=f"layer audit, registry '{server}'", limit_name="layer audit time limit",
                            advice=SOURCE_ADVICE if source else STACK_ADVICE)
    try:
        return Auditor(client, **bounds).audit(repository, digest)
    except AuditError as err:
        raise AuditFailure(str(err)) from None
    finally:
        client.close()


def breaches(outs: Mapping[str, Any], settings: Mapping[str, Any]) -> list[str]:
    """What the stored audit (`outs`) breaks of the thresholds (`settings`, the camelCase `audit:` map)."""
    image = outs.get("image", "the image")
    found = []
    for platform in outs.get("platforms") or []:
        where = f"{image} ({platform['platform']})"
        limit = settings.get("maxWastedBytes")
        if limit is not None and platform["wastedBytes"] > limit:
            found.append(f"{where} wastes {platform['wastedBytes']} bytes, over audit.maxWastedBytes {limit}")
        limit = settings.get("maxWastedPercent")
        if limit is not None and platform["wastedPercent"] > limit:
            found.append(f"{where} wastes {platform['wastedPercent']:.2f}% of its layers' file bytes, over "
                         f"audit.maxWastedPercent {limit}")
    if settings.get("failOnSensitive"):
        allow = settings.get("allowSensitive") or []
        for finding in outs.get("findings") or []:
            if not _allowed(finding["path"], allow):
                made_by = escaped(finding["instruction"] or "an instruction the history does not name")
                found.append(f"{image} ships the sensitive file /{escaped(finding['path'])} ({finding['reason']}) in "
                             f"layer {finding['layer']}, made by {made_by}"
                             f"{' (hidden by a later layer, still shipped)' if finding['hidden'] else ''}; "
                             "audit.failOnSensitive is on: rebuild without it (a build secret, or .dockerignore), "
                             f"or list '{escaped(finding['path'])}' under the image's audit.allowSensitive")
    return found


def audit_outputs(report, image: str) -> dict[str, Any]:
    """The resource's outputs from an ImageAudit report: summary, per-platform figures, findings, top hidden."""
    platforms = []
    findings = []
    hidden = []
    for p in report.platforms:
        platforms.append({"platform": p.platform, "wastedBytes": p.wasted_bytes,
                          "wastedPercent": round(p.wasted_percent, 4), "hiddenFiles": len(p.hidden),
                          "fileBytes": p.file_bytes})
        findings += [{"platform": p.platform, "path": s.path, "layer": s.layer, "layerDigest": s.layer_digest,
                      "instruction": s.instruction, "reason": s.reason, "hidden": s.hidden} for s in p.sensitive]
        hidden += [{"platform": p.platform, "path": h.path, "size": h.size, "layer": h.layer, "hiddenBy": h.hidden_by,
                    "how": h.how} for h in p.hidden if h.wasted][:HIDDEN_KEPT]
    summary = report.summary()
    return {"image": image, "summary": {k: summary[k] for k in ("wastedBytes", "wastedPercent", "hiddenFiles",
                                                                 "sensitive")},
            "platforms": platforms, "findings": findings, "hidden": hidden}


def _login(props: Mapping[str, Any]) -> tuple[str | None, str | None]:
    auth = props.get("auth") or {}
    return auth.get("username") or None, auth.get("password") or None


class ImageAuditProvider(dynamic.ResourceProvider):
    """Create = audit the digest and judge it; Diff = replace on another digest; Update = judge stored findings."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        username, password = _login(props)
        image = f"{props['server']}/{props['repository']}@{props['digest']}"
        report = run_audit(props["server"], props["repository"], props["digest"], username, password,
                           bool(props.get("plainHttp")))
        outs = {**props, **audit_outputs(report, image)}
        problems = breaches(outs, props.get("settings") or {})
        if problems:
            raise AuditFailure("layer audit: " + "\n".join(problems))
        return dynamic.CreateResult(id_=image, outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = [key for key in REPLACING_INPUTS if olds.get(key) != news.get(key)]
        changed = bool(replaces) or olds.get("settings") != news.get("settings")
        return dynamic.DiffResult(changes=changed, replaces=replaces, delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        outs = {**olds, **news, **{k: olds[k] for k in ("image", "summary", "platforms", "findings", "hidden")
                                  if k in olds}}
        problems = breaches(outs, news.get("settings") or {})
        if problems:
            raise AuditFailure("layer audit: " + "\n".join(problems))
        return dynamic.UpdateResult(outs=outs)

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        # The bytes behind a digest never change: a refresh keeps what the audit found and reads no layer.
        return dynamic.ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """An audit owns nothing in the registry."""


def settings_input(audit: AuditSettings) -> dict[str, Any]:
    return {"maxWastedBytes": audit.max_wasted_bytes, "maxWastedPercent": audit.max_wasted_percent,
            "failOnSensitive": audit.fail_on_sensitive, "allowSensitive": list(audit.allow_sensitive)}


@dataclass(frozen=True)
class ImageAuditArgs:
    """Inputs of one ImageAudit."""

    server: str
    """The registry host[:port] the image is in."""
    repository: str
    """The repository path on that host (`namespace/name`)."""
    ref: pulumi.Input[str]
    """The published `<repository>@sha256:…`: the audit depends on it and runs once per digest."""
    username: pulumi.Input[str] | None
    password: pulumi.Input[str] | None
    """The stack's registry login (a secret)."""
    allow_plain_http: bool
    settings: AuditSettings


class ImageAudit(dynamic.Resource, module="acr-publish", name="ImageAudit"):
    """The layer audit of one published digest."""

    summary: pulumi.Output[dict]

    def __init__(self, name: str, args: ImageAuditArgs, opts: pulumi.ResourceOptions | None = None):
        props = {
            "server": args.server,
            "repository": args.repository,
            "digest": pulumi.Output.from_input(args.ref).apply(lambda ref: ref.rsplit("@", 1)[1]),
            "plainHttp": args.allow_plain_http,
            "auth": pulumi.Output.secret({"username": args.username, "password": args.password}),
            "settings": settings_input(args.settings),
            "image": None, "summary": None, "platforms": None, "findings": None, "hidden": None,
        }
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["auth"]))
        super().__init__(ImageAuditProvider(), name, props, opts)


def declare_audit(name: str, parent: pulumi.Resource, login, repository: str, ref: pulumi.Input[str],
                  settings: AuditSettings) -> ImageAudit:
    """The ImageAudit of one image, a child of its image component, with the stack's login as a secret."""
    return ImageAudit(
        f"{name}-audit",
        ImageAuditArgs(server=login.server, repository=repository, ref=ref, username=login.username,
                       password=pulumi.Output.secret(login.password) if login.password is not None else None,
                       allow_plain_http=login.allow_plain_http, settings=settings),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def refuse_sensitive_source(props: Mapping[str, Any]) -> None:
    """The promotion gate: audit the source digest before anything is copied; a sensitive finding outside the
    promoting stack's audit.allowSensitive raises AuditFailure naming the file, layer and instruction."""
    auth = props.get("sourceAuth") or {}
    source = f"{props['sourceServer']}/{props['sourceRepository']}@{props['sourceDigest']}"
    report = run_audit(props["sourceServer"], props["sourceRepository"], props["sourceDigest"],
                       auth.get("username") or None, auth.get("password") or None, bool(props.get("sourcePlainHttp")),
                       source=True)
    allow = props.get("auditAllow") or []
    refused = [(p.platform, s) for p in report.platforms for s in p.sensitive if not _allowed(s.path, allow)]
    if refused:
        lines = [f"  /{escaped(s.path)} in layer {s.layer} ({s.layer_digest[:19]}…, {escaped(platform)}), made by "
                 f"{escaped(s.instruction or 'an instruction the history does not name')}: {s.reason}"
                 f"{' (removed by a later layer, still shipped)' if s.hidden else ''}" for platform, s in refused]
        raise AuditFailure(
            f"promotion refused before copying anything: the source {source} ships {len(refused)} sensitive "
            "file(s):\n" + "\n".join(lines) + "\nrebuild the image without them in the source stack, or, if "
            "shipping them is deliberate, list their paths under the image's audit.allowSensitive in this stack "
            f"(e.g. allowSensitive: [{escaped(refused[0][1].path)}])")
