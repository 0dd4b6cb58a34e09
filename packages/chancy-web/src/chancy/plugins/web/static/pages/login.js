// Login: username, password and the API base URL (kept in sessionStorage).

import { api, defaultBase, login, session } from "../api.js";
import { h, replace } from "../lib/dom.js";
import { themeToggle } from "../lib/theme.js";

export default function mount(root, ctx, { onLoggedIn, message } = {}) {
  const error = h("div", { class: "form-error", role: "alert" }, message || "");
  const status = h("p", { class: "muted small", role: "status" });
  const submit = h("button", { type: "submit", class: "btn primary wide" }, "Log in");
  const baseInput = h("input", {
    id: "login-base", name: "base", type: "url", required: true, value: session.base,
    autocomplete: "url", spellcheck: "false", "aria-describedby": "login-base-hint",
  });
  const form = h(
    "form",
    { class: "login-card card", novalidate: true },
    h("div", { class: "login-brand" }, h("img", { src: "./favicon.svg", alt: "", width: 40, height: 40 }), h("h1", {}, "Chancy")),
    h("p", { class: "muted" }, "Sign in to the job queue dashboard."),
    h("div", { class: "field" }, h("label", { for: "login-user" }, "Username"),
      h("input", { id: "login-user", name: "username", required: true, autocomplete: "username", value: session.user })),
    h("div", { class: "field" }, h("label", { for: "login-pass" }, "Password"),
      h("input", { id: "login-pass", name: "password", type: "password", required: true, autocomplete: "current-password" })),
    h("details", { class: "field", open: session.base !== defaultBase() || Boolean(message && /reach/i.test(message)) },
      h("summary", {}, "API server"),
      h("label", { for: "login-base" }, "API base URL"),
      baseInput,
      h("p", { class: "hint", id: "login-base-hint" }, "Where the Chancy API listens, e.g. http://localhost:8000. Defaults to this page's own server."),
      h("button", {
        type: "button",
        class: "btn small ghost",
        onclick: async () => {
          status.textContent = "Checking…";
          try {
            const data = await api.get("/health", null, { base: baseInput.value, auth: false });
            status.textContent = `API reachable: ${data && data.status ? data.status : "ok"}`;
          } catch (err) {
            status.textContent = `Not reachable: ${err.message}`;
          }
        },
      }, "Check connection"),
      status),
    error,
    submit,
    h("div", { class: "login-foot" }, themeToggle()),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    const username = form.elements.namedItem("username").value.trim();
    const password = form.elements.namedItem("password").value;
    let base = baseInput.value.trim() || defaultBase();
    if (!username || !password) {
      error.textContent = "Enter a username and a password.";
      return;
    }
    try {
      base = new URL(base).toString().replace(/\/+$/, "");
    } catch {
      error.textContent = "The API base URL is not a valid URL.";
      return;
    }
    submit.disabled = true;
    submit.textContent = "Logging in…";
    try {
      await login(base, username, password);
      await onLoggedIn();
    } catch (err) {
      error.textContent = err.status === 401 ? (err.message || "Invalid username or password") : err.message;
      submit.disabled = false;
      submit.textContent = "Log in";
    }
  });
  replace(root, h("div", { class: "login-page" }, h("main", { id: "main", tabindex: "-1" }, form)));
  form.elements.namedItem(session.user ? "password" : "username").focus();
}
