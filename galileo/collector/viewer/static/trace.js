// One trace: a header, the span tree as a collapsible waterfall (one bar per span on the trace's time axis,
// nested by parent, coloured by type, errors and service boundaries marked) and the selected span's details.
// `?span=ID` selects a span; the page refreshes live while records arrive.
import { ApiError, getJSON, watch } from "./api.js";
import { showDetails } from "./details.js";
import { copyButton, duration, el, errorFlag, location, replace, statusPill, timestamp, traceName } from "./dom.js";

const TICKS = 5;

export async function showTrace(app, traceId) {
  const state = { traceId, data: null, collapsed: new Set(), selected: null, services: new Map() };
  const header = el("header", { class: "trace-head" });
  const legend = el("div", { class: "legend" });
  const waterfall = el("div", { class: "waterfall", role: "tree", "aria-label": "Spans" });
  const details = el("aside", { class: "details", "aria-label": "Span details" },
    el("p", { class: "muted" }, "Select a span to see its input, output and metadata."));
  const tools = el("div", { class: "tools" },
    el("button", { type: "button", class: "expand-all", on: { click: () => { state.collapsed.clear(); layout(); } } },
      "Expand all"),
    el("button", { type: "button", class: "collapse-all", on: { click: () => {
      for (const row of state.data.rows) if (row.children && row.depth > 0) state.collapsed.add(row.id);
      layout();
    } } }, "Collapse all"));
  replace(app, el("nav", { class: "crumbs" }, el("a", { href: "/" }, "← Traces")), header,
    el("div", { class: "trace-body" }, el("section", { class: "waterfall-box" }, tools, legend, waterfall), details));

  const select = async (spanId, { scroll = false, push = true } = {}) => {
    const row = state.data?.rows.find((r) => r.id === spanId);
    if (!row) return;
    state.selected = spanId;
    if (push) {
      const next = new URL(window.location.href);
      next.searchParams.set("span", spanId);
      history.replaceState(null, "", next);
    }
    // make sure the selected span is visible: open its collapsed ancestors
    const byId = new Map(state.data.rows.map((r) => [r.id, r]));
    for (let up = byId.get(row.parent_id); up; up = byId.get(up.parent_id)) state.collapsed.delete(up.id);
    layout();
    const node = waterfall.querySelector(`[data-span-id="${CSS.escape(spanId)}"]`);
    if (scroll && node) node.scrollIntoView({ block: "center" });
    await showDetails(details, row, state.data);
  };

  const layout = () => {
    if (!state.data) return;
    let cut = Infinity;
    for (const node of waterfall.querySelectorAll(".span-row")) {
      const depth = Number(node.dataset.depth);
      if (depth <= cut) cut = Infinity;
      const hidden = depth > cut;
      node.hidden = hidden;
      const collapsed = state.collapsed.has(node.dataset.spanId);
      if (node.dataset.children !== "0") node.setAttribute("aria-expanded", String(!collapsed));
      const toggle = node.querySelector(".toggle");
      if (toggle) toggle.textContent = collapsed ? "▸" : "▾";
      node.classList.toggle("selected", node.dataset.spanId === state.selected);
      if (!hidden && collapsed) cut = depth;
    }
  };

  const draw = (data) => {
    state.data = data;
    data.trace.is_complete = data.trace.is_complete ?? false;
    data.rows[0].is_complete = data.trace.is_complete;
    data.services.forEach((service, index) => {
      state.services.set(`${service.project_id}|${service.log_stream_id}`, index % 8);
    });
    document.title = `${data.trace.name || "Trace"} · galileo-collector`;
    drawHeader(header, data);
    replace(legend, data.services.map((service, index) =>
      el("span", { class: `chip svc-${index % 8}` }, location(service),
        el("span", { class: "muted" }, ` · ${service.spans} span(s)`),
        service.errors ? el("span", { class: "error-mark" }, ` · ${service.errors} failed`) : null)));
    replace(waterfall, axis(data.window_ns), data.rows.map((row) => spanRow(row, data.window_ns, state, {
      toggle: (id) => {
        if (state.collapsed.has(id)) state.collapsed.delete(id); else state.collapsed.add(id);
        layout();
      },
      select: (id) => select(id),
    })));
    layout();
  };

  let data;
  try {
    data = await getJSON(`/api/viewer/traces/${encodeURIComponent(traceId)}`);
  } catch (failure) {
    const message = failure instanceof ApiError && failure.status === 404 ?
      `Trace ${traceId} is not stored in this collector (yet).` : `Could not load the trace: ${failure.message}`;
    replace(app, el("nav", { class: "crumbs" }, el("a", { href: "/" }, "← Traces")),
      el("p", { class: "error-message", role: "alert" }, message));
    if (failure instanceof ApiError && failure.status === 404) {
      const watcher = watch(null, async () => { // the trace may still arrive: show it when it does
        try {
          await getJSON(`/api/viewer/traces/${encodeURIComponent(traceId)}`);
          watcher.stop();
          window.location.reload();
        } catch { /* not yet */ }
      });
    }
    return;
  }
  draw(data);
  const wanted = new URL(window.location.href).searchParams.get("span");
  if (wanted && data.rows.some((r) => r.id === wanted)) await select(wanted, { scroll: true, push: false });

  watch(data.revision, async () => {
    const fresh = await getJSON(`/api/viewer/traces/${encodeURIComponent(traceId)}`);
    draw(fresh);
    if (state.selected) {
      const row = fresh.rows.find((r) => r.id === state.selected);
      if (row) await showDetails(details, row, fresh);
    }
  });
}

function drawHeader(header, data) {
  const trace = data.trace;
  const missing = trace.trace_record === false;
  replace(header,
    el("h1", {}, el("span", { class: "type type-trace" }, "trace"), " ", traceName(trace)),
    missing ? el("p", { class: "missing-note" }, "The trace record has not arrived: these are the spans that " +
      "did, under a stand-in for it. The trace shows in full once its record arrives.") : null,
    el("dl", { class: "facts" },
      el("dt", {}, "Trace id"), el("dd", {}, el("code", {}, trace.id), copyButton(trace.id)),
      el("dt", {}, "Started"), el("dd", { title: trace.created_at || "" }, timestamp(trace.created_at)),
      el("dt", {}, "Duration"), el("dd", {}, duration(trace.duration_ns ?? null)),
      el("dt", {}, "Spans"), el("dd", {}, String(data.span_count)),
      el("dt", {}, "Status"), el("dd", { class: "status-cell" }, statusPill(trace), errorFlag(trace.error_count)),
      el("dt", {}, "Project / log stream"), el("dd", {}, missing ? "—" : location(trace)),
      el("dt", {}, "Services"), el("dd", {}, data.services.length > 1 ?
        `${data.services.length} (where the trace crossed into another, the span is marked ⇢)` :
        String(data.services.length))));
}

function axis(windowNs) {
  const ticks = [];
  for (let i = 0; i <= TICKS; i++) {
    const tick = el("span", { class: "tick" }, duration((windowNs * i) / TICKS));
    tick.style.left = `${(100 * i) / TICKS}%`;
    ticks.push(tick);
  }
  return el("div", { class: "axis", "aria-hidden": "true" },
    el("div", { class: "label" }, "Span"), el("div", { class: "track" }, ticks));
}

function spanRow(row, windowNs, state, actions) {
  const service = state.services.get(`${row.project_id}|${row.log_stream_id || ""}`) ?? 0;
  const toggle = row.children ?
    el("button", { type: "button", class: "toggle", "aria-label": "Expand or collapse",
      on: { click: (event) => { event.stopPropagation(); actions.toggle(row.id); } } }, "▾") :
    el("span", { class: "toggle-space" });
  const label = el("div", { class: `label svc-edge-${service}` },
    toggle,
    el("span", { class: `type type-${row.type}` }, row.type),
    el("span", { class: "name" }, row === state.data.rows[0] ? traceName(state.data.trace) : row.name || "(unnamed)"),
    row.model ? el("span", { class: "muted model" }, row.model) : null,
    row.error ? el("span", { class: "error-mark", title: `status ${row.status_code}` }, `⚠ ${row.status_code}`) : null,
    row.boundary ? el("span", { class: `chip boundary svc-${service}`, title: "Logged by another service" },
      `⇢ ${location(row)}`) : null,
    row.orphan ? el("span", { class: "chip orphan", title: "Its parent has not arrived" }, "parent missing") : null);
  label.style.paddingLeft = `${0.4 + row.depth * 1.1}rem`;
  const open = row.duration_ns === null || row.duration_ns === undefined;
  const width = open ? Math.max(windowNs - row.offset_ns, 0) : row.duration_ns;
  const bar = el("div", { class: `bar type-${row.type}${open ? " open" : ""}${row.error ? " error" : ""}` });
  bar.style.left = `${(100 * row.offset_ns) / windowNs}%`;
  bar.style.width = `max(2px, ${(100 * width) / windowNs}%)`;
  const time = el("span", { class: "bar-time" }, open ? "open" : duration(row.duration_ns));
  const start = (100 * row.offset_ns) / windowNs;
  const end = (100 * (row.offset_ns + width)) / windowNs;
  if (end < 80) { // after the bar
    time.style.left = `${end}%`;
  } else if (start > 20) { // before the bar
    time.style.right = `${100 - start}%`;
    time.classList.add("before");
  } else { // on the bar
    time.style.left = `${start}%`;
    time.classList.add("inside");
  }
  const node = el("div", {
    class: `span-row${row.error ? " error" : ""}${row.boundary ? " boundary" : ""}`,
    role: "treeitem", tabindex: "0",
    dataset: { spanId: row.id, depth: String(row.depth), children: String(row.children), type: row.type },
    "aria-level": String(row.depth + 1),
    on: {
      click: () => actions.select(row.id),
      keydown: (event) => {
        if (event.key === "Enter") actions.select(row.id);
        if ((event.key === "ArrowLeft" || event.key === "ArrowRight") && row.children) actions.toggle(row.id);
      },
    },
  }, label, el("div", { class: "track" }, bar, time));
  return node;
}
