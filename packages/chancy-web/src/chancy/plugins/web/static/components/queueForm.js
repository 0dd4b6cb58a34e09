// The queue create / edit form. Produces a partial queue object for
// POST /api/v1/queues or PATCH /api/v1/queues/{name}.

import { h } from "../lib/dom.js";

export const EXECUTORS = [
  ["chancy.executors.process.ProcessExecutor", "Process pool (default)"],
  ["chancy.executors.thread.ThreadedExecutor", "Threads"],
  ["chancy.executors.asyncex.AsyncExecutor", "asyncio"],
  ["chancy.executors.sub.SubInterpreterExecutor", "Sub-interpreters (experimental)"],
];

let n = 0;

function field(id, label, input, hint) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    input,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
  );
}

/**
 * options: {queue (existing, for edit), submitLabel, onSubmit(payload) → Promise, onCancel}
 */
export function queueForm({ queue = null, name: initialName = "", submitLabel = "Create queue", onSubmit, onCancel } = {}) {
  n += 1;
  const id = (name) => `qf${n}-${name}`;
  const editing = Boolean(queue);
  const q = queue || {};
  const tagsText = Array.isArray(q.tags) ? q.tags.join("\n") : "";
  const executorList = `${id("executors")}`;
  const optionsText = q.executor_options && Object.keys(q.executor_options).length ? JSON.stringify(q.executor_options, null, 2) : "";
  const error = h("div", { class: "form-error", role: "alert" });
  const submit = h("button", { type: "submit", class: "btn primary" }, submitLabel);

  const form = h(
    "form",
    { class: "queue-form", novalidate: true },
    h(
      "div",
      { class: "form-grid" },
      field(id("name"), "Name", h("input", {
        id: id("name"), name: "name", required: true, value: q.name || initialName || "", readonly: editing,
        autocomplete: "off", pattern: ".*\\S.*", "aria-describedby": editing ? `${id("name")}-hint` : null,
      }), editing ? "A queue's name cannot change." : null),
      field(id("concurrency"), "Concurrency (per worker)", h("input", {
        id: id("concurrency"), name: "concurrency", type: "number", min: "1", step: "1",
        value: q.concurrency ?? "", placeholder: "executor default",
      }), "Leave empty for the executor's default."),
      field(id("executor"), "Executor", [
        h("input", { id: id("executor"), name: "executor", list: executorList, value: q.executor || EXECUTORS[0][0], required: true, spellcheck: "false" }),
        h("datalist", { id: executorList }, EXECUTORS.map(([value, label]) => h("option", { value }, label))),
      ], "A built-in executor, or the import path of one a plugin registers."),
      field(id("polling"), "Polling interval (seconds)", h("input", {
        id: id("polling"), name: "polling_interval", type: "number", min: "0.01", step: "any",
        value: q.polling_interval ?? 5, required: true,
      })),
      field(id("rate"), "Rate limit (jobs per window)", h("input", {
        id: id("rate"), name: "rate_limit", type: "number", min: "1", step: "1", value: q.rate_limit ?? "", placeholder: "no limit",
      })),
      field(id("window"), "Rate limit window (seconds)", h("input", {
        id: id("window"), name: "rate_limit_window", type: "number", min: "1", step: "1", value: q.rate_limit_window ?? "", placeholder: "—",
      }), "Set both rate fields, or neither."),
      field(id("global"), "Cluster-wide concurrency", h("input", {
        id: id("global"), name: "global_concurrency", type: "number", min: "1", step: "1", value: q.global_concurrency ?? "", placeholder: "no limit",
      }), "Most jobs of this queue running at once across all workers."),
      field(id("key"), "Per-key concurrency", h("input", {
        id: id("key"), name: "key_concurrency", type: "number", min: "1", step: "1", value: q.key_concurrency ?? "", placeholder: "no limit",
      }), "Most jobs with the same concurrency key running at once, across all workers."),
      field(id("key-rate"), "Per-key rate limit (jobs per window)", h("input", {
        id: id("key-rate"), name: "key_rate_limit", type: "number", min: "1", step: "1", value: q.key_rate_limit ?? "", placeholder: "no limit",
      })),
      field(id("key-window"), "Per-key rate limit window (seconds)", h("input", {
        id: id("key-window"), name: "key_rate_limit_window", type: "number", min: "1", step: "1", value: q.key_rate_limit_window ?? "", placeholder: "—",
      }), "Set both per-key rate fields, or neither."),
      field(id("tags"), "Tags (one regular expression per line)", h("textarea", {
        id: id("tags"), name: "tags", rows: "3", spellcheck: "false", placeholder: ".*",
      }, tagsText), "A worker serves the queue when any regex matches any worker tag. Empty means every worker (.*)."),
      field(id("options"), "Executor options (JSON object)", h("textarea", {
        id: id("options"), name: "executor_options", rows: "3", spellcheck: "false", placeholder: "{}",
      }, optionsText)),
      h("div", { class: "field checkbox" },
        h("input", { id: id("eager"), name: "eager_polling", type: "checkbox", checked: Boolean(q.eager_polling) }),
        h("label", { for: id("eager") }, "Eager polling (poll again as soon as a job finishes)")),
      editing ? null : h("div", { class: "field checkbox" },
        h("input", { id: id("paused"), name: "paused", type: "checkbox" }),
        h("label", { for: id("paused") }, "Create paused")),
    ),
    error,
    h("div", { class: "form-actions" }, submit, onCancel ? h("button", { type: "button", class: "btn", onclick: onCancel }, "Cancel") : null),
  );

  function collect() {
    const get = (name) => form.elements.namedItem(name);
    const name = get("name").value.trim();
    if (!name) throw new Error("The queue needs a name.");
    const intOrNull = (input, label) => {
      const text = input.value.trim();
      if (!text) return null;
      const value = Number(text);
      if (!Number.isInteger(value) || value < 1) throw new Error(`${label} must be a positive whole number.`);
      return value;
    };
    const concurrency = intOrNull(get("concurrency"), "Concurrency");
    const rate = intOrNull(get("rate_limit"), "Rate limit");
    const windowSeconds = intOrNull(get("rate_limit_window"), "Rate limit window");
    if ((rate === null) !== (windowSeconds === null)) throw new Error("Set both the rate limit and its window, or neither.");
    const globalConcurrency = intOrNull(get("global_concurrency"), "Cluster-wide concurrency");
    const keyConcurrency = intOrNull(get("key_concurrency"), "Per-key concurrency");
    const keyRate = intOrNull(get("key_rate_limit"), "Per-key rate limit");
    const keyWindow = intOrNull(get("key_rate_limit_window"), "Per-key rate limit window");
    if ((keyRate === null) !== (keyWindow === null)) throw new Error("Set both the per-key rate limit and its window, or neither.");
    const polling = Number(get("polling_interval").value);
    if (!Number.isFinite(polling) || polling <= 0) throw new Error("Polling interval must be a positive number.");
    const executor = get("executor").value.trim();
    if (!executor) throw new Error("Choose an executor.");
    let options = {};
    const optionsRaw = get("executor_options").value.trim();
    if (optionsRaw) {
      try {
        options = JSON.parse(optionsRaw);
      } catch (err) {
        throw new Error(`Executor options are not valid JSON: ${err.message}`);
      }
      if (!options || typeof options !== "object" || Array.isArray(options)) throw new Error("Executor options must be a JSON object.");
    }
    const tagLines = get("tags").value.split(/[\n,]/).map((t) => t.trim()).filter(Boolean);
    for (const t of tagLines) {
      try {
        new RegExp(t);
      } catch {
        throw new Error(`Tag “${t}” is not a valid regular expression.`);
      }
    }
    const payload = {
      name,
      concurrency,
      executor,
      executor_options: options,
      polling_interval: polling,
      rate_limit: rate,
      rate_limit_window: windowSeconds,
      global_concurrency: globalConcurrency,
      key_concurrency: keyConcurrency,
      key_rate_limit: keyRate,
      key_rate_limit_window: keyWindow,
      eager_polling: get("eager_polling").checked,
    };
    // Omitted tags match every worker; on edit, empty is sent explicitly as ".*".
    if (tagLines.length) payload.tags = tagLines;
    else if (editing) payload.tags = [".*"];
    if (!editing && get("paused")?.checked) payload.state = "paused";
    return payload;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    let payload;
    try {
      payload = collect();
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    submit.disabled = true;
    try {
      await onSubmit(payload);
    } catch (err) {
      error.textContent = err.message || String(err);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
