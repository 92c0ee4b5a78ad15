// DOM helpers for the trace viewer. Every element is built here, and every piece of text goes into the
// page as a text node (or an attribute set with setAttribute): span names, inputs and outputs are user data
// and are never parsed as HTML.

/** An element: el("a", {href: "/x", class: "link"}, "text", child, [more, children]). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    } else if (key === "dataset") {
      Object.assign(node.dataset, value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

/** Append children: nodes as they are, strings and numbers as text nodes, arrays flattened, null skipped. */
export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace the node's children. */
export function replace(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

/** A duration in nanoseconds, for people: "850 ns", "12.3 µs", "4.56 ms", "1.23 s"; "…" when unknown. */
export function duration(ns) {
  if (typeof ns !== "number" || !Number.isFinite(ns)) return "…";
  if (ns < 1e3) return `${Math.round(ns)} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(ns < 1e7 ? 2 : 1)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

/** A wire timestamp as local date and time, with milliseconds. */
export function timestamp(text) {
  const moment = new Date(text);
  if (!text || Number.isNaN(moment.getTime())) return text ? String(text) : "—";
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return `${moment.getFullYear()}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())} ` +
    `${pad(moment.getHours())}:${pad(moment.getMinutes())}:${pad(moment.getSeconds())}.` +
    pad(moment.getMilliseconds(), 3);
}

/** "project / log stream" of a record or summary (names when known, else ids). */
export function location(item) {
  const project = item.project_name || item.project_id || "?";
  const stream = item.log_stream_name || item.log_stream_id;
  return stream ? `${project} / ${stream}` : project;
}

/** Status of a trace or span: {text, kind} with kind "error", "ok", "open" or "missing" (no trace record). */
export function status(item) {
  if (item.trace_record === false) return { text: "trace record missing", kind: "missing" };
  const code = item.status_code;
  if (typeof code === "number" && code >= 400) return { text: `error ${code}`, kind: "error" };
  const done = "is_complete" in item ? item.is_complete : item.duration_ns !== null && item.duration_ns !== undefined;
  if (done) return { text: code ? `ok ${code}` : "ok", kind: "ok" };
  return { text: code ? `open ${code}` : "open", kind: "open" };
}

/** A status pill element. */
export function statusPill(item) {
  const { text, kind } = status(item);
  return el("span", { class: `status status-${kind}` }, text);
}

/** "⚠ 2 errors" for a trace whose spans failed (status 400 or more); null when none did. */
export function errorFlag(count) {
  if (typeof count !== "number" || count < 1) return null;
  const text = `${count} error${count === 1 ? "" : "s"}`;
  return el("span", { class: "error-flag", title: `${text} among its spans (status 400 or more)` }, `⚠ ${text}`);
}

/** A trace's name, or what stands in for it. */
export function traceName(trace) {
  if (trace.name) return trace.name;
  return trace.trace_record === false ? "(trace record missing)" : "(unnamed)";
}

/** A button copying `value` to the clipboard, saying so for a moment. */
export function copyButton(value, label = "copy") {
  const button = el("button", { type: "button", class: "copy", title: `Copy ${value}` }, label);
  button.addEventListener("click", async (event) => {
    event.stopPropagation();
    try {
      await navigator.clipboard.writeText(value);
    } catch {
      const area = el("textarea", { class: "offscreen", readonly: true });
      area.value = value;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.textContent = "copied";
    setTimeout(() => { button.textContent = label; }, 1200);
  });
  return button;
}

/** An id in monospace with its copy button. */
export function idWithCopy(value) {
  if (!value) return el("span", { class: "muted" }, "—");
  return el("span", { class: "id" }, el("code", {}, value), copyButton(value));
}

/** Pretty JSON (or the text itself) in a <pre>. */
export function pre(value, className = "json") {
  const text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
  return el("pre", { class: className }, text);
}
