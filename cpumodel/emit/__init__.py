"""Emit step: a valid ``Model`` -> a register set for a VMM or a tool.

Every format orders registers the way a VMM must write them: ID registers first (they
become immutable once a vCPU has run), by encoding.
"""

from __future__ import annotations

from collections.abc import Callable

from cpumodel import regdb
from cpumodel.resolve import Model

FORMATS = ("json", "yaml", "kvm", "c-header", "firecracker", "qemu")
#: Formats a VMM applies to a guest: a ``role: host`` profile is refused (its raw values are the
#: CPU's, and KVM refuses some of them for a VM; see cpumodel/template.py). json and yaml are data
#: and keep the role.
VMM_FORMATS = ("kvm", "c-header", "firecracker", "qemu")


def ordered(model: Model) -> list[tuple[regdb.Register, int]]:
    """(register, value) for every register the model sets, in write order."""
    db = regdb.load()
    regs = [(db.registers[n], v) for n, v in model.values.items()]
    return sorted(regs, key=lambda rv: rv[0].encoding)


def emit(model: Model, fmt: str, **opts: object) -> str:
    """Render ``model`` in ``fmt``. Options: ``kernel``, ``vcpu_features``, ``hosts`` (target host
    models of a template), ``only_changed`` (kvm, c-header), ``resolver``, ``strict``."""
    fn: Callable[..., str]
    if model.role == "host" and fmt in VMM_FORMATS:
        from cpumodel.errors import CpumodelError
        from cpumodel.template import host_refusal

        raise CpumodelError(host_refusal(model))
    if fmt in ("json", "yaml"):
        from cpumodel.emit import basic

        fn = basic.emit_json if fmt == "json" else basic.emit_yaml
    elif fmt in ("kvm", "c-header"):
        from cpumodel.emit import kvmlist

        fn = kvmlist.emit_kvm if fmt == "kvm" else kvmlist.emit_c_header
    elif fmt == "firecracker":
        from cpumodel.emit import firecracker

        fn = firecracker.emit
    elif fmt == "qemu":
        from cpumodel.emit import qemu

        fn = qemu.emit
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return fn(model, **opts)
