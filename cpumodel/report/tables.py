"""Tables and documents for people and scripts: show, explain, rules, kernels, list, diff,
migration, kernel upgrades, verify (rich tables, or JSON with ``fmt="json"``).

Each function renders results the engine computed (``ops``, ``rules``, ``verify``); none reads a
profile or runs a check. Text from profiles (names, descriptions, paths) goes into cells as
``rich.text.Text`` through ``escape.one_line``: never read as rich markup, no control character
reaches the terminal. Colour only on a terminal without ``NO_COLOR``; otherwise no escape
sequence at all.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from cpumodel import regdb
from cpumodel.escape import one_line
from cpumodel.resolve import Model


def _console() -> Any:
    from rich.console import Console

    from cpumodel.report import use_color

    color = use_color(sys.stdout)
    return Console(no_color=not color, color_system="auto" if color else None, highlight=False, soft_wrap=False,
                   width=None if sys.stdout.isatty() else 160)


def _t(text: object, style: str = "") -> Any:
    """A table cell or line: the text as it is (no markup), escaped to one printable line."""
    from rich.text import Text

    return Text(one_line(str(text)), style=style)


def _json(doc: object) -> None:
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _table(title: str, columns: tuple[str, ...], **kw: Any) -> Any:
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(one_line(title), no_wrap=True, overflow="ignore"), title_justify="left", **kw)
    for col in columns:
        t.add_column(col, justify="right" if col in ("bits", "value") else "left")
    return t


def _feature_names(reg: str, field: str, value: int) -> str:
    try:
        from cpumodel.features import FeatureModel

        fm = FeatureModel.load()
    except (ImportError, OSError):
        return ""
    return ", ".join(fm.features_for_value(reg, field, value))


def _register_table(reg: regdb.Register, value: int | None, all_fields: bool = True) -> Any:
    title = f"{reg.name}  ({reg.sysreg_name}, KVM reg id {reg.onereg:#018x})"
    if value is not None:
        title += f" = {value:#018x}"
    cols = ("bits", "field", "value", "meaning", "features") if value is not None else \
        ("bits", "field", "kind", "defined values")
    t = _table(title, cols)
    for f in sorted(reg.fields, key=lambda f: -f.msb):
        bits = f"{f.msb}:{f.lsb}" if f.msb != f.lsb else str(f.msb)
        if value is None:
            kind = {"unsigned": "unsigned enum", "signed": "signed enum", "none": "enum"}.get(f.order, f.kind) \
                if f.kind == "enum" else f.kind
            vals = ", ".join(f"{k:#x} {v}" for k, v in sorted(f.values.items()))
            t.add_row(bits, _t(f.name if f.kind in ("enum", "field") else f.kind.upper()), _t(kind), _t(vals))
            continue
        fv = f.get(value)
        if f.kind not in ("enum", "field"):
            if fv:
                t.add_row(bits, f.kind.upper(), f"{fv:#x}", _t("reserved bits set", "red"), "")
            continue
        if not fv and not all_fields:
            continue
        meaning = _t(f.values.get(fv, "")) if fv in f.values or f.kind == "field" else _t("reserved value", "red")
        if f.signed and fv >> (f.width - 1):
            meaning.append(f" ({f.as_signed(fv)})")
        t.add_row(bits, _t(f.name), f"{fv:#x}", meaning, _t(_feature_names(reg.name, f.name, fv)))
    return t


def show_model(model: Model, highest: str | None, all_fields: bool = False) -> None:
    console = _console()
    db = regdb.load()
    head = _t(model.name, "bold")
    head.append(one_line(f"  ({model.path})"))
    if model.chain:
        head.append(one_line(f"  base: {' -> '.join(model.chain)}"))
    head.append(f"  arch: {model.arch}" if model.arch else
                f"  (highest architecture version satisfied: {highest or 'none'})")
    console.print(head)
    if model.description:
        console.print(_t(model.description))
    for name, value in sorted(model.values.items(), key=lambda kv: db.registers[kv[0]].encoding):
        console.print(_register_table(db.registers[name], value, all_fields))


def explain_register(reg: regdb.Register, value: int | None, all_fields: bool = False) -> None:
    console = _console()
    console.print(_register_table(reg, value, all_fields=all_fields or value is None))
    console.print(_t(f"source: {reg.source}"))


def _rule_doc(r: Any, doc: bool = False) -> dict[str, object]:
    out: dict[str, object] = {"id": r.id, "name": r.name, "kind": r.kind, "severity": r.severity,
                              "summary": r.summary, "source": r.source}
    if doc:
        out["doc"] = r.doc
    return out


def list_rules(rules: list[Any], fmt: str) -> None:
    if fmt == "json":
        _json([_rule_doc(r) for r in rules])
        return
    t = _table(f"{len(rules)} rules", ("id", "kind", "severity", "summary"))
    for r in rules:
        t.add_row(_t(r.id), _t(r.kind), _t(r.severity), _t(r.summary))
    _console().print(t)


def explain_rule(r: Any, fmt: str) -> None:
    if fmt == "json":
        _json(_rule_doc(r, doc=True))
        return
    out = sys.stdout
    out.write(f"{r.id} ({r.name}) - {r.kind} rule, severity {r.severity}\n\n")
    out.write((r.doc or r.summary) + "\n\n")
    out.write(f"Source: {r.source}\n")
    out.write(f"Silence it with 'ignore: [{r.id}]' in a profile or '--ignore {r.id}'.\n")


def list_kernels(lines: list[str]) -> None:
    for line in lines:
        sys.stdout.write(line + "\n")


def _val(v: int | None, name: str = "") -> str:
    if v is None:
        return "-"
    return f"{v:#x}" + (f" ({name})" if name else "")


def show_diff(a: Model, b: Model, d: Any, fmt: str) -> None:
    if fmt == "json":
        _json({"a": a.path, "b": b.path, "equal": d.equal,
               "fields": [{"register": f.register, "field": f.field or None, "a": f.a, "b": f.b,
                           "a_name": f.a_name or None, "b_name": f.b_name or None} for f in d.fields],
               "features_gained": d.gained, "features_lost": d.lost})
        return
    console = _console()
    if d.equal:
        console.print(_t(f"{a.name} and {b.name} are identical"))
        return
    t = _table(f"{a.name} (A) vs {b.name} (B)", ("register", "field", "A", "B"))
    for f in d.fields:
        t.add_row(f.register, f.field or "(whole register)", _t(_val(f.a, f.a_name)), _t(_val(f.b, f.b_name)))
    console.print(t)
    if d.lost:
        line = _t(f"features only in A ({len(d.lost)}):", "red")
        line.append(" " + ", ".join(d.lost))
        console.print(line)
    if d.gained:
        line = _t(f"features only in B ({len(d.gained)}):", "green")
        line.append(" " + ", ".join(d.gained))
        console.print(line)


def show_migration(a: Model, b: Model, verdicts: list[Any], kernel: str, fmt: str, ident: list[Any] = ()) -> None:
    """Per-field verdicts and the identity findings (what the guest chose at boot, judged on B)."""
    ok = all(v.ok for v in verdicts)
    ident_ok = not any(f.severity == "error" for f in ident)
    if fmt == "json":
        _json({"a": a.path, "b": b.path, "kernel": kernel, "migratable": ok and ident_ok,
               "fields": [{"register": v.register, "field": v.field or None, "a": v.a, "b": v.b, "ok": v.ok,
                           "policy": v.policy, "reason": v.reason} for v in verdicts],
               "identity": [f.to_dict() for f in ident]})
        return
    bad = [v for v in verdicts if not v.ok]
    console = _console()
    if bad:
        t = _table(f"{a.name} -> {b.name}: {len(bad)} field(s) block migration (kernel {kernel} policies)",
                   ("register", "field", "guest (A)", "target (B)", "policy", "why"))
        for v in bad:
            t.add_row(v.register, _t(v.field or "-"), _val(v.a), _val(v.b), _t(v.policy), _t(v.reason))
        console.print(t)
    if ident:
        from cpumodel.report import render

        sys.stdout.flush()
        render(ident, "text", profiles=1, stream=sys.stdout)
    line = _t(f"{a.name} -> {b.name}: ")
    line.append("migratable" if ok else "NOT migratable", "green" if ok else "red")
    line.append(f" ({len(verdicts)} fields checked, {len(bad)} blocking)")
    console.print(line)
    if not ident_ok:
        line = _t(f"{a.name} -> {b.name}: ")
        line.append(one_line(f"the guest's boot-time mitigations fall short on {b.name}"), "red")
        line.append(" (identity findings above)")
        console.print(line)


def show_upgrade(up: Any, fmt: str) -> None:
    """``diff --to-kernel``: the default-view changes and the restore verdicts of a kernel upgrade
    (``cpumodel.upgrade.Upgrade``), as text or JSON."""
    if fmt == "json":
        _json(up.to_json())
        return
    lines = [f"Host {up.host}: kernel {up.old} -> {up.new}, vCPU features: {', '.join(sorted(up.features)) or 'none'}"]
    lines.append("KVM's default guest view:" if up.changes else "KVM's default guest view: unchanged")
    for c in up.changes:
        if not c.field:
            where = "only under the new kernel" if c.old is None else "gone under the new kernel"
            lines.append(f"  {c.register}: {where}")
        else:
            lines.append(f"  {c.register}.{c.field}: {c.old:#x} -> {c.new:#x}")
    bad = [r for r in up.restores if r.status != "accepted"]
    verdict = "every register accepted" if not bad else f"{len(bad)} of {len(up.restores)} registers not accepted"
    lines.append(f"Restoring a guest saved under {up.old} on {up.new}: {verdict}")
    for r in bad:
        what = r.errno or r.status.replace("_", " ")
        lines.append(f"  {r.reg}={r.value:#018x}: {what}: {r.reason}")
        if r.source:
            lines.append(f"      source: {r.source}")
    lines += [f"note: {n}" for n in up.notes]
    sys.stdout.write("\n".join(one_line(line) for line in lines) + "\n")  # names come from profiles

def list_profiles(rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        _json(rows)
        return
    t = _table(f"{len(rows)} profiles", ("name", "arch", "key features", "description"))
    for r in rows:
        t.add_row(_t(r["name"]), _t(r.get("arch") or "?"), _t(", ".join(r.get("features", []))),
                  _t(r.get("error") or r.get("description", "")))
    _console().print(t)


def show_verify(model: Model, report: Any, fmt: str) -> None:
    if fmt == "json":
        _json({"profile": model.path, "kernel": report.kernel, "cpu": report.cpu, "features": report.features,
               "init_errno": report.init_errno, "ok": report.ok, "skipped": report.skipped,
               "boot_seconds": report.boot_seconds,
               "registers": [{"register": r.register, "value": f"{r.value:#018x}",
                              "kvm_default": None if r.default is None else f"{r.default:#018x}",
                              "errno": r.errno, "predicted": r.predicted} for r in report.results],
               "rules": report.rules, "disagreements": len(report.disagreements)})
        return
    console = _console()
    console.print(_t(f"real KVM: Linux {report.kernel} on QEMU -cpu {report.cpu}, vCPU features "
                     f"{'+'.join(report.features) or 'none'}; KVM_ARM_VCPU_INIT: {report.init_errno or 'ok'}"))
    t = _table(f"{model.name}: KVM_SET_ONE_REG results", ("register", "asked", "KVM default", "result",
                                                          "cpumodel predicted"))
    for r in report.results:
        res = _t("accepted", "green") if r.errno == 0 else _t(r.errno, "red")
        pred = "-" if r.predicted is None else ("accepted" if r.predicted == 0 else str(r.predicted))
        t.add_row(r.register, f"{r.value:#018x}", "-" if r.default is None else f"{r.default:#018x}", res,
                  _t(pred, "green") if r.agrees else _t(f"{pred} (DISAGREES)", "red") if r.agrees is False
                  else _t(pred))
    console.print(t)
    if report.skipped:
        console.print(_t(f"not written (KVM has no one-reg for them): {', '.join(report.skipped)}"))
    bad = sum(1 for r in report.results if r.errno != 0)
    console.print(_t(f"{len(report.results) - bad} accepted, {bad} refused"))
    if report.rules is None:
        console.print(_t(f"no rule set for Linux {report.kernel}: cpumodel's prediction not shown"))
    else:
        n = len(report.disagreements)
        console.print(_t(f"cpumodel ({report.rules} rules) predicted {len(report.results) - n} of "
                         f"{len(report.results)} answers" + (f"; {n} DISAGREE" if n else "")))
