// Small shared pieces: state badges, feedback boxes, key/value lists, tables.

import { h, link, seg } from "../lib/dom.js";
import { titleCase } from "../lib/format.js";

/** A coloured dot for a job/workflow/queue state (with a text alternative). */
export function stateDot(state) {
  const value = String(state ?? "unknown");
  return h("span", { class: `dot state-${value}`, role: "img", "aria-label": value, title: value });
}

/** A pill with the state's name. */
export function stateBadge(state) {
  const value = String(state ?? "unknown");
  return h("span", { class: `badge state-${value}` }, h("span", { class: `dot state-${value}`, "aria-hidden": "true" }), value);
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}` }, text);
}

/** The page heading with optional subtitle and right-hand actions. */
export function pageHeader(title, { subtitle, actions, crumbs } = {}) {
  return h(
    "header",
    { class: "page-header" },
    crumbs
      ? h(
          "nav",
          { class: "crumbs", "aria-label": "Breadcrumb" },
          crumbs.map(([route, text], i) => [i ? h("span", { class: "sep", "aria-hidden": "true" }, "/") : null,
            route ? link(route, text) : h("span", {}, text)]),
        )
      : null,
    h(
      "div",
      { class: "page-title-row" },
      h("div", { class: "page-title" }, h("h1", {}, title), subtitle ? h("p", { class: "subtitle" }, subtitle) : null),
      actions ? h("div", { class: "actions" }, actions) : null,
    ),
  );
}

/** An inline error message for a failed API call. */
export function errorBox(err, { title = "Something went wrong", retry } = {}) {
  if (err && err.name === "AbortError") return null;
  const status = err && typeof err.status === "number" && err.status ? ` (HTTP ${err.status})` : "";
  return h(
    "div",
    { class: "callout error", role: "alert" },
    h("strong", {}, title + status),
    h("p", {}, err && err.message ? err.message : String(err)),
    retry ? h("button", { type: "button", class: "btn small", onclick: retry }, "Try again") : null,
  );
}

/** A friendly "nothing here" box. */
export function emptyState(title, text, extra) {
  return h("div", { class: "empty" }, h("p", { class: "empty-title" }, title), text ? h("p", {}, text) : null, extra ?? null);
}

/** Shown when a plugin's endpoint is missing. */
export function pluginMissing(pluginLabel, className) {
  return emptyState(
    `${pluginLabel} is not available`,
    `The API did not answer this page's endpoint. Install and enable the ${className} plugin on the worker that runs the API to use it.`,
  );
}

export function loading(text = "Loading…") {
  return h("div", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), text);
}

/** A definition list from [label, value] pairs (value: node or text). */
export function kvList(pairs, cls = "") {
  return h(
    "dl",
    { class: `kv ${cls}` },
    pairs.filter(Boolean).map(([label, value]) => [
      h("dt", {}, label),
      h("dd", {}, value === null || value === undefined || value === "" ? h("span", { class: "muted" }, "—") : value),
    ]),
  );
}

/** Tag chips. */
export function tags(list, { empty = "none" } = {}) {
  const items = Array.isArray(list) ? list : list ? [list] : [];
  if (!items.length) return h("span", { class: "muted" }, empty);
  return h("span", { class: "chips" }, items.map((t) => h("code", { class: "chip" }, String(t))));
}

/** Queue links. */
export function queueLinks(list) {
  const items = Array.isArray(list) ? list : [];
  if (!items.length) return h("span", { class: "muted" }, "none");
  return h("span", { class: "chips" }, items.map((q) => link(`/queues/${seg(q)}`, String(q), { class: "chip" })));
}

/**
 * A table. columns: [{label, render(row), cls, headCls}]. Returns a wrapper
 * that scrolls horizontally on small screens.
 */
export function table(columns, rows, { caption, empty = "Nothing to show.", rowAttrs } = {}) {
  const thead = h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.headCls || c.cls || "" }, c.label))));
  const tbody = h(
    "tbody",
    {},
    rows.length
      ? rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => h("td", { class: c.cls || "" }, c.render(row)))))
      : h("tr", {}, h("td", { colspan: columns.length, class: "empty-cell" }, empty)),
  );
  return h("div", { class: "table-wrap" }, h("table", {}, caption ? h("caption", { class: "sr-only" }, caption) : null, thead, tbody));
}

/** A section with a heading. */
export function section(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, children);
}

/** Show a short-lived message at the bottom of the screen. */
export function toast(message, kind = "info", ms = 4000) {
  const root = document.getElementById("toasts");
  if (!root) return;
  const el = h("div", { class: `toast ${kind}` }, message);
  root.appendChild(el);
  setTimeout(() => el.remove(), ms);
}

/** A <select> with options [{value, label}] or strings. */
export function select(options, { value, id, name, label, onchange, cls = "" } = {}) {
  return h(
    "select",
    { id, name, class: cls, "aria-label": label, onchange },
    options.map((o) => {
      const opt = typeof o === "object" ? o : { value: o, label: titleCase(o) };
      return h("option", { value: opt.value, selected: String(opt.value) === String(value) }, opt.label);
    }),
  );
}

/** Resolution picker shared by every metrics chart. */
export const RESOLUTIONS = ["1min", "5min", "1hour", "1day"];

export function resolutionPicker(value, onchange) {
  const id = "res-" + Math.random().toString(36).slice(2, 8);
  return h(
    "div",
    { class: "field inline" },
    h("label", { for: id }, "Resolution"),
    select(RESOLUTIONS.map((r) => ({ value: r, label: r })), { id, value, onchange: (e) => onchange(e.target.value) }),
  );
}
