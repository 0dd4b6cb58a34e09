// Queues: the list (with throughput sparklines), the create form, and the
// queues that have waiting jobs but were never declared.

import { api } from "../api.js";
import { sparkline } from "../components/chart.js";
import { METRICS_ROUTE, fetchMetricsQuietly } from "../components/metrics.js";
import { queueForm } from "../components/queueForm.js";
import { fetchUndeclared, undeclaredNotice } from "../components/undeclared.js";
import { emptyState, errorBox, loading, pageHeader, stateBadge, table, tags, toast } from "../components/ui.js";
import { h, link, replace, seg } from "../lib/dom.js";
import { num, queueLimits, rateLimit, shortName, timeEl } from "../lib/format.js";

export default async function mount(view, ctx) {
  ctx.setTitle("Queues");
  const list = h("div", {}, loading());
  const formHost = h("div", { class: "card", hidden: true });
  const newButton = h("button", {
    type: "button",
    class: "btn primary",
    "aria-expanded": "false",
    "aria-controls": "new-queue",
    onclick: () => toggleForm(formHost.hidden),
  }, "New queue");
  formHost.id = "new-queue";

  function toggleForm(open, name = "") {
    formHost.hidden = !open;
    newButton.setAttribute("aria-expanded", String(open));
    if (open) {
      replace(formHost, h("h2", {}, name ? `Declare the queue “${name}”` : "Create a queue"), queueForm({
        name,
        submitLabel: name ? "Declare queue" : "Create queue",
        onSubmit: async (payload) => {
          await api.post("/api/v1/queues", payload);
          toast(`Queue “${payload.name}” saved`, "ok");
          ctx.navigate(`/queues/${seg(payload.name)}`);
        },
        onCancel: () => toggleForm(false),
      }));
      formHost.querySelector(name ? "button[type=submit]" : "input")?.focus();
    }
  }

  const undeclaredBox = h("div", {});
  view.append(pageHeader("Queues", { subtitle: "Queues are stored in the database; workers whose tags match pick up changes without restarting.", actions: newButton }), undeclaredBox, formHost, list);
  const wanted = ctx.query.get("new");
  if (wanted) toggleForm(true, ["1", "true"].includes(wanted) ? "" : wanted);

  async function load() {
    try {
      const [queues, workers, undeclared] = await Promise.all([
        api.get("/api/v1/queues", null, { signal: ctx.signal }),
        api.get("/api/v1/workers", null, { signal: ctx.signal }).catch(() => []),
        fetchUndeclared(ctx),
      ]);
      replace(undeclaredBox, undeclaredNotice(undeclared, { onDeclare: (name) => toggleForm(true, name) }));
      const metrics = ctx.hasRoute(METRICS_ROUTE) ? await fetchMetricsQuietly("queue", { resolution: "5min" }, ctx.signal) : {};
      const rows = (Array.isArray(queues) ? queues : []).slice().sort((a, b) => String(a.name).localeCompare(String(b.name)));
      const workerList = Array.isArray(workers) ? workers : [];
      if (!rows.length) {
        replace(list, emptyState("No queues yet", "Create one here, or start a worker (it declares the “default” queue)."));
        return;
      }
      replace(list, table([
        { label: "Name", render: (q) => link(`/queues/${seg(q.name)}`, q.name, { class: "strong" }) },
        { label: "State", render: (q) => [stateBadge(q.state), q.state === "paused" && q.resume_at ? h("div", { class: "small muted" }, "resumes ", timeEl(q.resume_at)) : null] },
        { label: "Tags", render: (q) => tags(q.tags, { empty: "no worker" }) },
        { label: "Concurrency", cls: "num", render: (q) => (q.concurrency === null || q.concurrency === undefined ? h("span", { class: "muted" }, "default") : num(q.concurrency)) },
        { label: "Executor", render: (q) => h("span", { title: q.executor }, shortName(q.executor)) },
        { label: "Rate limit", render: (q) => rateLimit(q) },
        { label: "Limits", render: (q) => {
          const limits = queueLimits(q);
          return limits.length
            ? h("span", { class: "chips queue-limits", title: "Cluster-wide and per-key limits" }, limits.map((l) => h("span", { class: "chip" }, l)))
            : h("span", { class: "muted" }, "none");
        } },
        { label: "Workers", cls: "num", render: (q) => num(workerList.filter((w) => (w.queues || []).includes(q.name)).length) },
        ctx.hasRoute(METRICS_ROUTE) ? { label: "Throughput (2 h)", render: (q) => {
          const series = metrics[`queue:${q.name}:throughput`];
          return series ? sparkline(series, { resolution: "5min", label: `${q.name} jobs per 5 minutes` }) : h("span", { class: "muted" }, "—");
        } } : null,
      ].filter(Boolean), rows, { caption: "Queues" }));
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(list, errorBox(err, { title: "Could not load queues", retry: load }));
    }
  }
  await load();
  ctx.every(10000, load);
}
