"""The `ample-batch` command line: parse options, call the library, map errors to exit codes."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="ample-batch")
def main() -> None:
    """Validate the emails in large lead lists through the Amplemarket API."""
