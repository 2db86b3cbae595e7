"""The published JSON Schema: current with the register database, and accepts what the loader accepts."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from conftest import REPO, shipped_profiles

from tools.gen_schema import OUT, build

SCHEMA = json.loads(OUT.read_text())


def test_schema_is_current() -> None:
    assert build() == SCHEMA, "run: python -m tools.gen_schema"


def test_schema_is_valid() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", shipped_profiles(), ids=lambda p: p.name)
def test_shipped_profiles_validate(path) -> None:  # type: ignore[no-untyped-def]
    jsonschema.validate(yaml.safe_load(path.read_text()), SCHEMA)


@pytest.mark.parametrize(("doc", "ok"), [
    ({"registers": {"ID_AA64PFR0_EL1": 0x2222}}, True),
    ({"registers": {"ID_AA64PFR0_EL1": {"SVE": "IMP", "FP": -1}}}, True),
    ({"registers": {"ID_AA64PFR0_EL1": {"SVE": 16}}}, False),
    ({"registers": {"ID_AA64PFR0_EL1": {"SVF": 1}}}, False),
    ({"registers": {"NOT_A_REG": 1}}, False),
    ({"registers": {"MPIDR_EL1": 0x80000000, "CNTFRQ_EL0": "0x16e3600"}}, True),  # outside the model: P004
    ({"registers": {"MPIDR_EL1": {"Aff0": 1}}}, False),
    ({"registers": {"ID_AA64PRF0_EL1": 0}}, False),
    ({"host_registers": {"MPIDR_EL1": {"Aff0": 1}}}, False),
    ({"regsiters": {}}, False),
    ({"vcpu_features": ["pmu", "sve"]}, True),
    ({"vcpu_features": ["sev"]}, False),
])
def test_schema_judgement(doc: dict, ok: bool) -> None:  # type: ignore[type-arg]
    errors = list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(doc))
    assert (not errors) == ok


def test_profiles_reference_schema() -> None:
    for p in shipped_profiles():
        first = p.read_text().splitlines()[0]
        assert "$schema=../cpumodel/data/profile.schema.json" in first, p.name
    assert (REPO / "cpumodel/data/profile.schema.json").exists()
