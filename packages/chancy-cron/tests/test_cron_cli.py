"""``chancy cron list|add|remove|next`` through the real ``chancy`` command line.

Each test gets a database of its own. ``--app`` points at a module written to
``tmp_path``. The plugin's entry point is simulated by monkeypatching
``chancy._plugins._entry_point_cache`` (what entry-point discovery returns),
so the CLI finds ``chancy cron`` exactly as it would for an installed
distribution.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from chancy import _plugins
from chancy.cli import cli
from chancy.plugins.cron import hooks

APP_SOURCE = """
import logging
import os

from chancy import Chancy
from chancy.plugins.cron import Cron
from chancy.plugins.leadership import ImmediateLeadership

chancy = Chancy(
    os.environ["CHANCY_CRON_CLI_TEST_DSN"],
    plugins=[Cron(), ImmediateLeadership()],
    no_default_plugins=True,
    log=logging.getLogger("chancy_cron_cli_test"),
)
"""


@pytest.fixture
def cli_dsn(chancy_server_dsn: str) -> Iterator[str]:
    from chancy._pgserver import create_database, drop_database

    name = f"chancy_cron_cli_{os.getpid()}_{secrets.token_hex(4)}"
    dsn = create_database(chancy_server_dsn, name)
    try:
        yield dsn
    finally:
        drop_database(chancy_server_dsn, name)


@pytest.fixture
def cron_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHANCY_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("CHANCY_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setattr(
        _plugins, "_entry_point_cache", [("cron", "chancy-cron", "0.1.0", hooks)]
    )


@pytest.fixture
def app(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli_dsn: str,
    cron_entry_point: None,
) -> Iterator[str]:
    """``--app`` path of a migrated app with the Cron plugin."""
    name = f"chancy_cron_cli_app_{secrets.token_hex(4)}"
    (tmp_path / f"{name}.py").write_text(APP_SOURCE)
    monkeypatch.setenv("CHANCY_CRON_CLI_TEST_DSN", cli_dsn)
    monkeypatch.delenv("CHANCY_APP", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = f"{name}:chancy"
    try:
        result = invoke("-a", path, "migrate")
        assert result.exit_code == 0, result.output
        yield path
    finally:
        sys.modules.pop(name, None)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def rows(dsn: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT unique_key, cron, timezone, job FROM chancy_cron ORDER BY unique_key"
        ).fetchall()


def test_cron_is_a_chancy_command(cron_entry_point: None) -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "cron" in result.output
    result = invoke("cron", "--help")
    assert result.exit_code == 0
    for command in ("list", "add", "remove", "next"):
        assert command in result.output


def test_add_list_remove(app: str, cli_dsn: str) -> None:
    result = invoke("-a", app, "cron", "list")
    assert result.exit_code == 0, result.output
    assert "No cron schedules." in result.output

    result = invoke(
        "-a", app, "cron", "add", "*/5 * * * *", "app.tasks.sync",
        "-u", "sync", "-q", "io", "-k", '{"full": true}', "--priority", "3",
        "--max-attempts", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Scheduled 'sync': */5 * * * * (UTC), next run at" in result.output
    result = invoke(
        "-a", app, "cron", "add", "30 2 * * *", "app.tasks.report", "--unique-key", "report",
        "--timezone", "America/New_York",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    stored = rows(cli_dsn)
    assert [(r[0], r[1], r[2]) for r in stored] == [
        ("report", "30 2 * * *", "America/New_York"),
        ("sync", "*/5 * * * *", "UTC"),
    ]
    job = stored[1][3]
    assert isinstance(job, dict)
    assert (job["f"], job["q"], job["k"], job["p"], job["a"], job["u"]) == (
        "app.tasks.sync", "io", {"full": True}, 3, 2, "sync",
    )  # fmt: skip

    result = invoke("-a", app, "cron", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "KEY",
        "EXPRESSION",
        "TIMEZONE",
        "FUNC",
        "QUEUE",
        "NEXT",
        "RUN",
        "LAST",
        "RUN",
    ]
    assert any(line.startswith("sync") and "app.tasks.sync" in line for line in lines)
    assert any(
        "America/New_York" in line and "app.tasks.report" in line for line in lines
    )

    result = invoke("-a", app, "cron", "list", "--json")
    assert result.exit_code == 0, result.output
    listed = {item["unique_key"]: item for item in json.loads(result.output)}
    assert listed["report"]["timezone"] == "America/New_York"
    assert listed["sync"]["job"]["f"] == "app.tasks.sync"
    assert listed["sync"]["last_run"] is None

    # Adding an existing key replaces it.
    result = invoke(
        "-a", app, "cron", "add", "0 * * * *", "app.tasks.sync", "-u", "sync"
    )
    assert result.exit_code == 0, result.output
    assert ("sync", "0 * * * *", "UTC") in [(r[0], r[1], r[2]) for r in rows(cli_dsn)]

    result = invoke("-a", app, "cron", "remove", "sync", "report")
    assert result.exit_code == 0, result.output
    assert "Removed schedule 'sync'" in result.output
    assert "Removed schedule 'report'" in result.output
    assert rows(cli_dsn) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["61 * * * *", "app.tasks.x", "-u", "k"],
            "invalid cron expression '61 * * * *'",
        ),
        (["0 0 30 2 *", "app.tasks.x", "-u", "k"], "matches no date"),
        (["* * *", "app.tasks.x", "-u", "k"], "expected 5 fields"),
        (
            ["* * * * *", "app.tasks.x", "-u", "k", "-z", "Mars/Base"],
            "unknown time zone 'Mars/Base'",
        ),
        (["* * * * *", "notapath", "-u", "k"], "not an import path"),
    ],
)
def test_add_refuses_bad_input_with_exit_1(
    app: str, cli_dsn: str, args: list[str], message: str
) -> None:
    result = invoke("-a", app, "cron", "add", *args)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert rows(cli_dsn) == []


def test_add_usage_errors(app: str, cli_dsn: str) -> None:
    result = invoke("-a", app, "cron", "add", "* * * * *", "app.tasks.x")
    assert result.exit_code == 2
    assert "--unique-key" in result.output
    result = invoke(
        "-a", app, "cron", "add", "* * * * *", "app.tasks.x", "-u", "k", "-k", "[1]"
    )
    assert result.exit_code == 2
    assert "JSON object" in result.output
    assert rows(cli_dsn) == []


def test_remove_a_missing_key_exits_1(app: str, cli_dsn: str) -> None:
    assert (
        invoke(
            "-a", app, "cron", "add", "* * * * *", "app.tasks.x", "-u", "k"
        ).exit_code
        == 0
    )
    result = invoke("-a", app, "cron", "remove", "k", "ghost")
    assert result.exit_code == 1
    assert "Removed schedule 'k'" in result.output
    assert "no schedule with the unique key 'ghost'" in result.output
    assert rows(cli_dsn) == []


def test_next_needs_no_app(
    cron_entry_point: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHANCY_APP", raising=False)
    result = invoke("cron", "next", "30 2 * * *", "-z", "America/New_York", "-n", "3")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    assert all(line.split("T")[1][:5] in {"02:30", "03:00"} for line in lines)
    result = invoke("cron", "next", "* * * *")
    assert result.exit_code == 1
    assert "invalid cron expression" in result.output
