"""Alias of :mod:`chancy.rule`, so ``from chancy.plugins.rule import Age`` works.

See :mod:`chancy.rule` for the rules DSL. This is a plain module inside the
``chancy.plugins`` namespace package (which has no ``__init__.py``).
"""

from __future__ import annotations

from chancy import rule as _rule
from chancy.rule import *

__all__ = list(_rule.__all__)
