// One cron schedule: expression, next/last run, upcoming runs, stored job.

import {
  absolute, api, emptyState, errorBox, h, jsonBlock, kvList, limitValue, link, loading, normLimit, num, pageHeader, pluginMissing, relative, replace, section, seg, table, timeFull,
} from "../../kit.js";
import { describeCron } from "./schedule.js";
import { upcoming } from "./crons.js";
export default async function mount(view, ctx) {
  const key = ctx.params.key;
  ctx.setTitle(`Cron ${key}`);
  const body = h("div", {}, loading());
  view.append(body);

  let crons;
  try {
    crons = await api.get("/api/v1/crons", null, { signal: ctx.signal });
  } catch (err) {
    if (err.name === "AbortError") return;
    replace(body, pageHeader(key, { crumbs: [["/crons", "Cron"], [null, key]] }),
      err.status === 404 ? pluginMissing("Cron", "Cron") : errorBox(err, { title: "Could not load cron schedules" }));
    return;
  }
  const list = Array.isArray(crons) ? crons : Object.values(crons || {});
  const cron = list.find((c) => String(c.unique_key) === key);
  if (!cron) {
    replace(body, pageHeader(key, { crumbs: [["/crons", "Cron"], [null, key]] }),
      emptyState("No such schedule", `No cron schedule has the key “${key}”.`, link("/crons", "All schedules", { class: "btn" })));
    return;
  }
  const job = cron.job || {};
  const { runs, preview } = upcoming(cron, { count: 10 });
  const limits = Array.isArray(job.limits) ? job.limits.map(normLimit) : [];
  replace(body,
    pageHeader(cron.unique_key, {
      crumbs: [["/crons", "Cron"], [null, cron.unique_key]],
      subtitle: [h("code", {}, cron.cron), describeCron(cron.cron) ? ` — ${describeCron(cron.cron)}` : ""],
      actions: job.func ? [link(`/jobs/pending?func=${encodeURIComponent(job.func)}`, "Pending runs", { class: "btn" }),
        link(`/jobs/succeeded?func=${encodeURIComponent(job.func)}`, "Past runs", { class: "btn" })] : null,
    }),
    h("div", { class: "two-col" },
      section("Schedule", kvList([
        ["Key", h("span", { class: "mono" }, cron.unique_key)],
        ["Expression", h("code", {}, cron.cron)],
        ["Time zone", cron.timezone || "UTC"],
        ["Next run", timeFull(cron.next_run)],
        ["Last run", timeFull(cron.last_run)],
      ])),
      section("Upcoming runs", runs.length
        ? h("ol", { class: "runs" }, runs.map((r, i) => h("li", {}, h("time", { datetime: r.toISOString() }, absolute(r)), " ",
            h("span", { class: "muted small" }, relative(r) + (i === 0 && cron.next_run ? " · stored" : "")))))
        : h("p", { class: "muted" }, "No upcoming run."),
      preview ? null : h("p", { class: "muted small" }, "This expression cannot be previewed in the browser; only the stored next run is shown."))),
    section("Stored job", kvList([
      ["Function", h("span", { class: "mono" }, job.func || "—")],
      ["Queue", job.queue ? link(`/queues/${seg(job.queue)}`, job.queue) : null],
      ["Priority", num(job.priority ?? 0)],
      ["Max attempts", num(job.max_attempts ?? 1)],
      ["Unique key", job.unique_key ? h("code", {}, job.unique_key) : null],
      ["Scheduled at", job.scheduled_at ? timeFull(job.scheduled_at) : null],
    ]),
    h("h3", {}, "Limits"),
    limits.length ? table([{ label: "Type", render: (l) => l.type }, { label: "Value", render: (l) => limitValue(l) }], limits, { caption: "Limits" })
      : h("p", { class: "muted" }, "No limits."),
    h("div", { class: "two-col tight" },
      h("div", {}, h("h3", {}, "Arguments (kwargs)"), jsonBlock(job.kwargs ?? {})),
      h("div", {}, h("h3", {}, "Meta"), jsonBlock(job.meta ?? {})))),
  );
}
