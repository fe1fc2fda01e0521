"""A streaming reader of one layer's tar: entry headers in order, each file's content offered once, then skipped.

It reads a tar exactly as Go's archive/tar does (what Docker, containerd and dive apply and list), because any
difference lets a layer install a file the audit never sees; what Go itself refuses, or what this reader cannot
name exactly, stops the audit with a message (the rules it follows: the comment after this docstring). Names are
returned as POSIX paths relative to the image root, without `./` or a trailing `/`.
"""
from __future__ import annotations

# Go's reading, kept here: a directory, link, device or fifo header carries no
# data whatever size it declares; a global pax header ('g') applies to no later entry; of two pax headers in a row
# only the last applies; a GNU long name wins over a pax path, which wins over the header's name and prefix (the
# prefix read per format: ustar, star, and GNU only for the tars Go before 1.8 wrote); a type '\0' entry whose
# name ends in '/' is a directory; header numbers are parsed as Go parses them (octal trimmed of NULs and spaces,
# or base-256). What Go itself refuses, or what this reader cannot name exactly, stops the audit with a message:
# a malformed pax record, a zero block followed by a header, GNU sparse files (old 'S' headers and the pax
# `GNU.sparse.*` forms, which Docker installs under another name with their holes filled).
#
# Why not `tarfile`: in stream mode it reads a pax extended header or a GNU long name whole into memory whatever
# size the header declares, and its reading differs from Go's on the points above. This reader keeps Go's bound: a
# pax header or GNU long name of more than `MAX_SPECIAL_BYTES` (1 MiB) stops the audit with a message. It also
# refuses what a layer may not hold: an absolute name, a `..` component (containerd refuses to apply such layers
# too), a header whose checksum is wrong (not a tar), and more than `max_entries` entries.

import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from errors import AcrPublishError
from imageaudit.layerstream import LayerStream

BLOCK = 512
MAX_SPECIAL_BYTES = 1 << 20
"""Go archive/tar's maxSpecialFileSize: the largest pax header or GNU long name it reads."""
DEFAULT_MAX_ENTRIES = 1_000_000
"""Entries of a layer, and (imageaudit/audit.py) of the whole image across its layers."""

KINDS = {b"0": "file", b"\0": "file", b"7": "file", b"1": "hardlink", b"2": "symlink", b"3": "char", b"4": "block",
         b"5": "dir", b"6": "fifo"}


class TarError(AcrPublishError, ValueError):
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


_OCTAL = re.compile(rb"[0-7]+")
_DECIMAL = re.compile(r"[+-]?[0-9]+")
INT64 = 1 << 63


def _numeric(field: bytes, what: str, where: str) -> int:
    """A header number as Go's archive/tar parses it (parseNumeric): base-256 two's complement when the first
    bit is set, else octal with NULs and spaces trimmed on both sides, up to the first NUL left."""
    if field and field[0] & 0x80:
        inv = 0xFF if field[0] & 0x40 else 0
        value = 0
        for i, c in enumerate(field):
            c ^= inv
            if i == 0:
                c &= 0x7F
            if value >> 56:
                raise TarError(f"{where}: the tar header's {what} field overflows: not a tar layer")
            value = value << 8 | c
        if value >> 63:
            raise TarError(f"{where}: the tar header's {what} field overflows: not a tar layer")
        return ~value if inv else value
    text = field.strip(b" \0").split(b"\0", 1)[0]
    if not text:
        return 0
    if not _OCTAL.fullmatch(text) or int(text, 8) >= 1 << 64:
        raise TarError(f"{where}: the tar header's {what} field is not a number: not a tar layer")
    return int(text, 8)


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
    """One pax header's records as Go's parsePAX reads them: `<length> <key>=<value>\\n` each, the length counting
    bytes (never characters: a multibyte value must not move the next record's boundary), a later record of a key
    replacing an earlier one; anything malformed is an error (Go refuses the whole tar)."""
    records: dict[str, str] = {}
    rest = data
    while rest:
        length_bytes, space, after = rest.partition(b" ")
        length_text = length_bytes.decode("ascii", "replace")
        if not space or not _DECIMAL.fullmatch(length_text):
            raise TarError(f"{where}: a malformed pax record")
        length = int(length_text)
        n = length - len(length_bytes) - 1
        if length < 5 or length > len(rest) or n <= 0 or after[n - 1:n] != b"\n":
            raise TarError(f"{where}: a malformed pax record")
        key_bytes, eq, value_bytes = after[:n - 1].partition(b"=")
        key = key_bytes.decode("utf-8", "surrogateescape")
        value = value_bytes.decode("utf-8", "surrogateescape")
        if not eq or not key or ("\0" in value if key in ("path", "linkpath", "uname", "gname") else "\0" in key):
            raise TarError(f"{where}: a malformed pax record")
        records[key] = value
        rest = after[n:]
    return records


HEADER_ONLY = ("hardlink", "symlink", "char", "block", "dir", "fifo")
"""Kinds whose header carries no data whatever size it declares (Go's isHeaderOnlyType)."""


def _header_name(header: bytes, where: str) -> str:
    """The name field with its prefix as Go's readHeader joins them: the ustar prefix (155 bytes) for ustar/pax,
    star's 131-byte prefix for star, and for GNU headers the prefix only when atime/ctime do not parse (Go's
    reading of tars pre-1.8 Go wrote)."""
    name = _text(header[0:100])
    magic = header[257:263]
    prefix = ""
    if magic == b"ustar\0":
        prefix = _text(header[345:476] if header[508:512] == b"tar\0" else header[345:500])
    elif header[257:265] == b"ustar  \0":
        bad_times = False
        for field in (header[345:357], header[357:369]):
            if field[0] != 0:
                try:
                    _numeric(field, "time", where)
                except TarError:
                    bad_times = True
        raw = header[345:500].split(b"\0", 1)[0]
        if bad_times and raw.isascii():
            prefix = raw.decode("ascii")
    return f"{prefix}/{name}" if prefix else name


class _TarReader:
    """Go's archive/tar reading one layer's stream: blocks, headers, the long-name and pax records that name the
    next entry, and each entry's content."""

    def __init__(self, stream: LayerStream, where: str) -> None:
        self.stream, self.where = stream, where
        self.long_name = self.long_link = ""
        self.pax: dict[str, str] = {}

    def exact(self, n: int) -> bytes:
        parts, left = [], n
        while left:
            piece = self.stream.read(left)
            if not piece:
                raise TarError(f"{self.where}: the tar ends inside an entry (truncated layer)")
            parts.append(piece)
            left -= len(piece)
        return b"".join(parts)

    def special(self, size: int, what: str) -> bytes:
        if size < 0 or size > MAX_SPECIAL_BYTES:
            raise TarError(f"{self.where}: a {what} of {size} bytes, past the {MAX_SPECIAL_BYTES}-byte bound Go's "
                           "archive/tar (and so containerd and Docker) keeps: a hostile layer")
        data = self.exact(size)
        self.exact(-size % BLOCK)
        return data

    def padding(self, n: int) -> bool:
        """Read n padding bytes; False when the stream ends first (Go reads that as the tar's end)."""
        while n:
            piece = self.stream.read(n)
            if not piece:
                return False
            n -= len(piece)
        return True

    def header(self, count: int) -> bytes | None:
        """The next header block, or None at the tar's end."""
        header = self.stream.read(BLOCK)
        if not header:
            return None  # a tar without its end blocks: the stream ended on an entry boundary
        if len(header) < BLOCK:
            header += self.exact(BLOCK - len(header))
        if header == bytes(BLOCK):
            second = self.stream.read(BLOCK)
            if not second:
                return None
            if len(second) < BLOCK:
                second += self.exact(BLOCK - len(second))
            if second == bytes(BLOCK):
                return None
            raise TarError(f"{self.where}: a zero block followed by a header after {count} entries (Go's "
                           "archive/tar, and so Docker, refuses this tar)")
        return header

    def fields(self, header: bytes, count: int) -> tuple[bytes, int, int]:
        """(typeflag, size, mode) of a header whose checksum and numeric fields Go accepts."""
        where = self.where
        stored = _numeric(header[148:156], "checksum", where)
        unsigned = sum(header[:148]) + 256 + sum(header[156:])
        signed = sum(b - 256 if b > 127 else b for b in header[:148] + header[156:]) + 256
        if stored not in (unsigned, signed):
            raise TarError(f"{where}: a tar header with a wrong checksum after {count} entries: not a tar layer")
        size = _numeric(header[124:136], "size", where)
        mode = _numeric(header[100:108], "mode", where)
        for what, field in (("uid", header[108:116]), ("gid", header[116:124]), ("mtime", header[136:148])):
            _numeric(field, what, where)  # Go refuses the tar when any of them does not parse
        return header[156:157], size, mode

    def meta(self, typeflag: bytes, size: int) -> bool:
        """Read a record that names the next entry (pax, GNU long names); False when `typeflag` is an entry's."""
        if typeflag == b"x":
            self.pax = _pax_records(self.special(size, "pax header"), self.where)  # a second one replaces the first
        elif typeflag == b"g":
            # Go returns a global header as an entry of its own and applies it to nothing; Docker ignores it.
            _pax_records(self.special(size, "global pax header"), self.where)
            self.pax, self.long_name, self.long_link = {}, "", ""
        elif typeflag == b"L":
            self.long_name = _text(self.special(size, "GNU long name"))
        elif typeflag == b"K":
            self.long_link = _text(self.special(size, "GNU long link name"))
        elif typeflag == b"S":
            raise TarError(f"{self.where}: a GNU sparse file, which no image builder writes; not audited")
        else:
            return False
        return True

    def entry(self, header: bytes, typeflag: bytes, size: int, mode: int) -> TarEntry:
        """The entry a header describes, with the names and size the records before it give."""
        where, pax = self.where, self.pax
        # Go's precedence: the header's name, then a non-empty pax path, then a non-empty GNU long name.
        name = self.long_name or pax.get("path") or _header_name(header, where)
        linkname = self.long_link or pax.get("linkpath") or _text(header[157:257])
        if pax.get("size"):
            if not _DECIMAL.fullmatch(pax["size"]) or not -INT64 <= int(pax["size"]) < INT64:
                raise TarError(f"{where}: a pax size that is not a number")
            size = int(pax["size"])
        sparse = sorted(k for k in pax if k.startswith("GNU.sparse."))
        if sparse:
            raise TarError(f"{where}: the entry {name!r} is a GNU sparse file in pax form ({', '.join(sparse)}); "
                           "Docker installs it under the name and size those records give, with its holes filled, "
                           "which this audit does not expand: no image builder writes one, so the layer is refused")
        kind = KINDS.get(typeflag)
        if kind is None:
            raise TarError(f"{where}: the entry {name!r} has tar type {typeflag!r}, which is not a file, link, "
                           "directory or device")
        if typeflag == b"\0" and name.endswith("/"):
            kind = "dir"  # Go: a legacy archive's directory
        if kind in HEADER_ONLY:
            size = 0
        elif size < 0:
            raise TarError(f"{where}: the entry {name!r} declares a negative size: not a tar layer")
        path = clean_name(name, where)
        if kind == "hardlink":
            linkname = clean_name(linkname, where)
        self.pax, self.long_name, self.long_link = {}, "", ""
        return TarEntry(path, kind, size, linkname if kind in ("hardlink", "symlink") else "", mode)

    def content(self, entry: TarEntry, consumer: Callable[[bytes], None] | None) -> bool:
        """Hand the entry's bytes to `consumer` (or skip them), then its padding; False when the tar ends there."""
        left = entry.size
        if consumer is not None:
            while left:
                piece = self.stream.read(left)
                if not piece:
                    raise TarError(f"{self.where}: the tar ends inside {entry.name!r} (truncated layer)")
                consumer(piece)
                left -= len(piece)
            consumer(b"")
        elif left:
            self.stream.skip(left)
        return self.padding(-entry.size % BLOCK)


def entries(stream: LayerStream, where: str, *, max_entries: int = DEFAULT_MAX_ENTRIES,
            content: Callable[[TarEntry], Callable[[bytes], None] | None] | None = None) -> Iterator[TarEntry]:
    """Every entry of the tar in `stream`, in order, named and sized as Go's archive/tar reads them (what Docker
    and containerd apply). `content(entry)` may return a consumer that receives the file's bytes in chunks (the
    chunks are read before the entry is yielded); the rest is skipped unread."""
    reader = _TarReader(stream, where)
    count = 0
    while True:
        header = reader.header(count)
        if header is None:
            return
        typeflag, size, mode = reader.fields(header, count)
        if reader.meta(typeflag, size):
            continue
        count += 1
        if count > max_entries:
            raise TarError(f"{where} has more than {max_entries} entries (the audit's bound; if the image is real, "
                           "audit it with python -m cli.audit --max-entries N, a larger N)")
        entry = reader.entry(header, typeflag, size, mode)
        consumer = content(entry) if (content is not None and entry.kind == "file" and entry.size) else None
        more = reader.content(entry, consumer)
        yield entry
        if not more:
            return


def parent_dirs(path: str) -> Iterator[str]:
    """`a/b/c` -> `a/b`, `a`."""
    while "/" in path:
        path = posixpath.dirname(path)
        yield path
