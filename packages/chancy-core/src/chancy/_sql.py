"""SQL text of the core, rendered once per table prefix.

The prefix is validated to be a plain identifier, so it is safe to paste into
quoted identifiers; every *value* is a bind parameter.
"""

from __future__ import annotations

import re
from functools import cache

from chancy.job import FETCHED_COLUMNS

PREFIX_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")

JOB_COLUMNS = (
    "id, queue, func, kwargs, limits, meta, state, priority, attempts, max_attempts,"
    " taken_by, claim_id, created_at, started_at, completed_at, scheduled_at,"
    " unique_key, errors, concurrency_key, store_result, result, progress"
)

UNIQUE_PREDICATE = "unique_key IS NOT NULL AND state NOT IN ('succeeded', 'failed')"


class Statements:
    """Every core statement for one prefix."""

    def __init__(self, prefix: str) -> None:
        if not PREFIX_RE.match(prefix):
            raise ValueError(
                f"invalid table prefix {prefix!r}: use letters, digits and underscores"
                " (starting with a letter or underscore), at most 41 characters"
            )
        jobs = f'"{prefix}jobs"'
        queues = f'"{prefix}queues"'
        workers = f'"{prefix}workers"'
        leader = f'"{prefix}leader"'
        rate = f'"{prefix}queue_rate_limits"'
        self.prefix = prefix
        self.jobs, self.queues, self.workers, self.leader, self.rate = (
            jobs,
            queues,
            workers,
            leader,
            rate,
        )
        self.channel = f"{prefix}events"

        # Insert a batch of jobs given as parallel arrays. The one-row subquery
        # sends the queue notifications in the same statement (delivered on
        # commit). Existing unfinished jobs with the same unique key are kept
        # untouched and their id is returned instead.
        insert_tail = (
            f" ON CONFLICT (unique_key) WHERE {UNIQUE_PREDICATE}"
            f" DO UPDATE SET unique_key = EXCLUDED.unique_key"
            f" RETURNING id, unique_key"
        )
        insert_source = (
            "SELECT u.* FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::jsonb[],"
            " %s::jsonb[], %s::jsonb[], %s::int[], %s::int[], %s::timestamptz[],"
            " %s::text[], %s::text[], %s::boolean[]) AS u"
        )
        insert_head = (
            f"INSERT INTO {jobs} (id, queue, func, kwargs, limits, meta, priority,"
            f" max_attempts, scheduled_at, unique_key, concurrency_key, store_result) "
        )
        notify_many = (
            ", (SELECT count(pg_notify(%s, p)) FROM unnest(%s::text[]) AS p) AS n"
        )
        # Jobs with a unique key: ON CONFLICT keeps the unfinished holder.
        self.insert_jobs_notify = (
            insert_head + insert_source + notify_many + insert_tail
        )
        self.insert_jobs = insert_head + insert_source + insert_tail
        # Jobs without one cannot conflict: a plain INSERT, which spares the
        # server a speculative insertion and the client a RETURNING.
        self.insert_keyless_notify = insert_head + insert_source + notify_many
        self.insert_keyless = insert_head + insert_source
        # One job with scalar parameters: binding a dozen one-element arrays
        # costs more client CPU than the statement's round trip.
        one_source = (
            "SELECT %s, %s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s::int, %s::int,"
            " %s::timestamptz, %s::text, %s::text, %s::boolean"
        )
        one_notify = " FROM (SELECT pg_notify(%s, %s)) AS n"
        self.insert_job_notify = insert_head + one_source + one_notify + insert_tail
        self.insert_job = insert_head + one_source + insert_tail
        self.insert_keyless_job_notify = insert_head + one_source + one_notify
        self.insert_keyless_job = insert_head + one_source
        self.copy_jobs = (
            f"COPY {jobs} (id, queue, func, kwargs, limits, meta, priority, max_attempts,"
            f" scheduled_at) FROM STDIN (FORMAT binary)"
        )

        self.get_job = f"SELECT {JOB_COLUMNS} FROM {jobs} WHERE id = %s"
        self.get_jobs = f"SELECT {JOB_COLUMNS} FROM {jobs} WHERE id = ANY(%s::uuid[])"
        self.get_job_states = f"SELECT id, state FROM {jobs} WHERE id = ANY(%s::uuid[])"

        self.cancel_job = (
            f"UPDATE {jobs} SET state = 'failed', completed_at = NOW(), claim_id = NULL,"
            f" errors = errors || jsonb_build_array(jsonb_build_object("
            f"'attempt', attempts, 'traceback', 'chancy.errors.JobCancelledError:"
            f" the job was cancelled', 'cancelled', true))"
            f" WHERE id = %s AND state NOT IN ('succeeded', 'failed') RETURNING id, state"
        )
        self.purge_jobs = f"DELETE FROM {jobs} WHERE id = ANY(%s::uuid[]) RETURNING id"
        self.retry_jobs = (
            f"UPDATE {jobs} SET state = 'retrying', attempts = 0, started_at = NULL,"
            f" completed_at = NULL, scheduled_at = NOW(), claim_id = NULL, taken_by = NULL,"
            f" meta = meta - 'lost_runs'"
            f" WHERE id = ANY(%s::uuid[]) AND state <> 'running' RETURNING id, queue"
        )

        queue_cols = (
            "name, state, concurrency, tags, executor, executor_options,"
            " polling_interval, rate_limit, rate_limit_window, resume_at, eager_polling,"
            " global_concurrency, key_concurrency, key_rate_limit, key_rate_limit_window"
        )
        queue_vals = ", ".join(["%s"] * 15)
        self.declare_queue = (
            f"INSERT INTO {queues} ({queue_cols}) VALUES ({queue_vals})"
            f" ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING *"
        )
        self.upsert_queue = (
            f"INSERT INTO {queues} ({queue_cols}) VALUES ({queue_vals})"
            f" ON CONFLICT (name) DO UPDATE SET"
            f" state = EXCLUDED.state, concurrency = EXCLUDED.concurrency,"
            f" tags = EXCLUDED.tags, executor = EXCLUDED.executor,"
            f" executor_options = EXCLUDED.executor_options,"
            f" polling_interval = EXCLUDED.polling_interval,"
            f" rate_limit = EXCLUDED.rate_limit,"
            f" rate_limit_window = EXCLUDED.rate_limit_window,"
            f" resume_at = EXCLUDED.resume_at, eager_polling = EXCLUDED.eager_polling,"
            f" global_concurrency = EXCLUDED.global_concurrency,"
            f" key_concurrency = EXCLUDED.key_concurrency,"
            f" key_rate_limit = EXCLUDED.key_rate_limit,"
            f" key_rate_limit_window = EXCLUDED.key_rate_limit_window,"
            f" updated_at = NOW()"
            f" RETURNING *"
        )
        self.get_all_queues = f"SELECT * FROM {queues} ORDER BY name"
        self.declared_queues = f"SELECT name FROM {queues} WHERE name = ANY(%s::text[])"
        self.undeclared_queues = (
            f"SELECT j.queue, count(*) FROM {jobs} j"
            f" WHERE j.state IN ('pending', 'retrying')"
            f" AND NOT EXISTS (SELECT 1 FROM {queues} q WHERE q.name = j.queue)"
            f" GROUP BY j.queue ORDER BY j.queue"
        )
        self.get_queue = f"SELECT * FROM {queues} WHERE name = %s"
        self.delete_queue = f"DELETE FROM {queues} WHERE name = %s RETURNING name"
        self.delete_queue_jobs = f"DELETE FROM {jobs} WHERE queue = %s"
        self.pause_queue = (
            f"UPDATE {queues} SET state = 'paused', resume_at = %s, updated_at = NOW()"
            f" WHERE name = %s RETURNING name"
        )
        self.resume_queue = (
            f"UPDATE {queues} SET state = 'active', resume_at = NULL, updated_at = NOW()"
            f" WHERE name = %s RETURNING name"
        )
        self.get_all_workers = (
            f"SELECT w.worker_id, w.tags, w.queues, w.last_seen, w.expires_at,"
            f" (l.worker_id IS NOT NULL) AS is_leader"
            f" FROM {workers} w LEFT JOIN {leader} l"
            f" ON l.worker_id = w.worker_id AND l.expires_at > NOW()"
            f" ORDER BY w.worker_id"
        )
        self.notify = "SELECT pg_notify(%s, %s)"
        self.notify_many = "SELECT count(pg_notify(%s, p)) FROM unnest(%s::text[]) AS p"

        # -- worker ----------------------------------------------------------------
        fetch_select = (
            f"SELECT id FROM {jobs}"
            f" WHERE queue = %(queue)s AND state IN ('pending', 'retrying')"
            f" AND attempts < max_attempts AND scheduled_at <= NOW()"
            # A pause committed before this statement stops it, whenever the
            # worker hears of it.
            f" AND NOT EXISTS (SELECT 1 FROM {queues} q WHERE q.name = %(queue)s"
            f" AND q.state = 'paused')"
            f" ORDER BY priority DESC, id ASC LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
        )
        # Claiming jobs commits asynchronously (synchronous_commit off for
        # this transaction only): a claim lost in a PostgreSQL crash just
        # makes the job runnable again (at least once), while saving no WAL
        # flush per fetch. Outcomes are still committed synchronously.
        # Each fetch claims its jobs under one fresh random claim the worker
        # makes (chancy.utils.random_uuid), so the reply need not carry it (or the queue and
        # state, also known): outcomes are fenced by (job id, claim).
        self.fetch_jobs = (
            f"WITH selected AS ({fetch_select}),"
            f" async_commit AS (SELECT set_config('synchronous_commit', 'off', true) AS s)"
            f" UPDATE {jobs} j SET state = 'running', started_at = NOW(),"
            f" taken_by = %(worker_id)s, claim_id = %(claim)s"
            f" FROM selected, async_commit"
            f" WHERE j.id = selected.id AND async_commit.s IS NOT NULL"
            f" RETURNING {', '.join(f'j.{c}' for c in FETCHED_COLUMNS)}"
        )
        # Rows a lost fetch reply claimed for a worker that does not run them.
        self.release_orphans = (
            f"UPDATE {jobs} SET state = CASE WHEN attempts > 0 THEN 'retrying'"
            f" ELSE 'pending' END, taken_by = NULL, claim_id = NULL, started_at = NULL"
            f" WHERE queue = %s AND taken_by = %s AND state = 'running'"
            f" AND NOT (id = ANY(%s::uuid[])) RETURNING id"
        )
        self.rate_limit_take = (
            f"INSERT INTO {rate} AS r (queue, window_start, count) VALUES (%(queue)s,"
            f" (floor(extract(epoch FROM NOW()) / %(window)s) * %(window)s)::bigint, 0)"
            f" ON CONFLICT (queue) DO UPDATE SET"
            f" count = CASE WHEN r.window_start = EXCLUDED.window_start THEN r.count ELSE 0 END,"
            f" window_start = EXCLUDED.window_start"
            f" RETURNING count"
        )
        self.rate_limit_add = f"UPDATE {rate} SET count = count + %s WHERE queue = %s"
        # Saving finished runs, fenced by the execution claim.
        # Saves a batch given as one JSON array of objects (see Worker._save).
        self.update_jobs = (
            f"UPDATE {jobs} j SET state = u.s, started_at = u.b, completed_at = u.c,"
            f" scheduled_at = u.t, attempts = u.a, errors = u.e, meta = u.m,"
            f" max_attempts = u.x, result = u.r, progress = COALESCE(u.p, j.progress)"
            f" FROM jsonb_to_recordset(%s::jsonb) AS u(i uuid, k uuid, s text,"
            f" b timestamptz, c timestamptz, t timestamptz, a int, e jsonb, m jsonb,"
            f" x int, r jsonb, p jsonb)"
            f" WHERE j.id = u.i AND j.claim_id = u.k"
            f" RETURNING j.id"
        )
        # The latest progress of running jobs, fenced by their claim.
        self.update_progress = (
            f"UPDATE {jobs} j SET progress = u.p"
            f" FROM jsonb_to_recordset(%s::jsonb) AS u(i uuid, k uuid, p jsonb)"
            f" WHERE j.id = u.i AND j.claim_id = u.k AND j.state = 'running'"
        )
        # A queue with cluster-wide or per-key limits (core migration v3).
        self.fetch_limited = (
            f'SELECT * FROM "{prefix}fetch_limited"(%(queue)s, %(limit)s, %(worker_id)s,'
            f" %(global_concurrency)s, %(key_concurrency)s, %(key_rate_limit)s,"
            f" %(key_rate_limit_window)s)"
        )
        self.heartbeat_expire = f"DELETE FROM {workers} WHERE expires_at < NOW()"
        self.heartbeat = (
            f"INSERT INTO {workers} (worker_id, tags, queues, last_seen, expires_at)"
            f" VALUES (%s, %s, %s, NOW(), NOW() + make_interval(secs => %s))"
            f" ON CONFLICT (worker_id) DO UPDATE SET tags = EXCLUDED.tags,"
            f" queues = EXCLUDED.queues, last_seen = EXCLUDED.last_seen,"
            f" expires_at = EXCLUDED.expires_at"
        )
        self.remove_worker = f"DELETE FROM {workers} WHERE worker_id = %s"


@cache
def statements(prefix: str) -> Statements:
    return Statements(prefix)
