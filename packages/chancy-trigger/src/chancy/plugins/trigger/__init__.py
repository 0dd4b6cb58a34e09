"""Database triggers for Chancy: push a job whenever a table changes.

Installed, the plugin is enabled by default; ``chancy.migrate()`` creates its
``{prefix}triggers`` table. Triggers are managed from any process, with or
without a worker::

    from chancy import Chancy, job
    from chancy.plugins.trigger import Trigger

    @job(queue="orders")
    async def sync_orders(*, context) -> None:
        print(context.meta["trigger"])  # operation, timestamp, table, ...

    async with Chancy("postgresql://localhost/app") as chancy:
        await chancy.migrate()
        trigger_id = await Trigger.register_trigger(
            chancy,
            table_name="orders",
            operations=["INSERT", "UPDATE"],
            job_template=sync_orders,
        )
        await Trigger.disable_trigger(chancy, trigger_id)
        await Trigger.enable_trigger(chancy, trigger_id)
        print(await Trigger.get_triggers(chancy))
        await Trigger.unregister_trigger(chancy, trigger_id)

Each statement on the table that runs one of the operations pushes one job
(statement-level trigger: a 100-row ``INSERT`` pushes one job), in the
statement's transaction, and wakes the workers with ``queue.pushed``. The
job's ``meta["trigger"]`` holds ``operation``, ``timestamp``, ``table_name``,
``schema_name``, ``trigger_name`` and ``trigger_id``.

Migrating the plugin down, or ``chancy.migrate(to_version=0)``, drops every
trigger it installed before its table and functions.
"""

from __future__ import annotations

from chancy.plugins.trigger.plugin import (
    OPERATIONS,
    Trigger,
    TriggerConfig,
    UnknownTriggerError,
)

__all__ = ["OPERATIONS", "Trigger", "TriggerConfig", "UnknownTriggerError"]
