from __future__ import annotations

from typing import Any

from chancy import hookimpl


@hookimpl
def chancy_register_plugins() -> list[Any]:
    from chancy.plugins.testplugin.plugin import TestPlugin

    return [TestPlugin]
