// The viewer's JSON API (/api/viewer/...) and the live refresh: one small poller per page.

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** GET a JSON answer from the collector; ApiError with the server's detail on a non-2xx answer. */
export async function getJSON(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(key, value);
  }
  const url = query.toString() ? `${path}?${query}` : path;
  const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
    throw new ApiError(response.status, detail);
  }
  return body;
}

const POLL_MS = 1000;

/**
 * Call `onChange()` whenever the store's revision moves past `revision` (new or updated records), polling
 * once a second while the page is visible. Shows the poller's state in the header's "live" badge.
 */
export function watch(revision, onChange) {
  const badge = document.getElementById("live");
  let known = revision;
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const { revision: now } = await getJSON("/api/viewer/revision");
      badge?.classList.remove("offline");
      if (now !== known) {
        known = now;
        await onChange();
      }
    } catch {
      badge?.classList.add("offline");
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(tick, POLL_MS);
  return {
    /** Tell the watcher the revision the page now shows. */
    seen(value) { known = value; },
    stop() { clearInterval(timer); },
  };
}
