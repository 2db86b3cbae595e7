"""What a host kernel upgrade changes for guests (``cpumodel diff HOST --kernel OLD --to-kernel NEW``).

Two questions, both answered by the two kernels' own rule sets on the same host:

1. KVM's default guest view: which fields of what KVM gives a new VM (KVM_GET_ONE_REG before any
   write) differ between OLD and NEW on this host;
2. restore: a guest whose ID registers were saved under OLD (its default view, or a guest profile
   written under OLD) is restored under NEW by writing every saved register back with
   KVM_SET_ONE_REG; each write is judged by NEW's rules against this host, with the errno.

This is what breaks snapshot restores in the field (Firecracker issues 5331 and 5446: CLIDR_EL1 on
host kernels 6.3-6.10).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cpumodel import regdb
from cpumodel.resolve import Model

if TYPE_CHECKING:
    from cpumodel.kvm.model import Verdict


@dataclass(frozen=True)
class FieldChange:
    register: str
    field: str          # "" for a register one kernel does not give
    old: int | None     # None: not in that kernel's view
    new: int | None


@dataclass
class Upgrade:
    host: str
    old: str            # kernel line names and releases, e.g. "6.12 (Linux 6.12.117)"
    new: str
    features: frozenset[str]
    changes: list[FieldChange] = field(default_factory=list)
    restores: list[Verdict] = field(default_factory=list)  # the new kernel's answer to each saved register
    notes: list[str] = field(default_factory=list)

    @property
    def restores_ok(self) -> bool:
        return all(r.status == "accepted" for r in self.restores)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host, "from_kernel": self.old, "to_kernel": self.new, "vcpu_features": sorted(self.features),
            "default_view_changes": [{"register": c.register, "field": c.field or None, "old": c.old, "new": c.new}
                                     for c in self.changes],
            "restore": [{"register": r.reg, "value": f"{r.value:#018x}", "status": r.status, "errno": r.errno,
                         "reason": r.reason, "source": r.source} for r in self.restores],
            "restores": self.restores_ok, "notes": self.notes,
        }


def _fields(name: str, old: int, new: int) -> list[FieldChange]:
    db = regdb.load()
    reg = db.registers.get(name)
    out: list[FieldChange] = []
    seen = 0
    for f in (reg.fields if reg is not None else []):
        mask = ((1 << (f.msb - f.lsb + 1)) - 1) << f.lsb
        seen |= mask
        a, b = (old & mask) >> f.lsb, (new & mask) >> f.lsb
        if a != b:
            out.append(FieldChange(name, f.name, a, b))
    rest = (old ^ new) & ~seen
    if rest:
        out.append(FieldChange(name, f"bits {rest:#x}", old & rest, new & rest))
    return out


def kernel_upgrade(host: Model, old: str, new: str, features: frozenset[str], guest: Model | None = None) -> Upgrade:
    """The default-view changes and the restore verdicts of upgrading ``host`` from ``old`` to ``new``."""
    from cpumodel.ops import kvm_defaults
    from cpumodel.rules import Context
    from cpumodel.rules.kvm_writes import kernel_rules, writes

    ro, rn = kernel_rules(old), kernel_rules(new)
    up = Upgrade(host.name, f"{ro.kernel} (Linux {ro.kernel_full})", f"{rn.kernel} (Linux {rn.kernel_full})", features)
    vo, notes_o = kvm_defaults(host, old, features)
    vn, notes_n = kvm_defaults(host, new, features)
    up.notes += [f"{ro.kernel}: {n}" for n in notes_o] + [f"{rn.kernel}: {n}" for n in notes_n]
    db = regdb.load()
    for name in sorted(set(vo) | set(vn), key=lambda n: db.registers[n].encoding):
        a, b = vo.get(name), vn.get(name)
        if a is None or b is None:
            up.changes.append(FieldChange(name, "", a, b))
        elif a != b:
            up.changes += _fields(name, a, b)
    saved = dict(vo)
    if guest is not None:
        saved.update(guest.values)
    state = Model(name=f"{host.name} guest saved under {ro.kernel}", path=host.path, values=saved,
                  vcpu_features=features)
    for w in writes(state, Context(kernel=new, host=host, vcpu_features=features)):
        up.restores.append(replace(w.verdict, reg=w.name, value=w.value))
    return up


def upgrade_of(host: Model, guest: Model | None, old: str, new: str, vcpu: frozenset[str] | None) -> Upgrade:
    """``cpumodel diff HOST [GUEST] --kernel OLD --to-kernel NEW``: :func:`kernel_upgrade` for the vCPU
    features ``vcpu`` (None: those the host advertises)."""
    from cpumodel.rules import Context
    from cpumodel.rules.kvm_writes import effective_features

    feats, _ = effective_features(host, Context(vcpu_features=vcpu))
    return kernel_upgrade(host, old, new, feats, guest)

