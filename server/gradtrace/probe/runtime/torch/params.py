"""The parameters of a probe: found in the user's frames, named as DESIGN §3 says, with their results per step."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..locate import loc, site_text
from ..script import overall

MAX_ITEMS = 512  # items of one container looked at
MAX_DEPTH = 4  # containers inside containers followed


@dataclass
class ParamRecord:
    name: str
    shape: list
    defined_at: dict | None
    registered: bool | None  # True: in a module's parameters(); False: on a module but unregistered; None: bare
    kind: str = "leaf"  # "leaf", or "nonleaf" (meant as a parameter, but computed)
    statuses: list = field(default_factory=list)  # "ok" | "none" | "zero" | "nonfinite", one per step
    cut: dict | None = None
    why: str | None = None
    norm: float | None = None
    cut_status: str | None = None  # the status `cut` was found for
    cut_flags: int = -1  # how many `module.requires_grad = ...` had been seen when it was found
    made_in_forward: dict | None = None  # the layer it belongs to was built inside a forward (where, which)

    def grad(self) -> str:
        return overall(self.statuses)


def contents(prefix: str, val, depth: int = 0):
    """(name, item) for what nested lists, tuples, dicts and sets hold: `blocks.1.0` for `blocks[1][0]`."""
    if depth > MAX_DEPTH:
        return
    if isinstance(val, dict):
        items = list(val.items())[:MAX_ITEMS]
    elif isinstance(val, (list, tuple)):
        items = list(enumerate(val[:MAX_ITEMS]))
    elif isinstance(val, (set, frozenset)):
        items = list(enumerate(list(val)[:MAX_ITEMS]))
    else:
        return
    for k, v in items:
        name = f"{prefix}.{k}"
        if isinstance(v, (dict, list, tuple, set, frozenset)):
            yield from contents(name, v, depth + 1)
        else:
            yield name, v


def count_params(mod) -> int:
    try:
        return sum(1 for _ in mod.parameters())
    except Exception:  # noqa: BLE001
        return 0


class ParamTable:
    """id(tensor) -> record; the tensors themselves are kept alive so ids stay unique."""

    def __init__(self, torch, tape):
        self.torch = torch
        self.tape = tape
        self.records: dict[int, ParamRecord] = {}
        self.objs: dict[int, object] = {}
        self.by_name: dict[str, ParamRecord] = {}

    def clear(self) -> None:
        self.records.clear()
        self.objs.clear()

    def items(self):
        return self.records.items()

    def __contains__(self, pid) -> bool:
        return pid in self.records

    def names_by_leaf(self) -> dict[int, str]:
        out = {}
        for pid, rec in self.records.items():
            li = self.tape.leaf_of.get(pid)
            if li is not None:
                out[li] = rec.name
        return out

    def collect(self, frames) -> None:
        """Name every parameter the user's frames can reach (DESIGN §3 naming)."""
        torch = self.torch
        nn = torch.nn
        roots_mod: list[tuple[str, object, int]] = []
        tensors: list[tuple[str, object]] = []
        containers: list[tuple[str, object]] = []
        order = 0
        for f in frames:
            scopes = [f.f_locals]
            if f.f_back is None or f.f_code.co_name == "<module>":
                scopes.append(f.f_globals)
            for scope in scopes:
                for var, val in list(scope.items()):
                    if var.startswith("__"):
                        continue
                    order += 1
                    if isinstance(val, nn.Module):
                        roots_mod.append((var, val, order))
                    elif isinstance(val, torch.Tensor):
                        if val.requires_grad:
                            tensors.append((var, val))
                    elif isinstance(val, (list, tuple, dict)):
                        containers.append((var, val))
                    elif hasattr(val, "__dict__") and not isinstance(val, type) and not callable(val) \
                            and type(val).__module__ not in ("builtins",) and not hasattr(val, "__path__"):
                        try:
                            attrs = list(vars(val).items())
                        except TypeError:
                            continue
                        for an, av in attrs[:200]:
                            if isinstance(av, nn.Module):
                                roots_mod.append((f"{var}.{an}", av, order))
                            elif isinstance(av, torch.Tensor) and av.requires_grad:
                                tensors.append((f"{var}.{an}", av))
        # one name per module: a variable rather than `self.x` (the caller's `trainer.model`), the innermost first
        best: dict[int, tuple] = {}
        for var, mod, order in roots_mod:
            rank = (var.startswith("self."), order)
            if id(mod) not in best or rank < best[id(mod)][0]:
                best[id(mod)] = (rank, var, mod)
        for _rank, var, mod in sorted(best.values(), key=lambda r: (-count_params(r[2]), r[0][1])):
            self.add_module(var, mod)
        for var, t in tensors:
            if t.is_leaf:
                self.add(var, t, registered=None)
        for var, val in containers:
            for name, v in contents(var, val):
                if isinstance(v, torch.Tensor) and v.requires_grad and v.is_leaf:
                    self.add(name, v, registered=None)
                elif isinstance(v, nn.Module):
                    for n, p in v.named_parameters():
                        self.add(f"{name}.{n}", p, registered=True)
        for var, t in tensors:
            if not t.is_leaf and id(t) not in self.records:
                self.add_nonleaf(var, t)

    def add_module(self, var, mod) -> None:
        """A module's registered parameters, then what its submodules hold outside of them."""
        try:
            named = list(mod.named_parameters())
        except Exception:  # noqa: BLE001
            return
        for n, p in named:
            self.add(f"{var}.{n}", p, registered=True)
        for mname, sub in mod.named_modules():
            for an, av in list(vars(sub).items()):
                if an.startswith("_"):
                    continue
                prefix = f"{var}.{mname}.{an}" if mname else f"{var}.{an}"
                self.add_unregistered(prefix, av)

    def add_unregistered(self, prefix, val) -> None:
        torch = self.torch
        if isinstance(val, torch.Tensor):
            if val.requires_grad and val.is_leaf:
                self.add(prefix, val, registered=False)
            elif val.requires_grad and id(val) not in self.records:
                self.add_nonleaf(prefix, val)
            return
        for name, v in contents(prefix, val):
            if isinstance(v, torch.nn.Module):
                for n, p in v.named_parameters():
                    self.add(f"{name}.{n}", p, registered=False)
            elif isinstance(v, torch.Tensor) and v.requires_grad and v.is_leaf:
                self.add(name, v, registered=False)

    def add_made_in_forward(self, forward_params) -> None:
        """The parameters of layers built inside a forward that are still alive (the graph holds them)."""
        for ref, where, attr in forward_params:
            p = ref()
            if p is None or not p.requires_grad:
                continue
            if id(p) not in self.records:
                owner = where["var"] or where["cls"]
                self.add(f"{owner}.{attr}", p, registered=None)
            self.records[id(p)].made_in_forward = where

    def add(self, name, p, registered) -> None:
        if id(p) in self.records:
            return
        same = self.by_name.get(name)
        if same is not None:  # the same variable re-bound to a new tensor in a later step
            self.records[id(p)] = same
            self.objs[id(p)] = p
            return
        path, line = None, None
        ds = self.tape.defsite.get(id(p))
        if ds is not None and ds.alive_is(p):
            path, line = ds.path, ds.line
        else:
            li = self.tape.leaf_index(p)
            if li is not None:
                path, line = self.tape.leaves[li].path, self.tape.leaves[li].line
        rec = ParamRecord(name, list(p.shape), loc(path, line), registered)
        self.records[id(p)] = rec
        self.objs[id(p)] = p
        self.by_name[name] = rec

    def add_nonleaf(self, name, t) -> None:
        """A variable that was meant as a parameter but is not a leaf (`requires_grad=True` then .view/.to/*s)."""
        tape = self.tape
        tag = tape.tag_of(t)
        if tag is None or tag < 0:
            return
        op = tape.ops[tag]
        chain = [tag]
        leaf = None
        while len(chain) < 6:
            ins = [x for x in op.ins if x is not None]
            if len(ins) != 1:
                return
            if ins[0] < 0:
                leaf = -1 - ins[0]
                break
            op = tape.ops[ins[0]]
            chain.append(ins[0])
        if leaf is None:
            return
        lref = tape.leaves[leaf].ref()
        if lref is None or id(lref) in self.records:
            return
        first = tape.ops[chain[-1]]
        if tape.leaves[leaf].line and first.line and abs(first.line - tape.leaves[leaf].line) > 1:
            return
        name_op = first.name.strip("_") if first.name.startswith("__") else first.name
        rec = ParamRecord(name, list(t.shape), loc(tape.leaves[leaf].path, tape.leaves[leaf].line), None, "nonleaf")
        rec.cut = {"path": first.path, "line": first.line, "op": name_op,
                   "reason": f"`{name}` is not a leaf: `{name_op}` applied after requires_grad=True returns a "
                   "new tensor, so its .grad is never populated (the hidden leaf gets the gradient); create the "
                   "tensor first, then call .requires_grad_()"}
        self.records[id(t)] = rec
        self.objs[id(t)] = t


def typo_entries(typos, known: set, names: set) -> list[dict]:
    """Tensors given a misspelt `requires_grad` attribute that never required grad: no gradient, ever."""
    entries = []
    for placed, attr in typos:
        t = placed.ref()
        path, line = placed.path, placed.line
        if t is None or id(t) in known or t.requires_grad or not path:
            continue
        m = re.match(r"\s*([\w.]+)\." + re.escape(attr) + r"\b", site_text(path, line, ""))
        name = m.group(1) if m else attr
        if name in names:
            continue
        names.add(name)
        entries.append({"name": name, "shape": list(t.shape), "grad": "none", "defined_at": loc(path, line),
                        "cut": {"path": path, "line": line, "op": f".{attr} = ...",
                                "reason": f"`.{attr}` is not `requires_grad` (a typo): it sets a new attribute "
                                "and the tensor never requires grad"},
                        "requires_grad": False, "in_optimizer": None, "registered": None, "why": "cut",
                        "norm": None, "leaf": True, "parameter": False})
    return entries
