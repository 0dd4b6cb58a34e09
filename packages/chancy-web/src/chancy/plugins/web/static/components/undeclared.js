// Queues that have waiting jobs but were never declared: no worker serves
// them, so their jobs wait until someone declares the queue.

import { api } from "../api.js";
import { h, link, seg } from "../lib/dom.js";
import { num } from "../lib/format.js";

export const UNDECLARED_ROUTE = "GET /api/v1/undeclared-queues";

/** {name: waiting jobs}; {} when the API cannot tell. */
export async function fetchUndeclared(ctx) {
  if (!ctx.hasRoute(UNDECLARED_ROUTE)) return {};
  try {
    const data = await api.get("/api/v1/undeclared-queues", null, { signal: ctx.signal });
    return data && typeof data === "object" && !Array.isArray(data) ? data : {};
  } catch (err) {
    if (err.name === "AbortError") throw err;
    return {};
  }
}

/**
 * A warning listing the undeclared queues, with how to declare them.
 * `onDeclare(name)` adds a "Declare" button per queue (the Queues page).
 */
export function undeclaredNotice(undeclared, { onDeclare } = {}) {
  const names = Object.keys(undeclared || {}).sort();
  if (!names.length) return null;
  return h(
    "div",
    { class: "callout warn undeclared", role: "status" },
    h("strong", {}, names.length === 1 ? "Jobs wait in a queue nobody declared" : `Jobs wait in ${names.length} queues nobody declared`),
    h("p", {}, "No worker serves a queue until it is declared, so these jobs do not run. Declare the queue (from here, with ",
      h("code", {}, "chancy.declare(Queue(\"name\"))"), " or with ", h("code", {}, "chancy queue declare NAME"), ")."),
    h("ul", { class: "undeclared-list" }, names.map((name) => h("li", {},
      h("code", { class: "mono" }, name), " — ",
      link(`/jobs?queue=${encodeURIComponent(name)}`, `${num(undeclared[name])} waiting job${Number(undeclared[name]) === 1 ? "" : "s"}`),
      onDeclare ? [" ", h("button", { type: "button", class: "btn small", dataset: { declare: name }, onclick: () => onDeclare(name) }, "Declare…")] : null,
      !onDeclare ? [" ", link(`/queues?new=${seg(name)}`, "Declare…", { class: "btn small" })] : null))),
  );
}
