// Modal confirmation dialogs built on <dialog>.

import { h } from "../lib/dom.js";

/**
 * Ask for confirmation. `body` may hold form controls; `collect()` is called
 * on confirm and its result is returned (or `true`). Resolves to null when
 * cancelled.
 */
export function confirmDialog({ title, message, body, confirmLabel = "Confirm", danger = false, collect } = {}) {
  return new Promise((resolve) => {
    const titleId = "dlg-" + Math.random().toString(36).slice(2, 8);
    let result = null;
    const form = h(
      "form",
      { method: "dialog", class: "dialog-body" },
      h("h2", { id: titleId }, title),
      message ? h("p", {}, message) : null,
      body ?? null,
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { type: "button", class: "btn", onclick: () => dialog.close() }, "Cancel"),
        h("button", { type: "submit", class: danger ? "btn danger" : "btn primary" }, confirmLabel),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      try {
        result = collect ? collect() : true;
      } catch (err) {
        const old = form.querySelector(".dialog-error");
        if (old) old.remove();
        form.insertBefore(h("p", { class: "dialog-error", role: "alert" }, err.message || String(err)), form.lastChild);
        return;
      }
      dialog.close();
    });
    const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId }, form);
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}
