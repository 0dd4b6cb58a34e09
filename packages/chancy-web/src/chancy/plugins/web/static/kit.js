// The dashboard's toolkit for pages that plugins contribute.
//
// A plugin's page module is served at <dashboard>/plugins/<plugin>/<file>,
// so it imports this file as "../../kit.js" (wherever the dashboard is
// mounted). What this file exports is the supported surface: DOM builders
// that never parse HTML, the API client, the shared components and
// formatting helpers. Everything else in the dashboard may change.
//
//   import { api, h, pageHeader, table } from "../../kit.js";
//
//   export default async function mount(view, ctx) {
//     ctx.setTitle("Things");
//     const things = await api.get("/api/v1/things", null, { signal: ctx.signal });
//     view.append(pageHeader("Things"), table([...], things.items));
//   }

export { ApiError, api, apiUrl, asPage, metricPath, p, session } from "./api.js";
export { chart, sparkline, summarize } from "./components/chart.js";
export { confirmDialog } from "./components/dialog.js";
export { jsonBlock, jsonInline } from "./components/json.js";
export { fetchMetricsQuietly, metricCard, metricsPanel } from "./components/metrics.js";
export { progressText, progressView } from "./components/progress.js";
export {
  badge, emptyState, errorBox, kvList, loading, pageHeader, pluginMissing, queueLinks, RESOLUTIONS,
  resolutionPicker, section, select, stateBadge, stateDot, table, tags, toast,
} from "./components/ui.js";
export { h, link, replace, s, seg } from "./lib/dom.js";
export {
  absolute, bytes, compactNum, duration, isCancelled, JOB_STATES, jobState, jobTimeField, keyRateLimit,
  limitValue, normLimit, num, plural, queueLimits, rateLimit, relative, shortId, shortName, timeEl,
  timeFull, titleCase, toDate,
} from "./lib/format.js";
