"""Alias of :mod:`chancy.rule`, so ``from chancy.plugins.rule import Age`` works.

See :mod:`chancy.rule` for the rules DSL. This is a plain module inside the
``chancy.plugins`` namespace package (which has no ``__init__.py``).
"""

from __future__ import annotations

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

__all__ = [
    "ID",
    "Age",
    "AndCondition",
    "Attempts",
    "BaseCondition",
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
