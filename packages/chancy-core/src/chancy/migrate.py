"""Versioned, per-key schema migrations.

Core and every plugin own a *line* of migrations (core's key is ``chancy``);
the current version of each line is recorded in ``{prefix}schema_version``.
A line's migrations live in a package as modules named ``v<N>.py`` or
``v<NNNN>_<what>.py``, each holding exactly one :class:`Migration` subclass::

    class CreateSchedules(Migration):
        async def up(self, migrator, cursor):
            await cursor.execute(sql.SQL("CREATE TABLE {} (...)").format(
                migrator.table("cron")))

        async def down(self, migrator, cursor):
            await cursor.execute(sql.SQL("DROP TABLE {}").format(migrator.table("cron")))
"""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import re
from typing import Any

from psycopg import AsyncConnection, AsyncCursor, sql
from psycopg.rows import tuple_row

from chancy.errors import MigrationError

__all__ = ["Migration", "MigrationError", "Migrator"]

_MODULE_RE = re.compile(r"^v(\d+)(?:_\w+)?\.py$")


class Migration:
    """One schema change with a working ``up`` and ``down``."""

    async def up(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        raise NotImplementedError

    async def down(self, migrator: Migrator, cursor: AsyncCursor[Any]) -> None:
        raise NotImplementedError


class Migrator:
    """Applies one line of migrations.

    :param key: the line's key in the version table.
    :param migrations_package: dotted package holding the migration modules.
    :param prefix: the table prefix of the app.
    """

    def __init__(self, key: str, migrations_package: str, *, prefix: str = "") -> None:
        self.key = key
        self.migrations_package = migrations_package
        self.prefix = prefix
        self._migrations: list[Migration] | None = None

    def __repr__(self) -> str:
        return f"<Migrator {self.key!r} from {self.migrations_package!r}>"

    # -- naming helpers for migrations ----------------------------------------

    def table(self, name: str) -> sql.Identifier:
        """The quoted, prefixed identifier of table (or index) ``name``."""
        return sql.Identifier(f"{self.prefix}{name}")

    def name(self, name: str) -> str:
        return f"{self.prefix}{name}"

    # -- discovery ----------------------------------------------------------------

    def discover_all_migrations(self) -> list[Migration]:
        """Every migration of the line, ordered by version.

        :raises ValueError: a module holds no or several ``Migration`` subclasses,
            two modules claim the same version, or versions are not contiguous.
        """
        if self._migrations is not None:
            return self._migrations
        try:
            files = importlib.resources.files(self.migrations_package)
        except ModuleNotFoundError as exc:
            raise MigrationError(
                f"migrations package {self.migrations_package!r} of {self.key!r} not found"
            ) from exc
        found: dict[int, Migration] = {}
        for entry in files.iterdir():
            match = _MODULE_RE.match(entry.name)
            if not match:
                continue
            version = int(match.group(1))
            module = importlib.import_module(
                f"{self.migrations_package}.{entry.name[:-3]}"
            )
            classes = [
                obj
                for obj in vars(module).values()
                if inspect.isclass(obj)
                and issubclass(obj, Migration)
                and obj is not Migration
                and obj.__module__ == module.__name__
            ]
            if len(classes) != 1:
                raise ValueError(
                    f"migration module {module.__name__} must define exactly one "
                    f"Migration subclass, found {len(classes)}"
                )
            if version in found:
                raise ValueError(
                    f"{self.key!r} has two migrations with version {version}"
                )
            found[version] = classes[0]()
        versions = sorted(found)
        if versions != list(range(1, len(versions) + 1)):
            raise ValueError(
                f"migrations of {self.key!r} must be numbered 1..N without gaps, got {versions}"
            )
        self._migrations = [found[v] for v in versions]
        return self._migrations

    @property
    def latest_version(self) -> int:
        return len(self.discover_all_migrations())

    # -- version table ------------------------------------------------------------

    async def upsert_version_table(self, cursor: AsyncCursor[Any]) -> None:
        await cursor.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " version_of VARCHAR(255) PRIMARY KEY,"
                " version INTEGER NOT NULL)"
            ).format(self.table("schema_version"))
        )

    async def get_current_version(self, cursor: AsyncCursor[Any]) -> int:
        await cursor.execute(
            sql.SQL("SELECT version FROM {} WHERE version_of = %s").format(
                self.table("schema_version")
            ),
            (self.key,),
        )
        row = await cursor.fetchone()
        if row is None:
            return 0
        return int(row["version"] if isinstance(row, dict) else row[0])

    async def set_current_version(self, cursor: AsyncCursor[Any], version: int) -> None:
        await cursor.execute(
            sql.SQL(
                "INSERT INTO {} (version_of, version) VALUES (%s, %s)"
                " ON CONFLICT (version_of) DO UPDATE SET version = EXCLUDED.version"
            ).format(self.table("schema_version")),
            (self.key, version),
        )

    async def current_version(self, conn: AsyncConnection[Any]) -> int:
        """The version of this line recorded in the database; 0 when none is.

        Only reads: unlike :meth:`migrate` and ``is_migration_required()``,
        it creates no version table, so it can inspect a database that was
        never migrated (``chancy check-migrations`` does). Like any query, it
        runs in the connection's transaction (psycopg opens one unless the
        connection is in autocommit mode) and does not commit.

        .. versionadded:: 0.1
        """
        table = self.table("schema_version")
        async with conn.cursor(row_factory=tuple_row) as cursor:
            await cursor.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (table.as_string(conn),)
            )
            exists = await cursor.fetchone()
            if exists is None or not exists[0]:
                return 0
            return await self.get_current_version(cursor)

    async def is_migration_required(self, cursor: AsyncCursor[Any]) -> bool:
        await self.upsert_version_table(cursor)
        return await self.get_current_version(cursor) < self.latest_version

    async def is_newer_than_code(self, cursor: AsyncCursor[Any]) -> bool:
        """The database records a version this code does not know."""
        return await self.get_current_version(cursor) > self.latest_version

    # -- applying -------------------------------------------------------------------

    async def migrate(
        self, conn: AsyncConnection[Any], to_version: int | None = None
    ) -> bool:
        """Move the line to ``to_version`` (latest when ``None``) in one transaction.

        Returns ``False`` if it was already there.

        :raises MigrationError: ``to_version`` is negative or beyond the latest.
        """
        migrations = self.discover_all_migrations()
        target = len(migrations) if to_version is None else to_version
        if target < 0 or target > len(migrations):
            raise MigrationError(
                f"cannot migrate {self.key!r} to version {target}: "
                f"versions 0..{len(migrations)} exist"
            )
        async with conn.transaction(), conn.cursor() as cursor:
            await self.upsert_version_table(cursor)
            # Serialise concurrent migrators of the same prefix.
            await cursor.execute(
                sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(
                    self.table("schema_version")
                )
            )
            current = await self.get_current_version(cursor)
            if current > len(migrations):
                raise MigrationError(
                    f"the database has {self.key!r} at version {current}, newer than "
                    f"this code knows ({len(migrations)}); upgrade the package"
                )
            if current == target:
                return False
            if current < target:
                for version in range(current + 1, target + 1):
                    await migrations[version - 1].up(self, cursor)
                    await self.set_current_version(cursor, version)
            else:
                for version in range(current, target, -1):
                    await migrations[version - 1].down(self, cursor)
                    await self.set_current_version(cursor, version - 1)
        return True
