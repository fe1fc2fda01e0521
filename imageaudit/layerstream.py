"""One layer blob as a bounded stream of uncompressed tar bytes, read from the registry as it is decompressed.

Owns the three bounds that make a hostile blob stop instead of eat the machine:
- the compressed bytes read may not exceed the size the manifest's descriptor gives (a registry that sends more
  is refused at once; the registry client checks the sha256 of what it read when the blob ends);
- the uncompressed bytes may not exceed `max_layer_bytes` (a tar bomb: a small blob inflating without end);
- memory: every read asks the decompressor for at most `READ_SIZE` bytes of output (zlib's `max_length`, zstd's
  `stream_reader.read(n)`), so no chunk of input can expand into an unbounded buffer, and zstd frames whose window
  is larger than `ZSTD_MAX_WINDOW` are refused rather than allocated.
Nothing is written to disk and no layer is held whole: at any moment at most one compressed chunk (1 MiB) and one
output chunk are in memory.

zstd comes from `zstandard` (pinned 0.25.0): the binding the python-zstandard project keeps in step with libzstd,
with a bounded `stream_reader` and a `max_window_size` setting; the standard library has zstd only from Python 3.14.
"""
from __future__ import annotations

import zlib
from typing import Iterator

import zstandard

from errors import AcrPublishError

READ_SIZE = 1 << 20
GZIP_TYPES = ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip",
              "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
              "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
ZSTD_TYPES = ("application/vnd.oci.image.layer.v1.tar+zstd",
              "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")
TAR_TYPES = ("application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.nondistributable.v1.tar")
LAYER_TYPES = GZIP_TYPES + ZSTD_TYPES + TAR_TYPES
ZSTD_MAX_WINDOW = 32 << 20
"""Largest zstd window accepted: libzstd's levels up to 19 use at most 8 MiB; only `--long` frames need more."""
DEFAULT_MAX_LAYER_BYTES = 64 << 30
"""Default bound on one layer's uncompressed tar (a tar bomb stops here)."""


class LayerStreamError(AcrPublishError, ValueError):
    """The blob cannot be read as the layer its descriptor says; the message names the layer and the bound."""


class _Chunks:
    """The compressed chunks as a file object (for zstd's stream_reader), counted against the descriptor's size."""

    def __init__(self, chunks: Iterator[bytes], size: int, where: str):
        self.chunks, self.size, self.where = chunks, size, where
        self.read_bytes = 0
        self.pending = b""

    def _next(self) -> bytes:
        for piece in self.chunks:
            self.read_bytes += len(piece)
            if self.read_bytes > self.size:
                raise LayerStreamError(f"{self.where}: the registry sent more than the {self.size} bytes the manifest "
                                       "gives for this blob; the registry serves other bytes than the image names")
            if piece:
                return piece
        return b""

    def read(self, n: int = -1) -> bytes:
        if not self.pending:
            self.pending = self._next()
        if n < 0 or n >= len(self.pending):
            out, self.pending = self.pending, b""
        else:
            out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def finish(self) -> None:
        """Read to the end (the registry client checks the digest there) and check the length."""
        self.pending = b""
        while self._next():
            pass
        if self.read_bytes != self.size:
            raise LayerStreamError(f"{self.where}: the registry sent {self.read_bytes} bytes, the manifest gives "
                                   f"{self.size}")


class LayerStream:
    """`read(n)` gives the next at most n uncompressed bytes ("" at the end); `close()` drains and checks the blob."""

    def __init__(self, chunks: Iterator[bytes], media_type: str, size: int, where: str, *,
                 max_layer_bytes: int = DEFAULT_MAX_LAYER_BYTES):
        self.where = where
        self.source = _Chunks(chunks, size, where)
        self.max_layer_bytes = max_layer_bytes
        self.out_bytes = 0
        self._gzip: zlib._Decompress | None = None
        self._zstd = None
        self._tail = b""
        if media_type in GZIP_TYPES:
            self._gzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif media_type in ZSTD_TYPES:
            dctx = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
            self._zstd = dctx.stream_reader(self.source, read_size=READ_SIZE, read_across_frames=True)
        elif media_type not in TAR_TYPES:
            raise LayerStreamError(f"{where}: media type {media_type!r} is not a layer type this audit reads "
                                   f"(gzip, zstd or plain tar layers)")

    @property
    def compressed_bytes(self) -> int:
        return self.source.read_bytes

    def _count(self, data: bytes) -> bytes:
        self.out_bytes += len(data)
        if self.out_bytes > self.max_layer_bytes:
            raise LayerStreamError(
                f"{self.where} inflates past {self.max_layer_bytes} bytes from {self.source.read_bytes} compressed "
                "bytes (a tar bomb, or a layer larger than the bound: raise --max-layer-bytes if it is real)")
        return data

    def read(self, n: int = READ_SIZE) -> bytes:
        n = min(n, READ_SIZE)
        if self._zstd is not None:
            try:
                return self._count(self._zstd.read(n))
            except zstandard.ZstdError as exc:
                raise LayerStreamError(f"{self.where} is not valid zstd data ({exc})") from None
        if self._gzip is None:
            return self._count(self.source.read(n))
        while True:
            d = self._gzip
            if d.eof:
                # Concatenated gzip members are one stream (gzip(1) and Go's reader read them all).
                rest = d.unused_data + self._tail
                self._tail = b""
                if not rest:
                    rest = self.source.read()
                    if not rest:
                        return b""
                self._gzip = d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._tail = rest
            data = d.unconsumed_tail or self._tail
            self._tail = b""
            if not data:
                data = self.source.read()
                if not data:
                    raise LayerStreamError(f"{self.where} ends inside its gzip stream (truncated blob)")
            try:
                out = d.decompress(data, n)
            except zlib.error as exc:
                raise LayerStreamError(f"{self.where} is not valid gzip data ({exc})") from None
            if out:
                return self._count(out)

    def skip(self, n: int) -> None:
        """Read and drop n bytes (file content nobody needs to see)."""
        while n > 0:
            piece = self.read(min(n, READ_SIZE))
            if not piece:
                raise LayerStreamError(f"{self.where}: the tar stream ends inside a file")
            n -= len(piece)

    def close(self) -> None:
        """Drain what remains of the blob (the tar's trailing padding, or bytes after it) and check its length."""
        while self.read(READ_SIZE):
            pass
        self.source.finish()

