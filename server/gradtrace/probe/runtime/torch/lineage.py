"""From a dead parameter back to the operation that cut it, and from an autograd error to its cause."""

from __future__ import annotations

import re

from ..locate import loc
from .recorder import ESCAPES, NAN_OPS, REWRAP, SAMPLING_OPS, ZERO_GRAD_OPS, pretty

MAX_GRAPH = 1500  # operations reported in the "ops" list
# status -> (the operations that explain it, the reason, the `why`)
ON_PATH = {
    "nonfinite": (NAN_OPS, "`{op}` has an infinite or NaN derivative for some inputs, even elements masked out later "
                  "(torch.where/indexing still back-propagates 0 * inf = NaN): clamp or mask its input before the op",
                  "nonfinite-op"),
    "zero": (ZERO_GRAD_OPS | SAMPLING_OPS, "`{op}` has a zero derivative almost everywhere: no gradient flows back through it (use a "
             "straight-through estimator: x + (f(x) - x).detach())", "zero-op"),
}

SAMPLING_REASON = ("`{op}` draws a sample: its backward gives the tensors it was drawn from a zero gradient "
                   "(reparameterise: mu + std * torch.randn_like(std))")


def _listed(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class Lineage:
    def __init__(self, torch, tape, sightings, loc_):
        self.torch = torch
        self.tape = tape
        self.seen = sightings
        self.loc = loc_

    def ancestry(self, roots) -> set[int]:
        """The recorded operations the tensors `roots` were computed from."""
        ops = self.tape.ops
        stack = []
        for r in roots:
            tg = self.tape.tag_of(r) if isinstance(r, self.torch.Tensor) else None
            if tg is not None and tg >= 0:
                stack.append(tg)
        seen: set[int] = set()
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            for tg in ops[i].ins:
                if tg is not None and tg >= 0 and tg not in seen:
                    stack.append(tg)
        return seen

    def find_cut(self, p, status, anc):
        """(cut, why) for parameter `p` whose gradient was `status` in the step whose loss has ancestry `anc`."""
        seen = self.seen
        ops = self.tape.ops
        fr = seen.freezes.get(id(p))
        if not p.requires_grad:
            for placed, value in reversed(seen.module_flags):
                mod = placed.ref()
                if value and mod is not None and any(q is p for q in mod.parameters()):
                    since = f" (set to False at line {fr.line})" if fr is not None and fr.alive_is(p) else ""
                    return ({"path": placed.path, "line": placed.line, "op": "module.requires_grad = True",
                             "reason": "`requires_grad = True` on an nn.Module only sets a plain attribute: its "
                             f"parameters keep requires_grad=False{since}; call `.requires_grad_(True)`"}, "frozen")
            if fr is not None and fr.alive_is(p):
                return ({"path": fr.path, "line": fr.line, "op": "requires_grad = False",
                         "reason": "requires_grad was set to False here"}, "frozen")
            return None, "frozen"
        li = self.tape.leaf_index(p)
        if li is None:
            return None, "unused"
        bit = 1 << li
        if status in ON_PATH:
            names, reason, why = ON_PATH[status]
            op = self._first_on_path(anc, bit, names)
            if op is None:
                return None, status
            if op.name in SAMPLING_OPS:
                reason = SAMPLING_REASON
            return {"path": op.path, "line": op.line, "op": op.name, "reason": reason.format(op=op.name)}, why
        cands = [i for i in self.tape.cut_ops if ops[i].bits & bit]
        if not cands:
            used = any(op.bits & bit for op in ops[-50000:])
            return None, ("unused" if not used else "off-path")
        in_anc = [i for i in cands if i in anc]
        # this step's forward began with the first operation the loss descends from: a cut made before it (the
        # `.data` of an initialisation in `__init__`) is not what cut this step
        start = min(anc) if anc else 0
        recent = [i for i in cands if i >= start]
        if in_anc or recent:
            escapes = [i for i in recent if ops[i].name in ESCAPES or ops[i].site is not None]
            op = ops[(in_anc or escapes or recent)[0]]
        else:  # the cut came before the graph the loss descends from: the latest one (this step's forward)
            escapes = [i for i in cands if ops[i].name in ESCAPES or ops[i].site is not None]
            op = ops[(escapes or cands)[-1]]
        cut = {"path": op.path, "line": op.line, "op": pretty(op.name), "reason": op.cut}
        if op.site is not None and op.site.path:
            cut.update({"path": op.site.path, "line": op.site.line, "op": op.site.text, "op_path": op.path,
                        "op_line": op.line})
        return cut, "cut"

    def _first_on_path(self, anc, bit: int, names: set[str]):
        """The first operation of the loss's ancestry named in `names` that depends on leaf `bit`."""
        for i in sorted(anc):
            op = self.tape.ops[i]
            if op.name in names and op.bits & bit:
                return op
        return None

    def graph_of(self, names: dict[int, str], anc) -> list[dict]:
        """The operations of the loss's ancestry, one entry per line, for the gradient map."""
        out = []
        for i in sorted(anc)[-MAX_GRAPH:]:
            op = self.tape.ops[i]
            if op.path is None:
                continue
            ps = [n for li, n in names.items() if op.bits >> li & 1]
            out.append({"path": op.path, "line": op.line, "op": op.name, "cut": op.cut is not None,
                        "requires_grad": op.out_req, "params": ps[:64], "n_params": len(ps)})
        merged: list[dict] = []  # consecutive ops on the same line merged
        for e in out:
            if merged and merged[-1]["line"] == e["line"] and merged[-1]["path"] == e["path"]:
                m = merged[-1]
                m["ops"].append(e["op"])
                m["cut"] = m["cut"] or e["cut"]
                m["requires_grad"] = e["requires_grad"]
                if e["n_params"] > m["n_params"]:
                    m["params"], m["n_params"] = e["params"], e["n_params"]
            else:
                e = dict(e)
                e["ops"] = [e.pop("op")]
                merged.append(e)
        return merged

    def flow_of(self, names: dict[int, str], anc) -> list[dict]:
        """For the gradient map: the ops that use a parameter directly or cut the graph, and the loss, each
        linked to the earlier ones its inputs come from (ops in between are skipped, not lost)."""
        keep: dict[int, int] = {}  # op index -> position in `out`
        reach: dict[int, set] = {}  # skipped op index -> positions it depends on
        only_params: set[int] = set()  # positions of ops whose every input is a parameter (`self.w.T`)
        out: list[dict] = []
        last = max(anc) if anc else -1
        for i in sorted(anc):
            op = self.tape.ops[i]
            direct, src = [], set()
            for tg in op.ins:
                if tg is not None and tg < 0 and -1 - tg in names:
                    direct.append(names[-1 - tg])
                elif tg is not None and tg >= 0:
                    src |= {keep[tg]} if tg in keep else reach.get(tg, set())
            pure = src & only_params
            if pure and src - pure and not direct:
                direct = [n for j in sorted(pure) for n in out[j]["params"]]
                src -= pure
            if direct or op.cut is not None or i == last:
                if direct and all(tg is not None and tg < 0 for tg in op.ins):
                    only_params.add(len(out))
                keep[i] = len(out)
                out.append({"path": op.path, "line": op.line, "op": op.name, "params": list(dict.fromkeys(direct)),
                            "cut": op.cut, "inputs": sorted(src)})
            else:
                reach[i] = src
        return out if len(out) <= 4 * MAX_GRAPH else []

    def custom_backward_site(self, name: str):
        """(path, line) of the last `return` in the user's autograd.Function `name`'s backward."""
        import ast
        import inspect

        todo = list(self.torch.autograd.Function.__subclasses__())
        seen = set()
        while todo:
            cls = todo.pop()
            if cls in seen:
                continue
            seen.add(cls)
            todo.extend(cls.__subclasses__())
            backward = cls.__dict__.get("backward")
            func = getattr(backward, "__func__", backward)
            code = getattr(func, "__code__", None)
            if cls.__name__ != name or code is None or not self.loc.is_user(code):
                continue
            try:
                lines, first = inspect.getsourcelines(func)
                text = "".join(lines)
                tree = ast.parse(inspect.cleandoc(text) if lines[0].startswith((" ", "\t")) else text)
            except (OSError, TypeError, SyntaxError):
                return code.co_filename, code.co_firstlineno
            returns = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Return)]
            return code.co_filename, first + max(returns) - 1 if returns else code.co_firstlineno
        return None

    def last_escape(self):
        """The latest operation that turned a tensor into a Python or NumPy value (`.item()`, `float()`)."""
        for i in reversed(self.tape.cut_ops):
            op = self.tape.ops[i]
            if op.name in ESCAPES and op.path:
                return op
        return None

    def explain_backward_error(self, exc, roots, bpath, bline, step, opt_steps, params=None) -> dict:
        """The error of a failed backward, moved to the line that caused it when the tape shows which."""
        msg = str(exc).strip()
        first = msg.splitlines()[0] if msg else type(exc).__name__
        err = {"type": type(exc).__name__, "message": first, "path": bpath, "line": bline,
               "raised_at": loc(bpath, bline)}
        if "modified by an inplace operation" in msg:
            return self._explain_inplace(err, msg, opt_steps, params)
        m = re.search(r"function (\w+?)Backward returned (an incorrect number of gradients|a gradient different than "
                      r"None at position (\d+))", msg)
        if m:
            site = self.custom_backward_site(m.group(1))
            if site is not None:
                err.update(path=site[0], line=site[1])
                if m.group(3):
                    err["cause"] = (f"`{m.group(1)}.backward` returns a gradient at position {m.group(3)}, whose input "
                                    "of `forward` is not a tensor: return one gradient per input of `forward`, in "
                                    "order, with None for the non-tensor ones")
                else:
                    err["cause"] = (f"`{m.group(1)}.backward` returns a different number of gradients than `forward` "
                                    "takes inputs: return one per input, in order (None where there is none)")
            return err
        if "does not require grad" in msg or "does not have a grad_fn" in msg:
            return self._explain_no_grad(err, roots, step)
        if "backward through the graph a second time" in msg:
            for i in sorted(self.ancestry(roots)):
                op = self.tape.ops[i]
                if op.step == step - 1 and any(tg is not None and tg >= 0 and self.tape.ops[tg].step < op.step
                                               for tg in op.ins) and op.path:
                    err.update(path=op.path, line=op.line)
                    err["cause"] = (f"line {op.line} uses a tensor computed in an earlier step whose graph was "
                                    "already freed; detach carried state between steps (h = h.detach())")
                    break
        return err

    def _explain_inplace(self, err, msg, opt_steps, params) -> dict:
        m = re.search(r"\[torch\.\w+ \[([\d, ]*)\]\](?:, which is output (\d+) of (\w+),)? is at version "
                      r"(\d+); expected version (\d+)", msg)
        if not m:
            return err
        shape = [int(x) for x in m.group(1).split(",") if x.strip()]
        gf, now, expected = m.group(3), int(m.group(4)), int(m.group(5))
        stepped = self._stepped_parameters(shape, now, expected, opt_steps)
        if stepped is not None:
            last, changed = stepped
            names = [params.records[id(p)].name for p in changed if params is not None and id(p) in params.records]
            which = f" updated {_listed(names)} in place" if names else " updated the parameters in place"
            err.update(path=last.path, line=last.line)
            err["cause"] = (f"optimizer.step() at line {last.line}{which} after the forward that this backward() "
                            "belongs to: call backward() before step(), or recompute the forward after the step")
            if names:
                err["params"] = names
            return err
        best = None
        for rec in self.seen.inplace:
            if rec.shape != shape or not (rec.before <= expected < rec.after):
                continue
            if gf and rec.grad_fn and re.sub(r"Backward\d*$", "", rec.grad_fn) == re.sub(r"Backward\d*$", "", gf):
                best = rec
                break
            best = best or rec
        if best is not None and best.built is not None and best.built[0]:
            err.update(path=best.built[0], line=best.built[1])
            err["cause"] = (f"`nn.{best.layer}(inplace=True)` built at line {best.built[1]} (run at line {best.line}) "
                            f"modified a tensor ({gf or 'a saved input'}) that autograd saved for backward; use "
                            "inplace=False")
        elif best is not None and best.path:
            err.update(path=best.path, line=best.line)
            err["cause"] = (f"in-place `{best.name}` at line {best.line} modified a tensor "
                            f"({gf or 'a saved input'}) that autograd saved for backward; use the "
                            "out-of-place form")
        elif opt_steps and opt_steps[-1].path:
            last = opt_steps[-1]
            err.update(path=last.path, line=last.line)
            err["cause"] = (f"optimizer.step() at line {last.line} updated the parameters in place after "
                            "the forward that this backward() belongs to: call backward() before step(), "
                            "or recompute the forward after the step")
        return err

    @staticmethod
    def _stepped_parameters(shape, now, expected, opt_steps):
        """(the optimizer step, the parameters it changed) that explain a saved tensor of `shape` now at version
        `now` where autograd expected `expected`: the latest step that moved such a parameter past it."""
        for seen in reversed(opt_steps):
            if seen.optimizer is None or not seen.path:
                continue
            changed = [p for p in seen.optimizer.params()
                       if seen.versions.get(id(p), expected + 1) <= expected and p._version == now
                       and list(p.shape) in (shape, shape[::-1])]  # the parameter, or its transpose (`x @ w.t()`)
            if changed:
                return seen, changed
        return None

    def _explain_no_grad(self, err, roots, step) -> dict:
        ops = self.tape.ops
        seen = self.seen
        anc = self.ancestry(roots)
        for placed, attr in reversed(seen.typos):
            if placed.ref() is not None and placed.path:
                err.update(path=placed.path, line=placed.line)
                err["cause"] = (f"`.{attr} = ...` at line {placed.line} sets a new attribute, not requires_grad "
                                "(typo): the tensor never requires grad")
                return err
        cuts = sorted(i for i in self.tape.cut_ops if i in anc)
        if cuts:
            op = ops[cuts[0]]
            p, ln = op.where
            if p:
                err.update(path=p, line=ln)
                err["cause"] = f"line {op.line}: {op.cut}"
                return err
        recent = [i for i in self.tape.cut_ops if ops[i].step == step - 1
                  and (ops[i].name in ESCAPES or ops[i].name in REWRAP) and ops[i].path]
        if recent:
            op = ops[recent[-1]]
            err.update(path=op.path, line=op.line)
            err["cause"] = f"line {op.line}: {op.cut}; the value reaching backward() was rebuilt from it"
            return err
        for placed in seen.freezes.values():
            if placed.path:
                err.update(path=placed.path, line=placed.line)
                err["cause"] = f"requires_grad was set to False at line {placed.line}"
                return err
        if seen.grad_site is not None and seen.grad_site.path:
            err.update(path=seen.grad_site.path, line=seen.grad_site.line)
            err["cause"] = f"gradient recording was disabled at line {seen.grad_site.line} and never re-enabled"
            return err
        for t in roots:
            if not isinstance(t, self.torch.Tensor):
                continue
            tg = self.tape.tag_of(t)
            if tg is not None and tg >= 0 and ops[tg].path:
                err["cause"] = (f"the value passed to backward() was computed from tensors that do not "
                                f"require grad (created at line {ops[tg].line})")
        return err
