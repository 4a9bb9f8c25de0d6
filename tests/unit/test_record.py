"""@record behaves like @dataclass(frozen=True, slots=True, kw_only=True), as the models need."""

from __future__ import annotations

import copy
import pickle

import pytest

from queuectl import models
from queuectl.record import FrozenError, field, field_names, record, replace


@record
class Point:
    """A test record."""

    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.x + self.y


def test_init_is_keyword_only_with_defaults_and_fresh_factories():
    p = Point(x=1)
    assert (p.x, p.y, p.tags) == (1, 0, [])
    assert Point(x=1).tags is not p.tags
    with pytest.raises(TypeError):
        Point(1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing keyword argument 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword arguments: z"):
        Point(x=1, z=2)  # type: ignore[call-arg]


def test_fields_are_frozen_and_slotted():
    p = Point(x=1)
    with pytest.raises(FrozenError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y
    with pytest.raises(AttributeError):
        p.other = 1  # type: ignore[attr-defined]
    assert not hasattr(p, "__dict__")


def test_equality_hash_repr_and_methods():
    assert Point(x=1, y=2) == Point(x=1, y=2)
    assert Point(x=1, y=2) != Point(x=1, y=3)
    assert Point(x=1) != (1, 0, [])  # type: ignore[comparison-overlap]
    assert hash(Point(x=1, y=2, tags=())) == hash(Point(x=1, y=2, tags=()))  # type: ignore[arg-type]
    assert repr(Point(x=1)) == "Point(x=1, y=0, tags=[])"
    assert Point(x=1, y=2).total == 3
    assert field_names(Point) == ("x", "y", "tags")
    assert Point.__name__ == "Point"
    assert Point.__doc__ == "A test record."


def test_replace_copy_and_pickle():
    p = Point(x=1, y=2, tags=["a"])
    assert replace(p, y=5) == Point(x=1, y=5, tags=["a"])
    assert copy.copy(p) == p
    deep = copy.deepcopy(p)
    assert deep == p
    assert deep.tags is not p.tags
    assert pickle.loads(pickle.dumps(p)) == p  # noqa: S301 - our own bytes


def test_inheritance_is_refused():
    class Base:
        pass

    with pytest.raises(TypeError, match="must not inherit"):

        @record
        class Child(Base):
            a: int


def test_the_models_are_records():
    spec = models.JobSpec(command="true")
    assert spec.env == {}
    assert models.JobSpec(command="true").env is not spec.env
    with pytest.raises(FrozenError):
        spec.command = "false"  # type: ignore[misc]


def test_an_unknown_keyword_is_named_even_when_it_stands_in_for_a_defaulted_field():
    # As many keywords as fields, one unknown and a defaulted field left out: the unknown one
    # is the mistake, not the field that has a default.
    with pytest.raises(TypeError, match=r"unexpected keyword arguments: z$"):
        Point(x=1, y=2, z=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing keyword argument 'x'"):
        Point(y=2, tags=[], z=3)  # type: ignore[call-arg]
