"""Entry point of ``chancy-trigger``: registers :class:`Trigger`.

Kept import-light: the plugin module is imported only when the hook is called.
``Trigger.is_default()`` is ``True``: once installed, every app enables it
(and ``chancy.migrate()`` creates its table) unless the app is created with
``no_default_plugins=True``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from chancy.plugin import Plugin

hookimpl = pluggy.HookimplMarker("chancy")


@hookimpl
def chancy_register_plugins() -> list[type[Plugin]]:
    from chancy.plugins.trigger.plugin import Trigger

    return [Trigger]
