// Metrics grouped by category, with a search box.

import {
  api, emptyState, errorBox, h, link, loading, num, pageHeader, pluginMissing, replace,
} from "../../kit.js";
const CATEGORY_HELP = {
  global: "Cluster-wide job state transitions.",
  queue: "Per queue: throughput, execution and wait times, state transitions.",
  job: "Per job function.",
  workflow: "Workflow progress.",
  worker: "Per worker.",
};

export default async function mount(view, ctx) {
  ctx.setTitle("Metrics");
  const body = h("div", {}, loading());
  const searchInput = h("input", { id: "metric-search", type: "search", placeholder: "Filter metrics…", autocomplete: "off" });
  view.append(pageHeader("Metrics", {
    subtitle: "Pick a metric group to chart each of its keys.",
    actions: h("div", { class: "field inline" }, h("label", { for: "metric-search", class: "sr-only" }, "Filter metrics"), searchInput),
  }), body);

  let data;
  try {
    data = await api.get("/api/v1/metrics", null, { signal: ctx.signal });
  } catch (err) {
    if (err.name === "AbortError") return;
    replace(body, err.status === 404 ? pluginMissing("Metrics", "Metrics") : errorBox(err, { title: "Could not load metrics" }));
    return;
  }
  const categories = data && typeof data.categories === "object" && data.categories ? data.categories : {};
  const names = Object.keys(categories).sort();

  function draw() {
    const needle = searchInput.value.trim().toLowerCase();
    const groups = names.map((cat) => {
      const items = (Array.isArray(categories[cat]) ? categories[cat] : []).map(String).sort()
        .filter((n) => !needle || `${cat}:${n}`.toLowerCase().includes(needle));
      return { cat, items };
    }).filter((g) => g.items.length);
    if (!groups.length) {
      replace(body, emptyState(needle ? "No metric matches" : "No metrics recorded yet",
        needle ? "Try another filter." : "Metrics appear once workers run jobs with the Metrics plugin enabled."));
      return;
    }
    replace(body,
      h("p", { class: "muted" }, `${num(data.count ?? groups.reduce((a, g) => a + g.items.length, 0))} metrics in ${groups.length} categories.`),
      h("div", { class: "category-grid" }, groups.map(({ cat, items }) => h("section", { class: "card" },
        h("h2", {}, cat),
        CATEGORY_HELP[cat] ? h("p", { class: "muted small" }, CATEGORY_HELP[cat]) : null,
        h("ul", { class: "link-list" }, items.map((n) => h("li", {}, link(`/metrics/${encodeURIComponent(`${cat}:${n}`)}`, n, { class: "mono" }))))))));
  }
  searchInput.addEventListener("input", draw);
  draw();
}
