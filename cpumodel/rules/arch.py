"""Hand-written architecture rules: what Arm's feature model does not state.

The feature constraints themselves (``ARCH-*``) are in ``feature_rules.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

from cpumodel import regdb
from cpumodel.findings import Finding
from cpumodel.resolve import Model
from cpumodel.rules import Context, rule

SYSREG = "arch/arm64/tools/sysreg (Linux 7.3.4)"


@rule("A001", "reserved-value", kind="arch", severity="error",
      source=f"Arm ARM, each ID field's 'All other values are reserved'; value lists: {SYSREG}")
def reserved_value(model: Model, ctx: Context) -> Iterator[Finding]:
    """An enumerated ID field holds a value the architecture does not define.

    Every enumerated field of an ID register lists the values the Arm ARM defines; any
    other value is reserved, and a guest that decodes it (Linux's cpufeature code, a
    firmware, a userspace feature probe) may treat it as a future feature it does not
    know. The lists come from Linux's ``arch/arm64/tools/sysreg``.

    Bad:  ``ID_AA64PFR0_EL1: {SVE: 7}``  (SVE defines 0b0000 and 0b0001 only)
    Good: ``ID_AA64PFR0_EL1: {SVE: IMP}``
    """
    for name, value in model.values.items():
        unseen = model.unseen.get(name, 0)  # a field the capture could not see holds no value to judge
        for f, fv in _reserved_in(name, value):
            if f.mask & unseen:
                continue
            allowed = ", ".join(f"{k:#x} {v}" for k, v in sorted(f.values.items()))
            yield Finding("A001", "error", f"{f.qualname}={fv:#x} is a reserved value",
                          register=name, field=f.name, asked=fv, allowed=allowed,
                          why=f"the architecture defines only: {allowed}",
                          location=model.where(name, f.name), source=f"Arm ARM field descriptions; {SYSREG}")


_RESERVED: dict[tuple[str, int], tuple[tuple[regdb.Field, int], ...]] = {}


def _reserved_in(name: str, value: int) -> tuple[tuple[regdb.Field, int], ...]:
    """The enumerated fields of register ``name`` whose value in ``value`` is reserved, with that
    value (memoised per register value: many profiles share most of their values)."""
    key = (name, value)
    hit = _RESERVED.get(key)
    if hit is None:
        if len(_RESERVED) >= 16384:
            _RESERVED.clear()
        out = []
        for f in regdb.load().registers[name].named_fields:
            if f.kind == "enum" and f.values:
                fv = f.get(value)
                if fv not in f.values:
                    out.append((f, fv))
        hit = _RESERVED[key] = tuple(out)
    return hit


@rule("A002", "res0-bits-set", kind="arch", severity="error",
      source=f"Arm ARM (RES0 fields); {SYSREG} Res0/Raz entries")
def res0_bits(model: Model, ctx: Context) -> Iterator[Finding]:
    """Bits that the architecture makes RES0 (reserved, should-be-zero) are set.

    RES0 bits of an ID register read as zero on every implementation of the architecture
    version described; a set bit claims a feature that does not exist yet. For the
    AArch32 ID registers, which KVM accesses as 64-bit registers, bits 63:32 are RES0.

    Bad:  ``ID_PFR0_EL1: 0x100000131``  (bit 32 set)
    Good: ``ID_PFR0_EL1: 0x00000131``
    """
    return _reserved_bits(model, "A002", 0)


@rule("A003", "res1-bits-clear", kind="arch", severity="error",
      source=f"Arm ARM (RES1 fields); {SYSREG} Res1 entries")
def res1_bits(model: Model, ctx: Context) -> Iterator[Finding]:
    """Bits that the architecture makes RES1 are clear.

    Example: CTR_EL0 bit 31 is RES1; a CTR_EL0 value with bit 31 clear was not read from
    any Armv8 CPU.

    Bad:  ``CTR_EL0: 0x0444c004``
    Good: ``CTR_EL0: 0x8444c004``
    """
    return _reserved_bits(model, "A003", 1)


def _reserved_bits(model: Model, rule_id: str, bit: int) -> Iterator[Finding]:
    """Registers with RES<bit> bits (A002: RES0, A003: RES1) that do not read as ``bit``."""
    wrong, right, word = ("set", "clear", "zero") if bit == 0 else ("clear", "set", "one")
    db = regdb.load()
    for name, value in model.values.items():
        reg = db.registers[name]
        bad = value & reg.res0_mask if bit == 0 else reg.res1_mask & ~value
        if bad:
            yield Finding(rule_id, "error", f"{name} has RES{bit} bits {wrong}: {bad:#x}",
                          register=name, asked=value, allowed=f"bits {bad:#x} {right}",
                          why=f"RES{bit} bits are reserved and must read as {word}",
                          location=model.where(name), source=f"Arm ARM; {SYSREG}")


@rule("A004", "mprofile-debug", kind="arch", severity="error",
      source="Arm ARM ID_DFR0_EL1.MProfDbg (memory-mapped debug model of M-profile cores); "
             "upstream KVM discussion (linux-arm-kernel, Sep 2023, 'Enable writable for "
             "ID_AA64DFR0_EL1 and ID_DFR0_EL1'); KVM refuses it with EINVAL")
def mprofile_debug(model: Model, ctx: Context) -> Iterator[Finding]:
    """ID_DFR0_EL1.MProfDbg advertises M-profile debug, which no A-profile CPU has.

    This is the upstream discussion's own example of an outlandish value: M-profile
    (microcontroller) memory-mapped debug cannot exist on an A-profile core, so the
    field must be 0. KVM refuses a non-zero value with EINVAL.

    Bad:  ``ID_DFR0_EL1: {MProfDbg: 1}``
    Good: ``ID_DFR0_EL1: {MProfDbg: 0}``
    """
    value = model.values.get("ID_DFR0_EL1")
    if value is None:
        return
    f = regdb.load().registers["ID_DFR0_EL1"].field("MProfDbg")
    fv = f.get(value)
    if fv:
        yield Finding("A004", "error", f"ID_DFR0_EL1.MProfDbg={fv:#x}: M-profile debug on an A-profile CPU",
                      register="ID_DFR0_EL1", field="MProfDbg", asked=fv, allowed="0x0",
                      why="an Armv8-A/Armv9-A CPU implements no M-profile debug; only 0b0000 is permitted",
                      location=model.where("ID_DFR0_EL1", "MProfDbg"),
                      source="Arm ARM ID_DFR0_EL1.MProfDbg")

