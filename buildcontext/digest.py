"""The digest encoding: what a build depends on, as one unambiguous byte string, and the tag made from it.

The digest depends on each sent file's relative path, type, content and executable bit (user x, as git records
it), each symlink's target, each special file's presence (device nodes: their numbers), every directory the build
creates, the Dockerfile's content, the build args, the target, the platform, and the remote inputs' digests (base
images and remote `ADD` sources: components/remote_inputs.py). Not on mtimes, owners, umask, directory modes, the
context's absolute path, listing order or the machine. The encoding is spelled out after the imports;
tests/unit/buildcontext/test_context_digest.py rebuilds a pinned value from it.
"""
from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping

# Encoding: sha256 over length-prefixed fields `field(b) = u64(len(b)) b` and big-endian u64s, so no two
# different inputs encode alike; tests/unit/buildcontext/test_context_digest.py rebuilds a pinned value from this description.
# It is two-level, so images sharing a context and Dockerfile share the first level, and a warm run whose file
# set is unchanged takes the first level from the stat cache instead of re-encoding 20,000 records:
#   tree = sha256(
#     field("acr-publish/context-tree/v1")
#     field("files") u64(count), then in path order per file, symlink or special file:
#       file    field('f' or 'x') field(rel) u64(size) sha256(content), or for a file over TREE_CHUNK bytes
#               the tree hash sha256("acr-publish/tree/v1\0" u64(TREE_CHUNK) chunk digests...)
#       link    field('l') field(rel) field(target)
#       fifo    field('p') field(rel)
#       socket  field('s') field(rel)
#       device  field('c' or 'b') field(rel) u64(major) u64(minor)
#     field("dirs") u64(count), then in path order per directory: field('d') field(rel, no '/'))
#   digest = sha256(
#     field("acr-publish/context-digest/v4") field("tree") tree (32 bytes)
#     field("dockerfile") sha256(Dockerfile content)
#     field("build-args") u64(count), then per arg in name order: field(name) field(value)
#     field("target") then 0x00 (none) or 0x01 field(target)
#     field("platform") field(platform)
#     field("remote-inputs") u64(count), then per input in label order: field(label) field(digest))
#   where a label is `FROM <reference>` (`(<platform>)` added when not the image's; also `COPY --from`,
#   `RUN --mount`) or `ADD <url>`.

DEFAULT_PLATFORM = "linux/amd64"
"""The platform an image is built for when its settings name none (components/config/schema.py takes it from here)."""

DIGEST_VERSION = b"acr-publish/context-digest/v4"
TREE_VERSION = b"acr-publish/context-tree/v1"
# Files larger than this are hashed as a tree of fixed-size chunks so one huge file uses every core.
# A constant, never derived from the machine, so the digest is the same everywhere.
TREE_CHUNK = 4 << 20
TREE_PREFIX = b"acr-publish/tree/v1\0"
FILE_KINDS = ("f", "x")
SPECIAL_KINDS = ("p", "s", "c", "b")
DEVICE_KINDS = ("c", "b")

_pack = struct.Struct(">Q").pack
_KIND_FIELDS = {k: len(k).to_bytes(8, "big") + k.encode() for k in ("f", "x", "l", "d", *SPECIAL_KINDS)}


def field(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def tree_value(chunks: list[bytes]) -> str:
    """The content hash of a file over TREE_CHUNK bytes from the sha256 digests of its chunks, in order."""
    h = hashlib.sha256(TREE_PREFIX)
    h.update(TREE_CHUNK.to_bytes(8, "big"))
    h.update(b"".join(chunks))
    return h.hexdigest()


def tree_root(records: Mapping[str, tuple[str, str]], sizes: Mapping[str, int], dirs: Iterable[str]) -> bytes:
    """The first level (`tree`, 32 bytes): every file record in path order and every directory record in path
    order. `records`: rel -> (kind, value) where value is the content hash (files), the target (links),
    "major:minor" (devices) or "" (fifos, sockets)."""
    parts = [field(TREE_VERSION), field(b"files"), _pack(len(records))]
    append, fromhex = parts.append, bytes.fromhex
    for rel in sorted(records):
        kind, value = records[rel]
        rb = rel.encode("utf-8", "surrogateescape")  # os.fsencode, without its per-call overhead
        append(_KIND_FIELDS[kind])
        append(_pack(len(rb)))
        append(rb)
        if kind == "l":
            tb = value.encode("utf-8", "surrogateescape")
            append(_pack(len(tb)))
            append(tb)
        elif kind in DEVICE_KINDS:
            major, minor = value.split(":")
            append(_pack(int(major)))
            append(_pack(int(minor)))
        elif kind in FILE_KINDS:
            append(_pack(sizes[rel]))
            append(fromhex(value))
    dirs = sorted(dirs)
    parts += [field(b"dirs"), _pack(len(dirs))]
    dir_kind = _KIND_FIELDS["d"]
    for rel in dirs:
        rb = rel.encode("utf-8", "surrogateescape")
        append(dir_kind)
        append(_pack(len(rb)))
        append(rb)
    return hashlib.sha256(b"".join(parts)).digest()


def digest_of(tree: bytes, dockerfile_hash: str, options: bytes) -> str:
    """The second level: the digest of a build from the tree root, the Dockerfile's content hash and
    `options_encoding`."""
    return hashlib.sha256(field(DIGEST_VERSION) + field(b"tree") + tree + field(b"dockerfile")
                          + bytes.fromhex(dockerfile_hash) + options).hexdigest()


def options_encoding(args: Mapping[str, str], target: str | None, platform: str,
                     remote: Mapping[str, str] | None = None) -> bytes:
    """Build args sorted by name, target, platform, remote inputs (label -> digest) sorted by label."""
    parts = [field(b"build-args"), _pack(len(args))]
    for k in sorted(args):
        parts.append(field(k.encode("utf-8", "surrogatepass")))
        parts.append(field(args[k].encode("utf-8", "surrogatepass")))
    parts.append(field(b"target"))
    parts.append(b"\0" if target is None else b"\1" + field(target.encode("utf-8", "surrogatepass")))
    parts.append(field(b"platform"))
    parts.append(field(platform.encode("utf-8", "surrogatepass")))
    remote = remote or {}
    parts += [field(b"remote-inputs"), _pack(len(remote))]
    for label in sorted(remote):
        parts.append(field(label.encode("utf-8", "surrogatepass")))
        parts.append(field(remote[label].encode("utf-8", "surrogatepass")))
    return b"".join(parts)


def arg_fingerprint(name: str, value: str) -> str:
    """What the history keeps of a build arg: a fingerprint, never the value (values can be secrets)."""
    return hashlib.sha256(field(name.encode("utf-8", "surrogatepass"))
                          + field(value.encode("utf-8", "surrogatepass"))).hexdigest()[:16]


def content_tag(digest: str) -> str:
    """The image tag for a context digest: `ctx-` and the first 20 hex digits (80 bits).

    Always a valid Docker tag (lower-case letters, digits and '-', 24 characters, never `latest`);
    the prefix keeps it from being mistaken for an image's registry digest.
    """
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"context digest {digest!r} is invalid: expected 64 lower-case hex digits "
                         "(the value context_digest returns)")
    return "ctx-" + digest[:20]
