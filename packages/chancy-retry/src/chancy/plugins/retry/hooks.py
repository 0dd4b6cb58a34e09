"""Entry point of ``chancy-retry``: registers :class:`RetryPlugin`.

Kept import-light: the plugin module is imported only when the hook is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from chancy.plugin import Plugin

hookimpl = pluggy.HookimplMarker("chancy")


@hookimpl
def chancy_register_plugins() -> list[type[Plugin]]:
    from chancy.plugins.retry.plugin import RetryPlugin

    return [RetryPlugin]
