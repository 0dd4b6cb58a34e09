"""Integrations of Chancy with other frameworks, each an optional extra.

* :mod:`chancy.contrib.django`: Django models, admin pages and a dashboard
  login for Django superusers (``pip install "chancy-core[django]"``).

Nothing here is imported by the rest of ``chancy``.
"""

from __future__ import annotations
