// A small 5-field cron evaluator for previews (timeline, upcoming runs).
// The server's `next_run` stays the authority; this only looks ahead.
//
// Supports 5 fields, or 6 with seconds first (as chancy-cron does), *, ?,
// lists, ranges, steps (*/n, a-b/n, a/n), month and weekday names, 7 =
// Sunday, @yearly/@annually/@monthly/@weekly/@daily/@midnight/@hourly, and
// Vixie semantics when both day fields are restricted (either may match).
// Anything else (L, W, #) throws.

const ALIASES = {
  "@yearly": "0 0 1 1 *",
  "@annually": "0 0 1 1 *",
  "@monthly": "0 0 1 * *",
  "@weekly": "0 0 * * 0",
  "@daily": "0 0 * * *",
  "@midnight": "0 0 * * *",
  "@hourly": "0 * * * *",
};
const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const SECOND = { name: "second", min: 0, max: 59 };
const FIELDS = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12, names: MONTHS, offset: 1 },
  { name: "day of week", min: 0, max: 7, names: DAYS, offset: 0 },
];

function value(text, field) {
  const lower = text.toLowerCase();
  if (field.names) {
    const i = field.names.indexOf(lower);
    if (i >= 0) return i + field.offset;
  }
  if (!/^\d+$/.test(text)) throw new Error(`Unsupported ${field.name} value “${text}”`);
  const n = Number(text);
  if (n < field.min || n > field.max) throw new Error(`${field.name} ${n} is out of range`);
  return n;
}

function parseField(text, field) {
  const set = new Set();
  for (const part of text.split(",")) {
    if (!part) throw new Error(`Empty ${field.name} list item`);
    const [range, stepText] = part.split("/");
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1) throw new Error(`Bad step in “${part}”`);
    let lo;
    let hi;
    if (range === "*" || range === "?") {
      lo = field.min;
      hi = field.max === 7 ? 6 : field.max;
    } else if (range.includes("-")) {
      const [a, b] = range.split("-");
      lo = value(a, field);
      hi = value(b, field);
      if (hi < lo) throw new Error(`Reversed range “${range}”`);
    } else {
      lo = value(range, field);
      hi = stepText === undefined ? lo : (field.max === 7 ? 6 : field.max);
    }
    for (let v = lo; v <= hi; v += step) set.add(field.max === 7 && v === 7 ? 0 : v);
  }
  return set;
}

/** Parse an expression into field sets; throws Error on unsupported syntax. */
export function parseCron(expression) {
  let text = String(expression || "").trim().toLowerCase();
  text = ALIASES[text] || text;
  let parts = text.split(/\s+/);
  let second = new Set([0]);
  if (parts.length === 6) {
    second = parseField(parts[0], SECOND);
    parts = parts.slice(1);
  }
  if (parts.length !== 5) throw new Error("Only 5- or 6-field expressions can be previewed");
  const sets = parts.map((p, i) => parseField(p, FIELDS[i]));
  return {
    second: [...second].sort((a, b) => a - b),
    minute: sets[0],
    hour: sets[1],
    dom: sets[2],
    month: sets[3],
    dow: sets[4],
    domStar: parts[2] === "*" || parts[2] === "?",
    dowStar: parts[4] === "*" || parts[4] === "?",
  };
}

// --- time zones ------------------------------------------------------------

const formatters = new Map();

function formatter(tz) {
  if (!formatters.has(tz)) {
    formatters.set(tz, new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    }));
  }
  return formatters.get(tz);
}

/** Offset (ms) of `tz` at instant `ms`: wall clock minus UTC. */
function offset(tz, ms) {
  if (!tz || tz === "UTC" || tz === "Etc/UTC") return 0;
  const parts = {};
  for (const p of formatter(tz).formatToParts(new Date(ms))) parts[p.type] = p.value;
  const wall = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour % 24, +parts.minute, +parts.second);
  return wall - Math.floor(ms / 1000) * 1000;
}

/** Whether a time zone name is usable here. */
export function validZone(tz) {
  if (!tz) return false;
  try {
    formatter(tz);
    return true;
  } catch {
    return false;
  }
}

function wallToInstant(tz, wall) {
  const guess = wall - offset(tz, wall);
  const instant = wall - offset(tz, guess);
  if (instant + offset(tz, instant) === wall) return instant;
  // The wall time falls in a daylight-saving gap: like Vixie cron, run at
  // the moment the clocks jump (binary search for the transition).
  let lo = Math.min(guess, instant) - 3 * 3600000;
  let hi = Math.max(guess, instant) + 3 * 3600000;
  const before = offset(tz, lo);
  while (hi - lo > 60000) {
    const mid = Math.floor((lo + hi) / 2 / 60000) * 60000;
    if (offset(tz, mid) === before) lo = mid;
    else hi = mid;
  }
  return hi;
}

/**
 * Upcoming run instants (Date) after `from`, at most `count`, not later than
 * `until` (Date, optional). `timezone` defaults to UTC.
 */
export function nextRuns(expression, { from = new Date(), count = 10, until = null, timezone = "UTC" } = {}) {
  const c = parseCron(expression);
  const tz = validZone(timezone) ? timezone : "UTC";
  const runs = [];
  const start = from.getTime();
  const limit = until ? until.getTime() : start + 5 * 366 * 86400000;
  // Walk the wall clock (held as a UTC timestamp), skipping whole months,
  // days, hours and minutes that cannot match.
  let wall = Math.floor((start + offset(tz, start)) / 1000) * 1000 + 1000;
  let last = start;
  for (let guard = 0; guard < 200000 && runs.length < count; guard += 1) {
    const d = new Date(wall);
    if (wall - 14 * 3600000 > limit) break;
    const month = d.getUTCMonth() + 1;
    if (!c.month.has(month)) {
      wall = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
      continue;
    }
    const domOk = c.dom.has(d.getUTCDate());
    const dowOk = c.dow.has(d.getUTCDay());
    const dayOk = c.domStar && c.dowStar ? true : c.domStar ? dowOk : c.dowStar ? domOk : domOk || dowOk;
    if (!dayOk) {
      wall = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
      continue;
    }
    if (!c.hour.has(d.getUTCHours())) {
      wall = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours() + 1);
      continue;
    }
    const minuteStart = Math.floor(wall / 60000) * 60000;
    const sec = c.minute.has(d.getUTCMinutes()) ? c.second.find((s) => s >= d.getUTCSeconds()) : undefined;
    if (sec === undefined) {
      wall = minuteStart + 60000;
      continue;
    }
    wall = minuteStart + sec * 1000;
    const instant = wallToInstant(tz, wall);
    if (instant > last && instant <= limit) {
      runs.push(new Date(instant));
      last = instant;
    } else if (instant > limit) break;
    wall += 1000;
  }
  return runs;
}

/** A short English description for common shapes, else null. */
export function describeCron(expression) {
  let c;
  try {
    c = parseCron(expression);
  } catch {
    return null;
  }
  const all = (set, n) => set.size === n;
  const pad = (n) => String(n).padStart(2, "0");
  const everyMinute = all(c.minute, 60);
  const everyHour = all(c.hour, 24);
  const anyDay = c.domStar && c.dowStar && all(c.month, 12);
  if (!anyDay) return null;
  if (c.second.length !== 1 || c.second[0] !== 0) {
    return c.second.length === 60 && everyMinute && everyHour ? "every second" : null;
  }
  if (everyMinute && everyHour) return "every minute";
  if (everyHour && c.minute.size === 1) return `every hour at minute ${[...c.minute][0]}`;
  if (everyHour) {
    const mins = [...c.minute].sort((a, b) => a - b);
    const step = mins[1] - mins[0];
    if (mins[0] === 0 && mins.every((m, i) => m === i * step) && 60 % step === 0) return `every ${step} minutes`;
  }
  if (c.minute.size === 1 && c.hour.size === 1) return `daily at ${pad([...c.hour][0])}:${pad([...c.minute][0])}`;
  return null;
}
