"""Django set-up shared by Chancy's own test suites (not part of the public API).

The tests of ``chancy.contrib.django`` and of the cron and workflow Django
apps run in one process, and Django can be configured only once per process,
so they all go through :func:`configure`: settings for the database of the
``chancy_dsn`` fixture, with every Chancy app that is installed. Importing
this module does not import Django.

The fixtures built on it (``django_settings``, ``django_orm``,
``django_tables``, ``django_superuser``) are in :mod:`chancy.testing`.

It is also the test URLconf (``ROOT_URLCONF``): ``urlpatterns`` serves the
admin site under ``/admin/``.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any

__all__ = [
    "CHANCY_APPS",
    "close_connections",
    "configure",
    "database_settings",
    "migrated_django_tables",
]

#: Every Django app of Chancy, in ``INSTALLED_APPS`` when importable.
CHANCY_APPS = (
    "chancy.contrib.django",
    "chancy.plugins.cron.django",
    "chancy.plugins.workflow.django",
)

_DJANGO_APPS = (
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
)


def database_settings(dsn: str) -> dict[str, Any]:
    """A Django ``DATABASES`` entry for a libpq DSN (the other way round from
    ``Chancy(settings.DATABASES["default"])``)."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": str(params.pop("dbname", "")),
        "USER": str(params.pop("user", "")),
        "PASSWORD": str(params.pop("password", "")),
        "HOST": str(params.pop("host", "")),
        "PORT": str(params.pop("port", "")),
        "OPTIONS": {key: str(value) for key, value in params.items()},
    }


def _installed(app: str) -> bool:
    try:
        return importlib.util.find_spec(app) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def configure(dsn: str) -> None:
    """Configure Django for the database ``dsn`` (once per process) and set it up.

    :raises RuntimeError: Django was already configured for another database.
    """
    import django
    from django.conf import settings

    database = database_settings(dsn)
    if settings.configured:
        current = settings.DATABASES["default"]
        if current.get("NAME") != database["NAME"]:
            raise RuntimeError(
                f"Django is already configured for the database {current.get('NAME')!r},"
                f" not the test database {database['NAME']!r}"
            )
    else:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="chancy-tests-only-not-a-secret",
            ALLOWED_HOSTS=["testserver"],
            USE_TZ=True,
            TIME_ZONE="UTC",
            DATABASES={"default": database},
            INSTALLED_APPS=[
                *_DJANGO_APPS,
                *(app for app in CHANCY_APPS if _installed(app)),
            ],
            MIDDLEWARE=[
                "django.contrib.sessions.middleware.SessionMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware",
            ],
            ROOT_URLCONF=__name__,
            SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
            MESSAGE_STORAGE="django.contrib.messages.storage.cookie.CookieStorage",
            # Fast hashing: the tests create and check a few passwords.
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            TEMPLATES=[
                {
                    "BACKEND": "django.template.backends.django.DjangoTemplates",
                    "APP_DIRS": True,
                    "OPTIONS": {
                        "context_processors": [
                            "django.template.context_processors.request",
                            "django.contrib.auth.context_processors.auth",
                            "django.contrib.messages.context_processors.messages",
                        ]
                    },
                }
            ],
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
            # Leave the process's logging (and warnings) alone: other tests
            # run in the same process.
            LOGGING_CONFIG=None,
            CHANCY_PREFIX="chancy_",
        )
    django.setup()


def close_connections() -> None:
    """Close this thread's Django database connections."""
    from django.db import connections

    connections.close_all()


@contextlib.contextmanager
def migrated_django_tables() -> Iterator[None]:
    """Create the tables of Django's own apps (auth, admin, ...) with
    ``migrate``, and drop every table it created on exit.

    Call it from synchronous code (a fixture), never inside an event loop.
    """
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command
    from django.db import connection

    before = set(connection.introspection.table_names())
    try:
        call_command("migrate", verbosity=0, interactive=False)
        yield
    finally:
        # Only the tables of Django's (managed) models that were not there before.
        managed = set(connection.introspection.django_table_names())
        managed.add("django_migrations")
        created = (set(connection.introspection.table_names()) - before) & managed
        with connection.cursor() as cursor:
            for table in sorted(created):
                cursor.execute(
                    f"DROP TABLE IF EXISTS {connection.ops.quote_name(table)} CASCADE"
                )
        ContentType.objects.clear_cache()
        close_connections()


def __getattr__(name: str) -> Any:
    # ``urlpatterns`` is built on first use (by then Django is set up).
    if name == "urlpatterns":
        from django.contrib import admin
        from django.urls import path

        return [path("admin/", admin.site.urls)]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
