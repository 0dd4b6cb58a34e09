// Unknown routes and pages of plugins the API does not run.

import { emptyState, pageHeader } from "../components/ui.js";
import { h } from "../lib/dom.js";

export default function mount(view, ctx) {
  view.append(
    pageHeader("Page not found"),
    emptyState("Nothing lives at this address", `The dashboard has no page for “${ctx.path}”.`, h("a", { href: "#/", class: "btn" }, "Go to the overview")),
  );
}

export function pluginPage(view, className, label) {
  view.append(
    pageHeader(label),
    emptyState(
      `The ${className} plugin is not enabled`,
      `This API does not report the ${className} plugin in /api/v1/configuration, so there is nothing to show here. Add the plugin to the worker that serves the API to use this page.`,
      h("a", { href: "#/system", class: "btn" }, "See installed plugins"),
    ),
  );
}
