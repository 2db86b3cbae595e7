"""The register database: layout invariants, KVM one-reg IDs, and a cross-check against Arm's spec."""

from __future__ import annotations

import json

import pytest
from conftest import REFERENCE

from cpumodel import regdb
from cpumodel.errors import CpumodelError

DB = regdb.load()


def test_every_register_is_tiled_by_its_fields() -> None:
    for reg in DB:
        covered = 0
        for f in reg.fields:
            assert covered & f.mask == 0, f"{reg.name}.{f.name} overlaps another field"
            covered |= f.mask
        assert covered == (1 << 64) - 1, f"{reg.name}: bits {~covered & ((1 << 64) - 1):#x} undescribed"


def test_required_registers_present() -> None:
    wanted = [
        "ID_AA64PFR0_EL1", "ID_AA64PFR1_EL1", "ID_AA64PFR2_EL1", "ID_AA64ZFR0_EL1", "ID_AA64SMFR0_EL1",
        "ID_AA64FPFR0_EL1", "ID_AA64DFR0_EL1", "ID_AA64DFR1_EL1", "ID_AA64AFR0_EL1", "ID_AA64AFR1_EL1",
        "ID_AA64ISAR0_EL1", "ID_AA64ISAR1_EL1", "ID_AA64ISAR2_EL1", "ID_AA64ISAR3_EL1", "ID_AA64MMFR0_EL1",
        "ID_AA64MMFR1_EL1", "ID_AA64MMFR2_EL1", "ID_AA64MMFR3_EL1", "ID_AA64MMFR4_EL1", "ID_PFR0_EL1",
        "ID_PFR1_EL1", "ID_PFR2_EL1", "ID_DFR0_EL1", "ID_DFR1_EL1", "ID_ISAR0_EL1", "ID_ISAR1_EL1",
        "ID_ISAR2_EL1", "ID_ISAR3_EL1", "ID_ISAR4_EL1", "ID_ISAR5_EL1", "ID_ISAR6_EL1", "ID_MMFR0_EL1",
        "ID_MMFR1_EL1", "ID_MMFR2_EL1", "ID_MMFR3_EL1", "ID_MMFR4_EL1", "ID_MMFR5_EL1", "MVFR0_EL1",
        "MVFR1_EL1", "MVFR2_EL1", "MIDR_EL1", "REVIDR_EL1", "CTR_EL0", "CLIDR_EL1", "AIDR_EL1", "DCZID_EL0",
    ]
    missing = [w for w in wanted if w not in DB.registers]
    assert not missing


@pytest.mark.parametrize(("name", "expected"), [
    # KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG | encoding, from the UAPI headers
    # (include/uapi/linux/kvm.h, arch/arm64/include/uapi/asm/kvm.h); values as QEMU's
    # target/arm/cpu-sysregs.h.inc / KVM selftests compute them for these encodings.
    ("ID_AA64PFR0_EL1", 0x603000000013C020),  # 3,0,0,4,0
    ("MIDR_EL1", 0x603000000013C000),  # 3,0,0,0,0
    ("CTR_EL0", 0x603000000013D801),  # 3,3,0,0,1
    ("ID_PFR0_EL1", 0x603000000013C008),  # 3,0,0,1,0
])
def test_onereg_ids(name: str, expected: int) -> None:
    assert DB.get(name).onereg == expected


def test_lookup_is_forgiving_but_exact() -> None:
    assert DB.get("id_aa64pfr0_el1").name == "ID_AA64PFR0_EL1"
    assert DB.get("ID_AA64PFR0").name == "ID_AA64PFR0_EL1"
    assert DB.get("S3_0_C0_C4_0").name == "ID_AA64PFR0_EL1"
    with pytest.raises(CpumodelError, match="did you mean ID_AA64PFR0_EL1"):
        DB.get("ID_AA64PRF0_EL1")


def test_field_encode_decode_signed() -> None:
    fp = DB.get("ID_AA64PFR0_EL1").field("FP")
    assert fp.signed and fp.as_signed(0xF) == -1
    v = fp.put(0, 0xF)
    assert v == 0xF << 16 and fp.get(v) == 0xF


def _arm_fields(node: object, out: list[tuple[str, str, str]]) -> None:
    if isinstance(node, dict):
        if node.get("_type") == "Types.Field":
            v = node["value"]
            out.append((v["name"], v["field"], v["state"]))
        for x in node.values():
            _arm_fields(x, out)
    elif isinstance(node, list):
        for x in node:
            _arm_fields(x, out)


def _comparisons(node: object, out: list[tuple[str, str, str, int]]) -> None:
    """(register, field, op, integer) for every `UInt/SInt(REG.FIELD) op N` in Arm's constraints."""
    if isinstance(node, dict):
        if node.get("_type") == "AST.BinaryOp" and node["right"].get("_type") == "AST.Integer":
            left = node["left"]
            if left.get("_type") == "AST.Function" and left["arguments"][0].get("_type") == "Types.Field":
                v = left["arguments"][0]["value"]
                out.append((v["name"], v["field"], node["op"], node["right"]["value"]))
        for x in node.values():
            _comparisons(x, out)
    elif isinstance(node, list):
        for x in node:
            _comparisons(x, out)


@pytest.mark.skipif(not (REFERENCE / "arm-aarchmrs" / "Features.json").exists(), reason="no ../shared/reference")
def test_fields_against_arm_feature_model() -> None:
    """Every ID-register field Arm's feature model names exists here, and every value it compares
    a field with fits the field (and, for ==, is a value our database defines)."""
    spec = json.loads((REFERENCE / "arm-aarchmrs" / "Features.json").read_text())
    comps: list[tuple[str, str, str, int]] = []
    _comparisons(spec, comps)
    checked = 0
    for reg, field, op, n in comps:
        name = DB.canonical(reg)
        if name is None:
            continue  # not an ID register we model (e.g. EDDFR, PMMIR_EL1)
        f = DB.registers[name].find_field(field)
        assert f is not None, f"Arm names {reg}.{field}; our database has no such field"
        if op in ("==", "!=") and f.kind == "enum" and f.values:
            assert n in f.values, f"{reg}.{field} {op} {n}: value not defined in our database"
        assert 0 <= n < (1 << f.width) or (f.signed and -(1 << (f.width - 1)) <= n), (reg, field, n)
        checked += 1
    assert checked > 300
