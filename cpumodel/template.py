"""Templates: what a guest model changes relative to what KVM gives on the hosts it targets.

A VMM that applies a CPU template (Firecracker's ``reg_modifiers``, a KVM_SET_ONE_REG list)
starts from the ID register values KVM gives a new VM on the host (its "default view",
``ops.kvm_defaults``) and writes over them. A template that pins every bit boots only on a
host whose view is identical in every bit; a portable one says only what the model changes
and leaves every other bit to the host. This module decides, per register and field, what
that is. Emitters render the result (``emit/firecracker.py`` as masked tri-state bitmaps,
``emit/kvmlist.py`` with ``only_changed``).

**The reference** (what a model is compared with), in this order:

1. ``hosts`` given (``emit --host H``, repeatable; a pool): KVM's default view on each host,
   for the model's vCPU features and the kernel in force. A host profile with
   ``origin: kvm-defaults`` already is that view and is used as it is.
2. otherwise the model's **origin**: the nearest profile in its ``base:`` chain that is a real
   CPU (``role: host``; its KVM default view is the reference) or KVM's defaults
   (``origin: kvm-defaults``; its values are the reference). A profile that is itself
   ``origin: kvm-defaults`` is its own origin (it changes nothing).
3. no host and no origin (a profile written from scratch): there is no reference, so every
   register the model sets is pinned whole.

**What the model changes** (the template's mask, per register), field by field:

* every field a profile layer *above the origin* sets (by field, by raw register, by
  ``features:``; ``Model.origin`` records which file set what), even where the value equals
  the reference (the author said it: Firecracker's V1N1 clears SVE on a host whose KVM view
  already hides it);
* every field whose value differs from the reference of any target host.

Fields inherited unchanged from a ``role: host`` origin take the origin's KVM view, never the
raw host value (KVM refuses some raw host values: CLIDR_EL1, PMUVer without PMU, ...).

**Implementation ID registers** (MIDR_EL1, REVIDR_EL1, AIDR_EL1): KVM takes a value other than
the host's only with KVM_CAP_ARM_WRITABLE_IMP_ID_REGS (api.rst 7.42). They are written only
when the model changes them and declares ``kvm_caps: [writable_imp_id_regs]``; changed by a
layer above the origin without it is an error; merely different from a pool host (a
baseline of several CPUs) they are left out with a note: each guest sees its host's own.

Registers KVM has no one-reg for (DCZID_EL0) are left out with a note when changed.

**Fields KVM will not equalise** (a pool of hosts): when ``hosts`` are given, each write is put
to cpumodel's KVM model of every host (``kvm.check_write``, the rule set that agrees with the
recorded kernels). A field the model does not set by name above its origin that KVM refuses on
some host (outside the writable mask, or beyond what that host can offer: FP16 on Armv8.0,
CTR_EL0.CWG, ...) cannot be given one value across the pool: it is left to each host (``x``)
and said in ``left_out`` (``cpumodel baseline`` reports the same fields as conflicts). So a
template for a pool boots on every host of it; where the guests' views still differ is said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cpumodel import regdb
from cpumodel.errors import CpumodelError
from cpumodel.resolve import Model, Resolver

MASK64 = (1 << 64) - 1
#: Implementation ID registers and the KVM capability that makes them writable:
#: include/uapi/linux/kvm.h KVM_CAP_ARM_WRITABLE_IMP_ID_REGS 239 (Linux 7.3.4 line 989).
IMP_ID_REGS = ("MIDR_EL1", "REVIDR_EL1", "AIDR_EL1")
CAP_WRITABLE_IMP_ID_REGS = "writable_imp_id_regs"
#: Registers KVM has no one-reg for (see emit/kvmlist.py NO_ONE_REG for the source).
NO_ONE_REG = ("DCZID_EL0",)


@dataclass(frozen=True)
class Reference:
    """What one target shows a new VM: a label for humans and the register values."""

    label: str
    values: dict[str, int]


@dataclass(frozen=True)
class Write:
    """One register write of a template: the bits in ``mask`` get ``value``'s bits."""

    register: regdb.Register
    mask: int
    value: int  # the model's full value (only the bits under mask are the template's)
    fields: tuple[str, ...]  # names of the fields the mask covers

    @property
    def bits(self) -> int:
        return self.value & self.mask

    def apply(self, current: int) -> int:
        """What a VMM writes on a host whose KVM view of the register is ``current``."""
        return (current & ~self.mask & MASK64) | self.bits


@dataclass
class Template:
    """A model as writes over KVM's view: only what it changes (``writes``), and why."""

    model: Model
    references: list[Reference]
    writes: list[Write] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (register, why): not written at all
    unequal: list[tuple[str, str]] = field(default_factory=list)  # ("REG.FIELD, FIELD", why): left to each host
    kvm_caps: frozenset[str] = frozenset()  # capabilities the writes need

    @property
    def minimal(self) -> bool:
        """False when there was no reference and every register is pinned whole."""
        return bool(self.references)


def kvm_caps(model: Model) -> frozenset[str]:
    """The VMM capabilities the model declares (profile key ``kvm_caps``)."""
    caps = getattr(model, "kvm_caps", None) or ()
    return frozenset(c if isinstance(c, str) else c[0] for c in caps)


def is_kvm_view(model: Model) -> bool:
    """True for a profile whose values are KVM's default view of a VM (``origin: kvm-defaults``)."""
    for attr in ("value_origin", "origin"):
        v = getattr(model, attr, None)
        if isinstance(v, str):
            return v == "kvm-defaults"
    return False


def is_origin(model: Model) -> bool:
    return model.role == "host" or is_kvm_view(model)


def origin_of(model: Model, resolver: Resolver | None = None) -> Model | None:
    """The nearest profile of the model's base chain (the model included) that is a real CPU
    (``role: host``) or KVM's defaults (``origin: kvm-defaults``); None if there is none."""
    if is_origin(model):
        return model
    resolver = resolver or Resolver()
    cur = model
    while cur.base_path:
        cur = resolver.resolve_file(cur.base_path)
        if is_origin(cur):
            return cur
    return None


def kvm_view(host: Model, kernel: str | None, features: frozenset[str]) -> dict[str, int]:
    """KVM's default view of a new VM on ``host``: a ``role: host`` profile through KVM's hiding
    and capping (``ops.kvm_defaults``); any other profile (KVM defaults, a baseline) as it is."""
    if host.role != "host" or is_kvm_view(host):
        return dict(host.values)
    from cpumodel.ops import kvm_defaults

    values, _ = kvm_defaults(host, kernel, features)
    return values


def effective_features(model: Model, override: frozenset[str] | None = None) -> frozenset[str]:
    from cpumodel.rules import Context
    from cpumodel.rules.vcpu import effective_features as _effective_features

    return _effective_features(model, Context(vcpu_features=override))[0]


def _field_mask(reg: regdb.Register, bits: int) -> int:
    """``bits`` widened to the whole fields that hold them (bits outside any field stay single)."""
    out = bits
    for f in reg.fields:
        if f.mask & bits:
            out |= f.mask
    return out & MASK64


def _explicit(model: Model, origin: Model) -> dict[str, int]:
    """Per register, the bits set by profile layers above ``origin`` (``Model.origin``)."""
    db = regdb.load()
    out: dict[str, int] = {}
    if origin is model:
        return out
    for (reg, fname), loc in model.origin.items():
        if reg not in model.values or origin.origin.get((reg, fname)) == loc:
            continue
        r = db.registers[reg]
        mask = MASK64 if not fname else (r.find_field(fname).mask if r.find_field(fname) else MASK64)
        out[reg] = out.get(reg, 0) | mask
    return out


def _names(reg: regdb.Register, mask: int) -> tuple[str, ...]:
    if mask == MASK64:
        return ("*",)
    names = [f.name if f.kind in ("enum", "field") else f"{f.kind.upper()}[{f.msb}:{f.lsb}]"
             for f in sorted(reg.fields, key=lambda f: -f.lsb) if f.mask & mask]
    return tuple(names)


def make_template(model: Model, *, hosts: list[Model] | None = None, kernel: str | None = None,
                  vcpu_features: frozenset[str] | None = None, resolver: Resolver | None = None,
                  caps: frozenset[str] | None = None) -> Template:
    """What ``model`` changes relative to KVM's view on ``hosts`` (or on its origin); see the module doc.
    ``vcpu_features`` and ``caps`` (``--kvm-caps``) override the model's own."""
    if model.role == "host":
        raise CpumodelError(host_refusal(model))
    db = regdb.load()
    feats = effective_features(model, vcpu_features)
    origin = origin_of(model, resolver)
    origin_view = kvm_view(origin, kernel, feats) if origin is not None else None
    explicit = _explicit(model, origin) if origin is not None else {}
    values = _values(model, origin, origin_view, explicit)
    refs = _references(hosts, origin, origin_view, kernel, feats)
    caps = caps if caps is not None else kvm_caps(model)
    tpl = Template(model=model, references=refs)
    need_caps: set[str] = set()
    for name in sorted(values, key=lambda n: (not _id_space(db.registers[n]), db.registers[n].encoding)):
        reg, v = db.registers[name], values[name]
        if not refs:
            mask = MASK64
        else:
            diff = 0
            for ref in refs:
                diff |= MASK64 if name not in ref.values else (ref.values[name] ^ v)
            mask = _field_mask(reg, diff) | explicit.get(name, 0)
        if hosts and mask and name not in NO_ONE_REG and name not in IMP_ID_REGS:
            mask = _equalisable(tpl, reg, mask, v, hosts, refs, kernel, feats, explicit.get(name, 0))
        if not mask:
            continue
        if name in NO_ONE_REG:
            tpl.left_out.append((name, "KVM has no one-reg for it (the guest reads the host's value)"))
            continue
        if name in IMP_ID_REGS:
            if CAP_WRITABLE_IMP_ID_REGS in caps:
                need_caps.add(CAP_WRITABLE_IMP_ID_REGS)
            elif refs and explicit.get(name):
                where = model.where(name)
                raise CpumodelError(
                    f"{name} is changed by the model, but KVM takes a value other than the host's only with "
                    "KVM_CAP_ARM_WRITABLE_IMP_ID_REGS (Documentation/virt/kvm/api.rst 7.42; EINVAL without it)",
                    where, hint="declare 'kvm_caps: [writable_imp_id_regs]' in the profile if the VMM enables "
                                "the capability, or leave the register to the host")
            else:
                tpl.left_out.append((name, "an implementation ID register: without kvm_caps "
                                           "[writable_imp_id_regs] the guest sees each host's own value"))
                continue
        tpl.writes.append(Write(reg, mask, v, _names(reg, mask)))
    tpl.kvm_caps = frozenset(need_caps)
    return tpl


def _values(model: Model, origin: Model | None, origin_view: dict[str, int] | None,
            explicit: dict[str, int]) -> dict[str, int]:
    """The model's values, with what it inherits unchanged from a host origin taken as KVM shows it."""
    values = dict(model.values)
    if origin is not None and origin.role == "host" and origin_view is not None:
        for reg, v in model.values.items():
            if reg in origin_view:
                keep = explicit.get(reg, 0)
                values[reg] = (origin_view[reg] & ~keep & MASK64) | (v & keep)
    return values


def _references(hosts: list[Model] | None, origin: Model | None, origin_view: dict[str, int] | None,
                kernel: str | None, feats: frozenset[str]) -> list[Reference]:
    """What the template is relative to: KVM's view on each host, else on the model's origin, else nothing."""
    if hosts:
        return [Reference(f"KVM's default view on {h.name} ({h.path})", kvm_view(h, kernel, feats)) for h in hosts]
    if origin is not None and origin_view is not None:
        what = "KVM's defaults" if is_kvm_view(origin) else f"KVM's default view on {origin.name}"
        return [Reference(f"the model's origin {origin.name} ({origin.path}): {what}", origin_view)]
    return []


def _equalisable(tpl: Template, reg: regdb.Register, mask: int, value: int, hosts: list[Model],
                 refs: list[Reference], kernel: str | None, feats: frozenset[str], explicit: int) -> int:
    """``mask`` without the fields KVM refuses on some host (unless set by name above the origin)."""
    from cpumodel import kvm as kvmmodel
    from cpumodel.policy import sanitise
    from cpumodel.rules.kvm_writes import kernel_rules

    rules = kernel_rules(kernel)
    kern = str(rules.kernel)
    for host, ref in zip(hosts, refs, strict=True):
        if reg.name not in ref.values:
            continue
        written = (ref.values[reg.name] & ~mask & MASK64) | (value & mask)
        try:
            if host.role == "host" and not is_kvm_view(host):  # a CPU's registers: KVM's limit from them
                v = kvmmodel.check_write(rules, reg.name, written, sanitise(host.values, kern), feats)
            else:  # KVM's own view (origin: kvm-defaults, a capture): the limit is that view
                v = kvmmodel.check_write_against_defaults(rules, reg.name, written, ref.values, feats)
        except KeyError:
            continue
        if v.status != kvmmodel.REJECTED:
            continue
        bad = [f for f in v.fields if f.ok is False]
        drop = 0
        for f in bad:
            fm = ((1 << f.width) - 1) << f.shift
            if not fm & explicit:
                drop |= fm
        if not bad and not explicit:
            drop = mask  # refused as a whole (CLIDR_EL1, CTR_EL0 rules): the register is left to each host
        if drop & mask:
            tpl.unequal.append((f"{reg.name}.{', '.join(_names(reg, drop & mask))}",
                                f"KVM will not give every host one value (refused on {host.name}: {v.reason}); "
                                "each guest sees its host's"))
            mask &= ~drop
    return mask


def _id_space(reg: regdb.Register) -> bool:
    op0, op1, crn, crm, _ = reg.encoding
    return op0 == 3 and op1 in (0, 1, 3) and crn == 0 and crm <= 7


def host_refusal(model: Model) -> str:
    return (f"{model.path} is a host (role: host), not a guest model: its raw values are the CPU's, and KVM "
            f"refuses some of them for a VM. Emit KVM's view of a VM on that host instead: "
            f"'cpumodel defaults {model.path} -o guest.yaml' (a base for your own model), "
            f"or 'cpumodel emit {model.path} --kvm-view'")


def kvm_view_model(host: Model, kernel: str | None = None, vcpu_features: frozenset[str] | None = None) -> Model:
    """The guest model KVM gives a new VM on ``host`` (``emit --kvm-view``): what ``cpumodel defaults``
    writes, in memory, marked ``origin: kvm-defaults``."""
    feats = effective_features(host, vcpu_features)
    values = kvm_view(host, kernel, feats)
    m = Model(name=f"{host.name}-kvm", path=host.path, values=values, vcpu_features=feats,
              description=f"KVM's default view of a VM on {host.name}", loc=host.loc, role="guest",
              ignore=list(host.ignore))
    m.origin = {(r, ""): host.loc for r in values} if host.loc else {}
    m.value_origin = "kvm-defaults"  # type: ignore[attr-defined]
    facts = getattr(m, "facts", None)
    if isinstance(facts, dict):  # findings on these values are KVM's own (issue 9's provenance)
        import os

        facts[os.path.realpath(host.path)] = "KVM's own defaults (origin: kvm-defaults)"
    return m


def check_for_targets(model: Model, hosts: list[Model], opts: Any, *, template: bool,
                      resolver: Resolver | None = None) -> list[Any]:
    """``check_model`` of ``model`` against each target host (or none). With ``template`` (a format
    that writes only what the model changes), KVM findings on what the template leaves to each host
    (registers and fields it does not write) are dropped: KVM never sees those values."""
    from cpumodel.check import check_model

    skip: set[tuple[str, str]] = set()
    if template and hosts and model.role == "guest":
        tpl = make_template(model, hosts=hosts, kernel=opts.kernel, vcpu_features=opts.vcpu_features,
                            resolver=resolver, caps=getattr(opts, "kvm_caps", None))
        written = {w.register.name for w in tpl.writes}
        skip |= {(n, "*") for n in model.values if n not in written}
        for reg_fields, _ in tpl.unequal:
            reg, _, names = reg_fields.partition(".")
            skip |= {(reg, f) for f in names.split(", ")}
    findings: list[Any] = []
    for h in hosts or [None]:
        opts.host = h
        for f in check_model(model, opts):
            reg = getattr(f, "register", None) or ""
            if f.rule[:1] in ("K", "V") and ((reg, "*") in skip or (reg, getattr(f, "field", None)) in skip):
                continue
            if f not in findings:
                findings.append(f)
    return findings
