"""The PyTorch probe: runs the user's script (or builds its modules), intercepts each backward, classifies every
parameter's gradient and links each dead one to the operation that cut it."""

from __future__ import annotations

import ast
import linecache
import re

from ..locate import loc, names_in_frames
from ..script import ScriptProbe, Stop, has_training_step
from . import modules, patches, terms
from .lineage import Lineage
from .optim import OptimizerBook
from .params import ParamTable, typo_entries
from .recorder import Sightings, Tape

# `.backward()` or `.grad` asked of a plain Python or NumPy value (a float, a NumPy scalar, a list, None)
HOST_VALUE_HAS_NO_GRAPH = (r"'(float|int|bool|complex|list|tuple|dict|NoneType|numpy\.\w+)' object has no attribute "
                           r"'(backward|grad)'")


class TorchProbe(ScriptProbe):
    framework = "torch"

    def __init__(self, path: str, source: str, req: dict):
        import torch

        super().__init__(path, source, req)
        self.torch = torch
        self.seen = Sightings()
        self.tape = Tape(torch, self.loc, self.seen, lambda: self.step)
        self.lineage = Lineage(torch, self.tape, self.seen, self.loc)
        self.params = ParamTable(torch, self.tape)
        self.optimizers = OptimizerBook()
        self.paused = False  # recording paused inside an optimizer step
        self.graph: list[dict] = []
        self.flow: list[dict] = []
        self.dead_terms: list[dict] = []
        self.orig_grad = torch.autograd.grad  # before the patch: summands are differentiated with it

    # ---- interception
    def on_backward(self, orig, tensors, grad_tensors, retain_graph, create_graph, inputs):
        if not self.recording:
            return orig(tensors, grad_tensors, retain_graph, create_graph, inputs=inputs)
        self.recording = False
        torch = self.torch
        self.step += 1
        path, line = self.loc.where(3)
        self.backward_sites.append((path, line))
        self.collect(self.loc.user_frames(3))
        roots = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)  # a generator is read once
        if self.step == 1 and len(roots) == 1:
            self.find_dead_terms(roots[0])
        stash = {}
        for pid, p in self.params.objs.items():
            if p.is_leaf:
                stash[pid] = p.grad
                if p.grad is not None:
                    p.grad = None
        err = None
        try:
            r = orig(tensors if isinstance(tensors, torch.Tensor) else roots, grad_tensors, retain_graph,
                     create_graph, inputs=inputs)
        except RuntimeError as exc:
            err = exc
            r = None
        with torch.no_grad():
            for pid, p in self.params.objs.items():
                rec = self.params.records[pid]
                if rec.kind == "nonleaf":
                    rec.statuses.append("none")
                    continue
                new = p.grad
                old = stash.get(pid)
                if err is None:
                    rec.statuses.append(self.classify(new))
                    rec.norm = float(new.float().norm()) if new is not None and new.numel() else None
                if old is not None:
                    if new is not None and new is not old:
                        old.add_(new)
                    p.grad = old
        self.tape.sums.clear()
        if err is None:
            try:
                self.analyse_step(roots)
            except Exception as exc:  # noqa: BLE001 - analysis must never break the user's code
                self.notes.append(f"analysis failed at step {self.step}: {type(exc).__name__}: {exc}")
        else:
            self.fail_step(err, roots, path, line, "backward()")
        self.stop_when_steps_spent("backward()")
        self.recording = True
        return r

    def on_grad(self, orig, outputs, inputs, a, k):
        if not self.recording:
            return orig(outputs, inputs, *a, **k)
        if k.get("create_graph", a[2] if len(a) > 2 else False):
            # a derivative that is part of the loss (PINN residuals, gradient penalties, MAML inner steps):
            # the training step is the backward that follows
            return orig(outputs, inputs, *a, **k)
        torch = self.torch
        self.recording = False
        self.step += 1
        path, line = self.loc.where(3)
        self.backward_sites.append((path, line))
        frames = self.loc.user_frames(3)
        self.collect(frames)
        # every form torch takes: a tensor, or any iterable of them (a generator such as net.parameters(), a list,
        # a tuple, dict.values()...); read once here and handed on as a tuple
        single = isinstance(inputs, torch.Tensor) or type(inputs).__name__ == "GradientEdge"
        ins = [inputs] if single else list(inputs)
        roots = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        names = names_in_frames(frames, ins)
        for i, t in enumerate(ins):
            if isinstance(t, torch.Tensor) and id(t) not in self.params:
                self.params.add(names.get(id(t)) or f"inputs[{i}]", t, registered=None)
        try:
            res = orig(outputs if isinstance(outputs, torch.Tensor) else roots, inputs if single else tuple(ins),
                       *a, **k)
        except RuntimeError as exc:
            self.fail_step(exc, roots, path, line, "torch.autograd.grad")
        self.tape.sums.clear()
        got = {id(t): g for t, g in zip(ins, res)}
        with torch.no_grad():
            for pid in self.params.objs:
                if pid in got:
                    rec = self.params.records[pid]
                    g = got[pid]
                    rec.statuses.append(self.classify(g))
                    rec.norm = float(g.float().norm()) if g is not None and g.numel() else None
        self.analyse_step(roots, only=set(got))
        self.stop_when_steps_spent("torch.autograd.grad()")
        self.recording = True
        return res

    def fail_step(self, exc, roots, path, line, call) -> None:
        self.error = self.lineage.explain_backward_error(exc, roots, path, line, self.step, self.optimizers.steps,
                                                         self.params)
        self.stop_reason = f"{call} at line {line} raised"
        raise Stop() from None

    def collect(self, frames) -> None:
        self.params.collect(frames)
        self.params.add_made_in_forward(self.seen.forward_params)

    def find_dead_terms(self, root) -> None:
        orig_grad = self.orig_grad

        def differentiate(term, trainable):
            return orig_grad(term, trainable, retain_graph=True, allow_unused=True)

        try:
            self.dead_terms = terms.dead_terms(self, root, differentiate)
        except Exception as exc:  # noqa: BLE001 - analysis must never break the user's code
            self.notes.append(f"loss terms not analysed: {type(exc).__name__}: {exc}")

    def classify(self, g) -> str:
        torch = self.torch
        if g is None:
            return "none"
        if g.is_sparse:
            g = g.coalesce().values()
        if not bool(torch.isfinite(g).all()):
            return "nonfinite"
        if not bool((g != 0).any()):
            return "zero"
        return "ok"

    def note_nonleaf_optimized(self, params) -> None:
        """Before an optimizer rejects a non-leaf tensor: remember the op that made it (its user line)."""
        tensors = []
        for item in params:
            if isinstance(item, dict):
                group = item.get("params")
                tensors.extend(group if isinstance(group, (list, tuple)) else [group])
            else:
                tensors.append(item)
        for t in tensors:
            if isinstance(t, self.torch.Tensor) and not t.is_leaf:
                tag = self.tape.tags.get(id(t))
                if tag is not None and tag[0]() is t and tag[1] >= 0:
                    op = self.tape.ops[tag[1]]
                    path, line = op.where
                    if path:
                        self.seen.nonleaf_optimized = (path, line, op.name)
                        return

    # ---- analysis
    def analyse_step(self, roots, only=None) -> None:
        anc = self.lineage.ancestry(roots)
        names = self.params.names_by_leaf()
        self.graph = self.lineage.graph_of(names, anc)
        self.flow = self.lineage.flow_of(names, anc)
        flags = len(self.seen.module_flags)
        for pid, rec in self.params.items():
            if only is not None and pid not in only:
                continue
            st = rec.statuses[-1] if rec.statuses else None
            if st is None or st == "ok" or rec.kind == "nonleaf" or "ok" in rec.statuses:
                continue
            if rec.cut is not None and rec.cut_status == st and rec.cut_flags == flags:
                continue
            rec.cut, rec.why = self.lineage.find_cut(self.params.objs[pid], st, anc)
            rec.cut_status = st
            rec.cut_flags = flags

    def explain_script_error(self, exc, path, line) -> None:
        text = str(exc)
        if isinstance(exc, AttributeError) and re.match(HOST_VALUE_HAS_NO_GRAPH, text):
            cut = self.lineage.last_escape()
            if cut is not None:
                self.error["raised_at"] = loc(path, line)
                self.error.update(path=cut.path, line=cut.line)
                self.error["cause"] = (f"line {cut.line}: {cut.cut}; what reached `.backward()` is a plain Python "
                                       "value built from it: keep the tensor (sum the tensors, then call backward)")
        if isinstance(exc, AttributeError) and text.startswith("'NoneType' object has no attribute"):
            self.explain_missing_grad(exc, path, line)
        site = self.seen.nonleaf_optimized
        if "can't optimize a non-leaf Tensor" in text and site is not None:
            self.error["raised_at"] = loc(path, line)
            self.error.update(path=site[0], line=site[1])
            self.error["cause"] = (f"`.{site[2]}()` at line {site[1]} returns a new tensor computed from the one "
                                   "created with requires_grad=True, so what the optimizer is given is not a "
                                   "leaf; create it with its final device/dtype/shape, then call .requires_grad_()")
        if "optimizer got an empty parameter list" in text:
            try:
                built = modules.layers_built_in_forward(ast.parse(self.source, self.path))
            except SyntaxError:
                built = []
            if built:
                first_line, layer = built[0]
                self.error["raised_at"] = loc(path, line)
                self.error.update(path=self.path, line=first_line)
                self.error["cause"] = (f"`{layer}(...)` is built inside forward(), so the model registers no "
                                       "parameters and the optimizer gets none: build the layers in __init__")
            kept = [] if built else modules.unregistered_containers(self.torch, exc.__traceback__, self.path)
            if kept:
                first_line, cls, attr = kept[0]
                self.error["raised_at"] = loc(path, line)
                self.error.update(path=self.path, line=first_line)
                self.error["cause"] = (f"`{cls}.{attr}` is a plain Python list or dict of layers: nn.Module registers "
                                       "none of them, so the optimizer gets no parameters; use nn.ModuleList / "
                                       "nn.ModuleDict")
        if "leaf Variable that requires grad is being used in an in-place" in text:
            self.error["cause"] = ("an in-place operation on a leaf tensor that requires grad; do the update "
                                   "under `with torch.no_grad():` or use an out-of-place op")
        site = self.seen.last_inference_site
        if "Inference tensor" in text and site is not None and site.path:
            self.error["raised_at"] = loc(path, line)
            self.error.update(path=site.path, line=site.line)
            self.error["cause"] = (f"a tensor created under torch.inference_mode() (line {site.line}) is used "
                                   "in a computation that autograd records; use torch.no_grad() there, or "
                                   ".clone() the tensor outside the block")

    def explain_missing_grad(self, exc, path, line) -> None:
        """`w.grad.zero_()` raising because `w.grad` is None: when `w` now holds a tensor an operation made
        without gradient (`w = w - lr * w.grad` under no_grad), blame that operation's line."""
        frame = None
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_lineno == line and tb.tb_frame.f_code.co_filename == path:
                frame = tb.tb_frame
            tb = tb.tb_next
        if frame is None:
            return
        match = re.search(r"\b([A-Za-z_]\w*)\.grad\b", linecache.getline(path, line))
        tensor = frame.f_locals.get(match.group(1)) if match else None
        if tensor is None or not isinstance(tensor, self.torch.Tensor) or tensor.requires_grad:
            return
        tag = self.tape.tag_of(tensor)
        op = self.tape.ops[tag] if isinstance(tag, int) and 0 <= tag < len(self.tape.ops) else None
        if op is None or not op.path or not op.line or (op.path, op.line) == (path, line):
            return
        name = match.group(1)
        self.error["raised_at"] = loc(path, line)
        self.error.update(path=op.path, line=op.line)
        self.error["cause"] = (f"line {op.line} rebinds `{name}` to a new tensor that does not require grad, so "
                               f"`{name}.grad` is None: update it in place under torch.no_grad() (`{name} -= ...`)")

    # ---- running
    def run(self) -> dict:
        patches.install(self)
        mode = self.req.get("mode") or "auto"
        try:
            tree = ast.parse(self.source, self.path)
        except SyntaxError as exc:
            return self.result("error", error={"type": "SyntaxError", "message": str(exc.msg),
                                                "path": self.path, "line": exc.lineno})
        has_step = has_training_step(tree)
        if mode == "auto":
            mode = "script" if has_step else "module"
            self.mode_reason = ("the file calls backward()/autograd.grad: ran it as __main__ up to that call"
                                if has_step else "the file has no backward() call: built its nn.Module classes "
                                "and differentiated a synthetic forward")
        else:
            self.mode_reason = f"{mode} mode requested"
        self.mode = mode
        recorder = self.tape.mode(lambda: self.recording)
        recorder.__enter__()
        try:
            if mode == "script":
                outcome = self.run_script()
                if outcome == "no-backward":
                    if modules.module_classes(tree):
                        self.mode = "module"
                        self.mode_reason = ("the script ran to the end without calling backward(): built its "
                                            "nn.Module classes and differentiated a synthetic forward instead")
                        self.params.clear()
                        self.step = 0
                        self.error = None
                        return modules.run_modules(self, tree)
                    return self.result("unsupported", error={
                        "type": "NoBackward", "message": "the script ran to the end without calling backward(), "
                        "torch.autograd.grad or tape.gradient, and defines no nn.Module to build",
                        "path": self.path, "line": None})
                return self.finish()
            return modules.run_modules(self, tree)
        finally:
            self.recording = False
            try:
                recorder.__exit__(None, None, None)
            except Exception:  # noqa: BLE001
                pass

    def finish(self) -> dict:
        return self.result("ok", error=self.error)

    def result(self, status, error=None) -> dict:
        torch = self.torch
        held, opt_list = self.optimizers.summary()
        params = []
        done: set[int] = set()
        for pid, rec in self.params.items():
            if not rec.statuses or id(rec) in done:
                continue
            done.add(id(rec))
            grad = rec.grad()
            p = self.params.objs[pid]
            entry = {"name": rec.name, "shape": rec.shape, "grad": grad, "defined_at": rec.defined_at,
                     "cut": rec.cut if grad != "ok" else None, "requires_grad": bool(p.requires_grad),
                     "in_optimizer": (pid in held) if self.optimizers else None,
                     "registered": rec.registered, "why": rec.why if grad != "ok" else None,
                     "norm": rec.norm, "leaf": rec.kind == "leaf",
                     "parameter": isinstance(p, torch.nn.Parameter) or rec.registered is not None,
                     "made_in_forward": rec.made_in_forward}
            if self.optimizers:
                entry["optimizers"] = [i for i, o in enumerate(opt_list) if pid in set(o["ids"])]
            params.append(entry)
        params.extend(typo_entries(self.seen.typos, set(self.params.objs), {e["name"] for e in params}))
        names = {pid: rec.name for pid, rec in self.params.items()}
        optimizers = [{"class": o["class"], "path": o["path"], "line": o["line"],
                       "params": [names[i] for i in o["ids"] if i in names][:256],
                       "n_params": len(o["ids"])} for o in opt_list]
        return {"status": status, "framework": "torch", "mode": self.mode, "mode_reason": self.mode_reason,
                "stop_reason": self.stop_reason, "steps": self.step, "parameters": params,
                "optimizers": optimizers, "error": error, "ops": self.graph, "notes": self.notes,
                "flow": self.flow, "backward_sites": self.backward_site_list(), "dead_terms": self.dead_terms,
                "ops_recorded": len(self.tape.ops), "path": self.path}
