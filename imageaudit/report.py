"""What an audit of an image finds: per platform, its layers, the hidden copies, the wasted bytes and efficiency,
the sensitive files; the summary the stack exports and the `--json` document (schema: docs/layer-audit.md, which
also defines added, changed, removed, hidden and wasted with examples).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass
class Layer:
    index: int
    digest: str
    media_type: str
    compressed_bytes: int
    instruction: str | None
    """The config history's `created_by` for this layer (empty layers skipped); None when the history does not
    say (no history, or fewer non-empty entries than layers)."""
    tar_bytes: int = 0
    file_bytes: int = 0
    """Regular-file content bytes stored in this layer."""
    added: int = 0
    changed: int = 0
    removed: int = 0
    """Paths of lower layers this layer's whiteouts and opaque markers remove (everything under a removed
    directory counted)."""
    entries: int = 0
    wasted_bytes: int = 0
    """Bytes this layer stores that later layers hide (and no hard link reaches)."""


@dataclass
class Hidden:
    path: str
    kind: str
    size: int
    layer: int
    """The layer that stored this copy."""
    hidden_by: int
    """The layer that hid it."""
    how: str
    """removed, parent removed, opaque, overwritten or replaced."""
    wasted: bool
    """False when a visible hard link stored in the same layer still reaches the bytes."""


@dataclass
class Sensitive:
    path: str
    layer: int
    layer_digest: str
    instruction: str | None
    reason: str
    hidden: bool
    """True when a later layer hides it (it still ships with the image)."""


@dataclass
class PlatformAudit:
    """The audit of one platform's image manifest: `platform` as the index names it (the image config's
    `os/arch[/variant]` when there is no index), the manifest's and config's digests, its layers in the manifest's
    order (base first), what later layers hide, what the guard flags, and the file and wasted bytes
    docs/layer-audit.md defines."""

    platform: str
    manifest_digest: str
    config_digest: str
    layers: list[Layer] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    sensitive: list[Sensitive] = field(default_factory=list)
    file_bytes: int = 0
    wasted_bytes: int = 0

    @property
    def efficiency(self) -> float:
        return 1.0 - self.wasted_bytes / self.file_bytes if self.file_bytes else 1.0

    @property
    def wasted_percent(self) -> float:
        return 100.0 * self.wasted_bytes / self.file_bytes if self.file_bytes else 0.0


@dataclass
class ImageAudit:
    reference: str
    digest: str
    media_type: str
    platforms: list[PlatformAudit]

    def summary(self) -> dict[str, Any]:
        """What the stack exports: the worst platform's wasted bytes, share and hidden files; distinct sensitive
        findings over all platforms (path and layer digest)."""
        sensitive_keys = {(s.path, s.layer_digest) for p in self.platforms for s in p.sensitive}
        return {
            "digest": self.digest,
            "wastedBytes": max((p.wasted_bytes for p in self.platforms), default=0),
            "wastedPercent": round(max((p.wasted_percent for p in self.platforms), default=0.0), 2),
            "hiddenFiles": max((len(p.hidden) for p in self.platforms), default=0),
            "sensitive": len(sensitive_keys),
        }

    def as_json(self) -> dict[str, Any]:
        """The `--json` document; its schema is docs/layer-audit.md's."""
        def platform(p: PlatformAudit) -> dict[str, Any]:
            return {
                "platform": p.platform, "manifestDigest": p.manifest_digest, "configDigest": p.config_digest,
                "fileBytes": p.file_bytes, "wastedBytes": p.wasted_bytes, "wastedPercent": round(p.wasted_percent, 4),
                "efficiency": round(p.efficiency, 6),
                "layers": [{_camel(k): v for k, v in asdict(layer).items()} for layer in p.layers],
                "hidden": [{_camel(k): v for k, v in asdict(h).items()} for h in p.hidden],
                "sensitive": [{_camel(k): v for k, v in asdict(s).items()} for s in p.sensitive],
            }
        return {"schemaVersion": SCHEMA_VERSION, "reference": self.reference, "digest": self.digest,
                "mediaType": self.media_type, "summary": self.summary(),
                "platforms": [platform(p) for p in self.platforms]}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(w.capitalize() for w in rest)
