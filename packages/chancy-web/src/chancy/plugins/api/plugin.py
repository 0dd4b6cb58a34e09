"""Extending the API with routes (see :mod:`chancy.plugins.web.extension`)."""

from __future__ import annotations

from chancy.plugins.web import extension as _extension
from chancy.plugins.web.extension import *

__all__ = _extension.__all__
