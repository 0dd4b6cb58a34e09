"""``python -m chancy.cli`` runs the command line (as ``python -m chancy`` does)."""

from __future__ import annotations

from chancy.cli import main

if __name__ == "__main__":
    main()
