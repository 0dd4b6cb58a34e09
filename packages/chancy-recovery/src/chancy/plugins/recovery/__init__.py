"""Recovery for Chancy: the jobs of workers that died are run again.

A worker that crashes, is killed or loses its machine leaves its jobs in the
``running`` state. :class:`Recovery` runs on the elected leader (it needs
``chancy-leadership``) and, every ``poll_interval`` seconds, takes back every
running job whose worker has not sent a heartbeat for ``heartbeat_timeout``
seconds. The lost run does not use up one of the job's attempts: it is
recorded in the job's ``errors`` as ``chancy.errors.WorkerLostError``
(marked ``"lost": true``), counted in ``meta["lost_runs"]``, and the job runs
again, so a default job (``max_attempts=1``) whose worker was killed still
succeeds. After ``max_lost_runs`` (3) lost runs the job fails instead: a job
that kills its worker every time does not loop forever. Its execution claim
is cleared, so if the presumed-dead worker comes back and reports a result,
that result is discarded rather than overwriting the job. A live worker
never has its jobs recovered: the leader never takes its own, and after a
database crash restart nothing is taken until every worker had one heartbeat
timeout to reconnect.

Installed, it is enabled by default. To change its settings::

    from chancy import Chancy, Worker
    from chancy.plugins.leadership import Leadership
    from chancy.plugins.recovery import Recovery

    chancy = Chancy(
        "postgresql://localhost/app",
        plugins=[
            Leadership(),
            Recovery(poll_interval=30, heartbeat_timeout=60, max_lost_runs=5),
        ],
    )
    worker = Worker(chancy, heartbeat_poll_interval=10, heartbeat_timeout=60)

``heartbeat_timeout=None`` (the default) uses the leader worker's own
``heartbeat_timeout`` (90 seconds unless set). A pass can also be run by hand:
``await recovery.recover(worker, chancy)`` returns the number of jobs
recovered.
"""

from __future__ import annotations

from chancy.plugins.recovery.plugin import Recovery

__all__ = ["Recovery"]
