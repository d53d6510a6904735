"""Record classes behave as the `dataclasses` they stand in for, on everything gradtrace uses; a check imports
neither `dataclasses` nor what it brings."""

from __future__ import annotations

import functools
import pickle
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
from gradtrace.records import FrozenInstanceError, asdict, field, fields, record, replace

ROOT = Path(__file__).resolve().parents[1]


@record
class Point:
    x: int
    y: int = 0
    tags: list = field(default_factory=list)
    note: str = field(default="", compare=False, repr=False)


@record(frozen=True)
class Frozen:
    kind: str = "unknown"
    size: int = 0
    made_at: object = field(default=None, compare=False)


@record(frozen=True)
class FrozenChild(Frozen):
    extra: tuple = ()


@record(eq=False)
class Event:
    name: str
    seq: int = field(default=0, init=False)


@record
class WithPostInit:
    text: str
    length: int = field(init=False)

    def __post_init__(self):
        self.length = len(self.text)


@record(slots=True)
class Slotted:
    a: int
    b: str = "b"


@record(frozen=True)
class Cached:
    n: int

    @functools.cached_property
    def double(self) -> int:
        return 2 * self.n


@record
class Rule:
    code: str
    name: ClassVar[str] = "rule"


def test_init_defaults_and_factories_are_per_instance():
    a, b = Point(1), Point(2, 3)
    assert (a.x, a.y, b.x, b.y) == (1, 0, 2, 3)
    a.tags.append("t")
    assert b.tags == [] and a.tags == ["t"]
    assert [f.name for f in fields(Point)] == ["x", "y", "tags", "note"]
    with pytest.raises(TypeError):
        Point()


def test_equality_repr_and_hash_follow_dataclasses():
    assert Point(1, 2) == Point(1, 2, note="ignored")
    assert Point(1, 2) != Point(1, 3)
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=[])"
    with pytest.raises(TypeError):
        hash(Point(1))  # eq without frozen: unhashable
    assert hash(Frozen("a", 1)) == hash(Frozen("a", 1, made_at=object()))
    assert Frozen("a") != FrozenChild("a")  # equality is of one class only
    e1, e2 = Event("e"), Event("e")
    assert e1 != e2 and hash(e1) != hash(e2)  # eq=False: identity
    assert e1.seq == 0 and "seq" in {f.name for f in fields(e1)}


def test_frozen_records_refuse_assignment():
    value = Frozen("a")
    with pytest.raises(FrozenInstanceError):
        value.kind = "b"
    with pytest.raises(AttributeError):
        del value.size
    assert FrozenChild("a", 1, None, ("x",)).extra == ("x",)


def test_replace_copies_and_changes_fields():
    value = Frozen("a", 1)
    changed = replace(value, size=2)
    assert (value.size, changed.size, changed.kind) == (1, 2, "a")
    with pytest.raises(FrozenInstanceError):
        changed.size = 3
    with pytest.raises(TypeError):
        replace(value, nope=1)
    assert replace(FrozenChild("a"), extra=(1,)) == FrozenChild("a", 0, None, (1,))


def test_replace_runs_post_init_and_refuses_init_false_fields():
    changed = replace(WithPostInit("ab"), text="abcd")
    assert changed.length == 4
    with pytest.raises(ValueError):
        replace(WithPostInit("ab"), length=1)


def test_replace_does_not_carry_a_cached_property_of_the_old_fields():
    old = Cached(2)
    assert old.double == 4
    assert replace(old, n=5).double == 10


def test_slots_and_pickling():
    item = Slotted(1)
    assert not hasattr(item, "__dict__") and item.b == "b"
    assert pickle.loads(pickle.dumps(item)) == item
    assert pickle.loads(pickle.dumps(Frozen("a", 2))) == Frozen("a", 2)
    assert pickle.loads(pickle.dumps(Point(1, tags=[2]))) == Point(1, tags=[2])


def test_classvar_annotations_are_not_fields():
    assert [f.name for f in fields(Rule)] == ["code"]
    assert Rule("GT1").name == "rule"


def test_asdict_is_recursive():
    @record
    class Outer:
        inner: Point
        items: list

    data = asdict(Outer(Point(1), [Point(2)]))
    assert data == {"inner": {"x": 1, "y": 0, "tags": [], "note": ""},
                    "items": [{"x": 2, "y": 0, "tags": [], "note": ""}]}


def test_mutable_defaults_and_field_order_are_refused_as_dataclasses_does():
    with pytest.raises(ValueError):
        @record
        class Bad:
            items: list = []  # noqa: RUF012 - the mistake under test

    with pytest.raises(TypeError):
        @record
        class Order:
            a: int = 0
            b: int


def test_a_check_imports_neither_dataclasses_nor_inspect(tmp_path):
    """Start-up: what the command line loads for a plain check of one file."""
    script = tmp_path / "model.py"
    script.write_text("import torch\n\nx = torch.zeros(2).detach()\n", encoding="utf-8")
    program = ("import sys\nfrom gradtrace.cli import main\n"
               f"sys.argv = ['gradtrace', 'check', '--no-cache', {str(script)!r}]\n"
               "try:\n    main()\nexcept SystemExit:\n    pass\n"
               "print(sorted(m for m in ('dataclasses', 'inspect', 'copy', 'textwrap', 'typing') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(ROOT / "server"), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
