"""Cron expressions and the next-run computation (pure: no database, no I/O).

Expressions
===========

* 5 fields: ``minute hour day-of-month month day-of-week`` (standard cron);
* 6 fields: ``second minute hour day-of-month month day-of-week`` (the seconds
  field comes *first*, as in Quartz, Spring and robfig/cron);
* the aliases ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``,
  ``@daily`` (``@midnight``) and ``@hourly``.

Fields accept what croniter accepts: ``*``, ``a-b``, lists, ``*/n`` and
``a-b/n`` steps, month and weekday names (``jan``, ``mon``), ``L`` (last day
of the month), ``nW`` (nearest weekday), ``d#n`` (n-th weekday of the month)
and ``?``. When both day-of-month and day-of-week are restricted a day matches
if either does (as in Vixie cron). Hashed fields (``H``), ``@reboot`` and
7-field (year) expressions are refused.

Time zones and daylight saving time
===================================

Expressions are evaluated on the wall clock of an IANA time zone, with the
semantics of Vixie/Debian cron:

* A *wildcard* expression is one whose seconds (6 fields), minute or hour
  field starts with ``*`` (``*/5 * * * *``, ``0 * * * *``, ``* 2 * * *``).
  It runs at every real instant whose local wall time matches: across a
  spring-forward gap and a fall-back repeated hour it keeps its interval in
  real time (``*/5`` runs 5 minutes after 01:55 EST at 03:00 EDT, and both
  during the first and the second 01:xx hour on the fall-back day).
* Any other expression is *fixed-time* (``30 2 * * *``). A fixed-time run
  whose wall time falls in a spring-forward gap runs once, right after the
  gap (at the transition instant). During a fall-back repeated hour it runs
  only once, in the first pass; wall times already seen are not repeated.

Transitions are found by sampling each time zone's UTC offset once a day and
bisecting to the second, so zones with two transitions within one day (none
in current tzdata) are not modelled exactly.
"""

from __future__ import annotations

import functools
import zoneinfo
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Final

import attrs
from croniter import (  # type: ignore[import-untyped, unused-ignore]
    CroniterBadDateError,
    CroniterError,
    croniter,
)

from chancy.errors import ConfigurationError

__all__ = [
    "CronExpression",
    "CronExpressionError",
    "UnknownTimeZoneError",
    "next_run",
    "next_runs",
    "parse",
    "resolve_timezone",
    "timezone_name",
    "validate",
]

ALIASES: Final[dict[str, str]] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: croniter gives up after this many years without a match.
MAX_YEARS: Final = 50

_DAY: Final = timedelta(days=1)
_SECOND: Final = timedelta(seconds=1)
_TICK: Final = timedelta(microseconds=1)
_ZERO: Final = timedelta(0)
#: Segments (stretches of constant UTC offset) walked before giving up.
_MAX_SEGMENTS: Final = 4 * MAX_YEARS + 16
_REFERENCE: Final = datetime(2000, 1, 1)


class CronExpressionError(ConfigurationError):
    """A cron expression is malformed or never matches (a :class:`ValueError`)."""


class UnknownTimeZoneError(ConfigurationError):
    """A time zone is not a known IANA name (a :class:`ValueError`)."""


@attrs.frozen
class CronExpression:
    """A parsed, validated cron expression."""

    #: The expression as given (surrounding whitespace removed).
    expression: str
    #: Its fields after alias expansion: 5, or 6 with seconds first.
    fields: tuple[str, ...]

    @property
    def has_seconds(self) -> bool:
        """Whether the expression has a seconds field (6 fields)."""
        return len(self.fields) == 6

    @property
    def is_wildcard(self) -> bool:
        """Vixie cron's "wildcard job": the seconds, minute or hour field starts with ``*``.

        Wildcard expressions run in real time across DST changes; the others
        are fixed-time (see the module documentation).
        """
        time_fields = self.fields[:3] if self.has_seconds else self.fields[:2]
        return any(field.startswith("*") for field in time_fields)

    def __str__(self) -> str:
        return self.expression


def _error(expression: str, reason: str) -> CronExpressionError:
    return CronExpressionError(f"invalid cron expression {expression!r}: {reason}")


@functools.lru_cache(maxsize=1024)
def _parse(expression: str) -> CronExpression:
    text = expression.strip()
    if not text:
        raise _error(expression, "it is empty")
    expanded = text
    if text.startswith("@"):
        alias = ALIASES.get(text.lower())
        if alias is None:
            raise _error(
                expression,
                f"unknown alias; use one of {', '.join(sorted(ALIASES))} or 5/6 fields",
            )
        expanded = alias
    fields = tuple(expanded.split())
    if len(fields) not in (5, 6):
        raise _error(
            expression,
            f"expected 5 fields (minute hour day-of-month month day-of-week) or 6"
            f" (second minute hour day-of-month month day-of-week), got {len(fields)}",
        )
    try:
        it = croniter(" ".join(fields), _REFERENCE, second_at_beginning=True)
        it.get_next(datetime)
    except CroniterBadDateError:
        raise _error(
            expression, f"it matches no date (none within {MAX_YEARS} years)"
        ) from None
    except (CroniterError, ValueError, TypeError, KeyError, IndexError) as exc:
        reason = str(exc) or type(exc).__name__
        if "hash" in reason.lower():
            reason = "hashed fields (H) are not supported"
        raise _error(expression, reason) from None
    return CronExpression(expression=text, fields=fields)


def parse(expression: str | CronExpression) -> CronExpression:
    """Parse and validate a cron expression.

    :raises CronExpressionError: (a ``ValueError``) naming the expression and
        what is wrong with it, including expressions that match no date
        (``0 0 30 2 *``).
    :raises TypeError: ``expression`` is not a string.
    """
    if isinstance(expression, CronExpression):
        return expression
    if not isinstance(expression, str):
        raise TypeError(
            f"a cron expression must be a string, got {type(expression).__name__}:"
            f" {expression!r}"
        )
    return _parse(expression)


# ---------------------------------------------------------------------------
# Time zones
# ---------------------------------------------------------------------------


def timezone_name(tz: str | tzinfo) -> str:
    """The IANA name to store for ``tz`` (validated).

    Accepts a name, a :class:`zoneinfo.ZoneInfo` or :data:`datetime.UTC`.

    :raises UnknownTimeZoneError: unknown name, or a tzinfo without an IANA name.
    """
    if isinstance(tz, str):
        resolve_timezone(tz)
        return tz
    if isinstance(tz, zoneinfo.ZoneInfo):
        if tz.key is None:
            raise UnknownTimeZoneError(
                f"the time zone {tz!r} has no IANA name (it was loaded from a file);"
                " pass its name, e.g. 'Europe/Paris'"
            )
        return tz.key
    if tz is UTC:
        return "UTC"
    raise UnknownTimeZoneError(
        f"unsupported time zone {tz!r}: pass an IANA name such as 'Europe/Paris'"
        " or a zoneinfo.ZoneInfo"
    )


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimeZoneError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC',"
            " 'Europe/Paris' or 'America/New_York' (on Windows, install tzdata)"
        ) from None


def resolve_timezone(tz: str | tzinfo) -> tzinfo:
    """The tzinfo for a name (or a tzinfo, returned as is after validation).

    :raises UnknownTimeZoneError: (a ``ValueError``) naming the unknown zone.
    """
    if isinstance(tz, str):
        if not tz.strip():
            raise UnknownTimeZoneError("the time zone must not be empty")
        return _zone(tz)
    if isinstance(tz, tzinfo):
        timezone_name(tz)
        return tz
    raise UnknownTimeZoneError(
        f"unsupported time zone {tz!r}: pass an IANA name or a zoneinfo.ZoneInfo"
    )


def _is_fixed(zone: tzinfo) -> bool:
    if isinstance(zone, timezone):
        return True
    return isinstance(zone, zoneinfo.ZoneInfo) and zone.key in {
        "UTC",
        "Etc/UTC",
        "Etc/GMT",
        "GMT",
    }


# ---------------------------------------------------------------------------
# Next run
# ---------------------------------------------------------------------------


class _Candidates:
    """Matching *wall* times (naive datetimes) in ascending order."""

    __slots__ = ("_cron", "_it")

    def __init__(self, cron: CronExpression) -> None:
        self._cron = cron
        self._it = croniter(" ".join(cron.fields), _REFERENCE, second_at_beginning=True)

    def first(self, floor: datetime, *, inclusive: bool) -> datetime:
        """The first matching wall time after ``floor`` (or at it if ``inclusive``)."""
        start = floor - _TICK if inclusive else floor
        try:
            result = self._it.get_next(datetime, start_time=start)
        except CroniterBadDateError:
            raise _error(
                self._cron.expression,
                f"no run within {MAX_YEARS} years after {floor.isoformat()}",
            ) from None
        assert isinstance(result, datetime)
        return result


def _offset(zone: tzinfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    return offset if offset is not None else _ZERO


def _naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def _first_transition(zone: tzinfo, start: datetime, end: datetime) -> datetime | None:
    """The first instant in ``(start, end]`` whose UTC offset differs from ``start``'s."""
    offset = _offset(zone, start)
    low = start
    while low < end:
        high = min(low + _DAY, end)
        if _offset(zone, high) != offset:
            while high - low > _SECOND:
                middle = low + (high - low) / 2
                if _offset(zone, middle) == offset:
                    low = middle
                else:
                    high = middle
            # tzdata transitions fall on whole seconds: the first one after ``low``.
            whole = low.replace(microsecond=0) + _SECOND
            return whole if _offset(zone, whole) != offset else high
        low = high
    return None


def next_run(
    expression: str | CronExpression,
    after: datetime,
    tz: str | tzinfo = "UTC",
) -> datetime:
    """The first run of ``expression`` strictly after the instant ``after``.

    :param expression: a cron expression (see the module documentation).
    :param after: an aware datetime (a naive one is taken as UTC).
    :param tz: the time zone whose wall clock the expression follows, as an
        IANA name or a :class:`zoneinfo.ZoneInfo`.
    :returns: an aware datetime in UTC.
    :raises CronExpressionError: the expression is invalid or has no run
        within 50 years.
    :raises UnknownTimeZoneError: ``tz`` is not a known time zone.
    """
    cron = parse(expression)
    zone = resolve_timezone(tz)
    if after.tzinfo is None:
        after = after.replace(tzinfo=UTC)
    after = after.astimezone(UTC)
    candidates = _Candidates(cron)

    if _is_fixed(zone):
        offset = _offset(zone, after)
        wall = candidates.first(_naive(after + offset), inclusive=False)
        return (wall - offset).replace(tzinfo=UTC)

    # Walk stretches of constant UTC offset ("segments"), starting a day early
    # so that a fall-back transition just before ``after`` is known.
    start = after - _DAY
    offset = _offset(zone, start)
    floor, inclusive = _naive(start + offset), False
    for _ in range(_MAX_SEGMENTS):
        wall = candidates.first(floor, inclusive=inclusive)
        instant = (wall - offset).replace(tzinfo=UTC)
        transition = _first_transition(zone, start, instant)
        if transition is None:
            if instant > after:
                return instant
            # Still before ``after`` in this segment: skip ahead to it.
            floor, inclusive = _naive(after + offset), False
            continue
        # The segment ends at ``transition``; ``wall`` lies beyond its wall times.
        new_offset = _offset(zone, transition)
        old_end = _naive(transition + offset)  # wall time the old segment stops at
        new_start = _naive(transition + new_offset)  # wall time the new one starts at
        if new_offset > offset:
            # Spring forward: wall times [old_end, new_start) do not exist.
            if not cron.is_wildcard and wall < new_start and transition > after:
                return transition
            floor, inclusive = new_start, True
        elif cron.is_wildcard:
            # Fall back, wildcard: every real instant counts, the repeated wall
            # times [new_start, old_end) included.
            floor, inclusive = new_start, True
        else:
            # Fall back, fixed-time: wall times already seen do not run again.
            floor, inclusive = old_end, True
        start, offset = transition, new_offset
    raise _error(cron.expression, f"no run found within {MAX_YEARS} years")


def next_runs(
    expression: str | CronExpression,
    after: datetime,
    tz: str | tzinfo = "UTC",
    *,
    count: int,
) -> list[datetime]:
    """The next ``count`` runs strictly after ``after`` (UTC datetimes)."""
    runs: list[datetime] = []
    for _ in range(count):
        after = next_run(expression, after, tz)
        runs.append(after)
    return runs


def validate(
    expression: str | CronExpression, tz: str | tzinfo = "UTC"
) -> CronExpression:
    """Check an expression and a time zone together, as :meth:`Cron.schedule() <chancy.plugins.cron.Cron.schedule>` does.

    :returns: the parsed expression.
    :raises CronExpressionError: invalid expression, or no run from now on.
    :raises UnknownTimeZoneError: unknown time zone.
    """
    cron = parse(expression)
    next_run(cron, datetime.now(UTC), tz)
    return cron
