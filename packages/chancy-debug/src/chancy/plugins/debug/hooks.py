"""Entry point of ``chancy-debug``: registers :class:`DebugPlugin`.

Kept import-light: the plugin module is imported only when the hook is
called. Registering the class does not enable it; ``DebugPlugin.is_default()``
is ``False``, so an app uses it only when it is passed in ``plugins=[...]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from chancy.plugin import Plugin

hookimpl = pluggy.HookimplMarker("chancy")


@hookimpl
def chancy_register_plugins() -> list[type[Plugin]]:
    from chancy.plugins.debug.plugin import DebugPlugin

    return [DebugPlugin]
