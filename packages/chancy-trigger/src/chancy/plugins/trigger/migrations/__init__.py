"""Schema migrations of ``chancy-trigger`` (migration line ``trigger``)."""
