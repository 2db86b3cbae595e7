"""Machine-readable findings: JSON, GitHub workflow annotations, SARIF 2.1.0, JUnit XML."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TextIO

from cpumodel import __version__
from cpumodel.findings import Finding


def render_json(findings: Sequence[Finding], errors: Sequence[str], profiles: int, out: TextIO) -> None:
    doc = {"version": __version__, "profiles": profiles,
           "errors": list(errors), "findings": [f.to_dict() for f in findings],
           "summary": {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}}
    json.dump(doc, out, indent=2)
    out.write("\n")


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def render_github(findings: Sequence[Finding], errors: Sequence[str], out: TextIO) -> None:
    """GitHub Actions workflow commands (``::error file=..,line=..::message``)."""
    for e in errors:
        out.write(f"::error title=cpumodel::{_gh_escape(e)}\n")
    level = {"error": "error", "warning": "warning", "info": "notice"}
    for f in findings:
        props = []
        if f.location:
            props.append(f"file={_gh_escape(f.location.file, True)}")
            if f.location.line:
                props.append(f"line={f.location.line}")
            if f.location.column:
                props.append(f"col={f.location.column}")
        props.append(f"title={_gh_escape(f.rule, True)}")
        msg = f.message + (f" ({f.why})" if f.why else "")
        out.write(f"::{level.get(f.severity, 'warning')} {','.join(props)}::{_gh_escape(msg)}\n")


def render_sarif(findings: Sequence[Finding], errors: Sequence[str], out: TextIO) -> None:
    from cpumodel.rules import all_rules

    rules = all_rules()
    used = sorted({f.rule for f in findings})
    index = {r: i for i, r in enumerate(used)}
    driver_rules = []
    for rid in used:
        r = rules.get(rid)
        entry: dict[str, object] = {"id": rid}
        if r is not None:
            entry["name"] = r.name
            entry["shortDescription"] = {"text": r.summary}
            if r.doc:
                entry["fullDescription"] = {"text": r.doc}
            entry["properties"] = {"kind": r.kind, "source": r.source}
        driver_rules.append(entry)
    level = {"error": "error", "warning": "warning", "info": "note"}
    results = []
    for f in findings:
        res: dict[str, object] = {"ruleId": f.rule, "ruleIndex": index[f.rule],
                                  "level": level.get(f.severity, "warning"),
                                  "message": {"text": f.message + (f" ({f.why})" if f.why else "")}}
        if f.location:
            region: dict[str, int] = {}
            if f.location.line:
                region["startLine"] = f.location.line
            if f.location.column:
                region["startColumn"] = f.location.column
            phys: dict[str, object] = {"artifactLocation": {"uri": f.location.file}}
            if region:
                phys["region"] = region
            res["locations"] = [{"physicalLocation": phys}]
        props = {k: v for k, v in f.to_dict().items()
                 if k in ("register", "field", "asked", "allowed", "errno", "kernel", "host_value", "policy")
                 and v is not None}
        if props:
            res["properties"] = props
        results.append(res)
    run: dict[str, object] = {
        "tool": {"driver": {"name": "cpumodel", "version": __version__,
                            "informationUri": "https://example.invalid/cpumodel", "rules": driver_rules}},
        "results": results,
    }
    if errors:
        run["invocations"] = [{"executionSuccessful": False, "toolExecutionNotifications": [
            {"level": "error", "message": {"text": e}} for e in errors]}]
    doc = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}
    json.dump(doc, out, indent=2)
    out.write("\n")


def render_junit(findings: Sequence[Finding], errors: Sequence[str], profiles: int, out: TextIO) -> None:
    """One test suite; one test case per finding (failure for errors and warnings)."""
    from xml.sax.saxutils import quoteattr

    failing = [f for f in findings if f.severity in ("error", "warning")]
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    total = max(1, len(findings) + len(errors))
    out.write(f'<testsuites name="cpumodel" tests="{total}" failures="{len(failing)}" errors="{len(errors)}">\n')
    out.write(f'  <testsuite name="cpumodel check" tests="{total}" failures="{len(failing)}" '
              f'errors="{len(errors)}">\n')
    if not findings and not errors:
        out.write(f'    <testcase classname="cpumodel" name={quoteattr(f"{profiles} profiles checked")}/>\n')
    for e in errors:
        out.write(f'    <testcase classname="cpumodel.load" name={quoteattr(e[:200])}>\n')
        out.write(f'      <error message={quoteattr(e)}/>\n    </testcase>\n')
    for f in findings:
        where = str(f.location) if f.location else f.profile
        name = quoteattr(f"{f.rule} {f.target} at {where}")
        out.write(f'    <testcase classname={quoteattr("cpumodel." + f.profile)} name={name}>\n')
        body = quoteattr(f.message)
        detail = f.why or ""
        from xml.sax.saxutils import escape

        if f.severity in ("error", "warning"):
            out.write(f'      <failure type="{f.severity}" message={body}>{escape(detail)}</failure>\n')
        else:
            out.write(f"      <system-out>{escape(f.message)}</system-out>\n")
        out.write("    </testcase>\n")
    out.write("  </testsuite>\n</testsuites>\n")
