// Entry point: theme, login gate, layout and the hash router.

import { ApiError, api, logout, session } from "./api.js";
import { errorBox, loading } from "./components/ui.js";
import { h, replace } from "./lib/dom.js";
import { JOB_STATES, compactNum, num, titleCase } from "./lib/format.js";
import { applyTheme, themeToggle } from "./lib/theme.js";

applyTheme();

/**
 * The dashboard's own routes: pattern → page module. Plugins add theirs
 * through the server (GET /api/v1/configuration → pages); the dashboard
 * knows nothing about any plugin.
 */
const ROUTES = [
  { path: "/", page: "overview" },
  { path: "/jobs", page: "jobs" },
  { path: "/jobs/:state", page: "jobs" },
  { path: "/job/:id", page: "job" },
  { path: "/queues", page: "queues" },
  { path: "/queues/:name", page: "queue" },
  { path: "/workers", page: "workers" },
  { path: "/workers/:id", page: "worker" },
  { path: "/gossip", page: "gossip" },
  { path: "/system", page: "system" },
  { path: "/login", page: "login", bare: true },
];

const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const COUNTS_MS = 10000;

const state = {
  config: null, // {plugins: Set, pages: [], routes: Set}
  counts: null, // the last GET /api/v1/jobs/counts
  configError: null,
  shell: null,
  view: null,
  nav: null,
  cleanup: [],
  controller: null,
  returnTo: "/",
  token: 0,
};

function parseHash() {
  const raw = location.hash.startsWith("#") ? location.hash.slice(1) : "";
  const [pathPart, queryPart = ""] = raw.split("?");
  const path = "/" + (pathPart || "").replace(/^\/+/, "").replace(/\/+$/, "");
  return { path, query: new URLSearchParams(queryPart) };
}

function matchPattern(pattern, parts) {
  const segments = pattern.split("/").filter(Boolean);
  if (segments.length !== parts.length) return null;
  const params = {};
  for (let i = 0; i < segments.length; i += 1) {
    const p = segments[i];
    if (p.startsWith(":")) {
      try {
        params[p.slice(1)] = decodeURIComponent(parts[i]);
      } catch {
        params[p.slice(1)] = parts[i];
      }
    } else if (p !== parts[i]) return null;
  }
  return params;
}

/** The dashboard route for a path: a built-in page, else a plugin's. */
function match(path) {
  const parts = path.split("/").filter(Boolean);
  for (const route of ROUTES) {
    const params = matchPattern(route.path, parts);
    if (params) return { route, params };
  }
  for (const page of state.config?.pages || []) {
    const params = matchPattern(page.path, parts);
    if (params) return { route: { path: page.path, plugin: page }, params };
  }
  return null;
}

/** Go to a dashboard route ("/jobs/failed?func=x"). */
export function navigate(route, { replace: replaceEntry = false } = {}) {
  const target = "#" + route;
  if (location.hash === target) {
    render();
    return;
  }
  if (replaceEntry) {
    history.replaceState(null, "", target);
    render();
  } else {
    location.hash = target;
  }
}

/** Whether the API serves a route ("GET /api/v1/metrics/{prefix}"). */
function hasRoute(route) {
  return Boolean(state.config && state.config.routes.has(route));
}

/** Whether a dashboard page exists for a route pattern ("/workflows/:id"). */
function hasPage(path) {
  return ROUTES.some((r) => r.path === path) || Boolean(state.config?.pages.some((p) => p.path === path));
}

// ---------------------------------------------------------------- layout ---

function navLink(route, label, extra) {
  return h("li", {}, h("a", { href: "#" + route, dataset: { route } }, label, extra ?? null));
}

/** The count badge of a job state in the navigation (filled by refreshCounts). */
function countBadge(key) {
  return h("span", { class: "nav-count", dataset: { count: key }, "aria-hidden": "true" });
}

function buildNav() {
  const pluginPages = (state.config?.pages || []).filter((p) => p.nav && p.title);
  return h(
    "nav",
    { class: "sidebar", id: "sidebar", "aria-label": "Main" },
    h("ul", {},
      navLink("/", "Overview"),
      h("li", { class: "nav-group" },
        h("span", { class: "nav-heading", id: "nav-jobs" }, "Jobs"),
        h("ul", { "aria-labelledby": "nav-jobs" },
          navLink("/jobs", [h("span", { class: "dot state-all", "aria-hidden": "true" }), "All"], countBadge("all")),
          JOB_STATES.map((st) => navLink(`/jobs/${st}`, [h("span", { class: `dot state-${st}`, "aria-hidden": "true" }), titleCase(st)], countBadge(st))))),
      navLink("/queues", "Queues", h("span", { class: "nav-count warn", dataset: { count: "undeclared" }, "aria-hidden": "true" })),
      navLink("/workers", "Workers"),
      pluginPages.map((p) => h("li", { dataset: { plugin: p.plugin } }, h("a", { href: "#" + p.path, dataset: { route: p.path } }, p.title))),
      navLink("/gossip", "Gossip"),
      navLink("/system", "System"),
    ),
  );
}

/** Per-state job counts (and undeclared queues) in the navigation. */
async function refreshCounts() {
  if (!state.nav || document.hidden) return;
  const nav = state.nav;
  try {
    const [data, undeclared] = await Promise.all([
      api.get("/api/v1/jobs/counts", { cap: 10000 }),
      hasRoute("GET /api/v1/undeclared-queues") ? api.get("/api/v1/undeclared-queues").catch(() => ({})) : {},
    ]);
    if (nav !== state.nav) return;
    state.counts = data;
    const counts = data?.counts || {};
    const capped = new Set(data?.capped || []);
    let total = 0;
    for (const st of JOB_STATES) {
      total += Number(counts[st] || 0);
      setCount(nav, st, counts[st], capped.has(st));
    }
    setCount(nav, "all", total, capped.size > 0);
    const names = Object.keys(undeclared || {});
    const badge = nav.querySelector('[data-count="undeclared"]');
    if (badge) {
      badge.textContent = names.length ? "!" : "";
      badge.title = names.length ? `Jobs wait in ${names.length} undeclared queue${names.length === 1 ? "" : "s"}: ${names.join(", ")}` : "";
      badge.setAttribute("aria-hidden", names.length ? "false" : "true");
      if (names.length) badge.setAttribute("aria-label", badge.title);
    }
  } catch (err) {
    if (err?.name !== "AbortError") console.warn("job counts", err.message || err);
  }
}

function setCount(nav, key, value, capped) {
  const badge = nav.querySelector(`[data-count="${key}"]`);
  if (!badge) return;
  const n = Number(value || 0);
  badge.textContent = n ? `${compactNum(n)}${capped ? "+" : ""}` : "";
  badge.title = `${num(n)}${capped ? "+" : ""} ${key === "all" ? "jobs" : key + " jobs"}`;
}

/** The "go to a job" box: a job id opens the job, anything else searches functions. */
function jobSearch() {
  const input = h("input", {
    type: "search",
    id: "job-search",
    name: "q",
    placeholder: "Job id or function…",
    autocomplete: "off",
    spellcheck: "false",
    "aria-label": "Go to a job by id, or search function names",
  });
  return h("form", {
    class: "job-search",
    role: "search",
    onsubmit: (e) => {
      e.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      input.value = "";
      if (UUID_RE.test(text)) {
        const hex = text.replace(/-/g, "").toLowerCase();
        const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
        navigate(`/job/${encodeURIComponent(id)}`);
      } else {
        navigate(`/jobs?func=${encodeURIComponent(text)}`);
      }
    },
  }, input);
}

function buildShell() {
  const view = h("main", { id: "main", class: "view", tabindex: "-1" });
  const nav = buildNav();
  const menuButton = h("button", {
    type: "button",
    class: "btn ghost menu-toggle",
    "aria-controls": "sidebar",
    "aria-expanded": "false",
    onclick: () => {
      const open = !document.body.classList.contains("nav-open");
      document.body.classList.toggle("nav-open", open);
      menuButton.setAttribute("aria-expanded", String(open));
    },
  }, h("span", { "aria-hidden": "true" }, "☰"), h("span", { class: "sr-only" }, "Menu"));
  let host = session.base;
  try {
    host = new URL(session.base).host;
  } catch {
    // keep the raw value
  }
  const header = h(
    "header",
    { class: "topbar" },
    menuButton,
    h("a", { class: "brand", href: "#/" }, h("img", { src: "./favicon.svg", alt: "", width: 24, height: 24 }), h("span", {}, "Chancy")),
    jobSearch(),
    h("div", { class: "topbar-spacer" }),
    h("span", { class: "conn", title: session.base }, session.user ? `${session.user} @ ` : "", host),
    themeToggle(),
    h("button", {
      type: "button",
      class: "btn ghost",
      onclick: async () => {
        await logout();
        state.config = null;
        state.returnTo = "/";
        navigate("/login");
      },
    }, "Log out"),
  );
  const banner = state.configError
    ? h("div", { class: "banner" }, errorBox(state.configError, { title: "Could not read the API configuration; plugin pages are hidden" }))
    : null;
  const shell = h("div", { class: "shell" }, header, nav, h("div", { class: "content" }, banner, view));
  state.shell = shell;
  state.view = view;
  state.nav = nav;
  replace(document.getElementById("app"), shell);
  document.getElementById("app").classList.remove("boot");
  refreshCounts();
}

function highlightNav(path) {
  if (!state.nav) return;
  const route = path.startsWith("/jobs/") ? path : path.startsWith("/job/") ? null : path;
  for (const a of state.nav.querySelectorAll("a[data-route]")) {
    const r = a.dataset.route;
    let active;
    if (r === "/") active = path === "/";
    else if (r === "/jobs" || r.startsWith("/jobs/")) active = route === r;
    else active = path === r || path.startsWith(r + "/");
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// ------------------------------------------------------------ page context ---

function teardown() {
  for (const fn of state.cleanup.splice(0)) {
    try {
      fn();
    } catch (err) {
      console.warn("cleanup failed", err);
    }
  }
  if (state.controller) state.controller.abort();
  state.controller = null;
}

function makeContext(params, query, path) {
  const controller = new AbortController();
  state.controller = controller;
  const cleanup = state.cleanup;
  return {
    params,
    query,
    path,
    signal: controller.signal,
    hasRoute,
    hasPage,
    plugins: state.config ? [...state.config.plugins] : [],
    pages: state.config ? state.config.pages.slice() : [],
    navigate,
    onCleanup(fn) {
      cleanup.push(fn);
    },
    /** Run `fn` every `ms` while the page is shown and the tab is visible. */
    every(ms, fn) {
      let busy = false;
      const id = setInterval(async () => {
        if (busy || document.hidden || controller.signal.aborted) return;
        busy = true;
        try {
          await fn();
        } catch (err) {
          if (err?.name !== "AbortError") console.warn(err);
        } finally {
          busy = false;
        }
      }, ms);
      cleanup.push(() => clearInterval(id));
      return () => clearInterval(id);
    },
    /** Change query parameters of the current route (replaces history entry when asked). */
    setQuery(values, { replace: rep = false } = {}) {
      const q = new URLSearchParams(parseHash().query);
      for (const [k, v] of Object.entries(values)) {
        if (v === null || v === undefined || v === "" || (Array.isArray(v) && !v.length)) q.delete(k);
        else q.set(k, typeof v === "object" ? JSON.stringify(v) : String(v));
      }
      const text = q.toString();
      navigate(path + (text ? "?" + text : ""), { replace: rep });
    },
    setTitle(title) {
      document.title = title ? `${title} · Chancy` : "Chancy";
    },
  };
}

// ------------------------------------------------------------------ render ---

async function render() {
  const token = (state.token += 1);
  const { path, query } = parseHash();
  const found = match(path);
  teardown();
  document.body.classList.remove("nav-open");

  if (found?.route.redirect) {
    navigate(found.route.redirect, { replace: true });
    return;
  }
  if (found?.route.bare || !state.config) {
    if (!found?.route.bare) {
      state.returnTo = path + (query.toString() ? "?" + query.toString() : "");
      history.replaceState(null, "", "#/login");
    }
    state.shell = null;
    state.view = null;
    state.nav = null;
    const root = document.getElementById("app");
    root.classList.remove("boot");
    const ctx = makeContext({}, query, "/login");
    const mod = await import("./pages/login.js");
    if (token !== state.token) return;
    ctx.setTitle("Log in");
    await mod.default(root, ctx, { onLoggedIn, message: takeLoginMessage() });
    return;
  }
  if (!state.shell) buildShell();
  highlightNav(path);
  const view = state.view;
  const ctx = makeContext(found ? found.params : {}, query, path);
  replace(view, loading());
  try {
    if (!found) {
      const mod = await import("./pages/notfound.js");
      if (token !== state.token) return;
      ctx.setTitle("Not found");
      replace(view);
      await mod.default(view, ctx);
      return;
    }
    const page = found.route.plugin;
    const mod = page
      ? await import(new URL(page.module, session.base + "/").href).catch((err) => {
          throw new Error(`The page module ${page.module} of the plugin “${page.plugin}” could not be loaded (${err.message || err}). The dashboard loads plugin pages from the API server (${session.base}); the Content-Security-Policy only allows the dashboard's own origin.`);
        })
      : await import(`./pages/${found.route.page}.js`);
    if (page && typeof mod.default !== "function") {
      throw new Error(`The page module ${page.module} of the plugin “${page.plugin}” has no default export (it must export default async function mount(view, ctx)).`);
    }
    if (token !== state.token) return;
    replace(view);
    await mod.default(view, ctx);
  } catch (err) {
    if (err?.name === "AbortError" || token !== state.token) return;
    console.error(err);
    replace(view, errorBox(err, { title: "This page failed to load", retry: () => render() }));
  }
}

async function loadConfig() {
  state.configError = null;
  try {
    const data = await api.get("/api/v1/configuration");
    const list = (value) => (Array.isArray(value) ? value : []);
    state.config = {
      plugins: new Set(list(data?.plugins).map(String)),
      routes: new Set(list(data?.routes).map(String)),
      pages: list(data?.pages).filter((p) => p && typeof p.path === "string" && typeof p.module === "string"),
    };
    return true;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403 || err.status === 0)) {
      state.config = null;
      if (err.status === 0) state.loginMessage = err.message;
      return false;
    }
    // Logged in but the configuration is unreadable: show the dashboard anyway.
    state.configError = err;
    state.config = { plugins: new Set(), routes: new Set(), pages: [] };
    return true;
  }
}

async function onLoggedIn() {
  const ok = await loadConfig();
  if (!ok) throw new ApiError(401, "Logged in, but the API still refuses this session (is the token or cookie accepted?)");
  const target = state.returnTo && state.returnTo !== "/login" ? state.returnTo : "/";
  state.shell = null;
  navigate(target, { replace: true });
}

function takeLoginMessage() {
  const msg = state.loginMessage;
  state.loginMessage = null;
  return msg;
}

window.addEventListener("chancy:unauthorized", () => {
  if (!state.config) return;
  session.clearToken();
  state.config = null;
  const { path, query } = parseHash();
  state.returnTo = path + (query.toString() ? "?" + query.toString() : "");
  state.loginMessage = "Your session has expired or was refused. Please log in again.";
  render();
});

window.addEventListener("hashchange", () => {
  const { path } = parseHash();
  render();
  if (state.view && path !== "/login") state.view.focus({ preventScroll: true });
});

document.addEventListener("click", (event) => {
  const a = event.target.closest && event.target.closest("a[data-no-route]");
  if (!a) return;
  event.preventDefault();
  const target = document.getElementById("main");
  if (target) target.focus();
});

setInterval(() => {
  if (state.config && state.nav) refreshCounts();
}, COUNTS_MS);

async function boot() {
  const { path } = parseHash();
  if (!location.hash || location.hash === "#") history.replaceState(null, "", "#/");
  if (path !== "/login") await loadConfig();
  await render();
}

boot();
