"""Rules over the workflows table, for :attr:`WorkflowPlugin.pruning_rule`."""

from __future__ import annotations

from chancy.rule import ColumnRule, JobRules

__all__ = ["WorkflowRules"]


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

    class Age(JobRules.Age):
        """Seconds since the workflow was created (``created_at``; pushing
        the same workflow again refreshes it). Compares with seconds or a
        :class:`~datetime.timedelta`."""

        __slots__ = ()

    class Name(ColumnRule):
        """The workflow's name."""

        __slots__ = ()
        column = "name"

    class State(ColumnRule):
        """The workflow's state: a string or a ``Workflow.State`` member."""

        __slots__ = ()
        column = "state"

    class CreatedAt(ColumnRule):
        __slots__ = ()
        column = "created_at"

    class UpdatedAt(ColumnRule):
        """When the workflow last changed (a step pushed, its state changed)."""

        __slots__ = ()
        column = "updated_at"

    class ID(JobRules.ID):
        """The workflow id; strings become UUIDs."""

        __slots__ = ()
