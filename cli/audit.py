"""`python -m cli.audit`: what an image in a registry really ships, layer by layer (imageaudit/).

  python -m cli.audit <registry host[:port]/repository[:tag|@sha256:…]> [--json] [--username U]
      [--max-wasted-bytes N] [--max-wasted-percent P] [--allow-sensitive PATH ...] [--max-layer-bytes N]
      [--max-entries N] [--time-limit SECONDS]
  python -m cli.audit --stack S --image I [--json] ...
      the image the program last planned for image I of stack S, with the stack's registry user; thresholds and
      allowed paths from the image's `audit:` settings (command-line flags win).

The registry password is read from ACR_PUBLISH_REGISTRY_PASSWORD (never from the command line, where other users
could read it); without it the registry is asked anonymously. Plain HTTP only for a loopback registry, as docker.

Output: a table (largest hidden files first, per-layer totals, the sensitive findings), or with `--json` the
document docs/layer-audit.md describes; progress on stderr past 100 MB of layers. Exit status: 0 within the
thresholds; 1 a threshold exceeded or a sensitive file not allowed; 2 an error (one message, never a traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from buildcontext.printable import escaped
from errors import AcrPublishError
from registryclient import RegistryClient, excerpt_text
from registryclient.endpoint import parse_server
from registryclient.references import IMAGE_REFERENCE, is_loopback
from imageaudit import AuditError, Auditor, ImageAudit
from imageaudit.layerstream import DEFAULT_MAX_LAYER_BYTES
from imageaudit.tarscan import DEFAULT_MAX_ENTRIES

TIME_LIMIT_S = 3600.0
"""The whole audit's default time limit (--time-limit): a registry feeding a blob just above the stall pace
cannot hold the command longer."""

PASSWORD_ENV = "ACR_PUBLISH_REGISTRY_PASSWORD"
PROGRESS_FROM = 100 * 1000 * 1000


class UsageError(AcrPublishError):
    pass


def parse_reference(text: str) -> tuple[str, str, str]:
    """(host[:port], repository path, tag or digest) of `host/path[:tag][@digest]`; the digest wins over a tag."""
    m = IMAGE_REFERENCE.match(text)
    if not m or not (m.group("tag") or m.group("digest")):
        raise UsageError(f"the image reference {_shown(text)} is not <registry host[:port]>/<repository>:<tag> or "
                         "…@sha256:<64 hex digits>; give the registry host, the repository and a tag or digest, "
                         "e.g. 127.0.0.1:5000/demo/web:<tag>")
    try:
        parse_server(m.group("host"), allow_plain_http=True)
    except Exception as err:  # RegistryError naming the rule
        raise UsageError(f"the image reference {_shown(text)} does not start with a registry host[:port]: {err}") \
            from None
    return m.group("host"), m.group("path"), m.group("digest") or m.group("tag")


def _shown(text: str) -> str:
    return repr(excerpt_text(text, limit=120))


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _text(value: str | None, limit: int = 100) -> str:
    """Text from the registry (history, paths) as cli.explain prints a path: every control character escaped
    (`escaped`: a newline is `\\n`, never a space or a line of its own), cut after `limit` characters."""
    if value is None:
        return "-"
    return escaped(value[:limit]) + ("..." if len(value) > limit else "")


class _Progress:
    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if total <= PROGRESS_FROM:
            return
        now = time.monotonic()
        if now - self.last >= 1.0 or done >= total:
            self.last = now
            print(f"audit: {_size(done)} of {_size(total)} of layers read ({100 * done / total:.0f}%)",
                  file=sys.stderr, flush=True)


def breaches(report: ImageAudit, max_bytes: int | None, max_percent: float | None,
             allow: list[str]) -> list[str]:
    found = []
    for p in report.platforms:
        if max_bytes is not None and p.wasted_bytes > max_bytes:
            found.append(f"{p.platform}: {p.wasted_bytes} wasted bytes, over the limit {max_bytes}")
        if max_percent is not None and p.wasted_percent > max_percent:
            found.append(f"{p.platform}: {p.wasted_percent:.2f}% wasted, over the limit {max_percent}%")
        for s in p.sensitive:
            if not any(s.path == a or s.path.startswith(a.rstrip("/") + "/") for a in allow):
                found.append(f"{p.platform}: sensitive file /{_text(s.path)} in layer {s.layer}")
    return found


def render(report: ImageAudit) -> str:
    lines = [f"image {report.reference} ({report.digest})"]
    for p in report.platforms:
        lines.append("")
        lines.append(f"platform {p.platform}: {_size(p.wasted_bytes)} wasted of {_size(p.file_bytes)} of file "
                     f"bytes in the layers ({p.wasted_percent:.1f}%; efficiency {100 * p.efficiency:.1f}%), "
                     f"{len(p.hidden)} hidden files, {len(p.sensitive)} sensitive")
        lines.append("  hidden files, largest first:")
        if not p.hidden:
            lines.append("    none")
        for h in p.hidden[:50]:
            note = "" if h.wasted or h.kind != "file" else " (bytes still reached through a hard link)"
            lines.append(f"    {_size(h.size):>9}  /{_text(h.path)}  {h.kind}, layer {h.layer}, {h.how} by layer "
                         f"{h.hidden_by}{note}")
        if len(p.hidden) > 50:
            lines.append(f"    … and {len(p.hidden) - 50} more (--json lists all)")
        lines.append("  layers:")
        lines.append(f"    {'#':>3}  {'compressed':>10}  {'files':>10}  {'added':>6}  {'changed':>7}  {'removed':>7}  "
                     f"{'wasted':>10}  instruction")
        for layer in p.layers:
            lines.append(f"    {layer.index:>3}  {_size(layer.compressed_bytes):>10}  {_size(layer.file_bytes):>10}  "
                         f"{layer.added:>6}  {layer.changed:>7}  {layer.removed:>7}  {_size(layer.wasted_bytes):>10}  "
                         f"{_text(layer.instruction, 80)}")
        lines.append("  sensitive files:")
        if not p.sensitive:
            lines.append("    none")
        for s in p.sensitive:
            lines.append(f"    /{_text(s.path)}  layer {s.layer}{' (hidden by a later layer, still shipped)' if s.hidden else ''}:"
                         f" {s.reason}")
            lines.append(f"      made by: {_text(s.instruction, 120)}")
    return "\n".join(lines)


def _stack_target(stack: str, image: str) -> tuple[str, str, str, str | None, Any]:
    from buildcontext import history
    from components.config.paths import PROJECT_ROOT
    from components.config.problems import ConfigError
    from components.config.schema import image_platforms
    from components.config.stackfile import load_stack_file
    from components.platforms import history_name, index_tag

    try:
        settings = load_stack_file(stack, PROJECT_ROOT)
    except ConfigError as err:
        raise UsageError(str(err)) from None
    reg = settings.registry
    if reg.edition != "local":
        raise UsageError(f"stack {stack!r} publishes to an {reg.edition} registry whose host comes from the cloud "
                         "account; give the image reference instead (its `ref` export: `pulumi stack output images "
                         f"-s {stack}`)")
    if settings.promotion is not None:
        raise UsageError(f"stack {stack!r} promotes its images; give the image reference instead (its `ref` export: "
                         f"`pulumi stack output images -s {stack}`)")
    found = [img for img in settings.images if img.name == image]
    if not found:
        raise UsageError(f"stack {stack!r} has no image {image!r} (its images: "
                         f"{', '.join(i.name for i in settings.images)})")
    # An image with platforms is published as an index over one build per platform, each with its own history.
    platform_tags: dict[str, str] = {}
    for platform in image_platforms(found[0]):
        name = history_name(image, platform, bool(found[0].platforms))
        try:
            record = history.load(history.HistoryKey(settings.project_root, stack, name))
        except history.HistoryError as err:
            raise UsageError(str(err)) from None
        if record is None:
            raise UsageError(f"the program has not planned image {image!r} of stack {stack!r} on this machine yet"
                             f"{f' for {platform}' if found[0].platforms else ''}: run `pulumi up` (or give the "
                             "image reference)")
        platform_tags[platform] = record.last["tag"]
    tag = index_tag(platform_tags) if found[0].platforms else platform_tags[found[0].platform]
    repository = "/".join(p for p in (reg.namespace, image) if p)
    return reg.server or "127.0.0.1:5000", repository, tag, reg.username, found[0].audit


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cli.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", nargs="?")
    parser.add_argument("--stack")
    parser.add_argument("--image")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--username")
    parser.add_argument("--max-wasted-bytes", type=int)
    parser.add_argument("--max-wasted-percent", type=float)
    parser.add_argument("--allow-sensitive", action="append", default=None)
    parser.add_argument("--max-layer-bytes", type=int, default=DEFAULT_MAX_LAYER_BYTES)
    parser.add_argument("--max-entries", type=int, default=DEFAULT_MAX_ENTRIES)
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S)
    return parser


@dataclass
class _Target:
    """The image to audit, who pulls it, and the thresholds and allowed paths it is held to."""

    server: str
    repository: str
    reference: str
    username: str | None
    allow: list[str]
    max_bytes: int | None
    max_percent: float | None


def _target(opts: argparse.Namespace) -> _Target:
    allow: list[str] = []
    max_bytes, max_percent = opts.max_wasted_bytes, opts.max_wasted_percent
    if opts.stack or opts.image:
        if not (opts.stack and opts.image) or opts.reference:
            raise UsageError("give either an image reference, or --stack S and --image I")
        server, repository, reference, username, audit = _stack_target(opts.stack, opts.image)
        allow = list(audit.allow_sensitive)
        max_bytes = audit.max_wasted_bytes if max_bytes is None else max_bytes
        max_percent = audit.max_wasted_percent if max_percent is None else max_percent
    elif opts.reference:
        server, repository, reference = parse_reference(opts.reference)
        username = None
    else:
        raise UsageError("give an image reference (host[:port]/repository:tag or @sha256:…), or --stack and "
                         "--image")
    allow += [a.strip("/") for a in opts.allow_sensitive or []]
    for name, value in (("--max-wasted-bytes", max_bytes), ("--max-wasted-percent", max_percent),
                        ("--max-layer-bytes", opts.max_layer_bytes), ("--max-entries", opts.max_entries),
                        ("--time-limit", opts.time_limit)):
        if value is not None and not value >= 0:  # also refuses nan, which no comparison would ever breach
            raise UsageError(f"{name} {value} is not a number of 0 or more; give 0 or more")
    return _Target(server, repository, reference, opts.username or username, allow, max_bytes, max_percent)


def _audit(opts: argparse.Namespace, target: _Target) -> ImageAudit:
    server = target.server
    host = server.rsplit(":", 1)[0] if server.count(":") == 1 else server
    client = RegistryClient(server, target.username, os.environ.get(PASSWORD_ENV),
                            allow_plain_http=is_loopback(host.strip("[]")), timeout=min(120.0, opts.time_limit),
                            deadline=time.monotonic() + opts.time_limit, budget=opts.time_limit,
                            label=f"layer audit, registry '{server}'",
                            limit_name="audit time limit (--time-limit)")
    try:
        return Auditor(client, progress=_Progress(), max_layer_bytes=opts.max_layer_bytes,
                       max_entries=opts.max_entries).audit(target.repository, target.reference)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    try:
        opts = _parser().parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    try:
        target = _target(opts)
        report = _audit(opts, target)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except AuditError as err:
        # The login hint only where the registry refused the login: a tar the audit refuses is no login problem.
        hint = (f". Check that {PASSWORD_ENV} (and --username) hold a login that may pull it" if err.kind == "auth"
                else "")
        print(f"error: {err}{hint}", file=sys.stderr)
        return 2
    problems = breaches(report, target.max_bytes, target.max_percent, target.allow)
    if opts.json:
        doc = report.as_json()
        doc["breaches"] = problems
        print(json.dumps(doc, indent=2))
    else:
        print(render(report))
        for problem in problems:
            print(f"over threshold: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
