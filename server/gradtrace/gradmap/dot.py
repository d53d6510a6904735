"""Lay out and draw a `GradMap` with Graphviz `dot`.

Why dot: the module hierarchy is a tree of nested clusters and the data flow a mostly layered DAG, which is
exactly what dot's cluster-aware layered layout was built for; it places a 12-layer transformer (≈ 150
parameters, 75 modules) in well under a second, emits SVG whose elements carry our ids and classes (the
webview and the HTML page theme and wire them with CSS and a few lines of script), and the CLI and the editor
show the identical picture because both come from the same DOT text. Large models: subtrees in which every
parameter trains are folded into one node, so the eye goes to the blocks that do not.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess

from gradtrace.gradmap.model import STATUS_LABEL, GradMap

FONT = "DejaVu Sans,Helvetica,Arial,sans-serif"
# Light defaults baked into the SVG (a CI artifact viewed anywhere); the HTML page and the webview restyle
# every element by class (map.css), following the editor theme.
FILL = {"ok": "#d8f0dc", "zero": "#fff1c7", "none": "#fbd5d5", "nonfinite": "#ead9f7", "no-optimizer": "#d6e6f5",
        "unknown": "#fbd5d5", "reached": "#d8f0dc"}
STROKE = {"ok": "#2e7d32", "zero": "#a05a00", "none": "#c62828", "nonfinite": "#6a1b9a", "no-optimizer": "#1565c0",
          "unknown": "#c62828", "reached": "#2e7d32"}
SHORT = {"ok": "", "zero": "zero", "none": "None", "nonfinite": "NaN/inf", "no-optimizer": "no optimizer",
         "unknown": "loses gradient", "reached": "reaches the loss"}
MODULE_STROKE = {"dead": "#c62828", "mixed": "#a05a00", "live": "#8a8a8a", "empty": "#8a8a8a", "noopt": "#1565c0"}
MODULE_FILL = {"dead": "#fff3f3", "mixed": "#fffaf0", "live": "#f7f7f7", "empty": "#f7f7f7", "noopt": "#f7f7f7"}
FOLD_AT = 40  # leaf modules above which subtrees that train entirely are folded
FOLD_MAX = 16  # a folded subtree holds at most this many leaf modules


class GraphvizMissing(RuntimeError):
    pass


def _q(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(shape) -> str:
    if not shape:
        return "scalar" if shape == [] else ""
    return "×".join(str(d) for d in shape)


def _norm(norm) -> str:
    if norm is None:
        return ""
    return f"‖g‖ {norm:.3g}"


def _short(name: str, parent: str) -> str:
    rel = name[len(parent) + 1:] if parent and name.startswith(parent + ".") else name
    return rel


class _Folding:
    """Which modules are drawn folded (one node for a subtree in which every parameter trains)."""

    def __init__(self, gm: GradMap):
        self.gm = gm
        self.folded: set[str] = set()
        leafs = [m for m in gm.modules.values() if m.params]
        if len(leafs) > FOLD_AT:
            self._visit("")

    def _leaf_count(self, name: str) -> int:
        mod = self.gm.modules[name]
        return (1 if mod.params else 0) + sum(self._leaf_count(c) for c in mod.children)

    def _visit(self, name: str) -> None:
        mod = self.gm.modules[name]
        if name and mod.children and self._uniform(name) and 2 <= self._leaf_count(name) <= FOLD_MAX:
            self.folded.add(name)
            return
        for child in mod.children:
            self._visit(child)

    def _uniform(self, name: str) -> bool:
        return len({self.gm.params[p].status for p in self.gm.params_under(name)}) == 1

    def owner(self, name: str) -> str | None:
        """The folded module that hides `name`, if any."""
        probe = name
        while probe:
            if probe in self.folded:
                return probe
            probe = probe.rsplit(".", 1)[0] if "." in probe else ""
        return None


def to_dot(gm: GradMap) -> str:
    fold = _Folding(gm)
    out: list[str] = []
    w = out.append
    w("digraph gradmap {")
    w(f'  graph [rankdir=TB, compound=true, newrank=true, nodesep=0.25, ranksep=0.4, fontname={_q(FONT)}, '
      f'fontsize=11, bgcolor="white", pad=0.2, id="gt-graph", class="gt-graph gt-{gm.source}", '
      f'label=<{_legend(gm)}>, labelloc=t, labeljust=l];')
    w(f'  node [fontname={_q(FONT)}, fontsize=10, shape=box, style="rounded,filled", penwidth=1.4, margin="0.08,0.04"];')
    w(f'  edge [fontname={_q(FONT)}, fontsize=9, arrowsize=0.6, penwidth=1.2];')
    home = _cut_homes(gm, fold)
    anchor_in: dict[str, str] = {}  # module name -> (node to aim at, cluster to clip at)
    anchor_out: dict[str, str] = {}
    cluster_of: dict[str, str] = {}

    def emit_module(name: str, depth: int) -> None:
        mod = gm.modules[name]
        pad = "  " * (depth + 1)
        # a static map knows modules, not their parameters: no verdict on whole modules
        status = gm.module_status(name) if gm.source == "probe" else "empty"
        if name in fold.folded:
            under = gm.params_under(name)
            st = gm.params[under[0]].status
            norms = [gm.params[p].norm for p in under if gm.params[p].norm is not None]
            label = f"{_short(name, _parent(name))}\n{len(under)} parameters: {'all' if len(under) > 2 else 'both'} {STATUS_LABEL[st].replace('gets', 'get')}"
            if norms:
                label += f"\nmax {_norm(max(norms))}"
            w(f'{pad}{_q(mod.id)} [id={_q(mod.id)}, class="gt-module gt-folded gt-{status} gt-{st}", label={_q(label)}, '
              f'fillcolor="{FILL[st]}", color="{STROKE[st]}", penwidth={2.2 if status == "dead" else 1.4}, '
              f'tooltip={_q(name + " (folded: every parameter in it is alike)")}];')
            anchor_in[name] = anchor_out[name] = mod.id
            return
        if name:
            cid = f"cluster_{mod.id}"
            cluster_of[name] = cid
            verdict = {"dead": " — no gradient", "mixed": " — partly no gradient",
                       "noopt": " — not in an optimizer"}.get(status, "")
            w(f'{pad}subgraph {_q(cid)} {{')
            w(f'{pad}  graph [id={_q(mod.id)}, class="gt-module gt-{status}", label={_q(_short(name, _parent(name)) + verdict)}, '
              f'style="rounded,filled", color="{MODULE_STROKE[status]}", fillcolor="{MODULE_FILL[status]}", '
              f'penwidth={2.2 if status == "dead" else 1.0}, fontcolor="{MODULE_STROKE[status] if status != "live" else "#333333"}", '
              f'tooltip={_q(name)}];')
        if mod.params:
            ids = []
            for pid in mod.params:
                p = gm.params[pid]
                leaf = p.name[len(name) + 1:] if name else p.name
                bits = [b for b in (_shape(p.shape), _norm(p.norm), SHORT[p.status]) if b]
                label = leaf + ("\n" + " · ".join(bits) if bits else "")
                style = "rounded,filled" + (",dashed" if p.status == "unknown" else "")
                tip = f"{p.name}: {STATUS_LABEL[p.status]}" + (f" (line {p.line})" if p.line else "")
                w(f'{pad}  {_q(pid)} [id={_q(pid)}, class="gt-param gt-{p.status}", label={_q(label)}, '
                  f'fillcolor="{FILL[p.status]}", color="{STROKE[p.status]}", style="{style}", tooltip={_q(tip)}];')
                ids.append(pid)
            if len(ids) > 1:
                w(f'{pad}  {{ rank=same; {"; ".join(_q(i) for i in ids)} }}')
                ordered = sorted(ids, key=lambda i: gm.params[i].name.rsplit(".", 1)[-1] != "weight")
                w(f'{pad}  {" -> ".join(_q(i) for i in ordered)} [style=invis];')
            if name:
                anchor_in[name], anchor_out[name] = ids[0], ids[-1]
            else:
                for i in ids:
                    anchor_in[i] = anchor_out[i] = i
        for child in mod.children:
            emit_module(child, depth + 1)
        for cut in gm.cuts.values():
            if home.get(cut.id) == name:
                emit_cut(cut, pad)
        if name:
            if name not in anchor_in:  # a module with only child modules: aim at its first/last descendant
                kids = [c for c in mod.children if c in anchor_in]
                if kids:
                    anchor_in[name], anchor_out[name] = anchor_in[kids[0]], anchor_out[kids[-1]]
            w(f"{pad}}}")

    def emit_cut(cut, pad: str) -> None:
        label = f"✂ {cut.op}" + (f" · line {cut.line}" if cut.line else "")
        tip = f"line {cut.line}: {cut.reason}" if cut.line else cut.reason
        w(f'{pad}  {_q(cut.id)} [id={_q(cut.id)}, class="gt-cut", label={_q(label)}, shape=box, style="filled", '
          f'fillcolor="#c62828", color="#8e0000", fontcolor="white", penwidth=1.0, tooltip={_q(tip)}];')

    emit_module("", 0)
    if gm.loss:
        w(f'  "gt-loss" [id="gt-loss", class="gt-loss", label={_q(gm.loss["label"])}, shape=ellipse, style="filled", '
          f'fillcolor="#eeeeee", color="#555555"];')
    seen = set()
    drawn = []
    for e in gm.edges:
        src, dst = _endpoint(e.src, fold), _endpoint(e.dst, fold)
        if src != dst and (src, dst) not in seen:
            seen.add((src, dst))
            drawn.append((src, dst, e))
    for k, (src, dst, e) in enumerate(_reduce(drawn, set(gm.cuts))):
        tail = _node(src, anchor_out)
        head = _node(dst, anchor_in)
        if tail is None or head is None:
            continue
        attrs = []
        if src in cluster_of and src not in fold.folded:
            attrs.append(f"ltail={_q(cluster_of[src])}")
        if dst in cluster_of and dst not in fold.folded:
            attrs.append(f"lhead={_q(cluster_of[dst])}")
        kind = "severed" if e.severed else "live" if e.live else "dead"
        color = {"live": "#2e7d32", "dead": "#9e9e9e", "severed": "#c62828"}[kind]
        style = {"live": "solid", "dead": "dashed", "severed": "dashed"}[kind]
        attrs += [f'id="gt-edge-{k}"', f'class="gt-edge gt-{kind}"', f'color="{color}"', f'style="{style}"']
        if kind == "severed":
            attrs.append('arrowhead="tee"')
        w(f"  {_q(tail)} -> {_q(head)} [{', '.join(attrs)}];")
    w("}")
    return "\n".join(out) + "\n"


def _reduce(edges: list[tuple], cuts: set[str]) -> list[tuple]:
    """Transitive reduction: drop u -> v when v is reached from u another way that passes no cut (a residual
    stream links every block to every later one; the picture shows the chain)."""
    succ: dict[str, list[str]] = {}
    for u, v, _ in edges:
        succ.setdefault(u, []).append(v)
    keep = []
    for u, v, e in edges:
        stack = [x for x in succ.get(u, []) if x != v and x not in cuts]
        seen = set(stack)
        found = False
        while stack and not found:
            x = stack.pop()
            for y in succ.get(x, []):
                if y == v:
                    found = True
                    break
                if y not in seen and y not in cuts:
                    seen.add(y)
                    stack.append(y)
        if not found:
            keep.append((u, v, e))
    return keep


def _cut_homes(gm: GradMap, fold: _Folding) -> dict[str, str]:
    """The innermost module holding every module a cut's edges touch (the forward that cut it)."""
    homes = {}
    for cut in gm.cuts.values():
        ends = [e.src for e in gm.edges if e.dst == cut.id] + [e.dst for e in gm.edges if e.src == cut.id]
        names = []
        for n in ends:
            if n == "loss" or n in gm.cuts:
                names = None
                break
            names.append(gm.params[n].module if n in gm.params else n)
        if not names:
            homes[cut.id] = ""
            continue
        parts = [n.split(".") for n in names]
        common = []
        for level in zip(*parts):
            if len(set(level)) != 1:
                break
            common.append(level[0])
        home = ".".join(common)
        if home in gm.modules and not gm.modules[home].children and len(set(names)) == 1:
            home = _parent(home)  # beside a leaf module, not inside its row of parameters
        while home and (home not in gm.modules or fold.owner(home)):
            home = _parent(home)
        homes[cut.id] = home
    return homes


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _endpoint(node: str, fold: _Folding) -> str:
    owner = fold.owner(node) if node not in ("loss",) and not node.startswith("gt-") else None
    return owner or node


def _node(node: str, anchors: dict[str, str]) -> str | None:
    if node == "loss":
        return "gt-loss"
    if node.startswith(("gt-cut-", "gt-param-")):
        return node
    return anchors.get(node)


def _legend(gm: GradMap) -> str:
    e = html.escape
    chips = []
    present = {p.status for p in gm.params.values()}
    static = ("reached", "unknown")
    for st in ("ok", "zero", "none", "nonfinite", "no-optimizer") + static:
        if st in present or st in ("ok", "none"):
            if (gm.source == "static") != (st in static):
                continue
            chips.append(f'<TD BGCOLOR="{FILL[st]}" COLOR="{STROKE[st]}" BORDER="1"> {e(STATUS_LABEL[st])} </TD>')
    chips.append('<TD BGCOLOR="#c62828" BORDER="0"><FONT COLOR="white"> ✂ cut: op · line </FONT></TD>')
    rows = [f'<TR><TD ALIGN="LEFT" COLSPAN="{len(chips)}"><B>{e(gm.title)}</B></TD></TR>',
            f'<TR><TD ALIGN="LEFT" COLSPAN="{len(chips)}">{e(gm.summary)}</TD></TR>']
    if gm.source == "static":
        rows.append(f'<TR><TD ALIGN="LEFT" COLSPAN="{len(chips)}"><I>{e("static analysis: modules, not parameters; run the probe for every parameter")}</I></TD></TR>')
    rows.append("<TR>" + "".join(chips) + "</TR>")
    return f'<TABLE BORDER="0" CELLSPACING="4" CELLPADDING="2">{"".join(rows)}</TABLE>'


def dot_binary() -> str | None:
    return shutil.which("dot")


def render_svg(gm: GradMap, timeout: float = 60.0) -> str:
    """The picture as SVG text (no XML prologue, ready to inline)."""
    exe = dot_binary()
    if exe is None:
        raise GraphvizMissing("the gradient map needs Graphviz's `dot` (Debian/Ubuntu: apt-get install graphviz; "
                              "macOS: brew install graphviz; conda: conda install graphviz)")
    proc = subprocess.run([exe, "-Tsvg"], input=to_dot(gm).encode(), capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"dot failed: {proc.stderr.decode(errors='replace').strip()[:500]}")
    svg = proc.stdout.decode("utf-8", errors="replace")
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<!--.*?-->\n?", "", svg, flags=re.S)
    return svg
