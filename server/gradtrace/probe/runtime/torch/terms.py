"""Dead loss terms: the loss is split into its summands (through the scalar additions the tape kept), and each
summand is differentiated on its own. A summand that no trainable parameter reaches adds nothing to training,
even when the other summands train the very same parameters, so the parameters' gradients do not show it.
"""

from __future__ import annotations

from .recorder import ESCAPES, REWRAP, SAMPLING_OPS, ZERO_GRAD_OPS, pretty

MAX_TERMS = 8  # summands differentiated one by one (each costs a backward pass of its own)


def summands(tape, root) -> list:
    """The tensors the scalar `root` is the sum of (itself when it is not a recorded sum)."""
    out, seen = [], set()
    stack = [root]
    while stack and len(out) <= MAX_TERMS:
        t = stack.pop()
        if t is None:
            continue
        tag = t if isinstance(t, int) else tape.tag_of(t)  # an int: an earlier value summed in place
        entry = tape.sums.get(tag) if tag is not None and tag >= 0 else None
        if entry is None or tag in seen:
            if not isinstance(t, int):
                out.append(t)
            continue
        seen.add(tag)
        stack.extend(reversed(entry))
    return out


def dead_terms(probe, root, differentiate) -> list[dict]:
    """One entry per summand of `root` that no trainable parameter reaches, with its line and its cause."""
    torch = probe.torch
    if not isinstance(root, torch.Tensor) or root.numel() != 1 or not root.requires_grad:
        return []  # a loss that carries no gradient at all fails its backward: that error says it
    terms = [t for t in summands(probe.tape, root) if isinstance(t, torch.Tensor)]
    if not 2 <= len(terms) <= MAX_TERMS:
        return []
    trainable = [p for p in probe.params.objs.values() if p.is_leaf and p.requires_grad]
    found = []
    for term in terms:
        tag = probe.tape.tag_of(term)
        if tag is None or tag < 0:
            continue  # a constant or a parameter added as it is
        op = probe.tape.ops[tag]
        anc = probe.lineage.ancestry([term])
        cuts = sorted(i for i in probe.tape.cut_ops if i in anc)
        if not term.requires_grad:
            if not cuts and not op.bits:
                cuts = _rebuilt_from_python(probe.tape, anc)
                if not cuts:
                    continue  # built from data alone: a constant offset, nothing lost
            found.append(_entry(probe, op, cuts, "none"))
            continue
        if not trainable:
            continue
        grads = differentiate(term, trainable)
        if all(g is None for g in grads):
            found.append(_entry(probe, op, cuts, "none"))
        elif all(g is None or not bool((g != 0).any()) for g in grads):
            zero = [i for i in sorted(anc) if probe.tape.ops[i].name in ZERO_GRAD_OPS | SAMPLING_OPS]
            if zero:  # a zero derivative explains it (an intended `0 * p.sum()` stays quiet)
                found.append(_entry(probe, op, zero, "zero"))
    return found


def _rebuilt_from_python(tape, anc) -> list[int]:
    """A term rebuilt from Python numbers (`torch.tensor(x.item())`): the `.item()`/`float()` of a trainable value
    that came last before the rebuilding, in the same step."""
    rebuilt = [i for i in sorted(anc) if tape.ops[i].name in REWRAP]
    if not rebuilt:
        return []
    first = rebuilt[0]
    step = tape.ops[first].step
    escapes = [i for i in tape.cut_ops if i < first and tape.ops[i].step == step and tape.ops[i].name in ESCAPES
               and tape.ops[i].bits]
    return escapes[-1:]


def _entry(probe, op, cuts, grad) -> dict:
    names = probe.params.names_by_leaf()
    cut = None
    params: list[str] = []
    if cuts:
        first = probe.tape.ops[cuts[0]]
        path, line = first.where
        cut = {"path": path, "line": line, "op": pretty(first.name), "reason": first.cut or
               f"`{pretty(first.name)}` has a zero derivative almost everywhere"}
        params = [n for li, n in names.items() if first.bits >> li & 1]
    return {"path": op.path, "line": op.line, "grad": grad, "cut": cut, "params": params[:16]}
