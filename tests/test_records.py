"""``@record`` classes (cpumodel/records.py) behave as ``@dataclass`` makes them, from precompiled methods."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

from tools.gen_records import CLASSES, MODULE, source

ROOT = Path(__file__).resolve().parents[1] / "cpumodel"


def _classes() -> list[type]:
    out = []
    for spec in CLASSES:
        mod, name = spec.split(":")
        out.append(getattr(importlib.import_module(mod), name))
    return out


def test_module_is_current() -> None:
    assert MODULE.read_text() == source(), "run: python -m tools.gen_records"


def test_every_record_class_is_listed() -> None:
    found = set()
    for p in ROOT.rglob("*.py"):
        mod = "cpumodel." + ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        decorated = r"^@record(?:\(frozen=True(?:, slots=True)?\))?\nclass (\w+)"
        found |= {f"{mod}:{m}" for m in re.findall(decorated, p.read_text(), re.M)}
    assert found == set(CLASSES)


def _reference(cls: type) -> type:
    """The class as plain dataclass() makes it, from the same fields."""
    fields = [(f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory, init=f.init,
                                                 repr=f.repr, compare=f.compare, hash=f.hash))
              for f in dataclasses.fields(cls)]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=cls.__dataclass_params__.frozen,  # type: ignore[attr-defined]
                                      slots="__slots__" in cls.__dict__)


def _state(obj: object) -> dict[str, object]:
    """An instance's attributes (its __dict__, or its slots)."""
    if hasattr(obj, "__dict__"):
        return dict(vars(obj))
    return {n: getattr(obj, n) for n in type(obj).__slots__ if hasattr(obj, n)}  # type: ignore[attr-defined]


def _args(cls: type, salt: str) -> dict[str, object]:
    return {f.name: f"{salt}{i}" for i, f in enumerate(dataclasses.fields(cls)) if f.init}


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_same_as_dataclass(cls: type) -> None:
    ref = _reference(cls)
    assert cls.__init__.__code__.co_filename.endswith("_records.py")  # the precompiled methods are in use
    assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"
    assert str(inspect.signature(cls)) == str(inspect.signature(ref))
    assert cls.__match_args__ == ref.__match_args__  # type: ignore[attr-defined]
    frozen = cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    if not frozen:
        assert cls.__hash__ is None and ref.__hash__ is None
    # defaults and factories: only the required arguments
    required = {f.name: f"r{i}" for i, f in enumerate(dataclasses.fields(cls))
                if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    a, b = cls(**required), ref(**required)
    assert _state(a) == _state(b)
    assert repr(a) == repr(b).replace(ref.__qualname__, cls.__qualname__, 1)
    if any(f.default_factory is not dataclasses.MISSING for f in dataclasses.fields(cls)):
        assert cls(**required) is not a and all(
            getattr(cls(**required), f.name) is not getattr(a, f.name)
            for f in dataclasses.fields(cls) if f.default_factory is not dataclasses.MISSING)
    # every argument given
    full = _args(cls, "x")
    a, b = cls(**full), ref(**full)
    assert _state(a) == _state(b)
    assert repr(a) == repr(b).replace(ref.__qualname__, cls.__qualname__, 1)
    assert a == cls(**full)
    assert a != b  # another class: NotImplemented both ways, then identity
    for f in dataclasses.fields(cls):
        if f.init:
            other = cls(**{**full, f.name: "changed"})
            assert (other == a) == (not f.compare)
    assert dataclasses.replace(a, **{next(iter(full)): "y"}) != a
    if frozen:
        assert hash(a) == hash(b) == hash(cls(**full))
        for f in dataclasses.fields(cls):
            if f.init and (f.compare if f.hash is None else f.hash):
                assert hash(cls(**{**full, f.name: "changed"})) == hash(ref(**{**full, f.name: "changed"}))
        name = next(iter(full))
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(a, name, "z")
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(a, name)


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_pickles_and_declares_like_dataclass(cls: type) -> None:
    """Instances survive pickling (check --jobs sends findings, locations and errors between
    processes), and the class attributes are those dataclass() leaves."""
    import pickle

    ref = _reference(cls)
    a = cls(**_args(cls, "p"))
    assert pickle.loads(pickle.dumps(a)) == a
    assert ("__slots__" in cls.__dict__) == ("__slots__" in ref.__dict__)
    for f in dataclasses.fields(cls):
        assert hasattr(cls, f.name) == hasattr(ref, f.name), f.name
        if hasattr(ref, f.name) and "__slots__" not in ref.__dict__:
            assert getattr(cls, f.name) == getattr(ref, f.name), f.name


def test_dataclass_runs_only_when_asked() -> None:
    """At start-up no record class goes through dataclass(): its dataclass metadata is made on first use."""
    import subprocess
    import sys

    code = ("import dataclasses, sys\n"
            "made = []\n"
            "orig = dataclasses._process_class\n"
            "dataclasses._process_class = lambda cls, *a: made.append(cls.__qualname__) or orig(cls, *a)\n"
            "from cpumodel.check import check_paths\n"
            "check_paths(['profiles/neoverse-n1.yaml'])\n"
            "print(sorted(made))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT.parent).stdout
    assert out.strip() == "[]"
