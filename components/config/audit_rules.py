"""An image's `audit:` map: the layer audit's thresholds and the image paths a sensitive finding may have."""
from __future__ import annotations

from typing import Any, Mapping

from buildcontext.sensitive import BUILD_ARG_ENTRY, check_allow_entry
from components.config.schema import AUDIT_KEYS, AuditSettings
from components.config.shown import shown
from components.config.values import read_bool, unknown_keys


def audit_settings(path: str, raw: Any, stack: str, problems: list[str]) -> AuditSettings:
    """One image's `audit:` map; defaults: report only, except failOnSensitive in stacks named prod*."""
    default_fail = stack.startswith("prod")
    if raw is None:
        return AuditSettings(fail_on_sensitive=default_fail)
    if not isinstance(raw, Mapping):
        problems.append(f"{path} {shown(raw)} is invalid: it must be a map, e.g. audit: {{maxWastedPercent: 10, "
                        "failOnSensitive: true}}; remove the key for the defaults")
        return AuditSettings(fail_on_sensitive=default_fail)
    unknown_keys(path, raw, AUDIT_KEYS, problems)
    max_bytes = raw.get("maxWastedBytes")
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0):
        problems.append(f"{path}.maxWastedBytes {shown(max_bytes)} is invalid: it must be a whole number of bytes, "
                        "0 or more, e.g. maxWastedBytes: 10485760 (10 MiB); remove the key to only report")
        max_bytes = None
    max_percent = raw.get("maxWastedPercent")
    if max_percent is not None and (isinstance(max_percent, bool) or not isinstance(max_percent, (int, float))
                                    or not 0 <= max_percent <= 100):
        problems.append(f"{path}.maxWastedPercent {shown(max_percent)} is invalid: it must be a number from 0 to "
                        "100 (a share of the layers' file bytes), e.g. maxWastedPercent: 10; remove the key to only "
                        "report")
        max_percent = None
    fail = read_bool(f"{path}.failOnSensitive", raw.get("failOnSensitive"), default_fail, problems)
    allow = raw.get("allowSensitive")
    entries: list[str] = []
    if allow is not None and not isinstance(allow, list):
        problems.append(f"{path}.allowSensitive {shown(allow)} is invalid: it must be a list of paths in the image, "
                        "e.g. allowSensitive: [etc/ssl/private/snakeoil.key]; write [] or remove the key to allow "
                        "nothing")
    for j, entry in enumerate(allow if isinstance(allow, list) else []):
        normalized, rule = (None, "build args are not in an image's layers; name a path in the image") \
            if isinstance(entry, str) and entry.strip().lower().startswith(BUILD_ARG_ENTRY.lower()) \
            else check_allow_entry(entry.lstrip("/") if isinstance(entry, str) else entry)
        if rule is None:
            entries.append(normalized)
        else:
            problems.append(f"{path}.allowSensitive[{j}] {shown(entry)} is invalid: {rule.replace('build context', 'image')}")
    return AuditSettings(max_wasted_bytes=max_bytes, max_wasted_percent=float(max_percent) if max_percent is not None
                         else None, fail_on_sensitive=fail, allow_sensitive=tuple(entries))
