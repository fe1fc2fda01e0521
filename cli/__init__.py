"""Command-line tools that read a stack without running Pulumi: `python -m cli.explain`, `python -m cli.ram`."""
