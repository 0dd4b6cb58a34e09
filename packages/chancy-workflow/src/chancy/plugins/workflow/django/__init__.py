"""Workflows in Django (app label ``chancy_workflow``).

Needs ``pip install "chancy-workflow[django]"``; add the app next to Chancy's::

    INSTALLED_APPS = [
        ...,
        "chancy.contrib.django",
        "chancy.plugins.workflow.django",
    ]

:mod:`chancy.plugins.workflow.django.models` has unmanaged models
``Workflow`` and ``WorkflowStep`` over the ``{CHANCY_PREFIX}workflows`` and
``{CHANCY_PREFIX}workflow_steps`` tables (``workflow.steps`` gives a
workflow's steps). The admin lists workflows with their steps inline; it is
read-only apart from deleting workflows. Create workflows with
:meth:`chancy.plugins.workflow.WorkflowPlugin.push`.
"""

from __future__ import annotations
