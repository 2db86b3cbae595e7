"""Tests of the VMM output formats: kvm, c-header, firecracker, qemu.

Golden files: tests/golden/emit/<profile>.<fmt> (fmt: kvm, h, firecracker.json, qemu) for every
shipped profile. Regenerate them after an intended change with::

    CPUMODEL_UPDATE_GOLDEN=1 pytest tests/test_emit_formats.py

and review the diff. The models behind the golden files are built here from each profile's
``registers:`` (raw values, and field edits applied on top of a ``base:``), not through the
resolver, so they pin the emitters alone: the ``arch:`` floor and ``features:`` of the resolver
are not applied (no shipped profile needs them for the registers it lists).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import yaml

from cpumodel import regdb
from cpumodel.emit import emit, kvmlist, qemu
from cpumodel.emit import firecracker as fc
from cpumodel.errors import CpumodelError
from cpumodel.resolve import Model, Resolver
from cpumodel.template import MASK64, make_template

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "profiles"
GOLDEN = Path(__file__).resolve().parent / "golden" / "emit"
UPDATE = os.environ.get("CPUMODEL_UPDATE_GOLDEN") == "1"
FORMATS = {"kvm": "kvm", "c-header": "h", "firecracker": "firecracker.json", "qemu": "qemu"}
SHIPPED = sorted(p.stem for p in PROFILES.glob("*.yaml"))
REQUIRED = ("cortex-a57", "neoverse-n1", "neoverse-v1")


def profile_model(name: str) -> Model:
    """A Model with the registers the profile lists (field edits applied on its base's values)."""
    db = regdb.load()
    doc = yaml.safe_load((PROFILES / f"{name}.yaml").read_text())
    values: dict[str, int] = dict(profile_model(doc["base"]).values) if doc.get("base") else {}
    for reg, spec in (doc.get("registers") or {}).items():
        r = db.get(reg)
        if isinstance(spec, int):
            values[r.name] = spec
        else:
            value = values.get(r.name, r.res1_mask)
            for fname, fv in spec.items():
                value = r.field(fname).put(value, int(fv))
            values[r.name] = value
    feats = doc.get("vcpu_features")
    return Model(name=doc["name"], path=f"profiles/{name}.yaml", values=values,
                 vcpu_features=frozenset(feats) if feats is not None else None)


#: Templates depend on KVM's view of the hosts, so on the kernel: pinned here.
KERNEL = "7.3"


def resolved(name: str) -> Model:
    return Resolver().resolve_file(str(PROFILES / f"{name}.yaml"))


def golden_model(name: str, fmt: str) -> Model:
    """The model a golden file is made from. Firecracker templates are relative to the model's origin,
    so guest profiles go through the resolver; a host profile (which emit refuses) stands in as a
    guest model written from scratch (no base, so no reference: every bit pinned)."""
    if fmt == "firecracker" and resolved(name).role == "guest":
        return resolved(name)
    return profile_model(name)


def render(model: Model, fmt: str, **opts: object) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.EmitNote)
        return emit(model, fmt, **opts)


def test_required_profiles_are_shipped() -> None:
    assert set(REQUIRED) <= set(SHIPPED)


# ---------------------------------------------------------------------------------------------
# golden files


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("name", SHIPPED)
def test_golden(name: str, fmt: str) -> None:
    text = render(golden_model(name, fmt), fmt, **({"kernel": KERNEL} if fmt == "firecracker" else {}))
    path = GOLDEN / f"{name}.{FORMATS[fmt]}"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"missing golden file {path}; run with CPUMODEL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path} differs; if intended, regenerate with CPUMODEL_UPDATE_GOLDEN=1"


def test_no_stale_golden_files() -> None:
    expected = {f"{n}.{ext}" for n in SHIPPED for ext in FORMATS.values()}
    present = {p.name for p in GOLDEN.iterdir()} if GOLDEN.is_dir() else set()
    assert present == expected


# ---------------------------------------------------------------------------------------------
# kvm list


def kvm_lines(text: str) -> list[tuple[int, int, str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"(0x[0-9a-f]{16}) (0x[0-9a-f]{16})  # (\w+)"
                         r"(?: \(changes [\w, \[\]:*]+; mask 0x[0-9a-f]{16}\))?", line)
        assert m, f"malformed line {line!r}"
        rows.append((int(m[1], 16), int(m[2], 16), m[3]))
    return rows


@pytest.mark.parametrize("name", SHIPPED)
def test_kvm_list_order_and_values(name: str) -> None:
    model = profile_model(name)
    db = regdb.load()
    rows = kvm_lines(render(model, "kvm"))
    regs = [db.registers[n] for _, _, n in rows]
    # every line is a register of the model with its one-reg ID and value
    assert all(r.onereg == i and model.values[r.name] == v for (i, v, _), r in zip(rows, regs, strict=True))
    # ID registers first, each part in encoding order (which is also one-reg ID order)
    keys = [(not kvmlist.is_id_space(r), r.encoding) for r in regs]
    assert keys == sorted(keys)
    assert [i for i, _, _ in rows] == sorted(i for i, _, _ in rows)
    # all of the model's registers are there, except those KVM has no one-reg for
    assert {n for _, _, n in rows} == set(model.values) - set(kvmlist.NO_ONE_REG)


def test_kvm_list_header_and_unsettable() -> None:
    model = profile_model("cortex-a57")
    text = render(model, "kvm")
    assert "Documentation/virt/kvm/api.rst" in text and "KVM_SET_ONE_REG" in text
    assert "vcpu-features.rst" in text and "EBUSY" in text
    # DCZID_EL0 has no one-reg: kept as a commented-out line with the reason
    dczid = regdb.load().registers["DCZID_EL0"]
    assert f"# {dczid.onereg:#018x} {model.values['DCZID_EL0']:#018x}  # DCZID_EL0: KVM has no one-reg" in text
    # MIDR_EL1 needs the writable-implementation-ID capability for a non-host value
    assert "KVM_CAP_ARM_WRITABLE_IMP_ID_REGS (239)" in text


def test_kvm_list_vcpu_features_word() -> None:
    model = profile_model("neoverse-v1")
    text = render(model, "kvm", vcpu_features=frozenset({"sve", "ptrauth"}))
    assert "features[0] |= 0x70" in text  # bits 4, 5, 6
    assert kvmlist.features_word(frozenset({"el1_32bit", "pmu"})) == 0b1010
    assert "not given by the profile" in render(model, "kvm")


def test_write_order_puts_id_space_first() -> None:
    # CTR_EL0 (op1=3) and CLIDR_EL1 (op1=1) are in KVM's ID range; MIDR_EL1 sorts first by encoding
    model = Model(name="t", path="t.yaml", values={"CTR_EL0": 0, "CLIDR_EL1": 0, "ID_AA64PFR0_EL1": 0,
                                                   "MIDR_EL1": 0})
    assert [r.name for r, _ in kvmlist.write_order(model)] == ["MIDR_EL1", "ID_AA64PFR0_EL1", "CLIDR_EL1",
                                                               "CTR_EL0"]


# ---------------------------------------------------------------------------------------------
# C header

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="gcc not installed")


def gcc(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert GCC is not None
    return subprocess.run([GCC, "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-std=c99", *map(str, args)],
                          capture_output=True, text=True, check=False)


@needs_gcc
@pytest.mark.parametrize("name", SHIPPED)
def test_c_header_compiles(name: str, tmp_path: Path) -> None:
    model = profile_model(name)
    header = tmp_path / f"{name}.h"
    header.write_text(render(model, "c-header"))
    ident = kvmlist.c_identifier(model.name)
    ok, _ = kvmlist.settable(model)
    # the header on its own, then a user that checks the count at compile time
    r = gcc(header)
    assert r.returncode == 0, r.stderr
    user = tmp_path / "user.c"
    user.write_text(
        f'#include "{header.name}"\n#include "{header.name}"\n'
        f"typedef char count_ok[(sizeof(cpumodel_{ident.lower()}_regs) / sizeof(struct cpumodel_reg)"
        f" == {len(ok)} && CPUMODEL_{ident.upper()}_NREGS == {len(ok)}) ? 1 : -1];\n"
        f"int main(void) {{ return (int)(cpumodel_{ident.lower()}_regs[0].id & 1u); }}\n")
    r = gcc("-I", tmp_path, user)
    assert r.returncode == 0, r.stderr


@needs_gcc
def test_two_c_headers_in_one_unit(tmp_path: Path) -> None:
    for n in ("cortex-a57", "neoverse-n1"):
        (tmp_path / f"{n}.h").write_text(render(profile_model(n), "c-header", vcpu_features=frozenset({"pmu"})))
    user = tmp_path / "both.c"
    user.write_text('#include "cortex-a57.h"\n#include "neoverse-n1.h"\n'
                    "int main(void) { return (int)(cpumodel_cortex_a57_regs[0].value"
                    " + cpumodel_neoverse_n1_regs[0].value + CPUMODEL_NEOVERSE_N1_VCPU_FEATURES0) & 1; }\n")
    r = gcc("-I", tmp_path, user)
    assert r.returncode == 0, r.stderr


def test_c_header_entries_in_write_order() -> None:
    model = profile_model("neoverse-v1")
    text = render(model, "c-header")
    entries = re.findall(r"\{ UINT64_C\((0x[0-9a-f]+)\), UINT64_C\((0x[0-9a-f]+)\) \},\t/\* (\w+) ", text)
    ok, skipped = kvmlist.settable(model)
    assert [(int(i, 16), int(v, 16), n) for i, v, n in entries] == [(r.onereg, v, r.name) for r, v in ok]
    assert f"#define CPUMODEL_NEOVERSE_V1_NREGS {len(ok)}" in text
    assert [r.name for r, _ in skipped] == ["DCZID_EL0"] and "DCZID_EL0 = 0x" in text


def test_c_identifier() -> None:
    assert kvmlist.c_identifier("neoverse-n1") == "neoverse_n1"
    assert kvmlist.c_identifier("9x.y") == "_9x_y"


# ---------------------------------------------------------------------------------------------
# Firecracker: the custom CPU template schema, transcribed from Firecracker's own source
# (firecracker-microvm/firecracker):
#   src/vmm/src/cpu_config/aarch64/custom_cpu_template.rs @ 1bc7deef1426: CustomCpuTemplate has the
#     optional fields kvm_capabilities, vcpu_features, reg_modifiers and deny_unknown_fields;
#     VcpuFeatures {index: u32, bitmap: RegisterValueFilter<u32>}; RegisterModifier {addr: u64 from a
#     string, bitmap: RegisterValueFilter<u128>}; validate(): the register size comes from the
#     one-reg ID, U32/U64 bitmaps must fit the register, U128 always fits, other sizes are refused.
#   src/vmm/src/cpu_config/templates.rs @ c82226848d58: KvmCapability is "N" or "!N" with N a u32;
#     a bitmap is an optional "0b" then 0/1/x/_ read from the right, refused past the type's width.
#   src/vmm/src/cpu_config/templates_serde.rs @ 074a6530a401: addr needs a 0x or 0b prefix.
#   src/vmm/src/vstate/vcpu/aarch64.rs @ 00a8d521c845: features[index] of kvm_vcpu_init, which has
#     7 words (Linux arch/arm64/include/uapi/asm/kvm.h struct kvm_vcpu_init).

#   docs/cpu_templates/schema.json @ c34ed6c8a27b: vcpu_features "index" - only 0 is used (the code indexes
#     kvi.features[index] unchecked: vstate/vcpu/aarch64.rs init() @ 00a8d521c845).
#   PR #5726 "fix(aarch64): return error when PMU V3 is enabled" (merged): the PMU_V3 bit (3) is refused.

FC_KEYS = {"kvm_capabilities", "vcpu_features", "reg_modifiers"}
PMU_V3 = 3  # KVM_ARM_VCPU_PMU_V3: arch/arm64/include/uapi/asm/kvm.h (Linux 7.3.4)
KVM_REG_SIZE_SHIFT, KVM_REG_SIZE_MASK = 52, 0x00F0000000000000  # include/uapi/linux/kvm.h


def fc_bitmap(text: str, width: int) -> tuple[int, int]:
    """(filter, value) of a Firecracker bitmap string, or ValueError where Firecracker refuses it."""
    body = text[2:] if text.startswith("0b") else text
    filt = value = i = 0
    for ch in reversed(body):
        if ch == "_":
            continue
        if i == width:
            raise ValueError(f"bitmap {text!r} longer than {width} bits")
        if ch == "1":
            filt |= 1 << i
            value |= 1 << i
        elif ch == "0":
            filt |= 1 << i
        elif ch != "x":
            raise ValueError(f"bitmap {text!r}: unknown character {ch!r}")
        i += 1
    return filt, value


def fc_number(text: str) -> int:
    if text.startswith("0b") and re.fullmatch(r"[01]+", text[2:]):
        return int(text[2:], 2)
    if text.startswith("0x") and re.fullmatch(r"[0-9a-fA-F]+", text[2:]):
        return int(text[2:], 16)
    raise ValueError(f"no 0x/0b prefix or not a number: {text!r}")


def fc_check(doc: object) -> list[tuple[int, int, int]]:
    """Apply Firecracker's structure rules; returns (addr, filter, value) per reg modifier."""
    if not isinstance(doc, dict) or set(doc) - FC_KEYS:
        raise ValueError(f"unknown top-level keys: {sorted(set(doc) - FC_KEYS) if isinstance(doc, dict) else doc}")
    for cap in doc.get("kvm_capabilities", []):
        if not (isinstance(cap, str) and re.fullmatch(r"!?\d+", cap) and int(cap.lstrip("!")) < 2**32):
            raise ValueError(f"bad kvm capability {cap!r}")
    for feat in doc.get("vcpu_features", []):
        if not (isinstance(feat, dict) and {"index", "bitmap"} <= set(feat) and isinstance(feat["index"], int)):
            raise ValueError(f"bad vcpu feature {feat!r}")
        if feat["index"] != 0:
            raise ValueError(f"vcpu feature index {feat['index']}: only 0 is used")
        filt, value = fc_bitmap(feat["bitmap"], 32)
        if value & filt & (1 << PMU_V3):
            raise ValueError("KVM_ARM_VCPU_PMU_V3 is refused")
    out = []
    for mod in doc.get("reg_modifiers", []):
        if not (isinstance(mod, dict) and isinstance(mod.get("addr"), str) and isinstance(mod.get("bitmap"), str)):
            raise ValueError(f"bad reg modifier {mod!r}")
        addr = fc_number(mod["addr"])
        if not 0 <= addr < 2**64:
            raise ValueError(f"addr {mod['addr']} is not a u64")
        filt, value = fc_bitmap(mod["bitmap"], 128)
        size = 1 << ((addr & KVM_REG_SIZE_MASK) >> KVM_REG_SIZE_SHIFT)
        if size in (4, 8):
            if max(filt, value) >= 1 << (8 * size):
                raise ValueError(f"bitmap wider than register {addr:#x}")
        elif size != 16:
            raise ValueError(f"register {addr:#x}: only 32, 64 and 128 bit registers")
        out.append((addr, filt, value))
    return out


def test_fc_checker_follows_firecracker_rules() -> None:
    ok = {"kvm_capabilities": ["1", "!2"], "vcpu_features": [{"index": 0, "bitmap": "0b01_0x"}],
          "reg_modifiers": [{"addr": "0x603000000013c020", "bitmap": "0bxx01"}]}
    assert fc_check(ok) == [(0x603000000013C020, 0b11, 0b01)]
    for bad in ({**ok, "notes": []},
                {"kvm_capabilities": ["a1"]},
                {"vcpu_features": [{"index": 0, "bitmap": "0b1" * 1 + "0" * 32}]},
                {"reg_modifiers": [{"addr": "603000000013c020", "bitmap": "0b1"}]},
                {"reg_modifiers": [{"addr": "0x603000000013c020", "bitmap": "0b2"}]},
                {"reg_modifiers": [{"addr": "0x603000000013c020", "bitmap": "0b1" + "0" * 64}]},
                {"reg_modifiers": [{"addr": "0x0010000000000000", "bitmap": "0b1"}]},
                {"vcpu_features": [{"index": 1, "bitmap": "0b1"}]},
                {"vcpu_features": [{"index": 0, "bitmap": "0b1000"}]},
                # Firecracker's own cases: custom_cpu_template.rs test_malformed_json @ 055fda4dda1d
                {"reg_modifiers": [{"addr": "j", "bitmap": "0bx00100xxx1xxxx00xxx1xxxxxxxxxxx1"}]},
                {"reg_modifiers": [{"addr": "0bK", "bitmap": "0bx00100xxx1xxxx00xxx1xxxxxxxxxxx1"}]},
                {"reg_modifiers": [{"addr": "0x603000000013c020", "bitmap": "0bx0?1_0_0x_?x1xxxx00xxx1xxxxxxxxxxx1"}]},
                {"reg_modifiers": [{"addr": "0x603000000013c020", "bitmap": "0bx00100x0x1xxxx05xxx1xxxxxxxxxxx1"}]}):
        with pytest.raises(ValueError):
            fc_check(bad)
    # the same bitmap without the bad characters parses, and PMU_V3 may be cleared
    fc_check({"reg_modifiers": [{"addr": "0x603000000013c020", "bitmap": "0bx00100xxx1xxxx00xxx1xxxxxxxxxxx1"}],
              "vcpu_features": [{"index": 0, "bitmap": "0b0xxx"}]})


@pytest.mark.parametrize("name", SHIPPED)
def test_firecracker_template_structure(name: str) -> None:
    model = golden_model(name, "firecracker")
    doc = json.loads(render(model, "firecracker", kernel=KERNEL))
    mods = fc_check(doc)
    if model.vcpu_features is None:
        assert "vcpu_features" not in doc  # no vCPU features in the profile: none in the template
    else:
        assert "vcpu_features" in doc
    tpl = make_template(model, kernel=KERNEL)
    # exactly the template's writes, in write order, masked: x where the model does not care
    assert mods == [(w.register.onereg, w.mask, w.bits) for w in tpl.writes]
    for raw, (addr, _, _) in zip(doc["reg_modifiers"], mods, strict=True):
        assert re.fullmatch(r"0b[01x]{64}", raw["bitmap"]) and raw["addr"] == f"{addr:#x}"
    names = {w.register.name for w in tpl.writes}
    assert not names & {"MIDR_EL1", "REVIDR_EL1", "AIDR_EL1", "DCZID_EL0"}  # no kvm_caps: left to the host
    if not tpl.references:  # written from scratch: nothing to be relative to, every bit pinned
        assert all(f == MASK64 for _, f, _ in mods) and names == set(model.values) - {
            "MIDR_EL1", "REVIDR_EL1", "AIDR_EL1", "DCZID_EL0"}


def test_firecracker_vcpu_features() -> None:
    model = profile_model("neoverse-v1")
    doc = json.loads(render(model, "firecracker", vcpu_features=frozenset({"sve", "ptrauth"})))
    fc_check(doc)
    assert doc["kvm_capabilities"] == ["170", "171", "172"]
    assert doc["vcpu_features"] == [{"index": 0, "bitmap": "0b1110x0x"}]
    filt, value = fc_bitmap(doc["vcpu_features"][0]["bitmap"], 32)
    assert filt == 0b1111010 and value == 0b1110000  # POWER_OFF (0) and PSCI_0_2 (2) left to Firecracker
    none = json.loads(render(model, "firecracker", vcpu_features=frozenset()))
    assert "kvm_capabilities" not in none and none["vcpu_features"] == [{"index": 0, "bitmap": "0b0000x0x"}]


# Firecracker's static V1N1 template as (register, filter, value), quoted from
# src/vmm/src/cpu_config/aarch64/static_cpu_templates/v1n1.rs fn v1n1() at firecracker-microvm/firecracker
# 074a6530a401b46a616ec3f0f55ff88f2b2c5d65 (read with the project's source search; the same four
# RegisterModifiers as at 8cd9e20f822c, which profiles/firecracker-v1n1.yaml cites):
#     addr: ID_AA64PFR0_EL1,  bitmap: RegisterValueFilter { filter: 0x000F000F00000000, value: 0x0000000000000000 }
#     addr: ID_AA64ISAR0_EL1, bitmap: RegisterValueFilter { filter: 0xF0FF0FFF0000F000, value: 0x0000000000001000 }
#     addr: ID_AA64ISAR1_EL1, bitmap: RegisterValueFilter { filter: 0x00FFF00000FFF00F, value: 0x0000000000100001 }
#     addr: ID_AA64MMFR2_EL1, bitmap: RegisterValueFilter { filter: 0x0000000F00000000, value: 0x0000000000000000 }
V1N1 = (("ID_AA64PFR0_EL1", 0x000F000F00000000, 0x0),
        ("ID_AA64ISAR0_EL1", 0xF0FF0FFF0000F000, 0x0000000000001000),
        ("ID_AA64ISAR1_EL1", 0x00FFF00000FFF00F, 0x0000000000100001),
        ("ID_AA64MMFR2_EL1", 0x0000000F00000000, 0x0))


def _origin_support() -> bool:
    from cpumodel.template import is_origin

    return is_origin(resolved("neoverse-v1-kvm7.3"))


#: 'origin: kvm-defaults' (and findings inherited from KVM's defaults as warnings) come from issue 9.
needs_origin = pytest.mark.skipif(not _origin_support(), reason="profiles cannot say 'origin: kvm-defaults' yet")


@needs_origin
def test_firecracker_v1n1_template_equals_firecrackers_static_v1n1() -> None:
    """What the README's user runs (emit profiles/firecracker-v1n1.yaml --format firecracker) gives
    Firecracker's own V1N1, bit by bit: the same registers, filters and values, nothing else."""
    from click.testing import CliRunner

    from cpumodel.cli import main

    db = regdb.load()
    res = CliRunner().invoke(main, ["emit", str(PROFILES / "firecracker-v1n1.yaml"), "--format", "firecracker",
                                    "--kernel", KERNEL])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert "kvm_capabilities" not in doc
    assert fc_check(doc) == [(db.registers[r].onereg, f, v) for r, f, v in V1N1]


@pytest.mark.parametrize("feature", ["pmu", "el1_32bit"])
def test_firecracker_refuses_what_it_cannot_run(feature: str) -> None:
    with pytest.raises(CpumodelError, match=feature):
        render(profile_model("neoverse-n1"), "firecracker", vcpu_features=frozenset({feature, "sve"}))


def test_firecracker_drops_registers_without_one_reg_loudly() -> None:
    model = profile_model("cortex-a57")
    with pytest.warns(fc.EmitNote, match="DCZID_EL0"):
        doc = json.loads(emit(model, "firecracker"))
    dczid = regdb.load().registers["DCZID_EL0"].onereg
    assert f"{dczid:#x}" not in {m["addr"] for m in doc["reg_modifiers"]}
    with pytest.raises(CpumodelError, match="DCZID_EL0"):
        emit(model, "firecracker", strict=True)
    quiet = Model(name="q", path="q.yaml", values={"ID_AA64ISAR0_EL1": 0x1000})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fc_check(json.loads(emit(quiet, "firecracker", strict=True))) == [
            (regdb.load().registers["ID_AA64ISAR0_EL1"].onereg, (1 << 64) - 1, 0x1000)]


# ---------------------------------------------------------------------------------------------
# QEMU

UPSTREAM_PROPS = {"pmu", "sve", "pauth", "aarch64"} | {f"sve{n}" for n in qemu.SVE_LENGTHS}


def qemu_props(text: str) -> tuple[str, dict[str, str]]:
    first, *rest = text.splitlines()
    assert all(line.startswith("#") for line in rest)
    model, *props = first.split(",")
    pairs = dict(p.split("=", 1) for p in props)
    assert len(pairs) == len(props), "a property appears twice"
    return model, pairs


@pytest.mark.parametrize("name", SHIPPED)
def test_qemu_upstream_properties(name: str) -> None:
    model = profile_model(name)
    text = render(model, "qemu")
    cpu, props = qemu_props(text)
    assert cpu == "host"
    assert set(props) <= UPSTREAM_PROPS and set(props.values()) <= {"on", "off"}
    for p in props:
        label = "sve<N>" if re.fullmatch(r"sve\d+", p) else p
        assert f"# property {label}: since " in text
    # every named field of every register is either set exactly by a property or listed in the notes
    db = regdb.load()
    for reg, value in model.values.items():
        for f in db.registers[reg].named_fields:
            prop = qemu.COVERED.get((reg, f.name)) or qemu.COVERED.get((reg, "*"))
            exact = prop in props and props[prop] == "off" and f.get(value) == 0
            assert exact or re.search(rf"^#   {reg}\b.*\b{f.name}={f.get(value):#x}\b", text, re.M), (reg, f.name)
    assert "SYSREG_" not in text.splitlines()[0] and "not upstream" in text
    with pytest.raises(CpumodelError, match="cannot express"):
        render(model, "qemu", strict=True)


def test_qemu_vcpu_feature_mapping() -> None:
    model = profile_model("neoverse-v1")
    _, props = qemu_props(render(model, "qemu", vcpu_features=frozenset({"sve", "ptrauth", "el1_32bit"})))
    assert props == {"pmu": "off", "sve": "on", "pauth": "on", "aarch64": "off"}
    _, props = qemu_props(render(model, "qemu", vcpu_features=frozenset({"pmu"})))
    assert props == {"pmu": "on", "sve": "off", "pauth": "off", "aarch64": "on"}
    # derived from the fields when no vCPU features are given: V1 has PMUv3, SVE and pointer auth
    # (ID_AA64ISAR1_EL1.APA=3, GPA=1); the Cortex-A57 profile has no ID_AA64ISAR1_EL1, so no pauth
    _, props = qemu_props(render(model, "qemu"))
    assert props == {"pmu": "on", "sve": "on", "pauth": "on"}
    _, props = qemu_props(render(profile_model("cortex-a57"), "qemu"))
    assert props == {"pmu": "on", "sve": "off"}


def test_qemu_sve_lengths() -> None:
    model = profile_model("neoverse-v1")
    first = render(model, "qemu", vcpu_features=frozenset({"sve"}), sve_lengths=[256, 128]).splitlines()[0]
    assert first == "host,pmu=off,sve=on,sve128=on,sve256=on,pauth=off,aarch64=on"
    with pytest.raises(CpumodelError, match="sve<N>"):
        render(model, "qemu", vcpu_features=frozenset({"sve"}), sve_lengths=[100])
    with pytest.raises(CpumodelError, match="SVE on"):
        render(model, "qemu", vcpu_features=frozenset(), sve_lengths=[128])


def test_qemu_sysreg_properties() -> None:
    model = profile_model("neoverse-n1")
    text = render(model, "qemu", sysreg_props=True)
    _, props = qemu_props(text)
    db = regdb.load()
    sysreg = {k: v for k, v in props.items() if k.startswith("SYSREG_")}
    expected = {f"SYSREG_{r}_{f.name}": f"{f.get(v):#x}" for r, v in model.values.items() if r in qemu.SYSREG_REGS
                for f in db.registers[r].named_fields}
    assert sysreg == expected
    # registers outside QEMU's idregs index stay in the notes
    assert re.search(r"^#   MIDR_EL1=0x[0-9a-f]{16}: Implementer=0x41", text, re.M)
    assert "not upstream" in text
    with pytest.raises(CpumodelError):
        render(model, "qemu", sysreg_props=True, strict=True)
    only_idregs = Model(name="s", path="s.yaml", values={"ID_AA64ISAR0_EL1": 0x10, "CTR_EL0": 0x8444C004})
    assert render(only_idregs, "qemu", sysreg_props=True, strict=True).startswith("host,SYSREG_")


def test_qemu_strict_passes_when_exact() -> None:
    model = Model(name="z", path="z.yaml", values={"ID_AA64ZFR0_EL1": 0}, vcpu_features=frozenset())
    assert render(model, "qemu", strict=True).splitlines()[0] == "host,pmu=off,sve=off,pauth=off,aarch64=on"


QEMU = shutil.which("qemu-system-aarch64")


@pytest.mark.skipif(QEMU is None, reason="qemu-system-aarch64 not installed")
def test_qemu_binary_knows_the_properties() -> None:
    """The installed QEMU's 'max' CPU (which is 'host' under KVM) has every upstream property emitted."""
    assert QEMU is not None
    cmds = ['{"execute":"qmp_capabilities"}',
            '{"execute":"qom-list-properties","arguments":{"typename":"max-arm-cpu"}}', '{"execute":"quit"}']
    r = subprocess.run([QEMU, "-machine", "none", "-nodefaults", "-display", "none", "-qmp", "stdio"],
                       input="\n".join(cmds) + "\n", capture_output=True, text=True, timeout=60, check=False)
    names: set[str] = set()
    for line in r.stdout.splitlines():
        msg = json.loads(line)
        if isinstance(msg.get("return"), list):
            names = {p["name"] for p in msg["return"]}
    assert names >= UPSTREAM_PROPS, sorted(UPSTREAM_PROPS - names)


# ---------------------------------------------------------------------------------------------
# shared


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_cli_vcpu_override_wins(fmt: str) -> None:
    model = profile_model("neoverse-v1")
    model.vcpu_features = frozenset({"sve"})
    via_opt = render(model, fmt, vcpu_features=frozenset({"ptrauth"}))
    via_profile = render(Model(name=model.name, path=model.path, values=model.values,
                               vcpu_features=frozenset({"ptrauth"})), fmt)
    if fmt == "qemu":  # the notes say where the features came from; the command is the same
        assert via_opt.splitlines()[0] == via_profile.splitlines()[0]
        assert "(from the vcpu_features option)" in via_opt and "(from the profile)" in via_profile
    else:
        assert via_opt == via_profile


def test_feature_bits_match_kernel_uapi() -> None:
    # arch/arm64/include/uapi/asm/kvm.h (Linux 7.3.4): EL1_32BIT 1, PMU_V3 3, SVE 4, PTRAUTH_ADDRESS 5,
    # PTRAUTH_GENERIC 6; checked against the header when the kernel source is on this machine.
    assert kvmlist.VCPU_FEATURE_BITS == {"el1_32bit": (1,), "pmu": (3,), "sve": (4,), "ptrauth": (5, 6)}
    header = Path("/work/apt/src/k7.3/linux-source-7.3/arch/arm64/include/uapi/asm/kvm.h")
    if not header.is_file():
        pytest.skip("kernel source not on this machine")
    defs = dict(re.findall(r"#define (KVM_ARM_VCPU_\w+)\s+(\d+)", header.read_text()))
    assert [int(defs[k]) for k in ("KVM_ARM_VCPU_EL1_32BIT", "KVM_ARM_VCPU_PMU_V3", "KVM_ARM_VCPU_SVE",
                                   "KVM_ARM_VCPU_PTRAUTH_ADDRESS", "KVM_ARM_VCPU_PTRAUTH_GENERIC")] == [1, 3, 4, 5, 6]


# ---------------------------------------------------------------------------------------------
# templates: what the model changes (cpumodel/template.py), through the command the user runs


def cli(*args: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from cpumodel.cli import main

    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize("fmt", ["kvm", "c-header", "firecracker", "qemu"])
def test_emit_refuses_a_host_profile_and_points_to_defaults(fmt: str) -> None:
    code, out, err = cli("emit", str(PROFILES / "neoverse-n1.yaml"), "--format", fmt)
    assert code == 2 and out == ""
    assert "role: host" in err and "cpumodel defaults" in err and "--kvm-view" in err
    with pytest.raises(CpumodelError, match="cpumodel defaults"):
        emit(resolved("neoverse-n1"), fmt)  # the engine refuses too, not only the CLI


def _defaults_check_clean() -> bool:
    """Whether findings in KVM's own defaults are warnings (issue 9's provenance), so --kvm-view can emit."""
    from cpumodel.check import Options, check_model
    from cpumodel.template import kvm_view_model

    model = kvm_view_model(resolved("neoverse-n1"), KERNEL, frozenset())
    return not any(f.severity == "error" for f in check_model(model, Options(kernel=KERNEL)))


def test_kvm_view_of_a_host_is_kvms_defaults_never_raw_host_values() -> None:
    from cpumodel.ops import kvm_defaults
    from cpumodel.template import effective_features, is_kvm_view, kvm_view_model

    host = resolved("neoverse-n1")
    view = kvm_view_model(host, KERNEL)
    want, _ = kvm_defaults(host, KERNEL, effective_features(host))
    assert view.values == want and view.role == "guest" and is_kvm_view(view)
    assert view.values["CLIDR_EL1"] != host.values["CLIDR_EL1"]  # the raw host value KVM would refuse
    rows = {n: v for _, v, n in kvm_lines(render(view, "kvm"))}
    assert rows == {n: v for n, v in want.items() if n not in kvmlist.NO_ONE_REG}
    # as a template relative to itself it changes nothing
    assert json.loads(render(view, "firecracker", kernel=KERNEL, vcpu_features=frozenset()))["reg_modifiers"] == []
    if not _defaults_check_clean():
        pytest.skip("KVM's own defaults of N1 have an ARCH-FEAT_RAS-4 error until issue 9 makes it a warning")
    code, out, err = cli("emit", str(PROFILES / "neoverse-n1.yaml"), "--kvm-view", "--format", "kvm",
                         "--kernel", KERNEL)
    assert code == 0, err
    assert {n: v for _, v, n in kvm_lines(out)} == rows


def test_template_for_a_pool_is_relative_to_every_hosts_kvm_view(tmp_path: Path) -> None:
    """A baseline of two hosts, emitted for both: only the fields where the pool differs from a host's
    KVM view are written, each with the pool's value; MIDR (each host's own) is left to the host."""
    from cpumodel.ops import baseline
    from cpumodel.report.profiles import baseline_yaml
    from cpumodel.template import effective_features, kvm_view

    hosts = [resolved("neoverse-n1"), resolved("cortex-a72")]
    b = baseline(hosts, KERNEL)
    pool = tmp_path / "pool.yaml"
    pool.write_text(baseline_yaml(b, hosts))
    model = Resolver().resolve_file(str(pool))
    tpl = make_template(model, hosts=hosts, kernel=KERNEL)
    views = [kvm_view(h, KERNEL, effective_features(model)) for h in hosts]
    assert tpl.writes and all(w.mask != MASK64 for w in tpl.writes)
    for w in tpl.writes:
        # on every host the write gives the pool's value
        assert all(w.apply(v[w.register.name]) == model.values[w.register.name] for v in views)
    for name, value in model.values.items():  # registers left out already agree with every host
        if name not in {w.register.name for w in tpl.writes} and name not in ("MIDR_EL1", "DCZID_EL0"):
            assert all(v.get(name) == value for v in views), name
    assert "MIDR_EL1" not in model.values  # the hosts differ: the baseline leaves it to each host
    code, out, err = cli("emit", str(pool), "--format", "firecracker", "--vcpu-features", "none", "--kernel", KERNEL,
                         "--host", str(PROFILES / "neoverse-n1.yaml"), "--host", str(PROFILES / "cortex-a72.yaml"))
    assert code == 0, err
    fc_check(json.loads(out))


def test_imp_id_registers_need_the_capability(tmp_path: Path) -> None:
    """MIDR_EL1 changed over the origin: an error without kvm_caps, written (and the capability required
    in kvm_capabilities) with it; REVIDR_EL1, unchanged, stays the host's."""
    prof = tmp_path / "midr.yaml"
    prof.write_text("base: neoverse-v1-kvm7.3\nname: midr\nregisters:\n  MIDR_EL1: 0x410fd0c0\n")
    with pytest.raises(CpumodelError, match="writable_imp_id_regs"):
        make_template(Resolver().resolve_file(str(prof)), kernel=KERNEL)
    code, _, err = cli("emit", str(prof), "--format", "firecracker", "--kernel", KERNEL)
    assert code in (1, 2) and "writable_imp_id_regs" in err
    code, out, err = cli("emit", str(prof), "--format", "firecracker", "--kernel", KERNEL,
                         "--kvm-caps", "writable_imp_id_regs")  # the option says it as the profile key does
    assert code == 0 and json.loads(out)["kvm_capabilities"] == [str(kvmlist.CAP_WRITABLE_IMP_ID_REGS)], err
    prof.write_text("base: neoverse-v1-kvm7.3\nname: midr\nkvm_caps: [writable_imp_id_regs]\n"
                    "registers:\n  MIDR_EL1: 0x410fd0c0\n")
    code, out, err = cli("emit", str(prof), "--format", "firecracker", "--kernel", KERNEL)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kvm_capabilities"] == [str(kvmlist.CAP_WRITABLE_IMP_ID_REGS)]
    midr = regdb.load().registers["MIDR_EL1"]
    assert fc_check(doc) == [(midr.onereg, MASK64, 0x410FD0C0)]


def test_only_changed_kvm_list_and_c_header(tmp_path: Path) -> None:
    prof = tmp_path / "g.yaml"
    prof.write_text("base: neoverse-v1-kvm7.3\nname: g\n"
                    "registers:\n  ID_AA64ISAR0_EL1: {RNDR: 0, SM3: 0, SM4: 0}\n")
    host = ("--host", str(PROFILES / "neoverse-v1.yaml"))
    code, out, err = cli("emit", str(prof), "--format", "kvm", "--only-changed", "--kernel", KERNEL, *host)
    assert code == 0, err
    rows = kvm_lines(out)
    isar0 = regdb.load().registers["ID_AA64ISAR0_EL1"]
    n1 = resolved("neoverse-v1-kvm7.3").values["ID_AA64ISAR0_EL1"]
    want = n1 & ~(isar0.field("RNDR").mask | isar0.field("SM3").mask | isar0.field("SM4").mask)
    assert rows == [(isar0.onereg, want, "ID_AA64ISAR0_EL1")]
    assert f"(changes RNDR, SM4, SM3; mask {0xF0000FF000000000:#018x})" in out
    code, out, err = cli("emit", str(prof), "--format", "c-header", "--only-changed", "--kernel", KERNEL, *host)
    assert code == 0 and "_NREGS 1" in out and "UINT64_C(0xf0000ff000000000)" in out
    code, out, _ = cli("emit", str(prof), "--format", "kvm", "--kernel", KERNEL)  # default: every register
    assert len(kvm_lines(out)) > 20


def test_emitted_yaml_keeps_the_ignores_given_to_emit(tmp_path: Path) -> None:
    prof = tmp_path / "bad.yaml"
    prof.write_text("name: bad\nrole: guest\nvcpu_features: []\nregisters:\n  ID_DFR0_EL1: {MProfDbg: 1}\n")
    assert cli("emit", str(prof), "--format", "yaml", "--no-kvm")[0] == 1
    code, out, err = cli("emit", str(prof), "--format", "yaml", "--no-kvm", "--ignore", "A004")
    assert code == 0, err
    again = tmp_path / "again.yaml"
    again.write_text(out)
    assert "A004" in out
    assert cli("check", str(again), "--no-kvm")[0] == 0


@needs_gcc
def test_only_changed_c_header_compiles_with_its_masks(tmp_path: Path) -> None:
    """The minimal header of firecracker-v1n1 compiles; its masks are Firecracker's V1N1 filters."""
    header = tmp_path / "v1n1.h"
    header.write_text(render(resolved("firecracker-v1n1"), "c-header", only_changed=True, kernel=KERNEL))
    user = tmp_path / "user.c"
    user.write_text(f'#include "{header.name}"\n'
                    "typedef char n_ok[(sizeof(cpumodel_firecracker_v1n1_masks) / sizeof(uint64_t)"
                    " == CPUMODEL_FIRECRACKER_V1N1_NREGS && CPUMODEL_FIRECRACKER_V1N1_NREGS == 4) ? 1 : -1];\n"
                    "int main(void) { return (int)(cpumodel_firecracker_v1n1_masks[0] & 1u); }\n")
    r = gcc("-I", tmp_path, user)
    assert r.returncode == 0, r.stderr
    masks = re.findall(r"\tUINT64_C\((0x[0-9a-f]{16})\),\t/\* (\w+) \*/", header.read_text())
    assert [(n, int(m, 16)) for m, n in masks] == [(r, f) for r, f, _ in V1N1]
