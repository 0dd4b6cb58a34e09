"""Chancy in a Django project: models, admin pages, dashboard logins and a
``django.tasks`` backend (the ``chancy-django`` distribution).

Install with ``pip install chancy-django`` (or ``"chancy-core[django]"``) and
add the app::

    INSTALLED_APPS = [
        ...,
        "django.contrib.admin",
        "chancy.contrib.django",  # app label "chancy"
    ]
    CHANCY_PREFIX = "chancy_"  # the default; must equal Chancy(prefix=...)

* :mod:`chancy.contrib.django.models`: unmanaged models ``Job``, ``Queue``
  and ``Worker`` over Chancy's tables, for queries and reports. Chancy's
  migrations own the tables; ``manage.py migrate`` does not touch them.
* :mod:`chancy.contrib.django.admin`: admin pages for the three models
  (workers are read-only; queues can be paused and resumed).
* :mod:`chancy.contrib.django.auth`: :class:`DjangoAuthBackend`, which lets
  Django superusers log in to the dashboard of ``chancy-web``
  (``pip install "chancy-django[web]"``).
* :mod:`chancy.contrib.django.backend`: :class:`ChancyBackend`, a backend for
  Django's Tasks framework (``django.tasks`` in Django >= 6.0, or its backport
  with ``pip install "chancy-django[tasks]"``) that runs tasks as Chancy jobs.
  It needs no ``INSTALLED_APPS`` entry.

Plugins ship their own apps: ``chancy.plugins.cron.django`` (label
``chancy_cron``) and ``chancy.plugins.workflow.django`` (label
``chancy_workflow``).

Point Chancy at the same database with ``Chancy(settings.DATABASES["default"])``.
The process executor calls ``django.setup()`` in each child process when
``DJANGO_SETTINGS_MODULE`` is set, so jobs can use the ORM.
"""

from __future__ import annotations
