"""Shipped derived data matches what the tools derive today."""

from __future__ import annotations

import json

from tools.gen_floors import OUT, build


def test_version_floors_are_current() -> None:
    assert json.loads(OUT.read_text()) == json.loads(json.dumps(build())), "run: python -m tools.gen_floors"


def test_shipped_floors_are_used() -> None:
    from cpumodel.features import FeatureModel

    fm = FeatureModel.load()
    fresh = build()["floors"]["v8Ap2"]  # type: ignore[index]
    got = fm.version_floor("armv8.2-a")
    assert sorted([r, f, v] for (r, f), v in got.items()) == sorted([r, f, v] for r, f, v, _ in fresh)
