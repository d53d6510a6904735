"""Record classes: the part of `dataclasses` gradtrace uses, made cheaply.

A command-line check is a short process, and `dataclasses` costs it a third of its start-up: importing it brings
`inspect` (and `dis`, `tokenize`, `copy`, ...), and each class it makes compiles three or four functions one by one
after matching every annotation against regular expressions. `record` compiles one function per class, its
`__init__` (run for every instance, so written out field by field); equality, hashing, `repr` and the frozen guard
are closures over the field names; nothing else is imported.

Semantics follow `dataclasses` for what is used here: fields come from the class's annotations in order
(`ClassVar` ones excluded) after those of record bases; `field(default=, default_factory=, init=, repr=,
compare=)`; `__post_init__`; `eq` (equality of the compared fields, same class only) and the `__hash__` rules
(frozen and eq: hash of the compared fields; eq only: unhashable; a `__hash__`, `__eq__`, `__init__` or `__repr__`
written in the class body is kept); `frozen` (assignment raises `FrozenInstanceError`); `slots`.

`replace` copies the fields of a record whose `__init__` does nothing but store them (no `__post_init__`, every
field in `__init__`) instead of calling `__init__` again: the analysis replaces values with 26 fields millions of
times.
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False  # `typing` is not imported at run time (start-up)
if TYPE_CHECKING:
    from typing import Any, dataclass_transform
else:
    def dataclass_transform(**_kwargs):
        return lambda decorator: decorator


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
FIELDS = "__record_fields__"


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class Field:
    __slots__ = ("name", "default", "default_factory", "init", "repr", "compare")

    def __init__(self, default=MISSING, default_factory=MISSING, init=True, repr=True, compare=True):
        if default is not MISSING and default_factory is not MISSING:
            raise ValueError("cannot specify both default and default_factory")
        self.name = ""
        self.default = default
        self.default_factory = default_factory
        self.init = init
        self.repr = repr
        self.compare = compare

    def __repr__(self) -> str:
        return f"Field(name={self.name!r}, default={self.default!r}, default_factory={self.default_factory!r})"


def field(*, default=MISSING, default_factory=MISSING, init: bool = True, repr: bool = True,
          compare: bool = True) -> Any:
    return Field(default, default_factory, init, repr, compare)


@dataclass_transform(field_specifiers=(field, Field))
def record(cls=None, /, *, frozen: bool = False, eq: bool = True, slots: bool = False):
    """Make `cls` a record class (as `@dataclass` would); usable bare or with arguments."""
    def wrap(klass):
        return _make(klass, frozen, eq, slots)
    return wrap if cls is None else wrap(cls)


def fields(obj_or_class) -> tuple[Field, ...]:
    found = getattr(obj_or_class, FIELDS, None)
    if found is None:
        raise TypeError("fields() takes a record or a record class")
    return tuple(found.values())


def is_record(obj) -> bool:
    return hasattr(type(obj) if not isinstance(obj, type) else obj, FIELDS)


def replace(obj, /, **changes):
    """A copy of the record `obj` with some fields changed."""
    cls = obj.__class__
    names, copy = cls.__dict__.get("__record_replace__") or (frozenset(getattr(cls, FIELDS)), False)
    if not changes.keys() <= names:
        unknown = sorted(changes.keys() - names)
        raise TypeError(f"{cls.__qualname__}.__init__() got an unexpected keyword argument {unknown[0]!r}")
    if not copy:  # `__init__` does more than store: run it, as `dataclasses.replace` does
        for name, f in getattr(cls, FIELDS).items():
            if not f.init:
                if name in changes:
                    raise ValueError(f"field {name} is declared with init=False, it cannot be specified with "
                                     "replace()")
                continue
            if name not in changes:
                changes[name] = getattr(obj, name)
        return cls(**changes)
    new = object.__new__(cls)
    state = new.__dict__
    old = obj.__dict__
    if len(old) == len(names):
        state.update(old)
    else:  # other attributes (a cached property) describe the old fields, not the new ones
        for name in names:
            state[name] = old[name]
    state.update(changes)
    return new


def asdict(obj) -> dict:
    """The fields of a record as a dict, records inside it (also in lists, tuples and dicts) as dicts too."""
    return {name: _as_plain(getattr(obj, name)) for name in getattr(obj, FIELDS)}


def _as_plain(value):
    if hasattr(type(value), FIELDS):
        return asdict(value)
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_as_plain(v) for v in value)
    if isinstance(value, dict):
        return {_as_plain(k): _as_plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------- making a class
def _make(cls, frozen: bool, eq: bool, slots: bool):
    if frozen and slots:  # unpickling sets slots with setattr, which a frozen record refuses
        raise TypeError(f"{cls.__qualname__}: a frozen record cannot have slots")
    own = _own_fields(cls)
    all_fields: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        all_fields.update(base.__dict__.get(FIELDS, {}))
    all_fields.update(own)
    for name, f in own.items():  # the class attribute is the default (or nothing), never the Field
        if isinstance(cls.__dict__.get(name), Field):
            if f.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
    if slots:
        cls = _with_slots(cls, own)
    setattr(cls, FIELDS, all_fields)
    body = cls.__dict__
    methods: dict[str, Any] = {}
    if "__init__" not in body:  # the one method written out and compiled: it runs for every instance
        namespace: dict[str, Any] = {"MISSING": MISSING}
        source = "\n".join(_init_source(cls, all_fields, frozen, namespace))  # (a field order error: raised now)
        methods["__init__"] = _compiled_on_first_use(cls, source, namespace)
    if "__repr__" not in body:
        methods["__repr__"] = _repr_of(tuple(n for n, f in all_fields.items() if f.repr))
    key = _key_of([n for n, f in all_fields.items() if f.compare])
    if eq and "__eq__" not in body:
        methods["__eq__"] = _eq_by(key)
    if frozen:
        methods["__setattr__"], methods["__delattr__"] = _frozen_methods(cls, all_fields)
    explicit_hash = "__hash__" in body and not (body["__hash__"] is None and "__eq__" in body)
    if eq and frozen and not explicit_hash:
        methods["__hash__"] = _hash_by(key)
    for name, function in methods.items():
        function.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, function)
    if eq and not frozen and not explicit_hash:
        cls.__hash__ = None
    direct = not slots and not hasattr(cls, "__post_init__") and all(f.init for f in all_fields.values())
    cls.__record_replace__ = (frozenset(all_fields), direct)
    return cls


def _compiled_on_first_use(cls, source: str, namespace: dict):
    """An `__init__` that compiles the record's own when the first instance is made, puts it in its place and runs
    it: a short run makes instances of about half of the record classes it imports, and compiling the others'
    `__init__`s cost more start-up than the rest of all the record classes together."""
    def __init__(self, *args, **kwargs):
        if cls.__dict__.get("__init__") is __init__:
            exec(compile(source, f"<record {cls.__qualname__}>", "exec"), namespace)
            namespace["__init__"].__qualname__ = f"{cls.__qualname__}.__init__"
            cls.__init__ = namespace["__init__"]
        namespace["__init__"](self, *args, **kwargs)
    return __init__


def _own_fields(cls) -> dict[str, Field]:
    own: dict[str, Field] = {}
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        text = annotation if isinstance(annotation, str) else repr(annotation)
        if text.startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name = name
        if isinstance(f.default, (list, dict, set)):
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not allowed: use "
                             "default_factory")
        own[name] = f
    return own


def _with_slots(cls, own: dict[str, Field]):
    body = {k: v for k, v in cls.__dict__.items() if k not in own and k not in ("__dict__", "__weakref__")}
    body["__slots__"] = tuple(own)
    return type(cls)(cls.__name__, cls.__bases__, body)


def _init_source(cls, all_fields: dict[str, Field], frozen: bool, namespace: dict) -> list[str]:
    params: list[str] = []
    lines: list[str] = []
    seen_default = False
    for name, f in all_fields.items():
        if f.default is not MISSING:
            namespace[f"default_{name}"] = f.default
        if f.default_factory is not MISSING:
            namespace[f"factory_{name}"] = f.default_factory
        if f.init:
            if f.default is not MISSING:
                params.append(f"{name}=default_{name}")
                seen_default = True
                value = name
            elif f.default_factory is not MISSING:
                params.append(f"{name}=MISSING")
                seen_default = True
                value = f"factory_{name}() if {name} is MISSING else {name}"
            else:
                if seen_default:
                    raise TypeError(f"non-default argument {name!r} follows default argument")
                params.append(name)
                value = name
        elif f.default is not MISSING:
            value = f"default_{name}"
        elif f.default_factory is not MISSING:
            value = f"factory_{name}()"
        else:
            continue
        if not frozen:
            lines.append(f"    self.{name} = {value}")
        else:
            lines.append(f"    record_state_[{name!r}] = {value}")
    if frozen and lines:
        lines.insert(0, "    record_state_ = self.__dict__")
    if hasattr(cls, "__post_init__"):
        lines.append("    self.__post_init__()")
    return [f"def __init__(self, {', '.join(params)}):" if params else "def __init__(self):", *(lines or ["    pass"])]


# The other methods are closures over what tells instances apart (`operator.attrgetter`, in C): compiling them
# for each class cost more start-up than all the rest of a record.
def _key_of(names: list[str]):
    if not names:
        return lambda obj: ()
    return attrgetter(*names) if len(names) > 1 else (lambda obj, get=attrgetter(names[0]): (get(obj),))


def _eq_by(key):
    def __eq__(self, other):
        if other is self:
            return True
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented
    return __eq__


def _hash_by(key):
    def __hash__(self):
        return hash(key(self))
    return __hash__


def _repr_of(names: tuple[str, ...]):
    def __repr__(self):
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__}({shown})"
    return __repr__


def _frozen_methods(cls, all_fields: dict):
    def __setattr__(self, name, value):
        if type(self) is cls or name in all_fields:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self, name):
        if type(self) is cls or name in all_fields:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)
    return __setattr__, __delattr__
