"""Django for the tests of ``chancy.contrib.django``, set up lazily.

Nothing is configured when this file is imported: the fixtures below set
Django up on the ``chancy_dsn`` test database the first time a test asks for
them, so the rest of the suite runs as if Django did not exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest


@pytest.fixture(scope="session")
def django_settings(chancy_dsn: str) -> str:
    """Django configured on the test database (once per process); its DSN."""
    pytest.importorskip("django")
    from chancy.contrib.django._testing import configure

    configure(chancy_dsn)
    return chancy_dsn


@pytest.fixture
async def django_orm(django_settings: str) -> AsyncIterator[None]:
    """The ORM for an async test; its connections are closed afterwards."""
    from asgiref.sync import sync_to_async

    from chancy.contrib.django._testing import close_connections

    yield
    await sync_to_async(close_connections)()
    close_connections()


@pytest.fixture(scope="module")
def django_tables(django_settings: str) -> Iterator[None]:
    """The tables of Django's own apps (auth, admin, ...) for one test module,
    dropped after it."""
    from chancy.contrib.django._testing import django_tables

    with django_tables():
        yield
