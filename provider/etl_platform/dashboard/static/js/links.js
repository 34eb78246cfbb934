// Links out of the page into Airflow's UI (the runs table's and the Transfer view's).

/**
 * Airflow's UI shows the page in an iframe sandboxed without allow-top-navigation, so a target="_top"
 * link cannot leave it; the UI is same-origin, so its router is told instead (history + popstate).
 * Opened on its own, the link works as a link.
 */
export function navigateTop(ev) {
  if (window.top === window) return;
  try {
    window.top.history.pushState({}, "", ev.currentTarget.href);
    window.top.dispatchEvent(new PopStateEvent("popstate", { state: {} }));
    ev.preventDefault();
  } catch (e) {
    /* a cross-origin parent: the link's own behaviour */
  }
}
