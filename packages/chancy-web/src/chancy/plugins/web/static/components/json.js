// Pretty JSON with light syntax colouring (built from text nodes only).

import { h } from "../lib/dom.js";

function render(value, indent, out) {
  const pad = "  ".repeat(indent);
  if (value === null) {
    out.push(h("span", { class: "j-null" }, "null"));
  } else if (Array.isArray(value)) {
    if (!value.length) return out.push("[]");
    out.push("[\n");
    value.forEach((item, i) => {
      out.push(pad + "  ");
      render(item, indent + 1, out);
      out.push(i < value.length - 1 ? ",\n" : "\n");
    });
    out.push(pad + "]");
  } else if (typeof value === "object") {
    const entries = Object.entries(value);
    if (!entries.length) return out.push("{}");
    out.push("{\n");
    entries.forEach(([key, item], i) => {
      out.push(pad + "  ", h("span", { class: "j-key" }, JSON.stringify(key)), ": ");
      render(item, indent + 1, out);
      out.push(i < entries.length - 1 ? ",\n" : "\n");
    });
    out.push(pad + "}");
  } else if (typeof value === "string") {
    out.push(h("span", { class: "j-str" }, JSON.stringify(value)));
  } else if (typeof value === "number") {
    out.push(h("span", { class: "j-num" }, String(value)));
  } else if (typeof value === "boolean") {
    out.push(h("span", { class: "j-bool" }, String(value)));
  } else {
    out.push(String(value));
  }
  return undefined;
}

/** A <pre> block holding `value` as indented JSON. */
export function jsonBlock(value, { label } = {}) {
  const parts = [];
  render(value === undefined ? null : value, 0, parts);
  return h("pre", { class: "json", tabindex: "0", "aria-label": label }, h("code", {}, parts));
}

/** One-line JSON, shortened. */
export function jsonInline(value, max = 160) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = "";
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}
