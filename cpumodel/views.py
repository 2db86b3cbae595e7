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
    else:
        head += f"  (highest architecture version satisfied: {_highest(model) or 'none'})"
    console.print(head)
    if model.description:
        console.print(model.description)
    for name, value in sorted(model.values.items(), key=lambda kv: db.registers[kv[0]].encoding):
        console.print(_register_table(db.registers[name], value, all_fields))


def explain_register(spec: str) -> None:
    from cpumodel.yamlsrc import parse_int, shown

    db = regdb.load()
    name, _, raw = spec.partition("=")
    reg = db.get(name.strip())
    value = None
    if raw.strip():
        value = parse_int(raw) if len(raw) < 200 else None
        if value is None or value < 0 or value >> 64:
            raise CpumodelError(f"{shown(raw.strip())} is not a 64-bit unsigned integer")
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
    from cpumodel.rules import kvm_writes as kvm

    for line in kvm.describe_kernels():
        sys.stdout.write(line + "\n")


def _val(v: int | None, name: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:#x}" + (f" ({name})" if name else "")


def show_diff(a: Model, b: Model, fmt: str) -> bool:
    from cpumodel.ops import diff

    d = diff(a, b)
    if fmt == "json":
        json.dump({"a": a.path, "b": b.path, "equal": d.equal,
                   "fields": [{"register": f.register, "field": f.field or None, "a": f.a, "b": f.b,
                               "a_name": f.a_name or None, "b_name": f.b_name or None} for f in d.fields],
                   "features_gained": d.gained, "features_lost": d.lost}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return d.equal
    console = _console()
    if d.equal:
        console.print(f"{a.name} and {b.name} are identical")
        return True
    from rich.table import Table

    t = Table(title=f"{a.name} (A) vs {b.name} (B)", title_justify="left")
    for col in ("register", "field", "A", "B"):
        t.add_column(col)
    for f in d.fields:
        t.add_row(f.register, f.field or "(whole register)", _val(f.a, f.a_name), _val(f.b, f.b_name))
    console.print(t)
    if d.lost:
        console.print(f"[red]features only in A ({len(d.lost)}):[/red] {', '.join(d.lost)}")
    if d.gained:
        console.print(f"[green]features only in B ({len(d.gained)}):[/green] {', '.join(d.gained)}")
    return False


def show_migration(a: Model, b: Model, kernel: str | None, fmt: str) -> bool:
    from cpumodel.ops import migratable
    from cpumodel.policy import newest_kernel
    from cpumodel.rules.identity import pool_findings

    verdicts = migratable(a, b, kernel)
    ok = all(v.ok for v in verdicts)
    kern = kernel or newest_kernel()
    # what the guest chose at boot from A's identity, judged on B (I002-I005)
    ident = pool_findings(a, [b], kernel, boot=a if a.role == "host" else None)
    ident_ok = not any(f.severity == "error" for f in ident)
    if fmt == "json":
        json.dump({"a": a.path, "b": b.path, "kernel": kern, "migratable": ok and ident_ok,
                   "fields": [{"register": v.register, "field": v.field or None, "a": v.a, "b": v.b, "ok": v.ok,
                               "policy": v.policy, "reason": v.reason} for v in verdicts],
                   "identity": [f.to_dict() for f in ident]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return ok and ident_ok
    from rich.table import Table

    bad = [v for v in verdicts if not v.ok]
    console = _console()
    if bad:
        t = Table(title=f"{a.name} -> {b.name}: {len(bad)} field(s) block migration (kernel {kern} policies)",
                  title_justify="left")
        for col in ("register", "field", "guest (A)", "target (B)", "policy", "why"):
            t.add_column(col)
        for v in bad:
            t.add_row(v.register, v.field or "-", _val(v.a), _val(v.b), v.policy, v.reason)
        console.print(t)
    if ident:
        from cpumodel.report import render

        sys.stdout.flush()
        render(ident, "text", profiles=1, stream=sys.stdout)
    checked = len(verdicts)
    verdict = "[green]migratable[/green]" if ok else "[red]NOT migratable[/red]"
    console.print(f"{a.name} -> {b.name}: {verdict} ({checked} fields checked, {len(bad)} blocking)")
    if not ident_ok:
        console.print(f"{a.name} -> {b.name}: [red]the guest's boot-time mitigations fall short on {b.name}[/red] "
                      "(identity findings above)")
    return ok and ident_ok


def make_baseline(models: list[Model], name: str, kernel: str | None) -> tuple[str, list[Any]]:
    from cpumodel.check import Options, check_model
    from cpumodel.ops import baseline
    from cpumodel.report.profiles import baseline_yaml
    from cpumodel.resolve import Model as M

    b = baseline(models, kernel)
    text = baseline_yaml(b, models, name)
    probe = M(name=name, path="<baseline>", values=dict(b.values))
    findings = check_model(probe, Options(kvm=False))
    if findings:
        text += "".join(f"# architecture finding: {f.rule}: {f.message}\n" for f in findings)
    from cpumodel.rules.identity import pool_findings

    ident = pool_findings(probe, models, kernel)  # the pool's identity (I002-I005) on every host
    if ident:
        text += "".join(f"# identity finding: {f.rule}: {f.message}\n" for f in ident)
    return text, findings + [f for f in ident if f.severity != "info"]


def list_profiles(search: list[str], fmt: str, allow_outside: bool = False) -> None:
    from cpumodel.resolve import Resolver

    resolver = Resolver(search, allow_outside)
    rows = []
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
            feats = _key_features(m)
            level = m.arch or _highest(m)
            rows.append({"name": m.name, "path": str(p), "arch": level, "description": m.description,
                         "features": feats, "base": m.chain[-1] if m.chain else None})
    if fmt == "json":
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from rich.table import Table

    t = Table(title=f"{len(rows)} profiles", title_justify="left")
    for col in ("name", "arch", "key features", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], r.get("arch") or "?", ", ".join(r.get("features", [])),
                  r.get("error") or r.get("description", ""))
    _console().print(t)


KEY_FEATURES = ("FEAT_LSE", "FEAT_FP16", "FEAT_DotProd", "FEAT_SVE", "FEAT_SVE2", "FEAT_PAuth", "FEAT_BTI",
                "FEAT_MTE", "FEAT_BF16", "FEAT_I8MM", "FEAT_SHA3", "FEAT_SM4", "FEAT_RNG", "FEAT_SME", "FEAT_PMUv3")


def _key_features(m: Model) -> list[str]:
    from cpumodel.features import FeatureModel

    have = FeatureModel.load().features_of(m.field_values())
    return [f.removeprefix("FEAT_") for f in KEY_FEATURES if have.get(f) is True]


def _highest(m: Model) -> str | None:
    from cpumodel.features import FeatureModel

    return FeatureModel.load().highest_version(m.field_values())


def show_verify(model: Model, report: Any, fmt: str) -> None:
    if fmt == "json":
        json.dump({"profile": model.path, "kernel": report.kernel, "cpu": report.cpu, "features": report.features,
                   "init_errno": report.init_errno, "ok": report.ok, "skipped": report.skipped,
                   "boot_seconds": report.boot_seconds,
                   "registers": [{"register": r.register, "value": f"{r.value:#018x}",
                                  "kvm_default": None if r.default is None else f"{r.default:#018x}",
                                  "errno": r.errno} for r in report.results]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    from rich.table import Table

    console = _console()
    console.print(f"real KVM: Linux {report.kernel} on QEMU -cpu {report.cpu}, vCPU features "
                  f"{'+'.join(report.features) or 'none'}; KVM_ARM_VCPU_INIT: {report.init_errno or 'ok'}")
    t = Table(title=f"{model.name}: KVM_SET_ONE_REG results", title_justify="left")
    for col in ("register", "asked", "KVM default", "result"):
        t.add_column(col)
    for r in report.results:
        res = "[green]accepted[/green]" if r.errno == 0 else f"[red]{r.errno}[/red]"
        t.add_row(r.register, f"{r.value:#018x}", "-" if r.default is None else f"{r.default:#018x}", res)
    console.print(t)
    if report.skipped:
        console.print(f"not written (KVM has no one-reg for them): {', '.join(report.skipped)}")
    bad = sum(1 for r in report.results if r.errno != 0)
    console.print(f"{len(report.results) - bad} accepted, {bad} refused")
