"""Text and JSON for ``cpumodel errata``: what a guest kernel selects from its CPU identity."""

from __future__ import annotations

import json
from typing import Any, TextIO

from cpumodel.identity import Decision, Workaround, kconfig, load, rv


def _kcfg(d: Decision, w: Workaround) -> str:
    names = [k for k in w.kconfig if "ERRATUM" in k or "WORKAROUND" in k] or w.kconfig
    parts = []
    for n in names[-1:]:
        k = kconfig(d.line, n)
        parts.append(f"{n} (Kconfig default {k['default']})" if k else n)
    return "; ".join(parts)


def to_dict(name: str, d: Decision) -> dict[str, Any]:
    return {
        "profile": name, "kernel": d.line, "kernel_full": d.kernel_full, "core": d.core,
        "implementations": [{"midr": f"{i.midr:#010x}", "revidr": f"{i.revidr:#x}", "variant_revision": rv(i.midr)}
                            for i in d.impls],
        "workarounds": [{"capability": w.capability, "errata": w.errata, "desc": w.desc, "selected": w.applies,
                         "why": w.why, "source": w.source, "entry_source": w.entry_source, "kconfig": w.kconfig}
                        for w in d.workarounds],
        "spectre": {k: {"kind": m.kind, "text": m.text, "source": m.source, **({"k": m.k} if m.k else {})}
                    for k, m in d.spectre.items()},
        "target_impl": d.target_impl,
    }


def render(name: str, d: Decision, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        json.dump(to_dict(name, d), out, indent=1)
        out.write("\n")
        return
    data = load(d.line)
    core_src = data["cores"][d.core]["source"] if d.core else "no MIDR_* constant in cputype.h"
    if len(d.impls) == 1:
        first = d.impls[0]
        out.write(f"{name}: MIDR_EL1 {first.midr:#010x} = {(d.core or 'unknown core').removeprefix('MIDR_')} "
                  f"{rv(first.midr)}, REVIDR_EL1 {first.revidr:#x}  ({core_src})\n")
    else:
        from cpumodel.identity import core_of

        out.write(f"{name}: target implementations announced by the hypercall (the guest matches against these, "
                  "not its own MIDR):\n")
        for i in d.impls:
            core = (core_of(data, i.midr) or "unknown core").removeprefix("MIDR_")
            out.write(f"  MIDR_EL1 {i.midr:#010x} = {core} {rv(i.midr)}, REVIDR_EL1 {i.revidr:#x}\n")
    out.write(f"guest kernel: Linux {d.line} (tables from {d.kernel_full})\n\n")
    sel = d.selected()
    out.write(f"workarounds selected ({len(sel)}):\n")
    for w in sel:
        out.write(f"  erratum {w.label:<18} {w.capability}: {w.desc}\n")
        out.write(f"      {w.why}; {w.source}; {_kcfg(d, w)}\n")
    if not sel:
        out.write("  none\n")
    rest = [w for w in d.workarounds if not w.applies]
    if rest:
        out.write(f"\nlisted for this core, not selected ({len(rest)}):\n")
        for w in rest:
            out.write(f"  erratum {w.label:<18} {w.capability}: {w.desc}\n")
            out.write(f"      {w.why}; {w.source}\n")
    out.write("\nSpectre mitigations:\n")
    for key, label in (("v2", "Spectre-v2"), ("v4", "Spectre-v4"), ("bhb", "Spectre-BHB")):
        m = d.spectre[key]
        out.write(f"  {label:<12} {m.text}\n      {m.source}\n")
    ti = d.target_impl
    if ti.get("supported"):
        hc = ti["hypercalls"]["ARM_SMCCC_KVM_FUNC_DISCOVER_IMPL_CPUS"]["source"]
        out.write(f"\ntarget implementations: this kernel asks KVM for them (hypercall "
                  f"ARM_SMCCC_KVM_FUNC_DISCOVER_IMPL_CPUS, {hc}) "
                  f"and then matches every list against all of them ({ti['errata_union']})\n")
        if ti.get("revidr_from") == "midr":
            out.write("  note: this line passes each implementation's MIDR where its REVIDR belongs "
                      f"({ti['errata_union']}), so REVIDR-fixed parts are not recognised\n")
    else:
        out.write(f"\ntarget implementations: not supported by this line ({ti.get('why', '')})\n")
