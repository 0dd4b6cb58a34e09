"""Entry point of ``chancy-otel``: registers :class:`OpenTelemetryPlugin`.

Kept import-light: neither the plugin module nor ``opentelemetry`` is
imported until the hook is called. Registering the class does not enable it;
``OpenTelemetryPlugin.is_default()`` is ``False``, so an app uses it only
when it is passed in ``plugins=[...]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from chancy.plugin import Plugin

hookimpl = pluggy.HookimplMarker("chancy")


@hookimpl
def chancy_register_plugins() -> list[type[Plugin]]:
    from chancy.plugins.otel.plugin import OpenTelemetryPlugin

    return [OpenTelemetryPlugin]
