"""``python -m chancy`` runs the command-line interface."""

from __future__ import annotations

from chancy.cli import main

if __name__ == "__main__":
    main()
