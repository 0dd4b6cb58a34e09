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
       - ``throwaway``: always a throwaway cluster.

    A throwaway cluster is created with ``initdb`` in a temporary directory
    from the machine's PostgreSQL binaries (``CHANCY_PG_BINDIR``,
    ``pg_config --bindir``, ``/usr/lib/postgresql/<version>/bin`` newest first,
    ``/usr/pgsql-<version>/bin``, Homebrew, or ``initdb`` on ``PATH``), runs with
    durability turned off for speed, listens on a Unix socket in that directory
    and on ``127.0.0.1`` at a free port, and is removed when the test process
    exits. When the tests run as root it runs as the ``postgres`` system user,
    since PostgreSQL refuses to run as root. At most one cluster is started per
    process (so one per ``pytest-xdist`` worker).

``chancy_dsn`` (session)
    DSN of a database created for this test session on that server, named
    ``chancy_test_<pid>_<random>``, and dropped (``WITH (FORCE)``) when the
    session ends. Tests of one session share it; the ``chancy`` fixture leaves
    it empty after each test by migrating down to version 0.

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

``django_settings`` (session), ``django_orm``, ``django_tables`` (module),
``django_superuser`` (module)
    For tests of Chancy's Django apps (``chancy-core[django]``); a test that
    asks for them is skipped when Django is not installed. ``django_settings``
    configures Django on ``chancy_dsn`` (once per process, with every Chancy
    Django app installed) and returns the DSN; ``django_orm`` closes the
    test's ORM connections afterwards (for async tests); ``django_tables``
    creates the tables of Django's own apps (auth, admin, sessions) for one
    test module and drops them after it; ``django_superuser`` is the username
    of a superuser (password ``pw``) in them.

Environment variables
=====================

``CHANCY_TEST_DSN``
    Server to use (wins over everything else).
``CHANCY_TEST_SERVER``
    ``auto`` (default), ``local`` or ``throwaway``; see ``chancy_server_dsn``.
``CHANCY_PG_BINDIR``
    Directory with ``initdb`` and ``postgres`` for a throwaway cluster.
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
# Django (chancy.contrib.django; the helpers live in its _testing module)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_settings(chancy_dsn: str) -> str:
    """Django configured on the test database (once per process); its DSN."""
    pytest.importorskip("django")
    from chancy.contrib.django._testing import configure

    configure(chancy_dsn)
    return chancy_dsn


@_async_fixture
async def django_orm(django_settings: str) -> AsyncIterator[None]:
    """The ORM for an async test; its connections are closed afterwards."""
    from asgiref.sync import sync_to_async

    from chancy.contrib.django._testing import close_connections

    yield
    await sync_to_async(close_connections)()
    close_connections()


@pytest.fixture(scope="module")
def django_tables(django_settings: str) -> Iterator[None]:
    """The tables of Django's own apps for one test module, dropped after it."""
    from chancy.contrib.django._testing import migrated_django_tables

    with migrated_django_tables():
        yield


@pytest.fixture(scope="module")
def django_superuser(django_tables: None) -> str:
    """The username of a superuser (password ``pw``), for one test module."""
    from django.contrib.auth import get_user_model

    from chancy.contrib.django._testing import close_connections

    get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    close_connections()
    return "root"
