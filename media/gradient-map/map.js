// The gradient map webview: shows the SVG the gradtrace server drew, themed by the CSS it sends (inserted with
// this page's nonce), and asks the extension to open the source line of whatever is clicked. No network.
(function () {
  "use strict";
  const vscode = acquireVsCodeApi();
  const nonce = document.currentScript ? document.currentScript.nonce : "";
  const mapEl = document.getElementById("gt-map");
  const kind = document.getElementById("gt-kind");
  const summary = document.getElementById("gt-summary");
  const notes = document.getElementById("gt-notes");
  const details = document.getElementById("gt-details");
  let index = {};
  let styleEl = null;

  function render(map) {
    if (!styleEl) {
      styleEl = document.createElement("style");
      styleEl.setAttribute("nonce", nonce);
      document.head.appendChild(styleEl);
    }
    styleEl.textContent = map.css || "";
    kind.textContent = map.source === "probe" ? "probe result" : "static analysis only";
    kind.className = "gt-kind gt-" + map.source;
    summary.textContent = map.summary || "";
    notes.replaceChildren(...(map.notes || []).map((n) => {
      const p = document.createElement("p");
      p.className = "gt-note";
      p.textContent = n;
      return p;
    }));
    const doc = new DOMParser().parseFromString(map.svg, "image/svg+xml");
    const svg = doc.documentElement;
    if (svg.nodeName !== "svg") {
      showError("the server sent a picture that is not SVG");
      return;
    }
    svg.querySelectorAll("script, foreignObject").forEach((n) => n.remove());
    mapEl.replaceChildren(document.importNode(svg, true));
    index = map.index || {};
    document.body.dataset.source = map.source;
    document.body.dataset.generation = String(map.generation);
    details.textContent = "Click a parameter, module or cut to open its line.";
  }

  function showError(message) {
    kind.textContent = "error";
    kind.className = "gt-kind gt-error";
    summary.textContent = message;
  }

  function describe(info) {
    let text = info.kind + " " + info.name;
    if (info.kind === "param") {
      text += " — " + info.label;
      if (info.norm !== null && info.norm !== undefined) text += ", ‖g‖ " + Number(info.norm).toPrecision(3);
      if (info.cut) text += ", cut by " + info.cut;
    } else if (info.kind === "cut") {
      text += " — " + info.reason + " (cuts " + info.params.length + " parameter(s))";
    } else if (info.kind === "module" && info.status) {
      text += " — " + info.status;
    }
    if (info.line) text += " · line " + info.line;
    return text;
  }

  mapEl.addEventListener("click", (ev) => {
    const el = ev.target.closest(".gt-param, .gt-cut, .gt-loss, .gt-module");
    if (!el || !index[el.id]) return;
    mapEl.querySelectorAll(".gt-selected").forEach((n) => n.classList.remove("gt-selected"));
    el.classList.add("gt-selected");
    const info = index[el.id];
    details.textContent = describe(info);
    if (info.path && info.line) vscode.postMessage({ type: "open", path: info.path, line: info.line });
  });
  document.getElementById("gt-fit").addEventListener("click", () => mapEl.classList.toggle("gt-fit"));
  document.getElementById("gt-probe")?.addEventListener("click", () => vscode.postMessage({ type: "probe" }));

  window.addEventListener("message", (ev) => {
    const m = ev.data || {};
    if (m.type === "map") render(m.map);
    else if (m.type === "error") showError(m.message);
    else if (m.type === "loading" && !mapEl.firstChild) summary.textContent = "Drawing the gradient map of " + m.name + "…";
  });
  vscode.postMessage({ type: "ready" });
})();
