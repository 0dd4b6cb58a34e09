"""The cron schedules in Django (app label ``chancy_cron``).

Needs ``pip install "chancy-cron[django]"``; add the app next to Chancy's::

    INSTALLED_APPS = [
        ...,
        "chancy.contrib.django",
        "chancy.plugins.cron.django",
    ]

:class:`~chancy.plugins.cron.django.models.Cron` is an unmanaged model over
the ``{CHANCY_PREFIX}cron`` table, and the admin lists the schedules, lets you
change a schedule's expression or time zone (its next run is computed again)
and delete schedules. Create schedules with
:meth:`chancy.plugins.cron.Cron.schedule`.
"""

from __future__ import annotations
