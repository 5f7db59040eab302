"""``python -m core …``: the command line (see ``core.cli``)."""

from core.cli import main

if __name__ == "__main__":  # also imported, not run, by worker processes of a big lead import
    raise SystemExit(main())
