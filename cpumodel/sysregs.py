"""Arm system registers outside the CPU model: names a real register dump holds that cpumodel does not check.

A dump (VirtualBox's VBoxCpuReport, a Firecracker fingerprint, a Linux tool) lists registers such as
MPIDR_EL1, CCSIDR_EL1, ERRIDR_EL1 or CNTFRQ_EL0 beside the ID registers. They are real registers, so
the loader accepts them (rule P004 says each is ignored), while a name that is no register at all (a
typo of an ID register) stays an error. What counts as real comes from primary sources only:

* every name in the shipped KVM data (``data/kvm/<line>.json.gz``, generated from each kernel line's
  ``arch/arm64/kvm/sys_regs.c`` ``sys_reg_descs[]``): its ``registers`` (with their encodings, among
  them the ID-space encodings KVM lists as ``ID_UNALLOCATED``, named ``S3_0_C0_C<m>_<op2>``) and its
  ``other_registers``, less the set/way cache maintenance instructions ``sys_reg_descs[]`` also traps;
* ``SYSREG_H``: registers no line's ``sys_reg_descs[]`` lists, from Linux's
  ``arch/arm64/include/asm/sysreg.h``.

Read only when the register database does not know a name (``lookup``), never at import time.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

KVM_DATA = Path(__file__).resolve().parent / "data" / "kvm"

#: Registers a dump may hold that no modelled line's sys_reg_descs[] lists: name -> (encoding, source).
SYSREG_H: dict[str, tuple[tuple[int, int, int, int, int], str]] = {
    "CNTFRQ_EL0": ((3, 3, 14, 0, 0),
                   "arch/arm64/include/asm/sysreg.h: #define SYS_CNTFRQ_EL0 sys_reg(3, 3, 14, 0, 0) [Linux]"),
}
#: sys_reg_descs[] entries that are instructions, not registers (``{ SYS_DESC(SYS_DC_ISW), access_dcsw }``).
_INSTRUCTION_PREFIXES = ("DC_", "IC_", "AT_", "TLBI_")
_GENERIC = re.compile(r"S([0-3])_([0-7])_C([0-9]|1[0-5])_C([0-9]|1[0-5])_([0-7])", re.I)


@dataclass(frozen=True)
class SystemRegister:
    name: str  # as Linux names it (sys_reg_descs[] / sysreg.h); unallocated ID encodings as S3_0_C0_C<m>_<op2>
    encoding: tuple[int, int, int, int, int] | None
    source: str
    unallocated: bool = False  # an ID-space encoding KVM lists as ID_UNALLOCATED (reads as zero)


@cache
def _table() -> tuple[dict[str, SystemRegister], dict[tuple[int, ...], SystemRegister]]:
    by_name: dict[str, SystemRegister] = {}
    # newest line first: each name cites the newest source that has it
    for path in sorted(KVM_DATA.glob("*.json.gz"), reverse=True,
                       key=lambda p: tuple(int(x) for x in p.name.split(".")[:2])):
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
        line = f"Linux {data.get('kernel_full', path.name)}"
        for name, entry in data.get("registers", {}).items():
            desc = entry.get("desc", {})
            by_name.setdefault(name.lower(), SystemRegister(
                name, tuple(entry["encoding"]), desc.get("source") or f"arch/arm64/kvm/sys_regs.c [{line}]",
                desc.get("macro") == "ID_UNALLOCATED"))
        for name in data.get("other_registers", []):
            if not name.upper().startswith(_INSTRUCTION_PREFIXES):
                by_name.setdefault(name.lower(), SystemRegister(
                    name, None, f"arch/arm64/kvm/sys_regs.c sys_reg_descs[] [{line}]"))
    for name, (enc, source) in SYSREG_H.items():
        by_name.setdefault(name.lower(), SystemRegister(name, enc, source))
    by_enc: dict[tuple[int, ...], SystemRegister] = {}
    for reg in by_name.values():  # a named register wins over an encoding's generic name
        if reg.encoding is not None and (reg.encoding not in by_enc or by_enc[reg.encoding].unallocated):
            by_enc[reg.encoding] = reg
    return by_name, by_enc


def lookup(name: str) -> SystemRegister | None:
    """The real system register ``name`` spells (case-insensitively, or as ``S<op0>_<op1>_C<n>_C<m>_<op2>``
    of an encoding known here), None if it is none. Ask only after the register database said no."""
    by_name, by_enc = _table()
    hit = by_name.get(name.strip().lower())
    if hit is not None:
        return hit
    m = _GENERIC.fullmatch(name.strip())
    return by_enc.get(tuple(int(x) for x in m.groups())) if m else None


def names() -> list[str]:
    """Every system register name known here (for 'did you mean' hints and the JSON Schema)."""
    return sorted(r.name for r in _table()[0].values())
