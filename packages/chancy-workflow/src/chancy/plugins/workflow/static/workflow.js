// One workflow: the DAG as a layered SVG graph plus a steps table.

import {
  api, emptyState, errorBox, h, kvList, link, loading, p, pageHeader, pluginMissing, replace, s, section, seg, shortId, shortName, stateBadge, table, timeFull,
} from "../../kit.js";
import { layerize } from "./dag.js";
import { countChips, stepCounts } from "./workflows.js";
const NODE_W = 164;
const NODE_H = 50;
const GAP_X = 56;
const GAP_Y = 18;
const PAD = 16;

function stepState(step) {
  return step?.state ? String(step.state) : "waiting";
}

function clip(text, n) {
  const t = String(text ?? "");
  return t.length > n ? t.slice(0, n - 1) + "…" : t;
}

/** The DAG picture. */
export function dagSvg(steps) {
  const { layers, edges, missing } = layerize(steps);
  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const width = PAD * 2 + layers.length * NODE_W + Math.max(0, layers.length - 1) * GAP_X;
  const pos = new Map();
  layers.forEach((layer, i) => {
    const colH = layer.length * NODE_H + (layer.length - 1) * GAP_Y;
    const offset = (height - colH) / 2;
    layer.forEach((id, j) => pos.set(id, { x: PAD + i * (NODE_W + GAP_X), y: offset + j * (NODE_H + GAP_Y) }));
  });
  const markerId = "arrow-" + Math.random().toString(36).slice(2, 8);
  const svg = s("svg", {
    class: "dag",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "group",
    "aria-label": `Workflow graph: ${Object.keys(steps).length} steps in ${layers.length} layers`,
  }, s("defs", {}, s("marker", { id: markerId, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    s("path", { d: "M0,0 L10,5 L0,10 z", class: "dag-arrow" }))));
  for (const [from, to] of edges) {
    const a = pos.get(from);
    const b = pos.get(to);
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2;
    const x2 = b.x - 2;
    const y2 = b.y + NODE_H / 2;
    const mid = (x1 + x2) / 2;
    svg.appendChild(s("path", {
      d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`,
      class: `dag-edge from-${stepState(steps[from])}`,
      "marker-end": `url(#${markerId})`,
    }));
  }
  for (const [id, { x, y }] of pos) {
    const step = steps[id] || {};
    const st = stepState(step);
    const func = step.job?.func || step.func || "";
    const node = s("g", { class: `dag-node state-${st}` },
      s("title", {}, `${id} — ${st}${func ? `\n${func}` : ""}${step.job_id ? `\njob ${step.job_id}` : "\nno job yet"}`),
      s("rect", { x, y, width: NODE_W, height: NODE_H, rx: 8 }),
      s("circle", { cx: x + 14, cy: y + 17, r: 5, class: `dot-fill state-${st}` }),
      s("text", { x: x + 26, y: y + 21, class: "dag-title" }, clip(id, 20)),
      s("text", { x: x + 12, y: y + 39, class: "dag-sub" }, clip(func ? shortName(func) : st, 24)));
    svg.appendChild(step.job_id
      ? s("a", { href: `#/job/${seg(step.job_id)}`, "aria-label": `Step ${id}, ${st}, open job` }, node)
      : node);
  }
  return { svg, missing };
}

export default async function mount(view, ctx) {
  const id = ctx.params.id;
  ctx.setTitle(`Workflow ${shortId(id)}`);
  const body = h("div", {}, loading());
  view.append(body);
  let wf = null;
  let lastJson = "";

  async function load() {
    try {
      wf = await api.get(`/api/v1/workflows/${p(id)}`, null, { signal: ctx.signal });
    } catch (err) {
      if (err.name === "AbortError") return;
      const crumbs = [["/workflows", "Workflows"], [null, shortId(id)]];
      if (err.status === 404 && /workflow/i.test(err.message)) {
        replace(body, pageHeader("Workflow not found", { crumbs }), emptyState("No such workflow", err.message, link("/workflows", "All workflows", { class: "btn" })));
      } else if (err.status === 404) {
        replace(body, pageHeader("Workflow", { crumbs }), pluginMissing("Workflows", "WorkflowPlugin"));
      } else {
        replace(body, pageHeader("Workflow", { crumbs }), errorBox(err, { title: "Could not load the workflow", retry: load }));
      }
      return;
    }
    const json = JSON.stringify(wf);
    if (json === lastJson) return;
    lastJson = json;
    draw();
  }

  function draw() {
    const steps = wf.steps && typeof wf.steps === "object" ? wf.steps : {};
    const ids = Object.keys(steps);
    const { svg, missing } = dagSvg(steps);
    const legendStates = ["waiting", "pending", "running", "retrying", "succeeded", "failed"];
    replace(body,
      pageHeader(wf.name || "Workflow", {
        crumbs: [["/workflows", "Workflows"], [null, wf.name || shortId(wf.id)]],
        subtitle: [stateBadge(wf.state), " ", h("span", { class: "mono muted" }, String(wf.id))],
      }),
      section("Summary", kvList([
        ["Name", wf.name],
        ["State", stateBadge(wf.state)],
        ["Steps", countChips(stepCounts({ steps }))],
        ["Created", timeFull(wf.created_at)],
        ["Updated", timeFull(wf.updated_at)],
      ])),
      section("Graph",
        ids.length ? h("div", { class: "dag-scroll", tabindex: "0", "aria-label": "Workflow graph, scrollable" }, svg) : emptyState("No steps", "This workflow has no steps."),
        h("p", { class: "legend" }, legendStates.map((st) => h("span", {}, h("span", { class: `dot state-${st}`, "aria-hidden": "true" }), st))),
        missing.length ? h("p", { class: "callout warn" }, `Unknown dependencies: ${missing.map(([d, to]) => `${to} → ${d}`).join(", ")}`) : null),
      section("Steps", table([
        { label: "Step", render: (st) => h("span", { class: "mono strong" }, st.id) },
        { label: "State", render: (st) => stateBadge(stepState(st.step)) },
        { label: "Function", render: (st) => h("span", { class: "mono" }, st.step.job?.func || "—") },
        { label: "Depends on", render: (st) => {
          const deps = Array.isArray(st.step.dependencies) ? st.step.dependencies : [];
          return deps.length ? h("span", { class: "chips" }, deps.map((d) => h("code", { class: "chip" }, String(d)))) : h("span", { class: "muted" }, "—");
        } },
        { label: "Job", render: (st) => (st.step.job_id ? link(`/job/${seg(st.step.job_id)}`, shortId(st.step.job_id), { class: "mono" }) : h("span", { class: "muted" }, "not started")) },
      ], ids.map((sid) => ({ id: sid, step: steps[sid] || {} })), { caption: "Workflow steps" })),
    );
  }

  await load();
  ctx.every(5000, async () => {
    if (wf && ["pending", "running"].includes(wf.state)) await load();
  });
}
