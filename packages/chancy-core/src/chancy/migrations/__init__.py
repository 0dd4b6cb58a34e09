"""Core's migration line (key ``chancy``)."""
