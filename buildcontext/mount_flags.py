"""The value of a `RUN --mount=` flag read as BuildKit reads it: one record of Go's encoding/csv (comma-separated;
a field that starts with `"` is quoted, `""` in it a quote, so it may hold commas; a quote anywhere else, or text
after a closing quote, fails the build), each field `key=value` with the key compared in lower case, untrimmed.
"""
from __future__ import annotations

from buildcontext.plan import DockerfileProblem


def mount_fields(value: str, line: int) -> list[str]:
    """The fields of a `--mount=` value (as the parser gives it: its quotes for the flag word already removed);
    DockerfileProblem where BuildKit fails the build ("failed to parse csv mounts")."""
    def fails(reason: str) -> DockerfileProblem:
        return DockerfileProblem(f"--mount={value}: BuildKit fails to parse it as CSV ({reason}); fix: quote a "
                                 'field holding a comma as a whole ("target=/a,b"), with "" for a quote in it', line)

    if not value:
        raise fails("no fields")
    if "\n" in value or "\r" in value:
        raise DockerfileProblem(f"--mount={value!r} holds a line break, which this plan does not read as BuildKit's "
                                "CSV reader does; fix: write the mount on one line", line)
    fields: list[str] = []
    i = 0
    while True:
        if value.startswith('"', i):
            parts, i = [], i + 1
            while True:
                close = value.find('"', i)
                if close < 0:
                    raise fails('extraneous or missing " in quoted-field')
                parts.append(value[i:close])
                i = close + 1
                if value.startswith('"', i):
                    parts.append('"')
                    i += 1
                    continue
                break
            fields.append("".join(parts))
            if i == len(value):
                return fields
            if value[i] != ",":
                raise fails('extraneous or missing " in quoted-field')
            i += 1
            continue
        comma = value.find(",", i)
        field = value[i:] if comma < 0 else value[i:comma]
        if '"' in field:
            raise fails('bare " in non-quoted-field')
        fields.append(field)
        if comma < 0:
            return fields
        i = comma + 1


def mount_from(value: str, line: int) -> str | None:
    """The `from=` of a mount as BuildKit takes it (the last one), None without one."""
    found = None
    for field in mount_fields(value, line):
        key, eq, val = field.partition("=")
        if eq and key.lower() == "from":
            found = val
    return found
