"""The API's built-in routes (see :mod:`chancy.plugins.web.core`)."""

from __future__ import annotations

from chancy.plugins.web.core import CoreApiPlugin

__all__ = ["CoreApiPlugin"]
