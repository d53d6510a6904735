"""Turn the runner's raw facts into the probe JSON of DESIGN §3, with GT9xx findings."""

from __future__ import annotations

import os
from collections import OrderedDict

from gradtrace.findings import Finding, Related
from gradtrace.guarded_files import read_text
from gradtrace.probe.runtime.script import detect_framework
from gradtrace.terminal import printable

__all__ = ["build_result", "detect_framework", "format_text"]

DEAD = {"none": "GT901", "zero": "GT902", "nonfinite": "GT903"}
DEAD_TERM = "GT907"
WHAT = {"none": "get no gradient (grad is None)", "zero": "get an all-zero gradient",
        "nonfinite": "get a non-finite gradient (NaN/Inf)"}
WHAT_ONE = {"none": "gets no gradient (grad is None)", "zero": "gets an all-zero gradient",
            "nonfinite": "gets a non-finite gradient (NaN/Inf)"}


class _Lines:
    def __init__(self):
        self.cache: dict[str, list[str]] = {}

    def span(self, path: str, line: int) -> tuple[int, int]:
        lines = self.cache.get(path)
        if lines is None:
            try:
                lines = read_text(path).splitlines()
            except (OSError, UnicodeDecodeError):
                lines = []
            self.cache[path] = lines
        if 1 <= line <= len(lines):
            text = lines[line - 1]
            start = len(text) - len(text.lstrip()) + 1
            return start, max(start, len(text.rstrip()) + 1)
        return 1, 1


def _names(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    if len(names) > limit:
        shown += f" and {len(names) - limit} more"
    return shown


def _finding(lines: _Lines, path: str, line: int, code: str, severity: str, message: str,
             related: list[Related] | None = None, data: dict | None = None) -> Finding:
    col, end = lines.span(path, line)
    return Finding(path=path, line=line, column=col, end_line=line, end_column=end, code=code, severity=severity,
                   message=message, related=related or [], data=data or {})


def _related(lines: _Lines, loc: dict | None, message: str) -> list[Related]:
    if not loc or not loc.get("path") or not loc.get("line"):
        return []
    col, end = lines.span(loc["path"], loc["line"])
    return [Related(loc["path"], loc["line"], col, loc["line"], end, message)]


def build_result(raw: dict, path: str, framework: str | None, isolation: list[str], notice: str | None) -> dict:
    """The probe JSON from the child's raw result. The raw result comes from the probed process: its every field is
    checked (`_sane`) before use, and it has no say in `isolation`."""
    raw = _sane(raw)
    lines = _Lines()
    params = raw.get("parameters") or []
    error = raw.get("error")
    findings: list[Finding] = []
    have_opt = bool(raw.get("optimizers"))

    # dead parameters, grouped by where they are defined and what cut them
    groups: OrderedDict = OrderedDict()
    for p in params:
        grad = p.get("grad")
        if grad not in DEAD:
            continue
        if p.get("why") == "frozen" and not p.get("in_optimizer"):
            continue  # frozen on purpose: nothing asks it to train
        # In no optimizer while the script built some: a target network, an EMA copy, a teacher, an input
        # differentiated on purpose. Reported, but as information: nothing asks it to train.
        quiet = have_opt and p.get("in_optimizer") is False
        key = (grad, (p.get("defined_at") or {}).get("path"), (p.get("defined_at") or {}).get("line"),
               _cut_key(p.get("cut")), p.get("why"), quiet)
        groups.setdefault(key, []).append(p)
    cut_groups: OrderedDict = OrderedDict()
    for (grad, dpath, dline, _ck, why, quiet), members in groups.items():
        names = [m["name"] for m in members]
        cut = members[0].get("cut")
        verb = WHAT[grad] if len(names) > 1 else WHAT_ONE[grad]
        if cut:
            msg = f"{_names(names)} {verb}: {cut.get('reason')} (line {cut.get('line')})"
        elif why == "unused":
            msg = f"{_names(names)} {verb}: never used in the computation that reaches backward()"
        elif why == "off-path":
            msg = f"{_names(names)} {verb}: used, but nothing computed from it reaches the loss"
        elif why == "frozen":
            msg = f"{_names(names)} {verb}: requires_grad is False, yet an optimizer holds it"
        else:
            msg = f"{_names(names)} {verb}"
        if why == "frozen" and cut and cut.get("op") == "module.requires_grad = True":
            msg = f"{_names(names)} {verb}: {cut.get('reason')} (line {cut.get('line')})"
        elif why == "frozen" and cut:
            msg = f"{_names(names)} {verb}: requires_grad was set to False (line {cut.get('line')}), yet an " \
                  "optimizer holds it"
        where_path, where_line = dpath, dline
        if not where_path or not where_line:
            if cut and cut.get("path"):
                where_path, where_line = cut["path"], cut["line"]
            else:
                where_path, where_line = path, 1
        if quiet:
            msg += "; it is in no optimizer, so this may be intended (target network, frozen copy)"
        data = {"params": names, "grad": grad, "cut": cut, "source": "gradtrace probe"}
        severity = "information" if quiet else "warning"
        findings.append(_finding(lines, where_path, where_line, DEAD[grad], severity, msg,
                                 _related(lines, cut, f"cut here: {cut.get('reason')}" if cut else ""), data))
        if cut and cut.get("path") and cut.get("line"):
            ck = (cut["path"], cut["line"])
            cut_groups.setdefault(ck, {"cut": cut, "names": [], "defs": [], "quiet": True})
            cut_groups[ck]["quiet"] = cut_groups[ck]["quiet"] and quiet
            cut_groups[ck]["names"].extend(names)
            cut_groups[ck]["defs"].append({"path": where_path, "line": where_line})
    for (cpath, cline), g in cut_groups.items():
        cut = g["cut"]
        msg = f"this cuts the gradient of {_names(g['names'])}: {cut.get('reason')}"
        related = []
        for d in g["defs"][:8]:
            related += _related(lines, d, "parameter defined here")
        findings.append(_finding(lines, cpath, cline, "GT905", "information" if g["quiet"] else "warning", msg,
                                 related,
                                 {"params": g["names"], "op": cut.get("op"), "source": "gradtrace probe"}))

    findings += _made_in_forward(lines, path, params)
    findings += _never_updated(lines, params)
    findings += _dead_terms(lines, raw.get("dead_terms") or [])

    # gradients that no optimizer will ever apply
    if have_opt:
        idle: OrderedDict = OrderedDict()
        for p in params:
            if p.get("grad") == "ok" and p.get("in_optimizer") is False and p.get("requires_grad", True) \
                    and p.get("parameter", True) and not p.get("made_in_forward") and not p.get("update_site"):
                d = p.get("defined_at") or {}
                idle.setdefault((d.get("path"), d.get("line"), p.get("registered")), []).append(p["name"])
        opts = raw.get("optimizers") or []
        opt_lines = ", ".join(str(o.get("line")) for o in opts if o.get("line"))
        for (dpath, dline, registered), names in idle.items():
            if registered is False:
                msg = (f"{_names(names)} get gradients but are not registered (kept in a plain Python list, dict or "
                       "attribute), so .parameters() and every optimizer miss them: use nn.ModuleList/"
                       "nn.ModuleDict/nn.ParameterList or nn.Parameter")
            else:
                msg = (f"{_names(names)} get gradients but are in no optimizer"
                       + (f" (optimizers built at line {opt_lines})" if opt_lines else "") + ": they never train")
            related = [r for o in opts for r in _related(lines, o, f"{o.get('class')} built here")]
            where = (dpath or path, dline or 1)
            if registered is not False and len(opts) == 1 and opts[0].get("line"):
                # the one optimizer was built without them: that is the line to change
                where = (opts[0].get("path") or path, opts[0]["line"])
                related = _related(lines, {"path": dpath, "line": dline}, "parameters defined here")
                msg = f"{_names(names)} get gradients but are not in this {opts[0].get('class')}: they never train"
            findings.append(_finding(lines, where[0], where[1], "GT904", "warning", msg, related,
                                     {"params": names, "source": "gradtrace probe"}))
        seen: dict[frozenset, dict] = {}
        for o in opts:
            key = frozenset(o.get("params") or [])
            if key and key in seen and o.get("line") and any(
                    p.get("in_optimizer") is False and p.get("grad") == "ok" for p in params):
                first = seen[key]
                findings.append(_finding(lines, o.get("path") or path, o["line"], "GT904", "warning",
                                         f"this {o.get('class')} holds exactly the parameters of the optimizer at "
                                         f"line {first.get('line')}; parameters that get gradients are in no "
                                         "optimizer (wrong .parameters() passed?)",
                                         _related(lines, first, "the other optimizer"),
                                         {"source": "gradtrace probe"}))
            seen.setdefault(key, o)

    # the run ended in an error
    if error and error.get("path") and error.get("line") and error.get("type") not in ("Timeout", "Unsupported"):
        text = (error.get("message") or "").split(" Hint:")[0]
        raised = error.get("raised_at")
        where = f" at line {raised['line']}" if raised and raised.get("line") != error.get("line") else ""
        msg = f"{error.get('type')}{where}: {text}"
        if error.get("cause"):
            msg = f"{error['cause'][0].upper()}{error['cause'][1:]} ({msg})"
        rel = _related(lines, raised, "raised here") if raised and raised.get("line") != error.get("line") else []
        findings.append(_finding(lines, error["path"], error["line"], "GT906", "error", msg, rel,
                                 {"source": "gradtrace probe"}))

    status = raw.get("status") or "error"
    if status == "ok" and error:
        status = "error"
    out = {
        "status": status,
        "framework": raw.get("framework") or framework,
        "isolation": list(isolation),
        "parameters": [_public_param(p) for p in params],
        "findings": [f.to_json() for f in sorted(findings, key=Finding.sort_key)],
        "error": _public_error(error),
        "path": path,
        "mode": raw.get("mode"),
        "mode_reason": raw.get("mode_reason"),
        "stop_reason": raw.get("stop_reason"),
        "steps": raw.get("steps"),
        "optimizers": raw.get("optimizers", []),
        "ops": raw.get("ops", []),
        "backward_sites": raw.get("backward_sites", []),
        "flow": raw.get("flow", []),  # the gradient map's data flow (runner.TorchProbe.flow_of)
        "notes": raw.get("notes", []),
        "dead_terms": raw.get("dead_terms", []),
        "elapsed_s": raw.get("elapsed_s"),
        "output": raw.get("output"),
    }
    if notice:
        out["isolation_notice"] = notice
    return out


RAW_LISTS = ("parameters", "optimizers", "ops", "backward_sites", "flow", "notes", "dead_terms")
PARAM_GRADS = {"ok", "none", "zero", "nonfinite"}


def _sane(raw) -> dict:
    """The raw result with every field of the wrong type dropped (a probed script can write anything there)."""
    if not isinstance(raw, dict):
        return {"status": "error", "error": {"type": "ProbeCrashed", "message": "the probe returned no result"}}
    out = {k: v for k, v in raw.items() if k not in RAW_LISTS and k != "error"}
    for key in RAW_LISTS:
        value = raw.get(key)
        out[key] = [x for x in value if isinstance(x, (dict, str))] if isinstance(value, list) else []
    out["parameters"] = [p for p in out["parameters"] if isinstance(p, dict) and isinstance(p.get("name"), str)
                         and p.get("grad") in PARAM_GRADS]
    for p in out["parameters"]:
        for key in ("defined_at", "cut", "made_in_forward", "update_site"):
            if not _location(p.get(key)):
                p[key] = None
    out["dead_terms"] = [t for t in out["dead_terms"] if isinstance(t, dict) and _location(t)
                         and (t.get("cut") is None or _location(t["cut"]))]
    out["optimizers"] = [o for o in out["optimizers"] if isinstance(o, dict)]
    error = raw.get("error")
    out["error"] = error if isinstance(error, dict) else None
    if out["error"] is not None:
        if not _location(out["error"], required=False):
            out["error"] = {**out["error"], "path": None, "line": None}
        for key in ("type", "message", "cause"):
            if key in out["error"] and not isinstance(out["error"][key], str):
                out["error"][key] = str(out["error"][key])
        if not _location(out["error"].get("raised_at")):
            out["error"].pop("raised_at", None)
    if out.get("status") not in ("ok", "error", "timeout", "unsupported"):
        out["status"] = "error"
    if not isinstance(out.get("output"), dict):
        out["output"] = None
    return out


def _location(loc, required: bool = True) -> bool:
    """A {"path": str, "line": int >= 1} (or, when not `required`, one without a path)."""
    if not isinstance(loc, dict):
        return False
    path, line = loc.get("path"), loc.get("line")
    if path is None and line is None and not required:
        return True
    return isinstance(path, str) and os.path.isabs(path) and isinstance(line, int) and not isinstance(line, bool) \
        and 1 <= line < 10_000_000


def _made_in_forward(lines: _Lines, path: str, params: list[dict]) -> list[Finding]:
    """Layers built inside a forward: fresh weights on every call, which no optimizer holds (GT904)."""
    groups: OrderedDict = OrderedDict()
    for p in params:
        where = p.get("made_in_forward")
        if where and p.get("in_optimizer") is not True:
            groups.setdefault((where["path"], where["line"]), (where, []))[1].append(p["name"])
    out = []
    for (wpath, wline), (where, names) in groups.items():
        cls, owner = where.get("cls") or "layer", where.get("owner") or "a module"
        msg = (f"{_names(names)} belong to a `{cls}` built inside `{owner}.forward()` (line {wline}): a new layer "
               "with fresh random weights on every call, which no optimizer holds, so it never trains: build it "
               "once in `__init__`")
        out.append(_finding(lines, wpath, wline, "GT904", "warning", msg, [],
                            {"params": names, "source": "gradtrace probe", "made_in_forward": True}))
    return out


def _never_updated(lines: _Lines, params: list[dict]) -> list[Finding]:
    """Leaves with a gradient whose every optimizer update was zero (an optax mask, a zero learning rate)."""
    groups: OrderedDict = OrderedDict()
    for p in params:
        site = p.get("update_site")
        if site and p.get("grad") == "ok":
            groups.setdefault((site["path"], site["line"]), []).append(p["name"])
    return [_finding(lines, spath, sline, "GT904", "warning",
                     f"{_names(names)} get gradients, but every update applied here is zero (a mask such as "
                     "optax.masked/set_to_zero, or a zero learning rate): they never train",
                     [], {"params": names, "source": "gradtrace probe"})
            for (spath, sline), names in groups.items()]


def _dead_terms(lines: _Lines, terms: list[dict]) -> list[Finding]:
    """Summands of the loss that no trainable parameter reaches (GT907)."""
    out = []
    for term in terms:
        cut = term.get("cut")
        what = "an all-zero gradient" if term.get("grad") == "zero" else "no gradient"
        msg = f"this term of the loss carries {what} to any trainable parameter, so it does not train anything"
        if cut:
            msg += f": {cut.get('reason')} (line {cut.get('line')})"
        if term.get("params"):
            msg += f"; it was computed from {_names(term['params'])}"
        related = _related(lines, cut, "cut here") if cut and cut.get("line") != term.get("line") else []
        out.append(_finding(lines, term["path"], term["line"], DEAD_TERM, "warning", msg, related,
                            {"params": term.get("params") or [], "cut": cut, "source": "gradtrace probe"}))
    return out


def _cut_key(cut):
    return (cut.get("path"), cut.get("line"), cut.get("op")) if cut else None


def _public_param(p: dict) -> dict:
    keys = ("name", "shape", "grad", "defined_at", "cut", "in_optimizer", "requires_grad", "registered", "norm",
            "why", "leaf", "parameter", "made_in_forward", "update_site")
    return {k: p.get(k) for k in keys}


def _public_error(e):
    if not e:
        return None
    out = {"type": e.get("type"), "message": e.get("message"), "path": e.get("path"), "line": e.get("line")}
    for k in ("cause", "raised_at"):
        if e.get(k):
            out[k] = e[k]
    return out


def format_text(result: dict) -> str:
    out = []
    path = result.get("path") or ""
    rel = os.path.relpath(path) if path else ""
    out.append(f"probe {rel}: {result.get('status')} ({result.get('framework')}, {result.get('mode') or '-'} mode)")
    if result.get("mode_reason"):
        out.append(f"  mode: {result['mode_reason']}")
    if result.get("stop_reason"):
        out.append(f"  run: {result['stop_reason']}")
    out.append(f"  isolation: {', '.join(result.get('isolation') or []) or 'none'}")
    if result.get("isolation_notice"):
        out.append(f"  notice: {result['isolation_notice']}")
    err = result.get("error")
    if err:
        where = f" at line {err['line']}" if err.get("line") else ""
        out.append(f"  error{where}: {err.get('type')}: {err.get('message')}")
        if err.get("cause"):
            out.append(f"    cause: {err['cause']}")
    params = result.get("parameters") or []
    if params:
        width = min(48, max(len(p["name"]) for p in params))
        out.append("  parameters:")
        for p in params:
            extra = []
            if p.get("cut"):
                extra.append(f"cut at line {p['cut']['line']} ({p['cut']['op']})")
            elif p.get("why") and p.get("grad") != "ok":
                extra.append(p["why"])
            if p.get("in_optimizer") is False:
                extra.append("in no optimizer")
            if p.get("registered") is False:
                extra.append("not registered")
            out.append(f"    {p['name']:<{width}}  {p['grad']:<9} {'; '.join(extra)}".rstrip())
    for f in result.get("findings") or []:
        out.append(f"{os.path.relpath(f['path'])}:{f['line']}:{f['column']}: {f['code']} {f['message']}")
    return "\n".join(printable(line) for line in out)
