// The error banner: one line per failing source, or a sign-in link when the session is gone.
import { loginUrl } from "./api.js";
import { $, append, el } from "./dom.js";
import { state } from "./state.js";

export function setError(source, err) {
  if (err) state.errors[source] = err;
  else delete state.errors[source];
  renderErrors();
}

export function renderErrors() {
  const banner = $("#error");
  const text = $(".error-text", banner);
  const errors = Object.entries(state.errors);
  text.textContent = "";
  if (!errors.length) {
    banner.hidden = true;
    return;
  }
  if (errors.some(([, e]) => e.status === 401)) {
    append(text, [
      "Not signed in: ",
      el("a", { href: loginUrl(), target: "_top", text: "sign in to Airflow" }),
      ", then reload this page. (" + errors.find(([, e]) => e.status === 401)[1].detail + ")",
    ]);
  } else {
    const lines = errors.map(([source, e]) => {
      const code = e.status === 403 ? "403 forbidden" : e.status ? "HTTP " + e.status : "network";
      return `${source}: ${code}: ${e.detail}`;
    });
    text.textContent = lines.join(" · ");
  }
  banner.hidden = false;
}
