"""Type-check every distribution's source: ``hatch run types:check``.

``chancy`` is one package spread over several ``packages/*/src`` directories
(core's regular package plus each plugin's ``chancy/plugins/<name>/``). Given
those directories as plain targets, mypy names a plugin's files after their
nearest ``__init__.py`` (``web.auth``) and again, through the imports, as
``chancy.plugins.web.auth``, and stops with "Source file found twice under
different module names". So this runs mypy with every ``src`` directory on
``MYPYPATH`` and ``--explicit-package-bases``: each file is then named
relative to its own ``src`` directory, and imports across distributions
resolve to the same sources. Reported paths are the real files.

Arguments are passed to mypy and replace the default targets (every
``packages/*/src``), e.g. ``hatch run types:check packages/chancy-cron/src``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _display(path: Path) -> str:
    """``path`` relative to the working directory when possible (shorter output)."""
    try:
        return os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)


def main(argv: list[str]) -> int:
    src_dirs = sorted(ROOT.glob("packages/*/src"))
    if not src_dirs:
        print(f"no packages/*/src directories under {ROOT}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env["MYPYPATH"] = os.pathsep.join(
        [str(path) for path in src_dirs]
        + ([env["MYPYPATH"]] if env.get("MYPYPATH") else [])
    )
    targets = argv or [_display(path) for path in src_dirs]
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--explicit-package-bases",
        *targets,
    ]
    return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
