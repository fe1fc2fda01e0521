"""`python -m cli.explain`: a build context the way acr-publish sees it, and why an image's tag moved.

  python -m cli.explain <context> [--dockerfile PATH] [--build-arg NAME=VALUE ...] [--target T] [--platform P] [...]
      the digest, tag and size of a build with those inputs, and the current manifest (every path the build
      sees with its kind and content hash, link target or device numbers); no history is read or written.
  python -m cli.explain --stack S --image I
      the same for image I as stack S configures it, compared with what the explain history recorded when the
      program last planned exactly that image of that stack: what changed since the last planned tag, or why
      that tag differs from the one before it. Base images and remote ADD sources are resolved as the program
      does, with the Docker config's credentials or anonymously (explain cannot read the stack's secrets).

Arguments are checked with the stack settings' own rules; a malformed --build-arg is named without its value. The
Dockerfile is read with the program's code (components/image_plans.py): what the program refuses is its message.
Every error is one message on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildcontext import DEFAULT_PLATFORM, ContextScan, SensitiveFilesError, history, stages
from buildcontext.context import DOCKERFILE_SETTING
from buildcontext.printable import escaped
from components import remote_inputs
from components.docker_rules import normal_platform, platform_problem
from components.platforms import history_name
from components.config.builders import same_platform
from components.config.image_rules import check_build_arg_name, check_platform, check_target, target_problem
from components.config.paths import PROJECT_ROOT, Located
from components.config.schema import REMOTE_INPUT_MODES, ImageSettings
from components.image_plans import image_label, read_image_plans
from components.staged_prune import staged_dir_problem
from components.config.problems import ConfigError
from components.config.shown import shown
from components.config.stackfile import load_stack_file
from errors import AcrPublishError


class _UsageError(AcrPublishError):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that never echoes an argument: any argument can be a build arg's value (`--build-args
    TOKEN=s3cr3t` is unrecognized, and argparse would print it), so arguments are named by position."""

    _argv: list[str] = []

    def parse_args(self, args: list[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._argv = list(sys.argv[1:] if args is None else args)
        opts, unknown = self.parse_known_args(self._argv, namespace)
        if unknown:
            positions = _positions(self._argv, unknown)
            raise _UsageError(f"unrecognized {'argument' if len(unknown) == 1 else 'arguments'} at position "
                              f"{', '.join(positions)} (not shown: an argument may hold a secret); see --help "
                              "(build args are given as --build-arg NAME=VALUE, once per arg)")
        return opts

    def error(self, message: str) -> None:  # type: ignore[override]
        known = set(self._option_string_actions)
        for i, arg in sorted(enumerate(self._argv), key=lambda p: -len(p[1])):
            if arg and arg not in known:
                message = re.sub(r"(?<!\S)" + re.escape(arg) + r"(?!\S)", f"<argument {i + 1}>", message)
        raise _UsageError(message)


def _positions(argv: list[str], unknown: list[str]) -> list[str]:
    """The 1-based positions in `argv` of the `unknown` arguments (in order, each taken once)."""
    out, start = [], 0
    for arg in unknown:
        for i in range(start, len(argv)):
            if argv[i] == arg or argv[i].endswith(arg):
                out.append(str(i + 1))
                start = i + 1
                break
        else:
            out.append("?")
    return out


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cli.explain",
                     description="Inspect a build context the way acr-publish sees it.")
    parser.add_argument("context", type=Path, nargs="?", help="the build context (or use --stack and --image)")
    parser.add_argument("--stack", help="take context, dockerfile, build args, target and platform from "
                                        "stacks/Pulumi.<stack>.yaml (with --image), and compare with its history")
    parser.add_argument("--image", help="the image's name in that stack")
    parser.add_argument("--dockerfile", type=Path, default=None, help="default: <context>/Dockerfile")
    parser.add_argument("--build-arg", dest="build_args", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--target", default=None)
    parser.add_argument("--platform", default=None, help=f"default: {DEFAULT_PLATFORM}")
    parser.add_argument("--remote-inputs", choices=REMOTE_INPUT_MODES, default=None,
                        help=f"as an image's remoteInputs (default: {REMOTE_INPUT_MODES[0]})")
    return parser


def _build_args(raw: list[str], problems: list[str]) -> dict[str, str]:
    args: dict[str, str] = {}
    for i, text in enumerate(raw):
        name, sep, value = text.partition("=")
        if not sep:
            problems.append(f"--build-arg #{i + 1} is invalid: write NAME=VALUE (the argument is not shown: "
                            "it may hold a secret)")
            continue
        check_build_arg_name(f"--build-arg #{i + 1} name", name, problems)
        args[name] = value
    return args


def _describe_change(old: list[Any], new: list[Any]) -> str | None:
    ok, nk, ov, nv = old[0], new[0], old[1], new[1]
    if ok == nk and ov == nv:
        return None
    names = {"f": "regular file", "x": "regular file", "l": "symlink", "d": "directory", "p": "fifo",
             "s": "socket", "c": "character device", "b": "block device"}
    if names.get(ok) != names.get(nk):
        return f"now a {names.get(nk, nk)}"
    if ok == "l":
        return "symlink target"
    if ok in ("c", "b"):
        return "device numbers"
    if ov != nv:
        return "content" + (" and executable bit" if ok != nk else "")
    return "executable bit set" if nk == "x" else "executable bit cleared"


def _differing(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The keys added, removed or with another value from `old` to `new`, sorted."""
    return sorted(k for k in old.keys() | new.keys() if k not in old or k not in new or old[k] != new[k])


def _diff(base: dict[str, Any], state: history.BuildState, manifest: dict[str, list[str]]) -> list[str]:
    changes: list[str] = []
    if base.get("dockerfile") != state.dockerfile:
        changes.append("  changed  (Dockerfile content)")
    old = base.get("manifest") or {}
    for rel in sorted(old.keys() | manifest.keys()):
        if rel not in old:
            changes.append(f"  added    {escaped(rel)}")
        elif rel not in manifest:
            changes.append(f"  removed  {escaped(rel)}")
        else:
            what = _describe_change(old[rel], manifest[rel])
            if what:
                changes.append(f"  changed  {escaped(rel)} ({what})")
    old_args, new_args = base.get("build_args") or {}, state.build_args
    for k in _differing(old_args, new_args):
        what = "added" if k not in old_args else "removed" if k not in new_args else "changed"
        changes.append(f"  build arg {escaped(k)} {what}")
    for name in ("target", "platform"):
        if base.get(name) != getattr(state, name):
            changes.append(f"  {name} {base.get(name)!r} -> {getattr(state, name)!r}")
    old_remote, new_remote = base.get("remote") or {}, state.remote
    for label in _differing(old_remote, new_remote):
        shown = escaped(label)  # from the Dockerfile: printed escaped like every file-borne text
        if label not in old_remote:
            changes.append(f"  {shown}: added at {escaped(new_remote[label])}")
        elif label not in new_remote:
            changes.append(f"  {shown}: no longer used (was {escaped(old_remote[label])})")
        else:
            changes.append(f"  {shown}: {escaped(old_remote[label])} -> {escaped(new_remote[label])}")
    return changes or ["  (no file or input difference recorded)"]


def _recorded(value: Any) -> str:
    """A value read back from the history file, as printed: escaped (the file may have been edited)."""
    return escaped(str(value))


def _history_lines(key: history.HistoryKey, rec: history.Record | None, state: history.BuildState,
                   manifest: dict[str, list[str]]) -> list[str]:
    who = f"image {key.image!r} of stack {key.stack!r}"
    if rec is None:
        return [f"history     none for {who}: the program records an image when it plans it (pulumi preview/up)"]
    last, previous = rec.last, rec.previous
    if last.get("digest") != state.digest:
        return [f"changed since the last planned tag {_recorded(last.get('tag'))} of {who}:",
                *_diff(last, state, manifest)]
    if previous is None:
        return [f"unchanged since the last planned tag of {who}; no earlier tag recorded"]
    # Nothing changed since the last plan: say why that plan's tag differs from the one before it.
    return [f"unchanged since the last planned tag of {who}; it replaced {_recorded(previous.get('tag'))} because:",
            *_diff(previous, state, manifest)]


def _planned(label: str, image: ImageSettings, dockerfile: Path,
             platform: str) -> tuple[dict[str, str], stages.DockerfilePlan | None]:
    """The image's Dockerfile read and its remote inputs resolved as planning reads and resolves them
    (components/image_plans.py, for every platform the image builds): (label -> digest of the remote inputs of the
    build for `platform`, its Dockerfile plan); every problem the program would report, one line each."""
    problems: list[str] = []
    plans = read_image_plans(label, image, dockerfile, problems)
    if problems:
        raise _UsageError("\n".join(problems))
    if plans is None:  # unreadable under remoteInputs: ignore, as the program accepts it
        return {}, None
    resolved = remote_inputs.resolve_all(plans.values(), None).result().get((label, platform))
    return dict(resolved.labels) if resolved is not None else {}, plans[platform].plan


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except (_UsageError, ConfigError, history.HistoryError, remote_inputs.RemoteInputError, OSError, ValueError,
            TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"{exc or 'interrupted (Ctrl-C)'}", file=sys.stderr)
        return 130


@dataclass
class _Inputs:
    """What one explained build reads: the context and Dockerfile, the build inputs, and, for a stack's image, the
    explain history's key and record."""

    context: Any
    dockerfile: Any
    build_args: dict[str, str]
    target: str | None
    platform: str
    allow_sensitive: Any = ()
    remote: dict[str, str] = field(default_factory=dict)
    plan: Any = None
    key: history.HistoryKey | None = None
    record: Any = None


_FROM_STACK = ("with --stack, the image's dockerfile, build args, target, platform and remote inputs come from the "
               "stack file; drop --dockerfile/--build-arg/--target/--platform/--remote-inputs")


def _stack_platform(opts: argparse.Namespace, img: Any) -> str:
    """The platform of the stack's image that explain is about: --platform picks one of an image's platforms."""
    if opts.platform is not None:
        # An image with platforms has one build (and one history) per platform: --platform picks it.
        if not img.platforms:
            raise _UsageError(_FROM_STACK)
        platform = next((p for p in img.platforms if same_platform(p, opts.platform)), None) \
            if platform_problem(opts.platform) is None else None
        if platform is None:
            raise _UsageError(f"image {opts.image!r} of stack {opts.stack!r} builds {', '.join(img.platforms)}; "
                              f"--platform {escaped(opts.platform)!r} is none of them")
        return platform
    if img.platforms:
        raise _UsageError(f"image {opts.image!r} of stack {opts.stack!r} builds {', '.join(img.platforms)}, each "
                          f"with its own tag: name one with --platform, e.g. --platform {img.platforms[-1]}")
    return img.platform


def _stack_inputs(opts: argparse.Namespace) -> _Inputs:
    if opts.dockerfile is not None or opts.build_args or opts.target is not None or opts.remote_inputs is not None:
        raise _UsageError(_FROM_STACK)
    settings = load_stack_file(opts.stack, PROJECT_ROOT)
    if settings.promotion is not None:
        source = settings.promotion.source_stack
        raise _UsageError(f"stack {opts.stack!r} builds nothing: it promotes the images of stack {source!r} "
                          f"(acr-publish:promoteFrom); explain the image there: --stack {source.split('/')[-1]} "
                          f"--image {opts.image}")
    images = {img.name: (i, img) for i, img in enumerate(settings.images)}
    if opts.image not in images:
        raise _UsageError(f"stack {opts.stack!r} has no image {opts.image!r}; its images are "
                          f"{', '.join(sorted(images))}")
    index, img = images[opts.image]
    platform = _stack_platform(opts, img)
    key = history.HistoryKey(settings.project_root, settings.stack,
                             history_name(img.name, platform, bool(img.platforms)))
    record = history.load(key)  # before the scan: an unusable history is reported before any work is done
    staged = staged_dir_problem(settings, img)
    if staged is not None:  # the program refuses the context so: no tag to explain
        raise _UsageError(f"{image_label(index, img)}: {staged}")
    remote, plan = _planned(image_label(index, img), img, settings.path(img.dockerfile), platform)
    return _Inputs(settings.path(img.context), settings.path(img.dockerfile), dict(img.build_args), img.target,
                   platform, img.allow_sensitive, remote, plan, key, record)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long: the scan says so
        return False


def _path_inputs(opts: argparse.Namespace) -> _Inputs:
    problems: list[str] = []
    build_args = _build_args(opts.build_args, problems)
    platform = DEFAULT_PLATFORM if opts.platform is None else opts.platform
    check_target("--target", opts.target, problems)
    dockerfile = Path(opts.dockerfile if opts.dockerfile is not None else Path(opts.context) / "Dockerfile")
    readable = _is_file(dockerfile)  # else the scan says what is wrong
    if opts.target is not None and not problems and readable:
        rule = target_problem(opts.target, Located(escaped(str(dockerfile)), dockerfile))
        if rule:
            problems.append(f"--target {shown(opts.target)} is invalid: {rule}")
    check_platform("--platform", platform, problems)
    if problems:
        raise _UsageError("\n  ".join(["invalid arguments:", *problems]))
    image = ImageSettings(name=Path(opts.context).name, context=str(opts.context), dockerfile=escaped(str(dockerfile)),
                          platform=normal_platform(platform), target=opts.target, build_args=build_args,
                          remote_inputs=opts.remote_inputs or REMOTE_INPUT_MODES[0])
    remote, plan = ({}, None) if not readable else (
        _planned(f"context {escaped(str(opts.context))}", image, dockerfile, image.platform))
    return _Inputs(opts.context, opts.dockerfile, build_args, opts.target, image.platform, remote=remote, plan=plan)


def _lines(scan: ContextScan, inputs: _Inputs, state: Any, manifest: dict[str, list[str]], refused: tuple) -> list[str]:
    """What explain prints for one scan."""
    target = inputs.target
    lines = [
        f"context     {escaped(str(scan.context))}",
        f"dockerfile  {escaped(str(scan.dockerfile))}",
        f"platform    {inputs.platform}" + (f"  target {target}" if target else ""),
        f"digest      {state.digest}",
        f"tag         {state.tag}",
        f"files       {scan.file_count} ({scan.total_bytes:,} bytes)",
        *(f"remote      {escaped(label)}  {escaped(value)}" for label, value in sorted(inputs.remote.items())),
    ]
    if inputs.key is not None:
        lines += _history_lines(inputs.key, inputs.record, state, manifest)
    else:
        lines.append(f"manifest    {len(manifest)} path(s):")
        lines += [f"  {kind} {escaped(value[:16] if kind in 'fx' else value or '-'):16}  {escaped(rel)}"
                  for rel, (kind, value) in sorted(manifest.items())]
    if refused:
        lines.append(f"sensitive   {len(refused)} finding(s), refused by a build unless the image's allowSensitive "
                     "lists them (a path, or buildArg:NAME):")
        lines.extend(f"  {escaped(f.path)}  {escaped(f.reason)}" for f in refused)
    return lines


def _main(argv: list[str] | None) -> int:
    opts = _parser().parse_args(argv)
    if (opts.stack is None) != (opts.image is None) or (opts.stack is None) == (opts.context is None):
        raise _UsageError("give either a context path, or --stack and --image (the tag the stack would build)")
    i = _stack_inputs(opts) if opts.stack is not None else _path_inputs(opts)
    chosen_by = DOCKERFILE_SETTING if opts.stack is not None else "--dockerfile"
    with ContextScan(i.context, i.dockerfile, dockerfile_chosen_by=chosen_by) as scan:
        state = scan.state(i.build_args, i.target, i.platform, i.remote)
        manifest = scan.manifest()
        try:  # the report plan_builds makes: files sent, the Dockerfile's text and the build args
            scan.report(i.build_args, i.target, i.platform, i.allow_sensitive, i.remote, i.plan)
            refused: tuple = ()
        except SensitiveFilesError as err:
            refused = err.findings
    print("\n".join(_lines(scan, i, state, manifest, refused)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
