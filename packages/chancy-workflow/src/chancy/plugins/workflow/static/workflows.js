// Workflows: list with state filter, per-state step counts and pagination.

import {
  api, asPage, emptyState, errorBox, h, link, loading, num, pageHeader, pluginMissing, replace, seg, select, stateBadge, table, timeEl,
} from "../../kit.js";
export const WORKFLOW_STATES = ["pending", "running", "completed", "failed", "cancelled"];
const PAGE_SIZE = 50;
const stacks = new Map();

/** {state: count} for a workflow row, from whatever the API provides. */
export function stepCounts(wf) {
  const direct = wf.step_counts ?? wf.steps_by_state ?? wf.state_counts ?? wf.counts;
  if (direct && typeof direct === "object" && !Array.isArray(direct)) return direct;
  if (wf.steps && typeof wf.steps === "object") {
    const counts = {};
    for (const step of Object.values(wf.steps)) {
      const st = step?.state || "waiting";
      counts[st] = (counts[st] || 0) + 1;
    }
    return counts;
  }
  return null;
}

export function countChips(counts) {
  if (!counts) return h("span", { class: "muted" }, "—");
  const entries = Object.entries(counts).filter(([, n]) => Number(n) > 0);
  if (!entries.length) return h("span", { class: "muted" }, "no steps");
  return h("span", { class: "chips" }, entries.map(([st, n]) =>
    h("span", { class: `count-chip state-${st === "None" || st === "null" ? "waiting" : st}`, title: `${n} ${st}` },
      h("span", { class: `dot state-${st}`, "aria-hidden": "true" }), `${num(n)} ${st === "None" || st === "null" ? "waiting" : st}`)));
}

export default async function mount(view, ctx) {
  ctx.setTitle("Workflows");
  const state = ctx.query.get("state") || "";
  const before = ctx.query.get("before") || "";
  const key = state;
  const stack = stacks.get(key) || [];
  stacks.set(key, stack);
  if (!before) stack.length = 0;
  const list = h("div", {}, loading());
  const filter = h("div", { class: "field inline" }, h("label", { for: "wf-state" }, "State"),
    select([{ value: "", label: "All states" }, ...WORKFLOW_STATES.map((s) => ({ value: s, label: s }))], {
      id: "wf-state", value: state, onchange: (e) => ctx.setQuery({ state: e.target.value, before: null }),
    }));
  let page = null;
  const prev = h("button", { type: "button", class: "btn", disabled: !before, onclick: () => ctx.setQuery({ before: stack.pop() || null }) }, "← Previous");
  const next = h("button", { type: "button", class: "btn", disabled: true, onclick: () => {
    if (!page?.next_cursor) return;
    stack.push(before);
    ctx.setQuery({ before: page.next_cursor });
  } }, "Next →");
  view.append(pageHeader("Workflows", { subtitle: "Groups of dependent jobs.", actions: filter }),
    h("section", { class: "card flush" }, list, h("nav", { class: "pager", "aria-label": "Pagination" }, prev, h("span", {}), next)));

  async function load() {
    try {
      const data = await api.get("/api/v1/workflows", { state, limit: PAGE_SIZE, before }, { signal: ctx.signal });
      page = asPage(data, PAGE_SIZE);
      next.disabled = !page.has_more || !page.next_cursor;
      if (!page.items.length) {
        replace(list, emptyState(state ? `No ${state} workflows` : "No workflows", before ? "There are no older workflows." : "Push one with WorkflowPlugin.push(chancy, workflow)."));
        return;
      }
      replace(list, table([
        { label: "Name", render: (w) => [link(`/workflows/${seg(w.id)}`, w.name || "(unnamed)", { class: "strong" }), h("div", { class: "small muted mono" }, String(w.id))] },
        { label: "State", render: (w) => stateBadge(w.state) },
        { label: "Steps", render: (w) => countChips(stepCounts(w)) },
        { label: "Created", render: (w) => timeEl(w.created_at) },
        { label: "Updated", render: (w) => timeEl(w.updated_at) },
      ], page.items, { caption: "Workflows" }));
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(list, err.status === 404 ? pluginMissing("Workflows", "WorkflowPlugin") : errorBox(err, { title: "Could not load workflows", retry: load }));
    }
  }
  await load();
  ctx.every(10000, load);
}
