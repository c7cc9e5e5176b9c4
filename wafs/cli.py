"""The ``wafs`` command line."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wafs")
def main() -> None:
    """wafs: browse and manage a Baileys bot's key-value store, or mount it as a directory tree."""
