"""JSON Schemas of what the API sends and takes, for the OpenAPI document.

Routes refer to them with :func:`ref`; a :class:`~chancy.plugins.web.WebRoute`
lists the named schemas it uses in ``schemas=`` (these core ones are always
in the document). Plugins reuse them, e.g. ``ref("JobTemplate")`` for a stored
job description.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "CORE_SCHEMAS",
    "DATETIME",
    "JOB_STATES",
    "UUID",
    "array",
    "nullable",
    "obj",
    "ref",
]

#: The states of a job.
JOB_STATES: Final = ["pending", "running", "retrying", "succeeded", "failed"]

#: An ISO 8601 date and time.
DATETIME: Final[dict[str, Any]] = {"type": "string", "format": "date-time"}
#: A UUID as a string.
UUID: Final[dict[str, Any]] = {"type": "string", "format": "uuid"}


def ref(name: str) -> dict[str, Any]:
    """A reference to the named schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or ``null``."""
    return {"anyOf": [schema, {"type": "null"}]}


def array(items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A JSON array of ``items``."""
    return {"type": "array", "items": items, **extra}


def obj(
    properties: dict[str, Any],
    *,
    required: list[str] | None = None,
    additional: bool | dict[str, Any] = True,
    **extra: Any,
) -> dict[str, Any]:
    """A JSON object; every property is required unless ``required`` says
    otherwise."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": additional,
        **extra,
    }


_INT32: Final = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_POSITIVE_INT32: Final = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}

#: The named schemas of the built-in routes.
CORE_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "Error": obj(
        {"error": {"type": "string", "description": "What went wrong."}},
        description="Every error answer of the API.",
    ),
    "JobError": obj(
        {
            "attempt": {
                "type": "integer",
                "description": "Attempts the job had used before this run (0-based:"
                " the first run is attempt 0).",
            },
            "traceback": {"type": "string"},
            "lost": {
                "type": "boolean",
                "description": "A lost run: the process running the job died. It"
                " is not counted as an attempt (see meta.lost_runs).",
            },
            "cancelled": {
                "type": "boolean",
                "description": "The job was cancelled.",
            },
        },
        required=["traceback"],
        description="One failed, lost or cancelled run of a job.",
    ),
    "Job": obj(
        {
            "id": UUID,
            "queue": {"type": "string"},
            "func": {"type": "string"},
            "kwargs": {"description": "Keyword arguments (a JSON object)."},
            "limits": array(
                {"type": "object"},
                description="Resource limits: [{t: 'time'|'memory', v: number}].",
            ),
            "meta": {"type": "object"},
            "state": {"type": "string", "enum": JOB_STATES},
            "priority": {"type": "integer"},
            "attempts": {"type": "integer", "description": "Attempts used so far."},
            "max_attempts": {"type": "integer"},
            "taken_by": nullable({"type": "string"}),
            "claim_id": nullable(UUID),
            "created_at": DATETIME,
            "started_at": nullable(DATETIME),
            "completed_at": nullable(DATETIME),
            "scheduled_at": DATETIME,
            "unique_key": nullable({"type": "string"}),
            "errors": array(
                {"anyOf": [ref("JobError"), {}]},
                description="Failed, lost and cancelled runs, oldest first.",
            ),
            "result": {
                "description": "What the job returned, as JSON (any JSON value);"
                " null while it has not finished, when it returned None, or with"
                " `store_result` false.",
            },
            "progress": nullable(ref("JobProgress")),
            "concurrency_key": nullable(
                {
                    "type": "string",
                    "description": "The key the queue's per-key limits"
                    " (`key_concurrency`, `key_rate_limit`) count the job under.",
                }
            ),
            "store_result": {
                "type": "boolean",
                "description": "Whether the job's return value is saved as `result`.",
            },
        },
        required=["id", "queue", "func", "state", "attempts", "max_attempts"],
        description="A stored job: every column of the jobs table.",
    ),
    "JobProgress": obj(
        {
            "done": {"type": "number", "minimum": 0},
            "total": nullable({"type": "number", "minimum": 0}),
            "message": nullable({"type": "string", "maxLength": 1000}),
            "at": {**DATETIME, "description": "When the job reported it."},
        },
        description="The latest progress a running job reported"
        " (`context.set_progress(done, total, message)`); a finished job keeps"
        " its last one.",
    ),
    "JobPage": obj(
        {
            "items": array(ref("Job")),
            "has_more": {"type": "boolean"},
            "next_cursor": nullable(
                {"type": "string", "description": "Pass it as `before`."}
            ),
        },
        description="One page of jobs (with `pagination=true`).",
    ),
    "JobTemplate": obj(
        {
            "func": {"type": "string"},
            "queue": {"type": "string"},
            "kwargs": {"type": "object"},
            "priority": {"type": "integer"},
            "max_attempts": {"type": "integer"},
            "scheduled_at": nullable(DATETIME),
            "limits": array(
                obj({"type_": {"type": "string"}, "value": {"type": "number"}})
            ),
            "unique_key": nullable({"type": "string"}),
            "meta": {"type": "object"},
            "concurrency_key": nullable({"type": "string"}),
            "store_result": {"type": "boolean"},
        },
        required=[
            "func",
            "queue",
            "kwargs",
            "priority",
            "max_attempts",
            "scheduled_at",
            "limits",
            "unique_key",
            "meta",
        ],
        description="A job not pushed yet (a cron schedule's or a workflow step's).",
    ),
    "JobCounts": obj(
        {
            "cap": {"type": "integer"},
            "counts": {
                "type": "object",
                "additionalProperties": {"type": "integer", "minimum": 0},
                "description": "Jobs per state, each counted up to `cap`.",
            },
            "capped": array(
                {"type": "string", "enum": JOB_STATES},
                description="States with more than `cap` jobs.",
            ),
        }
    ),
    "BulkAction": obj(
        {
            "action": {"type": "string", "enum": ["retry", "purge", "cancel"]},
            "ids": array(UUID, minItems=1, maxItems=1000),
        },
        additional=False,
    ),
    "ActionResult": obj(
        {
            "id": UUID,
            "status": {"type": "string", "enum": ["completed", "skipped", "failed"]},
            "message": {"type": "string"},
        }
    ),
    "BulkResult": obj(
        {
            "ok": {"type": "boolean", "description": "False when any failed."},
            "results": array(ref("ActionResult")),
        }
    ),
    "JobActionResult": {
        "allOf": [
            ref("ActionResult"),
            obj({"ok": {"type": "boolean"}}),
        ]
    },
    "Queue": obj(
        {
            "name": {"type": "string"},
            "concurrency": nullable({"type": "integer"}),
            "tags": array({"type": "string"}),
            "state": {"type": "string", "enum": ["active", "paused"]},
            "executor": {"type": "string"},
            "executor_options": {"type": "object"},
            "polling_interval": nullable({"type": "number"}),
            "rate_limit": nullable({"type": "integer"}),
            "rate_limit_window": nullable({"type": "integer"}),
            "resume_at": nullable(DATETIME),
            "eager_polling": {"type": "boolean"},
            "global_concurrency": nullable(
                {
                    "type": "integer",
                    "description": "Most jobs of the queue running at once across"
                    " all workers (null: no limit).",
                }
            ),
            "key_concurrency": nullable(
                {
                    "type": "integer",
                    "description": "Most jobs of one concurrency_key running at"
                    " once across all workers (null: no limit).",
                }
            ),
            "key_rate_limit": nullable(
                {
                    "type": "integer",
                    "description": "Most jobs of one concurrency_key started per"
                    " key_rate_limit_window (null: no limit).",
                }
            ),
            "key_rate_limit_window": nullable(
                {"type": "integer", "description": "Seconds."}
            ),
        },
        description="A queue as stored (Queue.pack(), with the limits always present).",
    ),
    "QueueChanges": obj(
        {
            "name": {"type": "string", "minLength": 1},
            "concurrency": nullable(_POSITIVE_INT32),
            "tags": nullable(
                array(
                    {"type": "string", "maxLength": 500},
                    maxItems=64,
                    description="Regular expressions matched against worker tags;"
                    " null or omitted: every worker; []: none.",
                )
            ),
            "state": {"type": "string", "enum": ["active", "paused"]},
            "executor": {
                "type": "string",
                "description": "process, threaded, async, sub, or a registered"
                " executor's import path.",
            },
            "executor_options": nullable({"type": "object"}),
            "polling_interval": {"type": "number", "minimum": 0.01, "maximum": 86400},
            "rate_limit": nullable(_POSITIVE_INT32),
            "rate_limit_window": nullable(_POSITIVE_INT32),
            "resume_at": nullable(DATETIME),
            "eager_polling": {"type": "boolean"},
            "global_concurrency": nullable(_POSITIVE_INT32),
            "key_concurrency": nullable(_POSITIVE_INT32),
            "key_rate_limit": nullable(_POSITIVE_INT32),
            "key_rate_limit_window": nullable(
                {
                    **_POSITIVE_INT32,
                    "description": "Seconds; set together with key_rate_limit.",
                }
            ),
        },
        required=[],
        additional=False,
        description="Queue settings; omitted ones are kept (or take their"
        " defaults when the queue is new).",
    ),
    "QueueDeleted": obj(
        {
            "success": {"type": "string"},
            "name": {"type": "string"},
            "purge_jobs": {"type": "boolean"},
        }
    ),
    "UndeclaredQueues": {
        "type": "object",
        "additionalProperties": {"type": "integer", "minimum": 1},
        "description": "Queue name → jobs waiting (pending or retrying) in a"
        " queue nobody declared: no worker serves it.",
    },
    "Worker": obj(
        {
            "worker_id": {"type": "string"},
            "tags": array({"type": "string"}),
            "queues": array({"type": "string"}),
            "last_seen": DATETIME,
            "expires_at": DATETIME,
            "is_leader": {"type": "boolean"},
        }
    ),
    "Login": obj(
        {"username": {"type": "string"}, "password": {"type": "string"}},
        required=["username", "password"],
    ),
    "LoggedIn": obj(
        {
            "success": {"type": "string", "const": "Authenticated"},
            "token": {"type": "string", "description": "A bearer token."},
        }
    ),
    "DashboardPage": obj(
        {
            "plugin": {"type": "string"},
            "path": {"type": "string", "description": "Dashboard route."},
            "module": {
                "type": "string",
                "description": "The page's module, relative to the dashboard.",
            },
            "title": nullable({"type": "string"}),
            "nav": {"type": "boolean"},
            "order": {"type": "integer"},
        }
    ),
    "Configuration": obj(
        {
            "plugins": array(
                {"type": "string"}, description="Class names of enabled plugins."
            ),
            "identifiers": array({"type": "string"}),
            "prefix": {"type": "string"},
            "version": {"type": "string"},
            "worker_id": {"type": "string"},
            "user": nullable({"type": "string"}),
            "pages": array(ref("DashboardPage")),
            "routes": array(
                {"type": "string"},
                description="`METHOD /path` of every API route, as in the"
                " OpenAPI document.",
            ),
        }
    ),
    "System": obj(
        {
            "chancy_version": {"type": "string"},
            "web_version": nullable({"type": "string"}),
            "database_version": {"type": "string"},
            "database_version_num": {"type": "integer"},
            "database_full_version": {"type": "string"},
            "database_name": {"type": "string"},
            "prefix": {"type": "string"},
            "notifications": {"type": "boolean"},
            "python_version": {"type": "string"},
            "platform": {"type": "string"},
            "hostname": {"type": "string"},
            "worker_id": {"type": "string"},
        }
    ),
    "PluginInfo": obj(
        {
            "identifier": {"type": "string"},
            "name": {"type": "string"},
            "module": {"type": "string"},
            "distribution": nullable({"type": "string"}),
            "version": nullable({"type": "string"}),
            "scope": {"type": "string"},
            "default": {"type": "boolean"},
            "dependencies": array({"type": "string"}),
            "tables": array({"type": "string"}),
            "migrate_key": nullable({"type": "string"}),
            "migrate_package": nullable({"type": "string"}),
            "api_plugin": nullable({"type": "string"}),
        },
        required=["identifier", "name"],
    ),
}
