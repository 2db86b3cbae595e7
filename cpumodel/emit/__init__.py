"""Emit step: a valid ``Model`` -> a register set for a VMM or a tool.

Every format orders registers the way a VMM must write them: ID registers first (they
become immutable once a vCPU has run), by encoding. :func:`emit_file` is ``cpumodel emit``:
resolve, check against the target hosts, refuse a model with violations, render.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cpumodel import regdb
from cpumodel.resolve import Model

if TYPE_CHECKING:
    from cpumodel.check import Options
    from cpumodel.resolve import Resolver

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


@dataclass
class Emitted:
    """What ``cpumodel emit`` produced: the text, or (``refused``) the findings of a model with errors."""

    text: str = ""
    refused: list[Any] = field(default_factory=list)  # every finding, when any is an error: nothing emitted
    notes: list[str] = field(default_factory=list)  # what the format leaves out, one line each


def emit_file(path: str, fmt: str, opts: Options, resolver: Resolver, *, hosts: Sequence[str] = (),
              only_changed: bool = False, kvm_view: bool = False) -> Emitted:
    """``cpumodel emit``: resolve ``path`` (with ``kvm_view``, a ``role: host`` profile becomes KVM's default
    view of a VM on it), check it against each of ``hosts`` (or none) as :func:`template.check_for_targets`
    does, and render it in ``fmt`` unless it has an error. The format's notes (``warnings``) are collected."""
    import warnings

    from cpumodel.template import check_for_targets, kvm_view_model

    model = resolver.resolve_file(path)
    targets = [resolver.resolve_file(h) for h in hosts]
    if kvm_view and model.role == "host":
        model = kvm_view_model(model, opts.kernel, opts.vcpu_features)
    findings = check_for_targets(model, targets, opts, template=fmt == "firecracker" or only_changed,
                                 resolver=resolver)
    if any(f.severity == "error" for f in findings):
        return Emitted(refused=findings)
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        text = emit(model, fmt, kernel=opts.kernel, vcpu_features=opts.vcpu_features, hosts=targets,
                    only_changed=only_changed, resolver=resolver, ignore=list(opts.ignore), kvm_caps=opts.kvm_caps)
    return Emitted(text, notes=[str(n.message) for n in notes])
