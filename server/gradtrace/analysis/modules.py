"""Module facts: for every `nn.Module` class, what it registers, what it forgets, what forward uses.

Also the per-file `ModuleContext` (a parsed file with its name table, classes and functions) that the
value flow walks, in this file or in a project file a model is imported from.
"""

from __future__ import annotations

import ast
import bisect
import re
from functools import cache, cached_property

from gradtrace.analysis.frameworks.torch import api
from gradtrace.analysis.names import NameTable
from gradtrace.analysis.skeleton import body_text, function_text, unread_body
from gradtrace.analysis.source import SourceFile, node_fields
from gradtrace.records import field, record

DYNAMIC_SELF_ACCESS = {"modules", "children", "named_children", "named_modules", "_modules", "__dict__",
                       "parameters", "named_parameters", "state_dict", "_parameters", "apply"}
REGISTERING_METHODS = {"register_parameter", "add_module", "register_module"}

# Text that may hold a fact of the class besides reads (an attribute stored on `self`, an item put into one, a
# dynamic access, `self` handed to a call or iterated): a superset, found in a body not parsed yet, so that a body
# without any stays unparsed. `[\s\\)]*` lets line continuations and parentheses sit between the words.
_GAP = r"[\s\\)]*"
_SELF_FACT_SOURCE = (
    rf"self{_GAP}\.[\s\\]*\w+{_GAP}(?:\[|=(?!=)|:)"  # self.x = ..., self.x[k] = ..., self.x: T = ...
    rf"|self{_GAP}\.[\s\\]*\w+{_GAP}\.[\s\\]*(?:append|extend|insert)\b"  # self.layers.append(...)
    rf"|self{_GAP}\.[\s\\]*(?:{'|'.join(sorted(DYNAMIC_SELF_ACCESS | REGISTERING_METHODS))})\b"
    r"|(?:^|[(,=])[\s\\]*self[\s\\]*(?:[),#=]|$)"  # self as an argument: f(self), f(x, k=self)
    r"|\bin[\s\\(]+self\b(?![\s\\)]*\.)"  # for m in self
)


@cache
def _self_fact_text() -> re.Pattern:
    return re.compile(_SELF_FACT_SOURCE, re.MULTILINE)  # compiled on first use: a file with no class needs none


@cache
def _stored_attr_text() -> re.Pattern:
    """`self.<name>` and what stores into it (`= ...`, `[k] = ...`, `: T = ...`, `.append(...)`), the name captured:
    one pattern for every attribute (compiling one per name asked for cost more than the search)."""
    return re.compile(rf"self{_GAP}\.[\s\\]*(\w+){_GAP}(?:\[|=(?!=)|:|\.[\s\\]*(?:append|extend|insert)\b)")


_WORD = re.compile(r"\w+")


@record(eq=False)
class AttrInfo:
    name: str
    kind: str  # module | param | param_converted | tensor_grad | tensor | modules_container | params_container | other
    stmt: ast.stmt
    value: ast.expr
    layer: str | None = None  # qualified built-in layer name or project class name
    container: str | None = None  # list | dict | tuple
    method: str = "__init__"


@record(eq=False)
class ClassInfo:
    name: str
    node: ast.ClassDef
    module: ModuleContext
    bases: list[str]
    # name -> method, taken from the class's body when first asked for (the body of a class of an imported file is
    # parsed then: `analysis/skeleton.py`)
    _methods: dict[str, ast.FunctionDef] | None = None
    _attrs: dict[str, AttrInfo] = field(default_factory=dict)
    _reads: set[str] = field(default_factory=set)  # self.X read outside its own assignment
    _dynamic: bool = False  # iterates its own submodules, getattr(self, ...), setattr, ...
    _is_module: bool | None = None
    # methods left unparsed by the facts (an imported class's body with no text of a fact): the attributes they
    # read are looked for on demand (`reads_attr`), or all at once (`reads`)
    _unwalked: list = field(default_factory=list)
    _called: dict = field(default_factory=dict)  # attribute -> whether a method calls `self.<attribute>(...)`
    # attribute name -> its fact, found without the class's whole facts (None -> whether that can be done)
    _named: dict = field(default_factory=dict)
    # id(method) -> the attributes its text may store (None: no text, a whole parse) / the words of its body
    _stored: dict = field(default_factory=dict)
    _words: dict = field(default_factory=dict)

    # Attribute facts are collected per class on first use: resolving a class of another module (a base,
    # a layer type) needs only its definitions, never the facts of everything it imports.
    _facts: bool = False

    @property
    def methods(self) -> dict[str, ast.FunctionDef]:
        if self._methods is None:
            self._methods = {item.name: item for item in self.node.body
                             if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
        return self._methods

    def ensure_facts(self) -> None:
        if not self._facts:
            self._facts = True  # first: a cycle through base classes sees the facts collected so far
            collect_class_facts(self)

    @property
    def attrs(self) -> dict[str, AttrInfo]:
        self.ensure_facts()
        return self._attrs

    @property
    def reads(self) -> set[str]:
        """Every attribute of `self` its methods read (parses the methods the other facts left unparsed)."""
        self.ensure_facts()
        while self._unwalked:
            _collect_reads(self, self._unwalked.pop())
        return self._reads

    def attr_named(self, name: str) -> AttrInfo | None:
        """The fact of one attribute. In a class of a lazily parsed file, only the methods whose text may store it
        are parsed: what a class knows of an attribute comes from statements that name it (`self.x = ...`,
        `self.x[k] = ...`, `self.x.append(...)`), taken in the same order as for the whole facts."""
        if None not in self._named:  # are some of its methods from a lazily parsed file?
            self._named[None] = any(body_text(m) is not None for m in self.methods.values())
        if self._facts or not self._named[None]:
            return self.attrs.get(name)
        if name not in self._named:
            methods = {}
            for method_name, method in self.methods.items():
                stored = self._stored.get(id(method), False)
                if stored is False:
                    text = body_text(method)
                    stored = self._stored[id(method)] = \
                        None if text is None else frozenset(_stored_attr_text().findall(text))
                if stored is None or name in stored:
                    methods[method_name] = method
            part = ClassInfo(self.name, self.node, self.module, self.bases, methods)
            collect_class_facts(part)
            self._named[name] = part._attrs.get(name)
        return self._named[name]

    def calls_attr(self, name: str) -> bool:
        """Does a method of the class call `self.<name>(...)` (a layer or function it was given)?"""
        found = self._called.get(name)
        if found is None:
            node = self.node
            lines = self.module.source.lines.lines[node.lineno - 1:(node.end_lineno or node.lineno)]  # split once per file
            call = re.compile(rf"\bself\.{re.escape(name)}\s*\(")
            found = self._called[name] = any(call.search(line) for line in lines)
        return found

    def reads_attr(self, name: str) -> bool:
        """Whether a method reads `self.<name>`: a method whose text never names it stays unparsed."""
        self.ensure_facts()
        if name in self._reads:
            return True
        for method in list(self._unwalked):
            words = self._words.get(id(method))
            if words is None:
                body = unread_body(method)
                words = self._words[id(method)] = frozenset(_WORD.findall(body)) if body is not None else ()
            if not words or name in words:
                self._unwalked.remove(method)
                _collect_reads(self, method)
        return name in self._reads

    @property
    def dynamic(self) -> bool:
        self.ensure_facts()
        return self._dynamic

    def builtin_base(self) -> str | None:
        """The torch.nn layer this class extends directly (e.g. torch.nn.Linear), if any."""
        for base in self.bases:
            if base.startswith("torch.nn.") and base.split(".")[-1] in api.BUILTIN_PARAMS:
                return base
        for base in self.bases:
            parent = self.module.resolve_class(base)
            if parent is not None and parent is not self:
                found = parent.builtin_base()
                if found:
                    return found
        return None

    @property
    def is_module(self) -> bool:
        if self._is_module is None:
            self._is_module = False  # guards cycles
            result = False
            for base in self.bases:
                if api.is_layer_class(base) or base in ("nn.Module", "Module"):
                    result = True
                    break
                parent = self.module.resolve_class(base)
                if parent is not None and parent is not self and parent.is_module:
                    result = True
                    break
            self._is_module = result
        return self._is_module

    @cached_property
    def constructor_freezes(self) -> tuple:
        """(attribute path under `self`, statement, conditional) for each part of the module its `__init__`
        freezes: `self.encoder.requires_grad_(False)`, `for p in self.encoder.parameters(): p.requires_grad =
        False` (conditional: under an `if` or a loop of its own)."""
        init = self.methods.get("__init__")
        return tuple(_freezes_in(init.body, False)) if init is not None else ()

    @cached_property
    def is_autograd_function(self) -> bool:
        """A custom `torch.autograd.Function`."""
        return self.extends(lambda base: base in ("torch.autograd.Function", "torch.autograd.function.Function"))

    @cached_property
    def returns_input_as_is(self) -> bool:
        """A torch.autograd.Function whose `forward` returns one of its inputs itself (after changing it in place, or
        untouched) without `ctx.mark_dirty`: PyTorch hands back a view of the input, which no in-place op may touch."""
        if not self.is_autograd_function:
            return False
        forward = self.methods.get("forward")
        if forward is None:
            return False
        inputs = {a.arg for a in forward.args.args[1:]}
        returns = [n for n in ast.walk(forward) if isinstance(n, ast.Return)]
        rebound = {t.id for n in ast.walk(forward) if isinstance(n, ast.Assign) for t in n.targets
                   if isinstance(t, ast.Name)}
        dirty = any(isinstance(n, ast.Attribute) and n.attr == "mark_dirty" for n in ast.walk(forward))
        return bool(returns) and not dirty and all(
            isinstance(r.value, ast.Name) and r.value.id in inputs and r.value.id not in rebound for r in returns)

    @cached_property
    def is_optimizer(self) -> bool:
        """A project class extending a torch.optim optimizer (directly or through project classes)."""
        return self.extends(lambda base: base.startswith(api.OPTIMIZER_PREFIXES)
                            and base.split(".")[-1][:1].isupper() and "lr_scheduler" not in base)

    def extends(self, external, _seen: frozenset = frozenset()) -> bool:
        """Whether a base, or a base of a project base, is an external class for which `external(qualname)`."""
        for base in self.bases:
            if external(base):
                return True
            parent = self.module.resolve_class(base)
            if parent is not None and id(parent) not in _seen and parent is not self \
                    and parent.extends(external, _seen | {id(self)}):
                return True
        return False

    def has_parameters(self, _seen: set | None = None) -> bool:
        """Whether instances own trainable parameters (True when unsure)."""
        seen = _seen or set()
        if id(self) in seen:
            return False
        seen.add(id(self))
        if self.dynamic:
            return True
        base = self.builtin_base()
        if base and api.BUILTIN_PARAMS.get(base.split(".")[-1]):
            return True
        for attr in self.attrs.values():
            if attr.kind in ("param", "tensor_grad", "params_container", "modules_container"):
                return True
            if attr.kind == "module":
                short = (attr.layer or "").split(".")[-1]
                if short in api.PARAMETERLESS_LAYERS:
                    continue
                child = self.module.resolve_class(attr.layer) if attr.layer and "." not in attr.layer else None
                if child is None or child.has_parameters(seen):
                    return True
        for base_name in self.bases:
            parent = self.module.resolve_class(base_name)
            if parent is not None and parent is not self and parent.has_parameters(seen):
                return True
        return False

    def find_method(self, name: str) -> tuple[ast.FunctionDef, ClassInfo] | None:
        if name in self.methods:
            return self.methods[name], self
        for base in self.bases:
            parent = self.module.resolve_class(base)
            if parent is not None and parent is not self:
                found = parent.find_method(name)
                if found:
                    return found
        return None

    def find_attr(self, name: str) -> AttrInfo | None:
        found = self.attr_named(name)
        if found is not None:
            return found
        for base in self.bases:
            parent = self.module.resolve_class(base)
            if parent is not None and parent is not self:
                found = parent.find_attr(name)
                if found:
                    return found
        return None


class ModuleContext:
    """One parsed file as the value flow sees it."""

    def __init__(self, source: SourceFile, names: NameTable, project=None, registry: dict | None = None):
        self.source = source
        self.names = names
        self.project = project
        self.registry = registry if registry is not None else {}  # path -> ModuleContext, shared
        self.registry[source.path] = self
        self.classes: dict[str, ClassInfo] = {}
        self.functions: dict[str, ast.FunctionDef] = {}
        self._collect()

    @property
    def path(self) -> str:
        return self.source.path

    @cached_property
    def top_assigned(self) -> frozenset[str]:
        """Names module-level statements bind other than by `def`, `class` and `import` (globals that change)."""
        names: set[str] = set()
        stack = list(self.source.tree.body)
        while stack:
            stmt = stack.pop()
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
                continue
            targets = []
            if isinstance(stmt, ast.Assign):
                targets = stmt.targets
            elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
                targets = [stmt.target]
            elif isinstance(stmt, (ast.For, ast.AsyncFor)):
                targets = [stmt.target]
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                targets = [i.optional_vars for i in stmt.items if i.optional_vars is not None]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            for block in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(stmt, block, None) or [])
            if isinstance(stmt, ast.ExceptHandler) and stmt.name:
                names.add(stmt.name)
        for stmt in self.source.tree.body if ":=" in self.source.text else ():  # (a model zoo's table of
            # configurations is one module-level expression of thousands of nodes: walked only when it can matter)
            for node in ast.walk(stmt) if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                ast.ClassDef)) else ():
                if isinstance(node, ast.NamedExpr) and isinstance(node.target, ast.Name):
                    names.add(node.target.id)
        return frozenset(names)

    def global_reads(self, fn: ast.AST) -> tuple:
        """Names in `top_assigned` that the function `fn` (or anything nested in it) reads: from a walk of that
        function alone, on first use (an imported module is never walked whole for this)."""
        table = self.__dict__.setdefault("_global_reads", {})
        found = table.get(id(fn))
        if found is None:
            assigned = self.top_assigned
            if assigned and "index" in self.source.__dict__ and getattr(fn, "end_lineno", None):
                found = table[id(fn)] = self._indexed_reads(fn)  # the file's node index is built: no walk
                return found
            text = function_text(fn) if assigned else None
            if text is not None:  # only the names its text holds can be read (a walk decides which are)
                assigned = frozenset(name for name in assigned if name in text)
            found = table[id(fn)] = _names_read(fn, assigned) if assigned else ()
        return found

    def _indexed_reads(self, fn: ast.AST) -> tuple:
        """`global_reads` from the node index: the reads of the names in `top_assigned` that lie between the
        function's start (its `def`: decorators come before) and its end."""
        reads = self.__dict__.get("_assigned_reads")
        if reads is None:
            top = self.top_assigned
            reads = self.__dict__["_assigned_reads"] = sorted(
                ((n.lineno, n.col_offset), n.id) for n in self.source.nodes(ast.Name)
                if n.id in top and n.ctx.__class__ is ast.Load)
        end = (fn.end_lineno, fn.end_col_offset)
        read = set()
        for i in range(bisect.bisect_left(reads, ((fn.lineno, fn.col_offset),)), len(reads)):
            position, name = reads[i]
            if position >= end:
                break
            read.add(name)
        return tuple(sorted(read))

    def _collect(self) -> None:
        for node in self.source.tree.body:
            self._collect_def(node)

    @cached_property
    def called_names(self) -> set[str]:
        """Names called anywhere in the file, or passed as callbacks (only the checked file needs this)."""
        called: set[str] = set()
        for node in self.source.nodes(ast.Call):
            if isinstance(node.func, ast.Name):
                called.add(node.func.id)
            for arg in node.args:  # functions passed as callbacks count as used
                if isinstance(arg, ast.Name):
                    called.add(arg.id)
        return called

    @cached_property
    def attr_loads(self) -> set[str]:
        """Every `.X` read anywhere in the file, and short strings (getattr(model, "head"), config keys)."""
        loads: set[str] = set()
        for node in self.source.nodes(ast.Attribute):
            if isinstance(node.ctx, ast.Load) and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                loads.add(node.attr)
        for node in self.source.nodes(ast.Constant):
            if isinstance(node.value, str) and len(node.value) < 64:
                loads.add(node.value)
        return loads

    def _collect_def(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            bases = [self.names.qualname(b) or "" for b in node.bases]
            self.classes[node.name] = ClassInfo(node.name, node, self, bases)
        elif isinstance(node, ast.If):  # `if TYPE_CHECKING:` / version switches / __main__ defs
            for child in node.body + node.orelse:
                self._collect_def(child)
        elif isinstance(node, ast.Try):
            for child in node.body:
                self._collect_def(child)

    def resolve_class(self, qualified: str) -> ClassInfo | None:
        """A class defined here, or in a project file this file imports it from."""
        if not qualified:
            return None
        if qualified in self.classes:
            return self.classes[qualified]
        head = qualified.split(".")[0]
        imported = self.names.project_imports.get(head)
        if imported and self.project is not None:
            other = self.import_module(imported[0], imported[1])
            if other is not None:
                return other.classes.get(imported[2] if "." not in qualified else qualified.split(".")[-1])
        return None

    def resolve_function(self, name: str) -> tuple[ast.FunctionDef, ModuleContext] | None:
        if name in self.functions:
            return self.functions[name], self
        imported = self.names.project_imports.get(name)
        if imported and self.project is not None:
            other = self.import_module(imported[0], imported[1])
            if other is not None and imported[2] in other.functions:
                return other.functions[imported[2]], other
        return None

    def import_module(self, module: str | None, level: int) -> ModuleContext | None:
        path = self.project.resolve_module(self.path, module, level)
        if not path:
            return None
        if path in self.registry:
            return self.registry[path]
        source = self.project.source(path, lazy=True)
        if source is None or source.tree is None:
            return None
        shared = self.project.module_context(source)  # facts of an imported file, built once per version
        if shared is None:
            imports = source.imports
            shared = ModuleContext(source, NameTable.from_module(source.tree, imports), self.project, {})
            self.project.remember_module_context(source, shared)
        self.registry[path] = shared
        return shared


def _is_self_attr(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def classify_value(value: ast.expr, module: ModuleContext, depth: int = 0) -> tuple[str, str | None, str | None]:
    """(kind, layer, container) of an attribute's assigned value."""
    names = module.names
    if isinstance(value, (ast.List, ast.Tuple, ast.Set)):
        kinds = [classify_value(e, module, depth)[0] for e in value.elts]
        container = "list" if isinstance(value, ast.List) else "tuple"
        return _container_kind(kinds, container)
    if isinstance(value, (ast.ListComp, ast.GeneratorExp)):
        return _container_kind([classify_value(value.elt, module, depth)[0]], "list")
    if isinstance(value, ast.Dict):
        kinds = [classify_value(v, module, depth)[0] for v in value.values if v is not None]
        return _container_kind(kinds, "dict")
    if isinstance(value, ast.DictComp):
        return _container_kind([classify_value(value.value, module, depth)[0]], "dict")
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in ("tuple", "list") \
            and len(value.args) == 1 and not value.keywords \
            and isinstance(value.args[0], (ast.GeneratorExp, ast.ListComp, ast.List, ast.Tuple)):
        kind, layer, _ = classify_value(value.args[0], module, depth)  # tuple(nn.Linear(...) for ...)
        return kind, layer, value.func.id
    if isinstance(value, ast.Call):
        qn = names.qualname(value.func)
        if isinstance(value.func, ast.Attribute) and isinstance(value.func.value, ast.Call):
            inner_kind, layer, _ = classify_value(value.func.value, module, depth)
            method = value.func.attr
            if inner_kind == "param" and method in api.NONLEAF_METHODS:
                return "param_converted", layer, None
            if inner_kind in ("tensor_grad", "tensor"):
                if method == "requires_grad_":
                    return "tensor_grad", None, None
                return inner_kind, None, None
            if inner_kind == "module" and method in ("to", "cuda", "cpu", "double", "float", "half", "train", "eval",
                                                     "requires_grad_"):
                return "module", layer, None
        tensor_class = api.nn_tensor_class(qn) if qn else None
        if tensor_class is not None:  # `nn.Parameter(t)`; `nn.Buffer(t)` is a registered tensor without gradient
            return ("param" if tensor_class == "param" else "tensor"), None, None
        if qn and api.is_layer_class(qn):
            return "module", qn, None
        if qn and qn.startswith("torch.") and qn.split(".")[-1] in api.FACTORIES:
            for kw in value.keywords:
                if kw.arg == "requires_grad" and isinstance(kw.value, ast.Constant) and kw.value.value is True:
                    return "tensor_grad", None, None
            return "tensor", None, None
        if qn == "copy.deepcopy" and value.args:
            kind, layer, _ = classify_value(value.args[0], module, depth)
            return ("module", layer, None) if kind == "module" else ("other", None, None)
        if isinstance(value.func, ast.Name):
            cls = module.resolve_class(value.func.id)
            if cls is not None and cls.is_module:
                return "module", cls.name, None
            factory = module.functions.get(value.func.id)
            if factory is not None and _returns_module(factory, module, depth):
                return "module", None, None
        elif qn:
            cls = module.resolve_class(qn)
            if cls is not None and cls.is_module:
                return "module", cls.name, None
    return "other", None, None


def _returns_module(fn: ast.FunctionDef, module: ModuleContext, depth: int = 0) -> bool:
    """A same-file factory (`def mlp(d): return nn.Sequential(...)`) whose every return builds a module."""
    if depth > 3:
        return False
    returns = [n.value for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None]
    if not returns:
        return False
    for value in returns:
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in module.functions:
            if not _returns_module(module.functions[value.func.id], module, depth + 1):
                return False
        elif classify_value(value, module, depth + 1)[0] != "module":
            return False
    return True


def layer_holds_parameters(layer: str | None, module: ModuleContext) -> bool:
    """Whether a layer (a torch.nn layer or a project class, as `classify_value` names it) owns parameters: not
    `nn.ReLU`, `nn.CrossEntropyLoss` or a rotary embedding holding buffers (True when unsure)."""
    if not layer:
        return True
    if api.is_layer_class(layer):
        return layer.split(".")[-1] not in api.PARAMETERLESS_LAYERS
    cls = module.resolve_class(layer)
    return cls is None or not cls.is_module or cls.has_parameters()


def _container_kind(kinds: list[str], container: str) -> tuple[str, str | None, str | None]:
    # one layer in a plain list (even beside an activation, or in a list of lists) is hidden from the module
    if kinds and any(k in ("module", "modules_container") for k in kinds):
        return "modules_container", None, container
    if kinds and all(k in ("param", "tensor_grad") for k in kinds):
        return "params_container", None, container
    return "other", None, container


def collect_class_facts(info: ClassInfo) -> None:
    """Attributes, reads and dynamic access of one class, from one pre-order walk of its methods."""
    module = info.module
    assigns: list = []
    loads: list = []
    calls: list = []
    loops: list = []
    for method_name, method in info.methods.items():
        body = unread_body(method)
        if body is not None and not _self_fact_text().search(body):
            if "self" in body:  # what it reads is found when asked for; its body stays unparsed until then
                info._unwalked.append(method)
            continue
        method_assigns, method_loads, method_calls, method_loops = _fact_nodes(module, method)
        assigns.extend((node, method_name) for node in method_assigns)
        loads += method_loads
        calls += method_calls
        loops += method_loops
    stored_items: list = []  # `self.layers[k] = nn.Linear(...)`: what goes into a container attribute
    for node, method_name in assigns:
        value = node.value
        if value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        pairs = []
        for target in targets:
            if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts):
                pairs.extend(zip(target.elts, value.elts))  # `self.eps, self.threshold = eps, threshold`
            else:
                pairs.append((target, value))
        for target, value in pairs:
            if isinstance(target, ast.Subscript) and _is_self_attr(target.value):
                stored_items.append((_is_self_attr(target.value), value))
                continue
            attr = _is_self_attr(target)
            if not attr:
                continue
            if attr not in info._attrs or info._attrs[attr].kind == "other":
                kind, layer, container = classify_value(value, module)
                if attr not in info._attrs or kind != "other":
                    info._attrs[attr] = AttrInfo(attr, kind, node, value, layer, container, method_name)
    for name, item in stored_items:
        _note_container_item(info, name, item)
    # `Adam(self.parameters())` reads no layer by name (`sum(p.norm() for p in self.parameters())` may use any)
    handed_to_optimizer = {id(n) for node in calls for a in [*node.args, *(k.value for k in node.keywords)]
                           if isinstance(a, ast.Call) and (module.names.qualname(node.func) or "").startswith(
                               "torch.optim.") for n in (a, a.func)}
    for node in loads:
        if isinstance(node.ctx, ast.Load):
            attr = _is_self_attr(node)
            if attr:
                info._reads.add(attr)
                if attr in DYNAMIC_SELF_ACCESS and id(node) not in handed_to_optimizer:
                    info._dynamic = True
    for node in calls:
        func = node.func
        self_arg = any(isinstance(a, ast.Name) and a.id == "self" for a in node.args) or any(
            isinstance(k.value, ast.Name) and k.value.id == "self" for k in node.keywords)
        is_self_method = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self"
        owned_append = isinstance(func, ast.Attribute) and func.attr in ("append", "extend", "insert") and \
            _is_self_attr(func.value)
        if not (self_arg or is_self_method or owned_append):
            continue
        if owned_append and node.args:
            _note_container_item(info, _is_self_attr(func.value), node.args[-1])
        if is_self_method and func.attr in DYNAMIC_SELF_ACCESS | {"register_parameter", "add_module",
                                                                  "register_module"} \
                and id(node) not in handed_to_optimizer:
            info._dynamic = True
        if self_arg and not (isinstance(func, ast.Name) and func.id in ("super", "isinstance", "id")):
            info._dynamic = True  # getattr(self, ...), hooks and helpers that receive `self`
    for node in loops:
        if isinstance(node.iter, ast.Name) and node.iter.id == "self":
            info._dynamic = True


def _freezes_in(body: list, conditional: bool):
    for stmt in body:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            call = stmt.value
            if isinstance(call.func, ast.Attribute) and call.func.attr == "requires_grad_" and _is_false(call):
                path = _self_path(call.func.value)
                if path:
                    yield path, stmt, conditional
        elif isinstance(stmt, ast.For) and isinstance(stmt.target, ast.Name) and isinstance(stmt.iter, ast.Call) \
                and isinstance(stmt.iter.func, ast.Attribute) and stmt.iter.func.attr == "parameters":
            path = _self_path(stmt.iter.func.value)
            var = stmt.target.id
            if path and any(_freezes_name(s, var) for s in stmt.body):
                yield path, stmt, conditional
        elif isinstance(stmt, ast.For) and isinstance(stmt.target, ast.Tuple) and isinstance(stmt.iter, ast.Call):
            # `for q, k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()): k.requires_grad = False`
            # (a momentum encoder), `for name, p in self.encoder.named_parameters(): p.requires_grad = False`
            names = [t.id if isinstance(t, ast.Name) else None for t in stmt.target.elts]
            sources: list = []
            if isinstance(stmt.iter.func, ast.Name) and stmt.iter.func.id == "zip":
                sources = [_parameters_of(a) for a in stmt.iter.args]
            elif isinstance(stmt.iter.func, ast.Attribute) and stmt.iter.func.attr == "named_parameters" and len(
                    names) == 2:
                sources = [None, _self_path(stmt.iter.func.value)]
            for var, path in zip(names, sources):
                if var and path and any(_freezes_name(s, var) for s in stmt.body):
                    yield path, stmt, conditional
        elif isinstance(stmt, ast.If):
            yield from _freezes_in(stmt.body, True)
            yield from _freezes_in(stmt.orelse, True)


def _parameters_of(node: ast.expr) -> str | None:
    """`self.encoder.parameters()` -> "encoder"."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "parameters":
        return _self_path(node.func.value)
    return None


def _freezes_name(stmt: ast.stmt, var: str) -> bool:
    """`var.requires_grad = False` or `var.requires_grad_(False)`."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target = stmt.targets[0]
        return isinstance(target, ast.Attribute) and target.attr == "requires_grad" \
            and isinstance(target.value, ast.Name) and target.value.id == var \
            and isinstance(stmt.value, ast.Constant) and stmt.value.value is False
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        func = stmt.value.func
        return isinstance(func, ast.Attribute) and func.attr == "requires_grad_" and isinstance(func.value, ast.Name) \
            and func.value.id == var and _is_false(stmt.value)
    return False


def _is_false(call: ast.Call) -> bool:
    flag = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "requires_grad"), None)
    return isinstance(flag, ast.Constant) and flag.value is False


def _self_path(node: ast.expr) -> str | None:
    """`self.a.b` -> "a.b"."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "self" and parts:
        return ".".join(reversed(parts))
    return None


def _fact_nodes(module: ModuleContext, method) -> tuple[list, list, list, list]:
    """The assignments, attributes, calls and loops of a method, in pre-order: from one walk, kept with the module
    (the facts of one attribute, asked for one by one, walk a long `__init__` once, not once per attribute)."""
    table = module.__dict__.setdefault("_fact_nodes", {})
    found = table.get(id(method))
    if found is None:
        found = table[id(method)] = ([], [], [], [])
        assigns, loads, calls, loops = found
        for node in _preorder(method):
            kind = type(node)
            if kind is ast.Assign or kind is ast.AnnAssign:
                assigns.append(node)
            elif kind is ast.Attribute:
                loads.append(node)
            elif kind is ast.Call:
                calls.append(node)
            elif kind is ast.For or kind is ast.comprehension:
                loops.append(node)
    return found


def _collect_reads(info: ClassInfo, method) -> None:
    """The attributes of `self` one method reads, into the class's reads."""
    for node in _fact_nodes(info.module, method)[1]:
        if type(node.ctx) is ast.Load:
            attr = _is_self_attr(node)
            if attr:
                info._reads.add(attr)


def _note_container_item(info: ClassInfo, name: str, item: ast.expr) -> None:
    """A plain list/dict attribute that layers or parameters are put into (append, `[k] = ...`)."""
    attr = info._attrs.get(name)
    if attr is None or attr.kind != "other" or not isinstance(attr.value, (ast.List, ast.Dict)):
        return
    kind = classify_value(item, info.module)[0]
    kind = {"modules_container": "module", "params_container": "param"}.get(kind, kind)
    if kind in ("module", "param", "tensor_grad"):
        attr.kind = "modules_container" if kind == "module" else "params_container"
        attr.container = "list" if isinstance(attr.value, ast.List) else "dict"


def _preorder(root: ast.AST) -> list:
    """Every node under `root`, parents before children, in source order (one list, no generator)."""
    out: list = []
    stack = [root]
    AST = ast.AST
    pop, push = stack.pop, out.append
    while stack:
        node = pop()
        push(node)
        children = []
        for name in node_fields(type(node)):
            value = getattr(node, name, None)
            if value.__class__ is list:
                children.extend([v for v in value if isinstance(v, AST)])
            elif isinstance(value, AST):
                children.append(value)
        if children:
            children.reverse()
            stack.extend(children)
    return out


def _names_read(fn: ast.AST, names: frozenset | set) -> tuple:
    """Which of `names` the function reads (its signature and body, nested functions included; not its
    decorators, which run where it is defined)."""
    if isinstance(fn, ast.Lambda):
        roots: list = [fn.args, fn.body]
    else:
        roots = [fn.args, *fn.body] + ([fn.returns] if getattr(fn, "returns", None) is not None else [])
    read: set = set()
    stack = roots
    Name, Load, AST = ast.Name, ast.Load, ast.AST
    while stack:
        node = stack.pop()
        if node.__class__ is Name:
            if node.id in names and node.ctx.__class__ is Load:
                read.add(node.id)
            continue
        for name in node_fields(type(node)):
            value = getattr(node, name, None)
            if value.__class__ is list:
                stack.extend(v for v in value if isinstance(v, AST))
            elif isinstance(value, AST):
                stack.append(value)
    return tuple(sorted(read))
