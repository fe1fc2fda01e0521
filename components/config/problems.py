"""The one error a stack's configuration raises: every problem found, one per line, bounded in number."""
from __future__ import annotations

from components.config.shown import shown_name
from errors import AcrPublishError

PROBLEMS_MAX = 100
"""Problems listed in one ConfigError; validation stops collecting past it, so a stack file of thousands of bad
entries (or YAML aliases repeating one) is reported in bounded time and length."""


class ConfigError(AcrPublishError):
    """Every problem found in a stack's configuration, one per line."""

    default_kind = "config"

    def __init__(self, stack: str, problems: list[str]):
        self.stack = stack
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems[:PROBLEMS_MAX])
        if len(self.problems) > PROBLEMS_MAX:
            lines += f"\n  - ... and {len(self.problems) - PROBLEMS_MAX} more; fix these first"
        name = shown_name(stack)
        super().__init__(
            f"stack '{name}' has {len(self.problems)} configuration problem(s) "
            f"(stacks/Pulumi.{name}.yaml):\n{lines}"
        )
