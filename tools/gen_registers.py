"""Regenerate ``cpumodel/data/registers.json`` from Linux's ``arch/arm64/tools/sysreg``.

Usage: python -m tools.gen_registers /path/to/linux [-o cpumodel/data/registers.json]

Takes every register in the ID space (op0=3, op1=0, CRn=0, CRm=1..7) plus CTR_EL0,
CLIDR_EL1 and DCZID_EL0 from the sysreg table, and MIDR_EL1, REVIDR_EL1, AIDR_EL1 from
``tools/registers_overlay.json`` (which names its sources). The kernel version is read
from the tree's top-level Makefile and recorded in the output.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from cpumodel.kvm.sysreg import SrField, parse_file

EXTRA = ("CTR_EL0", "CLIDR_EL1", "DCZID_EL0")
HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "cpumodel" / "data" / "registers.json"


def kernel_version(tree: Path) -> str:
    text = (tree / "Makefile").read_text()
    parts = [re.search(rf"^{k} = (\S*)", text, re.M) for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL")]
    return ".".join(m.group(1) for m in parts if m and m.group(1))


def _field(f: SrField) -> dict[str, object]:
    out: dict[str, object] = {"kind": f.kind, "msb": f.msb, "lsb": f.lsb, "line": f.line}
    if f.kind in ("field", "enum"):
        out["name"] = f.name
    if f.kind == "enum":
        out["order"] = {"SignedEnum": "signed", "UnsignedEnum": "unsigned"}.get(f.enum_kind, "none")
        out["values"] = {str(k): v for k, v in sorted(f.values.items())}
    return out


def _patch(reg: dict, new: dict) -> None:  # type: ignore[type-arg]
    """Carve a field out of the RES0 range that covers it."""
    for i, f in enumerate(reg["fields"]):
        if f["kind"] == "res0" and f["msb"] >= new["msb"] and f["lsb"] <= new["lsb"]:
            parts = []
            if f["msb"] > new["msb"]:
                parts.append({**f, "lsb": new["msb"] + 1})
            parts.append(new)
            if f["lsb"] < new["lsb"]:
                parts.append({**f, "msb": new["lsb"] - 1})
            reg["fields"][i:i + 1] = parts
            return
    raise SystemExit(f"patch {new['name']}: bits {new['msb']}:{new['lsb']} are not RES0 in sysreg")


def build(tree: Path) -> dict[str, object]:
    regs = parse_file(tree / "arch/arm64/tools/sysreg")
    version = kernel_version(tree)
    chosen: dict[str, dict[str, object]] = {}
    for name, r in regs.items():
        enc = r.encoding
        if enc is None:
            continue
        in_id_space = enc[0] == 3 and enc[1] == 0 and enc[2] == 0 and 1 <= enc[3] <= 7
        if in_id_space or name in EXTRA:
            chosen[name] = {"enc": list(enc), "line": r.line,
                            "fields": [_field(f) for f in r.fields]}
    overlay = json.loads((HERE / "registers_overlay.json").read_text())
    for name, patches in overlay.get("_patches", {}).items():
        for patch in patches:
            _patch(chosen[name], patch)
    for qual, extra in overlay.get("_values", {}).items():
        rname, fname = qual.split(".")
        f = next(f for f in chosen[rname]["fields"] if f.get("name") == fname)  # type: ignore[union-attr]
        for k, v in extra.items():
            if k != "source":
                f["values"][k] = v  # type: ignore[index]
        f["values"] = dict(sorted(f["values"].items(), key=lambda kv: int(kv[0])))  # type: ignore[index]
        f["source"] = extra["source"]  # type: ignore[index]
    for name, spec in overlay.items():
        if name.startswith("_"):
            continue
        chosen[name] = spec
    ordered = dict(sorted(chosen.items(), key=lambda kv: tuple(kv[1]["enc"])))  # type: ignore[arg-type]
    return {
        "_source": {
            "file": "arch/arm64/tools/sysreg",
            "kernel": version,
            "note": "Register encodings, field layouts and enum values transcribed by "
                    "tools/gen_registers.py; registers absent from sysreg come from "
                    "tools/registers_overlay.json, each with its own 'source'.",
        },
        "registers": ordered,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("tree", type=Path, help="Linux source tree")
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args()
    data = build(args.tree)
    args.output.write_text(json.dumps(data, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {args.output}: {len(data['registers'])} registers from Linux {data['_source']['kernel']}")  # type: ignore[index]


if __name__ == "__main__":
    main()
