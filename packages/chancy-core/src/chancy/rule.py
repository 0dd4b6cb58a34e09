"""Rules: a small DSL that selects rows, compiled to SQL.

The pruner, reprioritize and workflow plugins take a *rule* that says which
rows they act on. A rule is built from column references (:class:`Rule`) and
Python operators::

    from chancy.rule import Age, JobRules, Queue, State

    # Jobs older than one day:
    Age() > 86400

    # ...on the "reports" queue that failed (parenthesise each comparison!):
    (Age() > 86400) & (Queue() == "reports") & (State() == "failed")

    # The same with the namespace class, as the plugins expose it:
    (JobRules.Queue() == "reports") | (JobRules.Queue().is_in(["a", "b"]))

``from chancy.plugins.rule import Age`` is an alias of this module.

Building blocks
---------------

* :class:`Rule` ``(field)`` references a column; any table works
  (``Rule("created_at")``). Comparing it with ``==``, ``!=``, ``<``, ``<=``,
  ``>``, ``>=`` gives a :class:`Condition`. ``rule == None`` and
  ``rule != None`` become ``IS NULL`` / ``IS NOT NULL``. The right-hand side may
  be another rule (``CompletedAt() > ScheduledAt()``) to compare two columns.
* :meth:`Rule.contains` matches a case-insensitive substring: the value is
  taken literally (``%``, ``_`` and ``\\`` are escaped), so
  ``Job().contains("50%_off")`` only matches that text.
  :meth:`Rule.ilike` takes a raw ``ILIKE`` pattern with its wildcards.
* :meth:`Rule.is_in` (``= ANY(...)``), :meth:`Rule.is_null` and
  :meth:`Rule.is_not_null`.
* Conditions combine with ``&`` (:class:`AndCondition`), ``|``
  (:class:`OrCondition`) and ``~`` (:class:`Not`), rendered as
  ``(left) AND (right)``, ``(left) OR (right)`` and ``NOT (condition)``.
* :class:`JobRules` holds presets over the jobs table: ``Age()`` (seconds since
  ``created_at``), ``Queue()``, ``Job()`` (the ``func`` column), ``State()``,
  ``CreatedAt()``, ``ScheduledAt()``, ``CompletedAt()``, ``ID()``,
  ``Priority()`` and ``Attempts()``. Each is also importable from this module
  directly. (``Queue`` and ``Job`` here are rules, not :class:`chancy.Queue`
  or :class:`chancy.Job`.)

Values are converted before use: enum members become their value (so
``State() == QueuedJob.State.FAILED`` and ``State() == "failed"`` are the
same), a :class:`~datetime.timedelta` compared with ``Age()`` becomes seconds,
and ``ID()`` turns strings and references into :class:`uuid.UUID`. Use
timezone-aware datetimes: PostgreSQL reads naive ones in the session's time
zone.

Rendering
---------

Every condition renders two equivalent ways:

* ``condition.to_sql()`` returns a :class:`psycopg.sql.Composable` with each
  value inlined as a quoted client-side literal (the original contract).
  Execute it as it is, or inside a statement run **without** parameters: a
  ``%`` inside a literal would be taken for a placeholder.
* ``condition.compile()`` (or :func:`compile_rule` for any :class:`SQLAble`)
  returns ``(query, params)``: ``%s`` placeholders and the values as bind
  parameters. Plugins use this form; the statement text does not depend on
  the values, and parameters come first to last as in the text::

      query, params = compile_rule((Age() > 60) & (Queue() == "default"))
      cursor.execute(
          sql.SQL("DELETE FROM {jobs} WHERE {rule} LIMIT %s").format(
              jobs=sql.Identifier("chancy_jobs"), rule=query
          ),
          [*params, 1000],
      )

The precedence pitfall
----------------------

``&`` and ``|`` bind more tightly than comparisons in Python, so
``Age() > 60 & Queue() == "x"`` means ``Age() > (60 & Queue()) == "x"``.
Such expressions raise :class:`TypeError` with a hint; write
``(Age() > 60) & (Queue() == "x")``. Conditions have no truth value either, so
``and``/``or`` and chained comparisons (``10 < Age() < 60``) raise instead of
silently keeping one half. Because ``==`` is overloaded, rules are unhashable.
"""

from __future__ import annotations

import enum
import re
import uuid
from abc import abstractmethod
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, runtime_checkable

from psycopg import sql

__all__ = [
    "ID",
    "Age",
    "AndCondition",
    "Attempts",
    "BaseCondition",
    "ColumnRule",
    "CompletedAt",
    "Condition",
    "CreatedAt",
    "Job",
    "JobRules",
    "Not",
    "OrCondition",
    "Priority",
    "Queue",
    "Rule",
    "SQLAble",
    "ScheduledAt",
    "State",
    "compile_rule",
]

_PRECEDENCE_HINT: Final = (
    "In Python, '&' and '|' bind more tightly than comparisons, so "
    "`Age() > 60 & Queue() == 'x'` is read as `Age() > (60 & Queue()) == 'x'`. "
    "Parenthesise every comparison: `(Age() > 60) & (Queue() == 'x')`."
)

_NO_TRUTH_VALUE: Final = (
    "A rule condition has no truth value. Combine conditions with '&', '|' and "
    "'~' rather than 'and', 'or' and 'not', and do not chain comparisons: "
    "write `(Age() > 10) & (Age() < 60)`, not `10 < Age() < 60`."
)

#: Keyword operators accepted by :class:`Condition` (after upper-casing).
_KEYWORD_OPS: Final = frozenset(
    {
        "LIKE",
        "NOT LIKE",
        "ILIKE",
        "NOT ILIKE",
        "SIMILAR TO",
        "NOT SIMILAR TO",
        "IS DISTINCT FROM",
        "IS NOT DISTINCT FROM",
    }
)
#: Operators with their own shape; ``{}`` are the field and the value.
_TEMPLATE_OPS: Final = {
    "= ANY": "{} = ANY({})",
    "IS NULL": "{} IS NULL",
    "IS NOT NULL": "{} IS NOT NULL",
}
#: Symbolic operators (``=``, ``<>``, ``@>``, ``~*``…); never ``%`` or comments.
_SYMBOL_OP: Final = re.compile(r"[<>=!~*@#&|^?+-]+")


def _escape_percent(query: sql.Composable) -> sql.Composable:
    """``query`` made safe to embed in a statement executed with parameters."""
    text = query.as_string()
    if "%" not in text:
        return query
    return sql.SQL(text.replace("%", "%%"))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _precedence_error(left: object, op: str, right: object) -> TypeError:
    return TypeError(
        f"cannot combine {left!r} {op} {right!r}: only conditions (the result of "
        f"comparing a rule, e.g. `Queue() == 'x'`) can be combined with "
        f"'&', '|' and '~'. {_PRECEDENCE_HINT}"
    )


@runtime_checkable
class SQLAble(Protocol):
    """Anything that renders to SQL: rules, conditions or your own objects.

    A plugin taking a rule accepts any object with a ``to_sql()`` method
    returning a :class:`psycopg.sql.Composable`::

        class Everything:
            def to_sql(self) -> sql.Composable:
                return sql.SQL("TRUE")

        Pruner(Everything())
    """

    __slots__ = ()

    def to_sql(self) -> sql.Composable:
        """The SQL for this object, values inlined as literals."""
        ...


def _operand_sql(operand: Any, params: list[Any] | None) -> sql.Composable:
    """SQL for a field or a value; appends to ``params`` in parameterised mode."""
    if isinstance(operand, BaseCondition):
        return operand.render(params)
    if isinstance(operand, sql.Composable):
        return operand if params is None else _escape_percent(operand)
    if isinstance(operand, SQLAble):
        query = operand.to_sql()
        return query if params is None else _escape_percent(query)
    if params is None:
        return sql.Literal(operand)
    params.append(operand)
    return sql.Placeholder()


def _as_condition(value: object, op: str, other: object) -> SQLAble:
    """``value`` if it may be combined with ``&``/``|``; TypeError otherwise."""
    if isinstance(value, Rule) or not isinstance(value, SQLAble):
        raise _precedence_error(other, op, value)
    return value


class Rule(SQLAble):
    """A reference to a column; compare it to get a :class:`Condition`.

    ``Rule("queue") == "default"`` renders ``"queue" = 'default'``; works on any
    table. Subclasses may override :meth:`~Rule.to_sql` to select an expression
    (see :class:`JobRules.Age`) and :meth:`coerce` to convert values.

    >>> (Rule("priority") >= 5) & Rule("completed_at").is_null()
    AndCondition(Condition(Rule('priority'), '>=', 5), Condition(Rule('completed_at'), 'IS NULL'))
    """

    __slots__ = ("field",)
    # ``==`` builds a Condition, so equal-by-value hashing would be wrong.
    __hash__ = None  # type: ignore[assignment]

    def __init__(self, field: str) -> None:
        #: Column name (quoted as an identifier by :meth:`~Rule.to_sql`).
        self.field = field

    def __repr__(self) -> str:
        return f"Rule({self.field!r})"

    def to_sql(self) -> sql.Composable:
        """The column as a quoted identifier (``"queue"``)."""
        return sql.Identifier(self.field)

    def coerce(self, value: Any) -> Any:
        """Convert a Python value before it is compared with this rule.

        Enum members become their value; other values pass through (psycopg
        adapts them). Rules and other SQL objects are never converted.
        """
        if isinstance(value, enum.Enum):
            return value.value
        return value

    def _compare(self, op: str, value: Any) -> Condition:
        if not isinstance(value, SQLAble | sql.Composable):
            value = self.coerce(value)
        return Condition(self, op, value)

    def __eq__(self, other: object) -> Condition:  # type: ignore[override]
        if other is None:
            return self.is_null()
        return self._compare("=", other)

    def __ne__(self, other: object) -> Condition:  # type: ignore[override]
        if other is None:
            return self.is_not_null()
        return self._compare("!=", other)

    def __lt__(self, other: Any) -> Condition:
        return self._compare("<", other)

    def __le__(self, other: Any) -> Condition:
        return self._compare("<=", other)

    def __gt__(self, other: Any) -> Condition:
        return self._compare(">", other)

    def __ge__(self, other: Any) -> Condition:
        return self._compare(">=", other)

    def contains(self, value: str) -> Condition:
        """Case-insensitive substring match; ``value`` is taken literally.

        ``Job().contains("report")`` renders ``"func" ILIKE '%report%'``;
        ``%``, ``_`` and ``\\`` in ``value`` are escaped.
        """
        if not isinstance(value, str):
            raise TypeError(f"contains() takes a str, not {type(value).__name__}")
        return Condition(self, "ILIKE", f"%{_escape_like(value)}%")

    def ilike(self, pattern: str) -> Condition:
        """Case-insensitive ``ILIKE`` with a raw pattern (``%`` and ``_`` are
        wildcards, ``\\`` escapes): ``Queue().ilike("report_%")``."""
        return Condition(self, "ILIKE", pattern)

    def is_in(self, values: Iterable[Any]) -> Condition:
        """Equal to any of ``values``, rendered ``field = ANY(array)``.

        ``Queue().is_in(["a", "b"])``; an empty iterable matches nothing.
        Values are converted with :meth:`coerce` and sent as one array, so
        they must share a type matching the column's.
        """
        if isinstance(values, str | bytes):
            raise TypeError(
                "is_in() takes an iterable of values, not a single string; "
                "use == to compare with one value"
            )
        return Condition(self, "= ANY", [self.coerce(v) for v in values])

    def is_null(self) -> Condition:
        """``field IS NULL`` (also ``rule == None``)."""
        return Condition(self, "IS NULL")

    def is_not_null(self) -> Condition:
        """``field IS NOT NULL`` (also ``rule != None``)."""
        return Condition(self, "IS NOT NULL")

    if not TYPE_CHECKING:
        # A bare rule is a value, not a condition: these are the precedence
        # trap. Hidden from type checkers so they flag `60 & Queue()` too.
        def __and__(self, other: object) -> BaseCondition:
            raise _precedence_error(self, "&", other)

        def __rand__(self, other: object) -> BaseCondition:
            raise _precedence_error(other, "&", self)

        def __or__(self, other: object) -> BaseCondition:
            raise _precedence_error(self, "|", other)

        def __ror__(self, other: object) -> BaseCondition:
            raise _precedence_error(other, "|", self)

        def __invert__(self) -> BaseCondition:
            raise TypeError(
                f"cannot negate {self!r}: '~' applies to conditions, e.g. "
                f"`~(Queue() == 'x')`. {_PRECEDENCE_HINT}"
            )


class BaseCondition(SQLAble):
    """A boolean SQL expression; combine with ``&``, ``|`` and ``~``.

    Subclasses implement :meth:`render`; :meth:`to_sql` and :meth:`compile`
    both come from it, so the two forms always agree.
    """

    __slots__ = ()

    @abstractmethod
    def render(self, params: list[Any] | None) -> sql.Composable:
        """The SQL for this condition.

        :param params: ``None`` to inline values as literals; otherwise a list
            that each value is appended to, in order, while a ``%s``
            placeholder takes its place in the SQL.
        """

    def to_sql(self) -> sql.Composable:
        """The SQL with values inlined as quoted literals."""
        return self.render(None)

    def compile(self) -> tuple[sql.Composable, list[Any]]:
        """``(query, params)``: the SQL with ``%s`` placeholders and the values.

        >>> query, params = (Queue() == "default").compile()
        >>> params
        ['default']
        """
        params: list[Any] = []
        return self.render(params), params

    def __and__(self, other: SQLAble) -> AndCondition:
        return AndCondition(self, _as_condition(other, "&", self))

    def __rand__(self, other: SQLAble) -> AndCondition:
        return AndCondition(_as_condition(other, "&", self), self)

    def __or__(self, other: SQLAble) -> OrCondition:
        return OrCondition(self, _as_condition(other, "|", self))

    def __ror__(self, other: SQLAble) -> OrCondition:
        return OrCondition(_as_condition(other, "|", self), self)

    def __invert__(self) -> Not:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(_NO_TRUTH_VALUE)


class Condition(BaseCondition):
    """``field op value``, e.g. ``Condition(Rule("queue"), "=", "default")``.

    ``field`` is a :class:`Rule`, a column name or any SQL object. ``value`` is
    a Python value (a literal in :meth:`~BaseCondition.to_sql`, a bind
    parameter in :meth:`~BaseCondition.compile`) or a rule/SQL object rendered as SQL. ``op`` is a
    comparison operator (``=``, ``!=``, ``<``, ``@>``…), ``LIKE``/``ILIKE``
    (and ``NOT``, ``SIMILAR TO``), ``IS [NOT] DISTINCT FROM``, ``= ANY`` (the
    value is a list) or ``IS NULL``/``IS NOT NULL`` (no value). Anything else
    raises :class:`ValueError`, so an operator can never inject SQL.
    """

    __slots__ = ("field", "op", "value")

    def __init__(
        self, field: Rule | str | sql.Composable | SQLAble, op: str, value: Any = None
    ) -> None:
        normalised = " ".join(op.upper().split())
        if not (
            normalised in _KEYWORD_OPS
            or normalised in _TEMPLATE_OPS
            or (_SYMBOL_OP.fullmatch(normalised) and "--" not in normalised)
        ):
            raise ValueError(f"unsupported operator in a rule condition: {op!r}")
        #: The left-hand side (a :class:`Rule` for conditions built by rules).
        self.field: Rule | sql.Composable | SQLAble = (
            sql.Identifier(field) if isinstance(field, str) else field
        )
        #: The normalised operator.
        self.op: str = normalised
        #: The right-hand side (ignored by ``IS NULL``/``IS NOT NULL``).
        self.value: Any = value

    def __repr__(self) -> str:
        if self.op in ("IS NULL", "IS NOT NULL"):
            return f"Condition({self.field!r}, {self.op!r})"
        return f"Condition({self.field!r}, {self.op!r}, {self.value!r})"

    def render(self, params: list[Any] | None) -> sql.Composable:
        field = _operand_sql(self.field, params)
        if self.op in ("IS NULL", "IS NOT NULL"):
            return sql.SQL(_TEMPLATE_OPS[self.op]).format(field)
        value = self.value
        if self.op == "= ANY" and not isinstance(value, SQLAble | sql.Composable):
            value = list(value)
        template = _TEMPLATE_OPS.get(self.op, f"{{}} {self.op} {{}}")
        return sql.SQL(template).format(field, _operand_sql(value, params))


class AndCondition(BaseCondition):
    """Both conditions hold: ``(left) AND (right)``; built by ``a & b``."""

    __slots__ = ("left", "right")

    def __init__(self, left: SQLAble, right: SQLAble) -> None:
        self.left = _as_condition(left, "&", right)
        self.right = _as_condition(right, "&", left)

    def __repr__(self) -> str:
        return f"AndCondition({self.left!r}, {self.right!r})"

    def render(self, params: list[Any] | None) -> sql.Composable:
        return sql.SQL("({}) AND ({})").format(
            _operand_sql(self.left, params), _operand_sql(self.right, params)
        )


class OrCondition(BaseCondition):
    """Either condition holds: ``(left) OR (right)``; built by ``a | b``."""

    __slots__ = ("left", "right")

    def __init__(self, left: SQLAble, right: SQLAble) -> None:
        self.left = _as_condition(left, "|", right)
        self.right = _as_condition(right, "|", left)

    def __repr__(self) -> str:
        return f"OrCondition({self.left!r}, {self.right!r})"

    def render(self, params: list[Any] | None) -> sql.Composable:
        return sql.SQL("({}) OR ({})").format(
            _operand_sql(self.left, params), _operand_sql(self.right, params)
        )


class Not(BaseCondition):
    """The condition does not hold: ``NOT (condition)``; built by ``~cond``.

    As in SQL, a row where the condition is NULL (e.g. a NULL column) matches
    neither the condition nor its negation.
    """

    __slots__ = ("condition",)

    def __init__(self, condition: SQLAble) -> None:
        if isinstance(condition, Rule) or not isinstance(condition, SQLAble):
            raise TypeError(
                f"cannot negate {condition!r}: Not() takes a condition. "
                f"{_PRECEDENCE_HINT}"
            )
        self.condition = condition

    def __repr__(self) -> str:
        return f"Not({self.condition!r})"

    def render(self, params: list[Any] | None) -> sql.Composable:
        return sql.SQL("NOT ({})").format(_operand_sql(self.condition, params))


def compile_rule(rule: SQLAble) -> tuple[sql.Composable, list[Any]]:
    """``(query, params)`` for any rule a plugin was given.

    Conditions from this module compile to ``%s`` placeholders plus their
    values (:meth:`BaseCondition.compile`). Other :class:`SQLAble` objects have
    only ``to_sql()``: their SQL is used as it is (with ``%`` doubled so it can
    sit in a parameterised statement) and ``params`` is empty. A bare
    :class:`Rule` is a column, not a condition, and raises :class:`TypeError`.
    """
    if isinstance(rule, BaseCondition):
        return rule.compile()
    if isinstance(rule, Rule) or not isinstance(rule, SQLAble):
        raise TypeError(
            f"{rule!r} is not a condition; compare a rule to build one, "
            f"e.g. `Age() > 86400`"
        )
    return _escape_percent(rule.to_sql()), []


class ColumnRule(Rule):
    """Base of preset rules: a subclass names its ``column`` and takes no
    arguments. Plugins use it for presets over their own tables."""

    __slots__ = ()
    column: ClassVar[str]

    def __init__(self) -> None:
        super().__init__(self.column)

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}()"


_JobColumn = ColumnRule  # the former private name


class JobRules:
    """Presets over the jobs table, for the pruner and reprioritize plugins.

    Reachable as ``Pruner.Rules`` and ``Reprioritize.Rules``; each preset is
    also importable from :mod:`chancy.rule` on its own::

        Pruner.Rules.Age() > 86400
        (JobRules.State() == QueuedJob.State.FAILED) & (JobRules.Attempts() >= 3)
    """

    class Age(ColumnRule):
        """Seconds since the job was created (``created_at``, not completion).

        Compares with numbers of seconds or :class:`~datetime.timedelta`:
        ``Age() > timedelta(days=1)`` is ``Age() > 86400``.
        """

        __slots__ = ()
        column = "age"

        def to_sql(self) -> sql.Composable:
            return sql.SQL("EXTRACT(EPOCH FROM (NOW() - created_at))")

        def coerce(self, value: Any) -> Any:
            if isinstance(value, timedelta):
                return value.total_seconds()
            return super().coerce(value)

    class Queue(ColumnRule):
        """The queue name (``queue``)."""

        __slots__ = ()
        column = "queue"

    class Job(ColumnRule):
        """The job's importable function name (``func``)."""

        __slots__ = ()
        column = "func"

    class State(ColumnRule):
        """The job state (``state``); compare with a string or a
        :class:`chancy.job.QueuedJob.State` member."""

        __slots__ = ()
        column = "state"

    class CreatedAt(ColumnRule):
        """When the job was pushed (``created_at``)."""

        __slots__ = ()
        column = "created_at"

    class ScheduledAt(ColumnRule):
        """When the job may run (``scheduled_at``)."""

        __slots__ = ()
        column = "scheduled_at"

    class CompletedAt(ColumnRule):
        """When the job finished (``completed_at``; NULL until then)."""

        __slots__ = ()
        column = "completed_at"

    class ID(ColumnRule):
        """The job id (``id``); strings and references become UUIDs."""

        __slots__ = ()
        column = "id"

        def coerce(self, value: Any) -> Any:
            value = super().coerce(value)
            if value is None or isinstance(value, uuid.UUID):
                return value
            return uuid.UUID(str(value))

    class Priority(ColumnRule):
        """The job priority (``priority``); higher runs first."""

        __slots__ = ()
        column = "priority"

    class Attempts(ColumnRule):
        """How many times the job has been run (``attempts``)."""

        __slots__ = ()
        column = "attempts"


Age = JobRules.Age
Queue = JobRules.Queue
Job = JobRules.Job
State = JobRules.State
CreatedAt = JobRules.CreatedAt
ScheduledAt = JobRules.ScheduledAt
CompletedAt = JobRules.CompletedAt
ID = JobRules.ID
Priority = JobRules.Priority
Attempts = JobRules.Attempts
