"""What the TensorFlow plug-in's run concludes, for the GT2xx rules (only what lies in the file checked)."""

from __future__ import annotations

import ast
from functools import cached_property

from gradtrace.analysis.frameworks.common import in_file
from gradtrace.analysis.frameworks.tensorflow.events import VarInfo
from gradtrace.analysis.frameworks.tensorflow.plugin import TensorFlowPlugin
from gradtrace.records import field, record


@record
class LayerClass:
    """A class of the file with the attributes its methods set (joined over every assignment)."""

    info: object  # modules.ClassInfo
    attrs: dict = field(default_factory=dict)

    @property
    def node(self) -> ast.ClassDef:
        return self.info.node

    @property
    def methods(self) -> dict:
        return self.info.methods

    @property
    def bases(self) -> list[str]:
        return self.info.bases


class TFFacts:
    def __init__(self, plugin: TensorFlowPlugin):
        self.plugin = plugin
        root = plugin.interp.root
        local = in_file(root.source)
        self.variables: dict[str, VarInfo] = {k: v for k, v in plugin.variables.items() if v.local}
        self.layers_per_step = {n: why for n, why in plugin.layers_per_step.items() if local(n)}
        self.tapes = {node: t for node, t in plugin.tapes.items() if local(node)}
        self.grad_calls = {node: c for node, c in plugin.grad_calls.items() if local(node)}
        self.lost_cuts = {node: lc for node, lc in plugin.lost_cuts.items() if local(node)}
        self.rebinds = {stmt: r for stmt, r in plugin.rebinds.items() if local(stmt)}
        self.after_targets = {n: t for n, t in plugin.targets.after.items() if local(n)}
        self.forward_outside = {n: t for n, t in plugin.targets.forward.items() if local(n)}
        self.early_sources = {n: s for n, s in plugin.targets.early_sources.items() if local(n)}
        self.traced_numpy = {n: why for n, why in plugin.traced_numpy.items() if local(n)}
        self.outside_targets = {n: t for n, t in plugin.targets.outside.items() if local(n)}
        self.stale_losses = {n: t for n, t in plugin.targets.stale.items() if local(n) and local(t[1])}
        self.misapplied = {n: m for n, m in plugin.misapplied.items() if local(n)}
        self.frozen_fits = {n: f for n, f in plugin.frozen_fits.items() if local(n) and local(f[1])}
        self.unbuilt_reads = {n: sink for n, sink in plugin.unbuilt_reads.items() if local(n)}
        self.custom_gradients = {n: c for n, c in plugin.custom_gradients.items() if local(n)}
        self.call_live = plugin.call_live
        self.call_incomplete = plugin.call_incomplete
        self.functions = root.functions
        self.classes = {name: LayerClass(info, plugin.class_attrs.get(name, {})) for name, info in root.classes.items()}

    def is_module_class(self, cls: LayerClass) -> bool:
        return self.plugin.is_module_class(cls.info)

    def name(self, origin: str) -> str:
        return self.plugin.origin_names.get(origin, origin)

    def names(self, origins) -> list[str]:
        named = {self.name(o) for o in origins if o in self.plugin.origin_names}
        if named:
            return sorted(named)
        return sorted({self.describe(o) for o in origins})

    def describe(self, origin: str) -> str:
        kind, _, where = origin.partition("@")
        line = where.split(":")[0]
        label = self.plugin.layer_labels.get(origin.split("#")[0])
        if label:
            return f"the layer `{label}` created on line {line}"
        return f"the {'layer' if kind == 'module' else 'variable'} created on line {line}"

    @cached_property
    def applied_gradients(self) -> bool:
        return any(c.applied for c in self.grad_calls.values())
