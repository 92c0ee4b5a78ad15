// The details of one span (or the trace): ids with copy buttons, timings, location, status, and input and
// output drawn for their kind — chat messages for llm spans (with model and token counts), documents for
// retriever spans, pretty JSON for tool calls and metadata — then tags, metadata and the raw record.
import { ApiError, getJSON } from "./api.js";
import { duration, el, idWithCopy, location, pre, replace, statusPill, timestamp } from "./dom.js";

let latest = 0; // only the last requested record is drawn, however the answers race

export async function showDetails(panel, row, data) {
  const ticket = ++latest;
  if (data && row === data.rows[0] && data.trace.trace_record === false) { // nothing stored to fetch
    replace(panel,
      el("h2", {}, el("span", { class: "type type-trace" }, "trace"), " (trace record missing)"),
      el("dl", { class: "facts" },
        fact("Trace id", idWithCopy(row.id)),
        fact("Status", statusPill(data.trace)),
        fact("Started", el("span", { title: row.created_at || "" }, timestamp(row.created_at)))),
      el("p", { class: "muted" }, "No trace record with this id has arrived, only spans naming it: its name, " +
        "input, output and duration are unknown. It starts with its earliest span."));
    return;
  }
  let record;
  try {
    record = await getJSON(`/api/viewer/records/${encodeURIComponent(row.id)}`);
  } catch (failure) {
    if (ticket !== latest) return;
    const message = failure instanceof ApiError ? failure.message : String(failure);
    replace(panel, el("p", { class: "error-message", role: "alert" }, `Could not load the span: ${message}`));
    return;
  }
  if (ticket !== latest) return;
  const type = record.type || row.type;
  replace(panel,
    el("h2", {}, el("span", { class: `type type-${type}` }, type), " ", record.name || "(unnamed)"),
    el("dl", { class: "facts" },
      fact(type === "trace" ? "Trace id" : "Span id", idWithCopy(record.id)),
      type === "trace" ? null : fact("Trace id", idWithCopy(record.trace_id)),
      type === "trace" ? null : fact("Parent id", idWithCopy(record.parent_id)),
      fact("Service", location(record)),
      fact("Status", statusPill({ ...row, ...record, duration_ns: row.duration_ns })),
      fact("Started", el("span", { title: record.created_at || "" }, timestamp(record.created_at))),
      fact("Offset", `+${duration(row.offset_ns)} after the trace started`),
      fact("Duration", duration(row.duration_ns)),
      ttft(record),
      type === "llm" ? llmFacts(record) : null),
    section("Input", input(type, record.input)),
    section("Output", output(type, record.output)),
    record.redacted_input != null ? section("Redacted input", input(type, record.redacted_input)) : null,
    record.redacted_output != null ? section("Redacted output", output(type, record.redacted_output)) : null,
    section("Tags", tags(record.tags)),
    section("Metadata", metadata(record.user_metadata)),
    record.tools ? section("Tools", pre(record.tools)) : null,
    el("details", { class: "raw" }, el("summary", {}, "Raw record"), pre(record)));
  if (data && row.boundary) panel.prepend(el("p", { class: "chip boundary" }, `⇢ Logged by another service: ${location(row)}`));
}

function fact(term, value) {
  return [el("dt", {}, term), el("dd", {}, value)];
}

function ttft(record) {
  const value = record.metrics?.time_to_first_token_ns;
  return typeof value === "number" ? fact("Time to first token", duration(value)) : null;
}

function llmFacts(record) {
  const metrics = record.metrics || {};
  const tokens = ["num_input_tokens", "num_output_tokens", "num_total_tokens"].map((key) => metrics[key]);
  return [
    fact("Model", record.model || "—"),
    record.temperature != null ? fact("Temperature", String(record.temperature)) : null,
    fact("Tokens", el("span", { class: "tokens" },
      `${tokens[0] ?? "?"} in · ${tokens[1] ?? "?"} out · ${tokens[2] ?? "?"} total`)),
    record.finish_reason ? fact("Finish reason", record.finish_reason) : null,
  ];
}

function section(title, content) {
  return el("section", { class: `detail detail-${title.toLowerCase().replace(/\s+/g, "-")}` },
    el("h3", {}, title), content);
}

function empty() {
  return el("p", { class: "muted" }, "—");
}

function isMessage(value) {
  return value && typeof value === "object" && !Array.isArray(value) && "role" in value;
}

function input(type, value) {
  if (value === null || value === undefined || value === "") return empty();
  if (type === "llm" && Array.isArray(value) && value.every(isMessage)) {
    return el("ol", { class: "messages" }, value.map(message));
  }
  return generic(type, value);
}

function output(type, value) {
  if (value === null || value === undefined || value === "") return empty();
  if (type === "llm" && isMessage(value)) return el("ol", { class: "messages" }, message(value));
  if (type === "retriever" && Array.isArray(value)) {
    return el("ol", { class: "documents" }, value.map((doc, index) => el("li", { class: "document" },
      el("div", { class: "doc-head" }, `Document ${index + 1}`),
      pre(typeof doc === "object" && doc !== null && "content" in doc ? String(doc.content) : doc, "text"),
      doc && typeof doc === "object" && doc.metadata && Object.keys(doc.metadata).length ?
        metadata(doc.metadata) : null)));
  }
  return generic(type, value);
}

function generic(type, value) {
  if (typeof value === "string") {
    if (type === "tool") { // tool calls often carry JSON as text: show it pretty when it is
      try {
        const parsed = JSON.parse(value);
        if (parsed !== null && typeof parsed === "object") return pre(parsed);
      } catch { /* plain text */ }
    }
    return pre(value, "text");
  }
  return pre(value);
}

function message(msg) {
  const content = msg.content;
  let body;
  if (typeof content === "string") {
    body = pre(content, "text");
  } else if (Array.isArray(content)) {
    body = content.map((part) => part && part.type === "text" && typeof part.text === "string" ?
      pre(part.text, "text") : pre(part));
  } else {
    body = content == null ? null : pre(content);
  }
  return el("li", { class: `message role-${String(msg.role).replace(/[^a-z_-]/gi, "")}` },
    el("div", { class: "role" }, String(msg.role)),
    body,
    msg.tool_calls ? el("div", { class: "tool-calls" }, el("div", { class: "muted" }, "tool calls"), pre(msg.tool_calls)) : null,
    msg.tool_call_id ? el("div", { class: "muted" }, `tool call id: ${msg.tool_call_id}`) : null);
}

function tags(values) {
  if (!Array.isArray(values) || values.length === 0) return empty();
  return el("ul", { class: "tags" }, values.map((tag) => el("li", { class: "chip" }, String(tag))));
}

function metadata(values) {
  if (!values || typeof values !== "object" || Object.keys(values).length === 0) return empty();
  return el("table", { class: "metadata" }, el("tbody", {}, Object.entries(values).map(([key, value]) =>
    el("tr", {}, el("th", { scope: "row" }, key),
      el("td", {}, typeof value === "string" ? value : JSON.stringify(value))))));
}
