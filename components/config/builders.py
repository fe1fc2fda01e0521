"""acr-publish:builders: the Docker engine each platform builds on, and when two platform spellings are one.

A builder is `{platform: host}` or `{platform: {host, certPath}}`: ssh:// (keys, never a password in the URL),
tcp:// with TLS client certificates, or unix://. A password in a host URL is never shown.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

from buildcontext.printable import has_control
from components.config.problems import PROBLEMS_MAX
from components.config.schema import BUILDER_KEYS, BuilderSettings, ImageSettings, PromotionSettings, image_platforms
from components.config.shown import shown, shown_path
from components.config.values import unknown_keys
from components.docker_rules import normal_platform, platform_problem

BUILDER_SCHEMES = ("ssh", "tcp", "unix")
TLS_FILES = ("ca.pem", "cert.pem", "key.pem")
"""What a tcp:// builder's certPath holds: Docker's DOCKER_CERT_PATH layout, which the docker.Provider's cert_path
reads."""
_SSH_USER_HOST = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?")


def same_platform(a: str, b: str) -> bool:
    """Whether two valid platform spellings name one platform: the same containerd normal form (`linux/x86_64` is
    `linux/amd64`, `linux/arm64/v8` is `linux/arm64`)."""
    return normal_platform(a) == normal_platform(b)


def builder_settings(raw: Any, images: tuple[ImageSettings, ...], promotion: PromotionSettings | None, root: Path,
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
        problems.append(f"{path} {shown(raw)} is invalid: it must be a map of platform to Docker host, e.g. "
                        "builders: {linux/arm64: ssh://builder@arm-host}; remove it to build every platform here")
        return ()
    built = [p for image in images for p in image_platforms(image)]
    builders: list[BuilderSettings] = []
    for key, value in raw.items():
        if len(problems) >= PROBLEMS_MAX:
            break
        where = f"{path}.{shown(key)[1:-1] if isinstance(key, str) else shown(key)}"
        if not isinstance(key, str) or (rule := platform_problem(key)):
            problems.append(f"{path} key {shown(key)} is invalid: "
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
            unknown_keys(where, value, BUILDER_KEYS, problems)
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
        problems.append(f"{where} {shown(_masked_host(host))} is invalid: it must be a Docker host, e.g. {example}")
        return None
    scheme, sep, rest = host.partition("://")
    if not sep or scheme not in BUILDER_SCHEMES:
        problems.append(f"{where} {shown(_masked_host(host))} is invalid: a builder is reached over ssh://, tcp:// (with TLS) or "
                        f"unix://, e.g. {example}")
        return None
    if has_control(host) or any(c.isspace() for c in host):
        problems.append(f"{where} {shown(_masked_host(host))} is invalid: a Docker host holds no spaces or control characters")
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
        problems.append(f"{where} {shown(_masked_host(host))} is invalid: {rule}")
        return None
    if scheme != "tcp":
        if cert_path is not None:
            problems.append(f"{where}.certPath is only used with a tcp:// host ({scheme}:// brings its own "
                            "authentication); remove it")
            return None
        return BuilderSettings(platform, host)
    if cert_path is None:
        problems.append(f"{where} {shown(_masked_host(host))} has no certPath: a Docker engine on plain tcp:// lets anyone who "
                        "reaches the port run as root there; give {host: tcp://..., certPath: <directory with "
                        f"{', '.join(TLS_FILES)}>}} (the engine's --tlsverify client certificates), or use ssh://")
        return None
    if not isinstance(cert_path, str) or not cert_path.strip():
        problems.append(f"{where}.certPath {shown(cert_path)} is invalid: it must be a directory path")
        return None
    directory = Path(cert_path) if os.path.isabs(cert_path) else root / cert_path
    missing = [name for name in TLS_FILES if not (directory / name).is_file()]
    if missing:
        problems.append(f"{where}.certPath {shown(cert_path)} is invalid: {shown_path(directory)} lacks "
                        f"{', '.join(missing)} (Docker's client certificate layout: {', '.join(TLS_FILES)}); copy "
                        "them there from the builder's TLS setup")
        return None
    return BuilderSettings(platform, host, str(directory.resolve()))
