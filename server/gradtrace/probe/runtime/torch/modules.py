"""Module mode: build the file's `nn.Module`s with the arguments found where they are instantiated (or defaults),
synthesise a small input from the first layer, reduce the outputs to a scalar and differentiate."""

from __future__ import annotations

import ast
import inspect
import os
import sys
import textwrap
import types

from ..script import Stop


def run_modules(probe, tree) -> dict:
    torch = probe.torch
    nn = torch.nn
    mod = types.ModuleType("__gradtrace_probe__")
    mod.__file__ = probe.path
    sys.modules["__gradtrace_probe__"] = mod
    sys.path.insert(0, os.path.dirname(probe.path))
    probe.recording = True
    try:
        exec(compile(probe.source, probe.path, "exec"), mod.__dict__)
    except BaseException as exc:  # noqa: BLE001
        probe.recording = False
        path, line = probe.loc.exc_location(exc)
        return probe.result("error", error={"type": type(exc).__name__, "message": str(exc).splitlines()[0]
                                             if str(exc) else "", "path": path, "line": line})
    probe.recording = False
    classes = [v for v in vars(mod).values() if isinstance(v, type) and issubclass(v, nn.Module)
               and v.__module__ == "__gradtrace_probe__"]
    if not classes:
        return probe.result("unsupported", error={
            "type": "NothingToProbe", "message": "no backward() call and no nn.Module subclass in this file",
            "path": probe.path, "line": None})
    calls = literal_calls(tree, {c.__name__ for c in classes})
    used_inside = classes_used_inside(tree, {c.__name__ for c in classes})
    roots = [c for c in classes if c.__name__ not in used_inside] or classes
    built, problems = [], []
    for cls in roots:
        inst, var, why = build(probe, cls, calls.get(cls.__name__, []), mod)
        if inst is None:
            problems.append(f"{cls.__name__}: {why}")
            continue
        built.append((var or cls.__name__, inst, cls))
    if not built:
        return probe.result("error", error={"type": "CannotBuild", "message": "; ".join(problems),
                                            "path": probe.path, "line": None})
    probe.mode_reason += f" ({', '.join(f'{v} = {c.__name__}(...)' for v, _, c in built)})"
    if problems:
        probe.notes.extend(problems)
    for var, inst, cls in built:
        if not differentiate(probe, var, inst, cls):
            break
    probe.stop_reason = "module mode: one synthetic forward/backward per module"
    return probe.finish()


def differentiate(probe, var, inst, cls) -> bool:
    """One synthetic forward/backward of `inst`; False when the forward failed (the probe stops there)."""
    torch = probe.torch
    inst.train()
    candidates = synth_inputs(torch, inst)
    if not candidates:
        probe.notes.append(f"{cls.__name__}: no layer with a known input size (Linear, Conv*, Embedding, "
                           "RNN, Transformer, LayerNorm, BatchNorm)")
        return True
    probe.step += 1
    failure = None
    out = loss = None
    for x, how in candidates:
        mark = len(probe.tape.ops)
        probe.recording = True
        try:
            out = inst(*x)
            probe.recording = False
            loss = reduce_to_scalar(torch, out)
            failure = None
            probe.notes.append(f"{cls.__name__}: input {how}")
            break
        except BaseException as exc:  # noqa: BLE001 - try the next candidate input
            probe.recording = False
            failure = (exc, how)
            probe.tape.truncate(mark)
    if failure is not None:
        exc, how = failure
        path, line = probe.loc.exc_location(exc)
        probe.error = {"type": type(exc).__name__, "message": (str(exc).splitlines() or [""])[0],
                       "path": path, "line": line,
                       "cause": f"forward of {cls.__name__} with a synthetic input ({how}) failed; run "
                       "the probe on a script that calls backward() instead"}
        return False
    probe.params.add_module(var, inst)
    if loss is None:
        probe.error = {"type": "NoGradient", "message": f"{cls.__name__}'s output does not require grad",
                       "path": probe.path, "line": None}
        anc = probe.lineage.ancestry(tensors_in(torch, out))
        cuts = sorted(i for i in probe.tape.cut_ops if i in anc)
        if cuts:
            op = probe.tape.ops[cuts[0]]
            path, line = op.where
            probe.error.update(path=path, line=line, cause=op.cut)
        for rec in probe.params.records.values():
            rec.statuses.append("none")
        return True
    try:
        probe.recording = True
        loss.backward()
    except Stop:
        pass
    finally:
        probe.recording = False
    return True


def build(probe, cls, calls, mod):
    """(instance, variable, None) or (None, None, why not)."""
    tried = []
    for var, call in calls:
        try:
            args = [eval_arg(a, mod) for a in call.args]
            kwargs = {k.arg: eval_arg(k.value, mod) for k in call.keywords if k.arg}
        except ValueError as exc:
            tried.append(f"line {call.lineno}: {exc}")
            continue
        try:
            probe.recording = True
            return cls(*args, **kwargs), var, None
        except Exception as exc:  # noqa: BLE001
            tried.append(f"line {call.lineno}: {type(exc).__name__}: {exc}")
        finally:
            probe.recording = False
    try:
        probe.recording = True
        return cls(), None, None
    except TypeError as exc:
        sig = ""
        try:
            sig = str(inspect.signature(cls.__init__)).replace("(self, ", "(").replace("(self)", "()")
        except (TypeError, ValueError):
            pass
        where = "; ".join(tried) if tried else "no instantiation with literal arguments found in the file"
        return None, None, f"cannot build {cls.__name__}{sig}: {exc} ({where})"
    except Exception as exc:  # noqa: BLE001
        return None, None, f"cannot build {cls.__name__}: {type(exc).__name__}: {exc}"
    finally:
        probe.recording = False


def literal_calls(tree: ast.AST, class_names: set[str]) -> dict[str, list[tuple[str | None, ast.Call]]]:
    """Where each class is instantiated in the file: {class: [(variable or None, call)]}."""
    found: dict[str, list] = {}
    for node in ast.walk(tree):
        targets: list = []
        value = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        calls = []
        if value is not None:
            if isinstance(value, ast.Call):
                name = targets[0].id if targets and isinstance(targets[0], ast.Name) else (
                    targets[0].attr if targets and isinstance(targets[0], ast.Attribute) else None)
                calls.append((name, value))
            elif isinstance(value, ast.Tuple) and targets and isinstance(targets[0], ast.Tuple):
                for t, v in zip(targets[0].elts, value.elts):
                    if isinstance(v, ast.Call):
                        calls.append((t.id if isinstance(t, ast.Name) else None, v))
        for var, call in calls:
            fn = call.func
            cname = fn.id if isinstance(fn, ast.Name) else (fn.attr if isinstance(fn, ast.Attribute) else None)
            if cname in class_names:
                found.setdefault(cname, []).append((var, call))
    for node in ast.walk(tree):  # bare calls (arguments, returns)
        if isinstance(node, ast.Call):
            fn = node.func
            cname = fn.id if isinstance(fn, ast.Name) else None
            if cname in class_names and not any(c is node for _, c in found.get(cname, [])):
                found.setdefault(cname, []).append((None, node))
    return found


def module_classes(tree) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.bases:
            out.append(node.name)
    return out


def layers_built_in_forward(tree) -> list[tuple[int, str]]:
    """(line, text) of each `nn.Something(...)` constructed inside a class's `forward`: never registered."""
    found = []
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name == "forward":
                for call in ast.walk(fn):
                    func = call.func if isinstance(call, ast.Call) else None
                    if isinstance(func, ast.Attribute) and func.attr[:1].isupper() \
                            and isinstance(func.value, (ast.Name, ast.Attribute)) \
                            and (ast.unparse(func.value).endswith("nn")):
                        found.append((call.lineno, ast.unparse(func)))
    return sorted(found)


def unregistered_containers(torch, tb, path: str) -> list[tuple[int, str, str]]:
    """(line, class, attribute) of each plain list, tuple or dict of layers or parameters kept on a live module of
    the frames a traceback went through (`self.layers = [nn.Linear(...)]`): nn.Module registers none of them.
    The line is where the class in `path` assigns the attribute."""
    seen: set = set()
    found: dict = {}
    while tb is not None:
        for value in list(tb.tb_frame.f_locals.values()):
            if not isinstance(value, torch.nn.Module) or id(value) in seen:
                continue
            for module in value.modules():
                if id(module) in seen:
                    continue
                seen.add(id(module))
                for attr, held in vars(module).items():
                    items = list(held.values()) if isinstance(held, dict) and not attr.startswith("_") else (
                        list(held) if isinstance(held, (list, tuple)) else [])
                    if any(isinstance(i, (torch.nn.Module, torch.nn.Parameter)) for i in items):
                        found.setdefault((type(module), attr), None)
        tb = tb.tb_next
    out = []
    for cls, attr in found:
        line = _assignment_line(cls, attr, path)
        if line is not None:
            out.append((line, cls.__name__, attr))
    return sorted(out)


def _assignment_line(cls, attr: str, path: str) -> int | None:
    """The line of the first `self.<attr> = ...` in the class (defined in `path`), or None."""
    try:
        if os.path.abspath(inspect.getsourcefile(cls) or "") != os.path.abspath(path):
            return None
        lines, start = inspect.getsourcelines(cls)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Attribute) and t.attr == attr and isinstance(t.value, ast.Name)
                   and t.value.id == "self" for t in targets):
                return node.lineno + start - 1
    return None


def classes_used_inside(tree, names: set[str]) -> set[str]:
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Call):
                    fn = sub.func
                    n = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
                    if n in names and n != node.name:
                        used.add(n)
            for b in node.bases:
                n = b.id if isinstance(b, ast.Name) else None
                if n in names:
                    used.add(n)
    return used


def eval_arg(node, mod):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        pass
    if isinstance(node, ast.Name) and node.id in vars(mod):
        return vars(mod)[node.id]
    if isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Attribute)):
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if all(n in vars(mod) for n in names):
            try:
                return eval(compile(ast.Expression(node), "<arg>", "eval"), dict(vars(mod)))  # noqa: S307
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"cannot evaluate {ast.unparse(node)}: {exc}") from None
    raise ValueError(f"argument {ast.unparse(node)} is not a constant")


def synth_inputs(torch, module) -> list:
    """Candidate inputs, one per layer with a known input size, in registration order."""
    out, seen = [], set()
    for _name, m in module.named_modules():
        if m is module and len(list(module.children())):
            continue
        x, how = synth_one(torch, m)
        if x is not None and how not in seen:
            seen.add(how)
            out.append((x, how))
        if len(out) >= 4:
            break
    return out


def synth_one(torch, layer):
    nn = torch.nn
    B, T, S = 2, 8, 16
    for m in (layer,):
        if isinstance(m, nn.Linear):
            return (torch.randn(B, m.in_features),), f"randn({B}, {m.in_features}) for {type(m).__name__}"
        if isinstance(m, nn.Bilinear):
            return (torch.randn(B, m.in1_features), torch.randn(B, m.in2_features)), "Bilinear inputs"
        if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d)):
            return (torch.randn(B, m.in_channels, S),), f"randn({B}, {m.in_channels}, {S}) for Conv1d"
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            return (torch.randn(B, m.in_channels, S, S),), f"randn({B}, {m.in_channels}, {S}, {S}) for Conv2d"
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            return (torch.randn(B, m.in_channels, 8, 8, 8),), f"randn({B}, {m.in_channels}, 8, 8, 8) for Conv3d"
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)):
            return (torch.randint(0, m.num_embeddings, (B, T)),), f"randint(0, {m.num_embeddings}, ({B}, {T})) " \
                "token ids for Embedding"
        if isinstance(m, nn.RNNBase):
            shape = (B, T, m.input_size) if m.batch_first else (T, B, m.input_size)
            return (torch.randn(*shape),), f"randn{shape} for {type(m).__name__}"
        if isinstance(m, nn.TransformerEncoderLayer):
            d = m.linear1.in_features
            first = getattr(m.self_attn, "batch_first", False)
            shape = (B, T, d) if first else (T, B, d)
            return (torch.randn(*shape),), f"randn{shape} for TransformerEncoderLayer"
        if isinstance(m, nn.MultiheadAttention):
            shape = (B, T, m.embed_dim) if m.batch_first else (T, B, m.embed_dim)
            x = torch.randn(*shape)
            return (x, x, x), f"randn{shape} as query, key and value"
        if isinstance(m, nn.LayerNorm):
            shape = (B, T, *m.normalized_shape)
            return (torch.randn(*shape),), f"randn{shape} for LayerNorm"
        if isinstance(m, (nn.BatchNorm1d, nn.InstanceNorm1d)):
            return (torch.randn(B, m.num_features),), f"randn({B}, {m.num_features}) for BatchNorm1d"
        if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
            return (torch.randn(B, m.num_features, S, S),), "image batch for BatchNorm2d"
    return None, None


def tensors_in(torch, out) -> list:
    found = []

    def walk(o, depth=0):
        if depth > 4:
            return
        if isinstance(o, torch.Tensor):
            found.append(o)
        elif isinstance(o, (list, tuple)):
            for x in o:
                walk(x, depth + 1)
        elif isinstance(o, dict):
            for x in o.values():
                walk(x, depth + 1)
        elif hasattr(o, "__dict__") and not isinstance(o, type):
            for x in vars(o).values():
                walk(x, depth + 1)

    walk(out)
    return found


def reduce_to_scalar(torch, out):
    """A scalar from the outputs: random projections, so softmax/normalised outputs do not give zero grads."""
    total = None
    gen = torch.Generator().manual_seed(0)
    for t in tensors_in(torch, out):
        if not t.requires_grad or not (t.dtype.is_floating_point or t.dtype.is_complex):
            continue
        w = torch.randn(t.shape, generator=gen, dtype=t.real.dtype if t.is_complex() else t.dtype)
        term = (t.real if t.is_complex() else t) * w
        term = term.sum()
        total = term if total is None else total + term
    return total
