"""Hand-made tar bytes for the tests of how the layer audit reads a tar: headers written field by field, so a test
can declare what `tarfile` would never write (a directory with a size, a global pax header, a GNU long name beside
a pax path, a prefix in a GNU header)."""
from __future__ import annotations

KEY = b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n"
ENV = b"DB_PASSWORD=hunter2\n"
USTAR = b"ustar\x0000"
GNU = b"ustar  \x00"


def header(name: bytes | str, typeflag: bytes = b"0", size: int = 0, link: str = "", *, magic: bytes = USTAR,
           size_field: bytes | None = None, prefix: bytes = b"") -> bytes:
    """One 512-byte header with a correct checksum."""
    raw = name.encode() if isinstance(name, str) else name
    h = bytearray(512)
    h[0:100] = raw.ljust(100, b"\0")[:100]
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = size_field if size_field is not None else f"{size:011o}\0".encode()
    h[136:148] = b"00000000000\0"
    h[156:157] = typeflag
    h[157:257] = link.encode().ljust(100, b"\0")
    h[257:265] = magic
    h[345:345 + len(prefix)] = prefix
    h[148:156] = b" " * 8
    h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def file(name: str, data: bytes, **kw) -> bytes:
    return header(name, b"0", len(data), **kw) + pad(data)


def pax(typeflag: bytes = b"x", **records: str) -> bytes:
    """A pax header ('x', or 'g' for a global one); `GNU__sparse__name` stands for `GNU.sparse.name`."""
    body = b""
    for key, value in records.items():
        record = f" {key.replace('__', '.')}={value}\n".encode()
        n = len(record) + 1
        while len(str(n)) + len(record) != n:
            n = len(str(n)) + len(record)
        body += str(n).encode() + record
    return header("PaxHeaders/x", typeflag, len(body)) + pad(body)


def long_name(name: str) -> bytes:
    data = name.encode() + b"\0"
    return header("././@LongLink", b"L", len(data), magic=GNU) + pad(data)


def end() -> bytes:
    return bytes(1024)
