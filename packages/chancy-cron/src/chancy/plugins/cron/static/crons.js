// Cron schedules: the list and a timeline of upcoming runs.

import {
  absolute, api, emptyState, errorBox, h, link, loading, pageHeader, pluginMissing, replace, s, section, seg, select, table, timeEl, toDate,
} from "../../kit.js";
import { describeCron, nextRuns } from "./schedule.js";
const WINDOWS = [
  { value: "3600", label: "Next hour" },
  { value: "21600", label: "Next 6 hours" },
  { value: "86400", label: "Next 24 hours" },
  { value: "604800", label: "Next 7 days" },
];
const MAX_MARKS = 400;

/** Upcoming runs: the server's next_run first, then the local preview. */
export function upcoming(cron, { count = 10, until = null } = {}) {
  const first = toDate(cron.next_run);
  const runs = first ? [first] : [];
  let preview = true;
  try {
    const from = first || new Date();
    runs.push(...nextRuns(cron.cron, { from, count: Math.max(0, count - runs.length), until, timezone: cron.timezone || "UTC" }));
  } catch {
    preview = false;
  }
  return { runs: until ? runs.filter((r) => r.getTime() <= until.getTime()) : runs, preview };
}

function timeline(crons, windowSeconds) {
  const width = 900;
  const rowH = 28;
  const left = 200;
  const right = 16;
  const top = 26;
  const now = Date.now();
  const end = now + windowSeconds * 1000;
  const innerW = width - left - right;
  const height = top + crons.length * rowH + 8;
  const x = (t) => left + ((t - now) / (end - now)) * innerW;
  const svg = s("svg", { class: "timeline", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `Cron runs in the ${WINDOWS.find((w) => w.value === String(windowSeconds))?.label.toLowerCase()}` });
  // Time axis.
  const ticks = 6;
  for (let i = 0; i <= ticks; i += 1) {
    const t = now + ((end - now) * i) / ticks;
    const label = windowSeconds > 86400
      ? new Date(t).toLocaleDateString(undefined, { weekday: "short", day: "numeric" }) + " " + new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
      : new Date(t).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    svg.appendChild(s("line", { x1: x(t), x2: x(t), y1: top - 6, y2: height - 4, class: "grid" }));
    svg.appendChild(s("text", { x: x(t), y: 14, class: "axis", "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" }, i === 0 ? "now" : label));
  }
  crons.forEach((cron, i) => {
    const y = top + i * rowH + rowH / 2;
    const { runs, preview } = upcoming(cron, { count: MAX_MARKS, until: new Date(end) });
    const a = s("a", { href: `#/crons/${seg(cron.unique_key)}` },
      s("text", { x: left - 10, y: y + 4, class: "tl-label", "text-anchor": "end" }, String(cron.unique_key).length > 26 ? String(cron.unique_key).slice(0, 25) + "…" : String(cron.unique_key)));
    svg.appendChild(a);
    svg.appendChild(s("line", { x1: left, x2: width - right, y1: y, y2: y, class: "tl-track" }));
    for (const r of runs) {
      const overdue = r.getTime() < now;
      svg.appendChild(s("circle", { cx: x(Math.max(now, r.getTime())), cy: y, r: runs.length > 150 ? 1.8 : runs.length > 40 ? 2.6 : 4.5, class: overdue ? "tl-run overdue" : "tl-run" },
        s("title", {}, `${cron.unique_key}: ${absolute(r)}${overdue ? " (due)" : ""}`)));
    }
    if (!runs.length) {
      svg.appendChild(s("text", { x: left + 6, y: y - 6, class: "axis" }, preview ? "no run in this window" : "next run outside this window"));
    } else if (runs.length >= MAX_MARKS) {
      svg.appendChild(s("text", { x: width - right, y: y - 6, class: "axis", "text-anchor": "end" }, `${MAX_MARKS}+ runs`));
    }
  });
  return svg;
}

export default async function mount(view, ctx) {
  ctx.setTitle("Cron");
  const body = h("div", {}, loading());
  view.append(pageHeader("Cron", { subtitle: "Recurring jobs. Times are shown in your browser's time zone." }), body);
  let windowSeconds = Number(ctx.query.get("window") || 86400);
  if (!WINDOWS.some((w) => Number(w.value) === windowSeconds)) windowSeconds = 86400;

  async function load() {
    let crons;
    try {
      crons = await api.get("/api/v1/crons", null, { signal: ctx.signal });
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(body, err.status === 404 ? pluginMissing("Cron", "Cron") : errorBox(err, { title: "Could not load cron schedules", retry: load }));
      return;
    }
    const rows = (Array.isArray(crons) ? crons : Object.values(crons || {}))
      .slice()
      .sort((a, b) => (toDate(a.next_run)?.getTime() ?? Infinity) - (toDate(b.next_run)?.getTime() ?? Infinity));
    if (!rows.length) {
      replace(body, emptyState("No schedules", "Use Cron.schedule(chancy, \"*/5 * * * *\", job) to add one."));
      return;
    }
    const timelineBox = h("div", { class: "timeline-box" }, timeline(rows, windowSeconds));
    const picker = select(WINDOWS, {
      id: "tl-window",
      value: String(windowSeconds),
      onchange: (e) => {
        windowSeconds = Number(e.target.value);
        history.replaceState(null, "", `#/crons?window=${windowSeconds}`);
        replace(timelineBox, timeline(rows, windowSeconds));
      },
    });
    replace(body,
      section(null,
        h("div", { class: "section-head" }, h("h2", {}, "Timeline"),
          h("div", { class: "field inline" }, h("label", { for: "tl-window" }, "Window"), picker)),
        timelineBox,
        h("p", { class: "muted small" }, "The first mark of each row is the stored next run; later marks are previewed in the browser.")),
      table([
        { label: "Key", render: (c) => link(`/crons/${seg(c.unique_key)}`, c.unique_key, { class: "mono strong" }) },
        { label: "Function", render: (c) => h("span", { class: "mono" }, c.job?.func || "—") },
        { label: "Queue", render: (c) => (c.job?.queue ? link(`/queues/${seg(c.job.queue)}`, c.job.queue) : "—") },
        { label: "Expression", render: (c) => [h("code", {}, c.cron), describeCron(c.cron) ? h("div", { class: "small muted" }, describeCron(c.cron)) : null,
          c.timezone && c.timezone !== "UTC" ? h("div", { class: "small muted" }, c.timezone) : null] },
        { label: "Next run", render: (c) => timeEl(c.next_run) },
        { label: "Last run", render: (c) => timeEl(c.last_run) },
      ], rows, { caption: "Cron schedules" }));
  }
  await load();
  ctx.every(30000, load);
}
