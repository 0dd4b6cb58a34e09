"""Leader election for Chancy workers.

Some work must happen in one place only: pruning old jobs, recovering the jobs
of dead workers, firing workflows. :class:`Leadership` elects one worker of the
cluster as the leader, with nothing but a lease row in PostgreSQL; plugins with
``PluginScope.LEADER`` (and loops that ``await self.wait_for_leader(worker)``)
run only there.

Installed, it is enabled by default. To change its settings, pass an instance::

    from chancy import Chancy
    from chancy.plugins.leadership import Leadership

    chancy = Chancy(
        "postgresql://localhost/app",
        plugins=[Leadership(poll_interval=30, timeout=60)],
    )

A worker tries to take the lease as soon as it starts, then every
``poll_interval`` seconds (default 60); the leader renews it on the same
schedule. A lease lasts ``timeout`` seconds (default 120, at least
``poll_interval``). When the leader stops it gives the lease up and another
worker leads within moments; when it dies, another worker leads once the lease
expires, after about ``timeout`` seconds. A leader that cannot renew its lease
(database unreachable, process stalled) stops believing it leads before the
lease expires, and a renewal only applies while the lease still names the
worker, so two workers never lead at once.

:class:`ImmediateLeadership` makes every worker the leader at once, without an
election; it is meant for tests with a single worker.
"""

from __future__ import annotations

from chancy.plugins.leadership.plugin import ImmediateLeadership, Leadership

__all__ = ["ImmediateLeadership", "Leadership"]
