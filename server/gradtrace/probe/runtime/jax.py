"""The JAX probe: script mode, `jax.grad` and `jax.value_and_grad` intercepted, and `optax.apply_updates`.

Each gradient the script computes is looked at leaf by leaf: a pytree leaf whose gradient is float0 (an integer
input: no gradient at all), all zero, or not finite is named by its path (`params['dense']['w']`). The cut is then
located in the function's jaxpr, traced on the same arguments: the first `stop_gradient`, integer cast, argmax or
zero-derivative operation on the way from that leaf to the loss, at the user's line; a leaf the function never
reads while it reads the very same array from its enclosing scope is a closure. A leaf whose gradient is fine but
whose every optax update is zero (a mask, a zero learning rate) never trains either: it is reported as in no
optimizer. Compiled code runs eagerly under the probe (`jax_disable_jit`), so the gradients are concrete values.
"""

from __future__ import annotations

import ast
import re

from .locate import loc, names_in_frames
from .script import ScriptProbe, overall

CUTS = {"stop_gradient": "`jax.lax.stop_gradient` blocks the gradient here",
        "argmax": "argmax returns integer indices, which carry no gradient",
        "argmin": "argmin returns integer indices, which carry no gradient"}
ZERO = {"round", "floor", "ceil", "sign"}
COMPARE = {"lt", "le", "gt", "ge", "eq", "ne"}
CREATORS = ("array", "asarray", "zeros", "ones", "full", "arange", "eye", "zeros_like", "ones_like", "full_like")
MAX_CREATED = 10_000


def _is_int(dtype) -> bool:
    import numpy as np

    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_)


class JaxProbe(ScriptProbe):
    framework = "jax"

    def __init__(self, path: str, source: str, req: dict):
        super().__init__(path, source, req)
        import jax

        self.jax = jax
        self.params: dict[str, dict] = {}
        self.created: list[tuple] = []  # (integer array, path, line): where integer arrays were made
        self.calls: list[dict] = []  # each gradient call: its line, argnums, the names of its arguments

    # ---- patches
    def install(self) -> None:
        jax = self.jax
        jax.config.update("jax_disable_jit", True)
        probe = self
        for name in ("grad", "value_and_grad"):
            orig = getattr(jax, name)

            def make(fun, argnums=0, has_aux=False, *a, _orig=orig, _kind=name, **k):
                gf = _orig(fun, argnums, has_aux, *a, **k)

                def wrapped(*args, **kwargs):
                    if not probe.recording:
                        return gf(*args, **kwargs)
                    return probe.on_grad(_kind, fun, gf, argnums, has_aux, args, kwargs)

                return wrapped

            setattr(jax, name, make)
        jnp = jax.numpy
        for name in CREATORS:
            orig = getattr(jnp, name, None)
            if orig is None:
                continue

            def creator(*a, _orig=orig, **k):
                out = _orig(*a, **k)
                if probe.recording and len(probe.created) < MAX_CREATED and _is_int(getattr(out, "dtype", float)):
                    path, line = probe.loc.where(2)
                    if path:
                        probe.created.append((out, path, line))
                return out

            setattr(jnp, name, creator)
        if re.search(r"^\s*(import|from)\s+optax\b", self.source, re.M):
            self.install_optax()

    def install_optax(self) -> None:
        """`optax.apply_updates(params, updates)`: which leaves every update leaves where they were."""
        try:
            import optax
        except ImportError:
            return
        probe = self
        orig = optax.apply_updates

        def apply_updates(params, updates, *a, **k):
            if probe.recording:
                probe.recording = False
                try:
                    probe.on_updates(params, updates)
                finally:
                    probe.recording = True
            return orig(params, updates, *a, **k)

        optax.apply_updates = apply_updates

    def on_updates(self, params, updates) -> None:
        jax = self.jax
        path, line = self.loc.where(3)
        names = names_in_frames(self.loc.user_frames(3), [params])
        base = names.get(id(params)) or "params"
        flat = jax.tree_util.tree_flatten_with_path(updates)[0]
        for key, update in flat:
            name = base + jax.tree_util.keystr(key)
            rec = self.params.get(name)
            if rec is None:
                continue
            rec.setdefault("updates", []).append(self.classify(update))
            if rec["updates"][-1] != "ok" and "ok" not in rec["updates"]:
                rec["update_site"] = loc(path, line)

    # ---- one gradient call
    def on_grad(self, kind, fun, gf, argnums, has_aux, args, kwargs):
        jax = self.jax
        self.recording = False
        self.step += 1
        path, line = self.loc.where(3)
        self.backward_sites.append((path, line))
        frames = self.loc.user_frames(3)
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        names = names_in_frames(frames, args)
        arg_names = [names.get(id(a)) or f"args[{i}]" for i, a in enumerate(args)]
        self.calls.append({"path": path, "line": line, "argnums": nums, "names": arg_names,
                           "structures": [jax.tree_util.tree_structure(a) for a in args]})
        try:
            out = gf(*args, **kwargs)
        except TypeError as exc:
            self.fail_on_integer_inputs(exc, args, nums, arg_names, path, line)
            raise
        grads = out[1] if kind == "value_and_grad" else (out[0] if has_aux else out)
        per_arg = (grads,) if isinstance(argnums, int) else tuple(grads)
        dead = []
        for num, g in zip(nums, per_arg):
            if num >= len(args):
                continue
            for (key, leaf), (_, value) in zip(jax.tree_util.tree_flatten_with_path(g)[0],
                                               jax.tree_util.tree_flatten_with_path(args[num])[0]):
                name = arg_names[num] + jax.tree_util.keystr(key)
                status = self.classify(leaf)
                rec = self.params.setdefault(name, {"name": name, "shape": list(getattr(value, "shape", ())),
                                                    "statuses": [], "cut": None, "why": None,
                                                    "defined_at": self.created_at(value) or loc(path, line)})
                rec["statuses"].append(status)
                if status != "ok" and "ok" not in rec["statuses"] and rec["cut"] is None:
                    dead.append((value, rec))
        if dead:
            try:
                self.locate(fun, args, kwargs, dead)
            except Exception as exc:  # noqa: BLE001 - analysis must never break the user's code
                self.notes.append(f"cut not located: {type(exc).__name__}: {exc}")
        self.stop_when_steps_spent(f"jax.{kind}()")
        self.recording = True
        return out

    def classify(self, g) -> str:
        import numpy as np

        jax = self.jax
        if g is None or getattr(g, "dtype", None) == jax.dtypes.float0:
            return "none"
        if isinstance(g, jax.core.Tracer):
            return "ok"  # inside vmap or another transformation: not a concrete value to look at
        arr = np.asarray(g)
        if np.issubdtype(arr.dtype, np.inexact) and not np.isfinite(arr).all():
            return "nonfinite"
        if not arr.any():
            return "zero"
        return "ok"

    def created_at(self, value) -> dict | None:
        for arr, path, line in self.created:
            if arr is value:
                return loc(path, line)
        return None

    # ---- where the gradient was cut
    def locate(self, fun, args, kwargs, dead) -> None:
        jax = self.jax
        closed = jax.make_jaxpr(fun)(*args, **kwargs)  # with has_aux, the loss is still the first output
        jaxpr = closed.jaxpr
        flat_args = jax.tree_util.tree_leaves((args, kwargs))
        index = {id(v): i for i, v in enumerate(flat_args)}
        loss_vars = _ancestry(jaxpr, jaxpr.outvars[:1])
        masks = {v: 1 << i for i, v in enumerate(jaxpr.invars)}
        cuts: list[tuple] = []  # (eqn, mask of the leaves it cut, why)
        _flow(jaxpr.eqns, masks, cuts, loss_vars)
        for value, rec in dead:
            i = index.get(id(value))
            bit = 1 << i if i is not None else 0
            for eqn, mask, why in cuts:
                if mask & bit:
                    where = self.eqn_site(eqn)
                    rec["cut"] = {"path": where[0], "line": where[1], "op": eqn.primitive.name, "reason": why}
                    rec["why"] = "cut"
                    break
            else:
                rec["cut"], rec["why"] = self.closure(closed, value, rec["name"])

    def closure(self, closed, value, name):
        """The function reads this very array from its enclosing scope, not from its argument."""
        for var, const in zip(closed.jaxpr.constvars, closed.consts):
            if const is value:
                for eqn in closed.jaxpr.eqns:
                    if any(v is var for v in eqn.invars):
                        where = self.eqn_site(eqn)
                        return ({"path": where[0], "line": where[1], "op": "closure",
                                 "reason": f"the function reads `{name}` from its enclosing scope (a closure), not "
                                 "from the argument it differentiates: use the argument"}, "cut")
        return None, "unused"

    def eqn_site(self, eqn) -> tuple[str | None, int]:
        tb = getattr(eqn.source_info, "traceback", None)
        for frame in getattr(tb, "frames", []) if tb is not None else []:
            if self.loc.is_user_path(frame.file_name):
                return frame.file_name, frame.line_num
        return None, 0

    # ---- errors
    def fail_on_integer_inputs(self, exc, args, nums, arg_names, path, line) -> None:
        """`jax.grad` of integer inputs raises: name the integer leaves and where they were made."""
        if "requires real- or complex-valued inputs" not in str(exc):
            return
        jax = self.jax
        for num in nums:
            if num >= len(args):
                continue
            for key, value in jax.tree_util.tree_flatten_with_path(args[num])[0]:
                if _is_int(getattr(value, "dtype", float)):
                    name = arg_names[num] + jax.tree_util.keystr(key)
                    made = self.created_at(value) or loc(path, line)
                    self.params[name] = {"name": name, "shape": list(getattr(value, "shape", ())),
                                         "statuses": ["none"], "defined_at": made, "why": "integer",
                                         "cut": {**made, "op": f"{value.dtype} array",
                                                 "reason": f"`{name}` holds {value.dtype} values, which carry no "
                                                 "gradient: make it a float array (e.g. jnp.array(..., "
                                                 "dtype=jnp.float32))"}}
                    self.integer_error = made

    def explain_script_error(self, exc, path, line) -> None:
        text = str(exc)
        made = getattr(self, "integer_error", None)
        if made is not None and isinstance(exc, TypeError):
            self.error["raised_at"] = loc(path, line)
            self.error.update(path=made["path"], line=made["line"])
            self.error["cause"] = "the differentiated parameters hold integer arrays (made here): integers carry " \
                                  "no gradient"
        elif type(exc).__name__.startswith("Concretization") or "Tracer" in type(exc).__name__:
            self.error["cause"] = ("a traced value was turned into a Python number (float(), int(), .item() or an "
                                   "`if` on it) inside the differentiated function: keep it a jnp value")
        elif re.search(r"tree structure|pytree|Custom node type|arity mismatch|key mismatch", text, re.I):
            self.explain_argnums()

    def explain_argnums(self) -> None:
        """A gradient of the wrong argument fed to an update of the parameters: blame the argnums."""
        for call in reversed(self.calls):
            others = [i for i in range(len(call["structures"])) if i not in call["argnums"]
                      and call["structures"][i].num_leaves > 0]
            if others and call["path"]:
                want = call["names"][others[0]]
                got = ", ".join(call["names"][i] for i in call["argnums"] if i < len(call["names"]))
                self.error["raised_at"] = loc(self.error.get("path"), self.error.get("line"))
                self.error.update(path=call["path"], line=call["line"])
                self.error["cause"] = (f"this gradient is taken with respect to `{got}` (argnums="
                                       f"{call['argnums'][0] if len(call['argnums']) == 1 else call['argnums']}), "
                                       f"not `{want}` (argument {others[0]}): pass argnums={others[0]}")
                return

    # ---- running
    def run(self) -> dict:
        try:
            ast.parse(self.source, self.path)
        except SyntaxError as exc:
            return self.result("error", {"type": "SyntaxError", "message": str(exc.msg), "path": self.path,
                                         "line": exc.lineno})
        self.mode_reason = "the file uses JAX: ran it as __main__, observing each jax.grad/value_and_grad call"
        self.install()
        outcome = self.run_script()
        if outcome == "no-backward" and not self.error:
            return self.result("unsupported", {"type": "NoGradientCall", "message": "the JAX probe observes "
                               "jax.grad and jax.value_and_grad calls; the script ran to the end without one",
                               "path": self.path, "line": None})
        return self.result("error" if self.error else "ok", self.error)

    def result(self, status, error) -> dict:
        params = []
        for rec in self.params.values():
            grad = overall(rec["statuses"])
            frozen = grad == "ok" and rec.get("updates") and "ok" not in rec["updates"]
            params.append({"name": rec["name"], "shape": rec["shape"], "grad": grad,
                           "defined_at": rec.get("defined_at"), "cut": rec["cut"] if grad != "ok" else None,
                           "why": rec["why"] if grad != "ok" else None, "requires_grad": True,
                           "in_optimizer": False if frozen else (True if rec.get("updates") else None),
                           "registered": None, "leaf": True,
                           "update_site": rec.get("update_site") if frozen else None})
        return {"status": status, "framework": "jax", "mode": self.mode, "mode_reason": self.mode_reason,
                "stop_reason": self.stop_reason, "steps": self.step, "parameters": params, "optimizers": [],
                "error": error, "ops": [], "notes": self.notes, "path": self.path,
                "backward_sites": self.backward_site_list()}


def _sub_jaxprs(eqn):
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if sub is not None:
            yield getattr(sub, "jaxpr", sub)


def _ancestry(jaxpr, outvars) -> set:
    """The variables the given outputs are computed from."""
    need = {id(v) for v in outvars}
    for eqn in reversed(jaxpr.eqns):
        if any(id(v) in need for v in eqn.outvars):
            need.update(id(v) for v in eqn.invars if hasattr(v, "aval") and not hasattr(v, "val"))
    return need


def _flow(eqns, masks: dict, cuts: list, loss_vars: set | None) -> None:
    """Which differentiated leaves each variable depends on; the cuts on the way to the loss, in program order."""
    for eqn in eqns:
        mask = 0
        for v in eqn.invars:
            mask |= masks.get(v, 0) if not hasattr(v, "val") else 0
        name = eqn.primitive.name
        subs = list(_sub_jaxprs(eqn))
        if subs and mask:
            sub = subs[0]
            inner = {sv: masks.get(v, 0) for sv, v in zip(sub.invars, eqn.invars) if not hasattr(v, "val")}
            _flow(sub.eqns, inner, cuts, None)
        reaches = loss_vars is None or any(id(v) in loss_vars for v in eqn.outvars)
        why = _cut_reason(eqn, name)
        if why and mask and reaches:
            cuts.append((eqn, mask, why))
        out_mask = 0 if name == "stop_gradient" else mask
        for v in eqn.outvars:
            masks[v] = out_mask


def _cut_reason(eqn, name) -> str | None:
    if name in CUTS:
        return CUTS[name]
    if name in ZERO:
        return f"`{name}` has a zero derivative almost everywhere: no gradient flows back through it"
    if name in COMPARE:
        return f"the comparison `{name}` returns booleans, which carry no gradient"
    if name == "convert_element_type" and _is_int(eqn.params.get("new_dtype")):
        return f"the cast to {eqn.params.get('new_dtype')} makes integers, which carry no gradient"
    return None


def run(path: str, source: str, req: dict) -> dict:
    return JaxProbe(path, source, req).run()

