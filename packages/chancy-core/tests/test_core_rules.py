"""The rules DSL (``chancy.rule``): rendering, and row selection on a real
PostgreSQL server through both the literal (``to_sql``) and the
parameterised (``compile``) forms."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from chancy.job import QueuedJob
from chancy.rule import (
    ID,
    Age,
    AndCondition,
    Attempts,
    BaseCondition,
    CompletedAt,
    Condition,
    CreatedAt,
    Job,
    JobRules,
    Not,
    OrCondition,
    Priority,
    Queue,
    Rule,
    ScheduledAt,
    SQLAble,
    State,
    compile_rule,
)

DSN = os.environ.get(
    "CHANCY_TEST_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)

NOW = datetime.now(UTC)


# label -> (queue, func, state, priority, attempts, created, scheduled, completed)
def _rows(NOW: datetime) -> dict[str, tuple[Any, ...]]:
    return {
        "a": (
            "default",
            "app.tasks.send_email",
            "succeeded",
            0,
            1,
            NOW - timedelta(days=2),
            NOW - timedelta(days=2),
            NOW - timedelta(days=2) + timedelta(minutes=1),
        ),
        "b": (
            "reports",
            "app.tasks.build_50%_report",
            "failed",
            5,
            3,
            NOW - timedelta(hours=3),
            NOW - timedelta(hours=3),
            NOW - timedelta(hours=2),
        ),
        "c": (
            "reports",
            "app.tasks.build_50x_report",
            "pending",
            1,
            0,
            NOW - timedelta(minutes=10),
            NOW + timedelta(hours=1),
            None,
        ),
        "d": (
            "default",
            "app.tasks.clean_a_b",
            "running",
            10,
            1,
            NOW - timedelta(seconds=30),
            NOW - timedelta(seconds=30),
            None,
        ),
        "e": (
            "Bulk",
            "app.tasks.resize\\image",
            "retrying",
            -1,
            2,
            NOW - timedelta(days=5),
            NOW - timedelta(days=5),
            None,
        ),
    }


ROWS: dict[str, tuple[Any, ...]] = _rows(NOW)
IDS = {label: uuid.UUID(int=i + 1) for i, label in enumerate(ROWS)}
LABELS = {v: k for k, v in IDS.items()}


@pytest.fixture
def conn() -> Iterator[psycopg.Connection[Any]]:
    """A connection with a TEMP ``jobs`` table shaped like chancy's."""
    # Lay the rows out relative to *now*: age rules compare with NOW().
    global NOW
    NOW = datetime.now(UTC)
    ROWS.update(_rows(NOW))
    try:
        connection = psycopg.connect(DSN, autocommit=True)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment
        pytest.skip(f"no PostgreSQL server at {DSN!r}: {exc}")
    with connection:
        connection.execute(
            """
            CREATE TEMP TABLE jobs (
                id uuid PRIMARY KEY,
                queue text NOT NULL,
                func text NOT NULL,
                state text NOT NULL,
                priority int DEFAULT 0,
                attempts int DEFAULT 0,
                created_at timestamptz NOT NULL,
                scheduled_at timestamptz NOT NULL,
                completed_at timestamptz
            )
            """
        )
        with connection.cursor() as cur:
            cur.executemany(
                "INSERT INTO jobs VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(IDS[label], *row) for label, row in ROWS.items()],
            )
        yield connection


def render(conn: psycopg.Connection[Any], query: sql.Composable) -> str:
    return query.as_string(conn)


def select(conn: psycopg.Connection[Any], rule: SQLAble) -> set[str]:
    """Labels of the rows ``rule`` selects; both forms must agree."""
    with conn.cursor() as cur:
        # Literal form: the statement runs without parameters.
        cur.execute(sql.SQL("SELECT id FROM jobs WHERE {}").format(rule.to_sql()))
        literal = {LABELS[row[0]] for row in cur.fetchall()}
        # Parameterised form, embedded in a statement with its own parameter.
        query, params = compile_rule(rule)
        cur.execute(
            sql.SQL("SELECT id FROM jobs WHERE ({}) AND %s").format(query),
            [*params, True],
        )
        parameterised = {LABELS[row[0]] for row in cur.fetchall()}
    assert literal == parameterised, (literal, parameterised)
    return literal


# --------------------------------------------------------------------------
# Rendering


def test_age_renders_epoch_of_now_minus_created_at(conn: Any) -> None:
    assert (
        render(conn, (Age() > 86400).to_sql())
        == "EXTRACT(EPOCH FROM (NOW() - created_at)) > 86400"
    )
    query, params = (Age() > 86400).compile()
    assert render(conn, query) == "EXTRACT(EPOCH FROM (NOW() - created_at)) > %s"
    assert params == [86400]


def test_columns_render_as_quoted_identifiers(conn: Any) -> None:
    assert render(conn, (Queue() == "default").to_sql()) == "\"queue\" = 'default'"
    assert render(conn, Job().to_sql()) == '"func"'
    assert render(conn, Rule("Mixed Case").to_sql()) == '"Mixed Case"'
    assert render(conn, (Rule("created_at") != 1).to_sql()) == '"created_at" != 1'


@pytest.mark.parametrize(
    ("rule", "literal", "parameterised", "params"),
    [
        (
            (Queue() == "a") & (State() == "failed"),
            "(\"queue\" = 'a') AND (\"state\" = 'failed')",
            '("queue" = %s) AND ("state" = %s)',
            ["a", "failed"],
        ),
        (
            (Queue() == "a") | (Priority() >= 5),
            '("queue" = \'a\') OR ("priority" >= 5)',
            '("queue" = %s) OR ("priority" >= %s)',
            ["a", 5],
        ),
        (
            (Queue() == "a") & (Attempts() < 3) | (ID() == uuid.UUID(int=1)),
            (
                '(("queue" = \'a\') AND ("attempts" < 3)) OR '
                "(\"id\" = '00000000000000000000000000000001'::uuid)"
            ),
            '(("queue" = %s) AND ("attempts" < %s)) OR ("id" = %s)',
            ["a", 3, uuid.UUID(int=1)],
        ),
        (
            ~(Queue() == "a"),
            "NOT (\"queue\" = 'a')",
            'NOT ("queue" = %s)',
            ["a"],
        ),
        (
            Not(CompletedAt().is_null()),
            'NOT ("completed_at" IS NULL)',
            'NOT ("completed_at" IS NULL)',
            [],
        ),
        (
            Queue().is_in(["a", "b"]),
            "\"queue\" = ANY('{a,b}')",
            '"queue" = ANY(%s)',
            [["a", "b"]],
        ),
        (CompletedAt() == None, '"completed_at" IS NULL', None, []),
        (ScheduledAt() != None, '"scheduled_at" IS NOT NULL', None, []),
        (CreatedAt().is_not_null(), '"created_at" IS NOT NULL', None, []),
        (
            CompletedAt() > ScheduledAt(),
            '"completed_at" > "scheduled_at"',
            None,
            [],
        ),
        (
            Job().ilike("app.%"),
            "\"func\" ILIKE 'app.%'",
            '"func" ILIKE %s',
            ["app.%"],
        ),
    ],
    ids=[
        "and",
        "or",
        "and-then-or",
        "invert",
        "not-class",
        "is-in",
        "eq-none",
        "ne-none",
        "is-not-null",
        "column-vs-column",
        "ilike",
    ],
)
def test_rendering(
    conn: Any,
    rule: BaseCondition,
    literal: str,
    parameterised: str | None,
    params: list[Any],
) -> None:
    assert render(conn, rule.to_sql()) == literal
    query, got = rule.compile()
    assert render(conn, query) == (parameterised or literal)
    assert got == params
    assert compile_rule(rule)[1] == params


def test_contains_escapes_like_wildcards() -> None:
    _, params = Job().contains("50%_off\\now").compile()
    assert params == ["%50\\%\\_off\\\\now%"]
    _, params = Job().ilike("50%_off").compile()
    assert params == ["50%_off"]


def test_values_are_converted() -> None:
    assert (State() == QueuedJob.State.FAILED).compile()[1] == ["failed"]
    assert type((State() == QueuedJob.State.FAILED).compile()[1][0]) is str
    assert (Age() > timedelta(days=1)).compile()[1] == [86400.0]
    assert (Age() < timedelta(minutes=1)).to_sql().as_string() == (
        "EXTRACT(EPOCH FROM (NOW() - created_at)) < 60.0"
    )
    some_id = uuid.uuid4()
    assert (ID() == str(some_id)).compile()[1] == [some_id]
    assert ID().is_in([str(some_id), some_id]).compile()[1] == [[some_id, some_id]]
    assert State().is_in([QueuedJob.State.PENDING, "x"]).compile()[1] == [
        ["pending", "x"]
    ]
    with pytest.raises(ValueError):
        ID() == "not-a-uuid"  # noqa: B015


def test_reflected_comparison() -> None:
    condition = 86400 < Age()
    assert isinstance(condition, Condition)
    assert condition.op == ">"
    assert condition.value == 86400


def test_module_aliases_and_namespace() -> None:
    import chancy.plugins.rule as plugins_rule
    from chancy import rule

    for name in rule.__all__:
        assert getattr(plugins_rule, name) is getattr(rule, name)
    assert sorted(rule.__all__) == sorted(plugins_rule.__all__)
    for name in (
        "Age",
        "Queue",
        "Job",
        "State",
        "CreatedAt",
        "ScheduledAt",
        "CompletedAt",
        "ID",
        "Priority",
        "Attempts",
    ):
        preset = getattr(rule, name)
        assert preset is getattr(JobRules, name)
        assert issubclass(preset, Rule)
        assert repr(preset()) == f"JobRules.{name}()"
    assert Job().field == "func"


def test_types_and_repr() -> None:
    condition = (Queue() == "a") & ~(Priority() > 1) | Queue().is_null()
    assert isinstance(condition, OrCondition)
    assert isinstance(condition.left, AndCondition)
    assert isinstance(condition, SQLAble)
    assert isinstance(Queue(), SQLAble)
    assert repr(condition) == (
        "OrCondition(AndCondition(Condition(JobRules.Queue(), '=', 'a'), "
        "Not(Condition(JobRules.Priority(), '>', 1))), "
        "Condition(JobRules.Queue(), 'IS NULL'))"
    )
    assert repr(Rule("x") == 1) == "Condition(Rule('x'), '=', 1)"


def test_rules_are_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(Queue())
    with pytest.raises(TypeError):
        {Rule("x")}


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="unsupported operator"):
        Condition("queue", "= 'x' OR TRUE --", 1)
    with pytest.raises(ValueError, match="unsupported operator"):
        Condition("queue", "=; DROP TABLE jobs", 1)
    with pytest.raises(TypeError, match="single string"):
        Queue().is_in("abc")
    with pytest.raises(TypeError):
        Job().contains(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a condition"):
        compile_rule(Age())
    with pytest.raises(TypeError, match="not a condition"):
        compile_rule("TRUE")  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Row selection on a real server

CASES: list[tuple[str, Callable[[], SQLAble], set[str]]] = [
    ("age-seconds", lambda: Age() > 86400, {"a", "e"}),
    ("age-reflected", lambda: 86400 < Age(), {"a", "e"}),
    ("age-timedelta", lambda: Age() > timedelta(hours=1), {"a", "b", "e"}),
    ("age-recent", lambda: Age() <= 60, {"d"}),
    ("queue-eq", lambda: Queue() == "reports", {"b", "c"}),
    ("queue-ne", lambda: Queue() != "reports", {"a", "d", "e"}),
    ("job-eq", lambda: Job() == "app.tasks.send_email", {"a"}),
    ("state-enum", lambda: State() == QueuedJob.State.FAILED, {"b"}),
    ("state-str", lambda: State() == "failed", {"b"}),
    (
        "state-in",
        lambda: State().is_in([QueuedJob.State.PENDING, "retrying"]),
        {"c", "e"},
    ),
    ("state-not-in", lambda: ~State().is_in(["pending", "running"]), {"a", "b", "e"}),
    ("in-empty", lambda: Queue().is_in([]), set()),
    ("not-in-empty", lambda: ~Queue().is_in([]), {"a", "b", "c", "d", "e"}),
    ("priority-ge", lambda: Priority() >= 5, {"b", "d"}),
    ("priority-negative", lambda: Priority() < 0, {"e"}),
    ("attempts-gt", lambda: Attempts() > 1, {"b", "e"}),
    ("priority-in", lambda: Priority().is_in([0, 10]), {"a", "d"}),
    ("completed-null", lambda: CompletedAt().is_null(), {"c", "d", "e"}),
    ("completed-eq-none", lambda: CompletedAt() == None, {"c", "d", "e"}),
    ("completed-not-null", lambda: CompletedAt().is_not_null(), {"a", "b"}),
    ("completed-ne-none", lambda: CompletedAt() != None, {"a", "b"}),
    ("scheduled-future", lambda: ScheduledAt() > datetime.now(UTC), {"c"}),
    ("created-before", lambda: CreatedAt() < NOW - timedelta(days=1), {"a", "e"}),
    ("created-in", lambda: CreatedAt().is_in([ROWS["d"][5]]), {"d"}),
    ("completed-after-scheduled", lambda: CompletedAt() > ScheduledAt(), {"a", "b"}),
    ("id-str", lambda: ID() == str(IDS["c"]), {"c"}),
    ("id-uuid", lambda: ID() == IDS["c"], {"c"}),
    ("id-in", lambda: ID().is_in([str(IDS["a"]), IDS["e"]]), {"a", "e"}),
    ("contains-percent", lambda: Job().contains("50%"), {"b"}),
    ("contains-percent-underscore", lambda: Job().contains("50%_"), {"b"}),
    ("contains-underscore", lambda: Job().contains("_a_"), {"d"}),
    ("contains-backslash", lambda: Job().contains("RESIZE\\IMAGE"), {"e"}),
    ("contains-case", lambda: Queue().contains("bulk"), {"e"}),
    ("ilike-wildcards", lambda: Job().ilike("app.tasks.build_50__report"), {"b", "c"}),
    ("ilike-prefix", lambda: Queue().ilike("REP%"), {"b", "c"}),
    ("and", lambda: (Queue() == "reports") & (State() == "failed"), {"b"}),
    ("or", lambda: (Queue() == "reports") | (Priority() >= 10), {"b", "c", "d"}),
    ("not", lambda: ~(Queue() == "default"), {"b", "c", "e"}),
    ("not-class", lambda: Not(Queue() == "default"), {"b", "c", "e"}),
    (
        "nested",
        lambda: ((Age() > 86400) | (State() == "failed")) & ~CompletedAt().is_null(),
        {"a", "b"},
    ),
    (
        "and-chain",
        lambda: (Queue() == "reports") & (Priority() > 0) & (Attempts() == 0),
        {"c"},
    ),
    (
        "or-of-ands",
        lambda: (
            ((Queue() == "default") & (Priority() > 5))
            | ((Queue() == "reports") & (Attempts() > 2))
        ),
        {"b", "d"},
    ),
    ("generic-rule", lambda: Rule("queue") == "default", {"a", "d"}),
    ("generic-created-at", lambda: Rule("created_at") < NOW - timedelta(days=3), {"e"}),
    ("condition-class", lambda: Condition("priority", ">", 0), {"b", "c", "d"}),
    (
        "pruner-like",
        lambda: ~State().is_in(["pending", "running"]) & (Age() > timedelta(days=1)),
        {"a", "e"},
    ),
]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [pytest.param(make, expected, id=name) for name, make, expected in CASES],
)
def test_selects_expected_rows(
    conn: psycopg.Connection[Any], rule: Callable[[], SQLAble], expected: set[str]
) -> None:
    assert select(conn, rule()) == expected


class _RawSQL:
    """A foreign SQLAble with only ``to_sql()`` and a literal ``%``."""

    def to_sql(self) -> sql.Composable:
        return sql.SQL("func LIKE {}").format(sql.Literal("%report"))


def test_foreign_sqlable(conn: psycopg.Connection[Any]) -> None:
    assert select(conn, _RawSQL()) == {"b", "c"}
    assert select(conn, (Queue() == "reports") & _RawSQL()) == {"b", "c"}
    assert select(conn, _RawSQL() & (Priority() > 1)) == {"b"}
    assert select(conn, Not(_RawSQL()) | (Priority() == 5)) == {"a", "b", "d", "e"}


# --------------------------------------------------------------------------
# SQL injection

HOSTILE = [
    "x' OR '1'='1",
    "'; DROP TABLE jobs; --",
    "default' --",
    "\\'; DELETE FROM jobs; --",
    "%' OR TRUE OR func LIKE '%",
    '"queue" OR TRUE',
]


@pytest.mark.parametrize("value", HOSTILE)
def test_injection_in_values_is_harmless(
    conn: psycopg.Connection[Any], value: str
) -> None:
    assert select(conn, Queue() == value) == set()
    assert select(conn, Job().contains(value)) == set()
    assert select(conn, Job().ilike(value)) == set()
    assert select(conn, Queue().is_in([value, "nope"])) == set()
    assert select(conn, (Queue() != value) & (Queue() == "Bulk")) == {"e"}
    count = conn.execute("SELECT count(*) FROM jobs").fetchone()
    assert count == (len(ROWS),)


def test_injection_in_field_name_is_quoted(conn: psycopg.Connection[Any]) -> None:
    rule = Rule("queue\" = 'default' OR \"queue") == "x"
    with pytest.raises(psycopg.errors.UndefinedColumn):
        select(conn, rule)


# --------------------------------------------------------------------------
# The precedence pitfall


def test_precedence_pitfall_raises_with_hint() -> None:
    with pytest.raises(TypeError, match=r"Parenthesise every comparison"):
        Age() > 60 & Queue() == "x"  # type: ignore[operator,comparison-overlap]  # noqa: B015
    with pytest.raises(TypeError, match=r"\(Age\(\) > 60\) & \(Queue\(\) == 'x'\)"):
        (Age() > 60) & Queue() == "x"  # type: ignore[comparison-overlap]  # noqa: B015
    with pytest.raises(TypeError, match=r"bind more tightly than comparisons"):
        Queue() == "x" | Age() > 5  # type: ignore[operator]  # noqa: B015
    with pytest.raises(TypeError, match=r"only conditions"):
        (Queue() == "x") | "TRUE"  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"only conditions"):
        AndCondition(Queue(), Queue() == "x")
    with pytest.raises(TypeError, match=r"'~' applies to conditions"):
        ~Queue()  # type: ignore[operator]
    with pytest.raises(TypeError, match=r"Not\(\) takes a condition"):
        Not(Queue())


def test_conditions_have_no_truth_value() -> None:
    with pytest.raises(TypeError, match="no truth value"):
        10 < Age() < 60  # noqa: B015
    with pytest.raises(TypeError, match="no truth value"):
        (Age() > 10) and (Age() < 60)
    with pytest.raises(TypeError, match="no truth value"):
        bool(Queue() == "x")
