"""The few PyTorch entry points the probe wraps: each patch records what it sees, then calls the original."""

from __future__ import annotations

import re
import sys
import weakref

from ..locate import Placed, Site, site_text
from .recorder import TYPO_RE


def install(probe) -> None:
    torch = probe.torch
    _grad_mode(probe, torch)
    _parameter(probe, torch)
    _setattr(probe, torch)
    _optimizer(probe, torch)
    _modules_made_in_forward(probe, torch)
    _autograd(probe, torch)


def decorator_site(probe) -> Site | None:
    """`@torch.no_grad()` on a user function: the decorator's line (co_firstlineno), not the call site."""
    f = sys._getframe(2)
    while f is not None and not probe.loc.is_user(f.f_code):
        if f.f_code.co_name == "decorate_context":
            func = f.f_locals.get("func")
            code = getattr(func, "__code__", None)
            if code is not None and probe.loc.is_user(code):
                text = site_text(code.co_filename, code.co_firstlineno, "a no_grad decorator")
                return Site(code.co_filename, code.co_firstlineno, f"{text} on {code.co_name}()")
        f = f.f_back
    return None


def _grad_mode(probe, torch) -> None:
    import torch.autograd.grad_mode as gm

    seen = probe.seen
    orig_set = torch._C._set_grad_enabled

    def _set_grad_enabled(mode):
        if probe.recording:
            if not mode and torch.is_grad_enabled():
                seen.grad_site = decorator_site(probe) or probe.loc.site(2, "gradient recording disabled")
            elif mode:
                seen.grad_site = None
        return orig_set(mode)

    torch._C._set_grad_enabled = _set_grad_enabled
    orig_enter, orig_exit = gm.inference_mode.__enter__, gm.inference_mode.__exit__

    def _inf_enter(self_):
        if probe.recording and getattr(self_, "mode", True):
            # `@torch.inference_mode()` on a user function: its line
            seen.inference_site = decorator_site(probe) or probe.loc.site(2, "torch.inference_mode()")
            seen.last_inference_site = seen.inference_site
        return orig_enter(self_)

    def _inf_exit(self_, *a):
        r = orig_exit(self_, *a)
        if not torch.is_inference_mode_enabled():
            seen.inference_site = None
        return r

    gm.inference_mode.__enter__ = _inf_enter
    gm.inference_mode.__exit__ = _inf_exit


def _parameter(probe, torch) -> None:
    param_new = torch.nn.Parameter.__new__
    tape = probe.tape

    def _param_new(cls, data=None, requires_grad=True):
        p = param_new(cls, data, requires_grad)
        try:
            path, line = probe.loc.where(2)
            tape.defsite[id(p)] = Placed(weakref.ref(p), path, line)
            if probe.recording and isinstance(data, torch.Tensor) and data.requires_grad:
                tape.record_rewrap(data, path, line)
        except Exception:  # noqa: BLE001
            pass
        return p

    torch.nn.Parameter.__new__ = staticmethod(_param_new)


def _setattr(probe, torch) -> None:
    seen = probe.seen
    made = seen.made_in_forward
    tensor_setattr = torch.Tensor.__setattr__

    def _tensor_setattr(self_, attr, value):
        if attr == "requires_grad" and probe.recording:
            path, line = probe.loc.where(2)
            if not value:
                seen.freezes[id(self_)] = Placed(weakref.ref(self_), path, line)
            else:
                seen.freezes.pop(id(self_), None)
        elif TYPO_RE.match(attr) and probe.recording:
            path, line = probe.loc.where(2)
            seen.typos.append((Placed(weakref.ref(self_), path, line), attr))
        return tensor_setattr(self_, attr, value)

    torch.Tensor.__setattr__ = _tensor_setattr
    module_setattr = torch.nn.Module.__setattr__

    def _module_setattr(self_, attr, value):
        # nn.Module has no requires_grad flag: assigning one only adds a plain attribute
        if attr == "requires_grad" and probe.recording:
            path, line = probe.loc.where(2)
            seen.module_flags.append((Placed(weakref.ref(self_), path, line), bool(value)))
        elif made and isinstance(value, torch.nn.Parameter) and id(self_) in made:
            ref, where = made[id(self_)]
            if ref() is self_:
                seen.forward_params.append((weakref.ref(value), where, attr))
        return module_setattr(self_, attr, value)

    torch.nn.Module.__setattr__ = _module_setattr


def _optimizer(probe, torch) -> None:
    book = probe.optimizers
    opt_init = torch.optim.Optimizer.__init__

    def _opt_init(self_, params, *a, **k):
        if isinstance(params, (list, tuple)):
            probe.note_nonleaf_optimized(params)
        r = opt_init(self_, params, *a, **k)
        path, line = probe.loc.where_built(self_, 2)
        book.built(self_, path, line)
        return r

    torch.optim.Optimizer.__init__ = _opt_init
    try:
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
    except ImportError:
        return

    def _pre(opt, *_a):
        if probe.recording:
            path, line = probe.loc.where(2)
            book.stepping(opt, path, line, probe.step)
        probe.paused = probe.recording
        probe.recording = False

    def _post(*_a):
        probe.recording = probe.paused
        probe.paused = False

    register_optimizer_step_pre_hook(_pre)
    register_optimizer_step_post_hook(_post)


def _modules_made_in_forward(probe, torch) -> None:
    """A layer constructed while a module's `forward` runs: new weights on every call, in no optimizer."""
    seen = probe.seen
    module_init = torch.nn.Module.__init__

    def _module_init(self_, *a, **k):
        module_init(self_, *a, **k)
        try:
            seen.built_at[id(self_)] = (weakref.ref(self_), probe.loc.where_built(self_, 2))
        except Exception:  # noqa: BLE001
            pass
        if probe.recording:
            try:
                made = made_in_forward(probe, torch, self_)
                if made is not None:
                    seen.made_in_forward[id(self_)] = (weakref.ref(self_), made)
            except Exception:  # noqa: BLE001
                pass

    torch.nn.Module.__init__ = _module_init


def made_in_forward(probe, torch, module) -> dict | None:
    """Where `module` is being built, if that is inside the `forward` of another module of the user's."""
    f = sys._getframe(2)
    site = None
    while f is not None:
        if probe.loc.is_user(f.f_code):
            if site is None:
                site = (f.f_code.co_filename, f.f_lineno)
            owner = f.f_locals.get("self")
            if f.f_code.co_name == "forward" and isinstance(owner, torch.nn.Module) and owner is not module:
                text = site_text(site[0], site[1], "")
                m = re.match(r"\s*(?:self\.)?(\w+)\s*=", text)
                return {"path": site[0], "line": site[1], "cls": type(module).__name__,
                        "owner": type(owner).__name__, "var": m.group(1) if m else None}
        f = f.f_back
    return None


def _autograd(probe, torch) -> None:
    orig_backward = torch.autograd.backward

    def _backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, grad_variables=None,
                  inputs=None):
        return probe.on_backward(orig_backward, tensors, grad_tensors, retain_graph, create_graph, inputs)

    torch.autograd.backward = _backward
    orig_grad = torch.autograd.grad

    def _grad(outputs, inputs, *a, **k):
        return probe.on_grad(orig_grad, outputs, inputs, a, k)

    torch.autograd.grad = _grad
