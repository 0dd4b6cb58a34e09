"""Schema migrations of ``chancy-cron`` (migration line ``cron``)."""
