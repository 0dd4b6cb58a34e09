"""Settings of the Django integration.

``CHANCY_PREFIX`` (default ``"chancy_"``) is the table prefix of the Chancy
installation the Django models read; it must equal the ``prefix`` given to
:class:`chancy.Chancy`. It is read once, when the models are loaded.
"""

from __future__ import annotations

from typing import Final

from chancy._sql import PREFIX_RE

__all__ = ["DEFAULT_PREFIX", "db_table", "get_prefix"]

#: The prefix used when the ``CHANCY_PREFIX`` setting is not set.
DEFAULT_PREFIX: Final = "chancy_"


def get_prefix() -> str:
    """The ``CHANCY_PREFIX`` setting, validated like ``Chancy(prefix=...)``.

    :raises django.core.exceptions.ImproperlyConfigured: the prefix is not a
        plain identifier of at most 41 characters.
    """
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    prefix = getattr(settings, "CHANCY_PREFIX", DEFAULT_PREFIX)
    if not isinstance(prefix, str) or not PREFIX_RE.match(prefix):
        raise ImproperlyConfigured(
            f"CHANCY_PREFIX={prefix!r} is not a valid Chancy table prefix: use"
            " letters, digits and underscores (starting with a letter or"
            " underscore), at most 41 characters"
        )
    return prefix


def db_table(name: str) -> str:
    """The name of Chancy's table ``name`` under the configured prefix
    (``db_table("jobs")`` is ``"chancy_jobs"`` by default)."""
    return f"{get_prefix()}{name}"
