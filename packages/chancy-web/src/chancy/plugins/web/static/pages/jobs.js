// Jobs of one state, or of every state (#/jobs): function search (a pasted
// job id opens the job), composable filters, bulk actions, cursor
// pagination, auto-refresh every 5 seconds.

import { api, asPage } from "../api.js";
import { sparkline } from "../components/chart.js";
import { confirmDialog } from "../components/dialog.js";
import { describeFilter, filterEditor, parseFilters } from "../components/filters.js";
import { METRICS_ROUTE, fetchMetricsQuietly } from "../components/metrics.js";
import { progressView } from "../components/progress.js";
import { emptyState, errorBox, loading, pageHeader, stateDot, toast } from "../components/ui.js";
import { h, link, replace, seg } from "../lib/dom.js";
import { JOB_STATES, jobState, jobTimeField, num, relative, shortId, timeEl, titleCase, toDate } from "../lib/format.js";

const PAGE_SIZE = 50;
const REFRESH_MS = 5000;

/** Cursor history per list (key: state + search), so Previous works. */
const cursorStacks = new Map();

const ACTIONS = {
  retry: { label: "Retry", states: ["pending", "succeeded", "failed", "retrying"], verb: "retried" },
  cancel: { label: "Cancel", states: ["pending", "running", "retrying"], verb: "cancelled" },
  purge: { label: "Purge", states: JOB_STATES, verb: "purged" },
};

const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

export default async function mount(view, ctx) {
  const state = ctx.params.state || "all";
  const allStates = state === "all";
  if (!allStates && !JOB_STATES.includes(state)) {
    view.append(pageHeader("Unknown job state"),
      emptyState(`“${state}” is not a job state`, `Job states are ${JOB_STATES.join(", ")}.`, link("/jobs/pending", "Pending jobs", { class: "btn" })));
    return;
  }
  const title = allStates ? "All jobs" : `${titleCase(state)} jobs`;
  ctx.setTitle(title);
  const q = ctx.query;
  const func = q.get("func") || "";
  const queue = q.get("queue") || "";
  const filters = parseFilters(q.get("filters"));
  const before = q.get("before") || "";
  const listKey = JSON.stringify([state, func, queue, filters]);
  const stack = cursorStacks.get(listKey) || [];
  cursorStacks.set(listKey, stack);
  if (!before) stack.length = 0;

  const [timeField, timeLabel] = allStates ? ["created_at", "Created"] : jobTimeField(state);
  const selected = new Set();
  let items = [];
  let live = true;
  let lastPage = null;

  // ---- header -----------------------------------------------------------
  const spark = h("span", { class: "header-spark" });
  const liveBox = h("input", { type: "checkbox", id: "jobs-live", checked: true, onchange: (e) => { live = e.target.checked; } });
  const updated = h("span", { class: "muted small", "aria-live": "off" });
  view.append(pageHeader(title, {
    subtitle: [spark, " ", updated],
    actions: [
      h("div", { class: "field checkbox inline" }, liveBox, h("label", { for: "jobs-live" }, "Auto-refresh (5 s)")),
      h("button", { type: "button", class: "btn", onclick: () => load() }, "Refresh"),
    ],
  }));

  if (!allStates && ctx.hasRoute(METRICS_ROUTE)) {
    fetchMetricsQuietly(`global:status:${state}`, { resolution: "5min" }, ctx.signal)
      .then((data) => {
        const series = data[`global:status:${state}`];
        if (series) replace(spark, sparkline(series, { resolution: "5min", label: `${state} jobs per 5 minutes`, width: 140 }));
      })
      .catch(() => {});
  }

  // ---- search + filters ---------------------------------------------------
  const fnInput = h("input", { id: "jobs-func", type: "search", name: "func", value: func, list: "jobs-func-list", placeholder: "Search function names, or paste a job id…", autocomplete: "off" });
  const fnList = h("datalist", { id: "jobs-func-list" });
  const queueSelect = h("select", { id: "jobs-queue", name: "queue" }, h("option", { value: "" }, "All queues"),
    queue ? h("option", { value: queue, selected: true }, queue) : null);
  const filterHost = h("div", {});
  const search = h(
    "form",
    {
      class: "toolbar",
      role: "search",
      onsubmit: (e) => {
        e.preventDefault();
        const text = fnInput.value.trim();
        if (UUID_RE.test(text)) {
          // A job id, not a function name: open the job.
          ctx.navigate(`/job/${seg(text.toLowerCase())}`);
          return;
        }
        ctx.setQuery({ func: text, queue: queueSelect.value, before: null });
      },
    },
    h("div", { class: "field grow" }, h("label", { for: "jobs-func" }, "Function or job id"), fnInput, fnList),
    h("div", { class: "field" }, h("label", { for: "jobs-queue" }, "Queue"), queueSelect),
    h("div", { class: "field end" }, h("button", { type: "submit", class: "btn primary" }, "Search"),
      func || queue ? h("button", { type: "button", class: "btn ghost", onclick: () => ctx.setQuery({ func: null, queue: null, before: null }) }, "Reset") : null),
  );
  const filterDetails = h("details", { class: "filters", open: filters.length > 0 },
    h("summary", {}, `Filters${filters.length ? ` (${filters.length})` : ""}`),
    filters.length ? h("p", { class: "chips active-filters" }, filters.map((f, i) => h("span", { class: "chip" }, describeFilter(f),
      h("button", {
        type: "button", class: "chip-x", "aria-label": `Remove filter ${describeFilter(f)}`,
        onclick: () => ctx.setQuery({ filters: filters.filter((_, j) => j !== i), before: null }),
      }, "✕")))) : null,
    filterHost);
  view.append(h("section", { class: "card" }, search, filterDetails));

  let queueNames = [];
  let functionNames = [];
  const drawFilterEditor = () => replace(filterHost, filterEditor({
    filters,
    fields: allStates ? ["state", "func", "queue", "priority", "attempts", "concurrency_key"] : ["func", "queue", "priority", "attempts", "concurrency_key"],
    states: JOB_STATES,
    queues: queueNames,
    functions: functionNames,
    onApply: (next) => ctx.setQuery({ filters: next, before: null }),
  }));
  drawFilterEditor();
  Promise.all([
    api.get("/api/v1/queues", null, { signal: ctx.signal }).catch(() => []),
    api.get("/api/v1/jobs/functions", null, { signal: ctx.signal }).catch(() => []),
  ]).then(([queues, functions]) => {
    queueNames = (Array.isArray(queues) ? queues : []).map((x) => x.name).filter(Boolean).sort();
    functionNames = (Array.isArray(functions) ? functions : []).map(String).sort();
    replace(fnList, functionNames.map((f) => h("option", { value: f })));
    replace(queueSelect, h("option", { value: "" }, "All queues"),
      [...new Set([...queueNames, ...(queue ? [queue] : [])])].map((n) => h("option", { value: n, selected: n === queue }, n)));
    drawFilterEditor();
  }).catch(() => {});

  // ---- bulk actions -------------------------------------------------------
  const selCount = h("span", { class: "sel-count", "aria-live": "polite" });
  const bulkResult = h("div", {});
  const actionButtons = Object.entries(ACTIONS).map(([action, info]) => h("button", {
    type: "button",
    class: action === "purge" ? "btn danger small" : "btn small",
    disabled: true,
    dataset: { action },
    onclick: () => bulk(action),
  }, info.label));
  const bulkBar = h("div", { class: "bulk-bar", role: "toolbar", "aria-label": "Bulk actions" }, selCount, actionButtons);

  // ---- table + pager ------------------------------------------------------
  const results = h("div", { class: "results" }, loading());
  const prev = h("button", { type: "button", class: "btn", disabled: !before, onclick: () => {
    const target = stack.pop();
    ctx.setQuery({ before: target || null });
  } }, "← Previous");
  const next = h("button", { type: "button", class: "btn", disabled: true, onclick: () => {
    if (!lastPage?.next_cursor) return;
    stack.push(before || "");
    ctx.setQuery({ before: lastPage.next_cursor });
  } }, "Next →");
  const pageInfo = h("span", { class: "muted small" });
  view.append(h("section", { class: "card flush" }, bulkBar, bulkResult, results,
    h("nav", { class: "pager", "aria-label": "Pagination" }, prev, pageInfo, next)));

  function updateSelectionUi() {
    for (const id of [...selected]) if (!items.some((j) => String(j.id) === id)) selected.delete(id);
    selCount.textContent = selected.size ? `${selected.size} selected` : "Select jobs for bulk actions";
    for (const b of actionButtons) {
      const info = ACTIONS[b.dataset.action];
      b.disabled = !selected.size || (!allStates && !info.states.includes(state));
    }
    const all = results.querySelector("input.select-all");
    if (all) {
      all.checked = items.length > 0 && selected.size === items.length;
      all.indeterminate = selected.size > 0 && selected.size < items.length;
    }
  }

  function row(job) {
    const id = String(job.id);
    const shown = jobState(job);
    const scheduled = toDate(job.scheduled_at);
    const future = scheduled && scheduled.getTime() > Date.now() + 1000;
    return h(
      "tr",
      { class: selected.has(id) ? "selected" : "" },
      h("td", { class: "check" }, h("input", {
        type: "checkbox",
        checked: selected.has(id),
        "aria-label": `Select job ${job.func || ""} ${shortId(id)}`,
        onchange: (e) => {
          if (e.target.checked) selected.add(id);
          else selected.delete(id);
          e.target.closest("tr").classList.toggle("selected", e.target.checked);
          updateSelectionUi();
        },
      })),
      h("td", { class: "state-cell" }, stateDot(shown), allStates || shown !== state ? h("span", { class: "small" }, " " + shown) : null),
      h("td", { class: "func" }, link(`/job/${seg(id)}`, job.func || "(unknown)", { class: "mono" }),
        h("div", { class: "muted small mono" }, shortId(id)),
        job.state === "running" && job.progress ? progressView(job.progress, { compact: true, label: `Progress of ${job.func || "the job"}` }) : null),
      h("td", {}, job.queue ? link(`/queues/${seg(job.queue)}`, job.queue) : "—"),
      h("td", { class: "num" }, `${num(job.attempts ?? 0)} / ${num(job.max_attempts ?? 1)}`),
      h("td", { class: "num" }, num(job.priority ?? 0)),
      h("td", {}, timeEl(job[timeField]), future ? h("div", { class: "small muted" }, `scheduled ${relative(scheduled)}`) : null),
    );
  }

  function draw() {
    if (!items.length) {
      const filtered = func || queue || filters.length;
      replace(results, emptyState(
        filtered ? "No jobs match" : allStates ? "No jobs" : `No ${state} jobs`,
        filtered ? `Nothing ${allStates ? "" : "in this state "}matches the search and filters.` : before ? "There are no older jobs." : "Jobs appear here as soon as there are some.",
      ));
      updateSelectionUi();
      return;
    }
    const selectAll = h("input", {
      type: "checkbox",
      class: "select-all",
      "aria-label": "Select all jobs on this page",
      onchange: (e) => {
        if (e.target.checked) items.forEach((j) => selected.add(String(j.id)));
        else selected.clear();
        draw();
      },
    });
    replace(results, h("div", { class: "table-wrap" }, h("table", { class: "jobs-table" },
      h("caption", { class: "sr-only" }, title),
      h("thead", {}, h("tr", {},
        h("th", { class: "check", scope: "col" }, selectAll),
        h("th", { scope: "col" }, allStates ? "State" : h("span", { class: "sr-only" }, "State")),
        h("th", { scope: "col" }, "Function"),
        h("th", { scope: "col" }, "Queue"),
        h("th", { scope: "col", class: "num" }, "Attempts"),
        h("th", { scope: "col", class: "num" }, "Priority"),
        h("th", { scope: "col" }, timeLabel))),
      h("tbody", {}, items.map(row)))));
    updateSelectionUi();
  }

  async function load() {
    // The list shows no result, argument or meta: leave them out (a result may be 64 KiB).
    const query = { state, limit: PAGE_SIZE, pagination: "true", func, queue, before, omit: "result,kwargs,meta" };
    if (filters.length) query.filters = JSON.stringify(filters);
    try {
      const data = await api.get("/api/v1/jobs", query, { signal: ctx.signal });
      lastPage = asPage(data, PAGE_SIZE);
      items = lastPage.items;
      next.disabled = !lastPage.has_more || !lastPage.next_cursor;
      prev.disabled = !before;
      pageInfo.textContent = `Page ${stack.length + 1} · ${num(items.length)} job${items.length === 1 ? "" : "s"}`;
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      draw();
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(results, errorBox(err, {
        title: err.status === 422 ? "The API rejected this search" : "Could not load jobs",
        retry: load,
      }));
    }
  }

  async function bulk(action) {
    const ids = [...selected];
    if (!ids.length) return;
    const info = ACTIONS[action];
    if (action !== "retry") {
      const ok = await confirmDialog({
        title: `${info.label} ${ids.length} job${ids.length === 1 ? "" : "s"}?`,
        message: action === "purge"
          ? "Purged jobs are deleted from the database. This cannot be undone."
          : "Pending jobs will never run; running jobs are interrupted. Cancelled jobs end as failed.",
        confirmLabel: `${info.label} ${ids.length}`,
        danger: true,
      });
      if (!ok) return;
    }
    live = false;
    for (const b of actionButtons) b.disabled = true;
    try {
      const res = await api.post("/api/v1/jobs", { action, ids }, { signal: ctx.signal });
      const list = Array.isArray(res?.results) ? res.results : [];
      const tally = { completed: 0, skipped: 0, failed: 0 };
      for (const r of list) tally[r.status] = (tally[r.status] || 0) + 1;
      const problems = list.filter((r) => r.status !== "completed");
      toast(`${info.label}: ${tally.completed} ${info.verb}, ${tally.skipped} skipped, ${tally.failed} failed`, tally.failed ? "error" : "ok");
      replace(bulkResult, problems.length
        ? h("div", { class: `callout ${tally.failed ? "error" : "warn"}`, role: "status" },
            h("strong", {}, `${info.label}: ${problems.length} of ${list.length} not ${info.verb}`),
            h("ul", {}, problems.slice(0, 20).map((r) => h("li", {}, h("span", { class: "mono" }, shortId(r.id)), ` — ${r.status}${r.message ? ": " + r.message : ""}`))),
            h("button", { type: "button", class: "btn small ghost", onclick: () => replace(bulkResult) }, "Dismiss"))
        : null);
      selected.clear();
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(bulkResult, errorBox(err, { title: `${info.label} failed` }));
    } finally {
      live = liveBox.checked;
      await load();
    }
  }

  await load();
  ctx.every(REFRESH_MS, async () => {
    if (!live || document.querySelector("dialog[open]")) return;
    await load();
  });
}
