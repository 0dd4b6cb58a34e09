// One queue: settings, edit form, pause/resume/delete, workers and metrics.

import { api, p } from "../api.js";
import { confirmDialog } from "../components/dialog.js";
import { jsonBlock } from "../components/json.js";
import { METRICS_ROUTE, metricsPanel } from "../components/metrics.js";
import { queueForm } from "../components/queueForm.js";
import { badge, emptyState, errorBox, kvList, loading, pageHeader, section, stateBadge, table, tags, toast } from "../components/ui.js";
import { h, link, replace, seg } from "../lib/dom.js";
import { JOB_STATES, keyRateLimit, num, rateLimit, timeEl, timeFull, titleCase } from "../lib/format.js";
import { isExpired } from "./workers.js";

const unset = (value) => value === null || value === undefined;

export default async function mount(view, ctx) {
  const name = ctx.params.name;
  ctx.setTitle(`Queue ${name}`);
  const head = h("div", {});
  const editHost = h("div", { class: "card", hidden: true, id: "queue-edit" });
  const settings = h("div", {}, loading());
  const workersBox = h("div", {});
  const metricsBox = h("section", { class: "card" });
  view.append(head, editHost, settings, workersBox);
  if (ctx.hasRoute(METRICS_ROUTE)) view.append(metricsBox);
  let queue = null;

  function drawHeader() {
    const paused = queue.state === "paused";
    const editButton = h("button", {
      type: "button", class: "btn", "aria-expanded": String(!editHost.hidden), "aria-controls": "queue-edit",
      onclick: () => toggleEdit(editHost.hidden),
    }, "Edit");
    replace(head, pageHeader(queue.name, {
      crumbs: [["/queues", "Queues"], [null, queue.name]],
      subtitle: [stateBadge(queue.state), paused && queue.resume_at ? h("span", { class: "muted" }, " · resumes ", timeEl(queue.resume_at)) : null],
      actions: [
        editButton,
        paused
          ? h("button", { type: "button", class: "btn primary", onclick: resume }, "Resume")
          : h("button", { type: "button", class: "btn", onclick: pause }, "Pause"),
        h("button", { type: "button", class: "btn danger", onclick: remove }, "Delete"),
      ],
    }));
  }

  function toggleEdit(open) {
    editHost.hidden = !open;
    head.querySelector("[aria-controls=queue-edit]")?.setAttribute("aria-expanded", String(open));
    if (!open) return replace(editHost);
    replace(editHost, h("h2", {}, "Edit queue"), queueForm({
      queue,
      submitLabel: "Save changes",
      onSubmit: async (payload) => {
        const { name: _ignored, ...changes } = payload;
        await api.patch(`/api/v1/queues/${p(name)}`, changes);
        toast("Queue updated; workers pick up the change on their next scan", "ok");
        toggleEdit(false);
        await load();
      },
      onCancel: () => toggleEdit(false),
    }));
    editHost.querySelector("input:not([readonly])")?.focus();
    return undefined;
  }

  async function pause() {
    const input = h("input", { id: "resume-at", type: "datetime-local" });
    const result = await confirmDialog({
      title: `Pause “${name}”?`,
      message: "Workers stop fetching jobs from a paused queue; running jobs finish.",
      body: h("div", { class: "field" }, h("label", { for: "resume-at" }, "Resume automatically at (optional, local time)"), input),
      confirmLabel: "Pause queue",
      collect: () => {
        if (!input.value) return { resume_at: null };
        const d = new Date(input.value);
        if (Number.isNaN(d.getTime())) throw new Error("That resume time is not valid.");
        if (d.getTime() <= Date.now()) throw new Error("The resume time must be in the future.");
        return { resume_at: d.toISOString() };
      },
    });
    if (!result) return;
    try {
      await api.post(`/api/v1/queues/${p(name)}/pause`, result);
      toast(`Queue “${name}” paused`, "ok");
      await load();
    } catch (err) {
      toast(`Pause failed: ${err.message}`, "error", 6000);
    }
  }

  async function resume() {
    try {
      await api.post(`/api/v1/queues/${p(name)}/resume`, {});
      toast(`Queue “${name}” resumed`, "ok");
      await load();
    } catch (err) {
      toast(`Resume failed: ${err.message}`, "error", 6000);
    }
  }

  async function remove() {
    const purge = h("input", { id: "purge-jobs", type: "checkbox" });
    const result = await confirmDialog({
      title: `Delete queue “${name}”?`,
      message: "Workers drain and stop serving it. Its jobs stay in the database unless you purge them.",
      body: h("div", { class: "field checkbox" }, purge, h("label", { for: "purge-jobs" }, "Also delete every job of this queue")),
      confirmLabel: "Delete queue",
      danger: true,
      collect: () => ({ purge: purge.checked }),
    });
    if (!result) return;
    try {
      await api.del(`/api/v1/queues/${p(name)}`, { purge_jobs: result.purge ? "true" : "false" });
      toast(`Queue “${name}” deleted`, "ok");
      ctx.navigate("/queues");
    } catch (err) {
      toast(`Delete failed: ${err.message}`, "error", 6000);
    }
  }

  function drawSettings(workers) {
    const serving = workers.filter((w) => (w.queues || []).includes(name));
    replace(settings, h("div", { class: "two-col" },
      section("Settings", kvList([
        ["Name", h("span", { class: "mono" }, queue.name)],
        ["State", stateBadge(queue.state)],
        queue.resume_at ? ["Resume at", timeFull(queue.resume_at)] : null,
        ["Concurrency", queue.concurrency === null || queue.concurrency === undefined ? "executor default" : `${num(queue.concurrency)} per worker`],
        ["Tags", tags(queue.tags, { empty: "none (no worker serves it)" })],
        ["Executor", h("code", {}, queue.executor || "—")],
        ["Executor options", queue.executor_options && Object.keys(queue.executor_options).length ? jsonBlock(queue.executor_options) : h("span", { class: "muted" }, "none")],
        ["Polling interval", `${num(queue.polling_interval)} s`],
        ["Rate limit", rateLimit(queue)],
        ["Cluster-wide concurrency", unset(queue.global_concurrency) ? "no limit" : `${num(queue.global_concurrency)} at once, across all workers`],
        ["Per-key concurrency", unset(queue.key_concurrency) ? "no limit" : `${num(queue.key_concurrency)} at once per concurrency key, across all workers`],
        ["Per-key rate limit", keyRateLimit(queue)],
        ["Eager polling", queue.eager_polling ? "yes" : "no"],
        queue.created_at ? ["Created", timeFull(queue.created_at)] : null,
        queue.updated_at ? ["Updated", timeFull(queue.updated_at)] : null,
      ])),
      section("Jobs in this queue", h("ul", { class: "link-list" }, JOB_STATES.map((st) =>
        h("li", {}, link(`/jobs/${st}?queue=${encodeURIComponent(name)}`, [h("span", { class: `dot state-${st}`, "aria-hidden": "true" }), `${titleCase(st)} jobs`])))))));
    replace(workersBox, section(`Workers serving this queue (${serving.length})`, serving.length
      ? table([
          { label: "Worker", render: (w) => [link(`/workers/${seg(w.worker_id)}`, w.worker_id, { class: "mono" }), w.is_leader ? [" ", badge("Leader", "leader")] : null,
            isExpired(w) ? [" ", badge("Expired", "warn")] : null] },
          { label: "Tags", render: (w) => tags(w.tags) },
          { label: "Last seen", render: (w) => timeEl(w.last_seen) },
          { label: "Expires", render: (w) => timeEl(w.expires_at) },
        ], serving, { caption: "Workers serving this queue", rowAttrs: (w) => ({ class: isExpired(w) ? "dim" : "" }) })
      : emptyState("No worker serves this queue", "Check the queue's tags against the workers' tags, or start a worker.")));
  }

  async function load() {
    try {
      const [queues, workers] = await Promise.all([
        api.get("/api/v1/queues", null, { signal: ctx.signal }),
        api.get("/api/v1/workers", null, { signal: ctx.signal }).catch(() => []),
      ]);
      queue = (Array.isArray(queues) ? queues : []).find((q) => q.name === name) || null;
      if (!queue) {
        replace(head, pageHeader(name, { crumbs: [["/queues", "Queues"], [null, name]] }));
        replace(settings, emptyState("No such queue", `There is no queue named “${name}”. It may have been deleted.`, link("/queues", "All queues", { class: "btn" })));
        replace(workersBox);
        metricsBox.hidden = true;
        return;
      }
      metricsBox.hidden = false;
      drawHeader();
      drawSettings(Array.isArray(workers) ? workers : []);
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(settings, errorBox(err, { title: "Could not load the queue", retry: load }));
    }
  }

  await load();
  if (ctx.hasRoute(METRICS_ROUTE)) {
    const panel = metricsPanel(metricsBox, {
      prefix: `queue:${name}`,
      resolution: ctx.query.get("resolution") || "5min",
      signal: ctx.signal,
      title: "Queue metrics",
      onResolution: (r) => history.replaceState(null, "", `#/queues/${seg(name)}?resolution=${r}`),
    });
    ctx.every(60000, panel.reload);
  }
  ctx.every(10000, async () => {
    if (!document.querySelector("dialog[open]")) await load();
  });
}
