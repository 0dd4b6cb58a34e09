// Unknown routes (including the pages of plugins this API does not run).

import { emptyState, pageHeader } from "../components/ui.js";
import { h } from "../lib/dom.js";

export default function mount(view, ctx) {
  view.append(
    pageHeader("Page not found"),
    emptyState(
      "Nothing lives at this address",
      `The dashboard has no page for “${ctx.path}”. If a plugin provides it, that plugin is not enabled on the worker that serves this API.`,
      [h("a", { href: "#/", class: "btn" }, "Go to the overview"), " ", h("a", { href: "#/system", class: "btn ghost" }, "See enabled plugins")],
    ),
  );
}
