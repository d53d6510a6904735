"""The analysis of one file: a single interpreter run with the plug-in of every framework the file uses.

A file that imports both JAX and PyTorch is run once, with both plug-ins; each framework's facts (`ctx.torch`,
`ctx.tensorflow`, `ctx.jax`) are read from the same run. The TensorFlow and JAX plug-ins come first: they
answer only for the values they own when another framework shares the file, and PyTorch takes the rest.
"""

from __future__ import annotations

from functools import cached_property

from gradtrace.analysis.core.interpreter import Interpreter
from gradtrace.analysis.modules import ModuleContext

ORDER = ("tensorflow", "jax", "torch")


def plugin_class(framework: str):
    if framework == "torch":
        from gradtrace.analysis.frameworks.torch.plugin import TorchPlugin

        return TorchPlugin
    if framework == "tensorflow":
        from gradtrace.analysis.frameworks.tensorflow.plugin import TensorFlowPlugin

        return TensorFlowPlugin
    from gradtrace.analysis.frameworks.jax.plugin import JaxPlugin

    return JaxPlugin


class FileAnalysis:
    def __init__(self, ctx, frameworks: frozenset):
        self.frameworks = frozenset(f for f in frameworks if f in ORDER)
        self.module = ModuleContext(ctx.source, ctx.names, ctx.project, {})
        plugins = tuple(plugin_class(f) for f in ORDER if f in self.frameworks)
        self.interp = Interpreter(self.module, plugins)

    @cached_property
    def run(self) -> Interpreter:
        return self.interp.run()

    def plugin(self, framework: str):
        return self.run.by_name[framework]

    @property
    def incomplete(self) -> bool:
        return self.run.incomplete

    @property
    def error(self) -> str | None:
        return self.run.error
