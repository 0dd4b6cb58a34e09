// System: versions, prefix, health, configured plugins and their tables.

import { api, session } from "../api.js";
import { jsonBlock } from "../components/json.js";
import { badge, emptyState, errorBox, kvList, loading, pageHeader, section, table, tags } from "../components/ui.js";
import { h, replace } from "../lib/dom.js";

/** Every field of GET /api/v1/system, in order, with its label. */
const FIELDS = [
  ["chancy_version", "Chancy version"],
  ["web_version", "chancy-web version"],
  ["database_version", "PostgreSQL version"],
  ["database_version_num", "PostgreSQL version number"],
  ["database_full_version", "PostgreSQL build"],
  ["database_name", "Database"],
  ["prefix", "Table prefix"],
  ["notifications", "Notifications (LISTEN/NOTIFY)"],
  ["python_version", "Python version"],
  ["platform", "Platform"],
  ["hostname", "Host name"],
  ["worker_id", "Worker serving the API"],
];

/** A label for a field this page does not know ("some_field" → "Some field"). */
function labelOf(key) {
  const text = String(key).replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function display(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "boolean") return value ? "on" : "off";
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
      ["Authentication", session.token ? "Bearer token (this tab only)" : "Session cookie"],
      ["Enabled plugins", tags(ctx.plugins, { empty: "none reported" })],
      ["Plugin pages", tags(ctx.pages.filter((pg) => pg.title).map((pg) => `${pg.title} (${pg.plugin})`), { empty: "none" })],
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
    const extra = Object.keys(data).filter((k) => !FIELDS.some(([key]) => key === k)).sort();
    replace(systemBox, kvList([
      ["Health", healthNode],
      ...FIELDS.filter(([key]) => key in data).map(([key, label]) => [label,
        key === "prefix" ? h("code", {}, String(data[key]) || "(none)")
          : key === "worker_id" || key === "database_full_version" ? h("span", { class: "mono small" }, String(data[key]))
            : display(data[key])]),
      ...extra.map((key) => [labelOf(key), display(data[key])]),
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
    { label: "API extension (api_plugin)", render: (pl) => (pl.api_plugin ? h("span", { class: "mono small" }, String(pl.api_plugin)) : h("span", { class: "muted" }, "—")) },
    { label: "Depends on", render: (pl) => tags(pl.dependencies, { empty: "—" }) },
  ], rows, { caption: "Plugins", empty: "No plugins reported." }));
}
