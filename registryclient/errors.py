"""The registry client's one error: a registry exchange failed."""
from __future__ import annotations

from errors import AcrPublishError


class RegistryError(AcrPublishError):
    """A registry exchange failed; str() is a person-readable message free of secrets and raw server bytes.

    `kind`: "unreachable" (no answer: resolution, refused, timed out), "tls", "auth" (credentials rejected or
    missing), "forbidden" (the account lacks a permission), "config" (the server setting itself), "protocol" (an
    answer that is not what the registry API specifies), "absent" (a blob or manifest the caller required is
    missing). `status` is the HTTP status when there was one.
    """

    default_kind = "protocol"

    def __init__(self, message: str, kind: str = "protocol", status: int | None = None):
        super().__init__(message, kind)
        self.status = status
