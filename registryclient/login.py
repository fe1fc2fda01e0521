"""One registry account: the server, the user, the password (or temporary token) and whether plain HTTP may be used
there. The one type every check, publish, copy and promotion holds a login in; its representation never shows the
password, in any form (tracebacks and logs print it)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegistryLogin:
    """Where and as whom. The password is plain here (the checks need it) and lives in memory only; whatever is
    declared to Pulumi gets it as a secret."""

    server: str
    """Registry host[:port] without a scheme, e.g. `acme-registry.cn-hangzhou.cr.aliyuncs.com` or `127.0.0.1:5000`."""
    username: str | None = None
    """None for anonymous access."""
    password: str | None = None
    """The password or temporary token; never printed."""
    allow_plain_http: bool = False
    """A loopback registry is reached over plain HTTP (as docker does for them); any other host always over HTTPS."""

    def __repr__(self) -> str:  # the dataclass repr would show the password in tracebacks and logs
        return (f"RegistryLogin(server={self.server!r}, username={self.username!r}, "
                f"password={None if self.password is None else '***'!r}, allow_plain_http={self.allow_plain_http!r})")
