// The dashboard's API over fetch: relative URLs (the page works under /etl/ and in the Airflow UI's iframe),
// authenticated by the Airflow UI's `_token` cookie (same origin). API contract: docs/dashboard.md.
export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

function formatDetail(detail) {
  if (detail === null || detail === undefined) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    // FastAPI validation errors: [{loc: ["query", "page_size"], msg: "..."}]
    return detail
      .map((d) => (d && d.loc ? d.loc.filter((p) => p !== "query").join(".") + ": " + d.msg : JSON.stringify(d)))
      .join("; ");
  }
  return JSON.stringify(detail);
}

export async function api(path, params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== "") qs.set(k, v);
  }
  const url = "api/" + path + (qs.toString() ? "?" + qs.toString() : "");
  let resp;
  try {
    resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  } catch (e) {
    throw new ApiError(0, "cannot reach the api-server (" + e.message + ")");
  }
  if (!resp.ok) {
    let detail = resp.statusText || "HTTP " + resp.status;
    try {
      const body = await resp.json();
      if (body && body.detail !== undefined) detail = formatDetail(body.detail);
    } catch (e) {
      /* not JSON */
    }
    throw new ApiError(resp.status, detail);
  }
  return { data: await resp.json(), headers: resp.headers };
}

/** Airflow's login (it redirects to the auth manager's form) and back to the page, or the UI showing it. */
export function loginUrl() {
  let back = location.href;
  try {
    if (window.top !== window && window.top.location.origin === location.origin) back = window.top.location.href;
  } catch (e) {
    /* a cross-origin parent: come back to the page itself */
  }
  return "../api/v2/auth/login?next=" + encodeURIComponent(back);
}
