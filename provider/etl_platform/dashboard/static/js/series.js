// GET api/series for the range (every pipeline: the table needs each trend; the charts filter on the client).
import { api } from "./api.js";
import { renderCharts } from "./charts.js";
import { setError } from "./errors.js";
import { renderPipelines } from "./pipelines.js";
import { rangeBounds, seq, state } from "./state.js";

export async function loadSeries() {
  const my = ++seq.series;
  const { since, until, bucket } = rangeBounds();
  try {
    const { data } = await api("series", { since: since.toISOString(), until: until.toISOString(), bucket });
    if (my !== seq.series) return;
    data._since = since.getTime();
    data._until = until.getTime();
    data._bucket = bucket;
    state.series = data;
    setError("series", null);
    renderCharts();
    renderPipelines();
  } catch (e) {
    if (my === seq.series) setError("series", e);
  }
}
