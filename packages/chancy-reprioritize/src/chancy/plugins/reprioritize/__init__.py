"""Reprioritize: waiting jobs gain priority over time, on the leader.

A busy queue runs its highest-priority jobs first, so low-priority jobs can
wait forever. :class:`Reprioritize` raises the priority of ``pending`` and
``retrying`` jobs that match a rule, a little on every pass, until a worker
takes them. It runs on the elected leader only (it needs
``chancy-leadership``) and is never enabled by default::

    from chancy import Chancy
    from chancy.plugins.leadership import Leadership
    from chancy.plugins.reprioritize import Reprioritize
    from chancy.plugins.rule import Age, Queue

    chancy = Chancy(
        "postgresql://localhost/app",
        plugins=[
            Leadership(),
            # Jobs of the "reports" queue waiting for more than ten minutes
            # gain 1 priority every five minutes (parenthesise each comparison).
            Reprioritize(
                (Age() > 600) & (Queue() == "reports"),
                check_interval=300,
                priority_increase=1,
            ),
        ],
    )

``Reprioritize.Rules`` is :class:`chancy.rule.JobRules`. Defaults:
``check_interval=300`` seconds, ``priority_increase=1``, ``batch_size=1000``;
the rule has no default. A pass updates the matching jobs in id order, in
batches of ``batch_size`` (each in its own short transaction, locked rows
skipped), and raises each job once per pass. ``await
plugin.reprioritize(chancy)`` runs one pass and returns the number of jobs
raised; every pass sends ``reprioritize.done`` (``{"elapsed", "rows"}``).
"""

from __future__ import annotations

from chancy.plugins.reprioritize.plugin import Reprioritize

__all__ = ["Reprioritize"]
