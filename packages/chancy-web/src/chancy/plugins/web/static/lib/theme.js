// Light/dark theme: follows prefers-color-scheme until the user picks one,
// then remembers the choice in localStorage.

import { h } from "./dom.js";

const KEY = "chancy.theme";

function stored() {
  try {
    const value = localStorage.getItem(KEY);
    return value === "light" || value === "dark" ? value : null;
  } catch {
    return null;
  }
}

function systemTheme() {
  return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function currentTheme() {
  return stored() || systemTheme();
}

export function applyTheme(theme = currentTheme()) {
  document.documentElement.dataset.theme = theme;
  document.documentElement.style.colorScheme = theme;
}

function setTheme(theme) {
  try {
    localStorage.setItem(KEY, theme);
  } catch {
    // private mode: the choice lasts for this page only
  }
  applyTheme(theme);
}

/** A button switching between light and dark. */
export function themeToggle() {
  const button = h("button", { type: "button", class: "btn ghost theme-toggle" });
  const update = () => {
    const dark = currentTheme() === "dark";
    button.replaceChildren(
      h("span", { "aria-hidden": "true" }, dark ? "☀" : "☾"),
      h("span", { class: "sr-only" }, "Dark theme"),
    );
    button.title = dark ? "Switch to light theme" : "Switch to dark theme";
    button.setAttribute("aria-pressed", String(dark));
  };
  button.addEventListener("click", () => {
    setTheme(currentTheme() === "dark" ? "light" : "dark");
    update();
  });
  if (window.matchMedia) {
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener?.("change", () => {
      if (!stored()) {
        applyTheme();
        update();
      }
    });
  }
  update();
  return button;
}
