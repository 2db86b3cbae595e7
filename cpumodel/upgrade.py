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

from dataclasses import dataclass, field
from typing import Any

from cpumodel import regdb
from cpumodel.resolve import Model


@dataclass(frozen=True)
class FieldChange:
    register: str
    field: str          # "" for a register one kernel does not give
    old: int | None     # None: not in that kernel's view
    new: int | None


@dataclass(frozen=True)
class Restore:
    register: str
    value: int
    status: str         # accepted | rejected | depends_on_host | unmodelled
    errno: str | None
    reason: str
    source: str


@dataclass
class Upgrade:
    host: str
    old: str            # kernel line names and releases, e.g. "6.12 (Linux 6.12.117)"
    new: str
    features: frozenset[str]
    changes: list[FieldChange] = field(default_factory=list)
    restores: list[Restore] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def restores_ok(self) -> bool:
        return all(r.status == "accepted" for r in self.restores)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host, "from_kernel": self.old, "to_kernel": self.new, "vcpu_features": sorted(self.features),
            "default_view_changes": [{"register": c.register, "field": c.field or None, "old": c.old, "new": c.new}
                                     for c in self.changes],
            "restore": [{"register": r.register, "value": f"{r.value:#018x}", "status": r.status, "errno": r.errno,
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
        v = w.verdict
        up.restores.append(Restore(w.name, w.value, v.status, v.errno, v.reason, v.source))
    return up


def render_text(up: Upgrade) -> str:
    lines = [f"Host {up.host}: kernel {up.old} -> {up.new}, vCPU features: {', '.join(sorted(up.features)) or 'none'}"]
    lines.append("KVM's default guest view:" if up.changes else "KVM's default guest view: unchanged")
    for c in up.changes:
        if not c.field:
            where = "only under the new kernel" if c.old is None else "gone under the new kernel"
            lines.append(f"  {c.register}: {where}")
        else:
            lines.append(f"  {c.register}.{c.field}: {c.old:#x} -> {c.new:#x}")
    bad = [r for r in up.restores if r.status != "accepted"]
    verdict = "every register accepted" if not bad else f"{len(bad)} of {len(up.restores)} registers not accepted"
    lines.append(f"Restoring a guest saved under {up.old} on {up.new}: {verdict}")
    for r in bad:
        what = r.errno or r.status.replace("_", " ")
        lines.append(f"  {r.register}={r.value:#018x}: {what}: {r.reason}")
        if r.source:
            lines.append(f"      source: {r.source}")
    lines += [f"note: {n}" for n in up.notes]
    return "\n".join(lines) + "\n"
