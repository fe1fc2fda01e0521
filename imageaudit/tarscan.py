"""A streaming reader of one layer's tar: entry headers in order, each file's content offered once, then skipped.

Why not `tarfile`: in stream mode it reads a pax extended header or a GNU long name whole into memory whatever
size the header declares, so a layer declaring a 10 GB pax header makes it allocate 10 GB. This reader keeps Go's
archive/tar bound (what containerd and Docker use to apply layers): a pax header or GNU long name of more than
`MAX_SPECIAL_BYTES` (1 MiB) stops the audit with a message. It also refuses what a layer may not hold: an absolute
name, a `..` component (containerd refuses to apply such layers too), a header whose checksum is wrong (not a tar),
GNU sparse files (no image builder writes them), and more than `max_entries` entries.

Names are returned as POSIX paths relative to the image root, without `./` or a trailing `/`.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Callable, Iterator

from imageaudit.layerstream import LayerStream

BLOCK = 512
MAX_SPECIAL_BYTES = 1 << 20
"""Go archive/tar's maxSpecialFileSize: the largest pax header or GNU long name it reads."""
DEFAULT_MAX_ENTRIES = 2_000_000

KINDS = {b"0": "file", b"\0": "file", b"7": "file", b"1": "hardlink", b"2": "symlink", b"3": "char", b"4": "block",
         b"5": "dir", b"6": "fifo"}


class TarError(ValueError):
    """The layer's tar cannot be audited; the message names the layer and the entry."""


@dataclass
class TarEntry:
    name: str
    kind: str
    """file, hardlink, symlink, dir, char, block, fifo."""
    size: int
    """Content bytes in this layer (0 for everything but regular files)."""
    linkname: str = ""
    mode: int = 0


def _octal(field: bytes, what: str, where: str) -> int:
    if field and field[0] & 0x80:  # base-256, as GNU and Go write numbers too large for octal
        value = int.from_bytes(field[1:], "big")
        if field[0] & 0x40:
            raise TarError(f"{where}: a negative {what} in a tar header")
        return value
    text = field.split(b"\0", 1)[0].strip(b" \0")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarError(f"{where}: the tar header's {what} field is not a number: not a tar layer") from None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def clean_name(raw: str, where: str) -> str:
    """The entry's path relative to the root; TarError for an absolute name or a `..` component."""
    if raw.startswith("/"):
        raise TarError(f"{where}: the entry {raw!r} has an absolute name; a layer holds paths relative to the "
                       "image root (containerd refuses such a layer), so this blob is not a layer to trust")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise TarError(f"{where}: the entry {raw!r} has a '..' component, which would write outside the image root "
                       "(containerd refuses such a layer); this blob is not a layer to trust")
    return "/".join(parts)


def _pax_records(data: bytes, where: str) -> dict[str, str]:
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarError(f"{where}: a malformed pax record") from None
        if length <= space - pos or pos + length > len(data):
            raise TarError(f"{where}: a malformed pax record")
        record = data[space + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def entries(stream: LayerStream, where: str, *, max_entries: int = DEFAULT_MAX_ENTRIES,
            content: Callable[[TarEntry], Callable[[bytes], None] | None] | None = None) -> Iterator[TarEntry]:
    """Every entry of the tar in `stream`, in order. `content(entry)` may return a consumer that receives the
    file's bytes in chunks (the chunks are read before the entry is yielded); the rest is skipped unread."""

    def exact(n: int) -> bytes:
        parts, left = [], n
        while left:
            piece = stream.read(left)
            if not piece:
                raise TarError(f"{where}: the tar ends inside an entry (truncated layer)")
            parts.append(piece)
            left -= len(piece)
        return b"".join(parts)

    def special(size: int, what: str) -> bytes:
        if size > MAX_SPECIAL_BYTES:
            raise TarError(f"{where}: a {what} of {size} bytes, past the {MAX_SPECIAL_BYTES}-byte bound Go's "
                           "archive/tar (and so containerd and Docker) keeps: a hostile layer")
        data = exact(size)
        exact(-size % BLOCK)
        return data

    long_name = long_link = None
    pax: dict[str, str] = {}
    global_pax: dict[str, str] = {}
    count = 0
    zero_blocks = 0
    while True:
        header = stream.read(BLOCK)
        if len(header) < BLOCK:
            header += exact(BLOCK - len(header)) if header else b""
        if not header:
            return  # a tar without its end blocks: the stream ended on an entry boundary
        if header == bytes(BLOCK):
            zero_blocks += 1
            if zero_blocks == 2:
                return
            continue
        zero_blocks = 0
        stored = _octal(header[148:156], "checksum", where)
        if stored != sum(header[:148]) + 256 + sum(header[156:]):
            raise TarError(f"{where}: a tar header with a wrong checksum after {count} entries: not a tar layer")
        typeflag = header[156:157]
        size = _octal(header[124:136], "size", where)
        if typeflag in (b"x", b"X"):
            pax.update(_pax_records(special(size, "pax header"), where))
            continue
        if typeflag == b"g":
            global_pax.update(_pax_records(special(size, "global pax header"), where))
            continue
        if typeflag == b"L":
            long_name = _text(special(size, "GNU long name"))
            continue
        if typeflag == b"K":
            long_link = _text(special(size, "GNU long link name"))
            continue
        if typeflag == b"S":
            raise TarError(f"{where}: a GNU sparse file, which no image builder writes; not audited")
        count += 1
        if count > max_entries:
            raise TarError(f"{where} has more than {max_entries} entries (the audit's bound; raise --max-entries "
                           "if the image is real)")
        fields = {**global_pax, **pax}
        name = fields.get("path") or long_name
        if name is None:
            name = _text(header[0:100])
            if header[257:263] == b"ustar\0" and header[345:500].strip(b"\0"):
                name = _text(header[345:500]) + "/" + name
        linkname = fields.get("linkpath") or long_link or _text(header[157:257])
        if "size" in fields:
            try:
                size = int(fields["size"])
            except ValueError:
                raise TarError(f"{where}: a pax size that is not a number") from None
        kind = KINDS.get(typeflag)
        if kind is None:
            raise TarError(f"{where}: the entry {name!r} has tar type {typeflag!r}, which is not a file, link, "
                           "directory or device")
        path = clean_name(name, where)
        if kind == "hardlink":
            linkname = clean_name(linkname, where)
        entry = TarEntry(path, kind, size if kind == "file" else 0, linkname if kind in ("hardlink", "symlink") else "",
                         _octal(header[100:108], "mode", where))
        pax = {}
        long_name = long_link = None
        consumer = content(entry) if (content is not None and kind == "file" and size) else None
        left = size
        if consumer is not None:
            while left:
                piece = stream.read(left)
                if not piece:
                    raise TarError(f"{where}: the tar ends inside {path!r} (truncated layer)")
                consumer(piece)
                left -= len(piece)
            consumer(b"")
        elif left:
            stream.skip(left)
        if size % BLOCK:
            exact(BLOCK - size % BLOCK)
        yield entry


def parent_dirs(path: str) -> Iterator[str]:
    """`a/b/c` -> `a/b`, `a`."""
    while "/" in path:
        path = posixpath.dirname(path)
        yield path
