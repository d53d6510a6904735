"""The tape: every tensor operation of the user's code, with its line, which leaves it depends on and whether
it cut the graph (`torch.overrides.TorchFunctionMode`)."""

from __future__ import annotations

import re
import sys
import weakref
from dataclasses import dataclass, field

from ..locate import Placed, Site

MAX_OPS = 200_000  # recorded operations per probe before recording stops (memory bound)
MAX_SUMS = 4096  # scalar sums whose operands are kept within one step

ESCAPES = {"item", "tolist", "__float__", "__int__", "__index__", "numpy", "__array__", "__complex__"}
ZERO_GRAD_OPS = {"sign", "sgn", "round", "floor", "ceil", "trunc", "fix", "heaviside", "round_", "floor_",
                 "ceil_", "sign_", "trunc_"}
# Draws whose backward gives their tensor arguments a zero gradient (`torch.normal(mu, std)`)
SAMPLING_OPS = {"normal", "bernoulli", "poisson", "normal_", "bernoulli_"}
SKIP_OPS = {"__repr__", "__format__", "__str__", "size", "dim", "numel", "stride", "is_floating_point",
            "is_contiguous", "__len__", "__hash__", "data_ptr", "element_size", "storage_offset",
            "untyped_storage", "is_complex", "get_device", "__reduce_ex__", "__deepcopy__", "__bool__",
            "backward", "register_hook", "retain_grad", "_is_view", "__iter__", "__contains__", "nelement",
            "ndimension", "is_shared", "is_pinned", "is_set_to", "has_names", "__dir__", "type_as__",
            "__array_priority__", "__torch_function__", "__getstate__", "__setstate__", "storage",
            "_typed_storage", "is_inference", "is_nonzero", "equal", "allclose", "isclose_"}
GETSET_KEEP = {"data", "T", "mT", "H", "mH", "real", "imag"}
# `F.dropout(x, p, training, inplace)` as `nn.Dropout` calls it: the position of the flag
POSITIONAL_INPLACE = {"dropout": 3, "alpha_dropout": 3, "feature_alpha_dropout": 3, "dropout1d": 3, "dropout2d": 3,
                      "dropout3d": 3}
INPLACE_DUNDER = {"__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__ipow__",
                  "__imatmul__", "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__", "__imod__",
                  "__setitem__"}
NAN_OPS = {"sqrt", "rsqrt", "log", "log2", "log10", "log1p", "reciprocal", "div", "true_divide", "__truediv__",
           "__rtruediv__", "pow", "__pow__", "acos", "asin", "atanh", "acosh", "xlogy", "lgamma", "digamma",
           "cdist", "norm", "linalg_vector_norm"}
REWRAP = {"tensor", "as_tensor", "new_tensor", "asarray", "from_numpy", "FloatTensor", "Tensor"}
# A scalar made by these is the sum of its operands: the loss is split into its summands through them.
SUM_OPS = {"add", "__add__", "__radd__", "sub", "__sub__", "__rsub__", "__iadd__", "__isub__", "add_", "sub_"}
TYPO_RE = re.compile(r"^(require_grads?|requires_grads|requires?_gradients?|requiers_grad|requries_grad|"
                     r"require_gradient|requiresgrad|requires_gard|requires_grd|reqires_grad|requre_grad|"
                     r"requires_grad_)$")


def pretty(name: str) -> str:
    return name.strip("_") if name.startswith("__") else name


@dataclass(slots=True)
class Op:
    """One recorded operation. `ins` are the tags of its tensor inputs (>= 0: an op index; < 0: a leaf, -1 - index);
    `bits` the leaves it depends on; `cut` why it cut the graph (None if it did not); `site` the region that
    switched gradients off around it."""

    name: str
    path: str | None
    line: int
    ins: tuple
    bits: int
    req_in: bool
    out_req: bool
    cut: str | None
    site: Site | None
    step: int

    @property
    def where(self) -> tuple[str | None, int]:
        """The line to blame: the `no_grad` region when there is one, else the operation's own line."""
        if self.site is not None and self.site.path:
            return self.site.path, self.site.line
        return self.path, self.line


@dataclass(slots=True)
class Leaf:
    ref: weakref.ref
    path: str | None
    line: int
    how: str


@dataclass(slots=True)
class InPlace:
    op: int
    name: str
    path: str | None
    line: int
    shape: list
    before: int
    after: int
    grad_fn: str | None
    leaf: bool
    layer: str | None = None  # the in-place layer that ran it (`ReLU`), when a layer did
    built: tuple | None = None  # (path, line) where that layer was built


@dataclass
class Sightings:
    """What the patches saw in the user's code besides tensor operations."""

    grad_site: Site | None = None  # where gradient recording was turned off (while it is off)
    inference_site: Site | None = None
    last_inference_site: Site | None = None
    typos: list = field(default_factory=list)  # [(Placed, attr)]
    freezes: dict = field(default_factory=dict)  # id(tensor) -> Placed
    module_flags: list = field(default_factory=list)  # `module.requires_grad = v`: [(Placed, value)]
    inplace: list = field(default_factory=list)  # [InPlace]
    nonleaf_optimized: tuple | None = None  # (path, line, op name) of a non-leaf handed to an optimizer
    built_at: dict = field(default_factory=dict)  # id(module) -> (weakref, (path, line)) where the user built it
    made_in_forward: dict = field(default_factory=dict)  # id(module) -> (weakref, where) built inside a forward
    forward_params: list = field(default_factory=list)  # [(weakref parameter, where, attribute)] of those modules


def describe_cut(name: str, out, grad_off: bool, inference: bool, site_desc: str | None) -> str:
    p = pretty(name)
    if inference:
        return f"`{p}` ran under torch.inference_mode(){site_desc or ''}: its result has no autograd history"
    if grad_off:
        return f"`{p}` ran with gradient recording disabled{site_desc or ''}: its result has no autograd history"
    if name in ("detach", "detach_"):
        return f"`.{name}()` returns a tensor cut from the graph"
    if name == "data":
        return "`.data` returns the values without their autograd history"
    if name in ESCAPES:
        what = {"__float__": "float()", "__int__": "int()", "__index__": "an int index",
                "__complex__": "complex()", "__array__": "a NumPy conversion"}.get(name, f".{name}()")
        return f"{what} turns the tensor into a Python/NumPy value: the autograd graph ends here"
    if name in REWRAP:
        return f"`{name}(...)` copies the values into a new tensor without their autograd history"
    dtype = getattr(out, "dtype", None)
    if dtype is not None and not (dtype.is_floating_point or dtype.is_complex):
        return f"`{p}` returns {str(dtype).replace('torch.', '')} values, which carry no gradient"
    return f"`{p}` returns a tensor that does not require grad"


class Tape:
    """The recorded operations and the leaves they depend on, keyed by tensor identity (weak references)."""

    def __init__(self, torch, loc, sightings: Sightings, clock):
        self.torch = torch
        self.loc = loc
        self.seen = sightings
        self.clock = clock  # -> the current training step
        self.ops: list[Op] = []
        self.cut_ops: list[int] = []
        self.tags: dict[int, tuple] = {}  # id(tensor) -> (weakref, tag); tag >= 0 op index, < 0 leaf
        self.leaves: list[Leaf] = []
        self.leaf_of: dict[int, int] = {}  # id(tensor) -> leaf index
        self.defsite: dict[int, Placed] = {}  # id(parameter) -> where it was created
        # op index -> the tensors a scalar sum added: strong references, dropped at the step's backward
        self.sums: dict[int, tuple] = {}

    def full(self) -> bool:
        return len(self.ops) >= MAX_OPS

    # ---- tags
    def tag_of(self, t):
        e = self.tags.get(id(t))
        if e is not None and e[0]() is t:
            return e[1]
        li = self.leaf_of.get(id(t))
        if li is not None and self.leaves[li].ref() is t:
            return -1 - li
        if t.requires_grad and t.grad_fn is None:
            return -1 - self.new_leaf(t, None, 0, "leaf")
        return None

    def leaf_index(self, t) -> int | None:
        li = self.leaf_of.get(id(t))
        return li if li is not None and self.leaves[li].ref() is t else None

    def new_leaf(self, t, path, line, how) -> int:
        idx = len(self.leaves)
        ds = self.defsite.get(id(t))
        if ds is not None and ds.alive_is(t) and path is None:
            path, line = ds.path, ds.line
        self.leaves.append(Leaf(weakref.ref(t), path, line, how))
        self.leaf_of[id(t)] = idx
        self.tags.pop(id(t), None)
        return idx

    def set_tag(self, t, tag) -> None:
        try:
            self.tags[id(t)] = (weakref.ref(t), tag)
        except TypeError:
            pass

    def bits_of(self, tags) -> int:
        bits = 0
        for tg in tags:
            if tg is None:
                continue
            bits |= (1 << (-1 - tg)) if tg < 0 else self.ops[tg].bits
        return bits

    def add(self, op: Op) -> int:
        idx = len(self.ops)
        self.ops.append(op)
        if op.cut is not None:
            self.cut_ops.append(idx)
        return idx

    def truncate(self, mark: int) -> None:
        """Forget the operations from index `mark` on (a failed attempt)."""
        del self.ops[mark:]
        self.cut_ops = [i for i in self.cut_ops if i < mark]

    # ---- recording
    def record_rewrap(self, data, path, line) -> None:
        """`nn.Parameter(t)` of a tensor with history: a new leaf; what `t` came from is cut here."""
        tag = self.tag_of(data)
        if tag is None or self.full():
            return
        cut = ("`nn.Parameter(...)` makes a new leaf from the values: the tensors they were computed from get no "
               "gradient through it")
        self.add(Op("Parameter", path, line, (tag,), self.bits_of((tag,)), True, False, cut, None, self.clock()))

    def inplace_layer(self) -> tuple:
        """(class name, where it was built) of the `inplace=True` layer whose forward runs the current op."""
        f = sys._getframe(2)
        for _ in range(12):
            if f is None:
                break
            owner = f.f_locals.get("self")
            if isinstance(owner, self.torch.nn.Module) and getattr(owner, "inplace", False) is True:
                found = self.seen.built_at.get(id(owner))
                if found is not None and found[0]() is owner:
                    return type(owner).__name__, found[1]
                return type(owner).__name__, None
            f = f.f_back
        return None, None

    def after_op(self, name, ins, in_tags, req_in, out, pre, kwargs) -> None:
        torch = self.torch
        if self.full():
            return
        path, line = self.loc.where(3)
        bits = self.bits_of(in_tags)
        outs = []
        if isinstance(out, torch.Tensor):
            outs.append(out)
        elif isinstance(out, (tuple, list)):
            outs.extend(o for o in out if isinstance(o, torch.Tensor))
        out_req = any(o.requires_grad for o in outs)
        grad_off = not torch.is_grad_enabled()
        inference = torch.is_inference_mode_enabled()
        cut = None
        site = None
        if req_in and not out_req:
            floating = any(o.dtype.is_floating_point or o.dtype.is_complex for o in outs)
            if name in ESCAPES or name in REWRAP or (outs and (floating or name not in ("__setitem__",))):
                if grad_off or inference:
                    site = self.seen.inference_site if inference else self.seen.grad_site
                desc = f" ({site.text} at line {site.line})" if site is not None else None
                cut = describe_cut(name, outs[0] if outs else out, grad_off, inference, desc)
        if pre is not None and pre[4]:
            bits = 0  # an update or initialisation of a leaf in place (under no_grad): not a use of it
        idx = self.add(Op(name, path, line, in_tags, bits, req_in, out_req, cut, site, self.clock()))
        if name in SUM_OPS and len(outs) == 1 and outs[0].numel() == 1 and len(self.sums) < MAX_SUMS:
            # in place (`loss += term`): the target's earlier value is gone; its tag stands for it
            self.sums[idx] = (in_tags[0], *ins[1:]) if pre is not None and in_tags else tuple(ins)
        if pre is not None:
            tgt = pre[0]
            layer, built = self.inplace_layer()
            self.seen.inplace.append(InPlace(idx, name, path, line, list(pre[2]), pre[1], tgt._version, pre[3],
                                             pre[4], layer, built))
            if name == "requires_grad_":
                if tgt.requires_grad:
                    self.new_leaf(tgt, path, line, "requires_grad_()")
                    self.leaves[self.leaf_of[id(tgt)]] = Leaf(weakref.ref(tgt), path, line, "requires_grad_()")
                else:
                    self.seen.freezes[id(tgt)] = Placed(weakref.ref(tgt), path, line)
                return
            if tgt.is_leaf and tgt.requires_grad:
                return  # in-place on a leaf under no_grad (an update): it stays the same leaf
            self.set_tag(tgt, idx)
            for o in outs:
                if o is not tgt:
                    self.set_tag(o, idx)
            return
        for o in outs:
            if o.requires_grad and o.is_leaf:
                li = self.new_leaf(o, path, line, name)
                self.leaves[li] = Leaf(weakref.ref(o), path, line, name)
            elif req_in and out_req and not o.requires_grad and not (o.dtype.is_floating_point or o.dtype.is_complex):
                # `topk(...).indices`, `max(x, dim)[1]`: integer outputs beside differentiable values are a cut
                j = self.add(Op(name, path, line, in_tags, bits, req_in, False,
                                describe_cut(name, o, grad_off, inference, None), None, self.clock()))
                self.set_tag(o, j)
            else:
                self.set_tag(o, idx)

    def mode(self, is_recording):
        """The TorchFunctionMode that feeds this tape while `is_recording()`."""
        from torch.overrides import TorchFunctionMode

        tape = self
        Tensor = self.torch.Tensor

        class Recorder(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if kwargs is None:
                    kwargs = {}
                if not is_recording():
                    return func(*args, **kwargs)
                name = getattr(func, "__name__", "")
                if name == "__get__":
                    name = getattr(getattr(func, "__self__", None), "__name__", "")
                    if name not in GETSET_KEEP:
                        return func(*args, **kwargs)
                elif name in SKIP_OPS:
                    return func(*args, **kwargs)
                if name == "__set__":
                    return func(*args, **kwargs)
                ins = []
                for a in args:
                    if isinstance(a, Tensor):
                        ins.append(a)
                    elif isinstance(a, (list, tuple)):
                        for b in a:
                            if isinstance(b, Tensor):
                                ins.append(b)
                for a in kwargs.values():
                    if isinstance(a, Tensor):
                        ins.append(a)
                req_in = False
                for t in ins:
                    if t.requires_grad:
                        req_in = True
                        break
                inplace = (name.endswith("_") and not name.startswith("_")) or name in INPLACE_DUNDER or (
                    "out" in kwargs and kwargs["out"] is not None) or kwargs.get("inplace") is True or (
                    name in POSITIONAL_INPLACE and len(args) > POSITIONAL_INPLACE[name]
                    and args[POSITIONAL_INPLACE[name]] is True)
                pre = None
                try:
                    if inplace and ins:
                        tgt = ins[0]
                        gf = tgt.grad_fn
                        pre = (tgt, tgt._version, tuple(tgt.shape), type(gf).__name__ if gf is not None else None,
                               tgt.is_leaf and tgt.requires_grad)
                    in_tags = tuple(tape.tag_of(t) for t in ins) if ins else ()
                except Exception:  # noqa: BLE001 - never break the user's code
                    return func(*args, **kwargs)
                out = func(*args, **kwargs)
                try:
                    tape.after_op(name, ins, in_tags, req_in, out, pre, kwargs)
                except Exception:  # noqa: BLE001
                    pass
                return out

        return Recorder()
