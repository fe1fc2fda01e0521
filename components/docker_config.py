"""The user's Docker config credentials for a registry host, as `docker login <host>` stored them: the config file's
`auths` entries (an `auth` of base64 `user:password`, or `username`/`password`), `credHelpers` per host and the
`credsStore` helper (`docker-credential-<name> get`), read as the Docker CLI reads them; the file at
`$DOCKER_CONFIG/config.json` (default ~/.docker), bounded in size, and a helper bounded in time. Used for base images
on hosts other than the stack's own registry (components/remote_inputs.py)."""
from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

from boundedjson import parse_json

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
HELPER_TIMEOUT_S = 20.0
DOCKER_CONFIG_LIMIT = 1 << 20
"""Bytes read of the Docker config file and of a credential helper's answer."""


def _docker_config() -> dict[str, Any]:
    path = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        with path.open("rb") as config:
            doc = parse_json(config.read(DOCKER_CONFIG_LIMIT + 1), limit=DOCKER_CONFIG_LIMIT)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _helper(name: str, key: str) -> tuple[str, str] | None:
    try:
        answer = subprocess.run([f"docker-credential-{name}", "get"], input=key.encode(), capture_output=True,
                                timeout=HELPER_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if answer.returncode != 0:
        return None
    try:
        doc = parse_json(answer.stdout, limit=DOCKER_CONFIG_LIMIT)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("Username") and isinstance(doc.get("Secret"), str):
        return doc["Username"], doc["Secret"]
    return None


def docker_config_credentials(host: str) -> tuple[str, str] | None:
    """The user's Docker config credentials for `host` (as `docker login host` stored them), or None."""
    config = _docker_config()
    keys = [DOCKER_HUB_CONFIG_KEY, DOCKER_HUB, DOCKER_HUB_API] if host == DOCKER_HUB_API else [
        host, f"https://{host}", f"http://{host}"]
    helpers = config.get("credHelpers") if isinstance(config.get("credHelpers"), dict) else {}
    for key in keys:
        if isinstance(helpers.get(key), str):
            return _helper(helpers[key], key)
    auths = config.get("auths") if isinstance(config.get("auths"), dict) else {}
    for key in keys:
        entry = auths.get(key)
        if isinstance(entry, dict):
            if isinstance(entry.get("auth"), str) and entry["auth"]:
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    continue
                return user, password
            if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
                return entry["username"], entry["password"]
    if isinstance(config.get("credsStore"), str):
        for key in keys[:1]:
            found = _helper(config["credsStore"], key)
            if found:
                return found
    return None
