"""Schema migrations of the ``workflow`` line (tables ``{prefix}workflows`` and
``{prefix}workflow_steps``)."""
