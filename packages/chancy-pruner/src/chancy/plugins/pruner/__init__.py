"""The pruner: removes finished jobs from the jobs table, on the leader.

Finished jobs are kept with their errors, attempts and timings until the
pruner removes them. :class:`Pruner` runs on the elected leader (it needs
``chancy-leadership``) and, every ``poll_interval`` seconds, deletes the jobs
that are ``succeeded`` or ``failed`` and match its rule. Pending, running and
retrying jobs are never removed.

Installed, it is enabled by default and keeps finished jobs for **one day**
(the rule ``Age() > 86400``). ``Age`` counts seconds since the job was
*created* (pushed), not since it finished. To choose another rule::

    from chancy import Chancy
    from chancy.plugins.leadership import Leadership
    from chancy.plugins.pruner import Pruner
    from chancy.plugins.rule import Age, Queue

    chancy = Chancy(
        "postgresql://localhost/app",
        plugins=[
            Leadership(),
            Pruner(
                (Queue() == "reports") & (Age() > 60 * 60),  # parenthesise each comparison
                maximum_to_prune=50_000,
                poll_interval=300,
            ),
        ],
    )

``Pruner.Rules`` is :class:`chancy.rule.JobRules` (``Pruner.Rules.Age()``,
``Pruner.Rules.Queue()``, ...). Each pass deletes in batches, each in its own
short transaction, up to ``maximum_to_prune`` rows, then calls every plugin's
``cleanup`` so that plugins trim their own tables. ``await
pruner.prune(chancy, cursor)`` prunes on your own cursor (inside your
transaction, if one is open) and returns the number of jobs removed.
"""

from __future__ import annotations

from chancy.plugins.pruner.plugin import Pruner

__all__ = ["Pruner"]
