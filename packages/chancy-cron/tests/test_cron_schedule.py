"""Pure schedule maths: parsing, next runs, time zones and DST (no database)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from chancy.plugins.cron.schedule import (
    CronExpressionError,
    UnknownTimeZoneError,
    next_run,
    next_runs,
    parse,
    resolve_timezone,
    timezone_name,
    validate,
)

NY = ZoneInfo("America/New_York")
# 2024 in New York: clocks spring forward on 10 March at 02:00 EST (to 03:00
# EDT) and fall back on 3 November at 02:00 EDT (to 01:00 EST).


def ny(*args: int, fold: int = 0) -> datetime:
    """A New York wall time as an aware UTC instant."""
    return datetime(*args, tzinfo=NY, fold=fold).astimezone(UTC)  # type: ignore[misc]


def walls(runs: list[datetime]) -> list[str]:
    """Runs as New York wall times with their abbreviation."""
    return [run.astimezone(NY).strftime("%d %H:%M:%S %Z") for run in runs]


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def test_five_and_six_field_expressions() -> None:
    five = parse(" */5 * * * * ")
    assert five.expression == "*/5 * * * *"
    assert five.fields == ("*/5", "*", "*", "*", "*")
    assert not five.has_seconds
    six = parse("*/10 * * * * *")
    assert six.has_seconds
    assert str(six) == "*/10 * * * * *"


@pytest.mark.parametrize(
    ("alias", "fields"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
    ],
)
def test_aliases(alias: str, fields: str) -> None:
    parsed = parse(alias)
    assert parsed.expression == alias
    assert " ".join(parsed.fields) == fields


@pytest.mark.parametrize(
    ("expression", "wildcard"),
    [
        ("*/5 * * * *", True),
        ("0 * * * *", True),  # hourly: the hour field is a wildcard
        ("* 2 * * *", True),
        ("30 2 * * *", False),
        ("0,30 2-4 * * *", False),
        ("@daily", False),
        ("@hourly", True),
        ("*/10 30 2 * * *", True),  # seconds field
        ("0 30 2 * * *", False),
    ],
)
def test_wildcard_classification(expression: str, wildcard: bool) -> None:
    assert parse(expression).is_wildcard is wildcard


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("* * *", "expected 5 fields"),
        ("* * * * * * *", "got 7"),
        ("61 * * * *", "out of range"),
        ("*/0 * * * *", "step"),
        ("0 0 30 2 *", "matches no date"),  # 30 February
        ("0 0 31 4 *", "matches no date"),  # 31 April
        ("@reboot", "unknown alias"),
        ("H * * * *", "hashed fields"),
        ("a b c d e", "not acceptable"),
    ],
)
def test_invalid_expressions_are_refused_with_their_text(
    expression: str, message: str
) -> None:
    with pytest.raises(CronExpressionError, match=message) as info:
        parse(expression)
    assert repr(expression) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_non_string_expression() -> None:
    with pytest.raises(TypeError, match="must be a string"):
        parse(5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# UTC
# ---------------------------------------------------------------------------


def test_next_run_is_strictly_after_and_in_utc() -> None:
    after = datetime(2024, 5, 1, 12, 3, 10, tzinfo=UTC)
    assert next_run("*/5 * * * *", after) == datetime(2024, 5, 1, 12, 5, tzinfo=UTC)
    on_the_dot = datetime(2024, 5, 1, 12, 5, tzinfo=UTC)
    assert next_run("*/5 * * * *", on_the_dot) == datetime(
        2024, 5, 1, 12, 10, tzinfo=UTC
    )
    result = next_run("0 0 * * *", datetime(2024, 5, 1, 23, 59, 59, 999999, tzinfo=UTC))
    assert result == datetime(2024, 5, 2, tzinfo=UTC)
    assert result.tzinfo is UTC


def test_naive_and_other_zone_inputs() -> None:
    assert next_run("0 * * * *", datetime(2024, 5, 1, 12, 30)) == datetime(
        2024, 5, 1, 13, tzinfo=UTC
    )
    paris_noon = datetime(2024, 5, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))  # 10:00Z
    assert next_run("0 * * * *", paris_noon) == datetime(2024, 5, 1, 11, tzinfo=UTC)


def test_a_time_zone_moves_the_wall_clock() -> None:
    after = datetime(2024, 1, 15, 12, tzinfo=UTC)  # 07:00 EST
    assert next_run("30 8 * * *", after, "America/New_York") == datetime(
        2024, 1, 15, 13, 30, tzinfo=UTC
    )
    assert next_run("30 8 * * *", after, NY) == next_run(
        "30 8 * * *", after, "America/New_York"
    )
    assert next_run("0 0 * * *", after, "Asia/Tokyo") == datetime(
        2024, 1, 15, 15, tzinfo=UTC
    )


def test_leap_day_and_bounded_search() -> None:
    # 2100 is not a leap year: the next 29 February after 2097 is in 2104.
    after = datetime(2097, 3, 1, tzinfo=UTC)
    assert next_run("0 0 29 2 *", after) == datetime(2104, 2, 29, tzinfo=UTC)
    assert next_run("0 0 29 2 *", after, "Europe/Paris") == datetime(
        2104, 2, 28, 23, tzinfo=UTC
    )


def test_day_of_month_or_day_of_week() -> None:
    # Both restricted: a day matches if either does (Vixie cron).
    runs = next_runs("0 0 13 * 5", datetime(2024, 9, 1, tzinfo=UTC), count=3)
    assert [r.day for r in runs] == [6, 13, 20]  # Friday 6, the 13th, Friday 20


# ---------------------------------------------------------------------------
# Seconds
# ---------------------------------------------------------------------------


def test_seconds_level_expressions() -> None:
    after = datetime(2024, 5, 1, 12, 0, 7, 500000, tzinfo=UTC)
    assert next_run("*/15 * * * * *", after) == datetime(
        2024, 5, 1, 12, 0, 15, tzinfo=UTC
    )
    every = next_runs("* * * * * *", after, count=3)
    assert [r.second for r in every] == [8, 9, 10]
    assert next_run("30 0 12 * * *", after) == datetime(
        2024, 5, 1, 12, 0, 30, tzinfo=UTC
    )
    assert next_run(
        "30 0 12 * * *", datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)
    ) == datetime(2024, 5, 2, 12, 0, 30, tzinfo=UTC)


def test_seconds_across_the_spring_forward_gap() -> None:
    runs = next_runs(
        "*/20 * * * * *", ny(2024, 3, 10, 1, 59, 30), "America/New_York", count=3
    )
    assert walls(runs) == ["10 01:59:40 EST", "10 03:00:00 EDT", "10 03:00:20 EDT"]
    assert runs[1] - runs[0] == timedelta(seconds=20)  # real-time interval kept
    # A fixed second inside the gap runs once, right after it.
    fixed = next_runs(
        "0 30 2 * * *", ny(2024, 3, 10, 0, 0), "America/New_York", count=2
    )
    assert walls(fixed) == ["10 03:00:00 EDT", "11 02:30:00 EDT"]


# ---------------------------------------------------------------------------
# Spring forward (2024-03-10, New York: 02:00 EST -> 03:00 EDT)
# ---------------------------------------------------------------------------


def test_spring_forward_fixed_time_in_the_gap_runs_once_after_it() -> None:
    runs = next_runs("30 2 * * *", ny(2024, 3, 9, 12, 0), "America/New_York", count=3)
    assert walls(runs) == ["10 03:00:00 EDT", "11 02:30:00 EDT", "12 02:30:00 EDT"]
    assert runs[0] == datetime(2024, 3, 10, 7, 0, tzinfo=UTC)  # the transition instant


def test_spring_forward_fixed_time_outside_the_gap_is_unchanged() -> None:
    assert walls(
        next_runs("0 3 * * *", ny(2024, 3, 9, 12), "America/New_York", count=2)
    ) == [
        "10 03:00:00 EDT",
        "11 03:00:00 EDT",
    ]
    assert walls(
        next_runs("30 1 * * *", ny(2024, 3, 9, 12), "America/New_York", count=2)
    ) == [
        "10 01:30:00 EST",
        "11 01:30:00 EDT",
    ]


def test_spring_forward_several_fixed_times_in_the_gap_run_once() -> None:
    runs = next_runs("0,30 2 * * *", ny(2024, 3, 10, 1, 0), "America/New_York", count=2)
    assert walls(runs) == ["10 03:00:00 EDT", "11 02:00:00 EDT"]


def test_spring_forward_wildcards_keep_their_real_time_interval() -> None:
    runs = next_runs("*/30 * * * *", ny(2024, 3, 10, 1, 0), "America/New_York", count=4)
    assert walls(runs) == [
        "10 01:30:00 EST",
        "10 03:00:00 EDT",
        "10 03:30:00 EDT",
        "10 04:00:00 EDT",
    ]
    assert {b - a for a, b in itertools.pairwise(runs)} == {timedelta(minutes=30)}
    hourly = next_runs("0 * * * *", ny(2024, 3, 10, 0, 30), "America/New_York", count=3)
    assert walls(hourly) == ["10 01:00:00 EST", "10 03:00:00 EDT", "10 04:00:00 EDT"]


def test_spring_forward_wildcard_minutes_in_the_missing_hour_do_not_run() -> None:
    # "Every minute of 02:xx" is a wildcard job: that hour does not exist today.
    runs = next_runs("* 2 * * *", ny(2024, 3, 10, 1, 59), "America/New_York", count=2)
    assert walls(runs) == ["11 02:00:00 EDT", "11 02:01:00 EDT"]


# ---------------------------------------------------------------------------
# Fall back (2024-11-03, New York: 02:00 EDT -> 01:00 EST; 01:xx happens twice)
# ---------------------------------------------------------------------------


def test_fall_back_fixed_time_in_the_repeated_hour_runs_once() -> None:
    runs = next_runs("30 1 * * *", ny(2024, 11, 2, 12), "America/New_York", count=3)
    assert walls(runs) == ["03 01:30:00 EDT", "04 01:30:00 EST", "05 01:30:00 EST"]
    assert walls(
        next_runs("0 1 * * *", ny(2024, 11, 2, 12), "America/New_York", count=2)
    ) == [
        "03 01:00:00 EDT",
        "04 01:00:00 EST",
    ]


def test_fall_back_fixed_time_after_the_repeated_hour() -> None:
    assert walls(
        next_runs("0 2 * * *", ny(2024, 11, 2, 12), "America/New_York", count=2)
    ) == [
        "03 02:00:00 EST",
        "04 02:00:00 EST",
    ]


def test_fall_back_wildcards_run_in_both_passes() -> None:
    runs = next_runs(
        "*/30 * * * *", ny(2024, 11, 3, 0, 20), "America/New_York", count=6
    )
    assert walls(runs) == [
        "03 00:30:00 EDT",
        "03 01:00:00 EDT",
        "03 01:30:00 EDT",
        "03 01:00:00 EST",
        "03 01:30:00 EST",
        "03 02:00:00 EST",
    ]
    assert {b - a for a, b in itertools.pairwise(runs)} == {timedelta(minutes=30)}
    hourly = next_runs("@hourly", ny(2024, 11, 3, 0, 30), "America/New_York", count=3)
    assert walls(hourly) == ["03 01:00:00 EDT", "03 01:00:00 EST", "03 02:00:00 EST"]


def test_fall_back_starting_inside_the_repeated_hour() -> None:
    first_pass = ny(2024, 11, 3, 1, 40, fold=0)  # 01:40 EDT
    second_pass = ny(2024, 11, 3, 1, 40, fold=1)  # 01:40 EST, an hour later
    # Fixed time: 01:30 already ran in the first pass; 01:50 still runs in it.
    assert walls([next_run("30 1 * * *", first_pass, NY)]) == ["04 01:30:00 EST"]
    assert walls([next_run("50 1 * * *", first_pass, NY)]) == ["03 01:50:00 EDT"]
    assert walls([next_run("50 1 * * *", second_pass, NY)]) == ["04 01:50:00 EST"]
    assert walls([next_run("30 1 * * *", second_pass, NY)]) == ["04 01:30:00 EST"]
    # Wildcards follow the wall clock in real time.
    assert walls([next_run("*/15 * * * *", first_pass, NY)]) == ["03 01:45:00 EDT"]
    assert walls([next_run("*/15 * * * *", second_pass, NY)]) == ["03 01:45:00 EST"]
    after_first_pass = ny(2024, 11, 3, 1, 55, fold=0)
    assert walls([next_run("*/15 * * * *", after_first_pass, NY)]) == [
        "03 01:00:00 EST"
    ]


def test_half_hour_dst_shift() -> None:
    # Lord Howe Island moves its clocks by 30 minutes (02:00 -> 02:30 on 2024-10-06).
    zone = ZoneInfo("Australia/Lord_Howe")
    after = datetime(2024, 10, 5, 12, tzinfo=zone)
    runs = next_runs("15 2 * * *", after, zone, count=2)
    assert [r.astimezone(zone).isoformat() for r in runs] == [
        "2024-10-06T02:30:00+11:00",
        "2024-10-07T02:15:00+11:00",
    ]


# ---------------------------------------------------------------------------
# Time zones
# ---------------------------------------------------------------------------


def test_time_zone_names() -> None:
    assert timezone_name("Europe/Paris") == "Europe/Paris"
    assert timezone_name(ZoneInfo("Asia/Tokyo")) == "Asia/Tokyo"
    assert timezone_name(UTC) == "UTC"
    assert resolve_timezone("UTC") == ZoneInfo("UTC")


@pytest.mark.parametrize(
    "name", ["Mars/Olympus_Mons", "Europe/Atlantis", "../../etc/passwd", ""]
)
def test_unknown_time_zones_are_named(name: str) -> None:
    with pytest.raises(UnknownTimeZoneError) as info:
        next_run("* * * * *", datetime.now(UTC), name)
    assert isinstance(info.value, ValueError)
    if name:
        assert repr(name) in str(info.value)


def test_unsupported_tzinfo() -> None:
    with pytest.raises(UnknownTimeZoneError, match="IANA"):
        timezone_name(timezone(timedelta(hours=2)))


def test_validate() -> None:
    assert validate("*/5 * * * *", "Europe/Paris").expression == "*/5 * * * *"
    with pytest.raises(CronExpressionError, match="'0 0 30 2 \\*'"):
        validate("0 0 30 2 *")
    with pytest.raises(UnknownTimeZoneError, match="Nowhere/Land"):
        validate("* * * * *", "Nowhere/Land")
