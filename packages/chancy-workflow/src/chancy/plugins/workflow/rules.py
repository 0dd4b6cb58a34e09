"""Rules over the workflows table, for :attr:`WorkflowPlugin.pruning_rule`."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, ClassVar

from psycopg import sql

from chancy.rule import Rule

__all__ = ["WorkflowRules"]


class _WorkflowColumn(Rule):
    __slots__ = ()
    column: ClassVar[str]

    def __init__(self) -> None:
        super().__init__(self.column)

    def __repr__(self) -> str:
        return f"WorkflowRules.{type(self).__name__}()"


class WorkflowRules:
    """Presets over the ``{prefix}workflows`` table (``WorkflowPlugin.Rules``)::

        WorkflowPlugin(pruning_rule=WorkflowPlugin.Rules.Age() > 7 * 86400)
        WorkflowPlugin(
            pruning_rule=(WorkflowRules.Age() > 3600)
            & (WorkflowRules.State() == "completed")
        )

    Combine them with ``&``, ``|`` and ``~`` like every :mod:`chancy.rule`
    condition (parenthesise each comparison).
    """

    class Age(_WorkflowColumn):
        """Seconds since the workflow was created (``created_at``; pushing
        the same workflow again refreshes it). Compares with seconds or a
        :class:`~datetime.timedelta`."""

        __slots__ = ()
        column = "age"

        def to_sql(self) -> sql.Composable:
            return sql.SQL("EXTRACT(EPOCH FROM (NOW() - created_at))")

        def coerce(self, value: Any) -> Any:
            if isinstance(value, timedelta):
                return value.total_seconds()
            return super().coerce(value)

    class Name(_WorkflowColumn):
        """The workflow's name."""

        __slots__ = ()
        column = "name"

    class State(_WorkflowColumn):
        """The workflow's state: a string or a ``Workflow.State`` member."""

        __slots__ = ()
        column = "state"

    class CreatedAt(_WorkflowColumn):
        __slots__ = ()
        column = "created_at"

    class UpdatedAt(_WorkflowColumn):
        """When the workflow last changed (a step pushed, its state changed)."""

        __slots__ = ()
        column = "updated_at"

    class ID(_WorkflowColumn):
        """The workflow id; strings become UUIDs."""

        __slots__ = ()
        column = "id"

        def coerce(self, value: Any) -> Any:
            value = super().coerce(value)
            if value is None or isinstance(value, uuid.UUID):
                return value
            return uuid.UUID(str(value))
