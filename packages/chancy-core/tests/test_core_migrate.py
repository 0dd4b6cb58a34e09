"""Versioned per-key migrations."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from chancy import Chancy
from chancy.errors import MigrationError
from chancy.migrate import Migrator


async def tables(app: Chancy) -> set[str]:
    async with app.pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s",
            (app.prefix + "%",),
        )
        return {row[0] for row in await cur.fetchall()}


@pytest.mark.parametrize(
    "chancy_just_app", [{"no_default_plugins": True}], indirect=True
)
async def test_migrate_up_and_down(chancy_just_app: Chancy) -> None:
    app = chancy_just_app
    async with app:
        assert await app.is_up_to_date() is False
        await app.migrate()
        assert await app.is_up_to_date() is True
        assert {
            "chancy_jobs",
            "chancy_queues",
            "chancy_workers",
            "chancy_leader",
            "chancy_queue_rate_limits",
        } <= await tables(app)
        async with app.pool.connection() as conn:
            assert await app.core_migrator().migrate(conn) is False  # already there
            latest = app.core_migrator().latest_version
            with pytest.raises(MigrationError, match=rf"versions 0\.\.{latest} exist"):
                await app.core_migrator().migrate(conn, to_version=99)
        await app.migrate(to_version=0)
        assert await tables(app) == {"chancy_schema_version"}
        assert await app.is_up_to_date() is False


@pytest.mark.parametrize(
    "chancy_just_app", [{"no_default_plugins": True}], indirect=True
)
async def test_the_worker_registry_survives_a_crash(chancy_just_app: Chancy) -> None:
    # PostgreSQL empties UNLOGGED tables after a crash restart; the workers and
    # leader tables must survive one (core v2), or live workers look dead.
    app = chancy_just_app

    async def persistence() -> dict[str, str]:
        async with app.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT relname, relpersistence FROM pg_class WHERE relname = ANY(%s)",
                (["chancy_workers", "chancy_leader", "chancy_jobs"],),
            )
            return {name: kind for name, kind in await cursor.fetchall()}

    async with app:
        await app.migrate()
        assert await persistence() == {
            "chancy_workers": "p",
            "chancy_leader": "p",
            "chancy_jobs": "p",
        }
        async with app.pool.connection() as conn:
            await app.core_migrator().migrate(conn, to_version=1)
        assert (await persistence())["chancy_workers"] == "u"
        await app.migrate(to_version=0)


@pytest.mark.parametrize(
    "chancy_just_app", [{"no_default_plugins": True}], indirect=True
)
async def test_database_newer_than_code_is_refused(chancy_just_app: Chancy) -> None:
    app = chancy_just_app
    async with app:
        await app.migrate()
        async with app.pool.connection() as conn:
            await conn.execute(f'UPDATE "{app.prefix}schema_version" SET version = 99')
        with pytest.raises(MigrationError, match="newer than this code"):
            await app.migrate()
        latest = app.core_migrator().latest_version
        async with app.pool.connection() as conn:
            await conn.execute(
                f'UPDATE "{app.prefix}schema_version" SET version = %s', (latest,)
            )
        await app.migrate(to_version=0)


def make_package(tmp_path: Path, name: str, files: dict[str, str]) -> str:
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    for filename, body in files.items():
        (package / filename).write_text(textwrap.dedent(body))
    return name


MIGRATION = """
from chancy.migrate import Migration

class M(Migration):
    async def up(self, migrator, cursor): pass
    async def down(self, migrator, cursor): pass
"""


def test_discovery_orders_versions_and_rejects_bad_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    good = make_package(
        tmp_path,
        "mig_good",
        {"v2.py": MIGRATION, "v0001_first.py": MIGRATION, "helpers.py": ""},
    )
    migrations = Migrator("k", good).discover_all_migrations()
    assert [type(m).__module__ for m in migrations] == [
        "mig_good.v0001_first",
        "mig_good.v2",
    ]

    gap = make_package(tmp_path, "mig_gap", {"v1.py": MIGRATION, "v3.py": MIGRATION})
    with pytest.raises(ValueError, match="without gaps"):
        Migrator("k", gap).discover_all_migrations()

    two = make_package(
        tmp_path,
        "mig_two",
        {"v1.py": MIGRATION + MIGRATION.replace("class M", "class N")},
    )
    with pytest.raises(ValueError, match="exactly one"):
        Migrator("k", two).discover_all_migrations()

    with pytest.raises(MigrationError, match="not found"):
        Migrator("k", "no_such_migrations_pkg").discover_all_migrations()
    sys.modules.pop("mig_good", None)


@pytest.mark.parametrize(
    "chancy_just_app", [{"no_default_plugins": True}], indirect=True
)
async def test_v3_migrates_up_and_down_without_losing_jobs(
    chancy_just_app: Chancy,
) -> None:
    from chancy import Job, Queue

    app = chancy_just_app
    async with app:
        async with app.pool.connection() as conn:
            await app.core_migrator().migrate(conn, to_version=2)
            # What an app of the previous version wrote, with its own columns.
            await conn.execute(
                f"INSERT INTO {app.sql.jobs} (id, queue, func, kwargs, state)"
                " VALUES (gen_random_uuid(), 'old', 'm.f', '{\"a\": 1}', 'succeeded'),"
                " (gen_random_uuid(), 'old', 'm.g', '{}', 'pending')"
            )
            await conn.execute(
                f"INSERT INTO {app.sql.queues} (name, concurrency) VALUES ('old', 2)"
            )
            await app.core_migrator().migrate(conn)
        async with app.pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT func, kwargs, result, progress, concurrency_key, store_result"
                f" FROM {app.sql.jobs} ORDER BY func"
            )
            assert await cursor.fetchall() == [
                ("m.f", {"a": 1}, None, None, None, True),
                ("m.g", {}, None, None, None, True),
            ]
        assert (await app.get_queue("old")).concurrency == 2
        await app.declare(Queue("new", global_concurrency=2))
        await app.push(Job(func="m.h", queue="new", concurrency_key="k"))
        async with app.pool.connection() as conn:
            await app.core_migrator().migrate(conn, to_version=2)
            cursor = await conn.execute(
                f"SELECT func FROM {app.sql.jobs} ORDER BY func"
            )
            assert [r[0] for r in await cursor.fetchall()] == ["m.f", "m.g", "m.h"]
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_proc WHERE proname = 'chancy_fetch_limited'"
            )
            assert await cursor.fetchone() == (0,)
        await app.migrate(to_version=0)


@pytest.mark.parametrize(
    "chancy_just_app", [{"no_default_plugins": True}], indirect=True
)
async def test_current_version_reads_without_creating_anything(
    chancy_just_app: Chancy,
) -> None:
    from psycopg.rows import dict_row, tuple_row

    app = chancy_just_app
    migrator = app.core_migrator()
    async with app:
        async with app.pool.connection() as conn:
            # A database never migrated: version 0, and no table appears.
            assert await migrator.current_version(conn) == 0
        assert await tables(app) == set()

        await app.migrate(to_version=1)
        async with app.pool.connection() as conn:
            assert await migrator.current_version(conn) == 1
            other = Migrator("not-applied", "chancy.migrations", prefix=app.prefix)
            assert await other.current_version(conn) == 0
        await app.migrate()
        async with app.pool.connection() as conn:
            conn.row_factory = dict_row  # any row factory of the caller's
            assert await migrator.current_version(conn) == migrator.latest_version
            conn.row_factory = tuple_row  # type: ignore[assignment]
        await app.migrate(to_version=0)


@pytest.mark.parametrize(
    "chancy_just_app", [{"no_default_plugins": True}], indirect=True
)
async def test_v4_lists_finished_jobs_by_index_behind_a_pending_backlog(
    chancy_just_app: Chancy,
) -> None:
    """The dashboard's "succeeded, newest first" page must not walk the
    primary key past every newer pending job (issue 18's scale test: 270 ms
    at 1 M pending)."""
    app = chancy_just_app
    list_succeeded = (
        f"EXPLAIN (FORMAT JSON) SELECT * FROM {app.sql.jobs}"
        " WHERE state = 'succeeded' ORDER BY id DESC LIMIT 50"
    )

    def plan_names(plan: dict) -> set[str]:  # type: ignore[type-arg]
        names = {plan.get("Index Name", "")}
        for child in plan.get("Plans", []):
            names |= plan_names(child)
        return names

    async with app:
        async with app.pool.connection() as conn:
            await app.core_migrator().migrate(conn, to_version=3)
            # Old finished jobs, then a newer pending backlog.
            await conn.execute(
                f"INSERT INTO {app.sql.jobs} (id, queue, func, state)"
                " SELECT gen_random_uuid(), 'q', 'm.f', 'succeeded'"
                " FROM generate_series(1, 2000)"
            )
            await conn.execute(
                f"INSERT INTO {app.sql.jobs} (id, queue, func, state)"
                " SELECT gen_random_uuid(), 'q', 'm.f', 'pending'"
                " FROM generate_series(1, 20000)"
            )
            await app.core_migrator().migrate(conn)
            await conn.execute(f"ANALYZE {app.sql.jobs}")
            cursor = await conn.execute(list_succeeded)
            ((plan,),) = await cursor.fetchall()  # type: ignore[misc]
            assert "chancy_idx_jobs_succeeded" in plan_names(plan[0]["Plan"]), plan
            await app.core_migrator().migrate(conn, to_version=3)
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_indexes WHERE indexname IN"
                " ('chancy_idx_jobs_succeeded', 'chancy_idx_jobs_failed')"
            )
            assert await cursor.fetchone() == (0,)
            cursor = await conn.execute(f"SELECT count(*) FROM {app.sql.jobs}")
            assert await cursor.fetchone() == (22000,)
        await app.migrate(to_version=0)
