"""``Queue`` validates every setting, so ``declare()``, the CLI and the web API
refuse the same bad input before anything is written."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from chancy import Chancy, Queue
from chancy.cli import cli
from chancy.queue import MAX_TAG_PATTERN_LENGTH, MAX_TAGS, check_tag_pattern

#: Patterns users write: all accepted.
GOOD_PATTERNS = [
    ".*",
    "gpu",
    r"hostname=web\d+",
    r"(eu|us)-west-\d+",
    r"region=(eu|us)(-\d)?",
    r"python=3\.1[0-9].*",
    "(gpu|cpu)+",
    "hostname=(web1|web2|db1)",
    r"worker_id=[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}",
    "worker_id=.{8}[0-9a-f-]+!",
    ".*=gpu.*",
    ".*a.*b.*c",
    "(?i)HOSTNAME=WEB.*",
    "(?=gpu).*",
    "",
]

#: Patterns that backtrack exponentially (or polynomially with a high degree).
BAD_PATTERNS = [
    ("worker_id=.{8}([0-9a-f-]+)+!", "backtrack catastrophically"),  # the audit's
    ("(a+)+", "backtrack catastrophically"),
    (r"(\d*)*x", "backtrack catastrophically"),
    ("(x?)+y", "backtrack catastrophically"),
    ("(a|ab)*c", "backtrack catastrophically"),
    ("(a|a)+b", "backtrack catastrophically"),
    ("(.a|b.)*!", "backtrack catastrophically"),
    ("(?i)(ab|AB)+!", "backtrack catastrophically"),
    (r"(\w+\s?)+$", "backtrack catastrophically"),
    ("((ab)*c)+", "backtrack catastrophically"),
    (".*.*.*.*!", "too long to match"),
    ("(.*){5}!", "too long to match"),
    (r"(a)\1", "backreferences"),
    ("[", "not a valid regular expression"),
    ("a\x00", "NUL"),
    ("a" * (MAX_TAG_PATTERN_LENGTH + 1), "at most"),
]


@pytest.mark.parametrize("pattern", GOOD_PATTERNS)
def test_patterns_users_write_are_accepted(pattern: str) -> None:
    check_tag_pattern(pattern)
    assert Queue("q", tags={pattern}).tags == {pattern}


@pytest.mark.parametrize(("pattern", "message"), BAD_PATTERNS)
def test_dangerous_patterns_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_tag_pattern(pattern)
    with pytest.raises(ValueError, match="Queue tag"):
        Queue("q", tags={"gpu", pattern})


def test_the_tag_set_is_bounded() -> None:
    Queue("q", tags={f"t{i}" for i in range(MAX_TAGS)})
    with pytest.raises(ValueError, match=f"at most {MAX_TAGS} patterns"):
        Queue("q", tags={f"t{i}" for i in range(MAX_TAGS + 1)})
    # Each pattern is fine on its own; together they cost too much.
    with pytest.raises(ValueError, match="together"):
        Queue("q", tags={f".*{c}.*b.*c" for c in "xyz"})
    with pytest.raises(TypeError, match="tags must be"):
        Queue("q", tags=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be strings"):
        Queue("q", tags={1})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"polling_interval": 1e400}, "polling_interval"),  # inf
        ({"polling_interval": math.nan}, "polling_interval"),
        ({"polling_interval": -math.inf}, "polling_interval"),
        ({"polling_interval": 1e-300}, "polling_interval"),
        ({"polling_interval": 0.001}, "polling_interval"),
        ({"polling_interval": 10**6}, "polling_interval"),
        ({"polling_interval": True}, "polling_interval"),
        ({"polling_interval": "5"}, "polling_interval"),
        ({"concurrency": 2**31}, "concurrency"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": 2.0}, "concurrency"),
        ({"rate_limit": 2**31, "rate_limit_window": 1}, "rate_limit"),
        ({"rate_limit": 1, "rate_limit_window": 10**30}, "rate_limit_window"),
        ({"rate_limit": 1, "rate_limit_window": 0.5}, "rate_limit_window"),
        ({"rate_limit": 5}, "set together"),
        ({"executor_options": {"x": math.nan}}, "finite"),
        ({"executor_options": {"x": [1e400]}}, "finite"),
        ({"executor_options": {"x": "a\x00b"}}, "NUL"),
        ({"executor_options": {"a\x00": 1}}, "NUL"),
        ({"executor": ""}, "executor"),
        ({"executor": "a.b\x00"}, "NUL"),
        ({"executor": 3}, "executor"),
        ({"state": "stopped"}, "'active' or 'paused'"),
    ],
)
def test_settings_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Queue("q", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"executor_options": [1]}, "mapping"),
        ({"resume_at": "tomorrow"}, "resume_at"),
        ({"eager_polling": 1}, "eager_polling"),
    ],
)
def test_types_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Queue("q", **kwargs)


def test_deep_executor_options_are_refused_without_recursion() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match="nested more than"):
        Queue("q", executor_options={"x": deep})


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "non-empty"),
        ("a\x00b", "NUL"),
        ("\ud800", "lone surrogate"),
        ("q" * 256, "at most 255"),
        (None, "non-empty"),
    ],
)
def test_names_are_validated(name: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Queue(name)


def test_limits_are_inclusive() -> None:
    queue = Queue(
        "q" * 255,
        concurrency=2**31 - 1,
        rate_limit=2**31 - 1,
        rate_limit_window=2**31 - 1,
        polling_interval=0.01,
        resume_at=datetime(2030, 1, 1),
    )
    assert queue.resume_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert Queue("q", polling_interval=86_400).polling_interval == 86_400


async def test_declare_refuses_before_writing_and_stored_rows_still_load(
    chancy: Chancy,
) -> None:
    """A row written before these checks (or with SQL) is read back as it is:
    one bad row must not stop workers and the API from listing queues."""
    await chancy.declare(Queue("good", polling_interval=0.5, concurrency=3))
    async with chancy.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO chancy_queues (name, tags, polling_interval, concurrency)"
            " VALUES ('legacy', ARRAY['(a+)+'], 'Infinity', 1)"
        )
    queues = {q.name: q for q in await chancy.get_all_queues()}
    assert queues["good"] == Queue("good", polling_interval=0.5, concurrency=3)
    assert queues["legacy"].tags == {"(a+)+"}
    assert queues["legacy"].polling_interval == math.inf
    # Rebuilding it from the stored values (what an update does) is refused.
    with pytest.raises(ValueError, match="backtrack catastrophically"):
        Queue("legacy", tags=queues["legacy"].tags)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-t", "worker_id=.{8}([0-9a-f-]+)+!"], "backtrack catastrophically"),
        (["-t", ".*.*.*.*"], "too long to match"),
        (["-p", "1e400"], "polling_interval"),
        (["-p", "nan"], "polling_interval"),
        (["-p", "1e-300"], "polling_interval"),
        (["-c", str(2**31)], "concurrency"),
        (["-r", "1", "-w", str(2**31)], "rate_limit_window"),
    ],
)
def test_cli_declare_refuses_the_same(args: list[str], message: str) -> None:
    # Refused while building the Queue, before the app is even loaded.
    result = CliRunner().invoke(cli, ["queue", "declare", "q", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
