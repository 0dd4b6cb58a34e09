// Tiny DOM builders. Every string becomes a text node or an attribute value,
// so server data is never parsed as HTML (no innerHTML anywhere).

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, child) {
  if (child === null || child === undefined || child === false || child === true) return;
  if (Array.isArray(child)) {
    for (const c of child) append(parent, c);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child)));
  }
}

function applyAttrs(el, attrs, isSvg) {
  if (!attrs) return;
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "ref" && typeof value === "function") {
      value(el);
    } else if (!isSvg && (key === "value" || key === "checked" || key === "selected"
      || key === "indeterminate")) {
      el[key] = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
}

function isAttrs(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    && !(value instanceof Node);
}

/** Create an HTML element: h("a", {href: "#/"}, "text", child, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (isAttrs(attrs)) applyAttrs(el, attrs, false);
  else children.unshift(attrs);
  append(el, children);
  return el;
}

/** Create an SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  if (isAttrs(attrs)) applyAttrs(el, attrs, true);
  else children.unshift(attrs);
  append(el, children);
  return el;
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A URL-safe hash link to a dashboard route. */
export function link(route, text, attrs = {}) {
  return h("a", { href: "#" + route, ...attrs }, text);
}

/** Encode one path segment of a dashboard or API route. */
export function seg(value) {
  return encodeURIComponent(String(value));
}
