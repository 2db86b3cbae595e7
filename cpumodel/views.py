"""Tables for people: show, explain, rules, kernels (rendered with rich)."""

from __future__ import annotations

import json
import sys
from typing import Any

from cpumodel import regdb
from cpumodel.errors import CpumodelError, suggest
from cpumodel.resolve import Model


def _console() -> Any:
    from rich.console import Console

    from cpumodel.report import use_color

    return Console(no_color=not use_color(sys.stdout), highlight=False, soft_wrap=False,
                   width=None if sys.stdout.isatty() else 160)


def _feature_names(reg: str, field: str, value: int) -> str:
    try:
        from cpumodel.features import FeatureModel

        fm = FeatureModel.load()
    except (ImportError, OSError):
        return ""
    return ", ".join(fm.features_for_value(reg, field, value))


def _register_table(reg: regdb.Register, value: int | None, all_fields: bool = True) -> Any:
    from rich.table import Table

    title = f"{reg.name}  ({reg.sysreg_name}, KVM reg id {reg.onereg:#018x})"
    if value is not None:
        title += f" = {value:#018x}"
    t = Table(title=title, title_justify="left")
    t.add_column("bits", justify="right")
    t.add_column("field")
    if value is not None:
        t.add_column("value", justify="right")
        t.add_column("meaning")
        t.add_column("features")
    else:
        t.add_column("kind")
        t.add_column("defined values")
    for f in sorted(reg.fields, key=lambda f: -f.msb):
        bits = f"{f.msb}:{f.lsb}" if f.msb != f.lsb else str(f.msb)
        if value is None:
            kind = {"unsigned": "unsigned enum", "signed": "signed enum", "none": "enum"}.get(f.order, f.kind) \
                if f.kind == "enum" else f.kind
            vals = ", ".join(f"{k:#x} {v}" for k, v in sorted(f.values.items()))
            t.add_row(bits, f.name if f.kind in ("enum", "field") else f.kind.upper(), kind, vals)
            continue
        fv = f.get(value)
        if f.kind not in ("enum", "field"):
            if fv:
                t.add_row(bits, f.kind.upper(), f"{fv:#x}", "[red]reserved bits set[/red]", "")
            continue
        if not fv and not all_fields:
            continue
        meaning = f.values.get(fv, "" if f.kind == "field" else "[red]reserved value[/red]")
        if f.signed and fv >> (f.width - 1):
            meaning += f" ({f.as_signed(fv)})"
        t.add_row(bits, f.name, f"{fv:#x}", meaning, _feature_names(reg.name, f.name, fv))
    return t


def show_model(model: Model, all_fields: bool = False) -> None:
    console = _console()
    db = regdb.load()
    head = f"[bold]{model.name}[/bold]  ({model.path})"
    if model.chain:
        head += f"  base: {' -> '.join(model.chain)}"
    if model.arch:
        head += f"  arch: {model.arch}"
    console.print(head)
    if model.description:
        console.print(model.description)
    for name, value in sorted(model.values.items(), key=lambda kv: db.registers[kv[0]].encoding):
        console.print(_register_table(db.registers[name], value, all_fields))


def explain_register(spec: str) -> None:
    from cpumodel.yamlsrc import parse_int

    db = regdb.load()
    name, _, raw = spec.partition("=")
    reg = db.get(name.strip())
    value = None
    if raw.strip():
        value = parse_int(raw)
        if value is None or value < 0 or value >> 64:
            raise CpumodelError(f"{raw.strip()!r} is not a 64-bit unsigned integer")
    console = _console()
    console.print(_register_table(reg, value, all_fields=True))
    console.print(f"source: {reg.source}")


def list_rules(kind: str | None, fmt: str) -> None:
    from cpumodel.rules import all_rules

    rules = [r for r in all_rules().values() if kind is None or r.kind == kind]
    if fmt == "json":
        json.dump([{"id": r.id, "name": r.name, "kind": r.kind, "severity": r.severity, "summary": r.summary,
                    "source": r.source} for r in rules], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from rich.table import Table

    t = Table(title=f"{len(rules)} rules", title_justify="left")
    for col in ("id", "kind", "severity", "summary"):
        t.add_column(col)
    for r in rules:
        t.add_row(r.id, r.kind, r.severity, r.summary)
    _console().print(t)


def explain_rule(rule_id: str, fmt: str) -> None:
    from cpumodel.rules import all_rules

    rules = all_rules()
    r = rules.get(rule_id) or rules.get(rule_id.upper())
    if r is None:
        raise CpumodelError(f"unknown rule {rule_id!r}", hint=suggest(rule_id, list(rules)))
    if fmt == "json":
        json.dump({"id": r.id, "name": r.name, "kind": r.kind, "severity": r.severity, "summary": r.summary,
                   "source": r.source, "doc": r.doc}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    out = sys.stdout
    out.write(f"{r.id} ({r.name}) - {r.kind} rule, severity {r.severity}\n\n")
    out.write((r.doc or r.summary) + "\n\n")
    out.write(f"Source: {r.source}\n")
    out.write(f"Silence it with 'ignore: [{r.id}]' in a profile or '--ignore {r.id}'.\n")


def list_kernels() -> None:
    from cpumodel.rules import kvm

    for line in kvm.describe_kernels():
        sys.stdout.write(line + "\n")
