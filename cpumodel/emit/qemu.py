"""QEMU ``-cpu`` option for the KVM ``host`` CPU model (``qemu``).

Output: a small text block. Line 1 is the ``-cpu`` value, ready for
``qemu-system-aarch64 -accel kvm -cpu "$(head -n1 FILE)"``, e.g.
``host,pmu=on,sve=off,pauth=off``. Every following line starts with ``#`` and is a note:
where each property comes from (the QEMU version that introduced it and the source read),
how the vCPU features were chosen, and every ID register field the command cannot set.
A shell command line has no comments, hence the block.

Upstream QEMU's ``host`` model copies the host's ID registers (as KVM limits them) and
offers only on/off properties (pmu, aarch64, sve, sve<N> as documented in
docs/system/arm/cpu-features.rst @ qemu/qemu fa7dd27bc3db; all five present in QEMU 7.2.22,
Debian 1:7.2+dfsg-7+deb12u18, per ``qom-list-properties`` on ``max-arm-cpu``, which under KVM
behaves as ``host``):

* ``pmu``: KVM_ARM_VCPU_PMU_V3; off makes ID_AA64DFR0_EL1.PMUVer and ID_DFR0_EL1.PerfMon 0.
* ``sve`` and ``sve<N>`` (N = 128..2048 in steps of 128): KVM_ARM_VCPU_SVE and the vector
  lengths; off makes ID_AA64PFR0_EL1.SVE and ID_AA64ZFR0_EL1 0.
* ``pauth``: KVM_ARM_VCPU_PTRAUTH_ADDRESS/GENERIC; off makes ID_AA64ISAR1_EL1.APA/API/GPA/GPI
  and ID_AA64ISAR2_EL1.APA3/GPA3 0.
* ``aarch64``: off starts the vCPU in AArch32 EL1 (KVM_ARM_VCPU_EL1_32BIT).

``on`` gives the host's value of those fields, not the model's; every other field is the
host's. The notes list each register's fields under "cannot set" (or "follows the host"),
and ``strict=True`` raises CpumodelError instead when any field is not set exactly.

Per-field properties ``SYSREG_<REG>_<FIELD>=<value>`` (names from Linux arch/arm64/tools/sysreg,
one per field the host kernel reports writable through KVM_ARM_GET_REG_WRITABLE_MASKS) exist
only in Eric Auger's and Cornelia Huck's series "arm/cpu: more customization for the kvm host
cpu model" (RFCv2 patch 18/20, 2024-12-06, Message-ID 20241206112213.88394-19-cohuck@redhat.com;
re-posted 2025-04-14), not in upstream QEMU: the stored qemu/qemu tree has no ``SYSREG_``
property, only the idregs index target/arm/cpu-sysregs.h.inc @ 187304a617bf. Reviewers asked
to drop the prefix and use lower case, so the names may change. ``sysreg_props=True`` emits
them for every named field of the registers that index lists (MIDR_EL1, REVIDR_EL1 and
AIDR_EL1 are not in it); a field the host kernel does not make writable is then refused by
that QEMU as an unknown property.

vCPU features: the ``vcpu_features`` option, else the profile's; when neither gives them,
pmu/sve/pauth are derived from the ID register fields the model has (PMUVer, SVE,
APA/API/GPA/GPI/APA3/GPA3) and ``aarch64`` is left out. Options: ``vcpu_features``,
``kernel`` (named in the notes), ``strict``, ``sysreg_props``, ``sve_lengths`` (bits, e.g.
``[128, 256]``: emits ``sve128=on,sve256=on``; the model itself has no vector lengths).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cpumodel import __version__, regdb
from cpumodel.emit.escape import one_line
from cpumodel.emit.kvmlist import vcpu_features, write_order
from cpumodel.errors import CpumodelError
from cpumodel.resolve import Model


@dataclass(frozen=True)
class Prop:
    since: str
    source: str
    does: str


#: Upstream QEMU ``host`` CPU properties used here, with the version that introduced them.
PROPERTIES: dict[str, Prop] = {
    "pmu": Prop(
        since="before QEMU 4.2 (first release not pinned down here)",
        source="docs/system/arm/cpu-features.rst, whose first version came with the QEMU 4.2 SVE series, "
               "already uses pmu=off; present in QEMU 7.2.22",
        does="KVM_ARM_VCPU_PMU_V3; off: ID_AA64DFR0_EL1.PMUVer = ID_DFR0_EL1.PerfMon = 0"),
    "sve": Prop(
        since="QEMU 4.2",
        source="Andrew Jones' series 'target/arm/kvm: enable SVE in guests' v9 (2019-10-31, Message-id "
               "20191031142734.8590-*; commit 0df9142d27 'Introduce sve<N> properties')",
        does="KVM_ARM_VCPU_SVE; off: ID_AA64PFR0_EL1.SVE = 0 and ID_AA64ZFR0_EL1 = 0"),
    "sve<N>": Prop(
        since="QEMU 4.2",
        source="same series as sve; docs/system/arm/cpu-features.rst 'SVE CPU Properties'",
        does="SVE vector length N bits (128..2048); with KVM only host-supported lengths"),
    "pauth": Prop(
        since="QEMU 7.0 for KVM (the property existed before for TCG only)",
        source="Marc Zyngier 'hw/arm/virt: KVM: Enable PAuth when supported by the host' v3 (2022-01-07, "
               "Message-Id 20220107150154.2490308-1-maz@kernel.org), which Peter Maydell's hvf patch of "
               "2022-02-04 (20220204165506.2846058-7) already builds on",
        does="KVM_ARM_VCPU_PTRAUTH_ADDRESS+GENERIC; off: ID_AA64ISAR1_EL1.APA/API/GPA/GPI = "
             "ID_AA64ISAR2_EL1.APA3/GPA3 = 0"),
    "aarch64": Prop(
        since="QEMU 3.0 or earlier (first release not pinned down here)",
        source="target/arm/cpu64.c aarch64_cpu_initfn() @ qemu/qemu 00a8c5bbb609 (a 2018-era tree); "
               "docs/system/arm/cpu-features.rst: KVM only, needs 32-bit EL1 on the host",
        does="off: KVM_ARM_VCPU_EL1_32BIT (the vCPU starts in AArch32 EL1)"),
}

#: (register, field) -> the on/off property that controls it ("*" = every field of the register).
COVERED: dict[tuple[str, str], str] = {
    ("ID_AA64DFR0_EL1", "PMUVer"): "pmu",
    ("ID_DFR0_EL1", "PerfMon"): "pmu",
    ("ID_AA64PFR0_EL1", "SVE"): "sve",
    ("ID_AA64ZFR0_EL1", "*"): "sve",
    ("ID_AA64ISAR1_EL1", "APA"): "pauth",
    ("ID_AA64ISAR1_EL1", "API"): "pauth",
    ("ID_AA64ISAR1_EL1", "GPA"): "pauth",
    ("ID_AA64ISAR1_EL1", "GPI"): "pauth",
    ("ID_AA64ISAR2_EL1", "APA3"): "pauth",
    ("ID_AA64ISAR2_EL1", "GPA3"): "pauth",
}

#: Registers of QEMU's idregs index, target/arm/cpu-sysregs.h.inc @ qemu/qemu 187304a617bf: the
#: registers the SYSREG_ series can make properties for.
SYSREG_REGS = frozenset({
    "ID_AA64PFR0_EL1", "ID_AA64PFR1_EL1", "ID_AA64PFR2_EL1", "ID_AA64SMFR0_EL1", "ID_AA64DFR0_EL1",
    "ID_AA64DFR1_EL1", "ID_AA64AFR0_EL1", "ID_AA64AFR1_EL1", "ID_AA64ISAR0_EL1", "ID_AA64ISAR1_EL1",
    "ID_AA64ISAR2_EL1", "ID_AA64ISAR3_EL1", "ID_AA64MMFR0_EL1", "ID_AA64MMFR1_EL1", "ID_AA64MMFR2_EL1",
    "ID_AA64MMFR3_EL1", "ID_AA64MMFR4_EL1", "ID_PFR0_EL1", "ID_PFR1_EL1", "ID_DFR0_EL1", "ID_AFR0_EL1",
    "ID_MMFR0_EL1", "ID_MMFR1_EL1", "ID_MMFR2_EL1", "ID_MMFR3_EL1", "ID_ISAR0_EL1", "ID_ISAR1_EL1",
    "ID_ISAR2_EL1", "ID_ISAR3_EL1", "ID_ISAR4_EL1", "ID_ISAR5_EL1", "ID_MMFR4_EL1", "ID_ISAR6_EL1",
    "MVFR0_EL1", "MVFR1_EL1", "MVFR2_EL1", "ID_PFR2_EL1", "ID_DFR1_EL1", "ID_MMFR5_EL1", "CLIDR_EL1",
    "ID_AA64ZFR0_EL1", "CTR_EL0", "DCZID_EL0",
})
SYSREG_SERIES = ("not upstream: Auger/Huck series 'arm/cpu: more customization for the kvm host cpu model' "
                 "(RFCv2 2024-12-06, re-posted 2025-04-14); names may change")

#: What line 1 (the -cpu value) may hold: it is used unquoted in ``-cpu "$(head -n1 FILE)"`` and
#: in a QEMU option string, where ``,`` separates properties; shell_word() of it is itself.
_CPU_VALUE = re.compile(r"[A-Za-z0-9_]+(?:,[A-Za-z0-9_]+=[A-Za-z0-9_]+)*")

SVE_LENGTHS = tuple(range(128, 2049, 128))
#: Feature -> the property that carries it (aarch64 is the inverse of el1_32bit).
FEATURE_PROPS = (("pmu", "pmu"), ("sve", "sve"), ("ptrauth", "pauth"))


def _onoff(flag: bool) -> str:
    return "on" if flag else "off"


def _derive(model: Model) -> tuple[dict[str, bool], list[str]]:
    """pmu/sve/pauth from the ID register fields the model has; reasons for the notes."""
    db = regdb.load()
    props: dict[str, bool] = {}
    why: list[str] = []

    def field(reg: str, name: str) -> int | None:
        if reg not in model.values:
            return None
        return db.registers[reg].field(name).get(model.values[reg])

    pmuver = field("ID_AA64DFR0_EL1", "PMUVer")
    if pmuver is not None:
        props["pmu"] = pmuver not in (0x0, 0xF)  # 0xF = IMPLEMENTATION DEFINED, not PMUv3
        why.append(f"pmu from ID_AA64DFR0_EL1.PMUVer={pmuver:#x}")
    sve = field("ID_AA64PFR0_EL1", "SVE")
    if sve is not None:
        props["sve"] = sve != 0
        why.append(f"sve from ID_AA64PFR0_EL1.SVE={sve:#x}")
    auth = [(r, f, field(r, f)) for r, f in (("ID_AA64ISAR1_EL1", "APA"), ("ID_AA64ISAR1_EL1", "API"),
                                             ("ID_AA64ISAR1_EL1", "GPA"), ("ID_AA64ISAR1_EL1", "GPI"),
                                             ("ID_AA64ISAR2_EL1", "APA3"), ("ID_AA64ISAR2_EL1", "GPA3"))]
    known = [(r, f, v) for r, f, v in auth if v is not None]
    if known:
        props["pauth"] = any(v for _, _, v in known)
        why.append("pauth from " + ", ".join(f"{r}.{f}={v:#x}" for r, f, v in known))
    missing = [p for p in ("pmu", "sve", "pauth") if p not in props]
    if missing:
        why.append(f"{', '.join(missing)} left out (the model lacks the register; QEMU's default is the host's)")
    return props, why


def _sve_lengths(opts: dict[str, object], sve_on: bool | None) -> list[int]:
    raw = opts.get("sve_lengths")
    if raw is None:
        return []
    lengths = sorted({int(x) for x in raw})  # type: ignore[attr-defined]
    bad = [n for n in lengths if n not in SVE_LENGTHS]
    if bad:
        raise CpumodelError(f"SVE vector length(s) {bad} are not QEMU sve<N> properties (N = 128..2048, step 128)")
    if lengths and sve_on is not True:
        raise CpumodelError("sve_lengths needs SVE on (the sve vCPU feature or ID_AA64PFR0_EL1.SVE != 0)")
    return lengths


def _fmt_fields(pairs: Iterable[tuple[str, int]]) -> str:
    return " ".join(f"{n}={v:#x}" for n, v in pairs)


def emit(model: Model, **opts: object) -> str:
    sysreg = bool(opts.get("sysreg_props", False))
    props, origin, derived = _properties(model, opts)
    lengths = _sve_lengths(opts, props.get("sve"))
    follows, cannot, sysreg_parts = _coverage(model, props, sysreg)
    if bool(opts.get("strict", False)) and (cannot or follows):
        raise _inexact(model, cannot, follows, sysreg)
    value = ",".join(_onoff_parts(props, lengths) + sysreg_parts)
    if not _CPU_VALUE.fullmatch(value):  # only fixed property names and numbers: nothing to quote
        raise CpumodelError(f"internal error: unexpected characters in the -cpu value {value!r}")
    notes = _notes(model, opts, props, origin, derived, lengths, follows, cannot, bool(sysreg_parts))
    return value + "\n" + "\n".join(f"# {one_line(n)}" for n in notes) + "\n"


def _properties(model: Model, opts: dict[str, object]) -> tuple[dict[str, bool], str, list[str]]:
    """The on/off properties, where the vCPU features came from, and how each was derived."""
    feats = vcpu_features(model, opts)
    if feats is None:
        props, derived = _derive(model)
        return props, "derived from ID register fields (no vCPU features given)", derived
    props = {prop: feat in feats for feat, prop in FEATURE_PROPS}
    props["aarch64"] = "el1_32bit" not in feats
    origin = (f"{', '.join(sorted(feats)) or 'none'} "
              f"(from the {'vcpu_features option' if opts.get('vcpu_features') is not None else 'profile'})")
    return props, origin, []


def _onoff_parts(props: dict[str, bool], lengths: list[int]) -> list[str]:
    """``host`` and its on/off properties, in QEMU's documented order."""
    parts = ["host"]
    for prop in ("pmu", "sve"):
        if prop in props:
            parts.append(f"{prop}={_onoff(props[prop])}")
    parts += [f"sve{n}=on" for n in lengths]
    for prop in ("pauth", "aarch64"):
        if prop in props:
            parts.append(f"{prop}={_onoff(props[prop])}")
    return parts


def _coverage(model: Model, props: dict[str, bool], sysreg: bool) -> tuple[list[str], list[str], list[str]]:
    """Each register's fields sorted by what QEMU can do with them.

    Returns (follows, cannot, sysreg_parts): fields an on/off property covers but whose value
    is the host's, fields no property sets, and the SYSREG_ properties (with ``sysreg``).
    """
    follows: list[str] = []
    cannot: list[str] = []
    sysreg_parts: list[str] = []
    for reg, value in write_order(model):
        named = [(f.name, f.get(value)) for f in reg.named_fields]
        if sysreg and reg.name in SYSREG_REGS:
            sysreg_parts += [f"SYSREG_{reg.name}_{n}={v:#x}" for n, v in named]
            continue
        loose: list[tuple[str, int]] = []
        host: list[tuple[str, int]] = []
        for n, v in named:
            prop = COVERED.get((reg.name, n)) or COVERED.get((reg.name, "*"))
            if prop is None or prop not in props:
                loose.append((n, v))
            elif props[prop] or v != 0:  # off + 0 is exact; anything else is the host's value
                host.append((n, v))
        if host:
            follows.append(f"{reg.name}: {_fmt_fields(host)}")
        if loose:
            cannot.append(f"{reg.name}={value:#018x}: {_fmt_fields(loose)}")
    return follows, cannot, sysreg_parts


def _inexact(model: Model, cannot: list[str], follows: list[str], sysreg: bool) -> CpumodelError:
    """The ``strict`` refusal: the registers whose fields would be the host's."""
    first = [line.split(":")[0] for line in (cannot + follows)][:5]
    return CpumodelError(
        f"QEMU's -cpu host cannot express {model.name} exactly: fields of {len(cannot) + len(follows)} "
        f"register(s) ({', '.join(first)}{', ...' if len(cannot) + len(follows) > 5 else ''}) would be the "
        "host's values" + ("" if sysreg else "; sysreg_props=True adds the not-upstream SYSREG_ properties"))


def _notes(model: Model, opts: dict[str, object], props: dict[str, bool], origin: str, derived: list[str],
           lengths: list[int], follows: list[str], cannot: list[str], sysreg_used: bool) -> list[str]:
    """The '#' lines: provenance, each property used, and every field not set exactly."""
    sysreg = bool(opts.get("sysreg_props", False))
    kernel = opts.get("kernel")
    notes = [
        f"cpumodel {__version__}: QEMU -cpu value for {model.name} ({model.path}), KVM 'host' CPU model"
        + (f"; model checked against the KVM rules of Linux {kernel}" if kernel else ""),
        "Line 1 is the value of qemu-system-aarch64 -accel kvm -cpu; these '#' lines are notes.",
        f"vCPU features: {origin}" + (f": {'; '.join(derived)}" if derived else ""),
    ]
    used = [p for p in ("pmu", "sve", "pauth", "aarch64") if p in props] + (["sve<N>"] if lengths else [])
    for p in used:
        meta = PROPERTIES[p]
        notes.append(f"property {p}: since {meta.since}; {meta.does}; source: {meta.source}")
    if props.get("sve") and not lengths:
        notes.append("SVE vector lengths are not part of the model: QEMU enables every length the host "
                     "supports (pass sve_lengths to pin them)")
    if sysreg_used:
        notes.append(f"SYSREG_<REG>_<FIELD> properties: {SYSREG_SERIES}; such a QEMU creates them only for "
                     "fields the host kernel reports writable and refuses the others as unknown properties; "
                     "the series notes that they and pmu/sve/pauth can override each other")
    if follows:
        notes.append("Not the model's value: an on/off property controls these, but on gives the host's "
                     "(KVM's) value and off gives 0:")
        notes += [f"  {line}" for line in follows]
    if cannot:
        where = "QEMU's upstream properties" if not sysreg else "the SYSREG_ series (register not in its index)"
        notes.append(f"Cannot set with {where}; the guest sees the host's value of these fields:")
        notes += [f"  {line}" for line in cannot]
    if not sysreg:
        notes.append(f"Per-field SYSREG_<REG>_<FIELD>=<value> properties: {SYSREG_SERIES}; "
                     "emit with sysreg_props=True for such a build")
    return notes
