"""The one error base of acr-publish: every refusal of input and every failed check derives from `AcrPublishError`.

str() is the whole message for the person running the program (the setting or file, the value, the rule, the fix),
free of secrets and of raw server bytes; `kind` says what failed, for callers and tests that branch on it. The
program turns it into what the Pulumi engine prints without a traceback in one place (`__main__.py`); nothing else
needs to know about the engine. No Pulumi import here: the build-context engine, the registry client and the CLIs
raise these errors too.
"""
from __future__ import annotations


class AcrPublishError(Exception):
    """Bad input or a failed check, with one person-readable message.

    `kind` values used across the program: "config" (a setting or file the user gave), "unreachable" (no answer:
    resolution, refused, timed out), "tls", "auth" (credentials rejected or missing), "forbidden" (the account lacks a
    permission), "protocol" (an answer that is not what the API specifies), "absent" (something required is
    missing), "copy" (a promotion cannot be done as asked), "interrupted" (Ctrl-C). Subclasses may add their own.
    """

    default_kind = "error"

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or self.default_kind
