"""``python -m wafs``: the ``wafs`` command line."""

from .cli import main

main()
