// Entry point: theme, login gate, layout and the hash router.

import { ApiError, api, logout, session } from "./api.js";
import { errorBox, loading } from "./components/ui.js";
import { h, replace } from "./lib/dom.js";
import { JOB_STATES, titleCase } from "./lib/format.js";
import { applyTheme, themeToggle } from "./lib/theme.js";

applyTheme();

/** Routes: pattern → page module; `plugin` gates optional pages. */
const ROUTES = [
  { path: "/", page: "overview" },
  { path: "/jobs", redirect: "/jobs/pending" },
  { path: "/jobs/:state", page: "jobs" },
  { path: "/job/:id", page: "job" },
  { path: "/queues", page: "queues" },
  { path: "/queues/:name", page: "queue" },
  { path: "/workers", page: "workers" },
  { path: "/workers/:id", page: "worker" },
  { path: "/crons", page: "crons", plugin: "Cron" },
  { path: "/crons/:key", page: "cron", plugin: "Cron" },
  { path: "/workflows", page: "workflows", plugin: "WorkflowPlugin" },
  { path: "/workflows/:id", page: "workflow", plugin: "WorkflowPlugin" },
  { path: "/metrics", page: "metrics", plugin: "Metrics" },
  { path: "/metrics/:prefix", page: "metric", plugin: "Metrics" },
  { path: "/gossip", page: "gossip" },
  { path: "/system", page: "system" },
  { path: "/login", page: "login", bare: true },
];

export const PLUGIN_LABELS = { Cron: "Cron", WorkflowPlugin: "Workflows", Metrics: "Metrics" };

const state = {
  config: null, // {plugins: Set}
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

function match(path) {
  const parts = path.split("/").filter(Boolean);
  for (const route of ROUTES) {
    const pattern = route.path.split("/").filter(Boolean);
    if (pattern.length !== parts.length) continue;
    const params = {};
    let ok = true;
    pattern.forEach((p, i) => {
      if (!ok) return;
      if (p.startsWith(":")) {
        try {
          params[p.slice(1)] = decodeURIComponent(parts[i]);
        } catch {
          params[p.slice(1)] = parts[i];
        }
      } else if (p !== parts[i]) ok = false;
    });
    if (ok) return { route, params };
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

function hasPlugin(name) {
  return Boolean(state.config && state.config.plugins.has(name));
}

// ---------------------------------------------------------------- layout ---

function navLink(route, label, extra) {
  return h("li", {}, h("a", { href: "#" + route, dataset: { route } }, label, extra ?? null));
}

function buildNav() {
  const optional = [
    ["Cron", "/crons", "Cron"],
    ["WorkflowPlugin", "/workflows", "Workflows"],
    ["Metrics", "/metrics", "Metrics"],
  ].filter(([plugin]) => hasPlugin(plugin));
  return h(
    "nav",
    { class: "sidebar", id: "sidebar", "aria-label": "Main" },
    h("ul", {},
      navLink("/", "Overview"),
      h("li", { class: "nav-group" },
        h("span", { class: "nav-heading", id: "nav-jobs" }, "Jobs"),
        h("ul", { "aria-labelledby": "nav-jobs" },
          JOB_STATES.map((st) => navLink(`/jobs/${st}`, [h("span", { class: `dot state-${st}`, "aria-hidden": "true" }), titleCase(st)])))),
      navLink("/queues", "Queues"),
      navLink("/workers", "Workers"),
      optional.map(([, route, label]) => navLink(route, label)),
      navLink("/gossip", "Gossip"),
      navLink("/system", "System"),
    ),
  );
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
    ? h("div", { class: "banner" }, errorBox(state.configError, { title: "Could not read the API configuration; optional pages are hidden" }))
    : null;
  const shell = h("div", { class: "shell" }, header, nav, h("div", { class: "content" }, banner, view));
  state.shell = shell;
  state.view = view;
  state.nav = nav;
  replace(document.getElementById("app"), shell);
  document.getElementById("app").classList.remove("boot");
}

function highlightNav(path) {
  if (!state.nav) return;
  for (const a of state.nav.querySelectorAll("a[data-route]")) {
    const r = a.dataset.route;
    const active = r === "/" ? path === "/" : path === r || (path.startsWith(r + "/") && !r.startsWith("/jobs/"))
      || (r === "/jobs/" + (path.split("/")[2] || "") && path.startsWith("/jobs/"));
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
    hasPlugin,
    plugins: state.config ? [...state.config.plugins] : [],
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
    if (found.route.plugin && !hasPlugin(found.route.plugin)) {
      const mod = await import("./pages/notfound.js");
      if (token !== state.token) return;
      replace(view);
      ctx.setTitle(PLUGIN_LABELS[found.route.plugin]);
      mod.pluginPage(view, found.route.plugin, PLUGIN_LABELS[found.route.plugin]);
      return;
    }
    const mod = await import(`./pages/${found.route.page}.js`);
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
    const plugins = Array.isArray(data?.plugins) ? data.plugins.map(String) : [];
    state.config = { plugins: new Set(plugins) };
    return true;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403 || err.status === 0)) {
      state.config = null;
      if (err.status === 0) state.loginMessage = err.message;
      return false;
    }
    // Logged in but the configuration is unreadable: show the dashboard anyway.
    state.configError = err;
    state.config = { plugins: new Set() };
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

async function boot() {
  const { path } = parseHash();
  if (!location.hash || location.hash === "#") history.replaceState(null, "", "#/");
  if (path !== "/login") await loadConfig();
  await render();
}

boot();
