"""``@record``: ``@dataclass`` for the classes a check imports, without ``dataclass()`` at start-up.

``dataclass()`` writes each class's ``__init__``, ``__repr__`` and ``__eq__`` (and a frozen
class's ``__hash__``, ``__setattr__`` and ``__delattr__``) as source text and compiles it when the
class is defined, and inspects every annotation: a quarter of a millisecond per class, paid on
every start (a check of one guest profile defines some thirty such classes). ``tools/gen_records.py``
writes the same methods for those classes into ``cpumodel/_records.py``, which is byte-compiled
like any module; ``record`` attaches them, sets ``__match_args__`` and, for a mutable class,
``__hash__ = None``, and puts each field's default where ``dataclass()`` puts it (a
``field(default_factory=...)`` leaves the class; with ``slots=True`` the class is made again with
``__slots__``, as ``dataclass()`` makes it). ``__dataclass_fields__`` and
``__dataclass_params__`` (what ``dataclasses.fields``, ``replace`` and ``is_dataclass`` read) are made
by ``dataclass()`` itself, over a copy of the class, the first time something asks for them.

A class missing from the module, or whose fields have changed since it was written, gets plain
``dataclass()``. tests/test_records.py checks the module is current and that each class behaves
as ``dataclass()`` makes it (signature, defaults, repr, equality, hashing, frozenness, fields,
``replace``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass
from typing import Any, TypeVar, overload

T = TypeVar("T", bound=type)

_DATACLASS_ATTRS = ("__dataclass_fields__", "__dataclass_params__")


@overload
def record(cls: T, /) -> T: ...
@overload
def record(cls: None = None, /, *, frozen: bool = False, slots: bool = False) -> Callable[[T], T]: ...


def record(cls: T | None = None, /, *, frozen: bool = False, slots: bool = False) -> Any:
    """``@dataclass``, ``@dataclass(frozen=True)`` or ``@dataclass(frozen=True, slots=True)`` with
    precompiled methods where they are current."""
    if cls is None:
        return lambda c: _record(c, frozen, slots)
    return _record(cls, frozen, slots)


def _record(cls: T, frozen: bool, slots: bool) -> T:
    try:
        from cpumodel._records import METHODS
    except ImportError:  # not generated yet
        METHODS = {}
    made = METHODS.get(f"{cls.__module__}.{cls.__qualname__}")
    names = tuple(inspect.get_annotations(cls))
    if made is None or made[0] != names or made[1] != (frozen, slots):
        return dataclass(cls, frozen=frozen, slots=slots)
    declared = {n: cls.__dict__[n] for n in names if n in cls.__dict__}  # defaults and field() specs, as written
    if slots:  # as dataclass() does: the same class made again with __slots__, without the defaults
        ns = {k: v for k, v in cls.__dict__.items() if k not in names and k not in ("__dict__", "__weakref__")}
        cls = type(cls)(cls.__name__, cls.__bases__, {**ns, "__slots__": names})
    for n, v in () if slots else declared.items():  # as dataclass() does: a field() spec leaves its default
        if isinstance(v, Field):                      # or nothing (a slots class was made without them)
            if v.default is MISSING:
                delattr(cls, n)
            else:
                setattr(cls, n, v.default)
    for name, fn in made[3](cls).items():
        fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
        setattr(cls, name, fn)
    cls.__match_args__ = made[2]  # type: ignore[attr-defined]
    if not frozen:
        cls.__hash__ = None  # type: ignore[assignment]
    for attr in _DATACLASS_ATTRS:
        setattr(cls, attr, _Later(attr, declared, frozen, slots))
    return cls


class _Later:
    """``__dataclass_fields__`` / ``__dataclass_params__`` of a ``record`` class, made on first use by
    ``dataclass()`` over a copy of the class (its annotations and its defaults as declared); both then
    replace this descriptor on the class."""

    def __init__(self, attr: str, declared: dict[str, Any], frozen: bool, slots: bool) -> None:
        self.attr = attr
        self.declared = declared
        self.frozen = frozen
        self.slots = slots

    def __get__(self, obj: object, cls: type | None = None) -> Any:
        assert cls is not None
        ns = {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
              "__annotations__": inspect.get_annotations(cls), **self.declared}
        ref = dataclass(type(cls.__name__, (), ns), frozen=self.frozen, slots=self.slots)
        for attr in _DATACLASS_ATTRS:
            type.__setattr__(cls, attr, getattr(ref, attr))
        return getattr(ref, self.attr)
