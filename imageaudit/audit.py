"""The audit of one image in a registry: what each layer adds, changes and removes, what later layers hide, the
bytes no container can see, and the sensitive files every layer ships (the terms: docs/layer-audit.md).

Input: a `RegistryClient` (registryclient/) logged in as for publishing, a repository path and a tag
or digest. The manifest (or each platform's manifest of an index) and the image config are read whole (they are
small and bounded); every layer is streamed through `LayerStream` and `tarscan.entries` once, in order, and never
held in memory or written anywhere. What is kept is one record per path of the image's file system (the merged
view after each layer, `_FileSystem`), not the files. Whiteouts apply to lower layers only (the OCI layer rule).
An index is audited per platform (attestation manifests, `unknown/unknown`, are no image and are skipped). What
the audit finds is imageaudit/report.py.
"""
from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from boundedjson import PastBounds, parse_json
from buildcontext import sensitive
from errors import AcrPublishError
from registryclient import DOCKER_LIST, OCI_INDEX, RegistryClient, RegistryError
from registryclient.client import MANIFEST_LIMIT
from imageaudit.layerstream import DEFAULT_MAX_LAYER_BYTES, LAYER_TYPES, LayerStream, LayerStreamError
from imageaudit.report import Hidden, ImageAudit, Layer, PlatformAudit, Sensitive
from imageaudit.tarscan import DEFAULT_MAX_ENTRIES, TarEntry, TarError, entries, parent_dirs

CONFIG_LIMIT = 8 << 20
"""Bytes read of an image config (history and all): far beyond any real one, small enough to hold."""
LAYER_WORKERS = 2
"""Layers read at once: two keep both cores of a small runner busy (zlib and hashlib release the GIL), and memory
stays two layers' buffers."""
BYTES_PER_ENTRY = 450
"""What the bookkeeping keeps per tar entry read, measured (tests/unit/imageaudit/test_layer_audit_tar_reading.py holds the
audit to it): `max_entries` entries across the image cost at most about this many bytes each."""
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


class AuditError(AcrPublishError):
    """The image cannot be audited; the message names the reference, what was wrong and what to do. `kind` is the
    registry client's kind of failure ("auth", "unreachable", ...) when the registry stopped it, else "content"."""

    default_kind = "content"

    def __init__(self, message: str, kind: str = "content"):
        super().__init__(message, kind)


# --- one layer's file system bookkeeping --------------------------------------------------------------------------

class _Node:
    __slots__ = ("kind", "size", "layer", "content")

    def __init__(self, kind: str, size: int, layer: int, content: int | None):
        self.kind, self.size, self.layer, self.content = kind, size, layer, content


class _SensitiveScan:
    """The guard's content scan over one file's chunks, as buildcontext/hashing.py runs it over a file's reads:
    git's binary sniff on the first 8000 bytes, then windows with SCAN_OVERLAP bytes of the one before."""

    def __init__(self, name: str):
        self.name = name
        self.head = b""
        self.text: bool | None = None
        self.prev = b""
        self.tail = b""
        self.flags = 0

    def _scan(self, data: bytes, last: bool) -> None:
        window = self.tail + data
        self.flags |= sensitive.scan_content(self.name, window, cut_start=bool(self.tail), cut_end=not last)
        # The window's last bytes, not the piece's: a piece shorter than SCAN_OVERLAP must not shorten the overlap.
        self.tail = window[-sensitive.SCAN_OVERLAP:]

    def __call__(self, piece: bytes) -> None:
        """One chunk of the file; b"" at its end."""
        if self.text is False:
            return
        end = not piece
        if self.text is None:
            self.head += piece
            if not end and len(self.head) < sensitive.BINARY_SNIFF_BYTES:
                return
            self.text = not sensitive.is_binary(self.head)
            piece, self.head = self.head, b""
            if not self.text:
                return
            if end:
                self._scan(piece, last=True)
                self.text = False
            else:
                self.prev = piece
            return
        if end:
            self._scan(self.prev, last=True)
            self.prev = b""
            return
        if self.prev:
            self._scan(self.prev, last=False)
        self.prev = piece


class _FileSystem:
    """The merged file system after each layer, and what each layer hid."""

    def __init__(self) -> None:
        self.live: dict[str, _Node] = {}
        self.contents: list[int] = []
        """Content id -> size of the regular file's bytes."""
        self.hidden: list[Hidden] = []
        self.hidden_content: list[int | None] = []
        """Per hidden copy, its content id (None for what stores no bytes)."""

    def apply(self, layer: Layer, found: dict[str, TarEntry], whiteouts: list[str], opaques: list[str]) -> None:
        live, idx = self.live, layer.index
        removed_trees: dict[str, str] = {}  # path whose whole subtree goes -> how
        for path in whiteouts:
            node = live.get(path)
            if node is not None and node.layer < idx:
                self._hide(path, node, idx, "removed")
                del live[path]
                layer.removed += 1
                if node.kind == "dir":
                    removed_trees[path] = "parent removed"
        for directory in opaques:
            removed_trees.setdefault(directory, "opaque")
        for path, entry in found.items():
            node = live.get(path)
            if node is not None and node.layer < idx:
                if node.kind != "dir":
                    self._hide(path, node, idx, "overwritten")
                elif entry.kind != "dir":
                    removed_trees.setdefault(path, "replaced")
            for parent in parent_dirs(path):
                above = live.get(parent)
                if above is not None and above.kind != "dir" and above.layer < idx:
                    self._hide(parent, above, idx, "replaced")
                    del live[parent]
        if removed_trees:
            for path in [p for p, n in live.items() if n.layer < idx]:
                for parent in parent_dirs(path):
                    how = removed_trees.get(parent)
                    if how is not None:
                        node = live.pop(path)
                        if how != "replaced":
                            layer.removed += 1
                        self._hide(path, node, idx, how)
                        break
        for path, entry in found.items():
            node = live.get(path)
            if node is not None and node.layer < idx:
                layer.changed += 1
            else:
                layer.added += 1
            content = None
            if entry.kind == "file":
                content = self._store(entry.size)
            elif entry.kind == "hardlink":
                target = live.get(entry.linkname)
                if target is not None and target.layer == idx:
                    content = target.content
            live[path] = _Node(entry.kind, entry.size, idx, content)

    def same_layer_overwrite(self, path: str, old: TarEntry, layer: int) -> None:
        """A tar listing one path twice: the first copy's bytes are stored and unreachable."""
        if old.kind != "dir":
            self.hidden.append(Hidden(path, old.kind, old.size, layer, layer, "overwritten", True))
            self.hidden_content.append(self._store(old.size) if old.kind == "file" else None)

    def _store(self, size: int) -> int:
        self.contents.append(size)
        return len(self.contents) - 1

    def _hide(self, path: str, node: _Node, by: int, how: str) -> None:
        if node.kind == "dir":
            return
        self.hidden.append(Hidden(path, node.kind, node.size, node.layer, by, how, True))
        self.hidden_content.append(node.content)

    def finish(self, layers: list[Layer]) -> int:
        """Mark which hidden copies are wasted; returns the wasted bytes."""
        visible = {n.content for n in self.live.values() if n.content is not None}
        wasted = 0
        counted: set[int] = set()
        for hidden, content in zip(self.hidden, self.hidden_content):
            hidden.wasted = hidden.kind == "file" and content is not None and content not in visible \
                and content not in counted
            if hidden.wasted:
                counted.add(content)
                wasted += hidden.size
                layers[hidden.layer].wasted_bytes += hidden.size
        return wasted


# --- the audit ----------------------------------------------------------------------------------------------------

Progress = Callable[[int, int], None]
"""progress(bytes read so far, total compressed bytes of the image's layers)."""


def _json(data: bytes, what: str, where: str) -> dict[str, Any]:
    try:
        body = parse_json(data, limit=max(MANIFEST_LIMIT, CONFIG_LIMIT))
    except PastBounds as err:
        raise AuditError(f"{where}: the {what} is not JSON this audit reads: it is {err} (a builder's {what} nests "
                         "fewer than ten); no builder wrote it as it is: rebuild the image from its Dockerfile and "
                         "push it again, or audit another tag") from None
    except ValueError:
        raise AuditError(f"{where}: the {what} is not JSON") from None
    if not isinstance(body, dict):
        raise AuditError(f"{where}: the {what} is not a JSON object")
    return body


def _descriptor(entry: Any, what: str, where: str) -> tuple[str, int, str]:
    from registryclient.references import DIGEST

    if not isinstance(entry, dict):
        raise AuditError(f"{where}: {what} is not a descriptor")
    digest, size, media = entry.get("digest"), entry.get("size"), entry.get("mediaType", "")
    if not isinstance(digest, str) or not DIGEST.match(digest) or not isinstance(size, int) or size < 0:
        raise AuditError(f"{where}: {what} has no sha256 digest and size")
    return digest, size, str(media)


@dataclass
class _LayerScan:
    """What one layer's tar holds, as a worker read it; applied to the file system in layer order."""

    found: dict[str, TarEntry] = field(default_factory=dict)
    whiteouts: list[str] = field(default_factory=list)
    opaques: list[str] = field(default_factory=list)
    repeated: list[tuple[str, TarEntry]] = field(default_factory=list)
    """(path, earlier entry) for a path the tar lists twice."""
    refused: list = field(default_factory=list)
    """The guard's findings among the layer's files."""
    candidates: list[tuple[str, str, int]] = field(default_factory=list)
    """(path, kind, content flags) of the files and links the guard judges."""
    content_flags: dict[str, int] = field(default_factory=dict)
    """Content flags of the layer's flagged files (a hard link is judged by its target's)."""

    def take(self, entry: TarEntry, layer: Layer, scan: _SensitiveScan | None) -> None:
        """Record one entry of the layer's tar: a whiteout, an opaque marker, or a path with its guard record."""
        head, _, base_name = entry.name.rpartition("/")
        if base_name == OPAQUE:
            self.opaques.append(head)
            return
        if base_name.startswith(WHITEOUT):
            self.whiteouts.append(f"{head}/{base_name[len(WHITEOUT):]}" if head else base_name[len(WHITEOUT):])
            return
        if not entry.name:
            return  # the root directory itself
        found = self.found
        if entry.name in found:
            self.repeated.append((entry.name, found[entry.name]))
        found[entry.name] = entry
        layer.file_bytes += entry.size
        if entry.kind in ("file", "symlink"):
            flags = scan.flags if scan is not None else 0
            if flags:
                self.content_flags[entry.name] = flags
            self.candidates.append((entry.name, "l" if entry.kind == "symlink" else "f", flags))
        elif entry.kind == "hardlink":
            # A hard link is the file under a second name: judged by that name, with its target's content
            # as this layer stored it.
            self.candidates.append((entry.name, "f", self.content_flags.get(entry.linkname, 0)))


class Auditor:
    """Audits images of one registry through one client."""

    def __init__(self, client: RegistryClient, *, progress: Progress | None = None,
                 max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.client = client
        self.progress = progress
        self.max_layer_bytes = max_layer_bytes
        self.max_entries = max_entries
        self._entry_count = itertools.count(1)
        """Entries read across all layers (and platforms) of the image: what the bookkeeping grows with."""
        self.read_bytes = 0
        self.total_bytes = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._workers: list[RegistryClient] = []

    def audit(self, repository: str, reference: str) -> ImageAudit:
        self._entry_count = itertools.count(1)
        try:
            return self._audit(repository, reference)
        finally:
            for client in self._workers:
                client.close()
            self._workers.clear()
            self._local = threading.local()

    def _audit(self, repository: str, reference: str) -> ImageAudit:
        where = f"{self.client.server}/{repository}{'@' if reference.startswith('sha256:') else ':'}{reference}"
        try:
            manifest = self.client.get_manifest(repository, reference)
            body = _json(manifest.content, "manifest", where)
            if manifest.media_type in (OCI_INDEX, DOCKER_LIST) or "manifests" in body:
                children = body.get("manifests")
                if not isinstance(children, list):
                    raise AuditError(f"{where}: the index has no manifests list")
                chosen = []
                for i, child in enumerate(children):
                    digest, _size, _media = _descriptor(child, f"manifests[{i}]", where)
                    plat = child.get("platform") or {}
                    if not isinstance(plat, dict):
                        raise AuditError(f"{where}: manifests[{i}].platform is not an object (os, architecture, "
                                         "variant): the index is not an image index")
                    name = "/".join(str(plat.get(k)) for k in ("os", "architecture", "variant") if plat.get(k))
                    if name in ("", "unknown/unknown"):
                        continue  # BuildKit's attestation manifests: no image to run
                    chosen.append((name, digest))
                manifests = [(name, self.client.get_manifest(repository, digest)) for name, digest in chosen]
            else:
                manifests = [(None, manifest)]
            plans = []
            for name, child in manifests:
                child_body = _json(child.content, "manifest", f"{where} ({child.digest})")
                plans.append((name, child, child_body))
                listed = child_body.get("layers")
                for layer in listed if isinstance(listed, list) else []:
                    if isinstance(layer, dict) and isinstance(layer.get("size"), int):
                        self.total_bytes += layer["size"]
            platforms = [self._platform(repository, name, child, child_body, where) for name, child, child_body in plans]
        except RegistryError as err:
            raise AuditError(f"auditing {where} failed: {err}", getattr(err, "kind", "registry")) from None
        except (LayerStreamError, TarError) as err:
            raise AuditError(f"auditing {where} stopped: {err}") from None
        return ImageAudit(reference=where, digest=manifest.digest, media_type=manifest.media_type, platforms=platforms)

    def _config(self, repository: str, body: dict[str, Any], where: str) -> tuple[str, dict[str, Any]]:
        digest, size, _media = _descriptor(body.get("config"), "its config", where)
        if size > CONFIG_LIMIT:
            raise AuditError(f"{where}: the image config is {size} bytes, past the audit's {CONFIG_LIMIT}-byte bound")
        parts, total = [], 0
        for piece in self.client.get_blob(repository, digest):
            total += len(piece)
            if total > size:
                raise AuditError(f"{where}: the registry sent more config bytes than the manifest gives ({size})")
            parts.append(piece)
        return digest, _json(b"".join(parts), "image config", where)

    def _platform(self, repository: str, name: str | None, manifest, body: dict[str, Any],
                  where: str) -> PlatformAudit:
        config_digest, config = self._config(repository, body, where)
        platform = name or "/".join(str(config.get(k)) for k in ("os", "architecture", "variant") if config.get(k))
        layers_raw = body.get("layers")
        if not isinstance(layers_raw, list):
            raise AuditError(f"{where}: the manifest has no layers list")
        raw_history = config.get("history") or []
        if not isinstance(raw_history, list):
            raise AuditError(f"{where}: the image config's history is not a list: not an image config")
        history = [h for h in raw_history if isinstance(h, dict) and not h.get("empty_layer")]
        instructions = ([str(h.get("created_by") or "") or None for h in history]
                        if len(history) == len(layers_raw) else [None] * len(layers_raw))
        audit = PlatformAudit(platform=platform, manifest_digest=manifest.digest, config_digest=config_digest)
        fs = _FileSystem()
        for i, raw in enumerate(layers_raw):
            digest, size, media = _descriptor(raw, f"layers[{i}]", where)
            if media not in LAYER_TYPES:
                raise AuditError(f"{where}: layers[{i}] has media type {media!r}, not a layer this audit reads")
            layer = Layer(index=i, digest=digest, media_type=media, compressed_bytes=size,
                          instruction=instructions[i])
            audit.layers.append(layer)
        self._layers(repository, audit.layers, fs, audit, where)
        audit.wasted_bytes = fs.finish(audit.layers)
        audit.hidden = sorted(fs.hidden, key=lambda h: (-h.size, h.path, h.layer))
        audit.file_bytes = sum(layer.file_bytes for layer in audit.layers)
        hidden_copies = {(h.path, h.layer) for h in fs.hidden}
        for s in audit.sensitive:
            s.hidden = (s.path, s.layer) in hidden_copies
        return audit

    def _worker_client(self) -> RegistryClient:
        """This thread's own client (a requests session is not shared across threads), logged in as the main one."""
        client = getattr(self._local, "client", None)
        if client is None:
            c = self.client
            client = self._local.client = RegistryClient(c.server, c.username, c.password,
                                                         allow_plain_http=c.allow_plain_http, timeout=c.timeout,
                                                         deadline=c.deadline, budget=c.budget,
                                                         pace_window=c.pace_window,
                                                         label=c.label, limit_name=c.limit_name,
                                                         advice=c.advice)
            with self._lock:
                self._workers.append(client)
        return client

    def _count(self, n: int) -> None:
        with self._lock:
            self.read_bytes += n
            done = self.read_bytes
        if self.progress is not None:
            self.progress(done, self.total_bytes)

    def _scan(self, repository: str, layer: Layer, where: str) -> _LayerScan:
        """Read one layer's tar once (in a worker thread): its entries, whiteouts and sensitive findings."""
        blob = self._worker_client().get_blob(repository, layer.digest)

        def counted():
            for piece in blob:
                self._count(len(piece))
                yield piece

        chunks = counted()
        stream = LayerStream(chunks, layer.media_type, layer.compressed_bytes, where,
                             max_layer_bytes=self.max_layer_bytes)
        result = _LayerScan()
        scans: dict[str, _SensitiveScan] = {}

        def content(entry: TarEntry):
            scan = _SensitiveScan(entry.name.rsplit("/", 1)[-1])
            scans[entry.name] = scan
            return scan

        try:
            for entry in entries(stream, where, max_entries=self.max_entries, content=content):
                layer.entries += 1
                if next(self._entry_count) > self.max_entries:  # itertools.count: one step per call, thread-safe
                    raise TarError(
                        f"{where}: the image has more than {self.max_entries} tar entries across its layers, the "
                        f"audit's bound on what it keeps in memory (about {BYTES_PER_ENTRY} bytes an entry); if the "
                        "image is real, audit it with python -m cli.audit --max-entries N (a larger N)")
                result.take(entry, layer, scans.pop(entry.name, None))
            stream.close()
        finally:
            chunks.close()
        layer.tar_bytes = stream.out_bytes
        result.refused, _ = sensitive.findings(result.candidates)
        result.candidates, result.content_flags = [], {}  # needed only while the layer is read (BYTES_PER_ENTRY)
        return result

    def _layers(self, repository: str, layers: list[Layer], fs: _FileSystem, audit: PlatformAudit,
                where: str) -> None:
        """Scan the layers LAYER_WORKERS at a time (inflating and hashing release the GIL), apply them in order."""
        pool = ThreadPoolExecutor(max_workers=LAYER_WORKERS)
        try:
            futures = [pool.submit(self._scan, repository, layer,
                                   f"{where} layer {layer.index} ({layer.digest[:19]})") for layer in layers]
            for layer, future in zip(layers, futures):
                scan = future.result()
                for path, old in scan.repeated:
                    fs.same_layer_overwrite(path, old, layer.index)
                for finding in scan.refused:
                    audit.sensitive.append(Sensitive(finding.path, layer.index, layer.digest, layer.instruction,
                                                     finding.reason, False))
                fs.apply(layer, scan.found, scan.whiteouts, scan.opaques)
        except BaseException:
            for client in list(self._workers):
                client.abort()  # the other worker stops reading at once
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
