"""Linux's EL0 emulation of MRS on ID registers (HWCAP_CPUID): what a user-space read of an ID register
returns, and which fields it hides.

Documentation/arch/arm64/cpu-feature-registers.rst sections 3 and 4; arch/arm64/kernel/cpufeature.c:
init_cpu_ftr_reg() sets, per field of a register's ``arm64_ftr_bits``, ``user_mask`` (the FTR_VISIBLE
fields) and ``user_val`` (every other field at its ``safe_val``), and emulate_id_reg() returns
``user_val | (sys_val & user_mask)``. The ``arm64_ftr_bits`` tables are those of cpumodel's KVM rule
files (one per kernel line). Used by ``cpumodel capture`` (what the ``mrs`` source hid), by profiles'
``unseen: el0-mrs`` and by rule P003; imported only when one of them needs it (no ctypes, no I/O).
"""

from __future__ import annotations

from collections.abc import Iterable

from cpumodel import regdb
from cpumodel.errors import CpumodelError

#: Registers EL0 may read itself: CTR_EL0 (Linux sets SCTLR_EL1.UCT, or traps and emulates it with
#: the system-wide safe value on mismatched systems) and DCZID_EL0 (always EL0-readable).
EL0_READABLE = ("CTR_EL0", "DCZID_EL0")


def mrs_emulated(enc: tuple[int, int, int, int, int]) -> bool:
    """Whether Linux emulates MRS of this encoding at EL0 (arch/arm64/kernel/cpufeature.c is_emulated)."""
    op0, op1, crn, crm, _ = enc
    return op0 == 3 and op1 == 0 and crn == 0 and (crm == 0 or 2 <= crm <= 7)


def _visible_mask(krules: object, name: str) -> int:
    """The bits of ``name`` in fields its arm64_ftr_bits mark FTR_VISIBLE (0 for an untracked register:
    the emulation reads it as 0, cpufeature.c emulate_sys_reg())."""
    rr = krules.lookup(name)  # type: ignore[attr-defined]
    mask = 0
    for f in (rr.raw.get("fields") or []) if rr is not None else []:
        if f.get("visible"):
            mask |= ((1 << f["width"]) - 1) << f["shift"]
    return mask


def _hidden_value(krules: object, name: str) -> int:
    """``user_val`` of ``name``: its hidden fields at their ``safe_val`` (cpufeature.c init_cpu_ftr_reg():
    ``if (ftrp->visible) user_mask |= ftr_mask; else reg->user_val = arm64_ftr_set_value(ftrp,
    reg->user_val, ftrp->safe_val)``)."""
    rr = krules.lookup(name)  # type: ignore[attr-defined]
    value = 0
    for f in (rr.raw.get("fields") or []) if rr is not None else []:
        if not f.get("visible"):
            value |= (f["safe_val"] & ((1 << f["width"]) - 1)) << f["shift"]
    return value


def el0_rules(release: str = "") -> object:
    """The KVM rule set whose ``arm64_ftr_bits`` describe the EL0 MRS emulation of kernel ``release``
    (its line's; the newest line for an empty or unmodelled release)."""
    from cpumodel import kvm

    try:
        krules = kvm.load_kernel(release) if release else None
    except (KeyError, ValueError, CpumodelError):
        krules = None
    return krules if krules is not None else kvm.load_kernel(kvm.kernels()[-1])


def el0_emulated(name: str) -> bool:
    """Whether the EL0 MRS emulation hides fields of register ``name`` (the ID registers it emulates:
    not MIDR_EL1, which is the running CPU's, nor the EL0-readable CTR_EL0/DCZID_EL0)."""
    reg = regdb.load().registers.get(name)
    return (reg is not None and name != "MIDR_EL1" and name not in EL0_READABLE and name != "REVIDR_EL1"
            and mrs_emulated(reg.encoding))


def el0_view(name: str, value: int, krules: object) -> int:
    """What Linux's EL0 MRS emulation returns for ID register ``name`` on a system whose sanitised value
    is ``value``: ``regp->user_val | (regp->sys_val & regp->user_mask)`` (cpufeature.c emulate_id_reg()),
    i.e. the FTR_VISIBLE fields as they are and every other field at its safe value."""
    return _hidden_value(krules, name) | (value & _visible_mask(krules, name))


def el0_hidden(names: Iterable[str], krules: object) -> dict[str, list[str]]:
    """register -> its fields the EL0 MRS emulation hides (all but the FTR_VISIBLE ones), for ``names``."""
    out: dict[str, list[str]] = {}
    for reg in regdb.load():
        if reg.name in names and el0_emulated(reg.name):
            visible = _visible_mask(krules, reg.name)
            hidden = [f.name for f in reg.named_fields if f.mask & ~visible]
            if hidden:
                out[reg.name] = hidden
    return out
