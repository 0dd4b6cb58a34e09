"""Entry point of ``chancy-sentry``: registers :class:`SentryPlugin`.

Kept import-light: the plugin module is imported only when the hook is
called, and it imports ``sentry_sdk`` only when it reports something.
Registering the class does not enable it; ``SentryPlugin.is_default()`` is
``False``, so an app uses it only when it is passed in ``plugins=[...]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from chancy.plugin import Plugin

hookimpl = pluggy.HookimplMarker("chancy")


@hookimpl
def chancy_register_plugins() -> list[type[Plugin]]:
    from chancy.plugins.sentry.plugin import SentryPlugin

    return [SentryPlugin]
