// System: versions, prefix, health, configured plugins and their tables.

import { api, session } from "../api.js";
import { jsonBlock } from "../components/json.js";
import { badge, emptyState, errorBox, kvList, loading, pageHeader, section, table, tags } from "../components/ui.js";
import { h, replace } from "../lib/dom.js";

const KNOWN = [
  ["chancy_version", "Chancy version"],
  ["database_version", "Database"],
  ["prefix", "Table prefix"],
];

function display(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "object") return jsonBlock(value);
  return String(value);
}

/** "module.Class" from either {class} or {module, name}. */
function className(pl) {
  if (pl.class || pl.class_name) return String(pl.class || pl.class_name);
  if (pl.module && pl.name) return `${pl.module}.${pl.name}`;
  return pl.name ? String(pl.name) : "—";
}

export default async function mount(view, ctx) {
  ctx.setTitle("System");
  const systemBox = h("div", {}, loading());
  const pluginsBox = h("div", {}, loading());
  view.append(pageHeader("System", { subtitle: "What this API runs and how the dashboard talks to it." }),
    h("div", { class: "two-col" }, section("Server", systemBox), section("Dashboard", kvList([
      ["API base URL", h("code", {}, session.base)],
      ["Signed in as", session.user || null],
      ["Authentication", session.token ? "bearer token (this tab only)" : "session cookie"],
      ["Configured plugins", tags(ctx.plugins, { empty: "none reported" })],
    ]))),
    section("Plugins", pluginsBox));

  const [system, health, plugins] = await Promise.all([
    api.get("/api/v1/system", null, { signal: ctx.signal }).catch((e) => e),
    api.get("/health", null, { signal: ctx.signal, auth: false }).catch((e) => e),
    api.get("/api/v1/plugins", null, { signal: ctx.signal }).catch((e) => e),
  ]);
  if (ctx.signal.aborted) return;

  const healthNode = health instanceof Error
    ? badge(health.status === 404 ? "no /health endpoint" : `unhealthy: ${health.message}`, "warn")
    : badge(String(health?.status ?? "ok"), health?.status && health.status !== "healthy" && health.status !== "ok" ? "warn" : "ok");
  if (system instanceof Error) {
    replace(systemBox, kvList([["Health", healthNode]]),
      system.status === 404 ? emptyState("No system endpoint", "This API does not provide /api/v1/system.") : errorBox(system));
  } else {
    const data = system && typeof system === "object" ? system : {};
    const extra = Object.keys(data).filter((k) => !KNOWN.some(([key]) => key === k)).sort();
    replace(systemBox, kvList([
      ["Health", healthNode],
      ...KNOWN.map(([key, label]) => [label, key === "prefix" && data[key] !== undefined ? h("code", {}, String(data[key]) || "(none)") : display(data[key])]),
      ...extra.map((key) => [key.replace(/_/g, " "), display(data[key])]),
    ]));
  }

  if (plugins instanceof Error) {
    replace(pluginsBox, plugins.status === 404 ? emptyState("No plugin endpoint", "This API does not provide /api/v1/plugins.") : errorBox(plugins));
    return;
  }
  const rows = Array.isArray(plugins) ? plugins : Object.entries(plugins || {}).map(([identifier, v]) => ({ identifier, ...(v || {}) }));
  replace(pluginsBox, table([
    { label: "Identifier", render: (pl) => h("span", { class: "mono strong" }, pl.identifier ?? "—") },
    { label: "Class", render: (pl) => [h("span", { class: "mono" }, className(pl)),
      pl.distribution ? h("div", { class: "small muted" }, `${pl.distribution}${pl.version ? " " + pl.version : ""}`) : null] },
    { label: "Scope", render: (pl) => (pl.scope ? badge(String(pl.scope), "muted-badge") : "—") },
    { label: "Tables", render: (pl) => tags(pl.tables, { empty: "—" }) },
    { label: "Migrations", render: (pl) => (pl.migrate_key ? [h("code", {}, pl.migrate_key), pl.migrate_package ? h("div", { class: "small muted mono" }, pl.migrate_package) : null] : h("span", { class: "muted" }, "—")) },
    { label: "API plugin", render: (pl) => (pl.api_plugin ? h("span", { class: "mono small" }, String(pl.api_plugin)) : h("span", { class: "muted" }, "—")) },
    { label: "Depends on", render: (pl) => tags(pl.dependencies, { empty: "—" }) },
  ], rows, { caption: "Plugins", empty: "No plugins reported." }));
}
