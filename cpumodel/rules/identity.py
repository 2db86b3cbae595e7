"""Identity rules (``I0xx``): what a guest does with the MIDR_EL1/REVIDR_EL1 it is given.

Since Linux 6.15 a VMM that enables ``KVM_CAP_ARM_WRITABLE_IMP_ID_REGS`` may write MIDR_EL1,
REVIDR_EL1 and AIDR_EL1. Software dispatches on them: JITs pick code paths by core, and the guest
kernel picks its errata workarounds (``cpu_errata.c``) and Spectre mitigations (``proton-pack.c``)
by MIDR/REVIDR ranges and lists. The kernel's tables are in ``cpumodel/data/errata/`` (see
``cpumodel.identity``); the rules below judge the identity against the model's own feature
registers (I001) and against the host CPU given with ``--host`` (I002-I004).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpumodel.findings import Finding
from cpumodel.resolve import SHIPPED, Model
from cpumodel.rules import Context, LazyModule, rule

if TYPE_CHECKING:
    from cpumodel import identity
else:
    identity = LazyModule("cpumodel.identity")  # the errata engine: only guests' identity rules use it

ERRATA = "arch/arm64/kernel/cpu_errata.c"
PROTON = "arch/arm64/kernel/proton-pack.c"
CPUTYPE = "arch/arm64/include/asm/cputype.h"
CPUFEATURE = "arch/arm64/kernel/cpufeature.c"


@cache
def _reference_index() -> dict[int, str]:
    """MIDR model -> path of the shipped real-core profile (``role: host``) that sets it; read from the
    files' text (a profile is resolved only when a guest names its core)."""
    import re

    out: dict[int, str] = {}
    for path in sorted(SHIPPED.glob("*.yaml")):
        text = path.read_text(errors="replace")
        m = re.search(r"^  MIDR_EL1:\s*(0x[0-9a-fA-F]+)\s*$", text, re.M)
        if m and re.search(r"^role:\s*host\s*$", text, re.M):
            out.setdefault(int(m.group(1), 16) & identity.MODEL_MASK, str(path))
    return out


@cache
def _reference(path: str) -> Model | None:
    from cpumodel.errors import CpumodelError
    from cpumodel.resolve import Resolver

    try:
        m = Resolver([]).resolve_file(path)
    except CpumodelError:
        return None
    return m if m.role == "host" and "MIDR_EL1" in m.values else None


def reference_core(midr: int) -> Model | None:
    """The shipped real-core profile whose MIDR names the same core as ``midr`` (implementer/part)."""
    path = _reference_index().get(midr & identity.MODEL_MASK)
    return _reference(path) if path else None


@cache
def visible_fields(kernel: str | None) -> dict[str, list[tuple[str, str]]]:
    """register -> [(field, source)] of the fields cpufeature.c marks FTR_VISIBLE: the ones Linux
    shows to user space (MRS emulation, HWCAPs), i.e. what software keyed on a CPU also uses."""
    from cpumodel import kvm as kvmmodel

    try:
        krules = kvmmodel.load_kernel(kernel or kvmmodel.kernels()[-1])
    except KeyError:
        return {}
    out: dict[str, list[tuple[str, str]]] = {}
    for name in krules.registers:
        rr = krules.lookup(name)
        for f in (rr.raw.get("fields") or []) if rr is not None else []:
            if f.get("visible"):
                out.setdefault(name, []).append((f["name"], f.get("source", "")))
    return out


@lru_cache(maxsize=4096)
def _feature_names(reg: str, fld: str, value: int) -> frozenset[str]:
    from cpumodel.features import FeatureModel

    return frozenset(FeatureModel.load().features_for_value(reg, fld, value))


@rule("I001", "midr-contradicts-features", kind="identity", severity="warning",
      source=f"Linux {CPUTYPE} (MIDR_* constants); the shipped real-core profiles; FTR_VISIBLE fields of "
             f"{CPUFEATURE}; firecracker-microvm/firecracker PR 6116 (SIGILL in JITs keyed on the MIDR)")
def midr_contradicts_features(model: Model, ctx: Context) -> Iterator[Finding]:
    """The MIDR names a known core whose user-visible features the model hides or exceeds.

    Software that dispatches on MIDR_EL1 instead of the feature registers (JITs, tuned libraries,
    the guest kernel's own errata code) assumes the named core's features. Firecracker enabled
    KVM_CAP_ARM_WRITABLE_IMP_ID_REGS in 2026 after guests saw the host's MIDR while KVM hid SVE:
    JITs keyed on Graviton's MIDR executed SVE and died with SIGILL. Features raised beyond the
    named core mislead the other way (code tuned for that core never uses them, or a guest
    kernel applies that core's errata to a CPU it does not describe).

    The core comes from Linux ``cputype.h``; its features from the shipped real-core profile
    with that MIDR; the fields compared are those ``cpufeature.c`` marks ``FTR_VISIBLE`` (what
    Linux shows user space). Either give the guest a MIDR that matches its features (a
    KVM_CAP_ARM_WRITABLE_IMP_ID_REGS VMM can), or keep the features of the core it names.

    Bad:  ``base: neoverse-v1-kvm7.3`` with ``ID_AA64PFR0_EL1: {SVE: 0}`` (MIDR still says V1)
    Good: the same with an N1 MIDR and N1 features, or SVE kept
    """
    midr = model.values.get("MIDR_EL1")
    if midr is None:
        return
    ref = reference_core(midr)
    if ref is None or ref.path == model.path:
        return
    line = identity.line_or_newest(ctx.kernel)
    core = identity.core_label(line, midr)
    hidden, raised, fields_src = _differences(model, ref, ctx.kernel)
    if not hidden and not raised:
        return
    msg = f"MIDR_EL1 {midr:#x} names {core} ({ref.name}), but the model "
    msg += f"hides {_headline(hidden)}" if hidden else f"raises {_headline(raised)} beyond that core"
    why = []
    if hidden:
        why.append("hidden: " + "; ".join(hidden) + ". Software keyed on the MIDR will use them anyway")
    if raised:
        why.append("raised beyond the named core: " + "; ".join(raised))
    yield Finding("I001", "warning", msg, register="MIDR_EL1", asked=midr, why=". ".join(why),
                  allowed=f"the features of {ref.name}, or a MIDR naming a core with these features",
                  location=model.where("MIDR_EL1"),
                  source=f"{_core_source(line, midr)}; profiles/{Path(ref.path).name}; {fields_src[0]}")


#: _differences' answers: (reference profile, kernel, the model's values of the registers compared) ->
#: (hidden, raised, sources). A fleet's guests share a core and most values; bounded, cleared when full.
_DIFFERENCES: dict[tuple[object, ...], tuple[list[str], list[str], list[str]]] = {}


def _differences(model: Model, ref: Model, kernel: str | None) -> tuple[list[str], list[str], list[str]]:
    """The visible fields in which ``model`` hides (below) or raises (above) the reference core's
    values, as texts, and the source of each field compared that differs."""
    visible = visible_fields(kernel)
    key = (ref.path, ref.name, kernel, tuple(model.values.get(reg) for reg in visible))
    hit = _DIFFERENCES.get(key)
    if hit is not None:
        return list(hit[0]), list(hit[1]), list(hit[2])
    hidden: list[str] = []
    raised: list[str] = []
    fields_src: list[str] = []
    gf, rf = model.field_values(), ref.field_values()
    from cpumodel import regdb

    db = regdb.load()
    for reg, flds in visible.items():
        if reg not in model.values or reg not in ref.values or reg not in db:
            continue
        for name, src in flds:
            g, c = gf.get((reg, name)), rf.get((reg, name))
            if g is None or c is None or g == c:
                continue
            f = db.registers[reg].find_field(name)
            gs, cs = (f.as_signed(g), f.as_signed(c)) if f is not None and f.signed else (g, c)
            feats = _feature_names(reg, name, max(g, c, key=lambda v: f.as_signed(v) if f and f.signed else v))
            feats -= _feature_names(reg, name, min(g, c, key=lambda v: f.as_signed(v) if f and f.signed else v))
            label = f"{name} ({', '.join(sorted(feats))})" if feats else name
            text = f"{label}: {reg}.{name}={g:#x}, {ref.name} has {c:#x}"
            (hidden if gs < cs else raised).append(text)
            fields_src.append(src)
    if len(_DIFFERENCES) >= 1024:
        _DIFFERENCES.clear()
    _DIFFERENCES[key] = (list(hidden), list(raised), list(fields_src))
    return hidden, raised, fields_src


def _headline(items: list[str], n: int = 8) -> str:
    names = list(dict.fromkeys(t.split(":")[0] for t in items))
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _core_source(line: str, midr: int) -> str:
    data = identity.load(line)
    core = identity.core_of(data, midr)
    return str(data["cores"][core]["source"]) if core else CPUTYPE


def _comparison(model: Model, ctx: Context) -> identity.HostComparison | None:
    host = ctx.host
    if host is None or "MIDR_EL1" not in model.values or "MIDR_EL1" not in host.values:
        return None
    line = identity.line_or_newest(ctx.kernel)
    boot = None
    if "identity.comparison" in ctx.memo:
        cached: identity.HostComparison | None = ctx.memo["identity.comparison"]
        return cached
    bm = ctx.memo.get("identity.boot_host")
    if bm is not None and "MIDR_EL1" in bm.values:
        bd = identity.host_decision(bm.values, bm.field_values(), line, bm.vulnerabilities)
        boot = bd.spectre if bd else None
    c = identity.compare(line, model.values, model.field_values(), host.values, host.field_values(), boot=boot,
                         host_vulns=host.vulnerabilities)
    ctx.memo["identity.comparison"] = None if c is None or c.same_identity else c
    return ctx.memo["identity.comparison"]  # type: ignore[no-any-return]


def _ident(c: identity.HostComparison) -> tuple[str, str]:
    g, h = c.guest.impls[0], c.host.impls[0]
    line = c.guest.line
    return (f"{identity.core_label(line, g.midr)} {identity.rv(g.midr)}",
            f"{identity.core_label(line, h.midr)} {identity.rv(h.midr)}")


@rule("I002", "errata-differ-from-host", kind="identity", severity="warning",
      source=f"Linux {ERRATA} arm64_errata[] (MIDR/REVIDR ranges) per kernel line")
def errata_differ(model: Model, ctx: Context) -> Iterator[Finding]:
    """The guest's MIDR/REVIDR differ from the host's, so its kernel applies other errata workarounds.

    The guest kernel selects workarounds by the MIDR/REVIDR it reads (``cpu_errata.c``), once,
    at boot. With another core's identity it misses the workarounds the host CPU needs (a
    warning: the host's errata are then unhandled inside the guest) and applies ones the host
    does not need (harmless but costly; reported as info). Needs ``--host``.

    Bad:  a Neoverse N1 identity on a Neoverse V1 host (misses nothing V1-specific only when the
    tables say so; see ``cpumodel errata``)
    Good: the host's own MIDR/REVIDR, or an identity whose errata the host shares
    """
    c = _comparison(model, ctx)
    if c is None or (not c.missed and not c.extra):
        return
    gname, hname = _ident(c)
    sev = "warning" if c.missed else "info"
    missed = ", ".join(f"{w.label} ({w.capability})" for w in c.missed)
    msg = (f"guest identity {gname} on host {hname}: the guest kernel misses the host's errata workaround(s) {missed}"
           if c.missed else f"guest identity {gname} on host {hname}: the guest kernel applies errata workarounds "
           "the host does not need")
    yield Finding("I002", sev, msg, register="MIDR_EL1", asked=model.values["MIDR_EL1"],
                  why=f"Linux {c.guest.kernel_full}: {c.errata_summary()}",
                  location=model.where("MIDR_EL1"), kernel=c.guest.line,
                  source="; ".join(w.source for w in (c.missed + c.extra)[:3]))


@rule("I003", "spectre-bhb-weaker-than-host", kind="identity", severity="error",
      source=f"Linux {PROTON} spectre_bhb_enable_mitigation(), spectre_bhb_loop_affected() per kernel line")
def bhb_weaker(model: Model, ctx: Context) -> Iterator[Finding]:
    """The guest chooses a weaker Spectre-BHB mitigation than the host CPU needs.

    The guest kernel picks its branch-history mitigation at boot from its identity and features
    (``proton-pack.c``): nothing when CSV2 == 3 or the core is on the safe list, ECBHB, the CLRBHB
    instruction, a loop of k iterations by MIDR list (A57/A72 8, A76/N1 24, N2/V1 32, ...), else
    the firmware call SMCCC_ARCH_WORKAROUND_3, which KVM answers from the host's own state. A
    guest that sees an N1 identity on a V1 host runs a 24-iteration loop where the hardware needs
    32; a guest migrated to such a host keeps the mitigation it chose at boot. Needs ``--host``.

    Bad:  an N1 MIDR on a V1 host (loop of 24; V1 needs 32)
    Good: the host's MIDR, or an identity whose loop is at least as long (or that uses the firmware call)
    """
    c = _comparison(model, ctx)
    if c is None or c.bhb is None:
        return
    gname, hname = _ident(c)
    g, h = c.guest.spectre["bhb"], c.host.spectre["bhb"]
    yield Finding("I003", "error", f"Spectre-BHB: guest identity {gname} on host {hname}: {c.bhb}",
                  register="MIDR_EL1", asked=model.values["MIDR_EL1"],
                  allowed=f"a mitigation at least as strong as {identity.bhb_name(h)}",
                  why=f"guest: {g.text} ({g.source}); host: {h.text} ({h.source}); errata: {c.errata_summary()}",
                  location=model.where("MIDR_EL1"), kernel=c.guest.line, source=f"{g.source}; {h.source}")


@rule("I004", "spectre-safe-list-identity", kind="identity", severity="error",
      source=f"Linux {PROTON} spectre_v2_safe_list[], spectre_v4_safe_list[] per kernel line")
def safe_list_identity(model: Model, ctx: Context) -> Iterator[Finding]:
    """The guest's identity puts it on a Spectre-v2 or -v4 safe list that the host CPU is not on.

    The guest kernel skips the Spectre-v2 branch-predictor hardening and the Spectre-v4 (SSB)
    mitigation when its MIDR is on ``spectre_v2_safe_list``/``spectre_v4_safe_list`` (Cortex-A35,
    A53, A55, ...). With such an identity on an affected host it runs unprotected. Needs ``--host``.

    Bad:  a Cortex-A55 MIDR on a Cortex-A72 host
    Good: the host's MIDR
    """
    c = _comparison(model, ctx)
    if c is None:
        return
    gname, hname = _ident(c)
    for variant, why in (("v2", c.v2), ("v4", c.v4)):
        if why is None:
            continue
        g, h = c.guest.spectre[variant], c.host.spectre[variant]
        yield Finding("I004", "error", f"Spectre-{variant}: guest identity {gname} on host {hname}: {why}",
                      register="MIDR_EL1", asked=model.values["MIDR_EL1"], why=f"guest: {g.source}; host: {h.text}",
                      location=model.where("MIDR_EL1"), kernel=c.guest.line, source=g.source)


@rule("I005", "target-implementations", kind="identity", severity="error",
      source=f"Linux {ERRATA} is_midr_in_range(), is_affected_midr_range() (6.15+: target implementations); "
             "include/linux/arm-smccc.h ARM_SMCCC_KVM_FUNC_DISCOVER_IMPL_CPUS")
def target_implementations(model: Model, ctx: Context) -> Iterator[Finding]:
    """Across a migration pool, what the target-implementation hypercall makes the guest choose.

    Since 6.15 a guest may ask (vendor hypercall ARM_SMCCC_KVM_FUNC_DISCOVER_IMPL_CPUS) for every
    implementation it may run on, when the VMM offers it: the guest's ``firmware:`` sets
    KVM_REG_ARM_VENDOR_HYP_BMAP_2 bits DISCOVER_IMPL_VER/_CPUS (and keeps VENDOR_HYP_BMAP's FUNC_FEAT),
    and the VMM forwards the calls with the SMCCC filter and answers them (KVM itself answers
    NOT_SUPPORTED: ``cpumodel.kvm.firmware.target_impl``, recorded in tests/oracle/firmware/).
    Without the bits the guest matches only its own identity and I005 says nothing. With them,
    ``cpu_errata.c`` matches every MIDR list against all of them: the union of
    the errata, the longest BHB loop - and, because ``is_midr_in_range_list()`` answers "any",
    a single core on a Spectre safe list makes the guest believe the whole pool is unaffected.
    On 6.17-7.1, ``is_affected_midr_range()`` also passes each implementation's MIDR where its
    REVIDR belongs. Reported by ``cpumodel baseline --target-impl`` for the pool's hosts
    (``cpumodel errata --target-impl`` shows the decisions).

    Bad:  a pool of Cortex-A55 and Neoverse N1 hosts announced as target implementations
          (``firmware: {VENDOR_HYP_BMAP_2: 0x3}``, ``baseline --target-impl``)
    Good: pools whose cores share the safe-list status
    """
    return iter(())


def pool_findings(guest: Model, hosts: list[Model], kernel: str | None, boot: Model | None = None) -> list[Finding]:
    """I002-I004 for a guest model against every host of a pool (a ``diff --migratable`` target or a
    ``baseline``'s hosts), and I005: what the target-implementation hypercall changes, on kernels
    that have it. ``boot``: the host the guest booted on (its firmware answers), when known. A guest
    without MIDR_EL1 sees its boot host's own identity and keeps what it chose from it after a
    migration, so each host is then judged as the boot host of a guest running on every other."""
    out: list[Finding] = []
    if "MIDR_EL1" in guest.values:
        pairs = [(guest, boot, h, f"[host {h.name}] ") for h in hosts]
    else:
        pairs = []
        for b in hosts:
            if "MIDR_EL1" not in b.values:
                continue
            g = Model(name=guest.name, path=guest.path, values={**guest.values, "MIDR_EL1": b.values["MIDR_EL1"],
                                                                 "REVIDR_EL1": b.values.get("REVIDR_EL1", 0)})
            pairs += [(g, b, h, f"[booted on {b.name}, runs on {h.name}] ") for h in hosts if h is not b]
    for g, bt, h, prefix in pairs:
        ctx = Context(kernel=kernel, host=h, memo={"identity.boot_host": bt} if bt is not None else {})
        for fn in (errata_differ, bhb_weaker, safe_list_identity):
            for f in fn(g, ctx):
                f.message = prefix + f.message
                out.append(f)
    out += _target_impl_findings(guest, hosts, kernel)
    return out


def _target_impl_findings(guest: Model, hosts: list[Model], kernel: str | None) -> list[Finding]:
    line = identity.line_or_newest(kernel)
    data: dict[str, Any] = identity.load(line)
    ti = data["target_impl"]
    hs = [h for h in hosts if "MIDR_EL1" in h.values]
    if not ti.get("supported") or len(hs) < 2:
        return []
    from cpumodel.kvm import firmware

    offered = firmware.target_impl(line, guest.firmware)
    if not offered.enabled:  # the VMM does not offer the calls: the guest matches its own identity only
        return []
    impls = [identity.Impl(h.values["MIDR_EL1"], h.values.get("REVIDR_EL1", 0)) for h in hs]
    out: list[Finding] = []
    for h in hs:
        hd = identity.host_decision(h.values, h.field_values(), line, h.vulnerabilities)
        gd = identity.of_model(guest.values, guest.field_values(), line, hd.spectre if hd else None, impls)
        if hd is None or gd is None:
            continue
        problems = []
        bhb = identity.bhb_weaker(gd.spectre["bhb"], hd.spectre["bhb"])
        if bhb:
            problems.append(f"Spectre-BHB: {bhb}")
        for v in ("v2", "v4"):
            w = identity.safe_list_weaker(gd.spectre[v], hd.spectre[v])
            if w:
                problems.append(f"Spectre-{v}: {w}")
        hsel = {(w.capability, tuple(w.errata)) for w in hd.selected()}
        gsel = {(w.capability, tuple(w.errata)) for w in gd.selected()}
        missed = [f"{', '.join(e) or c} ({c})" for c, e in sorted(hsel - gsel)]
        severity = "error" if problems else "warning"  # a weaker mitigation is an error, missed errata a warning
        if missed:
            problems.append(f"misses errata {', '.join(missed)}")
        if problems:
            out.append(Finding(
                "I005", severity,
                f"[host {h.name}] with all {len(hs)} hosts announced as target implementations (Linux {line}): "
                + "; ".join(problems), register="MIDR_EL1", location=guest.where("MIDR_EL1"), kernel=line,
                why=f"the guest matches every list against all implementations ({ti['lists_union']})"
                + ("; this line passes each implementation's MIDR as its REVIDR" if ti.get("revidr_from") == "midr"
                   else ""),
                source=ti["errata_union"]))
    return out
