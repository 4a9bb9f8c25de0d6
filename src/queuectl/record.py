"""`@record`: frozen, slotted, keyword-only value classes, made without generating code.

dataclasses writes and compiles each class's methods when the class is defined: ~1 ms a class
here, 15 ms of every CLI call's start-up for the classes the CLI loads (a whole `queuectl enqueue`
should take 4x `python -c "import sqlite3"`, ~80 ms; see docs/benchmarks.md). `@record` gives the
behaviour the project used (`@dataclass(frozen=True, slots=True, kw_only=True)`) with methods
shared by every record that read the field names from the class, so defining a class costs what
defining any class costs. Type checkers see it as a dataclass through `dataclass_transform`
(PEP 681).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar, dataclass_transform

_T = TypeVar("_T")
_MISSING: Any = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], Any]) -> Any:
    """A field whose default is made anew for each instance (like dataclasses.field)."""
    return _Factory(default_factory)


class FrozenError(AttributeError):
    """Raised on an attempt to change a record's field."""


def _init(self: Any, **values: Any) -> None:
    cls = type(self)
    if len(values) != cls.__record_size__:
        values = cls.__record_plain_defaults__ | values
        for name, factory in cls.__record_factories__:
            if name not in values:
                values[name] = factory()
        if len(values) != cls.__record_size__:
            _refuse(cls, values)
    setter = object.__setattr__
    try:
        for name in cls.__record_fields__:
            setter(self, name, values[name])
    except KeyError:  # as many values as fields, but not theirs
        _refuse(cls, values)


def _refuse(cls: Any, values: dict[str, Any]) -> NoReturn:
    """Name the field without a default that `values` lacks, or else the unknown ones."""
    defaulted = cls.__record_plain_defaults__.keys() | {
        name for name, _ in cls.__record_factories__
    }
    for name in cls.__record_fields__:
        if name not in values and name not in defaulted:
            raise TypeError(f"{cls.__name__}() missing keyword argument {name!r}")
    unknown = ", ".join(key for key in values if key not in cls.__record_fields__)
    raise TypeError(f"{cls.__name__}() got unexpected keyword arguments: {unknown}")


def _astuple(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in type(self).__record_fields__)


def _repr(self: Any) -> str:
    pairs = ", ".join(f"{name}={getattr(self, name)!r}" for name in type(self).__record_fields__)
    return f"{type(self).__qualname__}({pairs})"


def _eq(self: Any, other: object) -> Any:  # bool, or NotImplemented
    if other.__class__ is not self.__class__:
        return NotImplemented
    same: bool = _astuple(self) == _astuple(other)
    return same


def _hash(self: Any) -> int:
    return hash(_astuple(self))


def _frozen(self: Any, name: str, value: Any = None) -> None:
    raise FrozenError(f"cannot change field {name!r} of a {type(self).__name__}")


def _rebuild(cls: type[_T], values: tuple[Any, ...]) -> _T:
    return cls(**dict(zip(cls.__record_fields__, values, strict=True)))  # type: ignore[attr-defined]


def _reduce(self: Any) -> tuple[Any, ...]:
    return (_rebuild, (type(self), _astuple(self)))


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
def record(cls: type[_T]) -> type[_T]:
    """Make `cls` a frozen value class of its annotated fields.

    It gets a keyword-only __init__ with defaults, __repr__, __eq__, __hash__, __slots__, and
    copy and pickle support.
    """
    if cls.__bases__ != (object,):
        raise TypeError(f"@record class {cls.__name__} must not inherit")
    # inspect.get_annotations would do, but importing inspect costs more than this module.
    names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063
    defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
    namespace = {
        key: value
        for key, value in cls.__dict__.items()
        if key not in names and key not in ("__dict__", "__weakref__")
    }
    namespace.update(
        __slots__=names,
        __record_fields__=names,
        __record_size__=len(names),
        __record_plain_defaults__={
            name: value for name, value in defaults.items() if type(value) is not _Factory
        },
        __record_factories__=tuple(
            (name, value.make) for name, value in defaults.items() if type(value) is _Factory
        ),
        __init__=_init,
        __repr__=_repr,
        __eq__=_eq,
        __hash__=_hash,
        __setattr__=_frozen,
        __delattr__=_frozen,
        __reduce__=_reduce,
        __match_args__=names,
    )
    made: type[_T] = type(cls.__name__, cls.__bases__, namespace)
    return made


def replace(obj: _T, /, **changes: Any) -> _T:
    """A copy of a record with some fields changed (like dataclasses.replace)."""
    names = type(obj).__record_fields__  # type: ignore[attr-defined]
    return type(obj)(**{name: getattr(obj, name) for name in names} | changes)


def field_names(cls: type) -> tuple[str, ...]:
    """A record class's field names, in order."""
    names: tuple[str, ...] = cls.__record_fields__  # type: ignore[attr-defined]
    return names
