// Gossip: the live hub event stream from the API websocket. Pausable,
// filterable, keeps the last 200 events, reconnects with back-off.

import { wsProtocols, wsUrl } from "../api.js";
import { jsonInline } from "../components/json.js";
import { emptyState, pageHeader } from "../components/ui.js";
import { h, link, replace, seg } from "../lib/dom.js";

const KEEP = 200;

/** Links for ids found in an event body. */
function related(event, data, ctx) {
  const out = [];
  if (!data || typeof data !== "object") return out;
  const queue = typeof data.q === "string" ? data.q : typeof data.queue === "string" ? data.queue : null;
  if (queue) out.push(link(`/queues/${seg(queue)}`, `queue ${queue}`));
  if (typeof data.j === "string") out.push(link(`/job/${seg(data.j)}`, "job"));
  if (typeof data.worker_id === "string") out.push(link(`/workers/${seg(data.worker_id)}`, "worker"));
  // A page of a plugin, linked only when the server says it exists.
  if (event.startsWith("workflow.") && ctx.hasPage("/workflows/:id") && (typeof data.id === "string" || typeof data.workflow_id === "string")) {
    out.push(link(`/workflows/${seg(data.id || data.workflow_id)}`, "workflow"));
  }
  return out;
}

export default async function mount(view, ctx) {
  ctx.setTitle("Gossip");
  const events = [];
  let paused = false;
  let missed = 0;
  let socket = null;
  let retryTimer = null;
  let attempts = 0;
  let closedByUs = false;
  let total = 0;

  const status = h("span", { class: "conn-status", role: "status" });
  const pauseButton = h("button", { type: "button", class: "btn", "aria-pressed": "false", onclick: togglePause }, "Pause");
  const clearButton = h("button", { type: "button", class: "btn ghost", onclick: () => { events.length = 0; missed = 0; draw(); } }, "Clear");
  const reconnectButton = h("button", { type: "button", class: "btn ghost", onclick: () => { attempts = 0; connect(); } }, "Reconnect");
  const filterInput = h("input", { id: "gossip-filter", type: "search", placeholder: "Filter by event name or content…", autocomplete: "off", oninput: () => draw() });
  const counter = h("span", { class: "muted small" });
  const list = h("ol", { class: "event-list", "aria-live": "off" });
  const listBox = h("div", {});

  view.append(
    pageHeader("Gossip", {
      subtitle: ["Live events from the worker hub that serves the API. ", status],
      actions: [pauseButton, clearButton, reconnectButton],
    }),
    h("section", { class: "card" },
      h("div", { class: "toolbar" },
        h("div", { class: "field grow" }, h("label", { for: "gossip-filter" }, "Filter"), filterInput),
        h("div", { class: "field end" }, counter)),
      listBox),
  );

  function setStatus(text, kind) {
    status.className = `conn-status ${kind}`;
    status.textContent = text;
  }

  function togglePause() {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", String(paused));
    if (!paused) missed = 0;
    draw();
  }

  function matches(e) {
    const needle = filterInput.value.trim().toLowerCase();
    if (!needle) return true;
    return e.event.toLowerCase().includes(needle) || e.text.toLowerCase().includes(needle);
  }

  function row(e) {
    const group = e.event.split(".")[0];
    return h("li", { class: "event" },
      h("time", { datetime: e.at.toISOString(), class: "mono small muted" }, e.at.toLocaleTimeString(undefined, { hour12: false }) + "." + String(e.at.getMilliseconds()).padStart(3, "0")),
      h("span", { class: `event-name ev-${group.replace(/[^a-z]/gi, "")}` }, e.event),
      h("code", { class: "event-data", title: e.text }, jsonInline(e.data, 240)),
      h("span", { class: "event-links" }, related(e.event, e.data, ctx)));
  }

  let visible = [];
  function draw() {
    counter.textContent = `${total} received · showing last ${Math.min(events.length, KEEP)}${paused && missed ? ` · ${missed} new while paused` : ""}`;
    if (paused) return;
    visible = events.filter(matches);
    if (!events.length) {
      replace(listBox, emptyState("Waiting for events…", "Events appear as workers push jobs, change queues, announce themselves or elect a leader."));
      return;
    }
    if (!visible.length) {
      replace(listBox, emptyState("No event matches the filter"));
      return;
    }
    replace(list, visible.map(row));
    if (list.parentNode !== listBox) replace(listBox, list);
  }

  function push(message) {
    let parsed;
    try {
      parsed = JSON.parse(message);
    } catch {
      parsed = { event: "message", data: message };
    }
    const event = String(parsed?.event ?? parsed?.t ?? parsed?.name ?? "event");
    const data = parsed && typeof parsed === "object" && "data" in parsed ? parsed.data : parsed;
    const entry = { at: new Date(), event, data, text: jsonInline(data, 100000) };
    total += 1;
    events.unshift(entry);
    if (events.length > KEEP) events.length = KEEP;
    if (paused) {
      missed += 1;
      counter.textContent = `${total} received · ${missed} new while paused`;
      return;
    }
    if (!matches(entry)) {
      counter.textContent = `${total} received · showing last ${events.length}`;
      return;
    }
    if (list.parentNode !== listBox) {
      draw();
      return;
    }
    list.insertBefore(row(entry), list.firstChild);
    while (list.childElementCount > KEEP) list.lastChild.remove();
    counter.textContent = `${total} received · showing last ${events.length}`;
  }

  function connect() {
    clearTimeout(retryTimer);
    if (socket) {
      closedByUs = true;
      socket.close();
    }
    closedByUs = false;
    let url;
    try {
      url = wsUrl();
    } catch (err) {
      setStatus(`Bad websocket URL: ${err.message}`, "bad");
      return;
    }
    setStatus("Connecting…", "wait");
    const ws = new WebSocket(url, wsProtocols());
    socket = ws;
    ws.addEventListener("open", () => {
      if (socket !== ws) return;
      attempts = 0;
      setStatus("Connected", "ok");
    });
    ws.addEventListener("message", (e) => {
      if (socket === ws) push(typeof e.data === "string" ? e.data : String(e.data));
    });
    ws.addEventListener("close", (e) => {
      if (socket !== ws || closedByUs || ctx.signal.aborted) return;
      attempts += 1;
      const delay = Math.min(30000, 1000 * 2 ** Math.min(attempts, 5));
      const why = e.code === 1008 || e.code === 4401 || e.code === 4403 ? "refused (authentication)" : `closed (code ${e.code})`;
      setStatus(`Connection ${why}; retrying in ${Math.round(delay / 1000)} s`, "bad");
      retryTimer = setTimeout(connect, delay);
    });
    ws.addEventListener("error", () => {
      if (socket === ws) setStatus("Connection error", "bad");
    });
  }

  ctx.onCleanup(() => {
    clearTimeout(retryTimer);
    closedByUs = true;
    if (socket) socket.close();
    socket = null;
  });
  draw();
  connect();
}
