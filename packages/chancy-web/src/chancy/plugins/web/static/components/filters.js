// Composable job filters: rows of [key, operator, value] sent to the API as
// `filters=[[key, op, value], …]`.

import { h, replace } from "../lib/dom.js";

const COMPARE = ["=", "!=", "<", "<=", ">", ">="];

export const FILTER_FIELDS = {
  func: { label: "Function", ops: ["~", "="], kind: "text" },
  queue: { label: "Queue", ops: ["="], kind: "queue" },
  priority: { label: "Priority", ops: COMPARE, kind: "number" },
  attempts: { label: "Attempts", ops: COMPARE, kind: "number" },
  state: { label: "State", ops: ["=", "!="], kind: "state" },
  concurrency_key: { label: "Concurrency key", ops: ["="], kind: "key" },
};

const OP_LABELS = { "~": "contains", "=": "is", "!=": "is not", "<": "<", "<=": "≤", ">": ">", ">=": "≥" };

/** Parse the `filters` query value; invalid input gives []. */
export function parseFilters(text) {
  if (!text) return [];
  try {
    const value = JSON.parse(text);
    if (!Array.isArray(value)) return [];
    return value.filter((f) => Array.isArray(f) && f.length === 3 && typeof f[0] === "string");
  } catch {
    return [];
  }
}

/** A readable summary: "priority ≥ 5". */
export function describeFilter([key, op, value]) {
  return `${FILTER_FIELDS[key]?.label || key} ${OP_LABELS[op] || op} ${value}`;
}

let counter = 0;

/**
 * A filter editor. options: {filters, fields (keys allowed), queues, functions,
 * states, onApply(filters)}.
 */
export function filterEditor({ filters = [], fields = Object.keys(FILTER_FIELDS), queues = [], functions = [], states = [], onApply }) {
  const rows = filters.filter((f) => fields.includes(f[0])).map((f) => [...f]);
  const list = h("div", { class: "filter-rows" });
  const listId = `fn-list-${(counter += 1)}`;
  const datalist = h("datalist", { id: listId }, functions.map((f) => h("option", { value: f })));

  function valueInput(row, i) {
    const field = FILTER_FIELDS[row[0]];
    const id = `flt-${counter}-${i}-v`;
    const onchange = (e) => {
      row[2] = field.kind === "number" ? (e.target.value === "" ? "" : Number(e.target.value)) : e.target.value;
    };
    let input;
    if (field.kind === "queue" && queues.length) {
      if (row[2] === "" || row[2] === undefined) row[2] = queues[0];
      input = h("select", { id, onchange }, queues.map((q) => h("option", { value: q, selected: q === row[2] }, q)));
    } else if (field.kind === "state") {
      if (!row[2]) row[2] = states[0] || "pending";
      input = h("select", { id, onchange }, states.map((q) => h("option", { value: q, selected: q === row[2] }, q)));
    } else {
      input = h("input", {
        id,
        type: field.kind === "number" ? "number" : "text",
        step: field.kind === "number" ? "1" : null,
        value: row[2] ?? "",
        list: field.kind === "text" ? listId : null,
        placeholder: field.kind === "number" ? "0" : "value",
        oninput: onchange,
        required: true,
      });
    }
    return [h("label", { for: id, class: "sr-only" }, "Value"), input];
  }

  function draw() {
    replace(
      list,
      rows.length ? null : h("p", { class: "muted small" }, "No filters. Add one to narrow the list."),
      rows.map((row, i) => {
        const field = FILTER_FIELDS[row[0]];
        const keyId = `flt-${counter}-${i}-k`;
        const opId = `flt-${counter}-${i}-o`;
        return h(
          "div",
          { class: "filter-row" },
          h("label", { for: keyId, class: "sr-only" }, "Field"),
          h("select", {
            id: keyId,
            onchange: (e) => {
              row[0] = e.target.value;
              row[1] = FILTER_FIELDS[row[0]].ops[0];
              row[2] = "";
              draw();
            },
          }, fields.map((k) => h("option", { value: k, selected: k === row[0] }, FILTER_FIELDS[k].label))),
          h("label", { for: opId, class: "sr-only" }, "Operator"),
          h("select", { id: opId, onchange: (e) => { row[1] = e.target.value; } },
            field.ops.map((op) => h("option", { value: op, selected: op === row[1] }, OP_LABELS[op] || op))),
          valueInput(row, i),
          h("button", {
            type: "button",
            class: "btn small ghost",
            "aria-label": `Remove filter ${i + 1}`,
            title: "Remove filter",
            onclick: () => {
              rows.splice(i, 1);
              draw();
            },
          }, "✕"),
        );
      }),
    );
  }

  const form = h(
    "form",
    {
      class: "filter-editor",
      onsubmit: (e) => {
        e.preventDefault();
        const clean = rows
          .filter((r) => r[2] !== "" && r[2] !== undefined && r[2] !== null && !(typeof r[2] === "number" && Number.isNaN(r[2])))
          .map((r) => [r[0], r[1], r[2]]);
        onApply(clean);
      },
    },
    datalist,
    list,
    h(
      "div",
      { class: "filter-actions" },
      h("button", {
        type: "button",
        class: "btn small",
        onclick: () => {
          const key = fields[0];
          rows.push([key, FILTER_FIELDS[key].ops[0], ""]);
          draw();
          const inputs = list.querySelectorAll("input, select");
          if (inputs.length) inputs[inputs.length - 1].focus();
        },
      }, "+ Add filter"),
      h("button", { type: "submit", class: "btn small primary" }, "Apply filters"),
      h("button", {
        type: "button",
        class: "btn small ghost",
        onclick: () => {
          rows.length = 0;
          draw();
          onApply([]);
        },
      }, "Clear"),
    ),
  );
  draw();
  return form;
}
