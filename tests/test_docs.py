"""Documentation guards: the README's hook table is the hookspecs, exactly."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from chancy import hookspecs

ROOT = Path(__file__).resolve().parent.parent


def _specs() -> dict[str, str]:
    """``chancy_x(a, b)`` for every hookspec."""
    out = {}
    for name, fn in vars(hookspecs).items():
        if name.startswith("chancy_") and callable(fn):
            params = ", ".join(inspect.signature(fn).parameters)
            out[name] = f"{name}({params})"
    return out


def test_the_readme_hook_table_lists_every_hookspec_with_its_signature() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| Hook | When |") :].split("\n\n", 1)[0]
    listed = set(re.findall(r"`(chancy_\w+\([^)]*\))`", table))
    assert listed == set(_specs().values())
