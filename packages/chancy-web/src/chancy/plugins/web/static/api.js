// The HTTP client: API base URL and bearer token live in sessionStorage so
// one dashboard can talk to any Chancy API; every call sends the token.

const BASE_KEY = "chancy.apiBase";
const TOKEN_KEY = "chancy.token";
const USER_KEY = "chancy.user";

/** Error raised for a non-2xx answer (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
  }

  get isNotFound() {
    return this.status === 404;
  }
}

function trimBase(url) {
  return String(url || "").trim().replace(/\/+$/, "");
}

/** Where the API is assumed to live when the user has not said otherwise. */
export function defaultBase() {
  const path = location.pathname.replace(/\/[^/]*$/, "");
  return trimBase(location.origin + path);
}

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

export const session = {
  get base() {
    return trimBase(storage()?.getItem(BASE_KEY) || defaultBase());
  },
  get token() {
    return storage()?.getItem(TOKEN_KEY) || "";
  },
  get user() {
    return storage()?.getItem(USER_KEY) || "";
  },
  save({ base, token, user }) {
    const st = storage();
    if (!st) return;
    if (base !== undefined) st.setItem(BASE_KEY, trimBase(base));
    if (token !== undefined) st.setItem(TOKEN_KEY, token || "");
    if (user !== undefined) st.setItem(USER_KEY, user || "");
  },
  clearToken() {
    // The user name stays so the login form can offer it again.
    storage()?.removeItem(TOKEN_KEY);
  },
};

/** Build `base + path + ?query`, skipping empty query values. */
export function apiUrl(path, query, base = session.base) {
  const url = new URL(base + path, location.href);
  if (query) {
    for (const [key, value] of Object.entries(query)) {
      if (value === undefined || value === null || value === "") continue;
      url.searchParams.set(key, typeof value === "object" ? JSON.stringify(value) : String(value));
    }
  }
  return url.toString();
}

/** The websocket URL of the live event stream (no credentials in it). */
export function wsUrl() {
  const url = new URL(apiUrl("/api/v1/ws"));
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.toString();
}

/**
 * The websocket subprotocols: `chancy`, plus `chancy.token.<token>` when we
 * have a bearer token. Browsers cannot set headers on a websocket, and a
 * token in the URL would end up in logs and history; the server answers
 * with `chancy` and never echoes the token.
 */
export function wsProtocols() {
  const token = session.token;
  return token ? ["chancy", `chancy.token.${token}`] : ["chancy"];
}

function messageOf(body, fallback) {
  if (body && typeof body === "object") {
    const value = body.error ?? body.detail ?? body.message;
    if (typeof value === "string" && value) return value;
    if (Array.isArray(value)) {
      return value.map((d) => (d && typeof d === "object" ? d.msg || JSON.stringify(d) : String(d))).join("; ");
    }
    if (value && typeof value === "object") return JSON.stringify(value);
  }
  if (typeof body === "string" && body.trim() && body.length < 300) return body.trim();
  return fallback;
}

/**
 * Send one request. Resolves with the decoded JSON (or null for an empty
 * body); rejects with ApiError. A 401 also fires `chancy:unauthorized`.
 */
export async function request(method, path, { query, body, signal, base, auth = true } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = session.token;
  if (auth && token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(apiUrl(path, query, base === undefined ? session.base : trimBase(base)), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, `Cannot reach the API (${err && err.message ? err.message : "network error"})`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    if (response.status === 401 && auth) {
      window.dispatchEvent(new CustomEvent("chancy:unauthorized"));
    }
    const fallback = `${response.status} ${response.statusText || "error"} from ${method} ${path}`;
    throw new ApiError(response.status, messageOf(data, fallback), data);
  }
  return data;
}

export const api = {
  get: (path, query, opts = {}) => request("GET", path, { ...opts, query }),
  post: (path, body, opts = {}) => request("POST", path, { ...opts, body: body ?? {} }),
  patch: (path, body, opts = {}) => request("PATCH", path, { ...opts, body: body ?? {} }),
  del: (path, query, opts = {}) => request("DELETE", path, { ...opts, query }),
};

/** Log in; on success stores base URL, token and user name. */
export async function login(base, username, password) {
  const data = await request("POST", "/api/v1/login", {
    base,
    auth: false,
    body: { username, password },
  });
  session.save({ base, token: data && typeof data === "object" ? data.token || "" : "", user: username });
  return data;
}

export async function logout() {
  try {
    await request("POST", "/api/v1/logout", { body: {}, auth: true });
  } catch {
    // Logging out locally is what matters.
  } finally {
    session.clearToken();
  }
}

/** `items`, `has_more`, `next_cursor` from either a page object or a bare list. */
export function asPage(data, limit) {
  if (Array.isArray(data)) {
    return {
      items: data,
      has_more: limit ? data.length >= limit : false,
      next_cursor: data.length ? data[data.length - 1].id : null,
    };
  }
  const items = Array.isArray(data?.items) ? data.items : [];
  return {
    items,
    has_more: Boolean(data?.has_more),
    next_cursor: data?.next_cursor ?? (items.length ? items[items.length - 1].id : null),
  };
}

/** Encode a path segment for an API route. */
export function p(value) {
  return encodeURIComponent(String(value));
}

/** Encode a metric prefix (colons stay readable). */
export function metricPath(prefix) {
  return encodeURIComponent(String(prefix)).replace(/%3A/gi, ":");
}
