"""ID register names, encodings and KVM one-reg IDs for the oracle.

The name table is a small excerpt of Linux's ``arch/arm64/tools/sysreg`` (Linux 7.3):
every ``Sysreg`` line with op0=3, CRn=0 that the oracle reads, plus MIDR_EL1, MPIDR_EL1,
REVIDR_EL1 and AIDR_EL1, which that file does not list (they are defined in
``arch/arm64/include/asm/sysreg.h`` as SYS_MIDR_EL1 etc.). Unnamed encodings in the ID
space are spelled ``S3_<op1>_C0_C<crm>_<op2>`` like the assembler does.

One-reg IDs follow ``ARM64_SYS_REG()`` in ``arch/arm64/include/uapi/asm/kvm.h``:
KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG | op0<<14 | op1<<11 | crn<<7 |
crm<<3 | op2.
"""

from __future__ import annotations

Encoding = tuple[int, int, int, int, int]

# include/uapi/linux/kvm.h
KVM_REG_ARM64 = 0x6000000000000000
KVM_REG_SIZE_U64 = 0x0030000000000000
# arch/arm64/include/uapi/asm/kvm.h
KVM_REG_ARM_COPROC_SHIFT = 16
KVM_REG_ARM64_SYSREG = 0x0013 << KVM_REG_ARM_COPROC_SHIFT
_SYSREG_FIELDS = (  # (shift, mask) for op0, op1, crn, crm, op2
    (14, 0x000000000000C000),
    (11, 0x0000000000003800),
    (7, 0x0000000000000780),
    (3, 0x0000000000000078),
    (0, 0x0000000000000007),
)
KVM_ARM_FEATURE_ID_RANGE_SIZE = 3 * 8 * 8

# Source: arch/arm64/tools/sysreg (Linux 7.3), "Sysreg NAME op0 op1 CRn CRm op2".
ID_REG_NAMES: dict[Encoding, str] = {
    (3, 0, 0, 0, 0): "MIDR_EL1",  # asm/sysreg.h
    (3, 0, 0, 0, 5): "MPIDR_EL1",  # asm/sysreg.h
    (3, 0, 0, 0, 6): "REVIDR_EL1",  # asm/sysreg.h
    (3, 0, 0, 1, 0): "ID_PFR0_EL1",
    (3, 0, 0, 1, 1): "ID_PFR1_EL1",
    (3, 0, 0, 1, 2): "ID_DFR0_EL1",
    (3, 0, 0, 1, 3): "ID_AFR0_EL1",
    (3, 0, 0, 1, 4): "ID_MMFR0_EL1",
    (3, 0, 0, 1, 5): "ID_MMFR1_EL1",
    (3, 0, 0, 1, 6): "ID_MMFR2_EL1",
    (3, 0, 0, 1, 7): "ID_MMFR3_EL1",
    (3, 0, 0, 2, 0): "ID_ISAR0_EL1",
    (3, 0, 0, 2, 1): "ID_ISAR1_EL1",
    (3, 0, 0, 2, 2): "ID_ISAR2_EL1",
    (3, 0, 0, 2, 3): "ID_ISAR3_EL1",
    (3, 0, 0, 2, 4): "ID_ISAR4_EL1",
    (3, 0, 0, 2, 5): "ID_ISAR5_EL1",
    (3, 0, 0, 2, 6): "ID_MMFR4_EL1",
    (3, 0, 0, 2, 7): "ID_ISAR6_EL1",
    (3, 0, 0, 3, 0): "MVFR0_EL1",
    (3, 0, 0, 3, 1): "MVFR1_EL1",
    (3, 0, 0, 3, 2): "MVFR2_EL1",
    (3, 0, 0, 3, 4): "ID_PFR2_EL1",
    (3, 0, 0, 3, 5): "ID_DFR1_EL1",
    (3, 0, 0, 3, 6): "ID_MMFR5_EL1",
    (3, 0, 0, 4, 0): "ID_AA64PFR0_EL1",
    (3, 0, 0, 4, 1): "ID_AA64PFR1_EL1",
    (3, 0, 0, 4, 2): "ID_AA64PFR2_EL1",
    (3, 0, 0, 4, 4): "ID_AA64ZFR0_EL1",
    (3, 0, 0, 4, 5): "ID_AA64SMFR0_EL1",
    (3, 0, 0, 4, 7): "ID_AA64FPFR0_EL1",
    (3, 0, 0, 5, 0): "ID_AA64DFR0_EL1",
    (3, 0, 0, 5, 1): "ID_AA64DFR1_EL1",
    (3, 0, 0, 5, 2): "ID_AA64DFR2_EL1",
    (3, 0, 0, 5, 4): "ID_AA64AFR0_EL1",
    (3, 0, 0, 5, 5): "ID_AA64AFR1_EL1",
    (3, 0, 0, 6, 0): "ID_AA64ISAR0_EL1",
    (3, 0, 0, 6, 1): "ID_AA64ISAR1_EL1",
    (3, 0, 0, 6, 2): "ID_AA64ISAR2_EL1",
    (3, 0, 0, 6, 3): "ID_AA64ISAR3_EL1",
    (3, 0, 0, 7, 0): "ID_AA64MMFR0_EL1",
    (3, 0, 0, 7, 1): "ID_AA64MMFR1_EL1",
    (3, 0, 0, 7, 2): "ID_AA64MMFR2_EL1",
    (3, 0, 0, 7, 3): "ID_AA64MMFR3_EL1",
    (3, 0, 0, 7, 4): "ID_AA64MMFR4_EL1",
    (3, 1, 0, 0, 0): "CCSIDR_EL1",
    (3, 1, 0, 0, 1): "CLIDR_EL1",
    (3, 1, 0, 0, 2): "CCSIDR2_EL1",
    (3, 1, 0, 0, 4): "GMID_EL1",
    (3, 1, 0, 0, 6): "SMIDR_EL1",
    (3, 1, 0, 0, 7): "AIDR_EL1",  # asm/sysreg.h
    (3, 3, 0, 0, 1): "CTR_EL0",
    (3, 3, 0, 0, 7): "DCZID_EL0",
}
_NAME_TO_ENCODING: dict[str, Encoding] = {v: k for k, v in ID_REG_NAMES.items()}

#: The whole AArch64 ID space op0=3, op1=0, CRn=0, CRm=0..7, op2=0..7 (64 encodings).
ID_SPACE: tuple[Encoding, ...] = tuple((3, 0, 0, crm, op2) for crm in range(8) for op2 in range(8))
#: Registers outside that block that the oracle also reads and sweeps.
EXTRA_REGISTERS: tuple[Encoding, ...] = (
    (3, 3, 0, 0, 1),  # CTR_EL0
    (3, 1, 0, 0, 1),  # CLIDR_EL1
    (3, 1, 0, 0, 7),  # AIDR_EL1
    (3, 3, 0, 0, 7),  # DCZID_EL0
)
#: Every register the probe reads a default for (MIDR_EL1 and REVIDR_EL1 are in ID_SPACE).
ORACLE_REGISTERS: tuple[Encoding, ...] = ID_SPACE + EXTRA_REGISTERS


def check_encoding(encoding: object) -> Encoding:
    """Validate a [op0, op1, crn, crm, op2] list or tuple and return it as a tuple."""
    from cpumodel.oracle.errors import OracleError

    if not isinstance(encoding, (list, tuple)) or len(encoding) != 5:
        raise OracleError(f"register encoding must be [op0, op1, crn, crm, op2], got {encoding!r}")
    limits = (3, 7, 15, 15, 7)
    out: list[int] = []
    for part, limit in zip(encoding, limits, strict=True):
        if not isinstance(part, int) or isinstance(part, bool) or not 0 <= part <= limit:
            raise OracleError(f"register encoding {list(encoding)!r} is out of range")
        out.append(part)
    return (out[0], out[1], out[2], out[3], out[4])


def sysreg_name(encoding: Encoding) -> str:
    """Linux's name of a register, or the generic ``S3_0_C0_C3_3`` spelling."""
    op0, op1, crn, crm, op2 = encoding
    name = ID_REG_NAMES.get((op0, op1, crn, crm, op2))
    if name:
        return name
    return f"S{op0}_{op1}_C{crn}_C{crm}_{op2}"


def encoding_of(name: str) -> Encoding:
    """The encoding of a Linux register name or of a generic ``S3_0_C0_C3_3`` name."""
    from cpumodel.oracle.errors import OracleError

    if name in _NAME_TO_ENCODING:
        return _NAME_TO_ENCODING[name]
    parts = name.split("_")
    try:
        if len(parts) == 5 and parts[0][0] == "S" and parts[2][0] == "C" and parts[3][0] == "C":
            return check_encoding(
                [int(parts[0][1:]), int(parts[1]), int(parts[2][1:]), int(parts[3][1:]), int(parts[4])]
            )
    except (ValueError, IndexError):
        pass
    raise OracleError(f"unknown register name {name!r}")


def one_reg_id(encoding: Encoding) -> int:
    """KVM_GET/SET_ONE_REG id: ARM64_SYS_REG(op0, op1, crn, crm, op2) from the UAPI."""
    reg = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM64_SYSREG
    for part, (shift, mask) in zip(encoding, _SYSREG_FIELDS, strict=True):
        reg |= (part << shift) & mask
    return reg


def encoding_of_id(reg_id: int) -> Encoding:
    """Inverse of :func:`one_reg_id` (for sysreg IDs)."""
    parts = [(reg_id & mask) >> shift for shift, mask in _SYSREG_FIELDS]
    return (parts[0], parts[1], parts[2], parts[3], parts[4])


def mask_index(encoding: Encoding) -> int | None:
    """Index into the KVM_ARM_GET_REG_WRITABLE_MASKS array.

    KVM_ARM_FEATURE_ID_RANGE_IDX(op0, op1, crn, crm, op2) in arch/arm64/include/uapi/asm/kvm.h;
    None for encodings outside the feature ID range (op0=3, op1 in {0,1,3}, CRn=0, CRm<8).
    """
    op0, op1, crn, crm, op2 = encoding
    if op0 != 3 or crn != 0 or crm > 7 or op1 not in (0, 1, 3):
        return None
    o = op1 & 3
    o -= o == 3
    return (o << 6) | ((crm & 7) << 3) | op2


def encoding_of_mask_index(index: int) -> Encoding:
    """Inverse of :func:`mask_index`."""
    o = index >> 6
    op1 = 3 if o == 2 else o
    return (3, op1, 0, (index >> 3) & 7, index & 7)
