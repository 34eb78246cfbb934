// The runs table: keyset pages from GET api/runs, each row linking to its Transfer view and to Airflow.
import { api } from "./api.js";
import { $, el } from "./dom.js";
import { fmtBytes, fmtCompact, fmtDuration, fmtInt, fmtTime, isNum, localToIso } from "./format.js";
import { setError } from "./errors.js";
import { navigateTop } from "./links.js";
import { actions, runKey, seq, state } from "./state.js";

function runParams() {
  return {
    pipeline: state.pipeline,
    status: state.status,
    since: localToIso(state.since),
    until: localToIso(state.until),
    page_size: state.pageSize,
    cursor: state.cursors[state.cursors.length - 1],
  };
}

export async function loadRuns(opts) {
  const my = ++seq.runs;
  const table = $("#runs");
  if (!(opts && opts.quiet)) table.classList.add("loading");
  $("#next-page").disabled = true;
  $("#prev-page").disabled = true;
  try {
    const { data } = await api("runs", runParams());
    if (my !== seq.runs) return;
    state.runs = data.runs || [];
    state.nextCursor = data.next_cursor || null;
    setError("runs", null);
  } catch (e) {
    if (my !== seq.runs) return;
    setError("runs", e);
    if (opts && opts.onErrorPop && state.cursors.length > 1) state.cursors.pop();
  } finally {
    if (my === seq.runs) {
      table.classList.remove("loading");
      renderRuns();
    }
  }
}

function runRow(r) {
  const key = runKey(r.pipeline, r.run_id);
  const flashUntil = state.flashes.get(key);
  const running = r.status === "running" || r.status === "pending";
  let duration = r.duration_s;
  if (!isNum(duration) && running && r.started_at) duration = (Date.now() - new Date(r.started_at).getTime()) / 1000;
  return el(
    "tr",
    {
      class: flashUntil && flashUntil > Date.now() ? "flash" : null,
      dataset: { runId: r.run_id, pipeline: r.pipeline, status: r.status },
    },
    el("td", {}, el("span", { class: "badge " + r.status, text: r.status })),
    el("td", {}, el("a", {
      href: "#",
      class: "pipeline-link",
      text: r.pipeline,
      title: "Show only " + r.pipeline,
      onclick: (ev) => {
        ev.preventDefault();
        actions.selectPipeline(r.pipeline);
      },
    })),
    el("td", { class: "mono run-id", title: r.run_id }, el("span", { class: "clip", text: r.run_id })),
    runLinks(r),
    el("td", { text: fmtTime(r.started_at), title: r.started_at + (r.finished_at ? "\nfinished " + r.finished_at : "") }),
    el("td", {
      class: "num" + (running ? " muted" : ""),
      text: isNum(duration) ? fmtDuration(duration) + (running && !isNum(r.duration_s) ? " …" : "") : "–",
    }),
    el("td", { class: "num", text: fmtInt(r.rows), title: fmtInt(r.rows) + " rows" }),
    el("td", { class: "num", text: fmtCompact(r.rows_per_second) }),
    el("td", { class: "num", text: fmtBytes(r.bytes) }),
    el("td", { class: "error", title: r.error || null }, r.error ? el("span", { class: "error-text", text: r.error }) : null)
  );
}

function runLinks(r) {
  return el(
    "td",
    { class: "run-links" },
    el("a", {
      class: "transfer-link",
      href: "transfer?" + new URLSearchParams({ dag_id: r.pipeline, run_id: r.run_id }).toString(),
      text: "Transfer",
      title: "Chunks, rows/s and memory of this run's transfer tasks",
    }),
    " · ",
    el("a", {
      class: "airflow-link",
      href: airflowRunUrl(r.pipeline, r.run_id),
      target: "_top",
      text: "Airflow",
      title: "This run in Airflow",
      onclick: navigateTop,
    })
  );
}

/** The run's page in Airflow's UI (this page is <root>etl/). */
function airflowRunUrl(pipeline, runId) {
  const root = location.pathname.replace(/etl\/?$/, "");
  return root + "dags/" + encodeURIComponent(pipeline) + "/runs/" + encodeURIComponent(runId);
}

export function renderRuns() {
  const tbody = $("#runs tbody");
  if (!state.runs.length) {
    const what = state.errors.runs
      ? "Could not load the runs (see the message above)"
      : state.pipeline || state.status || state.since || state.until
        ? "No runs match the filters"
        : "No runs yet";
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: 10, class: "empty", text: what })));
  } else {
    tbody.replaceChildren(...state.runs.map(runRow));
  }
  const page = state.cursors.length;
  const first = (page - 1) * state.pageSize + 1;
  const last = first + state.runs.length - 1;
  $("#page-info").textContent = state.runs.length ? `Page ${page} · runs ${fmtInt(first)}–${fmtInt(last)}` : `Page ${page}`;
  $("#page-info").dataset.page = String(page);
  $("#prev-page").disabled = page <= 1;
  $("#next-page").disabled = !state.nextCursor;
}

export function replaceRow(run) {
  const rows = document.querySelectorAll("#runs tbody tr[data-run-id]");
  for (const tr of rows) {
    if (tr.dataset.runId === run.run_id && tr.dataset.pipeline === run.pipeline) {
      tr.replaceWith(runRow(run));
      return;
    }
  }
}
