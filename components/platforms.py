"""Several platforms under one image reference: the names and bytes every machine must compute alike.

An image with `platforms` is built once per platform, each build under its own content tag (the platform is one of
the build inputs the tag covers), and published as an image index listing those builds under the image's own
content tag, `index_tag`: derived from the children's tags alone, so the same sources give the same index tag on
every machine, and any change to any platform's build gives a new one. `index_manifest` writes the index bytes
deterministically (same children, same bytes, same digest). No Pulumi import.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Mapping, Sequence

from buildcontext import content_tag
from components.docker_rules import platform_parts
from registryclient import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

INDEX_TAG_DOMAIN = b"acr-publish image index v1\0"
"""Keeps an index tag from ever equalling a context digest's tag."""
CHILD_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)


def index_tag(platform_tags: Mapping[str, str]) -> str:
    """The content tag of an image index over `platform_tags` (platform -> that build's content tag), in order."""
    text = "\0".join(f"{platform}={tag}" for platform, tag in platform_tags.items()).encode("utf-8")
    return content_tag(hashlib.sha256(INDEX_TAG_DOMAIN + text).hexdigest())


def history_name(image: str, platform: str, multi: bool) -> str:
    """The name `cli.explain` history keeps one platform's build of an image under: the image's own name for a
    one-platform image (as before platforms existed), `<image>@<platform>` for each build of an index."""
    return f"{image}@{platform}" if multi else image


def platform_slug(platform: str) -> str:
    """A platform as part of a resource name: `linux/arm64/v8` -> `linux-arm64-v8`."""
    return platform.replace("/", "-")


def index_platform(platform: str) -> dict[str, str]:
    """The `platform` object of an image index entry (OCI image-index: architecture, os, variant when one)."""
    os_name, arch, variant = platform_parts(platform)
    entry = {"architecture": arch, "os": os_name}
    if variant:
        entry["variant"] = variant
    return entry


@dataclass(frozen=True)
class Child:
    """One platform's manifest as the registry holds it."""

    platform: str
    digest: str
    media_type: str
    size: int


def index_media_type(children: Sequence[Child]) -> str:
    """A Docker manifest list when every child is a Docker image manifest (what the classic image store pushes;
    docker and ACR's console read it alike), else an OCI image index."""
    return DOCKER_LIST if all(c.media_type == DOCKER_MANIFEST for c in children) else OCI_INDEX


def index_manifest(children: Sequence[Child]) -> tuple[str, bytes]:
    """(media type, bytes) of the image index listing `children` in order; compact JSON with a fixed key order."""
    media_type = index_media_type(children)
    body = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [{"mediaType": c.media_type, "digest": c.digest, "size": c.size,
                       "platform": index_platform(c.platform)} for c in children],
    }
    return media_type, json.dumps(body, separators=(",", ":")).encode("utf-8")


def listed_children(body: object) -> list[tuple[dict, str]] | None:
    """(platform object, digest) of each entry of a parsed image index; None when `body` is not an index."""
    if not isinstance(body, dict) or not isinstance(body.get("manifests"), list):
        return None
    found = []
    for entry in body["manifests"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            return None
        found.append((entry.get("platform") or {}, entry["digest"]))
    return found
