"""The settings types a validated stack configuration is made of, and the names of its keys.

Frozen dataclasses, one per map of the stack file (registry, image, promoted image, audit, builder) and `Settings`
for the whole stack; the key tuples are what each map accepts, in the order messages list them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from buildcontext import DEFAULT_PLATFORM
from components.config.paths import PROJECT_ROOT

PROJECT = "acr-publish"

EDITIONS = ("enterprise", "personal", "local")
ENDPOINTS = ("public", "vpc")
VISIBILITIES = ("PRIVATE", "PUBLIC")
DEFAULT_LOCAL_SERVER = "127.0.0.1:5000"

PROMOTION_KEYS = ("promoteFrom", "sourceUsername", "sourcePassword")
PROMOTED_IMAGE_KEYS = ("name", "summary", "tagImmutability", "audit")
"""The only keys a promoted image may carry: the build keys would be silently ignored, so they are refused."""
TOP_KEYS = ("registry", "registryPassword", "images", "protect", "retainOnDelete", "preflight", "builders") + PROMOTION_KEYS
REGISTRY_KEYS = ("edition", "instanceId", "endpoint", "namespace", "createNamespace", "visibility", "server", "username")
IMAGE_KEYS = (
    "name", "context", "dockerfile", "target", "platform", "buildArgs", "summary", "tagImmutability", "allowSensitive",
    "cacheFrom", "remoteInputs", "platforms", "audit",
)
REMOTE_INPUT_MODES = ("resolve", "pinned", "ignore")
"""How an image's base images and remote ADD sources enter its content tag (components/remote_inputs.py): resolved
at plan time (default), required pinned in the Dockerfile, or left out (a moved base never rebuilds)."""
AUDIT_KEYS = ("maxWastedBytes", "maxWastedPercent", "failOnSensitive", "allowSensitive")
"""Per image `audit:` (the layer audit, imageaudit/): thresholds, and the image paths a sensitive finding may have."""
BUILDER_KEYS = ("host", "certPath")
STRUCTURED_KEYS = ("registry", "images", "builders")
"""The keys whose values are objects or lists: Pulumi hands those to programs as JSON text. Every other value
reaches the program as the string the stack file holds (`promoteFrom: "2024"` is the string 2024, and so is an
unquoted 2024), so only these are parsed; true/false keys take the strings true and false."""
# Every image is built with this build arg, so what it pushes carries BuildKit's inline cache metadata and can serve
# as the registry cache of the stack's next build (components/image.py); it is a build input, so part of the tag.
INLINE_CACHE_ARG = ("BUILDKIT_INLINE_CACHE", "1")
SUMMARY_MAX = 80


@dataclass(frozen=True)
class RegistrySettings:
    """Where the stack's images go, per acr-publish:registry."""

    edition: str
    """enterprise | personal | local."""
    namespace: str | None
    """ACR namespace (optional for local)."""
    instance_id: str | None = None
    """Enterprise (cri-) or new Personal (crpi-) instance id; enterprise only."""
    endpoint: str = "public"
    """public | vpc: which registry host images are pushed to."""
    create_namespace: bool = True
    """False adopts an existing namespace instead of declaring it."""
    visibility: str = "PRIVATE"
    """Repository (and namespace default) visibility."""
    server: str | None = None
    """Registry host[:port]; local edition only."""
    username: str | None = None
    """Registry login user; personal (required) and local (optional)."""


@dataclass(frozen=True)
class AuditSettings:
    """What the layer audit of one published or promoted image may find before the run fails, per `audit:`."""

    max_wasted_bytes: int | None = None
    """Fail when a platform of the image wastes more bytes than this (None: report only)."""
    max_wasted_percent: float | None = None
    """Fail when a platform wastes more than this share (0-100) of its layers' file bytes (None: report only)."""
    fail_on_sensitive: bool = False
    """Fail on a sensitive file in any layer (default true in stacks whose name starts with `prod`)."""
    allow_sensitive: tuple[str, ...] = ()
    """Paths in the image (relative to its root; a directory allows what is under it) accepted as sensitive
    findings: by the audit's thresholds and by a promotion of an image holding them."""


@dataclass(frozen=True)
class ImageSettings:
    """One image to build and push, per an entry of acr-publish:images."""

    name: str
    """Repository name, unique in the stack."""
    context: str
    """Build context, POSIX path relative to the project root."""
    dockerfile: str
    """Dockerfile, POSIX path relative to the project root."""
    platform: str = DEFAULT_PLATFORM
    """os/arch[/variant]; never the host's architecture implicitly."""
    target: str | None = None
    """Build stage to stop at."""
    build_args: Mapping[str, str] = field(default_factory=dict)
    """Docker build args: the configured ones plus BUILDKIT_INLINE_CACHE=1 (INLINE_CACHE_ARG), as the build gets them."""
    summary: str = ""
    """Repository summary (1-80 chars)."""
    tag_immutability: bool | None = None
    """Enterprise repositories only: existing tags can never be overwritten."""
    allow_sensitive: tuple[str, ...] = ()
    """Context paths the user deliberately accepts despite the sensitive-file guard."""
    cache_from: bool = True
    """Build with the image this stack published last for this name as BuildKit's registry cache."""
    remote_inputs: str = REMOTE_INPUT_MODES[0]
    """resolve | pinned | ignore: how base images and remote ADD sources enter the content tag."""
    platforms: tuple[str, ...] = ()
    """acr-publish:images[].platforms: one build per platform and an image index over them under one tag (`platform`
    is then the first of them); empty for a one-platform image (`platform`)."""
    audit: AuditSettings = field(default_factory=AuditSettings)
    """The layer audit's thresholds for this image."""


@dataclass(frozen=True)
class PromotedImageSettings:
    """One image copied from the source stack, per an entry of acr-publish:images of a promoting stack."""

    name: str
    """Repository name: the image the source stack exports under this name."""
    summary: str = ""
    """Repository summary (1-80 chars)."""
    tag_immutability: bool | None = None
    """Enterprise repositories only: existing tags can never be overwritten."""
    audit: AuditSettings = field(default_factory=AuditSettings)
    """The layer audit's thresholds; its allowSensitive also lets a promotion copy an image holding those paths."""


@dataclass(frozen=True)
class PromotionSettings:
    """Where a promoting stack copies its images from, per acr-publish:promoteFrom."""

    source_stack: str
    """The source stack: `stack` of this project, or `organization/project/stack`."""
    images_configured: bool
    """False when acr-publish:images was omitted: every image the source exports is promoted."""
    source_username: str | None = None
    """Login user of a local-edition source registry on another host (acr-publish:sourceUsername)."""
    has_source_password: bool = False
    """acr-publish:sourcePassword is set (a secret; its value is handed to the program separately)."""


@dataclass(frozen=True)
class BuilderSettings:
    """The Docker engine one platform's builds run on, per an entry of acr-publish:builders."""

    platform: str
    """The platform as the images name it (os/arch[/variant])."""
    host: str
    """ssh://[user@]host[:port], tcp://host:port (TLS) or unix:///path: what the docker.Provider's `host` takes."""
    cert_path: str | None = None
    """tcp:// only: absolute directory holding ca.pem, cert.pem and key.pem (Docker's DOCKER_CERT_PATH layout)."""


@dataclass(frozen=True)
class Settings:
    """The whole validated configuration of one stack."""

    stack: str
    region: str | None
    registry: RegistrySettings
    images: tuple[ImageSettings, ...]
    protect: bool
    retain_on_delete: bool
    preflight: bool
    project_root: Path = PROJECT_ROOT
    promotion: PromotionSettings | None = None
    """Set when the stack promotes (acr-publish:promoteFrom): `images` is then empty and `promoted_images` holds
    the configured names (empty when every image of the source is promoted)."""
    promoted_images: tuple[PromotedImageSettings, ...] = ()
    builders: tuple[BuilderSettings, ...] = ()
    """acr-publish:builders: the Docker engine each listed platform builds on (others build on the local engine)."""

    def path(self, relative: str) -> Path:
        """Absolute path of a project-relative path."""
        return self.project_root / relative


def image_platforms(image: ImageSettings) -> tuple[str, ...]:
    """Every platform an image is built for: its `platforms`, or its one `platform`."""
    return image.platforms or (image.platform,)
