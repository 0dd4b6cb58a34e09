// One job: every field, limits, its progress (a bar while it runs, the last
// report once it finished), its result, kwargs/meta, its failed attempts and
// lost runs, actions.
//
// Attempts are counted from 1 everywhere on this page ("Attempt 1 of 3"),
// while each stored error records `attempt`: the attempts used before that
// run (0 for the first). A lost run (`lost: true`: the process running the
// job died) is not an attempt: it is shown apart and counted in
// meta.lost_runs.

import { api, p } from "../api.js";
import { confirmDialog } from "../components/dialog.js";
import { jsonBlock } from "../components/json.js";
import { progressView } from "../components/progress.js";
import { emptyState, errorBox, kvList, loading, pageHeader, section, stateBadge, table, toast } from "../components/ui.js";
import { h, link, replace, seg } from "../lib/dom.js";
import { jobState, limitValue, normLimit, num, shortId, timeFull } from "../lib/format.js";

const ACTIVE = ["pending", "running", "retrying"];
/** How often a running job is reloaded (its progress is saved at most once a second). */
const RUNNING_REFRESH_MS = 2000;
/** How often a pending or retrying job is reloaded. */
const WAITING_REFRESH_MS = 5000;

export default async function mount(view, ctx) {
  const id = ctx.params.id;
  ctx.setTitle(`Job ${shortId(id)}`);
  const body = h("div", {}, loading());
  view.append(body);
  let job = null;
  let lastJson = "";
  let lastProgress = "";
  let progressHost = null;

  async function load() {
    try {
      job = await api.get(`/api/v1/jobs/${p(id)}`, null, { signal: ctx.signal });
      // A new progress report alone redraws only the progress card, so what
      // the reader opened or selected elsewhere stays as it was.
      const { progress, ...rest } = job;
      const json = JSON.stringify(rest);
      const progressJson = JSON.stringify(progress ?? null);
      if (json === lastJson) {
        if (progressJson !== lastProgress && progressHost) {
          lastProgress = progressJson;
          replace(progressHost, progressBody(job));
        }
        return;
      }
      lastJson = json;
      lastProgress = progressJson;
      draw();
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err.status === 404) {
        replace(body, pageHeader("Job not found", { crumbs: [["/jobs/pending", "Jobs"], [null, shortId(id)]] }),
          emptyState("This job does not exist", "It may have been purged or pruned.", link("/jobs/pending", "Back to jobs", { class: "btn" })));
        return;
      }
      replace(body, pageHeader(`Job ${shortId(id)}`), errorBox(err, { title: "Could not load the job", retry: load }));
    }
  }

  async function act(kind) {
    const labels = { retry: "Retry", cancel: "Cancel", delete: "Delete" };
    if (kind !== "retry") {
      const ok = await confirmDialog({
        title: `${labels[kind]} this job?`,
        message: kind === "delete"
          ? "The job is removed from the database. This cannot be undone."
          : "A pending job will never run and a running one is interrupted. It ends as failed (cancelled).",
        confirmLabel: kind === "delete" ? "Delete job" : "Cancel job",
        danger: true,
      });
      if (!ok) return;
    }
    try {
      if (kind === "delete") {
        await api.del(`/api/v1/jobs/${p(id)}`);
        toast("Job deleted", "ok");
        ctx.navigate(`/jobs/${job?.state || "pending"}`);
        return;
      }
      await api.post(`/api/v1/jobs/${p(id)}/${kind}`, {});
      toast(kind === "retry" ? "Job queued for retry" : "Job cancelled", "ok");
      lastJson = "";
      await load();
    } catch (err) {
      toast(`${labels[kind]} failed: ${err.message}`, "error", 6000);
    }
  }

  function draw() {
    const shown = jobState(job);
    const limits = Array.isArray(job.limits) ? job.limits.map(normLimit) : [];
    const errors = Array.isArray(job.errors) ? job.errors : [];
    const actions = [
      h("button", { type: "button", class: "btn", disabled: job.state === "running", title: job.state === "running" ? "Running jobs cannot be retried" : null, onclick: () => act("retry") }, "Retry"),
      h("button", { type: "button", class: "btn", disabled: !ACTIVE.includes(job.state), onclick: () => act("cancel") }, "Cancel"),
      h("button", { type: "button", class: "btn danger", onclick: () => act("delete") }, "Delete"),
    ];
    replace(
      body,
      pageHeader(job.func || "Job", {
        subtitle: [stateBadge(shown), " ", h("span", { class: "mono muted" }, String(job.id))],
        crumbs: [["/jobs/" + (job.state || "pending"), `${job.state || "pending"} jobs`], [null, shortId(job.id)]],
        actions,
      }),
      showsProgress(job)
        ? h("section", { class: "card job-progress", "aria-live": "polite" },
            h("h2", {}, job.state === "running" ? "Progress" : "Last progress"),
            progressHost = h("div", {}, progressBody(job)))
        : (progressHost = null),
      h("div", { class: "two-col" },
        section("Job", kvList([
          ["ID", h("span", { class: "mono" }, String(job.id))],
          ["Function", h("span", { class: "mono" }, job.func)],
          ["Queue", job.queue ? link(`/queues/${seg(job.queue)}`, job.queue) : null],
          ["State", stateBadge(shown)],
          ["Attempts", attemptsText(job)],
          lostRuns(job) ? ["Lost runs", h("span", { title: "Runs whose process died (the worker was killed, or a child process crashed). They do not count as attempts." }, `${num(lostRuns(job))} (not counted as attempts)`)] : null,
          ["Priority", num(job.priority ?? 0)],
          ["Unique key", job.unique_key ? h("code", {}, job.unique_key) : null],
          ["Concurrency key", job.concurrency_key !== null && job.concurrency_key !== undefined
            ? [h("code", { class: "concurrency-key", title: "The queue's per-key limits count this job under this key." }, String(job.concurrency_key)),
                " ", link(`/jobs?filters=${encodeURIComponent(JSON.stringify([["concurrency_key", "=", String(job.concurrency_key)]]))}`,
                  "jobs with this key", { class: "small key-jobs" })]
            : null],
          ["Taken by", job.taken_by ? link(`/workers/${seg(job.taken_by)}`, job.taken_by, { class: "mono" }) : null],
          ["Claim", job.claim_id ? h("span", { class: "mono small" }, String(job.claim_id)) : null],
          job.meta && job.meta.workflow_id ? ["Workflow", ctx.hasPage("/workflows/:id")
            ? link(`/workflows/${seg(job.meta.workflow_id)}`, String(job.meta.workflow_id), { class: "mono" })
            : h("span", { class: "mono" }, String(job.meta.workflow_id))] : null,
        ])),
        section("Timing", kvList([
          ["Created", timeFull(job.created_at)],
          ["Scheduled", timeFull(job.scheduled_at)],
          ["Started", timeFull(job.started_at)],
          ["Completed", timeFull(job.completed_at)],
        ]),
        h("h3", {}, "Limits"),
        limits.length
          ? table([
              { label: "Type", render: (l) => l.type },
              { label: "Value", render: (l) => limitValue(l) },
            ], limits, { caption: "Limits" })
          : h("p", { class: "muted" }, "No limits."))),
      h("section", { class: "card job-result" }, h("h2", {}, "Result"), resultBody(job)),
      h("div", { class: "two-col" },
        section("Arguments (kwargs)", jsonBlock(job.kwargs ?? {}, { label: "Keyword arguments" })),
        section("Meta", jsonBlock(job.meta ?? {}, { label: "Meta" }))),
      section(errorTitle(errors), errors.length
        ? h("ol", { class: "errors" }, errors.map((e, i) => errorItem(e, i, errors.length, job)))
        : h("p", { class: "muted" }, "No errors recorded.")),
    );
  }

  await load();
  let waited = 0;
  ctx.every(RUNNING_REFRESH_MS, async () => {
    if (!job || !ACTIVE.includes(job.state) || document.querySelector("dialog[open]")) return;
    waited += RUNNING_REFRESH_MS;
    if (job.state !== "running" && waited < WAITING_REFRESH_MS) return;
    waited = 0;
    await load();
  });
}

/** A progress card for running jobs, and for finished ones that reported some. */
function showsProgress(job) {
  return job.state === "running" || (job.progress !== null && job.progress !== undefined);
}

function progressBody(job) {
  const view = progressView(job.progress, { label: "Job progress" });
  if (view) return view;
  return h("p", { class: "muted" }, "No progress reported yet (a job reports it with context.set_progress()).");
}

/** The stored return value, pretty-printed (as text), or why there is none. */
function resultBody(job) {
  const result = job.result === undefined ? null : job.result;
  if (job.store_result === false) return h("p", { class: "muted" }, "Not stored: this job has store_result off.");
  if (result !== null) return jsonBlock(result, { label: "Result" });
  if (ACTIVE.includes(job.state)) return h("p", { class: "muted" }, "Not finished yet.");
  if (job.state === "failed") return h("p", { class: "muted" }, "None: the job did not succeed.");
  return h("p", { class: "muted" }, "None: the job returned nothing.");
}

/** "1 of 3 used", with what happens next. */
function attemptsText(job) {
  const used = Number(job.attempts ?? 0);
  const max = Number(job.max_attempts ?? 1);
  const text = `${num(used)} of ${num(max)} used`;
  if (job.state === "retrying") return `${text} — attempt ${num(used + 1)} is next`;
  if (job.state === "running") return `${text} — attempt ${num(used + 1)} is running`;
  return text;
}

/** Lost runs recorded on the job (meta.lost_runs, else its lost errors). */
function lostRuns(job) {
  const counted = Number(job?.meta?.lost_runs);
  if (Number.isFinite(counted) && counted > 0) return counted;
  return (Array.isArray(job.errors) ? job.errors : []).filter((e) => e && e.lost === true).length;
}

function errorTitle(errors) {
  const lost = errors.filter((e) => e && e.lost === true).length;
  const cancelled = errors.filter((e) => e && e.cancelled === true).length;
  const failed = errors.length - lost - cancelled;
  const parts = [];
  if (failed) parts.push(`${failed} failed attempt${failed === 1 ? "" : "s"}`);
  if (lost) parts.push(`${lost} lost run${lost === 1 ? "" : "s"}`);
  if (cancelled) parts.push("cancelled");
  return parts.length ? `Errors: ${parts.join(", ")}` : "Errors";
}

/** One stored error: a failed attempt, a lost run or the cancellation. */
function errorItem(e, i, count, job) {
  const entry = e && typeof e === "object" ? e : { traceback: String(e) };
  const { attempt, traceback, cancelled, lost, ...rest } = entry;
  const tb = String(traceback ?? "").trim();
  const last = tb.split("\n").pop() || "(no traceback)";
  const n = Number.isFinite(Number(attempt)) ? Number(attempt) + 1 : null;
  const max = Number(job.max_attempts ?? 1);
  let label;
  let note = null;
  if (lost === true) {
    label = [stateBadge("lost"), " ", h("strong", {}, "Lost run")];
    note = `The process running ${n ? `attempt ${num(n)}` : "the job"} died; this run does not count as an attempt.`;
  } else if (cancelled === true) {
    label = [stateBadge("cancelled"), " ", h("strong", {}, "Cancelled")];
  } else {
    label = h("strong", {}, n ? `Attempt ${num(n)} of ${num(max)} failed` : "Failed");
  }
  return h("li", { class: lost === true ? "error-lost" : cancelled === true ? "error-cancelled" : "error-failed" },
    h("details", { open: i === count - 1 },
      h("summary", {}, label, " ", h("span", { class: "mono small" }, last)),
      note ? h("p", { class: "muted small" }, note) : null,
      h("pre", { class: "traceback", tabindex: "0" }, tb || "(no traceback)"),
      Object.keys(rest).length ? jsonBlock(rest) : null));
}
