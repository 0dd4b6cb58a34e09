"""Schema migrations of ``chancy-metrics`` (migration line ``metrics``)."""
