"""Shipped derived data matches what the tools derive today."""

from __future__ import annotations

import json

import pytest

from tools.gen_floors import OUT, build


def test_version_floors_are_current() -> None:
    assert json.loads(OUT.read_text()) == json.loads(json.dumps(build())), "run: python -m tools.gen_floors"


def test_floor_module_is_current() -> None:
    """cpumodel/features/_floors.py (what the engine loads) holds the rows of version_floors.json."""
    from tools.gen_floors import MODULE, module_source

    assert MODULE.read_text() == module_source(json.loads(OUT.read_text())), "run: python -m tools.gen_floors"


def test_shipped_floors_are_used(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """version_floor of every version gives version_floors.json's rows (values and reasons) from the
    shipped module, deriving nothing."""
    from cpumodel.features import FeatureModel

    fm = FeatureModel.load()
    fm._floors.clear()
    monkeypatch.setattr(fm, "_repair", lambda *a, **k: pytest.fail("a shipped floor was derived afresh"))
    for v, rows in json.loads(OUT.read_text())["floors"].items():
        got = fm.version_floor(v)
        assert sorted([r, f, val, got.reasons[(r, f)]] for (r, f), val in got.items()) == sorted(rows), v


def test_feature_program_is_current() -> None:
    """The precompiled constraint program (both modules) matches what features.json gives today."""
    from tools.feature_program import FEATURES, program_sources

    for path, text in program_sources(json.loads(FEATURES.read_text())).items():
        assert path.read_text() == text, f"{path.name}: run: python -m tools.gen_features --program"


def test_register_module_is_current() -> None:
    """cpumodel/_registers.py (what regdb loads) holds exactly the shipped registers.json."""
    from tools.gen_registers import MODULE, OUT, module_source

    data = json.loads(OUT.read_text(encoding="utf-8"))
    assert MODULE.read_text(encoding="utf-8") == module_source(data), "run: python -m tools.gen_registers --module"
    from cpumodel import _registers, regdb

    db = regdb.load()
    assert (db.kernel, db.source_file) == (data["_source"]["kernel"], data["_source"]["file"])
    assert list(db.registers) == list(data["registers"])
    for name, spec in data["registers"].items():  # what regdb builds == the JSON, field by field
        reg = db.registers[name]
        assert list(reg.encoding) == spec["enc"]
        assert [(f.name, f.msb, f.lsb, f.kind, f.order, {str(k): v for k, v in f.values.items()})
                for f in reg.fields] == [(f.get("name", f["kind"].upper()), f["msb"], f["lsb"], f["kind"],
                                          f.get("order", "none"), f.get("values", {})) for f in spec["fields"]]
        assert reg.source == (spec.get("source") or f"{data['_source']['file']}:{spec['line']} (Linux "
                                                    f"{data['_source']['kernel']})")
    assert len(_registers.REGISTERS) == len(data["registers"])


def test_no_code_is_compiled_at_run_time() -> None:
    """The engine runs the shipped evaluators: nothing under cpumodel/ calls compile() or exec()."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "cpumodel"
    hits = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py") if not p.name.startswith("_program")
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\b(exec|compile)\(", line)
            and not re.search(r"re\.compile\(", line)]
    assert not hits
