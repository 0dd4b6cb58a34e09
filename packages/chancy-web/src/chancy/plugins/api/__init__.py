"""The original Chancy's import path of the API plugin, kept for compatibility.

``from chancy.plugins.api import Api`` gives the same class as
``from chancy.plugins.web import Api`` (distribution ``chancy-web``).
"""

from __future__ import annotations

from chancy.plugins.web.plugin import Api, Web

__all__ = ["Api", "Web"]
