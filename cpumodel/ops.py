"""Model operations: diff, migration safety and fleet baselines.

Migration and baseline use the kernel's own per-field safety policies (``policy.py``):
a guest model A can run on B when every A value is the safe choice against B's value
(the test KVM applies to a VMM's ID-register write against the host), and a baseline
of several hosts is what Linux computes when it sanitises ID registers across CPUs:
``arm64_ftr_safe_value`` folded over the hosts, field by field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cpumodel import regdb
from cpumodel.policy import Policy, policies
from cpumodel.resolve import Model

#: Implementation ID registers (KVM: invariant unless KVM_CAP_ARM_WRITABLE_IMP_ID_REGS; api.rst 7.42).
IMP_ID_REGS = ("MIDR_EL1", "REVIDR_EL1", "AIDR_EL1")


@dataclass
class FieldDiff:
    register: str
    field: str  # "" for a register present in one model only
    a: int | None
    b: int | None
    a_name: str = ""
    b_name: str = ""


@dataclass
class Diff:
    fields: list[FieldDiff] = field(default_factory=list)
    gained: list[str] = field(default_factory=list)  # features B has and A lacks
    lost: list[str] = field(default_factory=list)  # features A has and B lacks

    @property
    def equal(self) -> bool:
        return not (self.fields or self.gained or self.lost)


def _named(reg: regdb.Register, fname: str, v: int | None) -> str:
    if v is None:
        return ""
    f = reg.find_field(fname)
    return (f.values.get(v, "") if f else "") or ""


def diff(a: Model, b: Model) -> Diff:
    db = regdb.load()
    out = Diff()
    for name in sorted(set(a.values) | set(b.values), key=lambda n: db.registers[n].encoding):
        reg = db.registers[name]
        va, vb = a.values.get(name), b.values.get(name)
        if va is None or vb is None:
            out.fields.append(FieldDiff(name, "", va, vb))
            continue
        if va == vb:
            continue
        for f in reg.fields:
            fa, fb = f.get(va), f.get(vb)
            if fa != fb:
                fname = f.name if f.kind in ("enum", "field") else f"{f.kind.upper()}[{f.msb}:{f.lsb}]"
                out.fields.append(FieldDiff(name, fname, fa, fb, _named(reg, f.name, fa), _named(reg, f.name, fb)))
    fa_feats = _features(a)
    fb_feats = _features(b)
    out.gained = sorted(k for k, v in fb_feats.items() if v is True and fa_feats.get(k) is not True)
    out.lost = sorted(k for k, v in fa_feats.items() if v is True and fb_feats.get(k) is not True)
    return out


def _features(m: Model) -> dict[str, bool | None]:
    from cpumodel.features import FeatureModel

    return FeatureModel.load().features_of(m.field_values())


@dataclass
class FieldCheck:
    """One row of ``diff --migratable``: can field ``field`` of ``register`` keep A's value on B?

    Built from the kernel's answer to restoring A's register on B (a ``cpumodel.kvm.Verdict``, the
    one verdict type) or, where the KVM model cannot decide, from the field's kernel policy."""

    register: str
    field: str
    a: int | None
    b: int | None
    ok: bool
    policy: str
    reason: str


def _covered(pols: list[Policy]) -> int:
    m = 0
    for p in pols:
        m |= ((1 << p.width) - 1) << p.shift
    return m


def migratable(a: Model, b: Model, kernel: str | None = None) -> list[FieldCheck]:
    """Per-field verdicts: can a guest that runs with model A run on B (a host, or a host's model)?

    The destination VMM restores A's ID registers with KVM_SET_ONE_REG on B, so this asks KVM's
    own question through the path ``cpumodel check --host B`` takes (rules.kvm_writes.host_view:
    B as its kernel sanitises it, its unseen fields and sysfs facts, or KVM's defaults on it; A's
    vCPU features and KVM capabilities). Registers the KVM model cannot decide fall back to the kernel's field
    policies (arm64_ftr_safe_value); registers without either must match exactly.
    """
    from cpumodel import kvm as kvmmodel
    from cpumodel.policy import sanitise
    from cpumodel.rules import Context
    from cpumodel.rules.kvm_writes import host_view, kernel_rules, vm_features

    db = regdb.load()
    rules = kernel_rules(kernel)
    kern = str(rules.kernel)
    table = policies(kern)
    feats, _ = vm_features(a, Context())
    view = host_view(b, rules, feats)
    av = sanitise(a.values, kern, cpu=a.value_origin == "cpu")
    bv = sanitise(b.values, kern, cpu=b.value_origin == "cpu")
    out: list[FieldCheck] = []
    for name in sorted(av, key=lambda n: db.registers[n].encoding):
        va, vb = av[name], bv.get(name)
        if vb is None:
            out.append(FieldCheck(name, "", va, None, False, "-",
                               f"B does not define {name}: the guest's value cannot be checked against it"))
            continue
        try:
            v = view.check(db.registers[name].encoding, va)
        except KeyError:
            v = None
        if v is not None and v.status in (kvmmodel.ACCEPTED, kvmmodel.REJECTED) and v.errno != "ENOENT":
            for f in v.fields:
                if f.asked != f.limit or not f.ok:
                    out.append(FieldCheck(name, f.field, f.asked, f.limit, bool(f.ok),
                                       f"{f.policy or 'must equal KVM value'} (KVM {kern})", f.reason))
            if v.status == kvmmodel.REJECTED and not v.failing_fields:
                out.append(FieldCheck(name, "", va, vb, False, f"KVM {kern}: {v.errno}", v.reason))
            if v.status == kvmmodel.ACCEPTED and not v.fields:
                out.append(FieldCheck(name, "", va, vb, True, f"KVM {kern}", v.reason))
            continue
        note = f" (KVM model: {v.reason})" if v is not None else ""
        out += _policy_verdicts(name, va, vb, table.get(name, []), note)
    return out


def _policy_verdicts(name: str, va: int, vb: int, pols: list[Policy], note: str = "") -> list[FieldCheck]:
    out: list[FieldCheck] = []
    for p in pols:
        fa, fb = p.value(va), p.value(vb)
        ok = p.allows(fa, fb)
        if fa == fb:
            reason = "same value"
        elif ok:
            reason = f"A's {fa} is safe against B's {fb} under {p.kind}"
        else:
            need = {"LOWER_SAFE": f"B must offer at least {fa}", "HIGHER_SAFE": f"B must be at most {fa}",
                    "HIGHER_OR_ZERO_SAFE": f"B must be non-zero and at most {fa}",
                    "EXACT": "the values must match"}[p.kind]
            reason = f"the guest saw {fa}, B has {fb}: {need}"
        out.append(FieldCheck(name, p.field, fa, fb, ok, p.describe(), reason + note))
    if not pols:
        reg = regdb.load().registers[name]
        diff_fields = [f for f in reg.fields if f.get(va) != f.get(vb)]
        for f in diff_fields:
            out.append(FieldCheck(name, f.name, f.get(va), f.get(vb), False, "no kernel policy: exact",
                               "the kernel has no safety policy for this register, so it must match" + note))
        if not diff_fields:
            out.append(FieldCheck(name, "", va, vb, True, "exact", "same value" + note))
    return out


@dataclass
class Baseline:
    values: dict[str, int]
    limited_by: dict[tuple[str, str], str]  # (register, field) -> host name that set the value
    conflicts: list[str]  # fields the hosts cannot share (no policy, or KVM will not change them)
    features: frozenset[str] | None = None  # vCPU features the baseline assumes (KVM baselines)
    firmware: dict[str, int] = field(default_factory=dict)  # firmware pseudo-registers the VMM restores


def baseline(models: list[Model], kernel: str | None = None, kvm: bool = True) -> Baseline:
    """The richest model safe on every host: arm64_ftr_safe_value folded over the hosts.

    With ``kvm`` (the default) the fold runs over what KVM shows a VM on each host (``kvm_defaults``
    with the vCPU features all hosts support), and the result is then put to KVM on every host
    (``migratable``): fields KVM will not let a VMM change (outside the writable mask) must already
    agree across the hosts, and each disagreement is reported in ``conflicts``.
    """
    if kvm:
        return _kvm_baseline(models, kernel)
    db = regdb.load()
    table = policies(kernel)
    common = set(models[0].values)
    for m in models[1:]:
        common &= set(m.values)
    values: dict[str, int] = {}
    limited: dict[tuple[str, str], str] = {}
    conflicts: list[str] = []
    for name in sorted(common, key=lambda n: db.registers[n].encoding):
        pols = table.get(name, [])
        first = models[0].values[name]
        if name in IMP_ID_REGS and any(m.values[name] != first for m in models[1:]):
            # They identify the host: without KVM_CAP_ARM_WRITABLE_IMP_ID_REGS KVM shows every VM its host's
            # own (sys_regs.c set_imp_id_reg(): another value is EINVAL), so a pool leaves them to each host.
            conflicts.append(f"{name}: the hosts differ; left out, so each VM sees its host's own "
                             "(one value for all needs KVM_CAP_ARM_WRITABLE_IMP_ID_REGS)")
            continue
        value = first
        for p in pols:
            cur = p.value(first)
            who = models[0].name
            for m in models[1:]:
                new = p.value(m.values[name])
                safe = p.safe(new, cur)
                if safe != cur:
                    who = m.name if safe == new else f"{p.kind} safe value"
                cur = safe
            mask = ((1 << p.width) - 1) << p.shift
            value = (value & ~mask) | ((cur << p.shift) & mask)
            if any(p.value(m.values[name]) != cur for m in models):
                limited[(name, p.field)] = who
        # Bits outside the kernel's fields never reach KVM or a guest (see migratable()): keep them
        # where every host agrees, clear them where hosts differ. A register without a table must
        # match as a whole; when it does not, keep the first host's value and say so.
        rest = ~_covered(pols) & ((1 << 64) - 1)
        differ = 0
        for m in models[1:]:
            differ |= (m.values[name] ^ first) & rest
        if differ:
            reg = db.registers[name]
            bad = [f.name for f in reg.fields if f.mask & differ]
            if pols:
                value &= ~differ
                conflicts.append(f"{name}.{'/'.join(bad)}: hosts differ in bits the kernel does not describe "
                                 "(invisible to guests); cleared")
            else:
                conflicts.append(f"{name}.{'/'.join(bad)}: no kernel policy and the hosts differ; "
                                 f"kept {models[0].name}'s value")
        values[name] = value
    return Baseline(values, limited, conflicts)


def _kvm_baseline(models: list[Model], kernel: str | None) -> Baseline:
    from cpumodel.rules import Context
    from cpumodel.rules.vcpu import effective_features as _effective_features

    feats = frozenset.intersection(*(_effective_features(m, Context())[0] for m in models))
    views = []
    for m in models:
        values, _ = kvm_defaults(m, kernel, feats)
        views.append(Model(name=m.name, path=m.path, values=values, vcpu_features=feats))
    b = baseline(views, kernel, kvm=False)
    _agreeable(b, views, models, kernel, feats)
    guest = Model(name="baseline", path="<baseline>", values=b.values, vcpu_features=feats)
    seen: set[tuple[str, str]] = set()
    for host in models:
        for v in migratable(guest, host, kernel):
            if not v.ok and (v.register, v.field) not in seen:
                seen.add((v.register, v.field))
                b.conflicts.append(f"{v.register}.{v.field or '*'}: not accepted on {host.name} "
                                   f"({v.reason}); KVM cannot give all hosts one value")
    b.features = feats
    return b


def _agreeable(b: Baseline, views: list[Model], hosts: list[Model], kernel: str | None,
               feats: frozenset[str]) -> None:
    """For a register without a kernel safety policy on which the hosts' KVM views differ (CLIDR_EL1:
    KVM makes it up from each host's CTR_EL0), take the first host's value that KVM accepts on every
    host (set_clidr() accepts any CLIDR_EL1 that does not need an IDC the host lacks)."""
    from cpumodel.rules.kvm_writes import host_view, kernel_rules

    rules = kernel_rules(kernel)
    db = regdb.load()
    table = policies(str(rules.kernel))
    for name in list(b.values):
        candidates = list(dict.fromkeys(v.values[name] for v in views if name in v.values))
        if name in table or len(candidates) < 2 or name in IMP_ID_REGS:
            continue
        enc = db.registers[name].encoding
        for value in candidates:
            if all(host_view(h, rules, feats).check(enc, value).accepted for h in hosts):
                b.values[name] = value
                b.conflicts = [c for c in b.conflicts if not c.startswith(f"{name}.")]
                break


def kvm_defaults(host: Model, kernel: str | None, features: frozenset[str]) -> tuple[dict[str, int], list[str]]:
    """The ID register values KVM gives a new VM on ``host`` (what KVM_GET_ONE_REG returns
    before any write): the host's values through KVM's hiding and capping for ``features``.
    The host's facts count (``vulnerabilities``; CTR_EL0's effective IDC for ``origin: cpu``);
    fields it could not see (``unseen``) are not guessed: a default that needs them is left out."""
    from cpumodel import kvm as kvmmodel
    from cpumodel.rules.kvm_writes import kernel_names, kernel_rules

    rules = kernel_rules(kernel)
    db = regdb.load()
    host_values, unknown = host_facts(host, str(rules.kernel))
    kv, ku = kernel_names(rules, host_values), kernel_names(rules, unknown)
    caps = kvmmodel.host_caps_from_vulnerabilities(host.vulnerabilities)
    values: dict[str, int] = {}
    notes: list[str] = []
    for name in sorted(host.values, key=lambda n: db.registers[n].encoding):
        try:
            values[name] = kvmmodel.kvm_default(rules, db.registers[name].encoding, kv, features,  # type: ignore[arg-type]
                                                host_caps=caps, unknown=ku)
        except kvmmodel.HostDependent as e:
            notes.append(f"{name} left out: {e}")
        except KeyError as e:
            notes.append(f"{name} left out: {e.args[0] if e.args else e}")
    return values, notes


def host_facts(host: Model, kernel: str) -> tuple[dict[str, int], dict[str, int]]:
    """A host profile's register values as its kernel sanitises them (plus the raw fields of
    ``host_registers``), and register -> bits that are not known (``unseen`` fields; CTR_EL0.IDC
    when it depends on a CLIDR_EL1 not given)."""
    from cpumodel.policy import sanitise, unknown_bits

    cpu = host.value_origin == "cpu"
    values: dict[str, int] = {**sanitise(host.values, kernel, cpu=cpu), **host.host_fields}
    unknown = dict(host.unseen)
    for k, m in unknown_bits(host.values, cpu=cpu).items():
        unknown[k] = unknown.get(k, 0) | m
    return values, unknown


def hidden_host_fields(host: Model, kernel: str) -> dict[str, dict[str, int]]:
    """register -> {field: the host's sanitised value} for the fields KVM's defaults do not show
    (``host_registers`` of a ``cpumodel defaults`` output), where the host profile knows them."""
    from cpumodel import kvm as kvmmodel
    from cpumodel.rules.kvm_writes import kernel_rules

    rules = kernel_rules(kernel)
    db = regdb.load()
    values, unknown = host_facts(host, kernel)
    out: dict[str, dict[str, int]] = {}
    for name, v in values.items():
        if "." in name or name not in db.registers:
            continue
        reg = db.registers[name]
        for lname in kvmmodel.rewritten_fields(rules, reg.encoding):  # type: ignore[arg-type]
            f = reg.find_field(lname)
            if f is not None and not f.mask & unknown.get(name, 0):
                out.setdefault(name, {})[f.name] = f.get(v)
    return out


# ---------------------------------------------------------------------------------------------
# The engine behind the CLI's reporting commands: each returns data that report/ renders.


@dataclass
class GuestDefaults:
    """``cpumodel defaults``: KVM's default guest view of a host."""

    values: dict[str, int]
    notes: list[str]
    kernel: str  # the kernel line used
    features: frozenset[str]  # the vCPU features assumed
    hidden: dict[str, dict[str, int]]  # the raw host fields KVM rewrites (hidden_host_fields)


def guest_defaults(host: Model, kernel: str | None, vcpu: frozenset[str] | None) -> GuestDefaults:
    """``cpumodel defaults``: KVM's default guest view of ``host`` (values, notes, the kernel
    version used, the vCPU features: ``vcpu``, else those the host advertises, and the host fields
    KVM's view does not show)."""
    from cpumodel.rules import Context
    from cpumodel.rules.kvm_writes import kernel_rules
    from cpumodel.rules.vcpu import effective_features as _effective_features

    kern = str(getattr(kernel_rules(kernel), "kernel", kernel))
    feats, _ = _effective_features(host, Context(vcpu_features=vcpu))
    values, notes = kvm_defaults(host, kernel, feats)
    return GuestDefaults(values, notes, kern, feats, hidden_host_fields(host, kern))


def checked_baseline(models: list[Model], name: str, kernel: str | None,
                     target_impl: bool = False) -> tuple[Baseline, list, list]:  # type: ignore[type-arg]
    """``cpumodel baseline``: the baseline of ``models``, its architecture findings, and its identity
    findings on every host (I002-I005: boot-time choices of a guest with the pool's identity).
    ``target_impl``: the VMM offers the target-implementation hypercalls (6.15+; I005 then judges what
    the guest chooses with every host announced), as a guest's ``firmware: {VENDOR_HYP_BMAP_2: 0x3}``."""
    from cpumodel.check import Options, check_model
    from cpumodel.rules.identity import pool_findings

    b = baseline(models, kernel)
    probe = Model(name=name, path="<baseline>", values=dict(b.values))
    if target_impl:
        from cpumodel import identity
        from cpumodel.kvm import firmware

        regs = firmware.registers(identity.line_or_newest(kernel))
        if "VENDOR_HYP_BMAP_2" in regs:
            bits = regs["VENDOR_HYP_BMAP_2"]["bits"]
            probe.firmware = {"VENDOR_HYP_BMAP_2": sum(1 << bits[n] for n in firmware.TARGET_IMPL_BITS)}
            b.firmware = dict(probe.firmware)
    return b, check_model(probe, Options(kvm=False)), pool_findings(probe, models, kernel)


@dataclass
class Migration:
    """``diff --migratable A B``: the kernel whose rules judged, the per-field checks and the findings."""

    kernel: str
    fields: list[FieldCheck]
    findings: list  # type: ignore[type-arg]  # I002-I005 and F001 Findings

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.fields) and not any(f.severity == "error" for f in self.findings)


def migration(a: Model, b: Model, kernel: str | None) -> Migration:
    """``cpumodel diff --migratable``: per-field verdicts, and the identity findings (I002-I005) of what
    the guest chose at boot from A's identity, judged on B, and A's firmware pseudo-registers restored
    on B (F001)."""
    from cpumodel.rules.firmware import migration_findings
    from cpumodel.rules.identity import pool_findings
    from cpumodel.rules.kvm_writes import kernel_rules

    kern = str(kernel_rules(kernel).kernel)
    ident = pool_findings(a, [b], kernel, boot=a if a.role == "host" else None)
    return Migration(kern, migratable(a, b, kernel), ident + migration_findings(a, b, kernel))


def decode_spec(spec: str) -> tuple[regdb.Register, int | None]:
    """``cpumodel explain REGISTER[=VALUE]``: the register and the value (None without one)."""
    from cpumodel.errors import CpumodelError
    from cpumodel.yamlsrc import parse_int, shown

    name, _, raw = spec.partition("=")
    reg = regdb.load().get(name.strip())
    if not raw.strip():
        return reg, None
    value = parse_int(raw) if len(raw) < 200 else None
    if value is None or value < 0 or value >> 64:
        raise CpumodelError(f"{shown(raw.strip())} is not a 64-bit unsigned integer")
    return reg, value


def select_rules(pattern: str | None, kind: str | None = None) -> list:  # type: ignore[type-arg]
    """``cpumodel rules [PATTERN]``: the rules an ID, group prefix or glob names (as ``ignore:`` reads
    them), or all of ``kind``. An unknown ID is an error with a suggestion."""
    from cpumodel.errors import CpumodelError, suggest
    from cpumodel.rules import all_rules, matches

    rules = all_rules()
    if pattern is None:
        return [r for r in rules.values() if kind is None or r.kind == kind]
    exact = rules.get(pattern) or rules.get(pattern.upper())
    if exact is not None:
        return [exact]
    hits = [r for rid, r in rules.items() if matches(rid, [pattern]) and (kind is None or r.kind == kind)]
    if not hits:
        raise CpumodelError(f"no rule matches {pattern!r}", hint=suggest(pattern, list(rules)))
    return hits


KEY_FEATURES = ("FEAT_LSE", "FEAT_FP16", "FEAT_DotProd", "FEAT_SVE", "FEAT_SVE2", "FEAT_PAuth", "FEAT_BTI",
                "FEAT_MTE", "FEAT_BF16", "FEAT_I8MM", "FEAT_SHA3", "FEAT_SM4", "FEAT_RNG", "FEAT_SME", "FEAT_PMUv3")


def key_features(m: Model) -> list[str]:
    """The notable features a model has (``cpumodel list``), without the ``FEAT_`` prefix."""
    have = _features(m)
    return [f.removeprefix("FEAT_") for f in KEY_FEATURES if have.get(f) is True]


def highest_version(m: Model) -> str | None:
    """The highest architecture version whose mandatory features the model has."""
    from cpumodel.features import FeatureModel

    return FeatureModel.load().highest_version(m.field_values())


def catalog(resolver) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """``cpumodel list``: one row per profile of the search path (the first of each file name)."""
    from cpumodel.errors import CpumodelError

    rows: list[dict[str, object]] = []
    seen: set[str] = set()
    for d in resolver.paths:
        for p in sorted(d.glob("*.yaml")) if d.is_dir() else []:
            if p.stem in seen:
                continue
            seen.add(p.stem)
            try:
                m = resolver.resolve_file(str(p))
            except CpumodelError as e:
                rows.append({"name": p.stem, "path": str(p), "error": str(e)})
                continue
            rows.append({"name": m.name, "path": str(p), "arch": m.arch or highest_version(m),
                         "description": m.description, "features": key_features(m),
                         "base": m.chain[-1] if m.chain else None})
    return rows
