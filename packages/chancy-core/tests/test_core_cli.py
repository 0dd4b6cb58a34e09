"""Tests of the ``chancy`` command line (``chancy.cli``).

Every test that touches the database gets its own database on the server
chosen by ``chancy.testing``'s ``chancy_server_dsn`` fixture (``chancy_dsn``
is shared by the whole session, and these tests need both unmigrated and
migrated databases). ``--app`` points at a module written to ``tmp_path``,
made importable with ``monkeypatch.syspath_prepend``; it builds
``Chancy(DSN)`` from the ``CHANCY_CLI_TEST_DSN`` environment variable.

The plugin-command tests register a fake plugin module by monkeypatching
``chancy._plugins._entry_point_cache`` (what entry-point discovery returns),
so the CLI's own ``PluginManager().discover()`` finds it exactly as it would
find an installed distribution.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import psycopg
import pytest
from click.testing import CliRunner, Result

from chancy import Chancy, _plugins, hookimpl
from chancy import cli as cli_module
from chancy.cli import cli, get_app, main
from chancy.plugin import Plugin

APP_SOURCE = """
import logging
import os

from chancy import Chancy, job


@job(queue="emails", max_attempts=3, priority=4, meta={"from": "decorator"})
def send_welcome(*, user_id):
    pass


def make_app():
    return Chancy(
        os.environ["CHANCY_CLI_TEST_DSN"],
        no_default_plugins=True,
        log=logging.getLogger("chancy_cli_test"),
    )


chancy = make_app()
not_an_app = 42


def bad_factory():
    return "not an app"


def broken_factory():
    raise RuntimeError("boom")
"""


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture
def cli_dsn(chancy_server_dsn: str) -> Iterator[str]:
    """A database of its own for one test."""
    from chancy._pgserver import create_database, drop_database

    name = f"chancy_cli_{os.getpid()}_{secrets.token_hex(4)}"
    dsn = create_database(chancy_server_dsn, name)
    try:
        yield dsn
    finally:
        drop_database(chancy_server_dsn, name)


@pytest.fixture
def no_app_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHANCY_APP", raising=False)
    monkeypatch.delenv("CHANCY_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("CHANCY_DISABLE_PLUGIN_AUTOLOAD", raising=False)


@pytest.fixture
def app_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_dsn: str, no_app_env: None
) -> Iterator[str]:
    """Name of an importable module holding ``chancy`` and ``make_app``."""
    name = f"chancy_cli_app_{secrets.token_hex(4)}"
    (tmp_path / f"{name}.py").write_text(APP_SOURCE)
    monkeypatch.setenv("CHANCY_CLI_TEST_DSN", cli_dsn)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield name
    finally:
        sys.modules.pop(name, None)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str, input: str | None = None) -> Result:
    return runner.invoke(cli, list(args), input=input, catch_exceptions=False)


def query(dsn: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def migrated(runner: CliRunner, app: str) -> None:
    result = invoke(runner, "-a", app, "migrate")
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------
# Help and --app
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["queue", "--help"],
        ["queue", "declare", "--help"],
        ["queue", "push", "--help"],
        ["job", "push", "--help"],
        ["job", "get", "--help"],
        ["worker", "start", "--help"],
        ["misc", "--help"],
        ["misc", "shell", "--help"],
        ["misc", "migrate", "--help"],
        ["migrate", "--help"],
        ["check-migrations", "--help"],
        ["plugins", "--help"],
    ],
)
def test_help_works_without_app(
    runner: CliRunner, no_app_env: None, args: list[str]
) -> None:
    result = invoke(runner, *args)
    # A group invoked without a subcommand prints its help; click >= 8.2
    # exits with status 2 for that, --help with 0.
    assert result.exit_code == (0 if args else 2) or result.exit_code == 0
    assert "Usage: " in result.output


def test_root_help_lists_every_command(runner: CliRunner, no_app_env: None) -> None:
    result = invoke(runner, "--help")
    for name in (
        "migrate",
        "check-migrations",
        "misc",
        "queue",
        "job",
        "worker",
        "plugins",
    ):
        assert f"  {name}" in result.output
    assert "--app" in result.output


def test_command_needing_app_without_app_is_usage_error(
    runner: CliRunner, no_app_env: None
) -> None:
    result = invoke(runner, "queue", "list")
    assert result.exit_code == 2
    assert "--app" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "chancy_cli_no_such_module:chancy",
            "no module named 'chancy_cli_no_such_module'",
        ),
        (
            "chancy_cli_no_such_module.chancy",
            "no module named 'chancy_cli_no_such_module'",
        ),
        ("{mod}:nope", "has no attribute 'nope'"),
        ("{mod}.nope", "has no attribute 'nope'"),
        ("{mod}:not_an_app", "not a Chancy app"),
        ("{mod}:bad_factory", "the factory returned a str, not a Chancy app"),
        ("{mod}:broken_factory", "RuntimeError: boom"),
        ("justaname", "expected 'module:attribute' or 'module.attribute'"),
        ("{mod}:", "expected 'module:attribute'"),
    ],
)
def test_bad_app_is_usage_error(
    runner: CliRunner, app_module: str, path: str, message: str
) -> None:
    result = invoke(runner, "--app", path.format(mod=app_module), "queue", "list")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "form", ["{mod}:chancy", "{mod}.chancy", "{mod}:make_app", "env"]
)
def test_app_import_forms(
    runner: CliRunner, app_module: str, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    if form == "env":
        monkeypatch.setenv("CHANCY_APP", f"{app_module}:chancy")
        args: list[str] = []
    else:
        args = ["-a", form.format(mod=app_module)]
    result = invoke(runner, *args, "check-migrations")
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("Chancy Core\n")


def test_get_app_from_the_click_context(runner: CliRunner, app_module: str) -> None:
    @click.command()
    @click.pass_context
    def show(ctx: click.Context) -> None:
        click.echo(f"prefix={get_app(ctx).prefix}")

    cli.add_command(show, "zz-show-app")
    try:
        result = invoke(runner, "-a", f"{app_module}:chancy", "zz-show-app")
    finally:
        cli.commands.pop("zz-show-app")
    assert result.exit_code == 0, result.output
    assert result.stdout == "prefix=chancy_\n"


# ---------------------------------------------------------------------------
# Migrations
# ---------------------------------------------------------------------------


def test_migrate_and_check_migrations(
    runner: CliRunner, app_module: str, cli_dsn: str
) -> None:
    app = f"{app_module}:chancy"

    before = invoke(runner, "-a", app, "check-migrations")
    assert before.exit_code == 1
    assert before.stdout.splitlines()[0] == "Chancy Core"
    assert "  ✗ v1 " in before.stdout
    assert "✓" not in before.stdout
    assert "pending" in before.stderr
    assert f"chancy --app {app} migrate" in before.stderr
    # Checking creates nothing.
    assert query(cli_dsn, "SELECT to_regclass('chancy_schema_version')") == [(None,)]

    result = invoke(runner, "-a", app, "migrate")
    assert result.exit_code == 0, result.output
    latest = Chancy(cli_dsn, no_default_plugins=True).core_migrator().latest_version
    assert f"Chancy Core: migrated from version 0 to {latest}" in result.stdout

    after = invoke(runner, "-a", app, "check-migrations")
    assert after.exit_code == 0, after.output
    assert "  ✓ v1 " in after.stdout
    assert f"  ✓ v{latest} " in after.stdout
    assert "✗" not in after.stdout

    # The original's spelling, with the same options.
    again = invoke(runner, "-a", app, "misc", "check-migrations")
    assert again.exit_code == 0
    assert again.stdout == after.stdout
    same = invoke(runner, "-a", app, "misc", "migrate")
    assert same.exit_code == 0
    assert f"Chancy Core: already at version {latest}" in same.stdout

    down = invoke(runner, "-a", app, "misc", "migrate", "--to-version", "0")
    assert down.exit_code == 0, down.output
    assert f"from version {latest} to 0" in down.stdout
    assert invoke(runner, "-a", app, "check-migrations").exit_code == 1

    up = invoke(runner, "-a", app, "migrate", "-p", "CORE", "-t", str(latest))
    assert up.exit_code == 0, up.output
    assert invoke(runner, "-a", app, "check-migrations").exit_code == 0


def test_migrate_errors(runner: CliRunner, app_module: str) -> None:
    app = f"{app_module}:chancy"
    unknown = invoke(runner, "-a", app, "migrate", "--plugin", "nosuchplugin")
    assert unknown.exit_code == 2
    assert "matches no enabled plugin" in unknown.stderr
    assert "Chancy Core" in unknown.stderr

    too_far = invoke(runner, "-a", app, "migrate", "-p", "core", "-t", "999")
    assert too_far.exit_code == 1
    assert "cannot migrate 'chancy' to version 999" in too_far.stderr
    assert "Traceback" not in too_far.output

    negative = invoke(runner, "-a", app, "migrate", "-t", "-1")
    assert negative.exit_code == 2


def test_commands_on_an_unmigrated_database_say_so(
    runner: CliRunner, app_module: str
) -> None:
    result = invoke(runner, "-a", f"{app_module}:chancy", "queue", "list")
    assert result.exit_code == 1
    assert "migrate" in result.stderr
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------
# Queues
# ---------------------------------------------------------------------------


def test_queue_commands(runner: CliRunner, app_module: str, cli_dsn: str) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)

    assert invoke(runner, "-a", app, "queue", "list").stdout == "No queues declared.\n"

    declared = invoke(
        runner, "-a", app, "queue", "declare", "emails",
        "-c", "3", "-e", "async", "-t", "web", "-t", "mail", "-r", "10", "-w", "60",
        "-p", "2",
    )  # fmt: skip
    assert declared.exit_code == 0, declared.output
    assert "Declared queue 'emails'" in declared.stdout

    listed = invoke(runner, "-a", app, "queue", "list")
    assert listed.exit_code == 0
    header, _rule, row = listed.stdout.splitlines()
    assert header.split() == [
        "NAME", "STATE", "CONCURRENCY", "EXECUTOR", "TAGS", "POLLING", "RATE", "LIMIT",
            "CLUSTER", "LIMITS",
    ]  # fmt: skip
    assert row.split() == [
        "emails",
        "active",
        "3",
        "async",
        "mail,web",
        "2s",
        "10/60s",
        "-",
    ]

    # Without --upsert an existing queue is left alone (like the original).
    kept = invoke(
        runner, "-a", app, "queue", "declare", "emails", "-c", "7", "-e", "async"
    )
    assert kept.exit_code == 0
    assert "left unchanged" in kept.stderr
    rows = query(
        cli_dsn, "SELECT concurrency, executor FROM chancy_queues WHERE name = 'emails'"
    )
    assert rows == [(3, "chancy.executors.asyncex.AsyncExecutor")]

    upserted = invoke(
        runner, "-a", app, "queue", "declare", "emails", "-c", "7",
        "-e", "chancy.executors.asyncex.AsyncExecutor", "--upsert",
    )  # fmt: skip
    assert upserted.exit_code == 0, upserted.output
    data = json.loads(invoke(runner, "-a", app, "queue", "list", "--json").stdout)
    assert [(q["name"], q["concurrency"], q["tags"]) for q in data] == [
        ("emails", 7, [".*"])
    ]

    paused = invoke(
        runner, "-a", app, "queue", "pause", "emails", "--resume-in", "3600"
    )
    assert paused.exit_code == 0, paused.output
    assert "Paused queue 'emails' until " in paused.stdout
    assert "paused until" in invoke(runner, "-a", app, "queue", "list").stdout

    resumed = invoke(runner, "-a", app, "queue", "resume", "emails")
    assert resumed.exit_code == 0
    assert query(cli_dsn, "SELECT state, resume_at FROM chancy_queues") == [
        ("active", None)
    ]

    at = invoke(
        runner,
        "-a",
        app,
        "queue",
        "pause",
        "emails",
        "--resume-at",
        "2099-01-02T03:04:05",
    )
    assert at.exit_code == 0, at.output
    assert "2099-01-02T03:04:05+00:00" in at.stdout

    # Declining the confirmation keeps the queue.
    declined = invoke(runner, "-a", app, "queue", "delete", "emails", input="n\n")
    assert declined.exit_code == 1
    assert query(cli_dsn, "SELECT count(*) FROM chancy_queues") == [(1,)]

    pushed = invoke(runner, "-a", app, "job", "push", "m.f", "-q", "emails")
    kept_job = invoke(runner, "-a", app, "job", "push", "m.f", "-q", "other")
    deleted = invoke(runner, "-a", app, "queue", "delete", "emails", input="y\n")
    assert deleted.exit_code == 0, deleted.output
    assert "Deleted queue 'emails'" in deleted.stdout
    assert query(cli_dsn, "SELECT count(*) FROM chancy_queues") == [(0,)]
    assert query(cli_dsn, "SELECT id::text FROM chancy_jobs") == [
        (kept_job.stdout.strip(),)
    ]
    assert pushed.stdout.strip() != kept_job.stdout.strip()

    invoke(runner, "-a", app, "queue", "declare", "other", "-e", "async")
    keep = invoke(runner, "-a", app, "queue", "delete", "other", "-y", "--keep-jobs")
    assert keep.exit_code == 0
    assert query(cli_dsn, "SELECT count(*) FROM chancy_jobs") == [(1,)]


@pytest.mark.parametrize("command", ["pause", "resume", "delete"])
def test_unknown_queue_is_an_error(
    runner: CliRunner, app_module: str, command: str
) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)
    extra = ["-y"] if command == "delete" else []
    result = invoke(runner, "-a", app, "queue", command, "nosuchqueue", *extra)
    assert result.exit_code == 1
    assert result.stderr == "Error: no queue named 'nosuchqueue'\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-r", "5"], "--rate-limit and --rate-limit-window must be given together"),
        (["-e", "bogus"], "neither one of"),
        (["-c", "0"], "x>=1"),
        (["-p", "0"], "x>0"),
        (["--global-concurrency", "0"], "global_concurrency must be an integer from 1"),
        (["--key-concurrency", "-1"], "key_concurrency must be an integer from 1"),
        (["--key-rate-limit", "5"], "must be set together"),
        (["--key-rate-limit-window", "60"], "must be set together"),
    ],
)
def test_queue_declare_rejects_bad_options(
    runner: CliRunner, no_app_env: None, args: list[str], message: str
) -> None:
    # Checked before the app is needed.
    result = invoke(runner, "queue", "declare", "q", *args)
    assert result.exit_code == 2
    assert message in result.stderr


STUB_PROCESS_EXECUTOR = """
import importlib.util
import sys
import types

if importlib.util.find_spec("chancy.executors.process") is None:
    # Not written yet in this checkout: the default queue's executor path
    # only has to import (these tests run no job).
    from chancy.executors.asyncex import AsyncExecutor

    class ProcessExecutor(AsyncExecutor):
        pass

    _stub = types.ModuleType("chancy.executors.process")
    _stub.ProcessExecutor = ProcessExecutor
    ProcessExecutor.__module__ = _stub.__name__
    sys.modules[_stub.__name__] = _stub
"""


@pytest.fixture
def process_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the default executor path importable (stubbed when missing)."""
    if importlib.util.find_spec("chancy.executors.process") is not None:
        return
    from chancy.executors.asyncex import AsyncExecutor

    class ProcessExecutor(AsyncExecutor):
        pass

    stub = types.ModuleType("chancy.executors.process")
    stub.ProcessExecutor = ProcessExecutor  # type: ignore[attr-defined]
    ProcessExecutor.__module__ = stub.__name__
    monkeypatch.setitem(sys.modules, stub.__name__, stub)


def test_queue_declare_cluster_limits(
    runner: CliRunner, app_module: str, cli_dsn: str
) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)
    result = invoke(
        runner, "-a", app, "queue", "declare", "api", "-e", "async",
        "--global-concurrency", "3", "--key-concurrency", "1",
        "--key-rate-limit", "10", "--key-rate-limit-window", "60",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "global 3, per key 1, per key 10/60s" in result.output
    assert query(
        cli_dsn,
        "SELECT global_concurrency, key_concurrency, key_rate_limit,"
        " key_rate_limit_window FROM chancy_queues WHERE name = 'api'",
    ) == [(3, 1, 10, 60)]
    listed = invoke(runner, "-a", app, "queue", "list")
    assert "global 3, per key 1, per key 10/60s" in listed.output


def test_queue_declare_defaults(
    runner: CliRunner, app_module: str, cli_dsn: str, process_executor: None
) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)
    result = invoke(runner, "-a", app, "queue", "declare", "plain")
    assert result.exit_code == 0, result.output
    assert query(
        cli_dsn,
        "SELECT concurrency, executor, tags, polling_interval FROM chancy_queues",
    ) == [(1, "chancy.executors.process.ProcessExecutor", [".*"], 5)]


# ---------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------


def test_job_push_get_cancel(runner: CliRunner, app_module: str, cli_dsn: str) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)

    pushed = invoke(
        runner, "-a", app, "job", "push", "myapp.tasks.send",
        "-q", "emails", "-p", "5", "-m", "3", "-u", "send-1",
        "-k", '{"to": "ann", "n": 2}', "--scheduled-at", "2099-01-01T00:00:00Z",
    )  # fmt: skip
    assert pushed.exit_code == 0, pushed.output
    job_id = pushed.stdout.strip()
    uuid.UUID(job_id)

    got = invoke(runner, "-a", app, "job", "get", job_id)
    assert got.exit_code == 0, got.output
    data = json.loads(got.stdout)
    assert data["id"] == job_id
    assert data["func"] == "myapp.tasks.send"
    assert data["queue"] == "emails"
    assert data["state"] == "pending"
    assert data["kwargs"] == {"to": "ann", "n": 2}
    assert (data["priority"], data["max_attempts"], data["attempts"]) == (5, 3, 0)
    assert data["unique_key"] == "send-1"
    assert data["scheduled_at"].startswith("2099-01-01T00:00:00")
    assert data["errors"] == []

    # The same unique key returns the same job.
    again = invoke(runner, "-a", app, "job", "push", "myapp.tasks.send", "-u", "send-1")
    assert again.stdout.strip() == job_id

    cancelled = invoke(runner, "-a", app, "job", "cancel", job_id)
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.stdout == f"Cancelled job {job_id}\n"
    data = json.loads(invoke(runner, "-a", app, "job", "get", job_id).stdout)
    assert data["state"] == "failed"
    assert data["errors"][0]["cancelled"] is True

    twice = invoke(runner, "-a", app, "job", "cancel", job_id)
    assert twice.exit_code == 0
    assert "already finished (failed)" in twice.stdout

    # `queue push` is the original's spelling of `job push`.
    alias = invoke(runner, "-a", app, "queue", "push", "myapp.tasks.other")
    assert alias.exit_code == 0, alias.output
    assert query(
        cli_dsn, "SELECT queue, priority, max_attempts FROM chancy_jobs WHERE id = %s",
        alias.stdout.strip(),
    ) == [("default", 0, 1)]  # fmt: skip


def test_job_push_applies_the_decorators_settings_and_flags_override_them(
    runner: CliRunner, app_module: str, cli_dsn: str
) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)
    func = f"{app_module}.send_welcome"
    plain = invoke(runner, "-a", app, "job", "push", func, "-k", '{"user_id": 7}')
    assert plain.exit_code == 0, plain.output
    assert "note:" not in plain.stderr
    overridden = invoke(
        runner, "-a", app, "job", "push", func, "-k", '{"user_id": 8}',
        "-q", "other", "-m", "1",
    )  # fmt: skip
    assert overridden.exit_code == 0, overridden.output
    rows = query(
        cli_dsn,
        "SELECT id::text, func, queue, priority, max_attempts, kwargs, meta"
        " FROM chancy_jobs ORDER BY id",
    )
    assert [r[1:] for r in rows] == [
        (func, "emails", 4, 3, {"user_id": 7}, {"from": "decorator"}),
        (func, "other", 4, 1, {"user_id": 8}, {"from": "decorator"}),
    ]
    assert [r[0] for r in rows] == [
        plain.stdout.strip(),
        overridden.stdout.strip(),
    ]


def test_job_push_of_a_function_it_cannot_import_says_so(
    runner: CliRunner, app_module: str, cli_dsn: str
) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)
    result = invoke(runner, "-a", app, "job", "push", "elsewhere.tasks.send")
    assert result.exit_code == 0, result.output
    assert "cannot import 'elsewhere.tasks.send' here" in result.stderr
    assert query(cli_dsn, "SELECT queue, max_attempts FROM chancy_jobs") == [
        ("default", 1)
    ]


def test_queue_list_shows_queues_nobody_declared(
    runner: CliRunner, app_module: str, cli_dsn: str
) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)
    invoke(runner, "-a", app, "queue", "declare", "emails")
    for _ in range(2):
        invoke(runner, "-a", app, "job", "push", "m.f", "-q", "typo")
    listed = invoke(runner, "-a", app, "queue", "list")
    assert listed.exit_code == 0, listed.output
    assert "emails" in listed.stdout
    assert "queues nobody declared" in listed.stderr
    assert (
        "typo: 2 job(s); declare it with `chancy queue declare typo`" in listed.stderr
    )
    data = json.loads(invoke(runner, "-a", app, "queue", "list", "--json").stdout)
    assert {"name": "typo", "declared": False, "waiting": 2} in data


@pytest.mark.parametrize("command", ["get", "cancel"])
def test_unknown_job(runner: CliRunner, app_module: str, command: str) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)
    missing = str(uuid.uuid4())
    result = invoke(runner, "-a", app, "job", command, missing)
    assert result.exit_code == 1
    assert result.stderr == f"Error: no job with id {missing}\n"

    bad = invoke(runner, "-a", app, "job", command, "not-a-uuid")
    assert bad.exit_code == 2
    assert "is not a job id" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-k", "{not json"], "not valid JSON"),
        (["-k", "[1, 2]"], "must be a JSON object"),
        (["--scheduled-at", "tomorrow"], "not an ISO 8601 date"),
        (["-m", "0"], "x>=1"),
    ],
)
def test_job_push_rejects_bad_options(
    runner: CliRunner, app_module: str, cli_dsn: str, args: list[str], message: str
) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)
    result = invoke(runner, "-a", app, "job", "push", "myapp.tasks.send", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert query(cli_dsn, "SELECT count(*) FROM chancy_jobs") == [(0,)]


def test_job_push_rejects_a_func_without_module(
    runner: CliRunner, app_module: str
) -> None:
    result = invoke(runner, "-a", f"{app_module}:chancy", "job", "push", "nodots")
    assert result.exit_code == 2
    assert "not an import path" in result.stderr


# ---------------------------------------------------------------------------
# Workers
# ---------------------------------------------------------------------------


def test_worker_start_on_unmigrated_database_exits_1(
    runner: CliRunner, app_module: str
) -> None:
    app = f"{app_module}:chancy"
    result = invoke(runner, "-a", app, "worker", "start", "-w", "w1")
    assert result.exit_code == 1
    assert f"chancy --app {app} migrate" in result.stderr
    assert f"chancy --app {app} check-migrations" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_worker_start_runs_until_sigterm(
    runner: CliRunner, app_module: str, cli_dsn: str, tmp_path: Path, loop: str
) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)
    src = Path(__file__).resolve().parents[1] / "src"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(src), str(tmp_path), os.environ.get("PYTHONPATH", "")]
        ),
    }
    script = STUB_PROCESS_EXECUTOR + (
        # The app logs to its own logger: show its INFO lines.
        "\nimport logging\nlogging.basicConfig(level=logging.INFO)"
        "\nfrom chancy.cli import main\nmain()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script,
         "-a", app, "worker", "start", "-w", "cli-worker", "-t", "cli", "--shutdown-timeout", "5",
         "--loop", loop],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            rows = query(
                cli_dsn,
                "SELECT tags FROM chancy_workers WHERE worker_id = 'cli-worker'",
            )
            if rows:
                assert "cli" in list(rows[0][0])  # type: ignore[call-overload]
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert f"event loop: {loop}" in output
    assert query(cli_dsn, "SELECT count(*) FROM chancy_workers") == [(0,)]


def test_worker_loop_choice() -> None:
    import asyncio

    import click
    import uvloop

    from chancy.cli._run import loop_factory

    assert loop_factory("asyncio") is asyncio.new_event_loop
    assert loop_factory("uvloop") is uvloop.new_event_loop
    assert loop_factory("auto") is uvloop.new_event_loop  # installed here
    with pytest.raises(click.UsageError, match="unknown event loop"):
        loop_factory("trio")


def test_worker_loop_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import click

    from chancy.cli._run import loop_factory

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import fails
    assert loop_factory("auto") is asyncio.new_event_loop
    with pytest.raises(click.UsageError, match=r"chancy-core\[uvloop\]"):
        loop_factory("uvloop")


# ---------------------------------------------------------------------------
# Plugins
# ---------------------------------------------------------------------------


class CliTestPlugin(Plugin):
    @staticmethod
    def get_identifier() -> str:
        return "clitest.plugin"


def _fake_plugin_module() -> types.ModuleType:
    module = types.ModuleType("chancy_cli_fake_plugin_hooks")

    @click.group("hello")
    def hello() -> None:
        """Commands of the fake plugin."""

    @hello.command("greet")
    @click.pass_context
    def greet(ctx: click.Context) -> None:
        app = get_app(ctx)
        click.echo(f"hello from {app.prefix} with {sorted(app.plugins)}")

    @click.command("queue")
    def clashing() -> None:
        """Clashes with the built-in group."""

    def chancy_cli_commands() -> list[click.Command]:
        return [hello, clashing]

    def chancy_register_plugins() -> type[Plugin]:
        return CliTestPlugin

    module.chancy_cli_commands = hookimpl(chancy_cli_commands)  # type: ignore[attr-defined]
    module.chancy_register_plugins = hookimpl(chancy_register_plugins)  # type: ignore[attr-defined]
    return module


@pytest.fixture
def fake_plugin(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A plugin 'distribution' found by entry-point discovery (see module docs)."""
    module = _fake_plugin_module()
    monkeypatch.setattr(
        _plugins, "_entry_point_cache", [("clitest", "chancy-clitest", "9.9.9", module)]
    )
    return module


def test_plugin_command_appears_and_gets_the_app(
    runner: CliRunner, app_module: str, fake_plugin: types.ModuleType
) -> None:
    helped = invoke(runner, "--help")
    assert helped.exit_code == 0
    assert "  hello " in helped.output
    assert "clashes with an existing command" in helped.stderr

    sub = invoke(runner, "hello", "--help")
    assert sub.exit_code == 0
    assert "greet" in sub.stdout

    without = invoke(runner, "hello", "greet")
    assert without.exit_code == 2
    assert "--app" in without.stderr

    result = invoke(runner, "-a", f"{app_module}:chancy", "hello", "greet")
    assert result.exit_code == 0, result.output
    assert result.stdout == "hello from chancy_ with []\n"

    # The built-in group wins over the clashing plugin command.
    assert "Declare, inspect" in invoke(runner, "queue", "--help").stdout


def _extending_plugin_module() -> types.ModuleType:
    module = types.ModuleType("chancy_cli_extending_plugin_hooks")

    @click.group("worker")
    def worker() -> None:
        """Extends the built-in group."""

    @worker.command("extra")
    @click.pass_context
    def extra(ctx: click.Context) -> None:
        """A plugin's subcommand of a built-in group."""
        click.echo(f"extra with {get_app(ctx).prefix}")

    @worker.command("start")
    def start() -> None:
        """Clashes with the built-in ``worker start``."""
        click.echo("the plugin's start")

    def chancy_cli_commands() -> list[click.Command]:
        return [worker]

    module.chancy_cli_commands = hookimpl(chancy_cli_commands)  # type: ignore[attr-defined]
    return module


def test_plugin_group_extends_a_builtin_group(
    runner: CliRunner, app_module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        _plugins,
        "_entry_point_cache",
        [("clitest", "chancy-clitest", "9.9.9", _extending_plugin_module())],
    )
    helped = invoke(runner, "worker", "--help")
    assert helped.exit_code == 0, helped.output
    assert "  extra " in helped.stdout and "  start " in helped.stdout
    assert "'worker start' clashes" in helped.stderr

    result = invoke(runner, "-a", f"{app_module}:chancy", "worker", "extra")
    assert result.exit_code == 0, result.output
    assert result.stdout == "extra with chancy_\n"

    # The built-in subcommand wins; the root lists no second "worker".
    assert "Exits with status 1" in invoke(runner, "worker", "start", "--help").stdout
    root = invoke(runner, "--help").stdout
    assert root.count("  worker ") == 1
    # A built-in subcommand does not load the plugins at all.
    loads = []
    monkeypatch.setattr(
        "chancy.cli._root._load_plugin_commands",
        lambda builtins: loads.append(builtins) or cli_module._PluginCommands(),
    )
    assert invoke(runner, "worker", "start", "--help").exit_code == 0
    assert loads == []


def test_plugins_lists_installed_distributions(
    runner: CliRunner, app_module: str, fake_plugin: types.ModuleType
) -> None:
    result = invoke(runner, "plugins")
    assert result.exit_code == 0, result.output
    assert "chancy-clitest 9.9.9 (entry point 'clitest')" in result.stdout
    assert "CliTestPlugin  clitest.plugin" in result.stdout
    assert "enabled by the app" not in result.stdout

    with_app = invoke(runner, "-a", f"{app_module}:chancy", "plugins")
    assert with_app.exit_code == 0, with_app.output
    assert f"Plugins enabled by the app {app_module}:chancy:" in with_app.stdout
    assert "  (none)" in with_app.stdout


def test_plugins_lists_real_entry_points(runner: CliRunner, no_app_env: None) -> None:
    result = invoke(runner, "plugins")
    assert result.exit_code == 0, result.output
    entry_points = list(importlib.metadata.entry_points(group="chancy"))
    if not entry_points:
        assert result.stdout.startswith("No plugin distributions installed.")
    for ep in entry_points:
        assert ep.dist is not None
        assert (
            f"{ep.dist.name} {ep.dist.version} (entry point {ep.name!r})"
            in result.stdout
        )


# ---------------------------------------------------------------------------
# Shell and entry point
# ---------------------------------------------------------------------------


def test_misc_shell(runner: CliRunner, app_module: str) -> None:
    app = f"{app_module}:chancy"
    migrated(runner, app)
    invoke(runner, "-a", app, "queue", "declare", "sq", "-e", "async")
    script = (
        "print('QUEUES', [q.name for q in run(chancy.get_all_queues())])\n"
        "print('NAMES', {'Worker', 'Job', 'QueuedJob', 'Limit', 'Reference',"
        " 'Queue', 'asyncio'} <= set(dir()))\n"
        "print('SYNC', chancy.sync_push(Job(func='m.f')) is not None)\n"
    )
    result = invoke(runner, "-a", app, "misc", "shell", input=script)
    assert result.exit_code == 0, result.output
    assert "QUEUES ['sq']" in result.stdout
    assert "NAMES True" in result.stdout
    assert "SYNC True" in result.stdout
    assert "Chancy" in result.stderr  # the banner


def test_main_is_the_console_script(
    capsys: pytest.CaptureFixture[str], no_app_env: None
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("chancy, version ")
