// Overview: job counts per state (with metric sparklines), queues, workers
// and the current leader. Refreshes every 10 seconds.

import { api, asPage } from "../api.js";
import { sparkline } from "../components/chart.js";
import { METRICS_ROUTE, fetchMetricsQuietly } from "../components/metrics.js";
import { fetchUndeclared, undeclaredNotice } from "../components/undeclared.js";
import { badge, emptyState, errorBox, pageHeader, stateBadge, stateDot, table } from "../components/ui.js";
import { h, link, replace, seg } from "../lib/dom.js";
import { JOB_STATES, jobState, num, relative, shortId, timeEl, titleCase } from "../lib/format.js";

// Jobs counted per state before the card says "more than".
const COUNT_CAP = 10000;
const FAILURES_SHOWN = 6;

export default async function mount(view, ctx) {
  ctx.setTitle("Overview");
  const systemLine = h("span", {});
  const cards = h("div", { class: "stat-grid" });
  const leader = h("div", {});
  const undeclaredBox = h("div", {});
  const queuesBox = h("div", {});
  const workersBox = h("div", {});
  const failuresBox = h("div", {});
  view.append(
    pageHeader("Overview", { subtitle: systemLine }),
    undeclaredBox,
    cards,
    leader,
    h("div", { class: "two-col" },
      h("section", { class: "card" }, h("div", { class: "section-head" }, h("h2", {}, "Queues"), link("/queues", "All queues")), queuesBox),
      h("section", { class: "card" }, h("div", { class: "section-head" }, h("h2", {}, "Workers"), link("/workers", "All workers")), workersBox)),
    h("section", { class: "card" }, h("div", { class: "section-head" }, h("h2", {}, "Recent failures"), link("/jobs/failed", "All failed jobs")), failuresBox),
  );

  api.get("/api/v1/system", null, { signal: ctx.signal })
    .then((sys) => {
      const parts = [];
      if (sys?.chancy_version) parts.push(`Chancy ${sys.chancy_version}`);
      if (sys?.prefix !== undefined) parts.push(`prefix “${sys.prefix}”`);
      if (sys?.database_version) {
        const v = String(sys.database_version);
        parts.push(/^\d/.test(v) ? `PostgreSQL ${v.split(" ")[0]}` : v.split(" ").slice(0, 2).join(" "));
      }
      systemLine.textContent = parts.join(" · ");
    })
    .catch(() => {
      systemLine.textContent = "";
    });

  async function counts() {
    // One bounded count per state, and the few latest failures for the table.
    const [counted, failed] = await Promise.all([
      api.get("/api/v1/jobs/counts", { cap: COUNT_CAP }, { signal: ctx.signal }).catch((err) => {
        if (err.name === "AbortError") throw err;
        return err;
      }),
      api.get("/api/v1/jobs", { state: "failed", limit: FAILURES_SHOWN, pagination: "true", omit: "result,kwargs,meta" }, { signal: ctx.signal })
        .then((d) => ({ page: asPage(d, FAILURES_SHOWN) }))
        .catch((err) => {
          if (err.name === "AbortError") throw err;
          return { error: err };
        }),
    ]);
    const metrics = ctx.hasRoute(METRICS_ROUTE) ? await fetchMetricsQuietly("global:status", { resolution: "5min" }, ctx.signal) : {};
    const error = counted instanceof Error ? counted : null;
    const capped = new Set(error ? [] : counted.capped || []);
    replace(cards, JOB_STATES.map((state) => {
      const n = error ? null : (counted.counts || {})[state] ?? 0;
      const count = error ? "?" : `${num(n)}${capped.has(state) ? "+" : ""}`;
      const series = metrics[`global:status:${state}`];
      return h(
        "a",
        { class: `stat-card state-border-${state}`, href: `#/jobs/${state}` },
        h("span", { class: "stat-label" }, stateDot(state), titleCase(state)),
        h("span", { class: "stat-value" }, count),
        error ? h("span", { class: "stat-note error-text" }, error.message)
          : series ? h("span", { class: "stat-spark" }, sparkline(series, { resolution: "5min", label: `${state} jobs per 5 minutes` }))
            : h("span", { class: "stat-note" }, capped.has(state) ? `more than ${num(counted.cap)}` : "jobs"),
      );
    }));
    if (failed.error) replace(failuresBox, errorBox(failed.error));
    else {
      const rows = failed.page.items.slice(0, FAILURES_SHOWN);
      replace(failuresBox, rows.length
        ? table([
            { label: "State", render: (j) => stateBadge(jobState(j)) },
            { label: "Function", render: (j) => link(`/job/${seg(j.id)}`, j.func || shortId(j.id), { class: "mono" }) },
            { label: "Queue", render: (j) => link(`/queues/${seg(j.queue)}`, j.queue) },
            { label: "Completed", render: (j) => timeEl(j.completed_at) },
            { label: "Last error", cls: "clip", render: (j) => lastErrorLine(j) },
          ], rows, { caption: "Recent failures" })
        : emptyState("No failed jobs", "Nothing has failed recently."));
    }
  }

  async function queuesAndWorkers() {
    const [queues, workers, undeclared] = await Promise.all([
      api.get("/api/v1/queues", null, { signal: ctx.signal }).catch((e) => e),
      api.get("/api/v1/workers", null, { signal: ctx.signal }).catch((e) => e),
      fetchUndeclared(ctx),
    ]);
    replace(undeclaredBox, undeclaredNotice(undeclared));
    const workerList = Array.isArray(workers) ? workers : [];
    const metrics = ctx.hasRoute(METRICS_ROUTE) && Array.isArray(queues) && queues.length
      ? await fetchMetricsQuietly("queue", { resolution: "5min" }, ctx.signal)
      : {};
    if (queues instanceof Error) replace(queuesBox, errorBox(queues));
    else if (!queues.length) replace(queuesBox, emptyState("No queues", "Declare a queue or start a worker.", link("/queues", "Create a queue")));
    else {
      replace(queuesBox, table([
        { label: "Name", render: (q) => link(`/queues/${seg(q.name)}`, q.name) },
        { label: "State", render: (q) => stateBadge(q.state) },
        { label: "Workers", cls: "num", render: (q) => num(workerList.filter((w) => (w.queues || []).includes(q.name)).length) },
        { label: "Throughput", render: (q) => {
          const series = metrics[`queue:${q.name}:throughput`];
          return series ? sparkline(series, { resolution: "5min", label: `${q.name} throughput` }) : h("span", { class: "muted" }, "—");
        } },
      ], queues, { caption: "Queues" }));
    }
    if (workers instanceof Error) {
      replace(workersBox, errorBox(workers));
      replace(leader);
    } else {
      const lead = workerList.find((w) => w.is_leader);
      replace(leader, h("p", { class: "leader-line" },
        lead ? [badge("Leader", "leader"), " ", link(`/workers/${seg(lead.worker_id)}`, lead.worker_id, { class: "mono" }), h("span", { class: "muted" }, ` · last seen ${relative(lead.last_seen)}`)]
          : [badge("No leader", "warn"), h("span", { class: "muted" }, " No worker currently holds leadership (leader-only plugins are idle).")]));
      replace(workersBox, workerList.length
        ? table([
            { label: "Worker", render: (w) => [link(`/workers/${seg(w.worker_id)}`, w.worker_id, { class: "mono" }), w.is_leader ? [" ", badge("Leader", "leader")] : null] },
            { label: "Queues", cls: "num", render: (w) => num((w.queues || []).length) },
            { label: "Last seen", render: (w) => timeEl(w.last_seen) },
          ], workerList, { caption: "Workers" })
        : emptyState("No workers", "No worker has announced itself recently."));
    }
  }

  const refresh = () => Promise.all([counts(), queuesAndWorkers()]);
  try {
    await refresh();
  } catch (err) {
    if (err.name !== "AbortError") view.append(errorBox(err));
  }
  ctx.every(10000, refresh);
}

function lastErrorLine(job) {
  const errors = Array.isArray(job.errors) ? job.errors : [];
  const last = errors[errors.length - 1];
  if (!last) return h("span", { class: "muted" }, "—");
  const tb = String(last.traceback || last.error || "").trim().split("\n");
  const line = tb[tb.length - 1] || "";
  return h("span", { class: "mono small", title: line }, line.length > 90 ? line.slice(0, 89) + "…" : line);
}
