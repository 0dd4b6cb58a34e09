"""A test-only plugin: counts completed jobs into its own table."""

from __future__ import annotations

from chancy.plugins.testplugin.plugin import TestPlugin

__all__ = ["TestPlugin"]
