"""Queues: named, database-stored configuration that every worker follows.

A :class:`Queue` validates itself when it is built, so the library
(:meth:`Chancy.declare() <chancy.app.Chancy.declare>`), the CLI (``chancy queue declare``), the web API and
the Django admin refuse the same bad settings before anything is written:

* numbers must be finite and fit their columns: ``concurrency``,
  ``rate_limit`` and ``rate_limit_window`` are integers from 1 to
  2,147,483,647 (PostgreSQL ``INTEGER``); ``polling_interval`` is from
  :data:`~chancy.queue.MIN_POLLING_INTERVAL` to
  :data:`~chancy.queue.MAX_POLLING_INTERVAL` seconds;
* strings (name, executor, tags, ``executor_options``) hold no NUL character
  (PostgreSQL cannot store one) and are valid Unicode;
* tag patterns are regular expressions that a worker can match quickly: see
  :func:`~chancy.queue.check_tag_pattern`.

Rows read back from the database (:meth:`Queue.unpack() <chancy.Queue.unpack>`) are taken as stored,
so a row written before these checks existed never breaks listing queues.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import importlib
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from chancy.utils import has_surrogate

__all__ = [
    "MAX_QUEUE_NAME_LENGTH",
    "MAX_TAGS",
    "MAX_TAG_PATTERN_LENGTH",
    "Queue",
    "check_tag_pattern",
]

PROCESS_EXECUTOR = "chancy.executors.process.ProcessExecutor"

#: Largest value of a PostgreSQL ``INTEGER`` column.
MAX_INT4: Final = 2**31 - 1
#: Longest queue name, in characters.
MAX_QUEUE_NAME_LENGTH: Final = 255
#: Longest executor import path, in characters.
MAX_EXECUTOR_LENGTH: Final = 500
#: Shortest and longest ``polling_interval``, in seconds.
MIN_POLLING_INTERVAL: Final = 0.01
MAX_POLLING_INTERVAL: Final = 86_400
#: Most tag patterns one queue may have.
MAX_TAGS: Final = 64
#: Longest tag pattern, in characters.
MAX_TAG_PATTERN_LENGTH: Final = 500
#: Deepest nesting of ``executor_options`` (objects and lists).
MAX_OPTIONS_DEPTH: Final = 32

#: The worker-tag length the cost estimate of :func:`check_tag_pattern` assumes.
_ASSUMED_TAG_LENGTH: Final = 256
#: The most backtracking steps (estimated) one queue's patterns may need:
#: three unbounded repeats in a row.
_MAX_PATTERN_COST: Final = (_ASSUMED_TAG_LENGTH + 1) ** 3

# True while Queue.unpack builds a queue from a stored row (no validation).
_TRUSTED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "chancy_queue_trusted", default=False
)


@contextlib.contextmanager
def _trusted() -> Iterator[None]:
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


# ---------------------------------------------------------------------------
# Tag patterns
# ---------------------------------------------------------------------------

# The regular-expression parser of the standard library (3.11+), imported by
# name: ``sre_parse`` is deprecated and typeshed has no stubs for ``re._parser``.
_sre: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")
_REPEATS: Final = frozenset({_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT})
_BACKREFERENCES: Final = frozenset({_c.GROUPREF, _c.GROUPREF_EXISTS})


class _Catastrophic(Exception):
    pass


class _TooCostly(Exception):
    pass


def _first_literal(items: Any) -> str | None:
    """The character an alternative must start with, if it starts with a literal."""
    for op, av in items:
        if op is _c.LITERAL:
            return chr(av).casefold()  # case-insensitive flags: compare folded
        if op is _c.SUBPATTERN:
            return _first_literal(av[3])
        if op is _c.ATOMIC_GROUP:
            return _first_literal(av)
        return None
    return None


def _deterministic(items: Any) -> bool:
    """Whether every alternative inside ``items`` starts with its own literal
    character and every repeat inside has a fixed count: then text matching
    ``items`` matches it in only one way."""
    for op, av in items:
        if op is _c.BRANCH:
            firsts: list[str] = []
            for alternative in av[1]:
                first = _first_literal(alternative)
                if first is None or not _deterministic(alternative):
                    return False
                firsts.append(first)
            if len(set(firsts)) != len(firsts):
                return False
        elif op in _REPEATS:
            low, high, body = av
            if low != high or not _deterministic(body):
                return False
        elif op is _c.SUBPATTERN:
            if not _deterministic(av[3]):
                return False
        elif op is _c.ATOMIC_GROUP:
            if not _deterministic(av):
                return False
        elif op in (_c.ASSERT, _c.ASSERT_NOT) and not _deterministic(av[1]):
            return False
    return True


def _cost(items: Any) -> int:
    """An upper estimate of the backtracking steps ``items`` needs against a
    tag of :data:`_ASSUMED_TAG_LENGTH` characters (a product over the
    sequence, a sum over alternatives)."""
    total = 1
    for op, av in items:
        total *= _node_cost(op, av)
        if total > _MAX_PATTERN_COST:
            raise _TooCostly
    return total


def _node_cost(op: Any, av: Any) -> int:
    if op in _REPEATS:
        low, high, body = av
        inner = _cost(body)
        if low == high:  # a fixed count: the body's cost, ``low`` times over
            result = 1
            if inner > 1:
                for _ in range(low):
                    result *= inner
                    if result > _MAX_PATTERN_COST:
                        raise _TooCostly
            return result
        if high > 1:
            # The body repeats a variable number of times: if it can match the
            # same text in several ways, or with several lengths, the ways to
            # split a tag between iterations grow exponentially.
            width_low, width_high = body.getwidth()
            if width_low != width_high or not _deterministic(body):
                raise _Catastrophic
        top = min(int(high), _ASSUMED_TAG_LENGTH)
        return (max(top - int(low), 0) + 1) * inner
    if op is _c.SUBPATTERN:
        return _cost(av[3])
    if op is _c.ATOMIC_GROUP:
        return _cost(av)
    if op is _c.BRANCH:
        return sum(_cost(alternative) for alternative in av[1])
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        return _cost(av[1])
    if op in _BACKREFERENCES:
        raise ValueError("backreferences and conditional groups are not supported")
    return 1


def _pattern_cost(pattern: str) -> int:
    """Check one tag pattern; its estimated cost (see :func:`check_tag_pattern`)."""
    if not isinstance(pattern, str):
        raise TypeError(
            f"Queue tags must be strings (regular expressions), got {pattern!r}"
        )
    _check_text(pattern, "tag pattern", MAX_TAG_PATTERN_LENGTH)
    try:
        re.compile(pattern)
        parsed = _sre.parse(pattern)
    except re.error as exc:
        raise ValueError(
            f"Queue tag {pattern!r} is not a valid regular expression ({exc})"
        ) from None
    try:
        return _cost(parsed)
    except _Catastrophic:
        raise ValueError(
            f"Queue tag {pattern!r} could backtrack catastrophically: a repeated"
            " group contains another repeat, an optional part, or alternatives"
            " that can match the same text (like '(a+)+' or '(a|ab)*'); use a"
            " single repeat such as '[0-9a-f-]+' instead"
        ) from None
    except _TooCostly:
        raise ValueError(
            f"Queue tag {pattern!r} could take too long to match: it has more"
            " than three unbounded repeats in a row (or repeats multiplied by a"
            " count); simplify it"
        ) from None
    except ValueError as exc:
        raise ValueError(f"Queue tag {pattern!r}: {exc}") from None
    except RecursionError:
        raise ValueError(f"Queue tag {pattern!r} is nested too deeply") from None


def check_tag_pattern(pattern: str) -> None:
    """Raise :class:`ValueError` unless ``pattern`` is a tag pattern a worker
    can match quickly.

    Workers match a queue's tags with Python's backtracking :mod:`re` engine,
    in their event loop. A pattern is refused when it

    * is not a string, is empty of meaning to PostgreSQL (holds NUL), is longer
      than :data:`~chancy.queue.MAX_TAG_PATTERN_LENGTH` characters, or does not compile;
    * repeats a group a variable number of times when that group can match
      the same text in more than one way: a repeat inside a repeat
      (``(a+)+``, ``(\\d*)*``, ``(x?)+``), or alternatives that do not each
      start with a different literal character (``(a|ab)+``, ``(.a|b.)*``).
      These backtrack exponentially: ``worker_id=.{8}([0-9a-f-]+)+!`` froze a
      worker for seconds, doubling with every character;
    * would need more steps than three unbounded repeats in a row against a
      256-character tag (``.*a.*b.*c`` is fine, ``.*.*.*.*`` is not);
    * uses backreferences or conditional groups.

    What users write is accepted: ``.*``, ``gpu``, ``hostname=web\\d+``,
    ``(eu|us)-west-\\d+``, ``region=(eu|us)(-\\d)?``, ``python=3\\.1[0-9].*``,
    ``(gpu|cpu)+``.
    """
    _pattern_cost(pattern)


# ---------------------------------------------------------------------------
# Field checks
# ---------------------------------------------------------------------------


def _check_text(value: str, what: str, max_length: int) -> None:
    if len(value) > max_length:
        raise ValueError(
            f"Queue {what} must be at most {max_length} characters, got {len(value)}"
        )
    if "\x00" in value:
        raise ValueError(f"Queue {what} must not contain NUL characters: {value!r}")
    if has_surrogate(value):
        raise ValueError(
            f"Queue {what} is not valid Unicode (it holds a lone surrogate): {value!r}"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tags(value: Any) -> set[str]:
    if value is None:
        return {".*"}
    if isinstance(value, str):
        return {value}
    try:
        return set(value)
    except TypeError:
        raise TypeError(
            f"Queue tags must be a set of regular expressions, got {value!r}"
        ) from None


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"Queue resume_at must be a datetime or None, got {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _state(value: str) -> Queue.State:
    try:
        return Queue.State(value)
    except ValueError:
        raise ValueError(
            f"Queue state must be 'active' or 'paused', got {value!r}"
        ) from None


def _executor_options(value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"Queue executor_options must be a mapping of keyword arguments, got {value!r}"
        )
    return dict(value)


def _validate_name(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"Queue name must be a non-empty string, got {value!r}")
    if _TRUSTED.get():
        return
    _check_text(value, "name", MAX_QUEUE_NAME_LENGTH)


def _validate_count(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """``concurrency``, ``rate_limit``, ``rate_limit_window``: None or 1..2^31-1."""
    if value is None or _TRUSTED.get():
        return
    if not _is_int(value) or not 1 <= value <= MAX_INT4:
        raise ValueError(
            f"Queue {attribute.name} must be an integer from 1 to {MAX_INT4}"
            f" or None, got {value!r}"
        )


def _validate_polling_interval(
    inst: Any, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if _TRUSTED.get():
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not MIN_POLLING_INTERVAL <= value <= MAX_POLLING_INTERVAL
    ):
        raise ValueError(
            f"Queue polling_interval must be a number of seconds from"
            f" {MIN_POLLING_INTERVAL} to {MAX_POLLING_INTERVAL}, got {value!r}"
        )


def _validate_tags(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if _TRUSTED.get():
        return
    if len(value) > MAX_TAGS:
        raise ValueError(f"Queue tags: at most {MAX_TAGS} patterns, got {len(value)}")
    total = 0
    for pattern in sorted(value, key=str):
        total += _pattern_cost(pattern)
    if total > _MAX_PATTERN_COST:
        raise ValueError(
            "Queue tags could take too long to match together; use fewer or"
            " simpler patterns"
        )


def _validate_executor(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if _TRUSTED.get():
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"Queue executor must be an import path (a string), got {value!r}"
        )
    _check_text(value, "executor", MAX_EXECUTOR_LENGTH)


def _validate_options(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """What JSON allows but PostgreSQL's ``jsonb`` refuses: NaN and infinite
    numbers, NUL characters; and nesting deep enough to exhaust the stack.
    (Values that are not JSON at all are refused by :meth:`Chancy.declare`.)"""
    if _TRUSTED.get():
        return
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(
                f"Queue executor_options must hold finite numbers, got {item!r}"
            )
        if isinstance(item, str):
            _check_text(item, "executor_options string", 1 << 20)
        elif isinstance(item, Mapping | list | tuple):
            if depth >= MAX_OPTIONS_DEPTH:
                raise ValueError(
                    f"Queue executor_options are nested more than"
                    f" {MAX_OPTIONS_DEPTH} levels deep"
                )
            if isinstance(item, Mapping):
                for key, child in item.items():
                    if isinstance(key, str):
                        _check_text(key, "executor_options key", 1 << 20)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def _validate_bool(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"Queue {attribute.name} must be True or False, got {value!r}")


# ---------------------------------------------------------------------------
# The queue
# ---------------------------------------------------------------------------


#: The cluster-wide and per-key limits (core migration v3).
_LIMITS = (
    "global_concurrency",
    "key_concurrency",
    "key_rate_limit",
    "key_rate_limit_window",
)


@attrs.frozen(slots=True)
class Queue:
    """A queue's configuration.

    Declare it with :meth:`Chancy.declare`; workers whose tags match pick it
    up (and pick up later changes) without restarting. Every setting is
    validated here (see the module documentation): a bad value raises
    :class:`ValueError`, a value of the wrong type :class:`TypeError`, both
    naming the setting.
    """

    class State(str, enum.Enum):
        """Whether workers fetch the queue's jobs (``active``) or not (``paused``)."""

        ACTIVE = "active"
        PAUSED = "paused"

    #: The queue's globally unique name (at most 255 characters).
    name: str = attrs.field(validator=_validate_name)
    #: Maximum simultaneous jobs *per worker*; ``None`` uses the executor's default.
    concurrency: int | None = attrs.field(
        default=None, kw_only=True, validator=_validate_count
    )
    #: Regular expressions; a worker serves the queue when any matches any
    #: worker tag (see :func:`~chancy.queue.check_tag_pattern` for what is allowed).
    tags: set[str] = attrs.field(
        factory=lambda: {".*"}, kw_only=True, converter=_tags, validator=_validate_tags
    )
    #: ``active`` or ``paused``.
    state: Queue.State = attrs.field(
        default=State.ACTIVE, kw_only=True, converter=_state
    )
    #: Import path of the executor class running this queue's jobs.
    executor: str = attrs.field(
        default=PROCESS_EXECUTOR, kw_only=True, validator=_validate_executor
    )
    #: Keyword arguments for the executor's constructor (JSON-serialisable).
    executor_options: dict[str, Any] = attrs.field(
        factory=dict,
        kw_only=True,
        converter=_executor_options,
        validator=_validate_options,
    )
    #: Seconds between polls when nothing wakes the queue (0.01 to 86400).
    polling_interval: int | float = attrs.field(
        default=5, kw_only=True, validator=_validate_polling_interval
    )
    #: Maximum jobs started per ``rate_limit_window`` across all workers.
    rate_limit: int | None = attrs.field(
        default=None, kw_only=True, validator=_validate_count
    )
    #: Length of the rate-limit window in seconds.
    rate_limit_window: int | None = attrs.field(
        default=None, kw_only=True, validator=_validate_count
    )
    #: A paused queue becomes active again after this time.
    resume_at: datetime | None = attrs.field(
        default=None, kw_only=True, converter=_aware
    )
    #: Poll again as soon as a job of this queue finishes. (Without it, a
    #: finished run still fetches at once when the last fetch filled every
    #: free slot, so a backlog drains without waiting for the interval.)
    eager_polling: bool = attrs.field(
        default=False, kw_only=True, validator=_validate_bool
    )
    #: At most this many jobs of the queue run at once across *all* workers
    #: (``concurrency`` is per worker). Enforced in the fetch itself.
    global_concurrency: int | None = attrs.field(
        default=None, kw_only=True, validator=_validate_count
    )
    #: At most this many jobs with the same ``concurrency_key`` run at once,
    #: across all workers.
    key_concurrency: int | None = attrs.field(
        default=None, kw_only=True, validator=_validate_count
    )
    #: At most this many jobs with the same ``concurrency_key`` start per
    #: ``key_rate_limit_window`` seconds, across all workers.
    key_rate_limit: int | None = attrs.field(
        default=None, kw_only=True, validator=_validate_count
    )
    #: Length of the per-key rate-limit window in seconds.
    key_rate_limit_window: int | None = attrs.field(
        default=None, kw_only=True, validator=_validate_count
    )

    def __attrs_post_init__(self) -> None:
        if _TRUSTED.get():
            return
        if (self.rate_limit is None) != (self.rate_limit_window is None):
            raise ValueError(
                f"Queue {self.name!r}: rate_limit and rate_limit_window must be set together"
            )
        if (self.key_rate_limit is None) != (self.key_rate_limit_window is None):
            raise ValueError(
                f"Queue {self.name!r}: key_rate_limit and key_rate_limit_window must be"
                " set together"
            )

    @property
    def has_limits(self) -> bool:
        """Whether the queue has a cluster-wide or per-key limit (fetched with
        ``{prefix}fetch_limited``)."""
        return (
            self.global_concurrency is not None
            or self.key_concurrency is not None
            or self.key_rate_limit is not None
        )

    @classmethod
    def unpack(cls, data: dict[str, Any]) -> Queue:
        """Build from a queues-table row; missing optional columns are tolerated.

        The row is taken as stored (it was validated when it was declared), so
        that one row from an older version, or written with SQL, cannot stop
        every worker from listing the queues.
        """
        with _trusted():
            return cls(
                data["name"],
                concurrency=data.get("concurrency"),
                tags=set(data["tags"]) if data.get("tags") is not None else {".*"},
                state=data.get("state") or "active",
                executor=data.get("executor") or PROCESS_EXECUTOR,
                executor_options=data.get("executor_options") or {},
                polling_interval=data.get("polling_interval") or 5,
                rate_limit=data.get("rate_limit"),
                rate_limit_window=data.get("rate_limit_window"),
                resume_at=data.get("resume_at"),
                eager_polling=bool(data.get("eager_polling", False)),
                global_concurrency=data.get("global_concurrency"),
                key_concurrency=data.get("key_concurrency"),
                key_rate_limit=data.get("key_rate_limit"),
                key_rate_limit_window=data.get("key_rate_limit_window"),
            )

    def pack(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "tags": sorted(self.tags),
            "state": self.state.value,
            "executor": self.executor,
            "executor_options": self.executor_options,
            "polling_interval": self.polling_interval,
            "rate_limit": self.rate_limit,
            "rate_limit_window": self.rate_limit_window,
            "resume_at": self.resume_at.isoformat() if self.resume_at else None,
            "eager_polling": self.eager_polling,
            # The limits only when set, so a queue without them packs exactly
            # as in the original.
            **{
                name: getattr(self, name)
                for name in _LIMITS
                if getattr(self, name) is not None
            },
        }
