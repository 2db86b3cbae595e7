"""``@record``: ``@dataclass`` for the classes a check imports, with their methods precompiled.

``dataclass()`` writes each class's ``__init__``, ``__repr__`` and ``__eq__`` (and a frozen
class's ``__hash__``) as source text and compiles it when the class is defined: about half a
millisecond per class, paid on every start (the check of one profile defines a dozen such
classes). ``tools/gen_records.py`` writes the same methods for those classes into
``cpumodel/_records.py``, which is byte-compiled like any module; ``record`` lets
``dataclass()`` do the rest (fields, ``__match_args__``, so ``dataclasses.fields``/``replace``
work; for a frozen class also ``__setattr__``/``__delattr__``) and attaches them, and
``__hash__ = None`` as ``dataclass()`` sets it for a mutable class with ``__eq__``. A class
missing from the module, or whose fields have changed since it was written, gets plain
``dataclass()``. tests/test_records.py checks the module is current and that each class behaves
as ``dataclass()`` makes it (signature, defaults, repr, equality, hashing, frozenness).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

T = TypeVar("T", bound=type)


@overload
def record(cls: T, /) -> T: ...
@overload
def record(cls: None = None, /, *, frozen: bool = False) -> Callable[[T], T]: ...


def record(cls: T | None = None, /, *, frozen: bool = False) -> Any:
    """``@dataclass`` or ``@dataclass(frozen=True)`` with precompiled methods where they are current."""
    if cls is None:
        return lambda c: _record(c, frozen)
    return _record(cls, frozen)


def _record(cls: T, frozen: bool) -> T:
    try:
        from cpumodel._records import METHODS
    except ImportError:  # not generated yet
        METHODS = {}
    made = METHODS.get(f"{cls.__module__}.{cls.__qualname__}")
    if made is None or made[0] != tuple(inspect.get_annotations(cls)):
        return dataclass(cls, frozen=frozen)
    # frozen: dataclass() still writes __setattr__/__delattr__ (and records frozen=True)
    new: Any = dataclass(cls, init=False, repr=False, eq=False, frozen=frozen)
    for name, fn in made[1](cls).items():
        fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
        setattr(new, name, fn)
    if not frozen:
        new.__hash__ = None
    return new  # type: ignore[no-any-return]
