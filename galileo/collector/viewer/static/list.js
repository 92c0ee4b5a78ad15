// The trace list: newest first, filtered by project and log stream, searched by name or id, paged with the
// API's cursors, refreshed live while it shows the newest page. The filters live in the URL, so a filtered
// list is a link.
import { getJSON, watch } from "./api.js";
import { duration, el, errorFlag, location, replace, statusPill, timestamp, traceName } from "./dom.js";

const PAGE = 50;

export async function showList(app) {
  const url = new URL(window.location.href);
  const state = {
    project_id: url.searchParams.get("project_id") || "",
    log_stream_id: url.searchParams.get("log_stream_id") || "",
    q: url.searchParams.get("q") || "",
    cursors: [], // the `before` of each page above the current one
    before: null,
  };

  const project = el("select", { name: "project_id", "aria-label": "Project" });
  const stream = el("select", { name: "log_stream_id", "aria-label": "Log stream" });
  const search = el("input", {
    type: "search", name: "q", placeholder: "Search by name, trace id or span id", "aria-label": "Search",
  });
  search.value = state.q;
  const form = el("form", { class: "filters", role: "search" }, project, stream, search,
    el("button", { type: "submit" }, "Search"));
  const summary = el("p", { class: "summary muted" });
  const body = el("tbody");
  const table = el("table", { class: "traces" },
    el("thead", {}, el("tr", {},
      ["Name", "Started", "Duration", "Spans", "Status", "Project / log stream", "Services"].map(
        (title) => el("th", { scope: "col" }, title)))),
    body);
  const newest = el("button", { type: "button", class: "pager-newest" }, "⇤ Newest");
  const newer = el("button", { type: "button", class: "pager-newer" }, "← Newer");
  const older = el("button", { type: "button", class: "pager-older" }, "Older →");
  const pager = el("nav", { class: "pager", "aria-label": "Pages" }, newest, newer, older);
  const error = el("p", { class: "error-message", role: "alert", hidden: true });
  replace(app, el("section", { class: "list" }, el("h1", {}, "Traces"), form, error, summary, table, pager));

  let locations = [];
  const fillFilters = () => {
    replace(project, el("option", { value: "" }, "All projects"),
      locations.map((p) => el("option", { value: p.id }, p.name)));
    project.value = state.project_id;
    const streams = locations.filter((p) => !state.project_id || p.id === state.project_id)
      .flatMap((p) => p.log_streams.map((s) => ({ ...s, label: state.project_id ? s.name : `${p.name} / ${s.name}` })));
    replace(stream, el("option", { value: "" }, "All log streams"),
      streams.map((s) => el("option", { value: s.id }, s.label)));
    stream.value = state.log_stream_id;
  };

  const syncUrl = () => {
    const next = new URL(window.location.href);
    for (const key of ["project_id", "log_stream_id", "q"]) {
      if (state[key]) next.searchParams.set(key, state[key]); else next.searchParams.delete(key);
    }
    history.replaceState(null, "", next);
  };

  let watcher = null;
  let latest = 0; // only the last requested page is drawn, however the answers race
  const load = async () => {
    const ticket = ++latest;
    let page;
    try {
      page = await getJSON("/api/viewer/traces", {
        project_id: state.project_id, log_stream_id: state.log_stream_id, q: state.q, limit: PAGE,
        before: state.before,
      });
    } catch (failure) {
      if (ticket !== latest) return;
      error.hidden = false;
      error.textContent = `Could not load traces: ${failure.message}`;
      return;
    }
    if (ticket !== latest) return;
    error.hidden = true;
    replace(body, page.traces.length ? page.traces.map(row) :
      el("tr", { class: "empty" }, el("td", { colspan: 7 }, state.q || state.project_id || state.log_stream_id ?
        "No trace matches." : "No traces yet: send some to this collector and they appear here.")));
    const first = state.cursors.length === 0;
    summary.textContent = page.traces.length ?
      `${first ? "Newest" : "Older"} ${page.traces.length} trace${page.traces.length === 1 ? "" : "s"}` +
      (first ? " · updates live" : "") : "";
    newest.disabled = first;
    newer.disabled = first;
    older.disabled = !page.next;
    older.dataset.next = page.next || "";
    watcher?.seen(page.revision);
    return page;
  };

  const restart = async () => {
    state.cursors = [];
    state.before = null;
    syncUrl();
    await load();
  };

  project.addEventListener("change", () => {
    state.project_id = project.value;
    state.log_stream_id = "";
    fillFilters();
    restart();
  });
  stream.addEventListener("change", () => { state.log_stream_id = stream.value; restart(); });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.q = search.value.trim();
    restart();
  });
  older.addEventListener("click", () => {
    state.cursors.push(state.before);
    state.before = older.dataset.next;
    load();
  });
  newer.addEventListener("click", () => { state.before = state.cursors.pop() ?? null; load(); });
  newest.addEventListener("click", () => restart());

  try {
    locations = await getJSON("/api/viewer/locations");
  } catch {
    locations = [];
  }
  fillFilters();
  const page = await load();
  watcher = watch(page ? page.revision : null, async () => {
    if (state.cursors.length === 0) { // only the newest page changes under the reader's eyes
      locations = await getJSON("/api/viewer/locations");
      fillFilters();
      await load();
    }
  });
}

function row(trace) {
  const missing = trace.trace_record === false; // only spans arrived: the record's fields are unknown
  const link = el("a", { href: `/traces/${encodeURIComponent(trace.id)}`, class: "trace-link" }, traceName(trace));
  const failed = trace.status_code >= 400 || trace.error_count > 0;
  const classes = [failed ? "has-error" : null, missing ? "missing" : null].filter(Boolean).join(" ");
  return el("tr", { dataset: { traceId: trace.id }, class: classes || null },
    el("td", { class: "name" }, link, el("div", { class: "muted id-small" }, trace.id)),
    el("td", { title: trace.created_at || "" }, timestamp(trace.created_at)),
    el("td", { class: "num" }, duration(trace.duration_ns)),
    el("td", { class: "num" }, String(trace.span_count)),
    el("td", { class: "status-cell" }, statusPill(trace), errorFlag(trace.error_count)),
    el("td", {}, missing ? el("span", { class: "muted" }, "—") : location(trace)),
    el("td", { class: "services" }, trace.services.map((service, index) =>
      el("span", { class: `chip svc-${index % 8}`, title: serviceCounts(service) }, location(service)))),
  );
}

function serviceCounts(service) {
  const errors = service.errors ? `, ${service.errors} error${service.errors === 1 ? "" : "s"}` : "";
  return `${service.spans} span(s)${errors}`;
}
