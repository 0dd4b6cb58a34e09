"""Schema migrations of ``chancy-web`` (migration line ``web``)."""
