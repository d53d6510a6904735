"""Styles and the page script of the gradient map (kept as strings so they ship inside the Python package).

`CSS` themes the SVG that `dot` draws: every colour baked into the SVG (the light look of a standalone file) is
remapped by attribute selector to a theme variable. In VS Code's webview the variables come from the editor
theme (`--vscode-*`: light, dark, high contrast); in a browser, from `prefers-color-scheme`.
"""

CSS = r"""
body {
  --gt-fg: var(--vscode-editor-foreground, #1f1f1f);
  --gt-bg: var(--vscode-editor-background, #ffffff);
  --gt-ok: var(--vscode-testing-iconPassed, #2e7d32);
  --gt-bad: var(--vscode-errorForeground, #c62828);
  --gt-zero: var(--vscode-editorWarning-foreground, #a05a00);
  --gt-nonfinite: var(--vscode-charts-purple, #6a1b9a);
  --gt-noopt: var(--vscode-charts-blue, #1565c0);
  --gt-muted: var(--vscode-descriptionForeground, #7a7a7a);
  --gt-line: var(--vscode-contrastBorder, var(--gt-muted));
  --gt-mix: 22%;
  margin: 0; padding: 0 12px 24px; color: var(--gt-fg); background: var(--gt-bg);
  font-family: var(--vscode-font-family, system-ui, sans-serif); font-size: var(--vscode-font-size, 13px);
}
@media (prefers-color-scheme: dark) {
  body:not([class*="vscode-"]) {
    --gt-fg: #d4d4d4; --gt-bg: #1e1e1e; --gt-ok: #73c991; --gt-bad: #f48771; --gt-zero: #cca700;
    --gt-nonfinite: #b180d7; --gt-noopt: #6cb6ff; --gt-muted: #9d9d9d;
  }
}
body.vscode-high-contrast, body.vscode-high-contrast-light { --gt-mix: 0%; }
.gt-bar { position: sticky; top: 0; z-index: 2; display: flex; gap: 8px; align-items: center; flex-wrap: wrap;
  padding: 8px 0; background: var(--gt-bg); border-bottom: 1px solid var(--gt-line); }
.gt-bar .gt-summary { flex: 1 1 auto; }
.gt-kind { padding: 1px 6px; border-radius: 3px; border: 1px solid var(--gt-line); font-size: 90%; }
.gt-kind.gt-static { color: var(--gt-zero); border-color: var(--gt-zero); }
button { color: var(--vscode-button-foreground, #fff); background: var(--vscode-button-background, #0e639c);
  border: 1px solid var(--vscode-button-border, transparent); padding: 2px 10px; cursor: pointer; }
button:hover { background: var(--vscode-button-hoverBackground, #1177bb); }
#gt-details { min-height: 1.4em; padding: 6px 0; color: var(--gt-muted); }
#gt-details a { color: var(--vscode-textLink-foreground, #0066bf); }
#gt-map svg { display: block; margin-top: 8px; }
#gt-map.gt-fit svg { max-width: 100%; height: auto; }
#gt-map svg text { fill: var(--gt-fg); }
#gt-map svg text[fill="white"] { fill: #ffffff; }
#gt-map svg .gt-graph > polygon:first-of-type { fill: var(--gt-bg); stroke: none; }
/* parameters and legend chips, by the colour baked in for their status */
#gt-map svg [fill="#d8f0dc"] { fill: color-mix(in srgb, var(--gt-ok) var(--gt-mix), var(--gt-bg)); }
#gt-map svg [fill="#fff1c7"] { fill: color-mix(in srgb, var(--gt-zero) var(--gt-mix), var(--gt-bg)); }
#gt-map svg [fill="#fbd5d5"] { fill: color-mix(in srgb, var(--gt-bad) var(--gt-mix), var(--gt-bg)); }
#gt-map svg [fill="#ead9f7"] { fill: color-mix(in srgb, var(--gt-nonfinite) var(--gt-mix), var(--gt-bg)); }
#gt-map svg [fill="#d6e6f5"] { fill: color-mix(in srgb, var(--gt-noopt) var(--gt-mix), var(--gt-bg)); }
#gt-map svg [stroke="#2e7d32"] { stroke: var(--gt-ok); }
#gt-map svg [stroke="#a05a00"] { stroke: var(--gt-zero); }
#gt-map svg [stroke="#c62828"], #gt-map svg [stroke="#8e0000"] { stroke: var(--gt-bad); }
#gt-map svg [stroke="#6a1b9a"] { stroke: var(--gt-nonfinite); }
#gt-map svg [stroke="#1565c0"] { stroke: var(--gt-noopt); }
#gt-map svg [stroke="#9e9e9e"], #gt-map svg [stroke="#8a8a8a"], #gt-map svg [stroke="#555555"] { stroke: var(--gt-muted); }
#gt-map svg [fill="#2e7d32"] { fill: var(--gt-ok); }
#gt-map svg [fill="#9e9e9e"] { fill: var(--gt-muted); }
#gt-map svg [fill="#c62828"] { fill: var(--gt-bad); }
/* clusters: modules */
#gt-map svg [fill="#f7f7f7"] { fill: color-mix(in srgb, var(--gt-fg) 4%, var(--gt-bg)); }
#gt-map svg [fill="#fff3f3"] { fill: color-mix(in srgb, var(--gt-bad) 7%, var(--gt-bg)); }
#gt-map svg [fill="#fffaf0"] { fill: color-mix(in srgb, var(--gt-zero) 7%, var(--gt-bg)); }
#gt-map svg [fill="#eeeeee"] { fill: color-mix(in srgb, var(--gt-fg) 10%, var(--gt-bg)); }
#gt-map svg .gt-module.gt-dead > text, #gt-map svg text[fill="#c62828"] { fill: var(--gt-bad); font-weight: bold; }
#gt-map svg text[fill="#a05a00"] { fill: var(--gt-zero); }
#gt-map svg text[fill="#1565c0"] { fill: var(--gt-noopt); }
#gt-map svg .gt-cut text { fill: #ffffff; font-weight: bold; }
#gt-map svg .gt-param, #gt-map svg .gt-cut, #gt-map svg .gt-loss, #gt-map svg .gt-module { cursor: pointer; }
#gt-map svg .gt-selected path, #gt-map svg .gt-selected polygon, #gt-map svg .gt-selected ellipse {
  stroke-width: 3px; stroke: var(--vscode-focusBorder, #0078d4); }
"""

PAGE_JS = r"""
(function () {
  const index = JSON.parse(document.getElementById("gt-index").textContent);
  const details = document.getElementById("gt-details");
  const map = document.getElementById("gt-map");
  function describe(info) {
    const where = info.path ? `${info.path.split(/[\\/]/).pop()}:${info.line ?? ""}` : "";
    let text = `${info.kind} ${info.name}`;
    if (info.kind === "param") text += ` — ${info.label}${info.norm != null ? `, ‖g‖ ${info.norm.toPrecision(3)}` : ""}${info.cut ? `, cut by ${info.cut}` : ""}`;
    if (info.kind === "cut") text += ` — ${info.reason} (cuts ${info.params.length} parameter(s))`;
    return { text, where };
  }
  map.addEventListener("click", (ev) => {
    const el = ev.target.closest(".gt-param, .gt-cut, .gt-loss, .gt-module");
    if (!el || !index[el.id]) return;
    map.querySelectorAll(".gt-selected").forEach((n) => n.classList.remove("gt-selected"));
    el.classList.add("gt-selected");
    const info = index[el.id];
    const d = describe(info);
    details.textContent = d.text + " ";
    if (info.path && info.line) {
      const a = document.createElement("a");
      a.href = `vscode://file/${info.path}:${info.line}`;
      a.textContent = d.where;
      details.appendChild(a);
    }
  });
  document.getElementById("gt-fit").addEventListener("click", () => map.classList.toggle("gt-fit"));
})();
"""
