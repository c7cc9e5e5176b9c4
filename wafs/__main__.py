"""``python -m wafs``: the ``wafs`` command line."""

from .cli import main

if __name__ == "__main__":  # not when a tool walks the package's modules
    main()
