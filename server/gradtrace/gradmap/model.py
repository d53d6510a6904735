"""The gradient map's graph: modules (nested by name), parameters, cuts, the loss, and the data flow between them.

Built from a probe result (DESIGN §3; the `flow` key links the ops that use parameters along the forward data
flow) or, when no probe ran, from the gradient lens of the file's analysis (coarser: the modules each loss reaches
or not, and the cut that removed each one: the same facts as the editor's code lens and hover).
Pure data: `dot.py` lays it out and draws it.
"""

from __future__ import annotations

import os

from gradtrace.records import field, record

STATUSES = ("ok", "zero", "none", "nonfinite", "no-optimizer")
STATUS_LABEL = {
    "ok": "gets a gradient",
    "zero": "gradient is zero",
    "none": "no gradient (None)",
    "nonfinite": "non-finite gradient",
    "no-optimizer": "gradient, but in no optimizer",
    "unknown": "loses its gradient (static)",
    "reached": "reaches the loss (static)",
}
FLOWING = ("ok", "no-optimizer", "reached")  # statuses of what gets a gradient


@record
class Param:
    id: str
    name: str  # full name, e.g. model.encoder.0.weight
    module: str  # the module path it belongs to ("" for a bare tensor)
    status: str  # one of STATUSES, or "unknown" on a static map
    norm: float | None = None
    shape: list | None = None
    path: str | None = None
    line: int | None = None
    cut: str | None = None  # id of the cut that removed its gradient
    why: str | None = None


@record
class Module:
    id: str
    name: str  # full path, e.g. model.encoder.0
    children: list[str] = field(default_factory=list)  # child module names
    params: list[str] = field(default_factory=list)  # param ids


@record
class Cut:
    id: str
    op: str
    line: int | None
    path: str | None
    reason: str = ""
    params: list[str] = field(default_factory=list)  # param ids it cuts
    op_line: int | None = None  # the operation's own line when the cut is reported at a no_grad site


@record
class Edge:
    src: str  # a module name, a cut id, or "loss"
    dst: str
    live: bool  # gradient flows back along it
    severed: bool = False  # the downstream half of a cut


@record
class GradMap:
    source: str  # "probe" | "static"
    title: str
    summary: str
    path: str | None
    params: dict[str, Param] = field(default_factory=dict)
    modules: dict[str, Module] = field(default_factory=dict)  # name -> Module ("" is the root)
    cuts: dict[str, Cut] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    loss: dict | None = None  # {"path","line","label"}
    notes: list[str] = field(default_factory=list)
    stale: bool = False  # drawn from a probe of an earlier text of the file

    def mark_stale(self) -> None:
        """The file changed since the probe this map comes from: say so in the title and the notes."""
        if not self.stale:
            self.stale = True
            self.title += " — stale: the file changed since the probe ran"
            self.notes.insert(0, "Stale: the file has changed since this probe ran; run “gradtrace: Probe” again "
                              "for the current code.")

    # ---- queries the renderers and tests use
    def module_status(self, name: str) -> str:
        """"live": every parameter under it trains; "dead": none gets a gradient; "noopt": all get one but
        some sit in no optimizer; "mixed"; "empty"."""
        sts = [self.params[p].status for p in self.params_under(name)]
        if not sts:
            return "empty"
        flowing = [s for s in sts if s in FLOWING]
        if len(flowing) == len(sts):
            return "live" if "no-optimizer" not in flowing else "noopt"
        return "dead" if not flowing else "mixed"

    def params_under(self, name: str) -> list[str]:
        mod = self.modules.get(name)
        if mod is None:
            return []
        out = list(mod.params)
        for child in mod.children:
            out += self.params_under(child)
        return out

    def index(self) -> dict:
        """Element id -> what a click opens and what the details panel shows (JSON for the pictures)."""
        out: dict[str, dict] = {}
        for p in self.params.values():
            cut = self.cuts.get(p.cut) if p.cut else None
            out[p.id] = {"kind": "param", "name": p.name, "status": p.status, "label": STATUS_LABEL[p.status],
                         "norm": p.norm, "shape": p.shape, "path": p.path, "line": p.line,
                         "cut": f"{cut.op} (line {cut.line})" if cut else None, "why": p.why}
        for c in self.cuts.values():
            out[c.id] = {"kind": "cut", "name": c.op, "path": c.path, "line": c.line, "reason": c.reason,
                         "params": [self.params[p].name for p in c.params]}
        for m in self.modules.values():
            if m.name:
                first = [self.params[p] for p in self.params_under(m.name) if self.params[p].line]
                out[m.id] = {"kind": "module", "name": m.name, "status": self.module_status(m.name),
                             "path": first[0].path if first else None, "line": first[0].line if first else None}
        if self.loss:
            out["gt-loss"] = {"kind": "loss", "name": self.loss.get("label", "loss"), "path": self.loss.get("path"),
                              "line": self.loss.get("line")}
        return out

    def to_json(self) -> dict:
        return {"source": self.source, "title": self.title, "summary": self.summary, "path": self.path,
                "notes": self.notes, "stale": self.stale, "index": self.index(),
                "params": [vars(p) for p in self.params.values()],
                "cuts": [vars(c) for c in self.cuts.values()],
                "edges": [vars(e) for e in self.edges]}


def _module_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _ensure_module(gm: GradMap, name: str) -> Module:
    mod = gm.modules.get(name)
    if mod is not None:
        return mod
    mod = gm.modules[name] = Module(id=f"gt-mod-{len(gm.modules)}", name=name)
    if name:
        parent = _ensure_module(gm, _module_of(name))
        parent.children.append(name)
    return mod


def _status(p: dict) -> str:
    grad = p.get("grad") or "none"
    if grad == "ok" and p.get("in_optimizer") is False:
        return "no-optimizer"
    return grad if grad in STATUSES else "none"


def _cut_key(path, line, op) -> tuple:
    return (os.path.abspath(path) if path else None, line, op)


def _add_param(gm: GradMap, name: str, status: str, **kw) -> Param:
    module = _module_of(name)
    _ensure_module(gm, module)
    param = Param(id=f"gt-param-{len(gm.params)}", name=name, module=module, status=status, **kw)
    gm.params[param.id] = param
    gm.modules[module].params.append(param.id)
    return param


def _add_cut(gm: GradMap, cuts_by_key: dict, path, line, op, reason) -> Cut:
    key = _cut_key(path, line, op)
    cut = cuts_by_key.get(key)
    if cut is None:
        cut = Cut(id=f"gt-cut-{len(gm.cuts)}", op=op, line=line, path=path, reason=reason or "")
        gm.cuts[cut.id] = cut
        cuts_by_key[key] = cut
    return cut


def _summary(gm: GradMap) -> str:
    counts: dict[str, int] = {}
    for p in gm.params.values():
        counts[p.status] = counts.get(p.status, 0) + 1
    total = len(gm.params)
    if gm.source == "static":
        if not total:
            return "static analysis found no loss that trains anything"
        lost = total - counts.get("reached", 0)
        verb = "loses its" if lost == 1 else "lose their"
        cuts = f"{len(gm.cuts)} cut" + ("" if len(gm.cuts) == 1 else "s")
        return (f"static analysis: the loss reaches {counts.get('reached', 0)} of {total} modules"
                + (f"; {lost} {verb} gradient at {cuts}" if lost else ""))
    bad = [f"{counts[k]} {STATUS_LABEL[k]}" for k in ("none", "zero", "nonfinite", "no-optimizer") if counts.get(k)]
    if not total:
        return "the probe found no parameters"
    if not bad:
        return f"all {total} parameters get a gradient"
    return f"{', '.join(bad)} — of {total} parameters"


# ---------------------------------------------------------------------------------------------------------------
# From a probe result


def from_probe(result: dict) -> GradMap:
    path = result.get("path")
    base = os.path.basename(path) if path else "?"
    mode = result.get("mode") or ""
    gm = GradMap(source="probe", title=f"{base} — gradient map (probe, {mode or 'run'})", summary="", path=path)
    if result.get("status") not in (None, "ok"):
        err = result.get("error") or {}
        gm.notes.append(f"probe {result.get('status')}: {err.get('type', '')} {err.get('message', '')}".strip())
    by_name: dict[str, Param] = {}
    cuts_by_key: dict[tuple, Cut] = {}
    for p in result.get("parameters") or []:
        name = p.get("name") or "?"
        where = p.get("defined_at") or {}
        param = _add_param(gm, name, _status(p), norm=p.get("norm"), shape=p.get("shape"),
                           path=where.get("path"), line=where.get("line"), why=p.get("why"))
        by_name[name] = param
        cut = p.get("cut")
        if cut and param.status != "ok":
            c = _add_cut(gm, cuts_by_key, cut.get("path"), cut.get("line"), cut.get("op") or "cut", cut.get("reason"))
            c.op_line = cut.get("op_line") or c.op_line
            c.params.append(param.id)
            param.cut = c.id
    sites = result.get("backward_sites") or []
    flow = result.get("flow") or []
    if flow and flow[-1].get("line"):  # where the loss is computed (its last recorded op)
        gm.loss = {"path": flow[-1].get("path") or path, "line": flow[-1]["line"],
                   "label": f"loss · line {flow[-1]['line']}"}
    elif sites and sites[0] and sites[0].get("line"):  # else where it is differentiated
        gm.loss = {"path": sites[0].get("path") or path, "line": sites[0]["line"],
                   "label": f"backward · line {sites[0]['line']}"}
    else:
        gm.loss = {"path": path, "line": None, "label": "loss"}
    if flow:
        _edges_from_flow(gm, flow, by_name, cuts_by_key)
    # Cuts and dead modules the data flow does not show (a value that left the graph through .item()/.numpy()
    # never reaches the loss's ancestry), and every module when there is no flow at all (TensorFlow).
    _edges_to_loss(gm, flow_known=bool(flow))
    gm.summary = _summary(gm)
    return gm


def _edges_from_flow(gm: GradMap, flow: list[dict], by_name: dict[str, Param], cuts_by_key: dict) -> None:
    node_of: list[str | None] = []  # flow entry -> graph node (module name, cut id or "loss")
    emit: list[set] = []  # flow entry -> graph nodes its output comes from
    edges: dict[tuple, Edge] = {}
    last = len(flow) - 1
    for i, e in enumerate(flow):
        mods = list(dict.fromkeys(by_name[n].module or by_name[n].id for n in e.get("params") or [] if n in by_name))
        node: str | None = None
        cut_node: str | None = None
        if e.get("cut"):
            line, op = e.get("line"), e.get("op") or "cut"
            opname = op.strip("_") if op.startswith("__") else op
            cut = cuts_by_key.get(_cut_key(e.get("path"), line, opname))
            if cut is None:  # reported at another line (the no_grad site) or under another name: match by line
                cut = next((c for c in gm.cuts.values() if line in (c.line, c.op_line)), None)
            if cut is None:
                cut = _add_cut(gm, cuts_by_key, e.get("path"), line, opname, e.get("cut"))
            cut_node = cut.id
        if mods:
            node = mods[0]
        elif cut_node:
            node = cut_node
        elif i == last:
            node = "loss"
        ups: set = set()
        for j in e.get("inputs") or []:
            if 0 <= j < i:
                ups |= emit[j]
        targets = mods or ([node] if node else [])
        for t in targets:
            for u in ups:
                if u != t and (u, t) not in edges:
                    edges[(u, t)] = Edge(u, t, live=False)
        out = set(targets) if targets else ups
        if cut_node and mods:  # the op that used the parameters also cut (it ran under no_grad)
            for t in mods:
                edges.setdefault((t, cut_node), Edge(t, cut_node, live=False))
            out = {cut_node}
        node_of.append(node)
        emit.append(out)
    gm.edges.extend(edges.values())
    _mark_edges(gm)


def _node_live(gm: GradMap, node: str) -> bool:
    if node == "loss":
        return True
    if node in gm.cuts:
        return False
    if node in gm.params:
        return gm.params[node].status in FLOWING
    return gm.module_status(node) in ("live", "mixed", "noopt")


def _mark_edges(gm: GradMap) -> None:
    for e in gm.edges:
        e.live = _node_live(gm, e.src) and e.src not in gm.cuts
        e.severed = e.src in gm.cuts


def _edges_to_loss(gm: GradMap, flow_known: bool) -> None:
    has_out = {e.src for e in gm.edges}
    for cut in gm.cuts.values():
        if cut.id in has_out:
            continue
        # draw it on the way from the modules it cuts to the loss
        for mod in dict.fromkeys(p if gm.source == "static" else gm.params[p].module or p for p in cut.params):
            if not any(e.src == mod and e.dst == cut.id for e in gm.edges):
                gm.edges.append(Edge(mod, cut.id, live=False))
        gm.edges.append(Edge(cut.id, "loss", live=False, severed=True))
        has_out.add(cut.id)
    has_out = {e.src for e in gm.edges}
    if not flow_known:  # every module that gets a gradient straight to the loss
        for m in gm.modules.values():
            for node in m.params if not m.name else ([m.name] if m.params else []):
                if node not in has_out and _node_live(gm, node):
                    gm.edges.append(Edge(node, "loss", live=True))
        return
    dst = {e.dst for e in gm.edges}
    if "loss" not in dst:  # the data flow ends in a module (the loss op itself used no recorded tensor)
        for s in {e.src for e in gm.edges} - dst - set(gm.cuts):
            gm.edges.append(Edge(s, "loss", live=_node_live(gm, s)))


# ---------------------------------------------------------------------------------------------------------------
# From the gradient lens (static analysis)


def from_lens(sinks: list, path: str | None) -> GradMap:
    """The modules the file's losses reach, those they do not, and the cut that removed each (`SinkLens`es of
    `analysis.lens`: what the code lens above each loss says)."""
    base = os.path.basename(path) if path else "?"
    gm = GradMap(source="static", title=f"{base} — gradient map (static analysis only: no probe result)",
                 summary="", path=path)
    gm.notes.append("Map from static analysis: the modules each loss reaches or not, by module. Run “gradtrace: "
                    "Probe Gradients” (or `gradtrace probe FILE --graph`) for every parameter and its gradient.")
    reached = sorted({name for sink in sinks for name in sink.reached})
    unreached: dict = {}
    defined: dict = {}
    for sink in sinks:
        defined.update({k: v for k, v in sink.defined.items() if k not in defined})
        for name, cut in sink.unreached:
            if name not in reached and unreached.get(name) is None:
                unreached[name] = cut
    cuts_by_key: dict[tuple, Cut] = {}
    for name in reached + sorted(unreached):
        where = defined.get(name) or [path, None]
        param = _add_param(gm, name, "reached" if name in reached else "unknown", path=where[0], line=where[1])
        cut = unreached.get(name)
        if cut is not None:
            c = _add_cut(gm, cuts_by_key, cut.path, cut.line, cut.op, f"{cut.op} on line {cut.line} cuts {name} "
                         "from the loss")
            c.params.append(param.id)
            param.cut = c.id
        elif name in reached:
            gm.edges.append(Edge(param.id, "loss", live=True))
    lines = [sink.line for sink in sinks]
    label = "loss" if not lines else f"loss · line {lines[0]}" if len(lines) == 1 else \
        "losses · lines " + ", ".join(map(str, lines))
    gm.loss = {"path": path, "line": lines[0] if lines else None, "label": label}
    _edges_to_loss(gm, flow_known=True)
    gm.summary = _summary(gm)
    return gm
