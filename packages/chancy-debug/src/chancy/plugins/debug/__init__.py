"""Debugging aid: log and count every event on each worker's hub.

Never enabled by default; pass it to the app::

    import logging

    from chancy import Chancy, Worker
    from chancy.plugins.debug import DebugPlugin

    debug = DebugPlugin(level=logging.INFO)
    chancy = Chancy("postgresql://localhost/app", plugins=[debug])

    async with chancy, Worker(chancy) as worker:
        ...
        print(debug.event_counts.most_common())

Every event is logged as ``Hub event <name>: <body>`` with a short, one-line
rendering of its body, and counted by name in ``debug.event_counts`` (a
``collections.Counter``).
"""

from __future__ import annotations

from chancy.plugins.debug.plugin import DebugPlugin, render_body

__all__ = ["DebugPlugin", "render_body"]
