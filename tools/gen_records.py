"""Write ``cpumodel/_records.py``: the dataclass methods of the ``@record`` classes, precompiled.

For each class in ``CLASSES`` (those decorated with ``cpumodel.records.record``) this writes the
``__init__``, ``__repr__`` and ``__eq__`` that ``dataclasses.dataclass()`` would generate for it
(Python 3.11's text: the same parameters, defaults, default factories, assignments, repr and
comparison; for a frozen class also ``__hash__``, ``__setattr__`` and ``__delattr__``, with
``__init__`` assigning through ``object.__setattr__``), as a function that returns them, with the
class's field names, frozenness and ``__match_args__``. Usage: python -m tools.gen_records
tests/test_records.py checks the module is current.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path

MODULE = Path(__file__).resolve().parents[1] / "cpumodel" / "_records.py"

# module:class of every @record class (a test checks none is missing)
CLASSES = ("cpumodel.errors:Location", "cpumodel.regdb:Field", "cpumodel.regdb:Register",
           "cpumodel.features.types:Violation",
           "cpumodel.rules.kvm_writes:Write", "cpumodel.findings:Finding", "cpumodel.profile:FieldValue",
           "cpumodel.profile:RegisterSpec", "cpumodel.profile:Profile", "cpumodel.resolve:Model",
           "cpumodel.rules:Context", "cpumodel.rules:Rule", "cpumodel.check:Options", "cpumodel.check:RunResult",
           # a guest check's: the KVM model, kernel lines, identity and firmware
           "cpumodel.kvm.rules:FieldRule", "cpumodel.kvm.rules:LayoutField", "cpumodel.kvm.rules:RegisterRules",
           "cpumodel.kvm.rules:KernelRules", "cpumodel.kvm.rules:KernelEntry",
           "cpumodel.kvm.model:FieldVerdict", "cpumodel.kvm.model:Verdict", "cpumodel.kvm.model:Partial",
           "cpumodel.kvm.model:_Ctx", "cpumodel.kvm.model:_Out", "cpumodel.kvm.model:_Leaf",
           "cpumodel.kvm.model:DefaultsView", "cpumodel.identity:Impl", "cpumodel.identity:Workaround",
           "cpumodel.identity:Mitigation", "cpumodel.identity:Decision", "cpumodel.identity:HostComparison",
           "cpumodel.kvm.firmware:TargetImpl", "cpumodel.kvm.lines:Line")

_LITERALS = (type(None), bool, int, str)
_FACTORIES = {dict: "dict", list: "list", set: "set"}


def _literal(v: object) -> bool:
    """A value whose repr() rebuilds an equal immutable value: None, bool, int, str, and tuples and
    frozensets of those."""
    if type(v) in (tuple, frozenset):
        return all(_literal(x) for x in v)  # type: ignore[attr-defined]
    return type(v) in _LITERALS


def _default(f: dataclasses.Field) -> str:  # type: ignore[type-arg]
    if not _literal(f.default):
        raise ValueError(f"{f.name}: default {f.default!r} is not a literal")
    return repr(f.default)


def _methods(cls: type) -> list[str]:
    fields = dataclasses.fields(cls)
    frozen = cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    params, body = ["self"], []
    for f in fields:
        ann = f"{f.name}: {f.type!r}" if isinstance(f.type, str) else f.name
        if f.default_factory is not dataclasses.MISSING:
            factory = _FACTORIES.get(f.default_factory)  # type: ignore[call-overload]
            if factory is None:
                raise ValueError(f"{cls.__name__}.{f.name}: factory {f.default_factory!r} is not a builtin")
            if f.init:
                params.append(f"{ann} = _FACTORY")
                body.append(_set(f.name, f"{factory}() if {f.name} is _FACTORY else {f.name}", frozen))
            else:
                body.append(_set(f.name, f"{factory}()", frozen))
        elif f.init:
            params.append(ann if f.default is dataclasses.MISSING else f"{ann} = {_default(f)}")
            body.append(_set(f.name, f.name, frozen))
        # init=False without a factory: not assigned (the class attribute holds the default)
    shown = [f.name for f in fields if f.repr]
    compared = [f.name for f in fields if f.compare]
    rep = ", ".join(f"{n}={{self.{n}!r}}" for n in shown)
    mine = "".join(f"self.{n}," for n in compared)
    theirs = "".join(f"other.{n}," for n in compared)
    out = [f"    def __init__({', '.join(params)}) -> None:",
            *(f"        {b}" for b in body or ["pass"]),
            "    def __repr__(self):",
            f'        return self.__class__.__qualname__ + f"({rep})"',
            "    def __eq__(self, other):",
            "        if other.__class__ is self.__class__:",
            f"            return ({mine}) == ({theirs})",
            "        return NotImplemented"]
    if not frozen:
        return [*out, '    return {"__init__": __init__, "__repr__": __repr__, "__eq__": __eq__}']
    hashed = "".join(f"self.{f.name}," for f in fields if (f.compare if f.hash is None else f.hash))
    names = tuple(f.name for f in fields)
    state = []
    if "__slots__" in cls.__dict__:  # dataclass()'s _dataclass_getstate/_dataclass_setstate (pickling)
        state = ["    def __getstate__(self):",
                 f"        return [{', '.join(f'self.{n}' for n in names)}]",
                 "    def __setstate__(self, state):",
                 f"        for name, value in zip({names!r}, state):",
                 "            _object_setattr(self, name, value)"]
    extra = ', "__getstate__": __getstate__, "__setstate__": __setstate__' if state else ""
    return [*out, *state,
            "    def __hash__(self):",
            f"        return hash(({hashed}))",
            # dataclass()'s frozen __setattr__/__delattr__ (dataclasses._frozen_get_del_attr)
            "    def __setattr__(self, name, value):",
            f"        if type(self) is cls or name in {names!r}:",
            '            raise FrozenInstanceError(f"cannot assign to field {name!r}")',
            "        super(cls, self).__setattr__(name, value)",
            "    def __delattr__(self, name):",
            f"        if type(self) is cls or name in {names!r}:",
            '            raise FrozenInstanceError(f"cannot delete field {name!r}")',
            "        super(cls, self).__delattr__(name)",
            '    return {"__init__": __init__, "__repr__": __repr__, "__eq__": __eq__, "__hash__": __hash__,',
            f'            "__setattr__": __setattr__, "__delattr__": __delattr__{extra}}}']


def _set(name: str, value: str, frozen: bool) -> str:
    """An assignment in __init__ (a frozen class's goes around its __setattr__, as dataclass() does)."""
    return f"_object_setattr(self, {name!r}, {value})" if frozen else f"self.{name} = {value}"


def source() -> str:
    """The module for the classes as imported now (their fields are the same whether record()
    found their methods or fell back to dataclass())."""
    out = ['"""The dataclass methods of the @record classes (cpumodel/records.py), precompiled.',
           "",
           "Generated by tools/gen_records.py (python -m tools.gen_records); do not edit.",
           '"""',
           "# ruff: noqa",
           "",
           "from dataclasses import FrozenInstanceError",
           "",
           "_object_setattr = object.__setattr__",
           "",
           "",
           "class _Factory:",
           "    def __repr__(self):",
           '        return "<factory>"',
           "",
           "",
           "_FACTORY = _Factory()",
           "",
           ""]
    table = []
    for i, spec in enumerate(CLASSES):
        modname, clsname = spec.split(":")
        cls = getattr(importlib.import_module(modname), clsname)
        if any(dataclasses.is_dataclass(b) for b in cls.__mro__[1:]):
            raise ValueError(f"{spec}: a record may not inherit fields (record() reads the class's own annotations)")
        out += [f"def _m{i}(cls):", *_methods(cls), "", ""]
        names = tuple(inspect.get_annotations(cls))
        kind = (cls.__dataclass_params__.frozen, "__slots__" in cls.__dict__)  # type: ignore[attr-defined]
        table.append(f"    {modname + '.' + clsname!r}: ({names!r}, {kind!r}, {cls.__match_args__!r}, _m{i}),")
    out += ["METHODS = {", *table, "}"]
    return "\n".join(out) + "\n"


def main() -> None:
    MODULE.write_text(source())
    print(f"wrote {MODULE}")


if __name__ == "__main__":
    main()
