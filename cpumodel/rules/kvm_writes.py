"""KVM rules (``K0xx``): what ``KVM_SET_ONE_REG`` answers for each register of a model.

The verdicts come from ``cpumodel.kvm``: a model of the kernel's path for an ID-register
write, per kernel version, extracted from the Linux source by tools/gen_kvm.py and held
against the real kernel by the oracle recordings (tests/oracle/). Each rule below turns one
kind of verdict into findings; :func:`writes` asks KVM once per model and register.

The host (``--host``) is a profile: ``origin: cpu`` (a CPU's registers; the kernel's
sanitisation is applied, CTR_EL0.IDC made effective) or ``origin: kvm-defaults`` (KVM's own
view of a VM on it, used as KVM's limit when its vCPU features match), plus the host facts
registers cannot show (``vulnerabilities:``, ``host_registers:``) and fields a capture could
not see (``unseen:``), which stay unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from cpumodel import regdb
from cpumodel.errors import CpumodelError
from cpumodel.findings import Finding
from cpumodel.records import record
from cpumodel.resolve import Model
from cpumodel.rules import Context, rule
from cpumodel.rules.vcpu import effective_features, missing_features

SYS_REGS = "arch/arm64/kvm/sys_regs.c"
PER_KERNEL = f"{SYS_REGS} (per kernel: cpumodel/data/kvm/<version>.json)"
# kvm_vm_ioctl_enable_cap(): a capability the switch does not name keeps r = -EINVAL.
ENABLE_CAP = "arch/arm64/kvm/arm.c:108-156 kvm_vm_ioctl_enable_cap() 'int r = -EINVAL' [Linux 6.12.117]"
KVM_CAP_NAMES = {"writable_imp_id_regs": "KVM_CAP_ARM_WRITABLE_IMP_ID_REGS"}


def kernel_rules(version: str | None):  # type: ignore[no-untyped-def]
    from cpumodel import kvm as kvmmodel

    try:
        return kvmmodel.load_kernel(version or kvmmodel.kernels()[-1])
    except KeyError as exc:
        raise CpumodelError(str(exc), hint=getattr(exc, "hint", "") or "see 'cpumodel kernels'") from None


def kernel_name(ctx: Context) -> str:
    return str(kernel_rules(ctx.kernel).kernel)


def describe_kernels() -> list[str]:
    from cpumodel.kvm.rules import describe_catalogue

    return describe_catalogue()


def kernel_names(krules: Any, by_name: dict[str, int]) -> dict[str, int]:
    """Keys renamed to the kernel's names, matched by encoding: the kernel's rule files name some
    registers generically (ID_AA64DFR2_EL1 is ``S3_0_C0_C5_2`` in 6.12-7.3)."""
    db = regdb.load()
    out = {}
    for key, v in by_name.items():
        reg, dot, fld = key.partition(".")
        r = krules.lookup(db.registers[reg].encoding) if reg in db.registers else None
        out[(r.name if r is not None else reg) + dot + fld] = v
    return out


def vm_features(model: Model, ctx: Context) -> tuple[frozenset[str], bool]:
    """The VM's vCPU features and KVM capabilities, and whether the features were inferred."""
    feats, inferred = effective_features(model, ctx)
    caps = ctx.kvm_caps if ctx.kvm_caps is not None else model.kvm_caps
    return feats | (caps or frozenset()), inferred


@lru_cache(maxsize=2048)
def _check_write(kernel: str, enc: tuple[int, ...], value: int, feats: frozenset[str]):  # type: ignore[no-untyped-def]
    """check_write without a host, memoised: profiles linted together share most register values."""
    from cpumodel import kvm as kvmmodel

    return kvmmodel.check_write(kvmmodel.load_kernel(kernel), enc, value, None, feats)  # type: ignore[arg-type]


_HOST_VIEWS: list[tuple[Model, str, frozenset[str], Any]] = []


def host_view(host: Model, krules: Any, feats: frozenset[str]) -> Any:
    """The host as the KVM model needs it (a prepared view, reused for every profile checked)."""
    for h, k, f, view in _HOST_VIEWS:
        if h is host and k == krules.kernel_full and f == feats:
            return view
    from cpumodel import kvm as kvmmodel
    from cpumodel.policy import sanitise, unknown_bits

    caps = kvmmodel.host_caps_from_vulnerabilities(host.vulnerabilities)
    facts = kernel_names(krules, host.host_fields)
    if host.value_origin == "kvm-defaults":
        own = (host.vcpu_features or frozenset()) | (host.kvm_caps or frozenset())
        same = host.vcpu_features is None or _normal(krules, own) == _normal(krules, feats)
        view = kvmmodel.prepare_host(krules, feats, host=facts, unknown=kernel_names(krules, host.unseen),
                                     defaults=kernel_names(krules, host.values), limits=same, host_caps=caps)
    else:
        cpu = host.value_origin == "cpu"
        values = sanitise(host.values, str(krules.kernel), cpu=cpu)
        unknown = dict(host.unseen)
        for k, m in unknown_bits(host.values, cpu=cpu).items():
            unknown[k] = unknown.get(k, 0) | m
        view = kvmmodel.prepare_host(krules, feats, host={**kernel_names(krules, values), **facts},
                                     unknown=kernel_names(krules, unknown), host_caps=caps)
    _HOST_VIEWS.append((host, krules.kernel_full, feats, view))
    del _HOST_VIEWS[:-16]
    return view


def _normal(krules: Any, feats: frozenset[str]) -> frozenset[str]:
    return frozenset(v for f in feats if (v := krules.feature_aliases.get(f)))


@record(frozen=True)
class Write:
    """One register of the model and KVM's verdict on writing it."""

    name: str
    value: int
    verdict: Any  # cpumodel.kvm.Verdict


def writes(model: Model, ctx: Context) -> list[Write]:
    """KVM's verdict on every register of the model, in encoding order (computed once per check)."""
    hit = ctx.memo.get("kvm_writes")
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    krules = kernel_rules(ctx.kernel)
    feats, _ = vm_features(model, ctx)
    db = regdb.load()
    view = host_view(ctx.host, krules, feats) if ctx.host is not None else None
    out = []
    for name in sorted(model.values, key=lambda n: db.registers[n].encoding):
        enc = db.registers[name].encoding
        value = model.values[name]
        v = view.check(enc, value) if view is not None else _check_write(str(krules.kernel_full), enc, value, feats)
        out.append(Write(name, value, v))
    ctx.memo["kvm_writes"] = out
    return out


@rule("K001", "register-unknown-to-kernel", kind="kvm", severity="error", source=PER_KERNEL)
def register_unknown_to_kernel(model: Model, ctx: Context) -> Iterator[Finding]:
    """The kernel has no writable ID register at this encoding, so KVM_SET_ONE_REG fails (ENOENT).

    Registers join KVM's writable set release by release (CTR_EL0, the implementation ID
    registers MIDR/REVIDR/AIDR, ID_AA64MMFR3/4, ID_AA64PFR2, ID_AA64FPFR0, ...), and some have
    no one-reg at all (DCZID_EL0). Pick a newer --kernel, or drop the register.

    Bad:  ``DCZID_EL0: 0x4``
    """
    kernel = kernel_name(ctx)
    for w in writes(model, ctx):
        if w.verdict.errno == "ENOENT":
            yield Finding("K001", "error", f"{w.name}: kernel {kernel} has no writable register here",
                          register=w.name, asked=w.value, why=w.verdict.reason, location=model.where(w.name),
                          errno="ENOENT", kernel=kernel, source=w.verdict.source)


def _allowed(f: Any) -> str | None:
    if f.limit is None:
        return None
    if f.policy == "LOWER_SAFE":
        return f"<= {f.limit:#x}"
    if f.policy == "HIGHER_SAFE":
        return f">= {f.limit:#x}"
    return f"{f.limit:#x}"


@rule("K002", "value-refused", kind="kvm", severity="error", source=PER_KERNEL)
def value_refused(model: Model, ctx: Context) -> Iterator[Finding]:
    """KVM refuses this value: KVM_SET_ONE_REG returns the errno shown.

    For each field KVM compares the requested value with its limit (the host's sanitised value,
    with KVM's own hiding and capping applied) using the kernel's safety policy for that field:
    LOWER_SAFE fields may only go down, HIGHER_SAFE only up, EXACT must match; bits outside the
    writable mask must equal KVM's value; some registers have handlers with extra checks (e.g.
    ID_DFR0_EL1.CopDbg below Armv8, ID_AA64DFR0_EL1.DebugVer below Armv8, PerfMon below PMUv3,
    MIDR_EL1 unless the VMM enables KVM_CAP_ARM_WRITABLE_IMP_ID_REGS with ``kvm_caps``).
    The finding names the field, the asked value, the limit and the policy. A field that only
    lacks its vCPU feature is reported once, by V002.

    Bad (host without SVE):  ``ID_AA64PFR0_EL1: {SVE: IMP}``
    """
    from cpumodel import kvm as kvmmodel

    kernel = kernel_name(ctx)
    db = regdb.load()
    explained = {(r, f) for _, r, f, _ in missing_features(model, ctx)}
    for w in writes(model, ctx):
        v = w.verdict
        if v.status != kvmmodel.REJECTED or v.errno == "ENOENT":
            continue
        failing = [f for f in v.failing_fields if (w.name, f.field) not in explained]
        if not failing and v.failing_fields:
            continue  # explained by V002
        if not failing:
            yield Finding("K002", "error", f"{w.name}={w.value:#x} refused by KVM ({v.errno})", register=w.name,
                          asked=w.value, why=v.reason, location=model.where(w.name), errno=v.errno,
                          kernel=kernel, source=v.source)
            continue
        for f in failing:
            known = db.registers[w.name].find_field(f.field)
            fname = known.name if known else ""
            target = f"{w.name}.{f.field}" if known or f.field.startswith("bit") else w.name
            yield Finding("K002", "error", f"{target}={f.asked:#x} refused by KVM ({v.errno})",
                          register=w.name, field=fname or None, asked=f.asked, allowed=_allowed(f),
                          why=f.reason, location=model.where(w.name, fname), errno=v.errno, kernel=kernel,
                          host_value=f.host, policy=f.policy or "must equal KVM's value", source=f.source)


@rule("K003", "depends-on-host", kind="kvm", severity="info", source=f"{SYS_REGS} arm64_check_features()")
def depends_on_host(model: Model, ctx: Context) -> Iterator[Finding]:
    """Whether KVM accepts these registers depends on host facts that were not given.

    Most of KVM's checks compare the requested value with the host's (sanitised) value. Give
    the host with --host HOST.yaml (a profile: shipped, captured with 'cpumodel capture', a
    'cpumodel defaults' output or a baseline) to get a definite verdict for each register. A
    host profile can also lack a fact KVM needs: its Spectre-v2/Meltdown state
    (``vulnerabilities:``, as /sys/devices/system/cpu/vulnerabilities reports it), a field its
    capture could not see (``unseen:``), or a raw host field KVM hides (``host_registers:``);
    the finding names the facts."""
    from cpumodel import kvm as kvmmodel

    pending = [w for w in writes(model, ctx) if w.verdict.status in (kvmmodel.DEPENDS, kvmmodel.UNMODELLED)]
    if not pending:
        return
    names = ", ".join(w.name for w in pending)
    if ctx.host is None:
        why = "give --host HOST.yaml for a definite verdict"
    else:
        facts = sorted({d for w in pending for d in w.verdict.depends_on})
        unmodelled = [w.verdict.reason for w in pending if w.verdict.status == kvmmodel.UNMODELLED]
        why = (f"the host profile {ctx.host.path} does not give: {', '.join(facts)}" if facts else
               f"not modelled: {unmodelled[0]}" if unmodelled else "the host profile lacks a fact KVM needs")
    yield Finding("K003", "info", f"{len(pending)} register(s) depend on the host for KVM's verdict: {names}",
                  why=why, location=model.loc, kernel=kernel_name(ctx), source=f"{SYS_REGS} arm64_check_features()")


@rule("K004", "vcpu-features-assumed", kind="kvm", severity="info", source=f"{SYS_REGS} set_id_reg()")
def vcpu_features_assumed(model: Model, ctx: Context) -> Iterator[Finding]:
    """vCPU features were assumed from the model: neither the profile nor the options give them.

    Neither ``vcpu_features`` nor --vcpu-features says which KVM_ARM_VCPU_INIT features the VMM
    sets, so KVM's verdicts assume those the model advertises. KVM hides SVE, the PMU and pointer
    authentication unless KVM_ARM_VCPU_INIT requests them, so its verdicts depend on them. Say
    ``vcpu_features: [...]`` in the profile. Also a reminder: ID registers are VM-wide and immutable
    (EBUSY) once a vCPU has run; write them right after KVM_ARM_VCPU_INIT ('cpumodel emit --format
    kvm' orders them so).

    Bad:  ``ID_AA64PFR0_EL1: {SVE: IMP}`` without ``vcpu_features``
    """
    feats, inferred = effective_features(model, ctx)
    if inferred and feats:
        yield Finding("K004", "info", f"vCPU features assumed from the model: {', '.join(sorted(feats))}; "
                      f"write the {len(model.values)} ID registers before the first KVM_RUN",
                      why="vcpu_features not given; ID registers are immutable (EBUSY) once a vCPU has run",
                      location=model.loc, kernel=kernel_name(ctx), source=f"{SYS_REGS} set_id_reg()")


@rule("K005", "kvm-cap-unavailable", kind="kvm", severity="error", source=ENABLE_CAP)
def kvm_cap_unavailable(model: Model, ctx: Context) -> Iterator[Finding]:
    """The model needs a KVM capability (``kvm_caps`` / ``--kvm-caps``) this kernel does not have.

    KVM_CAP_ARM_WRITABLE_IMP_ID_REGS (``writable_imp_id_regs``: the VMM may then write MIDR_EL1,
    REVIDR_EL1, AIDR_EL1) exists from Linux 6.15; on older kernels KVM_ENABLE_CAP returns EINVAL
    and the implementation ID registers stay the host's.

    Bad (--kernel 6.12):  ``kvm_caps: [writable_imp_id_regs]``
    """
    caps = ctx.kvm_caps if ctx.kvm_caps is not None else model.kvm_caps
    if not caps:
        return
    krules = kernel_rules(ctx.kernel)
    for cap in sorted(caps):
        if not krules.feature_aliases.get(cap):
            yield Finding("K005", "error", f"kernel {krules.kernel} has no {KVM_CAP_NAMES.get(cap, cap)}: "
                          "KVM_ENABLE_CAP fails (EINVAL)", location=model.kvm_caps_loc or model.loc,
                          why="the kernel's kvm_vm_ioctl_enable_cap() does not know the capability",
                          errno="EINVAL", kernel=str(krules.kernel), source=ENABLE_CAP)
