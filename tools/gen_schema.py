"""Regenerate ``cpumodel/data/profile.schema.json``, the JSON Schema of cpumodel profiles.

Register and field names (with each field's named values) come from the register database,
so editors using yaml-language-server complete and validate them.
Usage: python -m tools.gen_schema
"""

from __future__ import annotations

import json
from pathlib import Path

from cpumodel import regdb
from cpumodel.kvm.firmware import NAMES as FIRMWARE_NAMES
from cpumodel.profile import KVM_CAPS, ORIGINS, ROLES, TOP_KEYS, VCPU_FEATURES, VULNERABILITIES

OUT = Path(__file__).resolve().parent.parent / "cpumodel" / "data" / "profile.schema.json"
INT_TEXT = r"^[+-]?(0[xX][0-9a-fA-F](_?[0-9a-fA-F])*|0[bB][01](_?[01])*|0[oO][0-7](_?[0-7])*|0|[1-9](_?[0-9])*)$"


def build() -> dict[str, object]:
    db = regdb.load()
    regs: dict[str, object] = {}
    for reg in db:
        fields: dict[str, object] = {}
        for f in reg.named_fields:
            lo = -(1 << (f.width - 1)) if f.signed else 0
            alts: list[object] = [{"type": "integer", "minimum": lo, "maximum": (1 << f.width) - 1},
                                  {"type": "string", "pattern": INT_TEXT}]
            if f.values:
                alts.append({"enum": sorted(set(f.values.values()))})
            fields[f.name] = {"description": f"{reg.name}[{f.msb}:{f.lsb}]", "anyOf": alts}
        regs[reg.name] = {
            "description": f"{reg.name} ({reg.sysreg_name}); raw 64-bit value or a mapping of fields",
            "anyOf": [{"type": "integer", "minimum": 0, "maximum": (1 << 64) - 1},
                      {"type": "string", "pattern": INT_TEXT},
                      {"type": "object", "properties": fields, "additionalProperties": False}],
        }
    from cpumodel import sysregs

    # accepted in registers: (not host_registers:) and ignored (rule P004): a real dump's other registers
    system = {n: {"$ref": "#/$defs/system_register"} for n in sysregs.names() if db.canonical(n) is None}
    names = {"type": "array", "items": {"type": "string"}}
    props: dict[str, object] = {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "source": {"type": "string", "description": "Where the values come from (document, file:line)."},
        "role": {"enum": list(ROLES),
                 "description": "guest (default): a model a VMM writes with KVM_SET_ONE_REG, all rules apply; "
                                "host: a physical CPU as its kernel sees it, architecture rules only."},
        "base": {"type": "string", "description": "A profile name or a path relative to this file."},
        "arch": {"type": "string", "description": "Architecture version asserted: v8Ap0..v9Ap6 or armv8.2-a."},
        "registers": {"type": ["object", "null"], "properties": {**regs, **system}, "additionalProperties": False},
        "features": {"type": ["array", "null"],
                     "items": {"type": "string", "pattern": r"^[+-]?\s*[A-Za-z0-9_]+$"}},
        "vcpu_features": {"type": ["array", "null"], "items": {"enum": list(VCPU_FEATURES)}},
        "kvm_caps": {"type": ["array", "null"], "items": {"enum": list(KVM_CAPS)},
                     "description": "VM capabilities the VMM enables with KVM_ENABLE_CAP."},
        "origin": {"enum": list(ORIGINS),
                   "description": "cpu (default for role: host): a CPU's registers as its kernel sanitises them; "
                                  "kvm-defaults: KVM's view of a VM on that host."},
        "vulnerabilities": {"type": "object", "additionalProperties": False,
                            "properties": {v: {"type": "string"} for v in VULNERABILITIES},
                            "description": "Host facts as /sys/devices/system/cpu/vulnerabilities/<name> "
                                           "reports them."},
        "host_registers": {"type": "object", "properties": {k: {"type": "object", "properties":
                                                                 v["anyOf"][2]["properties"],  # type: ignore[index]
                                                                 "additionalProperties": False}
                                                             for k, v in regs.items()},
                           "additionalProperties": False,
                           "description": "origin: kvm-defaults: raw host fields KVM hides from its view."},
        "unseen": {"anyOf": [{"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
                             {"const": "el0-mrs"}],
                   "description": "Fields the capture could not see (unknown, not 0), by register; or el0-mrs: every "
                                  "field Linux's EL0 MRS emulation hides."},
        "ignore": names,
        "sources": {"type": "object", "additionalProperties": {"type": "string"}},
        "firmware": {"type": "object", "additionalProperties": False,
                     "properties": {n: {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}]}
                                    for n in FIRMWARE_NAMES},
                     "description": "KVM firmware pseudo-registers the VMM restores (Documentation/virt/kvm/arm/"
                                    "fw-pseudo-registers.rst): PSCI version, SMCCC_ARCH_WORKAROUND_1/2/3 levels, "
                                    "hypercall bitmaps."},
        "kernel_release": {"type": "string",
                           "description": "The host's kernel release (uname -r), recorded by cpumodel capture; "
                                          "--kernel host (or no --kernel) picks that kernel's KVM rule set."},
    }
    assert set(props) == set(TOP_KEYS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://cpumodel.invalid/profile.schema.json",
        "title": "cpumodel CPU-model profile",
        "description": f"Generated by tools/gen_schema.py from the register database (Linux {db.kernel} sysreg).",
        "type": "object",
        "$defs": {"system_register": {
            "description": "A system register outside the CPU model (cpumodel/sysregs.py): accepted as a "
                           "dump gives it, one 64-bit value, and ignored (rule P004).",
            "anyOf": [{"type": "integer", "minimum": 0, "maximum": (1 << 64) - 1},
                      {"type": "string", "pattern": INT_TEXT}]}},
        "properties": props,
        "additionalProperties": False,
    }


def main() -> None:
    OUT.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
