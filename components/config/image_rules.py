"""acr-publish:images as a rule table: each key of an image to build, its type and its rule, walked per image.

The rules a table cannot hold are the small checks below: a context or Dockerfile that must exist inside the
repository (`paths.locate`), a target that must be a stage of that Dockerfile, build args whose values are never
shown, the sensitive-file guard's own rule for allowSensitive. Docker's platform grammar is components/docker_rules.py.
"""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Mapping

from buildcontext import DEFAULT_PLATFORM
from buildcontext.sensitive import BUILD_ARG_ENTRY, check_allow_entry
from components.config.audit_rules import audit_settings
from components.config.builders import same_platform
from components.config.paths import Located, locate, repository_root
from components.config.problems import PROBLEMS_MAX
from components.config.registry_rules import is_classic_name, suggest_name
from components.config.rules import Rule, Scope, walk
from components.config.schema import (
    IMAGE_KEYS, INLINE_CACHE_ARG, REMOTE_INPUT_MODES, SUMMARY_MAX, ImageSettings,
)
from components.config.shown import shown, shown_bare
from components.config.values import unknown_keys
from components.docker_rules import DockerfileUnreadable, build_stages, normal_platform, platform_problem

# BuildKit's stage-name rule ("name can't start with a number or contain symbols"), matched case-insensitively.
_TARGET = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_BUILD_ARG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_platform(path: str, platform: str, problems: list[str]) -> None:
    """The rule for an image's platform (also applied to `python -m cli.explain --platform`)."""
    rule = platform_problem(platform)
    if rule:
        problems.append(f"{path} {shown(platform)} is invalid: {rule}")


def check_target(path: str, target: str | None, problems: list[str]) -> None:
    """The rule for an image's target (also applied to `python -m cli.explain --target`)."""
    if target is not None and not _TARGET.fullmatch(target):
        problems.append(
            f"{path} {shown(target)} is invalid: it must be a build stage name (a letter, then letters, digits, _ . -)"
        )


def check_build_arg_name(path: str, name: Any, problems: list[str]) -> None:
    """The rule for a build arg's name (also applied to `python -m cli.explain --build-arg`). Names only: values
    can be secrets and never appear in a message."""
    if not isinstance(name, str) or not _BUILD_ARG.fullmatch(name):
        problems.append(
            f"{path} {shown(name)} is invalid: build arg names are letters, digits and _ and do not start with a digit"
        )


def check_repository_name(path: str, name: str, problems: list[str]) -> None:
    if not is_classic_name(name):
        problems.append(
            f"{path} {shown(name)} is invalid: repository names are 2-30 chars of a-z 0-9 - _ , start and end with a "
            f"letter or digit, with no '_-' runs; try {suggest_name(name, 30)!r}"
        )


def image_name(scope: Scope) -> str:
    """The image's name as later rules speak of it (a placeholder when it was missing or refused)."""
    return scope.values.get("name") or f"image{scope.index}"


def _name(scope: Scope, where: str, name: str | None) -> str | None:
    if name is not None:
        check_repository_name(where, name, scope.problems)
        if name in scope.seen:
            scope.add(f"{where} {shown(name)} is a duplicate of {scope.path.rsplit('[', 1)[0]}[{scope.seen[name]}].name: "
                      "image names must be unique in a stack; rename one")
        scope.seen.setdefault(name, scope.index)
    return name


def _located(scope: Scope, where: str, value: Any, *, want_dir: bool) -> Located | None:
    found = locate(value, scope.root, scope.repo, want_dir=want_dir)
    if found.rule:
        scope.add(f"{where} {shown(value)} is invalid: {found.rule}")
        return None
    return found


def _context(scope: Scope, where: str, value: Any) -> Located | None:
    return None if value is None else _located(scope, where, value, want_dir=True)


def _dockerfile(scope: Scope, where: str, value: Any) -> Located | None:
    """The Dockerfile set, or the context's own Dockerfile when none is set."""
    if value is not None:
        return _located(scope, where, value, want_dir=False)
    context = scope.values.get("context")
    if context is None:
        return None
    default = (Path(context.relative) / "Dockerfile").as_posix()
    found = locate(default, scope.root, scope.repo, want_dir=False)
    if found.missing:
        scope.add(f"{where} is unset and the default {default!r} does not exist: add a Dockerfile to the context or "
                  "set dockerfile")
        return None
    if found.rule:
        scope.add(f"{where} is unset and the default {default!r} is invalid: {found.rule}")
        return None
    return found


def _platform(scope: Scope, where: str, platform: str | None) -> str | None:
    """The platform in containerd's normal form (components/docker_rules.py normal_platform), the one every build
    input sees."""
    if platform is None:
        return None
    before = len(scope.problems)
    check_platform(where, platform, scope.problems)
    return normal_platform(platform) if len(scope.problems) == before else platform


def _platforms(scope: Scope, where: str, raw: Any) -> tuple[str, ...]:
    """A list of distinct valid platforms, or () when the key is absent."""
    if raw is None:
        return ()
    if scope.given.get("platform") is not None:
        scope.add(
            f"{scope.path}.platform {shown(scope.given.get('platform'))} and {where} are both set: platform builds one "
            "platform, platforms builds each listed one and an image index over them under one tag; remove platform "
            "(list it in platforms), or remove platforms to build one platform"
        )
    if not isinstance(raw, list) or not raw:
        scope.add(f"{where} {shown(raw)} is invalid: it must be a non-empty list of platforms, e.g. "
                  "platforms: [linux/amd64, linux/arm64]")
        return ()
    found: list[str] = []
    for j, value in enumerate(raw):
        if not isinstance(value, str) or not value.strip():
            scope.add(f"{where}[{j}] {shown(value)} is invalid: it must be a platform string, e.g. linux/arm64")
            continue
        rule = platform_problem(value)
        if rule:
            scope.add(f"{where}[{j}] {shown(value)} is invalid: {rule}")
            continue
        twin = next((k for k, other in enumerate(found) if same_platform(other, value)), None)
        if twin is not None:
            scope.add(f"{where}[{j}] {shown(value)} is invalid: it is the platform {where}[{raw.index(found[twin])}] "
                      f"{found[twin]!r} already names (an image index lists each platform once); remove one")
            continue
        found.append(value)
    return tuple(normal_platform(p) for p in found) if len(found) == len(raw) else ()


def target_problem(target: str, dockerfile: Located) -> str | None:
    """Why `target` names no stage of the Dockerfile, or None when it does (also `python -m cli.explain`'s rule)."""
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
    listed = ", ".join(shown_bare(s) for s in stages[:10]) + (f" and {len(stages) - 10} more" if len(stages) > 10 else "")
    return f"{dockerfile.relative} has no stage {target!r} (its stages: {listed}); {hint}"


def _target(scope: Scope, where: str, target: str | None) -> str | None:
    if target is not None:
        before = len(scope.problems)
        check_target(where, target, scope.problems)
        dockerfile = scope.values.get("dockerfile")
        if len(scope.problems) == before and dockerfile is not None:
            rule = target_problem(target, dockerfile)
            if rule:
                scope.add(f"{where} {shown(target)} is invalid: {rule}")
    return target


def _build_args(scope: Scope, where: str, raw: Any) -> dict[str, str]:
    """The configured build args plus the inline-cache one. Values may carry secrets: messages name keys and
    types, never values."""
    build_args: dict[str, str] = {}
    if raw is not None and not isinstance(raw, Mapping):
        scope.add(f"{where} is a {type(raw).__name__}, not a map: write NAME: \"value\" pairs")
    elif raw:
        for k, v in raw.items():
            check_build_arg_name(f"{where} key", k, scope.problems)
            if not isinstance(v, str):
                scope.add(f"{where}.{shown_bare(k)} is a {type(v).__name__}, not a string: build args are strings; "
                          f"quote the value in the stack file, e.g. {shown_bare(k)}: \"...\"")
            elif k == INLINE_CACHE_ARG[0]:
                scope.add(f"{where}.{k} is set by acr-publish: every image is built with {k}={INLINE_CACHE_ARG[1]} so "
                          "it can serve as the registry cache of the next build; remove it (turn the cache off with "
                          f"{scope.path}.cacheFrom: false)")
            else:
                build_args[str(k)] = v
    build_args[INLINE_CACHE_ARG[0]] = INLINE_CACHE_ARG[1]
    return build_args


def _audit(scope: Scope, where: str, raw: Any):
    return audit_settings(where, raw, scope.stack, scope.problems)


def _summary(scope: Scope, where: str, summary: str | None) -> str | None:
    if summary is not None and not 1 <= len(summary) <= SUMMARY_MAX:
        scope.add(f"{where} is {len(summary)} chars: ACR summaries are 1-{SUMMARY_MAX} chars; shorten it")
    return summary


def _allow_sensitive(scope: Scope, where: str, allow: Any) -> tuple[str, ...]:
    """The guard's own rule for entries (buildcontext/sensitive.py), so config and build never disagree; a
    buildArg:NAME entry must name a build arg the image passes."""
    if allow is None:
        return ()
    if not isinstance(allow, list):
        # An empty string, 0 or {} is a mistake too, never "nothing allowed" (that is `[]` or no key).
        scope.add(f"{where} {shown(allow)} is invalid: it must be a list of paths relative to the context or "
                  "buildArg:NAME entries, e.g. allowSensitive: [www/.env, buildArg:NPM_TOKEN]; write [] or remove the "
                  "key to allow nothing")
        return ()
    build_args = scope.values.get("buildArgs") or {}
    valid = []
    for j, entry in enumerate(allow):
        normalized, rule = check_allow_entry(entry)
        arg = normalized[len(BUILD_ARG_ENTRY):] if rule is None and normalized.startswith(BUILD_ARG_ENTRY) else None
        if arg is not None and arg not in build_args:
            passed = ", ".join(sorted(build_args)) or "none"
            rule = (f"this image passes no build arg {arg!r} (its buildArgs: {passed}); name one of its buildArgs "
                    "keys, or remove the entry")
        if rule is None:
            valid.append(entry)
        else:
            scope.add(f"{where}[{j}] {entry!r} is invalid: {rule}")
    return tuple(valid)


REPOSITORY_TABLE = (
    Rule("summary", check=_summary,
         if_empty=lambda scope: f"remove the key to use '{image_name(scope)} image', or write 1-{SUMMARY_MAX} chars"),
    Rule("tagImmutability", "bool", default=True, editions=("enterprise",), typed_when_unused=False,
         not_used="{where} {value} is not used by edition {edition!r}: only Enterprise repositories support it; "
                  "remove it"),
)
"""The repository settings of an image, built or promoted."""
IMAGE_TABLE = (
    Rule("name", required=True, missing="it is the repository name, e.g. name: web",
         if_empty="it is the repository name, e.g. name: web", check=_name),
    Rule("context", "given", required=True, missing="the build context directory relative to the project root",
         check=_context),
    Rule("dockerfile", "given", check=_dockerfile),
    Rule("platform", if_empty=f"remove the key to build for {DEFAULT_PLATFORM}, or name a platform", check=_platform),
    Rule("platforms", "given", check=_platforms),
    Rule("target", if_empty="remove the key to build the last stage, or name a stage", check=_target),
    Rule("buildArgs", "given", check=_build_args),
    Rule("cacheFrom", "bool", default=True),
    Rule("remoteInputs", "choice", default=REMOTE_INPUT_MODES[0], choices=REMOTE_INPUT_MODES),
    Rule("audit", "given", check=_audit),
    *REPOSITORY_TABLE,
    Rule("allowSensitive", "given", check=_allow_sensitive),
)
"""The keys of one image to build, in the order they are judged (a check may read an earlier key's value)."""


def repository_values(values: Mapping[str, Any], name: str) -> tuple[str, bool | None]:
    """An image's summary (its default when absent or refused) and tag immutability, as REPOSITORY_TABLE left them."""
    return values["summary"] or f"{name} image", values["tagImmutability"]


def _image(scope: Scope) -> ImageSettings:
    v = walk(IMAGE_TABLE, scope)
    name = image_name(scope)
    summary, immut = repository_values(v, name)
    platforms = v["platforms"] or ()
    return ImageSettings(
        name=name, context=v["context"].relative if v["context"] else ".",
        dockerfile=v["dockerfile"].relative if v["dockerfile"] else "Dockerfile",
        platform=platforms[0] if platforms else v["platform"] or DEFAULT_PLATFORM, target=v["target"],
        build_args=v["buildArgs"], summary=summary, tag_immutability=immut, allow_sensitive=v["allowSensitive"],
        cache_from=v["cacheFrom"], remote_inputs=v["remoteInputs"] or REMOTE_INPUT_MODES[0], platforms=platforms,
        audit=v["audit"],
    )


def images_settings(raw: Any, edition: str, root: Path, problems: list[str],
                    stack: str = "") -> tuple[ImageSettings, ...]:
    """acr-publish:images of a stack that builds: a non-empty list of image maps, each walked over IMAGE_TABLE."""
    path = "acr-publish:images"
    if raw is None:
        problems.append(f"{path} is missing: list at least one image, e.g. images: [{{name: web, context: app}}]")
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append(f"{path} {shown(raw)} is invalid: it must be a non-empty list of images")
        return ()
    repo = repository_root(root)
    images: list[ImageSettings] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        if len(problems) >= PROBLEMS_MAX:
            break
        ipath = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{ipath} {shown(item)} is invalid: each image is a map with at least name and context")
            continue
        unknown_keys(ipath, item, IMAGE_KEYS, problems)
        images.append(_image(Scope(ipath, item, edition, stack, problems, root=root, repo=repo, index=i, seen=seen)))
    return tuple(images)
