"""What Docker itself accepts for the inputs a stack names: platforms and build stages (the grammar of registry
hosts, repository paths, tags and digests is registryclient/references.py's). No Pulumi import.

Each check returns None when Docker would accept the value, else the rule it breaks (and a fix where one can be
guessed), so the configuration (components/config/) can put it in a config error before anything is declared.
Platforms follow containerd's `platforms` normalization and Go's list of os/arch pairs (`go tool dist list`), both
copied here (no Python package carries them); variants only where containerd gives them a meaning. Build stages
are read with BuildKit's own Dockerfile parser (the `dockerfile` package), matched against `--target` as BuildKit
does: case-insensitively and never by index.
"""
from __future__ import annotations

import re
from pathlib import Path

import dockerfile

# Go's `go tool dist list` (src/cmd/dist/build.go cgoEnabled, without the ports marked broken).
GO_PLATFORMS = frozenset({
    "aix/ppc64", "android/386", "android/amd64", "android/arm", "android/arm64", "darwin/amd64", "darwin/arm64",
    "dragonfly/amd64", "freebsd/386", "freebsd/amd64", "freebsd/arm", "freebsd/arm64", "illumos/amd64", "ios/amd64",
    "ios/arm64", "js/wasm", "linux/386", "linux/amd64", "linux/arm", "linux/arm64", "linux/loong64", "linux/mips",
    "linux/mips64", "linux/mips64le", "linux/mipsle", "linux/ppc64", "linux/ppc64le", "linux/riscv64", "linux/s390x",
    "netbsd/386", "netbsd/amd64", "netbsd/arm", "netbsd/arm64", "openbsd/386", "openbsd/amd64", "openbsd/arm",
    "openbsd/arm64", "openbsd/ppc64", "openbsd/riscv64", "plan9/386", "plan9/amd64", "plan9/arm", "solaris/amd64",
    "wasip1/wasm", "windows/386", "windows/amd64", "windows/arm64",
})
# containerd normalizeArch: spelling -> (arch, variant when none is given, {given variant: normalized variant}).
_ARCH_ALIASES = {"i386": "386", "x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm",
                 "armel": "arm"}
_FIXED_VARIANT = {"armhf": "v7", "armel": "v6", "i386": ""}
_VARIANTS = {
    "amd64": {"v1", "v2", "v3", "v4"},
    "arm": {"v5", "v6", "v7", "v8", "5", "6", "7", "8"},
    "arm64": {"v8", "8"} | {f"v8.{n}" for n in range(10)} | {"v9"} | {f"v9.{n}" for n in range(7)},
}
_OS_ALIASES = {"macos": "darwin"}
_PART = re.compile(r"[a-z0-9_.-]+")


def platform_problem(value: str) -> str | None:
    """None if Docker builds for `value` (os/arch[/variant]), else the rule it breaks."""
    parts = value.split("/")
    if len(parts) not in (2, 3) or not all(_PART.fullmatch(p) for p in parts):
        return "it must be os/arch[/variant] in lowercase, e.g. linux/amd64 or linux/arm64/v8"
    os_name, arch = _OS_ALIASES.get(parts[0], parts[0]), _ARCH_ALIASES.get(parts[1], parts[1])
    pair = f"{os_name}/{arch}"
    if pair not in GO_PLATFORMS:
        oses = sorted({p.split("/")[0] for p in GO_PLATFORMS})
        if os_name not in oses:
            return f"Docker knows no operating system {parts[0]!r} (it knows {', '.join(oses)}); e.g. linux/amd64"
        archs = sorted(p.split("/")[1] for p in GO_PLATFORMS if p.startswith(f"{os_name}/"))
        return f"Docker cannot build {os_name} for architecture {parts[1]!r}: it knows {', '.join(archs)} there"
    if len(parts) == 3:
        variant = parts[2]
        if parts[1] in _FIXED_VARIANT:
            return (f"{parts[1]!r} already means {arch}{'/' + _FIXED_VARIANT[parts[1]] if _FIXED_VARIANT[parts[1]] else ''}"
                    f", so it takes no variant; write {os_name}/{arch}/<variant> instead")
        known = _VARIANTS.get(arch)
        if not known:
            return f"architecture {arch} has no variants in Docker; drop {variant!r}: {os_name}/{arch}"
        if variant not in known:
            shown = sorted(v for v in known if v.startswith("v") and "." not in v)
            return f"{variant!r} is not a variant of {arch} (Docker knows {', '.join(shown)}); e.g. {os_name}/{arch}/{shown[0]}"
    return None


class DockerfileUnreadable(Exception):
    """The Dockerfile could not be read or parsed; the message says why (no file content in it)."""


def build_stages(path: Path) -> list[str]:
    """The stage names (`FROM ... AS name`) of a Dockerfile, in order, as BuildKit's parser reads them."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DockerfileUnreadable(f"cannot be read ({err.strerror or type(err).__name__})") from None
    # BuildKit reads bytes; stage names are ASCII, so undecodable bytes elsewhere cannot change them.
    text = data.decode("utf-8", errors="replace")
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as err:
        reason = str(err).encode("ascii", "backslashreplace").decode()[:200]
        raise DockerfileUnreadable(f"is refused by BuildKit's parser ({reason})") from None
    stages = []
    for command in commands:
        if not command.cmd:
            # The parser's node for a line holding no instruction, such as a lone `\` continuing into the end of
            # the file; BuildKit fails the build on it ("dockerfile parse error on line N: unknown instruction").
            raise DockerfileUnreadable(f"is refused by BuildKit's parser (line {command.start_line}: unknown "
                                       "instruction; a line continuation `\\` with nothing after it?)")
        if command.cmd.upper() == "FROM" and len(command.value) >= 3 and command.value[1].lower() == "as":
            stages.append(command.value[2])
    return stages


def platform_parts(value: str) -> tuple[str, str, str | None]:
    """(os, architecture, variant or None) of a platform `platform_problem` accepts, normalized as containerd does
    (`linux/x86_64` -> ("linux", "amd64", None), `linux/armhf` -> ("linux", "arm", "v7")): what an image index
    entry's `platform` holds, and how two spellings of one platform are found equal."""
    parts = value.split("/")
    os_name, arch = _OS_ALIASES.get(parts[0], parts[0]), _ARCH_ALIASES.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else (_FIXED_VARIANT.get(parts[1]) or None)
    if variant is not None and not variant.startswith("v"):
        variant = f"v{variant}"
    return os_name, arch, variant


def normal_parts(os_name: str, arch: str, variant: str = "") -> tuple[str, str, str]:
    """(os, architecture, variant: "" for none) as containerd's platforms.Normalize gives them."""
    os_name, arch, variant = os_name.lower(), arch.lower(), variant.lower()
    os_name = _OS_ALIASES.get(os_name, os_name)
    if arch == "i386":
        arch, variant = "386", ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch, variant = "amd64", "" if variant == "v1" else variant
    elif arch in ("aarch64", "arm64"):
        arch, variant = "arm64", {"8": "", "v8": "", "v8.0": "", "9": "v9", "9.0": "v9", "v9.0": "v9"}.get(variant,
                                                                                                         variant)
    elif arch in ("armhf", "armel"):
        arch, variant = "arm", "v7" if arch == "armhf" else "v6"
    elif arch == "arm":
        variant = {"": "v7", "7": "v7", "5": "v5", "6": "v6", "8": "v8"}.get(variant, variant)
    return os_name, arch, variant


def normal_platform(value: str) -> str:
    """A platform `platform_problem` accepts in containerd's normal form (platforms.Normalize, as BuildKit reads
    `--platform`): `linux/x86_64` -> linux/amd64, `linux/aarch64` and `linux/arm64/v8` -> linux/arm64, `linux/armhf`
    -> linux/arm/v7, `linux/armel` -> linux/arm/v6, `linux/arm` -> linux/arm/v7. What the plan, the content tag,
    the build and the index entry all see, so TARGETARCH/TARGETVARIANT are BuildKit's."""
    parts = value.split("/")
    if len(parts) not in (2, 3):
        return value
    return "/".join(p for p in normal_parts(*parts) if p)


def _version(variant: str) -> int | None:
    digits = variant[1:] if variant.startswith("v") else variant
    return int(digits) if digits.isdigit() else None


def platform_preference(value: str) -> list[tuple[str, str, str]]:
    """The normalized platforms an image index entry may have for a build for `value`, best first, as
    containerd's platforms.Only orders them (BuildKit picks a base's manifest so): the platform itself, then for
    amd64/vN amd64/vN-1..v1 and 386; for arm/vN arm/vN-1..v5; for arm64/v8.x or v9.x the lower arm64 variants, then
    32-bit arm from v8 down."""
    os_name, arch, variant = normal_parts(*(value.split("/") + [""])[:3])
    vector = [(os_name, arch, variant)]
    if arch == "amd64":
        level = _version(variant) or 1
        vector += [normal_parts(os_name, arch, f"v{n}") for n in range(level - 1, 0, -1)] + [(os_name, "386", "")]
    elif arch == "arm":
        level = _version(variant) or 0
        vector += [(os_name, arch, f"v{n}") for n in range(level - 1, 4, -1)]
    elif arch == "arm64":
        major, _, minor = (variant or "v8").partition(".")
        level, step = _version(major), int(minor) if len(variant) == 4 and minor.isdigit() else 0
        if level is not None and level >= 8:
            if level == 9:
                vector += [(os_name, arch, f"v9.{n}" if n else "v9") for n in range(step - 1, -1, -1)]
                level, step = 8, min(step + 5, 9)
                vector.append((os_name, arch, f"v8.{step}"))
            vector += [normal_parts(os_name, arch, f"v{level}.{n}" if n else f"v{level}")
                       for n in range(step - 1, -1, -1)]
        arm = "v8" if (variant or "v8").startswith(("v8.", "v9.")) else variant or "v8"
        vector += platform_preference(f"{os_name}/arm/{arm}")
    return vector
