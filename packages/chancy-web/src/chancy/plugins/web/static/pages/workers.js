// Workers: id, leader badge, tags, queues, last seen, expiry. Refresh 10 s.

import { api } from "../api.js";
import { badge, emptyState, errorBox, loading, pageHeader, queueLinks, table, tags } from "../components/ui.js";
import { h, link, replace, seg } from "../lib/dom.js";
import { timeEl, toDate } from "../lib/format.js";

export function isExpired(worker) {
  const d = toDate(worker?.expires_at);
  return Boolean(d && d.getTime() < Date.now());
}

export default async function mount(view, ctx) {
  ctx.setTitle("Workers");
  const list = h("div", {}, loading());
  const updated = h("span", { class: "muted small" });
  view.append(pageHeader("Workers", { subtitle: ["Workers announce themselves with a heartbeat. ", updated] }), list);

  async function load() {
    try {
      const workers = await api.get("/api/v1/workers", null, { signal: ctx.signal });
      const rows = (Array.isArray(workers) ? workers : []).slice()
        .sort((a, b) => (b.is_leader ? 1 : 0) - (a.is_leader ? 1 : 0) || String(a.worker_id).localeCompare(String(b.worker_id)));
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
      if (!rows.length) {
        replace(list, emptyState("No workers", "No worker has announced itself recently. Start one with `chancy worker start`."));
        return;
      }
      replace(list, table([
        { label: "Worker", render: (w) => [link(`/workers/${seg(w.worker_id)}`, w.worker_id, { class: "mono strong" }),
          w.is_leader ? [" ", badge("Leader", "leader")] : null, isExpired(w) ? [" ", badge("Expired", "warn")] : null] },
        { label: "Tags", render: (w) => tags(w.tags) },
        { label: "Queues", render: (w) => queueLinks(w.queues) },
        { label: "Last seen", render: (w) => timeEl(w.last_seen) },
        { label: "Expires", render: (w) => timeEl(w.expires_at) },
      ], rows, { caption: "Workers", rowAttrs: (w) => ({ class: isExpired(w) ? "dim" : "" }) }));
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(list, errorBox(err, { title: "Could not load workers", retry: load }));
    }
  }
  await load();
  ctx.every(10000, load);
}
