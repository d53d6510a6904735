"""The TensorFlow probe: script mode, `GradientTape.gradient` intercepted."""

from __future__ import annotations

import ast
import weakref
from dataclasses import dataclass

from .locate import Placed, loc
from .script import ScriptProbe, Stop, calls_any, has_training_step, overall


@dataclass
class TapeEvent:
    """A cut-like operation seen while a user tape was recording."""

    kind: str  # "stop_gradient", "argmax", "cast", "round", ".numpy()", ...
    path: str | None
    line: int
    input: object


TF_ZERO = {"round", "floor", "ceil", "sign"}
TF_COLLECTIONS = {"trainable_variables", "non_trainable_variables", "variables", "weights", "trainable_weights",
                  "non_trainable_weights", "tracker", "layers", "self_setattr_tracking", "inbound_nodes",
                  "outbound_nodes", "seed_generators", "metrics", "loss_tracker"}


class TFProbe(ScriptProbe):
    """Script mode for TensorFlow: intercepts `GradientTape.gradient`, names the sources that got None or
    zero and locates the cut (stop_gradient, NumPy/Python conversions, integer casts) with the user's line.

    Lineage: every user tape gets a hidden persistent twin; a recorded cut is linked to a dead source when
    the twin can differentiate the cut's input with respect to that source.
    """

    framework = "tensorflow"

    def __init__(self, path: str, source: str, req: dict):
        super().__init__(path, source, req)
        self.events: list[TapeEvent] = []
        self.active = 0  # user tapes recording now
        self.defsite: dict[int, Placed] = {}  # id(variable) -> where it was created
        self.params: dict[str, dict] = {}

    def base(self, v):
        inner = getattr(v, "_value", None)
        return inner if inner is not None and hasattr(inner, "handle") else v

    def install(self) -> None:
        import tensorflow as tf
        from tensorflow.python.eager import backprop
        from tensorflow.python.framework import ops

        probe = self
        tape_cls = backprop.GradientTape
        orig_enter, orig_exit, orig_gradient = tape_cls.__enter__, tape_cls.__exit__, tape_cls.gradient

        def _enter(tape):
            r = orig_enter(tape)
            if probe.recording and not getattr(tape, "_gt_hidden_of", False):
                hidden = tape_cls(persistent=True)
                hidden._gt_hidden_of = True
                orig_enter(hidden)
                tape._gt_hidden = hidden
                tape._gt_first_event = len(probe.events)
                probe.active += 1
            return r

        def _exit(tape, *a):
            r = orig_exit(tape, *a)
            hidden = getattr(tape, "_gt_hidden", None)
            if hidden is not None and getattr(hidden, "_recording", False):
                try:
                    orig_exit(hidden, None, None, None)
                except Exception:  # noqa: BLE001
                    pass
                probe.active = max(0, probe.active - 1)
            return r

        def _gradient(tape, target, sources, *a, **k):
            if getattr(tape, "_gt_hidden_of", False) or not probe.recording:
                return orig_gradient(tape, target, sources, *a, **k)
            return probe.on_gradient(orig_gradient, tape, target, sources, a, k)

        tape_cls.__enter__, tape_cls.__exit__, tape_cls.gradient = _enter, _exit, _gradient

        def wrap(owner, attr, kind, pick=lambda a, k: a[0] if a else None, when=None):
            orig = getattr(owner, attr, None)
            if orig is None:
                return

            def f(*a, **k):
                if probe.recording and probe.active and (when is None or when(a, k)):
                    path, line = probe.loc.where(2)
                    if path:
                        probe.events.append(TapeEvent(kind, path, line, pick(a, k)))
                return orig(*a, **k)

            setattr(owner, attr, f)

        def to_int(a, k):
            dt = k.get("dtype", a[1] if len(a) > 1 else None)
            try:
                return not tf.as_dtype(dt).is_floating and not tf.as_dtype(dt).is_complex
            except Exception:  # noqa: BLE001
                return False

        wrap(tf, "stop_gradient", "stop_gradient")
        for owner in (tf, tf.math):
            wrap(owner, "argmax", "argmax")
            wrap(owner, "argmin", "argmin")
            for z in TF_ZERO:
                wrap(owner, z, z)
        wrap(tf, "cast", "cast", when=to_int)
        wrap(tf.dtypes, "cast", "cast", when=to_int)
        for attr, kind in (("numpy", ".numpy()"), ("__array__", "a NumPy conversion"), ("__float__", "float()"),
                           ("__int__", "int()"), ("__index__", "int()")):
            wrap(ops._EagerTensorBase, attr, kind)

    def creator(self, next_creator, **kwargs):
        v = next_creator(**kwargs)
        path, line = self.loc.where(2)
        if path:
            self.defsite[id(v)] = Placed(weakref.ref(v), path, line)
        return v

    def names(self, frames, objs) -> dict[int, str]:
        import tensorflow as tf

        want = {id(self.base(o)): o for o in objs}
        found: dict[int, str] = {}

        def visit(name, val, depth):
            try:
                _visit(name, val, depth)
            except Exception:  # noqa: BLE001 - odd containers (trackable wrappers) must not break the probe
                pass

        def _visit(name, val, depth):
            key = id(self.base(val)) if isinstance(val, (tf.Variable, tf.Tensor)) or hasattr(val, "_value") else None
            if key in want and key not in found:
                found[key] = name
                return
            if depth > 3:
                return
            if isinstance(val, (list, tuple)) and depth < 3:
                for i, x in enumerate(val[:256]):
                    visit(f"{name}.{i}", x, depth + 1)
            elif isinstance(val, tf.Module) or hasattr(type(val), "trainable_variables"):
                layers = getattr(val, "layers", None)
                if isinstance(layers, list) and layers and depth < 3:
                    for i, layer in enumerate(layers):
                        visit(f"{name}.layers.{i}", layer, depth + 1)
                try:
                    attrs = list(vars(val).items())
                except TypeError:
                    return
                for an, av in attrs[:300]:
                    if an.startswith("_") and an.lstrip("_") in vars(val) or an.lstrip("_") in TF_COLLECTIONS:
                        continue
                    visit(f"{name}.{an.lstrip('_')}", av, depth + 1)

        for f in reversed(frames):  # module level first: `x_col`, not the helper's argument `x`
            scopes = [f.f_globals] if f.f_code.co_name == "<module>" else [f.f_locals]
            for scope in scopes:
                for var, val in list(scope.items()):
                    if var.startswith("__") or isinstance(val, type):
                        continue
                    if isinstance(val, (tf.Variable, tf.Tensor)) or hasattr(val, "_value"):
                        visit(var, val, 0)
            for scope in scopes:
                for var, val in list(scope.items()):
                    if not var.startswith("__") and not isinstance(val, type):
                        visit(var, val, 0)
        for key, o in want.items():
            if key not in found:
                found[key] = getattr(o, "path", None) or getattr(o, "name", None) or f"source{len(found)}"
        return found

    def on_gradient(self, orig, tape, target, sources, a, k):
        import tensorflow as tf

        self.recording = False
        self.step += 1
        path, line = self.loc.where(3)
        self.backward_sites.append((path, line))
        frames = self.loc.user_frames(3)
        flat = tf.nest.flatten(sources, expand_composites=False)
        try:
            res = orig(tape, target, sources, *a, **k)
        except Exception as exc:  # noqa: BLE001
            self.error = {"type": type(exc).__name__, "message": (str(exc).splitlines() or [""])[0],
                          "path": path, "line": line}
            self.stop_reason = f"tape.gradient at line {line} raised"
            raise Stop() from None
        grads = tf.nest.flatten(res, expand_composites=False) if res is not None else [None] * len(flat)
        try:
            names = self.names(frames, flat)
        except Exception:  # noqa: BLE001
            names = {id(self.base(o)): getattr(o, "path", None) or getattr(o, "name", None) or f"source{i}"
                     for i, o in enumerate(flat)}
        hidden = getattr(tape, "_gt_hidden", None)
        first = getattr(tape, "_gt_first_event", 0)
        watched = set()
        if hidden is not None:
            watched = {id(self.base(v)) for v in hidden.watched_variables()}
        for src, g in zip(flat, grads):
            name = names.get(id(self.base(src)))
            rec = self.params.get(name)
            if rec is None:
                ds = self.defsite.get(id(self.base(src)))
                rec = self.params[name] = {"name": name, "shape": [int(d) if d is not None else None
                                                                 for d in src.shape.as_list()]
                                           if src.shape.rank is not None else None,
                                           "defined_at": loc(ds.path, ds.line) if ds else None,
                                           "statuses": [], "cut": None, "why": None,
                                           "trainable": bool(getattr(src, "trainable", True)),
                                           "variable": isinstance(self.base(src), tf.Variable)}
            st = self.classify(g)
            rec["statuses"].append(st)
            if g is not None:
                try:
                    rec["norm"] = float(tf.norm(tf.cast(tf.convert_to_tensor(g), tf.float32)))
                except Exception:  # noqa: BLE001
                    pass
            if st != "ok" and "ok" not in rec["statuses"][:-1] and rec["cut"] is None:
                try:
                    rec["cut"], rec["why"] = self.find_cut(src, st, hidden, watched, first, path, line)
                except Exception as exc:  # noqa: BLE001 - analysis must never break the user's code
                    rec["why"] = f"analysis failed: {type(exc).__name__}: {exc}"
        self.stop_when_steps_spent("tape.gradient()")
        self.recording = True
        return res

    def classify(self, g) -> str:
        import tensorflow as tf

        if g is None:
            return "none"
        if isinstance(g, tf.IndexedSlices):
            g = g.values
        g = tf.convert_to_tensor(g)
        if g.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(g))):
            return "nonfinite"
        if not bool(tf.reduce_any(tf.not_equal(g, tf.zeros_like(g)))):
            return "zero"
        return "ok"

    def find_cut(self, src, status, hidden, watched, first, gpath, gline):
        import tensorflow as tf

        base = self.base(src)
        ds = self.defsite.get(id(base))
        dtype = tf.as_dtype(base.dtype)
        if not dtype.is_floating and not dtype.is_complex:
            where = (ds.path, ds.line) if ds else (gpath, gline)
            return ({"path": where[0], "line": where[1], "op": f"{dtype.name} variable",
                     "reason": f"the source has dtype {dtype.name}: integer values carry no gradient "
                     "(create it from a float, e.g. tf.Variable(0.0))"}, "integer")
        is_var = isinstance(base, tf.Variable)
        for ev in self.events[first:]:
            inp = ev.input
            if inp is not None and (inp is src or id(self.base(inp)) == id(base)) and ev.kind == "stop_gradient":
                return ({"path": ev.path, "line": ev.line, "op": ev.kind,
                         "reason": "tf.stop_gradient on the variable itself: it never gets a gradient"}, "cut")
        if hidden is not None and id(base) not in watched:
            if not is_var:
                return ({"path": gpath, "line": gline, "op": "unwatched tensor",
                         "reason": "the source is a tensor, not a tf.Variable, and the tape never watched it: "
                         "call tape.watch(x) inside the tape"}, "unwatched")
            return None, "unused"
        for ev in self.events[first:]:
            kind, path, line, inp = ev.kind, ev.path, ev.line, ev.input
            linked = inp is src or (inp is not None and id(self.base(inp)) == id(base))
            if not linked and hidden is not None and inp is not None:
                try:
                    linked = hidden.gradient(inp, src) is not None
                except Exception:  # noqa: BLE001
                    linked = False
            if not linked:
                continue
            if status == "zero" and kind not in TF_ZERO:
                continue
            if kind in TF_ZERO:
                reason = f"tf.{kind} has a zero derivative almost everywhere"
            elif kind == "stop_gradient":
                reason = "tf.stop_gradient blocks the gradient on this path"
            elif kind in ("argmax", "argmin", "cast"):
                reason = f"tf.{kind} to an integer dtype: integer values carry no gradient"
            else:
                reason = f"{kind} turns the tensor into a NumPy/Python value inside the tape: the tape loses track"
            return {"path": path, "line": line, "op": kind, "reason": reason}, "cut"
        return None, ("zero" if status == "zero" else "off-path")

    def run(self) -> dict:
        import tensorflow as tf

        try:
            tree = ast.parse(self.source, self.path)
        except SyntaxError as exc:
            return self.result("error", {"type": "SyntaxError", "message": str(exc.msg), "path": self.path,
                                         "line": exc.lineno})
        keras_fit = calls_any(tree, ("fit", "train_on_batch"))
        if not has_training_step(tree) and not keras_fit:
            return self.result("unsupported", {"type": "NoGradientCall", "message": "the TensorFlow probe runs "
                               "scripts that call tape.gradient() or Keras fit()/train_on_batch(); this file has "
                               "neither (module mode is PyTorch only)", "path": self.path, "line": None})
        self.mode_reason = "the file calls tape.gradient(): ran it as __main__ up to that call"
        if keras_fit:
            # Keras' train_step calls tape.gradient inside a tf.function; run it eagerly so it is observed.
            tf.config.run_functions_eagerly(True)
            if not has_training_step(tree):
                self.mode_reason = ("the file trains with Keras fit(): ran it as __main__ with functions run "
                                    "eagerly, up to the first train_step's tape.gradient")
        self.install()
        with tf.variable_creator_scope(self.creator):
            outcome = self.run_script()
        if outcome == "no-backward":
            return self.result("unsupported", {"type": "NoGradientCall", "message": "the script ran to the end "
                               "without calling tape.gradient()", "path": self.path, "line": None})
        return self.result("error" if self.error else "ok", self.error)

    def result(self, status, error) -> dict:
        params = []
        for rec in self.params.values():
            grad = overall(rec["statuses"])
            params.append({"name": rec["name"], "shape": rec["shape"], "grad": grad,
                           "defined_at": rec["defined_at"], "cut": rec["cut"] if grad != "ok" else None,
                           "why": rec["why"] if grad != "ok" else None, "requires_grad": rec["trainable"],
                           "in_optimizer": None, "registered": None, "norm": rec.get("norm"),
                           "leaf": rec["variable"]})
        return {"status": status, "framework": "tensorflow", "mode": self.mode, "mode_reason": self.mode_reason,
                "stop_reason": self.stop_reason, "steps": self.step, "parameters": params, "optimizers": [],
                "error": error, "ops": [], "notes": [], "path": self.path,
                "backward_sites": self.backward_site_list()}
